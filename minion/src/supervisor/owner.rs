//! The one task that owns every daemon's state, fed by messages: commands from
//! [`Supervisor`](super::Supervisor) handles, and what its helper tasks report (a process
//! exited, a timer fired, a health check answered). Nothing here blocks or waits: a stop
//! or a start that takes time leaves its reply waiting in the daemon's entry, and a helper
//! task sends the message that completes it. Every message from a helper names the
//! epoch (one per process started) it is about, so a late one is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use render::{DaemonRunning, Restart};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use wire::DaemonHealth;
use wire::msg::Event;

use super::health::{HealthState, Tracker};
use super::log::LogSink;
use super::sys::{Exit, Spawned, Sys, TAG_VAR};
use super::{DaemonInfo, DaemonState, Options, human};
use crate::daemons::DaemonOutcome;

/// Until a health check first passes, checks run at least this often.
const EARLY_PROBE: Duration = Duration::from_secs(1);
/// The first health check runs this soon after the process started (or at the end of the
/// start grace, if that is shorter); until one passes, the wait doubles up to
/// [`EARLY_PROBE`]. A daemon whose check passes is started then, not at the end of its
/// start grace: a fleet slot is ready as soon as its daemons answer.
const FIRST_PROBE: Duration = Duration::from_millis(50);
/// Health checks never run more often than this, whatever the interval says.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(100);

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

#[derive(Debug)]
enum Phase {
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
    fn process(&self) -> Option<(u32, u64, Instant)> {
        match *self {
            Phase::Starting { pid, epoch, at }
            | Phase::Running { pid, epoch, at }
            | Phase::Stopping { pid, epoch, at, .. } => Some((pid, epoch, at)),
            _ => None,
        }
    }

