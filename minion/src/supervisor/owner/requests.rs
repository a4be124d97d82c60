//! What the handles ask of one daemon: `ensure` (start it, or update it in place, or
//! restart it for a changed process or a watch), `stop` and `restart`, each decided by the
//! daemon's phase, with the dry run (`test`) beside the real one. The checks of a spec
//! and the comparison of two specs are here because only these requests need them.

use std::time::Duration;

use render::DaemonRunning;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use super::daemon::{Daemon, Phase, RestartReason, StartWaiter, Then};
use super::{Owner, Reply, outcome};
use crate::daemons::DaemonOutcome;
use crate::supervisor::log::LogSink;
use crate::supervisor::sys::Sys;

impl<S: Sys> Owner<S> {
    pub(super) fn ensure(&mut self, spec: DaemonRunning, restart: bool, test: bool, reply: Reply) {
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

    pub(super) fn stop(&mut self, name: &str, test: bool, reply: Reply) {
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

    pub(super) fn restart(&mut self, name: &str, reply: oneshot::Sender<Option<DaemonOutcome>>) {
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

    pub(super) fn wait_start(
        &mut self,
        name: &str,
        reply: Reply,
        comment: String,
        changes: Map<String, Value>,
    ) {
        if let Some(d) = self.daemons.get_mut(name) {
            d.start_waiters.push(StartWaiter { reply, comment, detail: "", changes });
        }
    }
}

/// A daemon name names its log file: letters, digits, `.`, `_`, `-`, `@`, not led by `.`.
pub(in crate::supervisor) fn check_name(name: &str) -> Result<(), String> {
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
