//! The minion's health: one verdict made of three parts, each owned by the part of the
//! minion that knows it and published through a `watch` channel:
//!
//! - the link ([`Link`], the session): welcomed by the master, and the master not silent;
//! - convergence ([`Convergence`], the converger): the last apply of the current assignment
//!   succeeded (no assignment yet: not converged);
//! - the daemons (`wire::DaemonHealth`, the supervisor): every daemon runs (not starting,
//!   in backoff or failed) and passes its health check, if it has one.
//!
//! [`Sources`] reads the three into a [`Status`]. The running minion answers every
//! connection to the unix socket `DIR/health.sock` (mode 0600) with its status as one JSON
//! line ([`serve`]); [`check`] is `drover-minion health`: a blocking client with no async
//! runtime and no zmq, cheap enough for Docker's HEALTHCHECK to run every second. The
//! master gets the same verdict, minus the link, as `wire::Health` ([`Sources::report`]).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wire::{DaemonHealth, Health};

/// The socket's file name in the minion's directory.
pub const SOCKET: &str = "health.sock";

/// How long `drover-minion health` waits for an answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest problem line, in characters.
const MAX_PROBLEM: usize = 300;

/// Where the minion with directory `dir` answers health checks.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Where the link to the master stands, as health sees it (the session publishes it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// Not welcomed: connecting, waiting for an answer to its hello, or the master fell
    /// silent.
    #[default]
    Down,
    /// The master knows the key but has not accepted it.
    Pending,
    /// The master refuses this minion, for this reason.
    Refused(String),
    /// Another container of this minion's slot, of this generation, has the session.
    Superseded(u64),
    /// Welcomed, and the master is not silent.
    Up,
}

impl Link {
    fn problem(&self) -> Option<String> {
        match self {
            Link::Up => None,
            Link::Down => Some("not connected to the master".into()),
            Link::Pending => {
                Some("not connected to the master: its key waits for 'drover key accept' there".into())
            }
            Link::Refused(reason) => Some(format!("not connected to the master: refused: {reason}")),
            Link::Superseded(by) => Some(format!(
                "not connected to the master: superseded by generation {by} of this minion (another \
                 container of its slot)"
            )),
        }
    }
}

/// Where convergence stands (the converger publishes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Convergence {
    /// The commit of the current assignment; none before the first assignment.
    pub commit: Option<String>,
    /// The last apply of the current assignment succeeded, and no role it requires is
    /// waited for.
    pub converged: bool,
    /// Why not, in one line.
    pub problem: Option<String>,
}

impl Default for Convergence {
    fn default() -> Self {
        Self { commit: None, converged: false, problem: Some("no assignment from the master yet".into()) }
    }
}

/// What `drover-minion health` prints: the minion's answer, one JSON line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub connected: bool,
    pub converged: bool,
    /// The commit of the current assignment.
    pub commit: Option<String>,
    /// All three: connected, converged, and every daemon healthy.
    pub healthy: bool,
    /// Why not, in one line: the first unhealthy daemon, else a failed apply, else the
    /// link, else the apply to come.
    pub problem: Option<String>,
    pub daemons: Vec<DaemonHealth>,
}

/// The three parts of the health, as their owners publish them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Sources {
    pub link: watch::Receiver<Link>,
    pub convergence: watch::Receiver<Convergence>,
    pub daemons: watch::Receiver<Vec<DaemonHealth>>,
}

impl Sources {
    /// The whole verdict, for `drover-minion health`.
    pub fn status(&self) -> Status {
        let link = self.link.borrow().clone();
        let convergence = self.convergence.borrow().clone();
        let daemons = self.daemons.borrow().clone();
        status(&link, &convergence, daemons)
    }

    /// The verdict without the link, for the master (which knows the link itself).
    pub fn report(&self) -> Health {
        let Status { converged, daemons, problem, .. } =
            status(&Link::Up, &self.convergence.borrow(), self.daemons.borrow().clone());
        Health { healthy: converged && problem.is_none(), problem, daemons }
    }
}

/// Combines the three parts.
pub fn status(link: &Link, convergence: &Convergence, daemons: Vec<DaemonHealth>) -> Status {
    let daemon = daemons.iter().find(|d| !d.healthy).map(|d| {
        let why = d.problem.clone().unwrap_or_else(|| d.state.clone());
        format!("daemon {}: {why}", d.name)
    });
    let unconverged = (!convergence.converged)
        .then(|| convergence.problem.clone().unwrap_or_else(|| "not converged".into()));
    // the most telling first: a daemon, a failed apply of an assignment, the link, and
    // last that no assignment came yet
    let problem = daemon
        .or_else(|| unconverged.clone().filter(|_| convergence.commit.is_some()))
        .or_else(|| link.problem())
        .or(unconverged)
        .map(|p| one_line(&p, MAX_PROBLEM));
    Status {
        connected: *link == Link::Up,
        converged: convergence.converged,
        commit: convergence.commit.clone(),
        healthy: problem.is_none(),
        problem,
        daemons,
    }
}

