//! The health checks of a running process: one task per process that calls the daemon's
//! prober on a schedule (fast until a check first passes) and reports each answer, and
//! what an answer changes (a passing check ends the start grace early). Apart because its
//! helper task is the only one of the owner's that loops.

use std::time::Duration;

use serde_json::json;
use tracing::info;

use super::daemon::Phase;
use super::{Internal, Owner};
use crate::supervisor::health::{HealthState, Tracker};
use crate::supervisor::human;
use crate::supervisor::sys::Sys;

/// Until a health check first passes, checks run at least this often.
const EARLY_PROBE: Duration = Duration::from_secs(1);
/// The first health check runs this soon after the process started (or at the end of the
/// start grace, if that is shorter); until one passes, the wait doubles up to
/// [`EARLY_PROBE`]. A daemon whose check passes is started then, not at the end of its
/// start grace: a fleet slot is ready as soon as its daemons answer.
const FIRST_PROBE: Duration = Duration::from_millis(50);
/// Health checks never run more often than this, whatever the interval says.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(100);

impl<S: Sys> Owner<S> {
    pub(super) fn on_probe(&mut self, name: &str, epoch: u64, result: Result<(), String>) {
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
    pub(super) fn start_probes(&mut self, name: &str) {
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
}