    fn state(&self) -> DaemonState {
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
enum Then {
    Rest,
    Start,
}

/// Why the next start is a restart, for the `restarted` event.
#[derive(Debug)]
struct RestartReason {
    why: &'static str,
    attempt: u32,
    delay: Duration,
}

/// A reply waiting for a start to be confirmed (alive after the grace) or to fail.
struct StartWaiter {
    reply: Reply,
    /// "started worker", completed with " (pid N)"...
    comment: String,
    /// ...or " (pid N; <detail>)".
    detail: &'static str,
    changes: Map<String, Value>,
}

struct Daemon {
    spec: DaemonRunning,
    /// Position in start order (first start of this entry); shutdown goes backwards.
    order: u64,
    phase: Phase,
    since_ms: u64,
    restarts: u32,
    started_once: bool,
    /// Backoff attempts since the daemon last stayed up long enough.
    attempt: u32,
    last_exit: Option<String>,
    log: LogSink,
    health: Option<Tracker>,
    probe: Option<AbortHandle>,
    start_waiters: Vec<StartWaiter>,
    stop_waiters: Vec<Reply>,
    then: Then,
    restart_reason: Option<RestartReason>,
    /// Processes that had left the process group of the process that just ended (and were
    /// killed with it), for [`Owner::ended`] to report.
    escaped: Vec<u32>,
}

pub(super) struct Owner<S: Sys> {
    sys: S,
    options: Options,
    dir: PathBuf,
    /// What follows `<name>@` in every daemon's [`TAG_VAR`]: the daemons' directory and a
    /// random part new for every supervisor, so no other minion (not even one with the same
    /// directory, in a container on this host) shares a tag.
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

    fn ensure(&mut self, spec: DaemonRunning, restart: bool, test: bool, reply: Reply) {
        let name = spec.name.clone();
        if let Err(e) = check_spec(&spec) {
            let _ = reply.send(outcome(false, false, e, json!({})));
            return;
        }
        if self.shutting_down && !test {
            let comment = format!("not starting {name}: the minion is shutting down");
            let _ = reply.send(outcome(false, false, comment, json!({})));
            return;
        }
        let Some(d) = self.daemons.get_mut(&name) else {
            if test {
                let _ = reply.send(outcome(
                    true,
                    true,
                    format!("{name} would be started"),
                    json!({"started": true}),
                ));
                return;
            }
            let log = LogSink::open(self.dir.join(format!("{name}.log")), self.options.rotation);
            let order = self.next_order;
            self.next_order += 1;
            self.daemons.insert(name.clone(), Daemon::new(spec, order, log));
            self.wait_start(&name, reply, format!("started {name}"), Map::new());
            self.launch(&name);
            return;
        };
        let (process, supervision) = differences(&d.spec, &spec);
        match d.phase {
            Phase::Starting { pid, .. } | Phase::Running { pid, .. } => {
                if !process.is_empty() || restart {
                    let (why, comment) = if process.is_empty() {
                        ("watch", format!("restarted {name}: a watched state changed"))
                    } else {
                        ("changed", format!("restarted {name}: its {} changed", process.join(", ")))
                    };
                    let mut changes = Map::new();
                    changes.insert("restarted".into(), json!(true));
                    if !process.is_empty() || !supervision.is_empty() {
                        changes.insert("changed".into(), json!([process.clone(), supervision].concat()));
                    }
                    if test {
                        let comment = comment.replacen("restarted", "would restart", 1);
                        let _ = reply.send(outcome(true, true, comment, Value::Object(changes)));
                        return;
                    }
                    d.spec = spec;
                    d.then = Then::Start;
                    d.restart_reason = Some(RestartReason { why, attempt: 0, delay: Duration::ZERO });
                    self.wait_start(&name, reply, comment, changes);
                    self.begin_stop(&name);
                } else if !supervision.is_empty() {
                    let fields = supervision.join(", ");
                    let changes = json!({"updated": supervision});
                    if test {
                        let comment = format!("{name} would get its new {fields} without a restart");
                        let _ = reply.send(outcome(true, true, comment, changes));
                        return;
                    }
                    let health_changed = d.spec.health != spec.health;
                    d.spec = spec;
                    if health_changed {
                        self.start_probes(&name);
                    }
                    let comment = format!("updated {name}'s {fields} without a restart (pid {pid})");
                    let _ = reply.send(outcome(true, true, comment, changes));
                } else {
                    let comment = format!("{name} is already running (pid {pid})");
                    let _ = reply.send(outcome(true, false, comment, json!({})));
                }
            }
            Phase::Stopping { .. } => {
                let comment = format!("started {name}");
                if test {
                    let _ = reply.send(outcome(
                        true,
                        true,
                        format!("{name} is stopping and would be started again"),
                        json!({"started": true}),
                    ));
                    return;
                }
                d.spec = spec;
                d.then = Then::Start;
                self.wait_start(&name, reply, comment, Map::new());
            }
            Phase::Backoff { .. } | Phase::Stopped | Phase::Failed => {
                let was = match d.phase {
                    Phase::Backoff { .. } => "it was waiting to restart",
                    Phase::Failed => "it had failed",
                    _ => "it was stopped",
                };
                let comment = format!("started {name}");
                if test {
                    let _ = reply.send(outcome(
                        true,
                        true,
                        format!("{name} would be started ({was})"),
                        json!({"started": true}),
                    ));
                    return;
                }
                d.spec = spec;
                d.restart_reason = None;
                self.wait_start(&name, reply, comment, Map::new());
                if let Some(w) = self.daemons.get_mut(&name).and_then(|d| d.start_waiters.last_mut()) {
                    w.detail = was;
                }
                self.launch(&name);
            }
        }
    }

    fn stop(&mut self, name: &str, test: bool, reply: Reply) {
        let Some(d) = self.daemons.get_mut(name) else {
            let _ = reply.send(outcome(
                true,
                false,
                format!("{name} is not running (not supervised)"),
                json!({}),
            ));
            return;
        };
        match d.phase {
            Phase::Starting { pid, .. } | Phase::Running { pid, .. } => {
                if test {
                    let comment = format!("{name} (pid {pid}) would be stopped");
                    let _ = reply.send(outcome(true, true, comment, json!({"stopped": true})));
                    return;
                }
                d.then = Then::Rest;
                d.stop_waiters.push(reply);
                self.begin_stop(name);
            }
            Phase::Stopping { .. } => {
                if test {
                    let _ = reply.send(outcome(
                        true,
                        true,
                        format!("{name} is stopping"),
                        json!({"stopped": true}),
                    ));
                    return;
                }
                d.then = Then::Rest;
                d.stop_waiters.push(reply);
                d.fail_start_waiters(&format!("{name} was stopped before it started"));
            }
            Phase::Backoff { .. } => {
                if test {
                    let comment = format!("{name} would stop restarting");
                    let _ = reply.send(outcome(true, true, comment, json!({"stopped": true})));
                    return;
                }
                d.set_phase(Phase::Stopped);
                d.log.note("no more restarts: stopped on request");
                let comment = format!("stopped {name} (it was waiting to restart)");
                let _ = reply.send(outcome(true, true, comment, json!({"stopped": true})));
            }
            Phase::Stopped | Phase::Failed => {
                let comment = match &d.last_exit {
                    Some(exit) if matches!(d.phase, Phase::Failed) => {
                        format!("{name} is not running (it {exit})")
                    }
                    _ => format!("{name} is already stopped"),
                };
                let _ = reply.send(outcome(true, false, comment, json!({})));
            }
        }
    }

    fn restart(&mut self, name: &str, reply: oneshot::Sender<Option<DaemonOutcome>>) {
        let Some(d) = self.daemons.get_mut(name) else {
            let _ = reply.send(None);
            return;
        };
        let (tx, rx) = oneshot::channel();
        // the reply comes through the usual start waiter
        tokio::spawn(async move {
            if let Ok(o) = rx.await {
                let _ = reply.send(Some(o));
            }
        });
        if self.shutting_down {
            let _ = tx.send(outcome(
                false,
                false,
                format!("not restarting {name}: the minion is shutting down"),
                json!({}),
            ));
            return;
        }
        d.attempt = 0;
        let changes = Map::from_iter([("restarted".to_string(), json!(true))]);
        match d.phase {
            Phase::Starting { .. } | Phase::Running { .. } => {
                d.then = Then::Start;
                d.restart_reason =
                    Some(RestartReason { why: "requested", attempt: 0, delay: Duration::ZERO });
                self.wait_start(name, tx, format!("restarted {name}"), changes);
                self.begin_stop(name);
            }
            Phase::Stopping { .. } => {
                d.then = Then::Start;
                self.wait_start(name, tx, format!("restarted {name}"), changes);
            }
            Phase::Backoff { .. } | Phase::Stopped | Phase::Failed => {
                d.restart_reason = d.started_once.then_some(RestartReason {
                    why: "requested",
                    attempt: 0,
                    delay: Duration::ZERO,
                });
                self.wait_start(name, tx, format!("restarted {name}"), changes);
                self.launch(name);
            }
        }
    }

    fn wait_start(&mut self, name: &str, reply: Reply, comment: String, changes: Map<String, Value>) {
        if let Some(d) = self.daemons.get_mut(name) {
            d.start_waiters.push(StartWaiter { reply, comment, detail: "", changes });
        }
    }

    /// Starts the daemon's process now.
    fn launch(&mut self, name: &str) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let mut spec = d.spec.clone();
        spec.env.insert(TAG_VAR.into(), daemon_tag(&self.tag_base, name));
        match self.sys.spawn(&spec, &d.log) {
            Ok(Spawned { pid, exit }) => {
                if d.started_once {
                    d.restarts += 1;
                }
                d.started_once = true;
                d.set_phase(Phase::Starting { pid, epoch, at: Instant::now() });
                d.log.note(&format!("started pid {pid}: {}", shell_words(&d.spec.cmd)));
                info!(daemon = name, pid, "daemon started");
                let tx = self.internal.clone();
                let exit_name = name.to_string();
                tokio::spawn(async move {
                    let exit = exit.await;
                    let _ = tx.send(Internal::Exited { name: exit_name, epoch, exit });
                });
                let reason = d.restart_reason.take();
                self.timer(name, epoch, Timer::Grace, self.options.start_grace);
                self.start_probes(name);
                self.emit(name, "started", json!({"pid": pid}));
                if let Some(r) = reason {
                    let data = json!({
                        "pid": pid,
                        "attempt": r.attempt,
                        "delay_ms": r.delay.as_millis() as u64,
                        "reason": r.why,
                    });
                    self.emit(name, "restarted", data);
                }
            }
            Err(why) => {
                d.log.note(&format!("cannot start: {why}"));
                warn!(daemon = name, cause = %why, "cannot start daemon");
                let at = Instant::now();
                self.ended(name, epoch, at, Err(why));
            }
        }
    }

    /// Sends the stop signal; SIGKILL follows after the stop timeout.
    fn begin_stop(&mut self, name: &str) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        let Some((pid, epoch, at)) = d.phase.process() else { return };
        if matches!(d.phase, Phase::Stopping { .. }) {
            return;
        }
        let signal = stop_signal(&d.spec.stop_signal);
        let timeout = Duration::from_millis(d.spec.stop_timeout_ms);
        d.log.note(&format!("stopping pid {pid} with {signal}"));
        d.set_phase(Phase::Stopping { pid, epoch, at, signal, killed: false });
        d.stop_probes();
        if d.then != Then::Start {
            d.fail_start_waiters(&format!("{name} was stopped before it started"));
        }
        match signal_daemon(&mut self.sys, &daemon_tag(&self.tag_base, name), pid, signal).group {
            // already gone: its exit is on the way
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => warn!(daemon = name, pid, cause = %e, "cannot signal daemon"),
        }
        self.timer(name, epoch, Timer::Kill, timeout);
    }

