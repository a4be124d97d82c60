//! The one task that owns every daemon's state, fed by messages: commands from
//! [`Supervisor`](super::Supervisor) handles, and what its helper tasks report (a process
//! exited, a timer fired, a health check answered). Nothing here blocks or waits: a stop
//! or a start that takes time leaves its reply waiting in the daemon's entry, and a helper
//! task sends the message that completes it. Every message from a helper names the
//! epoch (one per process started) it is about, so a late one is ignored.
//!
//! This file holds the messages, the owner and its loop; the rest is one file per concern:
//! - `daemon`: one daemon's entry (`Daemon`, its `Phase`) and what it reports.
//! - `requests`: what each handle's request (ensure, stop, restart) means in each phase.
//! - `process`: starting a process, stopping it, signalling its group.
//! - `exit`: a process ended: a stop completed, or a crash and its restart backoff.
//! - `probes`: the health checks of a running process.

mod daemon;
mod exit;
mod probes;
mod process;
mod requests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use render::DaemonRunning;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};
use wire::DaemonHealth;
use wire::msg::Event;

use super::sys::{Exit, Sys};
use super::{DaemonInfo, Options, human};
use crate::daemons::DaemonOutcome;
use daemon::{Daemon, Phase, Then};
use process::{daemon_tag, signal_daemon};

pub(super) use requests::check_name;

pub(super) type Reply = oneshot::Sender<DaemonOutcome>;

