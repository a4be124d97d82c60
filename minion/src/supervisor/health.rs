//! Health checks: the probes (tcp connect, http GET, exec) and the count of failures in a
//! row that turns a daemon unhealthy.
//!
//! The http probe is a minimal HTTP/1.0 GET written by hand over a tokio `TcpStream`: the
//! minion has no HTTP client, and one GET whose status line is all we read does not justify
//! one (nor its TLS stack; `https://` checks are refused with a clear reason, use `exec`
//! with curl for those). 2xx and 3xx answers are healthy.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use render::{Health, HealthCheck};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::reaper;
use crate::runas::Account;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One health check run: Ok, or why not. Called once per check; the caller applies the
/// timeout.
pub(crate) type Prober = Box<dyn FnMut() -> BoxFuture<Result<(), String>> + Send>;

/// What a daemon's health check last concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Not decided yet (just started, no answer so far).
    Unknown,
    Healthy,
    Unhealthy,
}

/// Consecutive failures → unhealthy; one success → healthy.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) state: HealthState,
    failures: u32,
    retries: u32,
    /// A daemon that never answered is unhealthy only after this long (as long as a healthy
    /// one that stops answering gets: `retries × interval`).
    grace: Duration,
    pub(crate) last_error: Option<String>,
}

impl Tracker {
    pub(crate) fn new(health: &Health) -> Self {
        let grace = Duration::from_millis(health.interval_ms.saturating_mul(u64::from(health.retries)));
        Self {
            state: HealthState::Unknown,
            failures: 0,
            retries: health.retries.max(1),
            grace,
            last_error: None,
        }
    }

    /// Records one check, `since_start` after the process started; the new state when it
    /// changed.
    pub(crate) fn record(
        &mut self,
        result: Result<(), String>,
        since_start: Duration,
    ) -> Option<HealthState> {
        let next = match result {
            Ok(()) => {
                self.failures = 0;
                self.last_error = None;
                HealthState::Healthy
            }
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(e);
                let enough = self.failures >= self.retries;
                match self.state {
                    HealthState::Healthy if enough => HealthState::Unhealthy,
                    HealthState::Unknown if enough && since_start >= self.grace => HealthState::Unhealthy,
                    other => other,
                }
            }
        };
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }
}

/// How to run an `exec` check: as the daemon runs.
#[derive(Clone, Debug)]
pub(crate) struct ExecContext {
    pub(crate) account: Option<Account>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: Option<String>,
}

/// A prober for a real check.
pub(crate) fn prober(check: HealthCheck, exec: ExecContext) -> Prober {
    Box::new(move || {
        let (check, exec) = (check.clone(), exec.clone());
        Box::pin(async move {
            match check {
                HealthCheck::Tcp(addr) => tcp(&addr).await,
                HealthCheck::Http(url) => http(&url).await,
                HealthCheck::Exec(argv) => run(&argv, &exec).await,
            }
        })
    })
}

/// `host:port` accepts a connection.
pub(crate) async fn tcp(addr: &str) -> Result<(), String> {
    TcpStream::connect(addr).await.map(drop).map_err(|e| format!("tcp {addr}: {e}"))
}

/// A GET of `url` answers 2xx or 3xx.
pub(crate) async fn http(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "http check {url}: only http:// is supported by the minion's built-in check; \
             use exec: [curl, -fsS, <url>] for https"
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let has_port =
        !host.ends_with(']') && host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let addr = if has_port { host.to_string() } else { format!("{host}:80") };

    let mut stream =
        TcpStream::connect(&addr).await.map_err(|e| format!("GET {url}: cannot connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: drover-minion\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("GET {url}: cannot send: {e}"))?;
    // the status line is all we need
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("GET {url}: cannot read the answer: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default().trim();
    let mut words = line.split_whitespace();
    let status = match (words.next(), words.next().and_then(|c| c.parse::<u16>().ok())) {
        (Some(proto), Some(status)) if proto.starts_with("HTTP/") => status,
        _ => return Err(format!("GET {url}: not an HTTP answer: {line:?}")),
    };
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("GET {url}: answered {line}")) }
}

/// The command exits 0.
async fn run(argv: &[String], exec: &ExecContext) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("exec check: empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(account) = &exec.account {
        account.apply(cmd.as_std_mut()).map_err(|e| format!("exec check: {e}"))?;
    }
    cmd.envs(exec.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &exec.cwd {
        cmd.current_dir(dir);
    }
    let mut child =
        reaper::spawn(&mut cmd).map_err(|e| format!("exec check: cannot run '{program}': {e}"))?;
    // a check that outlives its timeout is dropped here: take its whole group down
    let _group = KillGroupOnDrop(child.id());
    let status = child.wait().await.map_err(|e| format!("exec check: cannot wait for '{program}': {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exec check {program}: {}", super::Exit::from(status)))
    }
}

struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(retries: u32) -> Health {
        Health { check: HealthCheck::Tcp("h:1".into()), interval_ms: 1000, timeout_ms: 100, retries }
    }

    #[test]
    fn failures_in_a_row_turn_unhealthy_and_one_success_heals() {
        let mut t = Tracker::new(&health(3));
        let s = Duration::from_secs;
        let fail = || Err("down".to_string());
        // never answered: failures count only after the grace of retries × interval
        assert_eq!(t.record(fail(), s(0)), None);
        assert_eq!(t.record(fail(), s(1)), None);
        assert_eq!(t.record(fail(), s(2)), None);
        assert_eq!(t.record(fail(), s(3)), Some(HealthState::Unhealthy));
        assert_eq!(t.last_error.as_deref(), Some("down"));
        assert_eq!(t.record(Ok(()), s(4)), Some(HealthState::Healthy));
        assert_eq!(t.record(Ok(()), s(5)), None);
        assert_eq!(t.record(fail(), s(6)), None);
        assert_eq!(t.record(fail(), s(7)), None);
        assert_eq!(t.record(Ok(()), s(8)), None);
        assert_eq!(t.record(fail(), s(9)), None);
        assert_eq!(t.record(fail(), s(10)), None);
        assert_eq!(t.record(fail(), s(11)), Some(HealthState::Unhealthy));
        assert_eq!(t.record(fail(), s(12)), None);
        // retries 0 means "1": the first failure counts
        let mut t = Tracker::new(&health(0));
        assert_eq!(t.record(Ok(()), s(0)), Some(HealthState::Healthy));
        assert_eq!(t.record(fail(), s(1)), Some(HealthState::Unhealthy));
    }

    #[tokio::test]
    async fn http_reads_the_status_line() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for answer in [
                "HTTP/1.0 200 OK\r\n\r\n",
                "HTTP/1.1 302 Found\r\n\r\n",
                "HTTP/1.1 503 Busy\r\n\r\n",
                "hello",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(answer.as_bytes()).await.unwrap();
            }
            requests
        });
        let url = format!("http://{addr}/health?x=1");
        assert_eq!(http(&url).await, Ok(()));
        assert_eq!(http(&url).await, Ok(()));
        let e = http(&url).await.unwrap_err();
        assert!(e.ends_with("answered HTTP/1.1 503 Busy"), "{e}");
        let e = http(&url).await.unwrap_err();
        assert!(e.contains("not an HTTP answer"), "{e}");
        let requests = server.await.unwrap();
        assert!(
            requests[0].starts_with(&format!("GET /health?x=1 HTTP/1.0\r\nHost: {addr}\r\n")),
            "{}",
            requests[0]
        );
        assert!(http("https://127.0.0.1/").await.unwrap_err().contains("only http://"));
    }
}