    fn on_exit(&mut self, name: &str, epoch: u64, exit: Exit) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        let Some((pid, live_epoch, at)) = d.phase.process() else { return };
        if live_epoch != epoch {
            return;
        }
        // whatever the leader left behind in its group goes with it, and so does what left
        // the group. (The leader was just reaped, so in theory its pid could be reused as a
        // new group's id before this signal; that needs the whole pid space to wrap within
        // these microseconds.)
        let Signalled { group, escaped } =
            signal_daemon(&mut self.sys, &daemon_tag(&self.tag_base, name), pid, Signal::SIGKILL);
        match group {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => debug!(daemon = name, pid, cause = %e, "cannot kill the rest of the group"),
        }
        d.escaped = escaped;
        self.ended(name, epoch, at, Ok(exit));
    }

    /// The process of `epoch` ended (or never started: `Err`).
    fn ended(&mut self, name: &str, epoch: u64, at: Instant, how: Result<Exit, String>) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        let uptime = at.elapsed();
        let was_healthy = d.health.as_ref().is_some_and(|t| t.state == HealthState::Healthy);
        d.stop_probes();
        d.health = None;
        let escaped = std::mem::take(&mut d.escaped);
        let mut what = match &how {
            Ok(exit) => exit.to_string(),
            Err(why) => format!("could not start: {why}"),
        };
        if !escaped.is_empty() && matches!(d.phase, Phase::Stopping { .. }) {
            d.log.note(&format!("killed {}, which had left its process group", pids(&escaped)));
        } else if !escaped.is_empty() {
            // an exit nobody asked for, with processes left outside its group
            what = format!(
                "{what}, leaving {} outside its process group (killed): it forks into the background, \
                 and drover supervises foreground processes; run it in the foreground \
                 (nginx: -g 'daemon off;', redis: --daemonize no)",
                pids(&escaped)
            );
        }
        d.last_exit = Some(what.clone());
        if was_healthy {
            self.emit(name, "health", json!({"healthy": false, "error": format!("the process {what}")}));
        }
        let Some(d) = self.daemons.get_mut(name) else { return };

        if let Phase::Stopping { pid, signal, killed, .. } = d.phase {
            d.log.note(&format!("pid {pid} {what}"));
            let comment = if killed {
                format!(
                    "killed {name} (pid {pid}) with SIGKILL: it outlived {signal} by {}",
                    human(Duration::from_millis(d.spec.stop_timeout_ms))
                )
            } else {
                format!("stopped {name} (pid {pid})")
            };
            info!(daemon = name, pid, killed, "daemon stopped");
            for reply in d.stop_waiters.drain(..) {
                let _ =
                    reply.send(outcome(true, true, comment.clone(), json!({"stopped": true, "pid": pid})));
            }
            let then = std::mem::replace(&mut d.then, Then::Rest);
            d.set_phase(Phase::Stopped);
            self.emit(name, "stopped", json!({"pid": pid, "killed": killed}));
            match then {
                Then::Rest => {}
                Then::Start if self.shutting_down => {
                    if let Some(d) = self.daemons.get_mut(name) {
                        d.fail_start_waiters(&format!("not starting {name}: the minion is shutting down"));
                    }
                }
                Then::Start => self.launch(name),
            }
            return;
        }

        // not asked for: a crash (even with code 0)
        let pid = d.phase.process().map(|(pid, ..)| pid);
        let restart = !self.shutting_down
            && match d.spec.restart {
                Restart::Always => true,
                Restart::OnFailure => how.as_ref().map_or(true, |exit| !exit.success()),
                Restart::Never => false,
            };
        if uptime >= self.options.reset_after {
            d.attempt = 0;
        }
        let next = if restart {
            let delay = backoff_delay(&self.options, d.attempt);
            d.attempt += 1;
            d.restart_reason = Some(RestartReason { why: "crashed", attempt: d.attempt, delay });
            Some(delay)
        } else {
            None
        };
        if let Some(pid) = pid {
            d.log.note(&format!("pid {pid} {what} after {}", human(uptime)));
            warn!(daemon = name, pid, how = %what, "daemon ended");
        }
        let retry = next.map(|delay| format!("; retrying in {}", human(delay))).unwrap_or_default();
        match &how {
            Ok(_) => {
                // whoever reads the failed state (a rollout's reason, `roles status`) sees why
                // in the daemon's own words: its last lines, read off the runtime thread
                let comment = format!("{name} {what} right after it started{retry}");
                let waiters: Vec<StartWaiter> = d.start_waiters.drain(..).collect();
                if !waiters.is_empty() {
                    let path = self.dir.join(format!("{name}.log"));
                    let keep = self.options.rotation.keep;
                    tokio::spawn(quote_output(waiters, comment, path, keep));
                }
            }
            Err(why) => d.fail_start_waiters(&format!("cannot start {name}: {why}{retry}")),
        }
        let mut data = json!({
            "pid": pid,
            "uptime_ms": uptime.as_millis() as u64,
            "restart": next.is_some(),
        });
        match &how {
            Ok(Exit::Code(code)) => data["exit_code"] = json!(code),
            Ok(Exit::Signal(signal)) => {
                data["signal"] =
                    json!(Signal::try_from(*signal).map_or_else(|_| signal.to_string(), |s| s.to_string()))
            }
            Ok(Exit::Unknown) => {}
            Err(why) => data["error"] = json!(why),
        }
        if !escaped.is_empty() {
            data["escaped"] = json!(escaped);
        }
        if let Some(delay) = next {
            data["delay_ms"] = json!(delay.as_millis() as u64);
            d.log.note(&format!("restarting in {}", human(delay)));
            d.set_phase(Phase::Backoff { epoch });
            self.timer(name, epoch, Timer::Restart, delay);
        } else {
            let clean = matches!(how, Ok(exit) if exit.success());
            d.set_phase(if clean { Phase::Stopped } else { Phase::Failed });
        }
        self.emit(name, "crashed", data);
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

    fn on_probe(&mut self, name: &str, epoch: u64, result: Result<(), String>) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        let (Phase::Starting { epoch: g, at, .. } | Phase::Running { epoch: g, at, .. }) = d.phase else {
            return;
        };
        let Some(tracker) = d.health.as_mut().filter(|_| g == epoch) else { return };
        let Some(state) = tracker.record(result, at.elapsed()) else { return };
        let error = tracker.last_error.clone();
        let healthy = state == HealthState::Healthy;
        if healthy {
            // its check passed: started, without waiting out the rest of the start grace
            d.started();
        }
        match &error {
            Some(e) => d.log.note(&format!("unhealthy: {e}")),
            None => d.log.note("healthy"),
        }
        info!(daemon = name, healthy, "daemon health changed");
        self.emit(name, "health", json!({"healthy": healthy, "error": error}));
    }

    /// (Re)starts the health checks of the running process.
    fn start_probes(&mut self, name: &str) {
        let Some(d) = self.daemons.get_mut(name) else { return };
        d.stop_probes();
        d.health = None;
        let Some((_, epoch, _)) = d.phase.process() else { return };
        let Some(health) = d.spec.health.clone() else { return };
        let Some(mut prober) = self.sys.prober(&d.spec) else { return };
        d.health = Some(Tracker::new(&health));
        let interval = Duration::from_millis(health.interval_ms).max(MIN_PROBE_INTERVAL);
        let timeout = Duration::from_millis(health.timeout_ms.max(1));
        let first = self.options.start_grace.min(FIRST_PROBE);
        let tx = self.internal.clone();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let mut wait = first;
            let mut early = first;
            let mut answered = false;
            loop {
                tokio::time::sleep(wait).await;
                let result = match tokio::time::timeout(timeout, prober()).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {}", human(timeout))),
                };
                answered |= result.is_ok();
                if tx.send(Internal::Probe { name: name.clone(), epoch, result }).is_err() {
                    return;
                }
                early = (early * 2).min(EARLY_PROBE);
                wait = if answered { interval } else { interval.min(early) };
            }
        });
        d.probe = Some(task.abort_handle());
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

