//! The ZeroMQ side: one OS thread owns the DEALER socket to the master.
//!
//! No zmq call runs on the tokio runtime except one non-blocking send on an inproc PUSH
//! socket: commands (connect, disconnect, send a frame, stop) travel over an inproc
//! PUSH/PULL pair to the thread, which polls its PULL and the DEALER together. Frames from
//! the master are decoded on the thread and handed to the session through a channel;
//! undecodable frames are logged and dropped.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use tokio::sync::mpsc;
use wire::{KeyPair, MinionId, PublicKey, ToMinion};

use crate::config::MasterAddr;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot set up the socket thread: {0}")]
    Setup(zmq::Error),
    #[error("cannot start the socket thread: {0}")]
    Spawn(io::Error),
}

/// What the DEALER needs to present itself to the master.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: MinionId,
    pub keys: KeyPair,
    pub master_key: PublicKey,
}

const CONNECT: &[u8] = b"connect";
const DISCONNECT: &[u8] = b"disconnect";
const SEND: &[u8] = b"send";
const STOP: &[u8] = b"stop";

/// The tokio side's handle on the socket thread. Dropping it stops the thread.
pub struct Transport {
    commands: Mutex<zmq::Socket>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Transport {
    /// Starts the socket thread; decoded messages from the master arrive on `incoming`.
    /// No connection is made until [`Transport::connect`].
    pub fn start(
        ctx: &zmq::Context,
        identity: Identity,
        incoming: mpsc::UnboundedSender<ToMinion>,
    ) -> Result<Self, TransportError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!("inproc://drover-minion-commands-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let pull = ctx.socket(zmq::PULL).map_err(TransportError::Setup)?;
        pull.set_rcvhwm(0).map_err(TransportError::Setup)?;
        pull.bind(&endpoint).map_err(TransportError::Setup)?;
        let push = ctx.socket(zmq::PUSH).map_err(TransportError::Setup)?;
        push.set_sndhwm(0).map_err(TransportError::Setup)?;
        push.set_linger(0).map_err(TransportError::Setup)?;
        push.connect(&endpoint).map_err(TransportError::Setup)?;
        let worker = Worker { ctx: ctx.clone(), identity, pull, dealer: None, incoming };
        let thread = thread::Builder::new()
            .name("zmq".into())
            .spawn(move || worker.run())
            .map_err(TransportError::Spawn)?;
        Ok(Self { commands: Mutex::new(push), thread: Some(thread) })
    }

    /// Replaces the DEALER with a fresh one connected to `addr`.
    pub fn connect(&self, addr: SocketAddr) {
        self.command(&[CONNECT, addr.to_string().as_bytes()]);
    }

    /// Closes the DEALER, dropping whatever it still queued.
    pub fn disconnect(&self) {
        self.command(&[DISCONNECT]);
    }

    /// Queues one frame for the master (dropped if not connected).
    pub fn send(&self, frame: &[u8]) {
        self.command(&[SEND, frame]);
    }

    fn command(&self, parts: &[&[u8]]) {
        let push = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        // no high-water mark on the inproc pair: this never blocks
        if let Err(e) = push.send_multipart(parts.iter().copied(), zmq::DONTWAIT) {
            tracing::warn!(cause = %e, "cannot pass a command to the socket thread; dropped");
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.command(&[STOP]);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The socket thread's state.
struct Worker {
    ctx: zmq::Context,
    identity: Identity,
    pull: zmq::Socket,
    dealer: Option<zmq::Socket>,
    incoming: mpsc::UnboundedSender<ToMinion>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let readable = {
                let mut items = vec![self.pull.as_poll_item(zmq::POLLIN)];
                if let Some(dealer) = &self.dealer {
                    items.push(dealer.as_poll_item(zmq::POLLIN));
                }
                if let Err(e) = zmq::poll(&mut items, -1) {
                    if e == zmq::Error::EINTR {
                        continue;
                    }
                    tracing::error!(cause = %e, "socket thread cannot poll; stopping");
                    return;
                }
                (items[0].is_readable(), items.get(1).is_some_and(|i| i.is_readable()))
            };
            if readable.0 && !self.commands() {
                return;
            }
            if readable.1 && !self.receive() {
                return;
            }
        }
    }

    /// Runs every queued command; false when told to stop.
    fn commands(&mut self) -> bool {
        loop {
            let parts = match self.pull.recv_multipart(zmq::DONTWAIT) {
                Ok(parts) => parts,
                Err(zmq::Error::EAGAIN) => return true,
                Err(e) => {
                    tracing::error!(cause = %e, "socket thread cannot read its commands; stopping");
                    return false;
                }
            };
            match (parts.first().map(Vec::as_slice), parts.get(1)) {
                (Some(STOP), _) => return false,
                (Some(SEND), Some(frame)) => match &self.dealer {
                    Some(dealer) => {
                        if let Err(e) = dealer.send(frame.as_slice(), zmq::DONTWAIT) {
                            tracing::debug!(cause = %e, "message to the master dropped");
                        }
                    }
                    None => tracing::debug!("not connected: message to the master dropped"),
                },
                (Some(CONNECT), Some(addr)) => {
                    self.dealer = None;
                    let addr = String::from_utf8_lossy(addr);
                    match self.dealer_for(&addr) {
                        Ok(dealer) => self.dealer = Some(dealer),
                        Err(e) => {
                            tracing::error!(master = %addr, cause = %e, "cannot open a socket to the master")
                        }
                    }
                }
                (Some(DISCONNECT), _) => self.dealer = None,
                _ => tracing::warn!("socket thread got a malformed command; ignored"),
            }
        }
    }

    fn dealer_for(&self, addr: &str) -> anyhow::Result<zmq::Socket> {
        let Identity { id, keys, master_key } = &self.identity;
        let dealer = self.ctx.socket(zmq::DEALER)?;
        dealer.set_linger(0)?;
        // libzmq redials a lost connection by itself: back off up to 10 s, so a master
        // restart is not met by every minion every 100 ms
        dealer.set_reconnect_ivl_max(10_000)?;
        dealer.set_maxmsgsize(wire::msg::MAX_FRAME as i64)?;
        // `<id>/<random>`, fresh for this socket: names us in the master's traces, and no
        // other process can present it to take our route over (see wire::routing_id)
        dealer.set_identity(&wire::routing_id(id)?)?;
        dealer.set_curve_serverkey(&master_key.raw())?;
        dealer.set_curve_publickey(&keys.public.raw())?;
        dealer.set_curve_secretkey(&keys.secret_raw())?;
        dealer.set_ipv6(addr.starts_with('['))?;
        dealer.connect(&format!("tcp://{addr}"))?;
        Ok(dealer)
    }

    /// Hands every waiting message to the session; false when the session is gone.
    fn receive(&mut self) -> bool {
        let Some(dealer) = &self.dealer else { return true };
        loop {
            let parts = match dealer.recv_multipart(zmq::DONTWAIT) {
                Ok(parts) => parts,
                Err(zmq::Error::EAGAIN) => return true,
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot read from the master's socket");
                    return true;
                }
            };
            // the body is the last frame (a ROUTER may put an empty delimiter before it)
            let Some(body) = parts.last() else { continue };
            match wire::msg::decode::<ToMinion>(body) {
                Ok(msg) => {
                    if self.incoming.send(msg).is_err() {
                        return false;
                    }
                }
                Err(e) => tracing::warn!(bytes = body.len(), cause = %e, "dropped a frame from the master"),
            }
        }
    }
}

/// Resolves the master's host name (again on every call, so a moved master is found),
/// preferring IPv4 since the master listens on 0.0.0.0 by default.
pub async fn resolve(master: &MasterAddr) -> io::Result<SocketAddr> {
    let (host, port) = (master.host.clone(), master.port);
    let addrs =
        tokio::task::spawn_blocking(move || (host.as_str(), port).to_socket_addrs().map(Vec::from_iter))
            .await
            .map_err(io::Error::other)??;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))
}