/// The first line of `text`, cut to `max` characters (marked with `…`).
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim_end();
    let more = line.len() < text.trim().len();
    let mut out: String = line.chars().take(max).collect();
    if more || out.len() < line.len() {
        out.push('…');
    }
    out
}

/// The health socket of a running minion: answers while this value lives; dropping it
/// stops the answers and removes the socket file.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    inode: u64,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        // unless another process has put its own socket there since
        if fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds `DIR/health.sock` (mode 0600: only the minion's user may ask) and answers every
/// connection with the status as one JSON line, on the current runtime.
pub fn serve(dir: &Path, sources: Sources) -> io::Result<Server> {
    let path = socket_path(dir);
    let (listener, inode) = bind(&path)?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stopped.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((mut stream, _)) => {
                    let mut line = serde_json::to_vec(&sources.status()).unwrap_or_default();
                    line.push(b'\n');
                    // a client that does not read cannot hold up the next one
                    tokio::spawn(async move {
                        let write = async {
                            stream.write_all(&line).await?;
                            stream.shutdown().await
                        };
                        let written = tokio::time::timeout(CHECK_TIMEOUT, write).await.unwrap_or_else(|_| {
                            Err(io::Error::new(io::ErrorKind::TimedOut, "the client did not read"))
                        });
                        if let Err(e) = written {
                            debug!(cause = %e, "cannot answer a health check");
                        }
                    });
                }
                Err(e) => {
                    // out of file descriptors, say: try again a little later, not in a loop
                    warn!(cause = %e, "cannot accept a health check");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(Server { path, inode, stop })
}

/// Binds the socket under a temporary name, makes it owner-only, then renames it into
/// place (replacing one left by an earlier run), so the path is never reachable by others.
fn bind(path: &Path) -> io::Result<(tokio::net::UnixListener, u64)> {
    let tmp = path.with_file_name(format!(".{SOCKET}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    let placed =
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let inode = fs::metadata(path)?.ino();
    listener.set_nonblocking(true)?;
    Ok((tokio::net::UnixListener::from_std(listener)?, inode))
}

/// What a health check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The minion's answer (one JSON line), and whether it says healthy.
    Answer { line: String, healthy: bool },
    /// No minion answered, and why.
    NoAnswer(String),
}

/// `drover-minion health`: asks the minion of `dir` through its socket, waiting at most
/// `timeout`.
pub fn check(dir: &Path, timeout: Duration) -> Checked {
    let path = socket_path(dir);
    let deadline = Instant::now() + timeout;
    let no_answer =
        |why: String| Checked::NoAnswer(format!("no minion answers on {}: {why}", path.display()));
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) => return no_answer(e.to_string()),
    };
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    while !answer.contains(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return no_answer(format!("nothing within {}", crate::supervisor::human(timeout)));
        }
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            return no_answer(e.to_string());
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return no_answer(format!("nothing within {}", crate::supervisor::human(timeout)));
            }
            Err(e) => return no_answer(e.to_string()),
        }
        if answer.len() > 1 << 20 {
            return no_answer("an answer longer than 1 MiB".into());
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    match serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v["healthy"].as_bool()) {
        Some(healthy) => Checked::Answer { line, healthy },
        None => no_answer(format!("the answer is not a health status: {}", one_line(&line, 200))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(name: &str, state: &str, problem: Option<&str>) -> DaemonHealth {
        DaemonHealth {
            name: name.into(),
            state: state.into(),
            healthy: problem.is_none(),
            problem: problem.map(String::from),
        }
    }

    fn converged(commit: &str) -> Convergence {
        Convergence { commit: Some(commit.into()), converged: true, problem: None }
    }

    fn failed(commit: &str, why: &str) -> Convergence {
        Convergence { commit: Some(commit.into()), converged: false, problem: Some(why.into()) }
    }

    /// (link, convergence, daemons) → (healthy, problem).
    #[test]
    fn the_three_parts_make_one_verdict_and_the_most_telling_problem() {
        let crash = daemon("worker", "backoff", Some("exited with code 1 (restarting)"));
        let running = daemon("worker", "running", None);
        let none = Convergence::default();
        let cases: Vec<(Link, Convergence, Vec<DaemonHealth>, Option<&str>)> = vec![
            (Link::Up, converged("c1"), vec![running.clone()], None),
            // an assignment with no roles, applied: converged, nothing runs
            (Link::Up, converged("c1"), vec![], None),
            (Link::Up, none.clone(), vec![], Some("no assignment from the master yet")),
            (Link::Down, none.clone(), vec![], Some("not connected to the master")),
            (Link::Down, converged("c1"), vec![running.clone()], Some("not connected to the master")),
            (
                Link::Superseded(9),
                converged("c1"),
                vec![running.clone()],
                Some(
                    "not connected to the master: superseded by generation 9 of this minion (another container of its slot)",
                ),
            ),
            (
                Link::Up,
                converged("c1"),
                vec![running.clone(), crash.clone()],
                Some("daemon worker: exited with code 1 (restarting)"),
            ),
            (
                Link::Down,
                failed("c1", "state coins.worker failed: worker: no such file"),
                vec![crash.clone()],
                Some("daemon worker: exited with code 1 (restarting)"),
            ),
            (
                Link::Down,
                failed("c1", "state coins.worker failed: worker: no such file"),
                vec![],
                Some("state coins.worker failed: worker: no such file"),
            ),
            (Link::Up, converged("c1"), vec![daemon("web", "starting", None)], None),
        ];
        for (link, conv, daemons, want) in cases {
            let s = status(&link, &conv, daemons.clone());
            assert_eq!(s.problem.as_deref(), want, "{link:?} {conv:?} {daemons:?}");
            assert_eq!(s.healthy, want.is_none());
            assert_eq!(s.connected, link == Link::Up);
            assert_eq!((s.converged, s.commit), (conv.converged, conv.commit));
        }
    }

    #[test]
    fn the_master_gets_the_verdict_without_the_link() {
        let (_link_tx, link) = watch::channel(Link::Superseded(3));
        let (_conv_tx, convergence) = watch::channel(converged("c1"));
        let (daemons_tx, daemons) = watch::channel(vec![daemon("worker", "running", None)]);
        let sources = Sources { link, convergence, daemons };
        assert_eq!(
            sources.report(),
            Health { healthy: true, problem: None, daemons: sources.status().daemons }
        );
        assert!(!sources.status().healthy);
        daemons_tx.send_replace(vec![daemon("worker", "failed", Some("exited with code 2 (not restarted)"))]);
        let report = sources.report();
        assert!(!report.healthy);
        assert_eq!(report.problem.as_deref(), Some("daemon worker: exited with code 2 (not restarted)"));
    }

    #[test]
    fn problems_are_one_short_line() {
        assert_eq!(one_line("  a\nb", 10), "a…");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("abc", 3), "abc");
        assert_eq!(one_line("", 3), "");
    }

    fn sources(link: Link, conv: Convergence) -> (Sources, watch::Sender<Link>) {
        let (link_tx, link) = watch::channel(link);
        let (conv_tx, convergence) = watch::channel(conv);
        let (daemons_tx, daemons) = watch::channel(Vec::new());
        // the senders of the other two may go: the last value stays readable
        drop((conv_tx, daemons_tx));
        (Sources { link, convergence, daemons }, link_tx)
    }

    #[tokio::test]
    async fn the_socket_answers_with_the_status_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let (src, link_tx) = sources(Link::Up, converged("c1"));
        // a stale socket file of an earlier run is replaced
        fs::write(socket_path(dir.path()), b"").unwrap();
        let server = serve(dir.path(), src).unwrap();
        let mode = fs::metadata(socket_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let ask = |dir: PathBuf| tokio::task::spawn_blocking(move || check(&dir, CHECK_TIMEOUT));
        let Checked::Answer { line, healthy } = ask(dir.path().into()).await.unwrap() else {
            panic!("no answer")
        };
        assert!(healthy);
        let status: Status = serde_json::from_str(&line).unwrap();
        assert_eq!(status.commit.as_deref(), Some("c1"));

        link_tx.send_replace(Link::Down);
        let Checked::Answer { line, healthy } = ask(dir.path().into()).await.unwrap() else {
            panic!("no answer")
        };
        assert!(!healthy);
        assert!(line.contains("not connected to the master"), "{line}");

        // once the minion stops, the socket goes and nobody answers
        drop(server);
        assert!(!socket_path(dir.path()).exists());
        assert!(matches!(ask(dir.path().into()).await.unwrap(), Checked::NoAnswer(_)));
    }

    #[test]
    fn a_minion_that_does_not_answer_is_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        match check(dir.path(), Duration::from_millis(200)) {
            Checked::NoAnswer(why) => assert!(why.contains("health.sock"), "{why}"),
            other => panic!("{other:?}"),
        }
        // a socket nobody reads from or writes to (a minion whose thread is stuck)
        let _listener = std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap();
        match check(dir.path(), Duration::from_millis(200)) {
            Checked::NoAnswer(why) => assert!(why.contains("nothing within 200ms"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
