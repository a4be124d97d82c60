//! A daemon's process: starting it (`launch`, with its tag in the environment), stopping it
//! (the stop signal, SIGKILL after the timeout), and signalling its process group and
//! whatever left the group carrying its tag. The one place that reaches `Sys` to spawn or
//! to signal.

use std::str::FromStr;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::daemon::{Phase, Then};
use super::{Internal, Owner, Timer};
use crate::supervisor::sys::{Spawned, Sys, TAG_VAR};

impl<S: Sys> Owner<S> {
    /// Starts the daemon's process now.
    pub(super) fn launch(&mut self, name: &str) {
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
    pub(super) fn begin_stop(&mut self, name: &str) {
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
}

/// The value of [`TAG_VAR`] daemon `name` is started with: `<name>@<dir>#<random>`.
pub(super) fn daemon_tag(tag_base: &str, name: &str) -> String {
    format!("{name}@{tag_base}")
}

/// What [`signal_daemon`] reached.
pub(super) struct Signalled {
    /// The signal to the process group.
    pub(super) group: Result<(), Errno>,
    /// The processes outside the group that carry the daemon's tag (each signalled too).
    pub(super) escaped: Vec<u32>,
}

/// Sends `signal` to the process group `pgid` of the daemon tagged `tag`, and to every
/// process that left the group but carries the tag.
pub(super) fn signal_daemon<S: Sys>(sys: &mut S, tag: &str, pgid: u32, signal: Signal) -> Signalled {
    let group = sys.kill_group(pgid, signal);
    let escaped = sys.escaped(tag, pgid);
    for &pid in &escaped {
        if let Err(e) = sys.kill_pid(pid, signal) {
            debug!(tag, pid, %signal, cause = %e, "cannot signal a process that left the daemon's group");
        }
    }
    Signalled { group, escaped }
}

/// `SIGTERM` (render checked the name; anything else falls back to SIGTERM).
fn stop_signal(name: &str) -> Signal {
    Signal::from_str(name).unwrap_or(Signal::SIGTERM)
}

/// An argv as one would type it.
fn shell_words(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}
