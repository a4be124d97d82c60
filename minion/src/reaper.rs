//! Reaping orphans, without stealing the exit status of a child somebody waits for.
//!
//! As PID 1 in a container the minion inherits every orphan of the container; elsewhere it
//! makes itself a *child subreaper* (`PR_SET_CHILD_SUBREAPER`) so the orphans of its daemons
//! (a double fork, a shell's background job) come back to it instead of the host's init. In
//! both cases a zombie stays until the minion waits for it, so [`install`] starts a reaper.
//!
//! Why always a subreaper rather than only as PID 1: the minion behaves the same on a host
//! and in a container (the PID-1 path is exercised by every test run), a daemon that
//! double-forks stays a descendant of the minion, and in a container with another init
//! (`docker run --init`) the minion still cleans up after its own daemons.
//!
//! The minion also waits for children itself: the supervisor's daemons, `cmd.run`, health
//! checks (`tokio::process`, which reaps its own children by pid). A reaper that called
//! `waitpid(-1)` would steal their exit status. So every child the minion starts is
//! **managed**: [`spawn`] forks it and records its pid in one registry under one lock, and
//! keeps it there until the returned [`Managed`] is dropped (after its owner waited). The
//! reaper thread blocks in `waitid(P_ALL, WEXITED | WNOWAIT)`, which reports a zombie
//! without reaping it; under the same lock it reaps that pid only if it is not managed.
//! Because spawning and registering happen under the lock the reaper takes before it looks,
//! a child that exits at once is never mistaken for an orphan.
//!
//! Rule for the rest of the minion: **start every child with [`spawn`] or [`spawn_std`]**,
//! never with a bare `Command::spawn`/`output`/`status` (once the reaper runs, an
//! unregistered child's status may be reaped before its owner asks for it).

use std::collections::BTreeMap;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use tracing::{debug, error, info};

/// How long the reaper sleeps when the minion has no child at all (a spawn wakes it sooner).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// First and longest pause while the zombie at the head is a managed child its owner has
/// not waited for yet (owners wait within milliseconds).
const MANAGED_PAUSE_MIN: Duration = Duration::from_millis(2);
const MANAGED_PAUSE_MAX: Duration = Duration::from_millis(200);

/// Pids of managed children (a count, in case a pid is reused before the old registration
/// is dropped), and how many children were ever spawned (to wake the reaper).
struct Registry {
    pids: BTreeMap<i32, u32>,
    spawned: u64,
}

/// The one lock: held while forking + registering, and while the reaper decides and reaps.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry { pids: BTreeMap::new(), spawned: 0 });
static SPAWNED: Condvar = Condvar::new();
static STARTED: OnceLock<()> = OnceLock::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the minion came to be the reaper of its orphans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// PID 1 (a container's init): every orphan of the container comes to the minion.
    Init,
    /// A child subreaper: orphans of the minion's descendants come to the minion.
    Subreaper,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(Errno),
    #[error("cannot start the reaper thread: {0}")]
    Thread(io::Error),
}

/// Makes the minion the reaper of its orphans (PID 1 already is; otherwise it becomes a
/// child subreaper) and starts the reaper thread. Call it once, early, in the binary; from
/// then on every child must be started with [`spawn`] / [`spawn_std`].
pub fn install() -> Result<Role, ReaperError> {
    let role = if nix::unistd::getpid().as_raw() == 1 {
        Role::Init
    } else {
        nix::sys::prctl::set_child_subreaper(true).map_err(ReaperError::Subreaper)?;
        Role::Subreaper
    };
    start()?;
    Ok(role)
}

/// Starts the reaper thread (once per process; later calls do nothing).
pub fn start() -> Result<(), ReaperError> {
    if STARTED.get().is_some() {
        return Ok(());
    }
    let mut result = Ok(());
    STARTED.get_or_init(|| {
        result = std::thread::Builder::new().name("reaper".into()).spawn(reap_forever).map(drop);
    });
    result.map_err(ReaperError::Thread)
}

/// A child the reaper leaves to its owner until this is dropped. Derefs to the child.
#[derive(Debug)]
pub struct Managed<C> {
    child: C,
    _registration: Registration,
}

impl<C> Deref for Managed<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.child
    }
}

impl<C> DerefMut for Managed<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.child
    }
}

#[derive(Debug)]
struct Registration(i32);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = registry();
        if let Some(count) = registry.pids.get_mut(&self.0) {
            *count -= 1;
            if *count == 0 {
                registry.pids.remove(&self.0);
            }
        }
    }
}

/// Spawns `cmd` as a managed child (see the module docs).
pub fn spawn(cmd: &mut tokio::process::Command) -> io::Result<Managed<tokio::process::Child>> {
    let mut registry = registry();
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
    Ok(Managed { child, _registration: register(&mut registry, pid) })
}

