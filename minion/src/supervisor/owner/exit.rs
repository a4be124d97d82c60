//! A process ended. Asked to (a stop): the stop's replies are answered and a restart that
//! waited for it goes on. Not asked to (a crash, even with code 0): the restart policy and
//! its backoff decide what follows, and a start that was waiting fails with the daemon's
//! last lines of output. The owner's longest path, apart so the others read without it.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use render::Restart;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::daemon::{Phase, RestartReason, StartWaiter, Then};
use super::process::{Signalled, daemon_tag, signal_daemon};
use super::{Owner, Timer, outcome};
use crate::supervisor::health::HealthState;
use crate::supervisor::sys::{Exit, Sys};
use crate::supervisor::{Options, human};

impl<S: Sys> Owner<S> {
    pub(super) fn on_exit(&mut self, name: &str, epoch: u64, exit: Exit) {
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
    pub(super) fn ended(&mut self, name: &str, epoch: u64, at: Instant, how: Result<Exit, String>) {
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
    let tail =
        tokio::task::spawn_blocking(move || crate::supervisor::log::tail(&log, QUOTED_LINES, keep)).await;
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

/// The wait before restart `attempt` (0-based): a ceiling doubling from `backoff_min` up to
/// `backoff_max`, and a wait drawn between half of it and all of it (jitter that never
/// collapses to a busy loop).
fn backoff_delay(options: &Options, attempt: u32) -> Duration {
    let ceiling = options.backoff_min.saturating_mul(1u32 << attempt.min(20)).min(options.backoff_max);
    let half = u64::try_from(ceiling.as_nanos() / 2).unwrap_or(u64::MAX);
    Duration::from_nanos(half + fastrand::u64(0..=half))
}
