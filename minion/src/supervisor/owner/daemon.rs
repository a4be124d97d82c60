//! One daemon's entry in the owner: its spec, its `Phase` (the live process, if any, with
//! the epoch that names it), its waiting replies, and what it reports (`health_report`,
//! `info`). Plain state with no I/O: the owner's files decide, this one remembers.

use std::time::Duration;

use nix::sys::signal::Signal;
use render::DaemonRunning;
use serde_json::{Map, Value, json};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use wire::DaemonHealth;

use super::{Reply, outcome};
use crate::supervisor::health::{HealthState, Tracker};
use crate::supervisor::log::LogSink;
use crate::supervisor::{DaemonInfo, DaemonState};

#[derive(Debug)]
pub(super) enum Phase {
    Starting {
        pid: u32,
        epoch: u64,
        at: Instant,
    },
    Running {
        pid: u32,
        epoch: u64,
        at: Instant,
    },
    /// Crashed; restarts when the timer of this epoch fires.
    Backoff {
        epoch: u64,
    },
    Stopping {
        pid: u32,
        epoch: u64,
        at: Instant,
        signal: Signal,
        killed: bool,
    },
    Stopped,
    Failed,
}

impl Phase {
    /// The live process: pid, epoch, when it started.
    pub(super) fn process(&self) -> Option<(u32, u64, Instant)> {
        match *self {
            Phase::Starting { pid, epoch, at }
            | Phase::Running { pid, epoch, at }
            | Phase::Stopping { pid, epoch, at, .. } => Some((pid, epoch, at)),
            _ => None,
        }
    }

    pub(super) fn state(&self) -> DaemonState {
        match self {
            Phase::Starting { .. } => DaemonState::Starting,
            Phase::Running { .. } => DaemonState::Running,
            Phase::Backoff { .. } => DaemonState::Backoff,
            Phase::Stopping { .. } => DaemonState::Stopping,
            Phase::Stopped => DaemonState::Stopped,
            Phase::Failed => DaemonState::Failed,
        }
    }
}

/// What to do once the process being stopped has exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Then {
    Rest,
    Start,
}

/// Why the next start is a restart, for the `restarted` event.
#[derive(Debug)]
pub(super) struct RestartReason {
    pub(super) why: &'static str,
    pub(super) attempt: u32,
    pub(super) delay: Duration,
}

/// A reply waiting for a start to be confirmed (alive after the grace) or to fail.
pub(super) struct StartWaiter {
    pub(super) reply: Reply,
    /// "started worker", completed with " (pid N)"...
    pub(super) comment: String,
    /// ...or " (pid N; <detail>)".
    pub(super) detail: &'static str,
    pub(super) changes: Map<String, Value>,
}

pub(super) struct Daemon {
    pub(super) spec: DaemonRunning,
    /// Position in start order (first start of this entry); shutdown goes backwards.
    pub(super) order: u64,
    pub(super) phase: Phase,
    pub(super) since_ms: u64,
    pub(super) restarts: u32,
    pub(super) started_once: bool,
    /// Backoff attempts since the daemon last stayed up long enough.
    pub(super) attempt: u32,
    pub(super) last_exit: Option<String>,
    pub(super) log: LogSink,
    pub(super) health: Option<Tracker>,
    pub(super) probe: Option<AbortHandle>,
    pub(super) start_waiters: Vec<StartWaiter>,
    pub(super) stop_waiters: Vec<Reply>,
    pub(super) then: Then,
    pub(super) restart_reason: Option<RestartReason>,
    /// Processes that had left the process group of the process that just ended (and were
    /// killed with it), for [`Owner::ended`](super::Owner::ended) to report.
    pub(super) escaped: Vec<u32>,
}

impl Daemon {
    pub(super) fn new(spec: DaemonRunning, order: u64, log: LogSink) -> Self {
        Self {
            spec,
            order,
            phase: Phase::Stopped,
            since_ms: wire::msg::now_ms(),
            restarts: 0,
            started_once: false,
            attempt: 0,
            last_exit: None,
            log,
            health: None,
            probe: None,
            start_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            then: Then::Rest,
            restart_reason: None,
            escaped: Vec::new(),
        }
    }

    pub(super) fn set_phase(&mut self, phase: Phase) {
        if phase.state() != self.phase.state() {
            self.since_ms = wire::msg::now_ms();
        }
        self.phase = phase;
    }

    pub(super) fn stop_probes(&mut self) {
        if let Some(task) = self.probe.take() {
            task.abort();
        }
    }

    /// A starting process is running: at the end of its start grace, or sooner when its
    /// health check passed; those waiting on its start hear it succeeded.
    pub(super) fn started(&mut self) {
        let Phase::Starting { pid, epoch, at } = self.phase else { return };
        self.set_phase(Phase::Running { pid, epoch, at });
        for w in self.start_waiters.drain(..) {
            let mut changes = w.changes;
            changes.insert("pid".into(), json!(pid));
            let _ = w.reply.send(outcome(
                true,
                true,
                match w.detail {
                    "" => format!("{} (pid {pid})", w.comment),
                    detail => format!("{} (pid {pid}; {detail})", w.comment),
                },
                Value::Object(changes),
            ));
        }
    }

    pub(super) fn fail_start_waiters(&mut self, comment: &str) {
        for w in self.start_waiters.drain(..) {
            let changed = !w.changes.is_empty();
            let _ = w.reply.send(outcome(false, changed, comment.to_string(), Value::Object(w.changes)));
        }
    }

    /// Whether the daemon is as it should be, for the minion's health: running and passing
    /// its check (if it has one), or stopped on purpose; else why not, in a few words.
    pub(super) fn health_report(&self, name: &str) -> DaemonHealth {
        let state = self.phase.state();
        let exit = || self.last_exit.clone().unwrap_or_else(|| "ended".into());
        let problem = match state {
            DaemonState::Running => match &self.health {
                Some(t) if t.state == HealthState::Unhealthy => Some(format!(
                    "unhealthy: {}",
                    t.last_error.as_deref().unwrap_or("its health check fails")
                )),
                Some(t) if t.state == HealthState::Unknown => Some(match &t.last_error {
                    Some(e) => format!("its health check has not passed yet: {e}"),
                    None => "its health check has not passed yet".into(),
                }),
                _ => None,
            },
            DaemonState::Starting => Some("starting".into()),
            DaemonState::Backoff => Some(format!("{} (restarting)", exit())),
            DaemonState::Stopping => Some("stopping".into()),
            DaemonState::Stopped => None,
            DaemonState::Failed => Some(format!("{} (not restarted)", exit())),
        };
        DaemonHealth {
            name: name.to_string(),
            state: state.as_str().into(),
            healthy: problem.is_none(),
            problem,
        }
    }

    pub(super) fn info(&self, name: &str) -> DaemonInfo {
        let live = matches!(self.phase, Phase::Starting { .. } | Phase::Running { .. });
        let health = self.health.as_ref().filter(|_| live);
        DaemonInfo {
            name: name.to_string(),
            pid: self.phase.process().map(|(pid, ..)| pid),
            state: self.phase.state(),
            restarts: self.restarts,
            health: health.map(|t| t.state),
            health_error: health.and_then(|t| t.last_error.clone()),
            since_ms: self.since_ms,
            cmd: self.spec.cmd.clone(),
            user: self.spec.user.clone(),
            last_exit: self.last_exit.clone(),
        }
    }
}