/// [`spawn`] for a `std::process::Command` (a child waited for on a blocking thread).
pub fn spawn_std(cmd: &mut std::process::Command) -> io::Result<Managed<std::process::Child>> {
    let mut registry = registry();
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    Ok(Managed { child, _registration: register(&mut registry, pid) })
}

fn register(registry: &mut Registry, pid: i32) -> Registration {
    *registry.pids.entry(pid).or_insert(0) += 1;
    registry.spawned += 1;
    SPAWNED.notify_all();
    Registration(pid)
}

/// Whether `pid` is a managed child now.
pub fn is_managed(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| registry().pids.contains_key(&pid))
}

fn reap_forever() {
    let mut pause = MANAGED_PAUSE_MIN;
    loop {
        let spawned = registry().spawned;
        // blocks until some child (managed or not) is a zombie; reaps nothing
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                if reap_if_orphan(pid) {
                    pause = MANAGED_PAUSE_MIN;
                } else {
                    // its owner will wait for it soon; until then waitid keeps reporting it
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MANAGED_PAUSE_MAX);
                }
            }
            Err(Errno::ECHILD) => {
                // no child at all: sleep until one is spawned (or a while, for children
                // started some other way)
                let registry = registry();
                if registry.spawned == spawned {
                    drop(SPAWNED.wait_timeout(registry, IDLE_WAIT));
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                error!(cause = %e, "waitid failed; the reaper pauses");
                std::thread::sleep(IDLE_WAIT);
            }
        }
    }
}

/// Reaps `pid` unless it is managed; whether it was reaped.
fn reap_if_orphan(pid: Pid) -> bool {
    let registry = registry();
    if registry.pids.contains_key(&pid.as_raw()) {
        return false;
    }
    // still under the lock: no spawn can register this pid while we reap it (and a zombie's
    // pid cannot be reused before it is reaped)
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => {
            debug!(pid = pid.as_raw(), status = ?describe(status), "reaped an orphan");
            true
        }
        Err(e) => {
            debug!(pid = pid.as_raw(), cause = %e, "cannot reap");
            true
        }
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
        other => format!("{other:?}"),
    }
}

/// Logs how the minion reaps, once, for the binary.
pub fn log_role(role: Role) {
    match role {
        Role::Init => info!("running as PID 1: reaping orphans, stopping daemons in order on SIGTERM"),
        Role::Subreaper => debug!("child subreaper: orphans of daemons are reaped by the minion"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `body` in a fresh copy of this test binary (only the test named `test`), so a
    /// subreaper and its reaper thread never change how other tests' children are waited for.
    /// Returns false in the parent (the body ran in the child), true in the child.
    pub(crate) fn in_own_process(test: &str) -> bool {
        const VAR: &str = "DROVER_TEST_OWN_PROCESS";
        if std::env::var(VAR).as_deref() == Ok(test) {
            return true;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(VAR, test)
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{test} failed in its own process:\n{text}");
        assert!(text.contains("1 passed"), "{test} did not run in its own process:\n{text}");
        false
    }

    /// (state, ppid) of `pid` from /proc, or None once it is gone (reaped).
    pub(crate) fn proc_state(pid: i32) -> Option<(char, i32)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some((state, ppid))
    }

    /// Polls `cond` until true, failing after a generous deadline (no timing assertion).
    pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "gave up waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn orphans_are_reaped_and_managed_children_keep_their_status() {
        if !in_own_process("reaper::tests::orphans_are_reaped_and_managed_children_keep_their_status") {
            return;
        }
        assert_eq!(install().unwrap(), Role::Subreaper);
        let me = nix::unistd::getpid().as_raw();

        // a shell that leaves a background job behind: the job becomes our orphan
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "sleep 0.3 & echo $!"]).stdout(std::process::Stdio::piped());
        let child = spawn_std(&mut cmd).unwrap();
        let Managed { child, _registration } = child;
        let out = child.wait_with_output().unwrap();
        drop(_registration);
        assert!(out.status.success());
        let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // reparented to us (the subreaper), or already exited and reaped
        if let Some((_, ppid)) = proc_state(orphan) {
            assert_eq!(ppid, me, "the orphan was not reparented to the subreaper");
        }
        eventually("the orphan is reaped (no zombie left)", || proc_state(orphan).is_none());

        // managed children exiting at once, many at a time: every owner still gets its status
        let handles: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let mut cmd = std::process::Command::new("/bin/sh");
                        cmd.args(["-c", &format!("exit {i}")]);
                        let mut child = spawn_std(&mut cmd).unwrap();
                        let status = child.wait().expect("the reaper stole a managed child's status");
                        assert_eq!(status.code(), Some(i));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(registry().pids.is_empty());
    }

    #[test]
    fn registrations_count_and_drop() {
        let mut cmd = std::process::Command::new("true");
        let mut child = spawn_std(&mut cmd).unwrap();
        let pid = child.id();
        assert!(is_managed(pid));
        child.wait().unwrap();
        drop(child);
        assert!(!is_managed(pid));
    }
}