impl Daemon {
    fn new(spec: DaemonRunning, order: u64, log: LogSink) -> Self {
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

    fn set_phase(&mut self, phase: Phase) {
        if phase.state() != self.phase.state() {
            self.since_ms = wire::msg::now_ms();
        }
        self.phase = phase;
    }

    fn stop_probes(&mut self) {
        if let Some(task) = self.probe.take() {
            task.abort();
        }
    }

    /// A starting process is running: at the end of its start grace, or sooner when its
    /// health check passed; those waiting on its start hear it succeeded.
    fn started(&mut self) {
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

    fn fail_start_waiters(&mut self, comment: &str) {
        for w in self.start_waiters.drain(..) {
            let changed = !w.changes.is_empty();
            let _ = w.reply.send(outcome(false, changed, comment.to_string(), Value::Object(w.changes)));
        }
    }

    /// Whether the daemon is as it should be, for the minion's health: running and passing
    /// its check (if it has one), or stopped on purpose; else why not, in a few words.
    fn health_report(&self, name: &str) -> DaemonHealth {
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

    fn info(&self, name: &str) -> DaemonInfo {
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

/// The value of [`TAG_VAR`] daemon `name` is started with: `<name>@<dir>#<random>`.
fn daemon_tag(tag_base: &str, name: &str) -> String {
    format!("{name}@{tag_base}")
}

/// What [`signal_daemon`] reached.
struct Signalled {
    /// The signal to the process group.
    group: Result<(), Errno>,
    /// The processes outside the group that carry the daemon's tag (each signalled too).
    escaped: Vec<u32>,
}

/// Sends `signal` to the process group `pgid` of the daemon tagged `tag`, and to every
/// process that left the group but carries the tag.
fn signal_daemon<S: Sys>(sys: &mut S, tag: &str, pgid: u32, signal: Signal) -> Signalled {
    let group = sys.kill_group(pgid, signal);
    let escaped = sys.escaped(tag, pgid);
    for &pid in &escaped {
        if let Err(e) = sys.kill_pid(pid, signal) {
            debug!(tag, pid, %signal, cause = %e, "cannot signal a process that left the daemon's group");
        }
    }
    Signalled { group, escaped }
}

/// "pid 7" or "pids 7, 9".
fn pids(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    match list.len() {
        1 => format!("pid {}", list[0]),
        _ => format!("pids {}", list.join(", ")),
    }
}

/// Lines of a daemon's output quoted when it dies right after it started.
const QUOTED_LINES: usize = 6;
/// Its exit is seen (waitpid) before its last output went through its pipe and its log's
/// writer: the quote waits this long for them (once per failed start).
const OUTPUT_SETTLE: Duration = Duration::from_millis(200);

/// Fails `waiters` with `comment` and the daemon's last lines of output (from `log`).
async fn quote_output(waiters: Vec<StartWaiter>, comment: String, log: std::path::PathBuf, keep: u32) {
    tokio::time::sleep(OUTPUT_SETTLE).await;
    let tail = tokio::task::spawn_blocking(move || super::log::tail(&log, QUOTED_LINES, keep)).await;
    let comment = match tail {
        Ok(Ok(tail)) if !tail.trim().is_empty() => {
            format!("{comment}; its last output:\n{}", tail.trim_end())
        }
        _ => comment,
    };
    for w in waiters {
        let changed = !w.changes.is_empty();
        let _ = w.reply.send(outcome(false, changed, comment.clone(), Value::Object(w.changes)));
    }
}

fn outcome(result: bool, changed: bool, comment: String, changes: Value) -> DaemonOutcome {
    DaemonOutcome { result, changed, comment, changes }
}

/// A daemon name names its log file: letters, digits, `.`, `_`, `-`, `@`, not led by `.`.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "daemon name {name:?} cannot name its log file: use up to 128 letters, digits, '.', '_', '-' or '@' (not a leading '.')"
        ))
    }
}

fn check_spec(spec: &DaemonRunning) -> Result<(), String> {
    check_name(&spec.name)?;
    if spec.cmd.first().is_none_or(String::is_empty) {
        return Err(format!("{}: cmd is empty; expected the program and its arguments", spec.name));
    }
    Ok(())
}

/// The fields that differ: those that need a new process, and those the supervisor applies
/// in place.
fn differences(old: &DaemonRunning, new: &DaemonRunning) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut process = Vec::new();
    let mut supervision = Vec::new();
    if old.cmd != new.cmd {
        process.push("cmd");
    }
    if old.user != new.user {
        process.push("user");
    }
    if old.env != new.env {
        process.push("env");
    }
    if old.cwd != new.cwd {
        process.push("cwd");
    }
    if old.restart != new.restart {
        supervision.push("restart");
    }
    if old.health != new.health {
        supervision.push("health");
    }
    if old.stop_signal != new.stop_signal {
        supervision.push("stop_signal");
    }
    if old.stop_timeout_ms != new.stop_timeout_ms {
        supervision.push("stop_timeout");
    }
    (process, supervision)
}

/// `SIGTERM` (render checked the name; anything else falls back to SIGTERM).
fn stop_signal(name: &str) -> Signal {
    Signal::from_str(name).unwrap_or(Signal::SIGTERM)
}

/// The wait before restart `attempt` (0-based): a ceiling doubling from `backoff_min` up to
/// `backoff_max`, and a wait drawn between half of it and all of it (jitter that never
/// collapses to a busy loop).
pub(super) fn backoff_delay(options: &Options, attempt: u32) -> Duration {
    let ceiling = options.backoff_min.saturating_mul(1u32 << attempt.min(20)).min(options.backoff_max);
    let half = u64::try_from(ceiling.as_nanos() / 2).unwrap_or(u64::MAX);
    Duration::from_nanos(half + fastrand::u64(0..=half))
}

/// An argv as one would type it.
fn shell_words(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}
