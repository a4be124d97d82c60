//! A redis client for what the app needs: pipelines of commands over one connection to the
//! first address that answers, failing over to the next address after an error.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::resp::{self, RespError, Value};

/// How long connecting to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one pipeline may take, from the first byte written to the last reply read.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("no redis address in the config yet")]
    NoAddress,
    #[error("redis {addr}: cannot connect: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("redis {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("redis {addr}: no answer within {}s", REPLY_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("redis {addr}: closed the connection")]
    Closed { addr: String },
    #[error("redis {addr}: garbled reply: {source}")]
    Protocol { addr: String, source: RespError },
    #[error("redis {addr}: {command}: {message}")]
    Command { addr: String, command: String, message: String },
}

/// A command: its words, the first being its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd(pub Vec<Vec<u8>>);

impl Cmd {
    pub fn new(name: &str) -> Cmd {
        Cmd(vec![name.as_bytes().to_vec()])
    }

    pub fn arg(mut self, arg: impl ToString) -> Cmd {
        self.0.push(arg.to_string().into_bytes());
        self
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(&self.0[0]).into_owned()
    }
}

/// One open connection.
struct Conn {
    addr: String,
    stream: TcpStream,
    /// Read but not yet parsed.
    buf: Vec<u8>,
}

/// A client of the redis at one of `addrs` (`host:port`).
pub struct Redis {
    addrs: Vec<String>,
    /// Which address the next connection goes to.
    next: usize,
    conn: Option<Conn>,
}

impl Redis {
    pub fn new(addrs: Vec<String>) -> Redis {
        Redis { addrs, next: 0, conn: None }
    }

    /// The addresses it may use.
    pub fn addresses(&self) -> &[String] {
        &self.addrs
    }

    /// Sends `cmds` as one pipeline and returns their replies in order. An error reply
    /// (`-ERR ...`) is an error, naming its command. After any failure the connection is
    /// dropped, and the next call connects to the next address.
    pub async fn pipeline(&mut self, cmds: &[Cmd]) -> Result<Vec<Value>, RedisError> {
        let result = self.try_pipeline(cmds).await;
        if matches!(result, Err(ref e) if !matches!(e, RedisError::Command { .. })) {
            self.conn = None;
        }
        result
    }

    /// One command.
    pub async fn query(&mut self, cmd: Cmd) -> Result<Value, RedisError> {
        let mut replies = self.pipeline(std::slice::from_ref(&cmd)).await?;
        Ok(replies.remove(0))
    }

    async fn try_pipeline(&mut self, cmds: &[Cmd]) -> Result<Vec<Value>, RedisError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let addr = conn.addr.clone();
        let mut out = Vec::new();
        for cmd in cmds {
            out.extend(resp::command(&cmd.0));
        }
        let exchange = async {
            conn.stream
                .write_all(&out)
                .await
                .map_err(|source| RedisError::Io { addr: addr.clone(), source })?;
            let mut replies = Vec::with_capacity(cmds.len());
            while replies.len() < cmds.len() {
                replies.push(conn.read().await?);
            }
            Ok(replies)
        };
        let replies: Vec<Value> = timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| RedisError::Timeout { addr: addr.clone() })??;
        for (cmd, reply) in cmds.iter().zip(&replies) {
            if let Value::Error(message) = reply {
                return Err(RedisError::Command { addr, command: cmd.name(), message: message.clone() });
            }
        }
        Ok(replies)
    }

    /// Connects to the next address that takes a connection, trying each once.
    async fn connect(&mut self) -> Result<Conn, RedisError> {
        let mut last = None;
        for _ in 0..self.addrs.len() {
            let addr = self.addrs[self.next % self.addrs.len()].clone();
            self.next = (self.next + 1) % self.addrs.len();
            match timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn { addr, stream, buf: Vec::new() });
                }
                Ok(Err(source)) => last = Some(RedisError::Connect { addr, source }),
                Err(_) => {
                    let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
                    last = Some(RedisError::Connect { addr, source });
                }
            }
        }
        Err(last.unwrap_or(RedisError::NoAddress))
    }
}

impl Conn {
    /// The next reply.
    async fn read(&mut self) -> Result<Value, RedisError> {
        loop {
            match resp::parse(&self.buf) {
                Ok(Some((value, used))) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(source) => return Err(RedisError::Protocol { addr: self.addr.clone(), source }),
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|source| RedisError::Io { addr: self.addr.clone(), source })?;
            if n == 0 {
                return Err(RedisError::Closed { addr: self.addr.clone() });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