/// What a [`Supervisor`](super::Supervisor) handle asks.
pub(super) enum Cmd {
    Ensure {
        spec: Box<DaemonRunning>,
        restart: bool,
        test: bool,
        reply: Reply,
    },
    Stop {
        name: String,
        test: bool,
        reply: Reply,
    },
    /// `None` as the answer: no such daemon.
    Restart {
        name: String,
        reply: oneshot::Sender<Option<DaemonOutcome>>,
    },
    List {
        reply: oneshot::Sender<Vec<DaemonInfo>>,
    },
    /// The daemons not in `keep` (all with `None`, which also starts the shutdown: no more
    /// starts or restarts), latest started first.
    Plan {
        keep: Option<BTreeSet<String>>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Forgets these daemons if they are stopped.
    Forget {
        names: Vec<String>,
        reply: oneshot::Sender<()>,
    },
    /// Sends a signal to every running daemon's process group (PID 1 forwarding).
    Signal {
        signal: nix::sys::signal::Signal,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Whether a daemon of that name is supervised.
    Known {
        name: String,
        reply: oneshot::Sender<bool>,
    },
}

/// What helper tasks report.
pub(super) enum Internal {
    Exited { name: String, epoch: u64, exit: Exit },
    Timer { name: String, epoch: u64, timer: Timer },
    Probe { name: String, epoch: u64, result: Result<(), String> },
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Timer {
    /// The start grace is over: a process still alive counts as started.
    Grace,
    /// The backoff after a crash is over: start again.
    Restart,
    /// The stop timeout is over: SIGKILL the group.
    Kill,
    /// Even SIGKILL did not end it: stop waiting.
    GiveUp,
}

pub(super) struct Owner<S: Sys> {
    sys: S,
    options: Options,
    dir: PathBuf,
    /// What follows `<name>@` in every daemon's [`TAG_VAR`](super::sys::TAG_VAR): the
    /// daemons' directory and a random part new for every supervisor, so no other minion (not
    /// even one with the same directory, in a container on this host) shares a tag.
    tag_base: String,
    events: mpsc::UnboundedSender<Event>,
    internal: mpsc::UnboundedSender<Internal>,
    /// Every daemon's health, in start order, published after every message that changed it.
    health: watch::Sender<Vec<DaemonHealth>>,
    daemons: BTreeMap<String, Daemon>,
    next_order: u64,
    next_epoch: u64,
    shutting_down: bool,
}

impl<S: Sys> Owner<S> {
    pub(super) fn new(
        sys: S,
        options: Options,
        dir: PathBuf,
        events: mpsc::UnboundedSender<Event>,
        internal: mpsc::UnboundedSender<Internal>,
        health: watch::Sender<Vec<DaemonHealth>>,
    ) -> Self {
        if let Err(e) = wire::private::create_dir(&dir) {
            warn!(dir = %dir.display(), cause = %e, "cannot create the daemons' directory; their output will be lost");
        }
        let tag_base = format!("{}#{:016x}", dir.display(), fastrand::u64(..));
        Self {
            sys,
            options,
            dir,
            tag_base,
            events,
            internal,
            health,
            daemons: BTreeMap::new(),
            next_order: 0,
            next_epoch: 0,
            shutting_down: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        loop {
            tokio::select! {
                biased;
                Some(msg) = internal.recv() => self.on_internal(msg),
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    // every handle is gone: Drop kills what still runs
                    None => break,
                },
            }
            self.publish_health();
        }
    }

    /// Publishes every daemon's health, if it changed.
    fn publish_health(&self) {
        let mut daemons: Vec<(u64, DaemonHealth)> =
            self.daemons.iter().map(|(name, d)| (d.order, d.health_report(name))).collect();
        daemons.sort_by_key(|(order, _)| *order);
        let now: Vec<DaemonHealth> = daemons.into_iter().map(|(_, h)| h).collect();
        self.health.send_if_modified(|published| {
            let changed = *published != now;
            if changed {
                *published = now;
            }
            changed
        });
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Ensure { spec, restart, test, reply } => self.ensure(*spec, restart, test, reply),
            Cmd::Stop { name, test, reply } => self.stop(&name, test, reply),
            Cmd::Restart { name, reply } => self.restart(&name, reply),
            Cmd::Signal { signal, reply } => {
                let mut sent = Vec::new();
                for (name, d) in &self.daemons {
                    if let Some((pid, ..)) = d.phase.process()
                        && signal_daemon(&mut self.sys, &daemon_tag(&self.tag_base, name), pid, signal)
                            .group
                            .is_ok()
                    {
                        sent.push(name.clone());
                    }
                }
                let _ = reply.send(sent);
            }
            Cmd::List { reply } => {
                let mut infos: Vec<(u64, DaemonInfo)> =
                    self.daemons.iter().map(|(name, d)| (d.order, d.info(name))).collect();
                infos.sort_by_key(|(order, _)| *order);
                let _ = reply.send(infos.into_iter().map(|(_, info)| info).collect());
            }
            Cmd::Plan { keep, reply } => {
                if keep.is_none() {
                    self.shutting_down = true;
                }
                let mut names: Vec<(u64, String)> = self
                    .daemons
                    .iter()
                    .filter(|(name, _)| keep.as_ref().is_none_or(|keep| !keep.contains(*name)))
                    .map(|(name, d)| (d.order, name.clone()))
                    .collect();
                names.sort_by_key(|(order, _)| std::cmp::Reverse(*order));
                let _ = reply.send(names.into_iter().map(|(_, name)| name).collect());
            }
            Cmd::Forget { names, reply } => {
                for name in names {
                    let stopped = self
                        .daemons
                        .get(&name)
                        .is_some_and(|d| matches!(d.phase, Phase::Stopped | Phase::Failed));
                    if stopped {
                        self.daemons.remove(&name);
                    }
                }
                let _ = reply.send(());
            }
            Cmd::Known { name, reply } => {
                let _ = reply.send(self.daemons.contains_key(&name));
            }
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Exited { name, epoch, exit } => self.on_exit(&name, epoch, exit),
            Internal::Timer { name, epoch, timer } => self.on_timer(&name, epoch, timer),
            Internal::Probe { name, epoch, result } => self.on_probe(&name, epoch, result),
        }
    }

    fn on_timer(&mut self, name: &str, epoch: u64, timer: Timer) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        match (timer, &d.phase) {
            (Timer::Grace, &Phase::Starting { epoch: g, .. }) if g == epoch => d.started(),
            (Timer::Restart, &Phase::Backoff { epoch: g, .. }) if g == epoch => self.launch(name),
            (Timer::Kill, &Phase::Stopping { pid, epoch: g, at, signal, killed: false }) if g == epoch => {
                d.log.note(&format!(
                    "pid {pid} still runs {} after {signal}: SIGKILL",
                    human(Duration::from_millis(d.spec.stop_timeout_ms))
                ));
                d.set_phase(Phase::Stopping { pid, epoch, at, signal, killed: true });
                if let Err(e) =
                    signal_daemon(&mut self.sys, &daemon_tag(&self.tag_base, name), pid, Signal::SIGKILL)
                        .group
                {
                    debug!(daemon = name, pid, cause = %e, "cannot kill daemon");
                }
                self.timer(name, epoch, Timer::GiveUp, self.options.kill_grace);
            }
            (Timer::GiveUp, &Phase::Stopping { pid, epoch: g, killed: true, .. }) if g == epoch => {
                let comment =
                    format!("{name} (pid {pid}) did not end even after SIGKILL (stuck in the kernel?)");
                d.log.note(&comment);
                warn!(daemon = name, pid, "daemon did not end after SIGKILL");
                for reply in d.stop_waiters.drain(..) {
                    let _ = reply.send(outcome(false, true, comment.clone(), json!({})));
                }
                d.fail_start_waiters(&comment);
                d.then = Then::Rest;
                d.set_phase(Phase::Failed);
            }
            _ => {}
        }
    }

    fn timer(&self, name: &str, epoch: u64, timer: Timer, after: Duration) {
        let tx = self.internal.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Internal::Timer { name, epoch, timer });
        });
    }

    /// Sends `daemon/<name>/<what>` with `data` (and the daemon's name in it); the master
    /// files it under this minion's namespace (`drover/minion/<id>/daemon/<name>/<what>`).
    fn emit(&self, name: &str, what: &str, mut data: Value) {
        if let Value::Object(map) = &mut data {
            map.insert("name".into(), json!(name));
        }
        let event = Event { tag: format!("daemon/{name}/{what}"), data, time_ms: wire::msg::now_ms() };
        let _ = self.events.send(event);
    }
}

impl<S: Sys> Drop for Owner<S> {
    /// The supervisor is going away without a shutdown (every handle dropped, or the
    /// runtime stopped): leave no daemon behind.
    fn drop(&mut self) {
        for (name, d) in &self.daemons {
            if let Some((pid, ..)) = d.phase.process() {
                debug!(daemon = name.as_str(), pid, "killing daemon: the supervisor is gone");
                let _ = signal_daemon(&mut self.sys, &daemon_tag(&self.tag_base, name), pid, Signal::SIGKILL);
            }
        }
    }
}

fn outcome(result: bool, changed: bool, comment: String, changes: Value) -> DaemonOutcome {
    DaemonOutcome { result, changed, comment, changes }
}
