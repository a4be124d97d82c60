//! The daemon supervisor: starts, watches, restarts and stops the daemons the applied
//! states ask for.
//!
//! - `owner`: the one task that owns every daemon's state, fed by messages.
//! - `sys`: the system calls behind the `Sys` trait (spawn, signal a group, wait, probes).
//! - `health`: tcp / http / exec checks and the failure count that turns a daemon unhealthy.
//! - `log`: `DIR/daemons/<name>.log`, rotated by size, and reading its tail.
//!
//! A daemon runs in its own process group, as its `user` (root only), with its `env` and
//! `cwd`; stdout and stderr go to its log. When it exits without being asked, that is a
//! crash (`daemon/<name>/crashed`, which the master files as `drover/minion/<id>/daemon/…`); by its restart policy it is started again after a
//! backoff (200 ms doubling to 30 s, jittered, reset once it stayed up 10 s), each restart an
//! event (`…/restarted`), each change of health one too (`…/health`). Stopping is data: the
//! spec's `{stop_signal, stop_timeout}` — the signal to the group, SIGKILL to the group once
//! the timeout passed, and SIGKILL to whatever the leader left in its group once it exited.
//!
//! [`Supervisor`] is a cheap handle; [`Supervisor::shutdown`] stops every daemon, one at a
//! time, latest started first (the states start them in dependency order, so this is
//! reverse dependency order), and must be awaited before the minion exits.

mod health;
mod log;
mod owner;
mod sys;

#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod real_tests;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use wire::DaemonHealth;
use wire::msg::Event;

use crate::daemons::{DaemonOutcome, Daemons};
pub use health::HealthState;
pub use log::Rotation;
use owner::{Cmd, Owner};
pub use sys::Exit;
use sys::{RealSys, Sys};

/// How the supervisor times things; [`Options::default`] is what the minion uses.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// A process still alive this long after its start counts as started (dying sooner
    /// fails the `daemon.running` state).
    pub start_grace: Duration,
    /// First backoff ceiling after a crash; it doubles with each crash...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// A daemon that stayed up this long starts again from the shortest backoff.
    pub reset_after: Duration,
    /// How long to wait for a process to end after SIGKILL before giving up on it.
    pub kill_grace: Duration,
    pub rotation: Rotation,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start_grace: Duration::from_millis(500),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
            kill_grace: Duration::from_secs(5),
            rotation: Rotation::default(),
        }
    }
}

/// Where a daemon stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    /// Started, within its start grace.
    Starting,
    Running,
    /// Crashed; waiting to start again.
    Backoff,
    /// Signalled; waiting for it to end.
    Stopping,
    /// Not running: stopped on request, or ended cleanly and not to be restarted.
    Stopped,
    /// Not running: ended with an error and not to be restarted, or could not be stopped.
    Failed,
}

impl DaemonState {
    /// Its name in `daemon.list` and in the minion's health.
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Running => "running",
            DaemonState::Backoff => "backoff",
            DaemonState::Stopping => "stopping",
            DaemonState::Stopped => "stopped",
            DaemonState::Failed => "failed",
        }
    }
}

/// One daemon as `daemon.list` and `daemon.status` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DaemonInfo {
    pub name: String,
    /// Its process (and process group) while it has one.
    pub pid: Option<u32>,
    pub state: DaemonState,
    /// How many times it was started again after its first start.
    pub restarts: u32,
    /// Its health check's verdict while it runs; none without a check.
    pub health: Option<HealthState>,
    /// Why the last health check failed, if it did.
    pub health_error: Option<String>,
    /// When `state` last changed (ms since the epoch).
    pub since_ms: u64,
    pub cmd: Vec<String>,
    pub user: Option<String>,
    /// How its last process ended: "exited with code 1", "killed by SIGKILL".
    pub last_exit: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no daemon named '{0}' is supervised on this minion (daemon.list shows them)")]
    Unknown(String),
    #[error("the daemon supervisor is not running")]
    Gone,
    #[error("cannot read the log of {name}: {source}")]
    Log { name: String, source: std::io::Error },
}

/// A handle on the supervisor; clones share it. Dropping every handle without
/// [`shutdown`](Self::shutdown) kills every daemon's group at once.
#[derive(Clone, Debug)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Cmd>,
    dir: PathBuf,
    rotation: Rotation,
    health: watch::Receiver<Vec<DaemonHealth>>,
}

impl Supervisor {
    /// Starts the supervisor (on the current tokio runtime) with its files in `dir`
    /// (`DIR/daemons`) and its events sent to `events`.
    pub fn start(dir: PathBuf, events: mpsc::UnboundedSender<Event>) -> Supervisor {
        Self::start_with(dir, events, Options::default(), RealSys)
    }

    pub(crate) fn start_with<S: Sys>(
        dir: PathBuf,
        events: mpsc::UnboundedSender<Event>,
        options: Options,
        sys: S,
    ) -> Supervisor {
        let (tx, cmds) = mpsc::unbounded_channel();
        let (internal_tx, internal) = mpsc::unbounded_channel();
        let (health_tx, health) = watch::channel(Vec::new());
        let owner = Owner::new(sys, options, dir.clone(), events, internal_tx, health_tx);
        tokio::spawn(owner.run(cmds, internal));
        Supervisor { tx, dir, rotation: options.rotation, health }
    }

    /// Every daemon's health, in start order, for the minion's own (see `crate::health`):
    /// the owner publishes it whenever it changes.
    pub fn health(&self) -> watch::Receiver<Vec<DaemonHealth>> {
        self.health.clone()
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, SupervisorError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(cmd(reply)).map_err(|_| SupervisorError::Gone)?;
        answer.await.map_err(|_| SupervisorError::Gone)
    }

    /// Sends `signal` to the process group of every running daemon; returns their names.
    /// As PID 1 the minion forwards SIGHUP, SIGUSR1 and SIGUSR2 this way (`docker kill -s HUP`
    /// reaches the daemons, e.g. to reload their configuration).
    pub async fn signal_all(&self, signal: nix::sys::signal::Signal) -> Vec<String> {
        self.ask(|reply| Cmd::Signal { signal, reply }).await.unwrap_or_default()
    }

    /// Every supervised daemon, in start order.
    pub async fn list(&self) -> Vec<DaemonInfo> {
        self.ask(|reply| Cmd::List { reply }).await.unwrap_or_default()
    }

    /// One daemon, if supervised.
    pub async fn status(&self, name: &str) -> Option<DaemonInfo> {
        self.list().await.into_iter().find(|d| d.name == name)
    }

    /// Stops the daemon (if it runs) and starts it again; answers once the new process
    /// lived through its start grace, or failed to.
    pub async fn restart(&self, name: &str) -> Result<DaemonOutcome, SupervisorError> {
        let name = name.to_string();
        self.ask(|reply| Cmd::Restart { name: name.clone(), reply })
            .await?
            .ok_or(SupervisorError::Unknown(name))
    }

    /// The last `lines` lines of the daemon's output (reaching into rotated files), with the
    /// supervisor's own notes (`[drover] …`). Also for a daemon no longer supervised whose
    /// log is still there.
    pub async fn logs(&self, name: &str, lines: usize) -> Result<String, SupervisorError> {
        let unknown = || SupervisorError::Unknown(name.to_string());
        owner::check_name(name).map_err(|_| unknown())?;
        let path = self.dir.join(format!("{name}.log"));
        let known = self.ask(|reply| Cmd::Known { name: name.to_string(), reply }).await?;
        if !known && !path.exists() {
            return Err(unknown());
        }
        let keep = self.rotation.keep;
        let read = tokio::task::spawn_blocking(move || log::tail(&path, lines, keep)).await;
        match read {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(source)) => Err(SupervisorError::Log { name: name.to_string(), source }),
            Err(e) => Err(SupervisorError::Log { name: name.to_string(), source: std::io::Error::other(e) }),
        }
    }

    /// Stops every daemon, one at a time, latest started first, each with its stop signal
    /// and then SIGKILL after its stop timeout; returns once all have ended. From then on
    /// nothing starts or restarts. Call it once the minion is asked to stop (SIGTERM).
    pub async fn shutdown(&self) {
        let Ok(names) = self.ask(|reply| Cmd::Plan { keep: None, reply }).await else { return };
        for name in names {
            self.stop(&name, false).await;
        }
    }

    async fn stop(&self, name: &str, test: bool) -> DaemonOutcome {
        let name = name.to_string();
        self.ask(|reply| Cmd::Stop { name, test, reply }).await.unwrap_or_else(gone)
    }
}

fn gone(e: SupervisorError) -> DaemonOutcome {
    DaemonOutcome { result: false, changed: false, comment: e.to_string(), changes: serde_json::json!({}) }
}

impl Daemons for Supervisor {
    async fn ensure_running(&self, spec: &render::DaemonRunning, restart: bool, test: bool) -> DaemonOutcome {
        let spec = Box::new(spec.clone());
        self.ask(|reply| Cmd::Ensure { spec, restart, test, reply }).await.unwrap_or_else(gone)
    }

    async fn ensure_stopped(&self, name: &str, test: bool) -> DaemonOutcome {
        self.stop(name, test).await
    }

    /// Stops the others one at a time, latest started first, then forgets them.
    async fn retain(&self, keep: &BTreeSet<String>) -> Vec<String> {
        let keep = keep.clone();
        let Ok(names) = self.ask(|reply| Cmd::Plan { keep: Some(keep), reply }).await else {
            return Vec::new();
        };
        let mut stopped = Vec::new();
        for name in &names {
            if self.stop(name, false).await.changed {
                stopped.push(name.clone());
            }
        }
        let _ = self.ask(|reply| Cmd::Forget { names, reply }).await;
        stopped
    }
}

/// A duration as people write it: `300ms`, `10s`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = (d.as_millis() as f64 / 100.0).round() / 10.0;
    if secs.fract() == 0.0 { format!("{secs:.0}s") } else { format!("{secs:.1}s") }
}

/// A daemon spec for tests: `cmd`, restarted always, stopped with SIGTERM then SIGKILL after 10 s.
#[cfg(test)]
fn test_spec(name: &str, cmd: Vec<String>) -> render::DaemonRunning {
    render::DaemonRunning {
        name: name.into(),
        cmd,
        user: None,
        env: std::collections::BTreeMap::new(),
        cwd: None,
        restart: render::Restart::Always,
        health: None,
        stop_signal: "SIGTERM".into(),
        stop_timeout_ms: 10_000,
    }
}
