//! What the master counts, served as `GET /metrics` in the Prometheus text format (0.0.4)
//! by [`Metrics::encode`]. The metrics are `prometheus-client`'s: counters and gauges are
//! atomics, so counting takes no lock; the one histogram takes its own short mutex, and its
//! only writer is the hub's task, so a scrape is all it ever meets.
//!
//! Who counts: the hub (sessions, jobs, returns, minions' daemon events, drops), the fleet's
//! host (every fleet event, as the controller emits it). A scrape only reads.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use api::fleet::FleetEvent;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Daemon names a `daemon` label takes at most; the rest are counted as `(other)`, so a
/// minion that reports made-up names cannot grow the answer without end.
pub const MAX_DAEMON_NAMES: usize = 100;

type Label = [(&'static str, &'static str); 1];
type NameLabel = [(&'static str, String); 1];

/// The master's metrics. One per master, shared by `Arc`; tests make their own.
pub struct Metrics {
    registry: Registry,
    /// Minions with a session (welcomed and heard from within three heartbeats).
    pub connected: Gauge,
    /// Jobs published (one per job, whatever the number of minions it targets).
    pub jobs_published: Counter,
    /// Minions that did not return a job within its timeout.
    pub job_timeouts: Counter,
    returns: Family<Label, Counter>,
    /// From sending a job to a minion to its return committed, in seconds.
    return_latency: Histogram,
    dropped: Family<Label, Counter>,
    rollouts: Family<Label, Counter>,
    rollout_batches: Counter,
    rollout_reverts: Counter,
    deaths: Counter,
    heals: Family<Label, Counter>,
    chaos_kills: Counter,
    daemon_restarts: Family<NameLabel, Counter>,
    daemon_crashes: Family<NameLabel, Counter>,
    /// The daemon names labels were made for (at most [`MAX_DAEMON_NAMES`]); only the hub's
    /// task takes this lock.
    daemon_names: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let info = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        registry.register("drover_master_build", "the master's version", info);
        let start: Gauge = Gauge::default();
        start.set(wire::msg::now_ms() as i64 / 1000);
        registry.register("drover_master_start_time_seconds", "when the master started (Unix time)", start);
        let mut m = Metrics {
            connected: Gauge::default(),
            jobs_published: Counter::default(),
            job_timeouts: Counter::default(),
            returns: Family::default(),
            // 5 ms to 82 s, doubling
            return_latency: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            dropped: Family::default(),
            rollouts: Family::default(),
            rollout_batches: Counter::default(),
            rollout_reverts: Counter::default(),
            deaths: Counter::default(),
            heals: Family::default(),
            chaos_kills: Counter::default(),
            daemon_restarts: Family::default(),
            daemon_crashes: Family::default(),
            daemon_names: Mutex::new(BTreeSet::new()),
            registry,
        };
        let reg = &mut m.registry;
        reg.register(
            "drover_minions_connected",
            "minions with a session: welcomed, heard from within three heartbeats",
            m.connected.clone(),
        );
        reg.register("drover_jobs_published", "jobs published to minions", m.jobs_published.clone());
        reg.register(
            "drover_job_timeouts",
            "minions that did not return a job within its timeout",
            m.job_timeouts.clone(),
        );
        reg.register(
            "drover_returns_received",
            "job returns committed, by result (success or failure)",
            m.returns.clone(),
        );
        reg.register(
            "drover_return_latency_seconds",
            "from sending a job to a minion to its return committed",
            m.return_latency.clone(),
        );
        reg.register(
            "drover_dropped",
            "what the master dropped over its limits (what a minion sent, or what waited for it), by reason",
            m.dropped.clone(),
        );
        reg.register(
            "drover_rollouts",
            "rollouts that ended, by outcome (done, rolled-back, paused, interrupted)",
            m.rollouts.clone(),
        );
        reg.register("drover_rollout_batches", "rollout batches started", m.rollout_batches.clone());
        reg.register(
            "drover_rollout_reverted_slots",
            "slots a rollout took back to their previous version",
            m.rollout_reverts.clone(),
        );
        reg.register(
            "drover_fleet_container_deaths",
            "fleet containers that died without an operation asking (the healer's `died`)",
            m.deaths.clone(),
        );
        reg.register(
            "drover_fleet_heals",
            "dead fleet containers the healer dealt with, by result (healed, failed, gave-up)",
            m.heals.clone(),
        );
        reg.register("drover_chaos_kills", "containers `drover chaos` killed", m.chaos_kills.clone());
        reg.register(
            "drover_daemon_restarts",
            "daemon restarts minions reported, by daemon name",
            m.daemon_restarts.clone(),
        );
        reg.register(
            "drover_daemon_crashes",
            "daemon crashes (exits nobody asked for) minions reported, by daemon name",
            m.daemon_crashes.clone(),
        );
        m
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // writing to a String cannot fail; an error would be the crate's own bug
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// A return committed; `latency` when the hub sent the job and knows when.
    pub fn returned(&self, success: bool, latency: Option<Duration>) {
        let result = if success { "success" } else { "failure" };
        self.returns.get_or_create(&[("result", result)]).inc();
        if let Some(l) = latency {
            self.return_latency.observe(l.as_secs_f64());
        }
    }

    /// `n` things dropped for `reason` (`limits::Reason::label`).
    pub fn dropped(&self, reason: &'static str, n: u64) {
        self.dropped.get_or_create(&[("reason", reason)]).inc_by(n);
    }

    /// A fleet event, as the controller emitted it.
    pub fn fleet_event(&self, event: &FleetEvent) {
        match event {
            FleetEvent::Rollout { state, .. } => {
                let outcome = match state.as_str() {
                    "done" => "done",
                    "rolled-back" => "rolled-back",
                    "paused" => "paused",
                    "interrupted" => "interrupted",
                    _ => return, // `running`: a start, not an outcome
                };
                self.rollouts.get_or_create(&[("outcome", outcome)]).inc();
            }
            FleetEvent::Batch { .. } => {
                self.rollout_batches.inc();
            }
            FleetEvent::Revert { slots, .. } => {
                self.rollout_reverts.inc_by(slots.len() as u64);
            }
            FleetEvent::Slot { step, .. } => match step.as_str() {
                "died" => {
                    self.deaths.inc();
                }
                "healed" => self.heal("healed"),
                "heal-failed" => self.heal("failed"),
                "gave-up" => self.heal("gave-up"),
                "killed" => {
                    self.chaos_kills.inc();
                }
                _ => {}
            },
            FleetEvent::Plan { .. } | FleetEvent::Ready { .. } | FleetEvent::Note { .. } => {}
        }
    }

    fn heal(&self, result: &'static str) {
        self.heals.get_or_create(&[("result", result)]).inc();
    }

    /// An event a minion sent, by its own tag (before the hub files it under the minion's
    /// name): its supervisor's `daemon/<name>/restarted` and `daemon/<name>/crashed` count.
    pub fn minion_event(&self, tag: &str) {
        let Some((name, what)) = tag.strip_prefix("daemon/").and_then(|t| t.rsplit_once('/')) else {
            return;
        };
        let family = match what {
            "restarted" => &self.daemon_restarts,
            "crashed" => &self.daemon_crashes,
            _ => return,
        };
        let name = self.daemon_label(name);
        family.get_or_create(&[("daemon", name)]).inc();
    }

    /// `name`, or `(other)` once [`MAX_DAEMON_NAMES`] other names have labels.
    fn daemon_label(&self, name: &str) -> String {
        let mut names = self.daemon_names.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(name) {
            return name.to_string();
        }
        if names.len() >= MAX_DAEMON_NAMES {
            return "(other)".to_string();
        }
        names.insert(name.to_string());
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(step: &str) -> FleetEvent {
        FleetEvent::Slot { slot: "f-web-1".into(), step: step.into(), detail: None }
    }

    /// The sample lines of `text` (no comments), for comparing.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn a_new_master_says_zero_for_every_plain_metric_in_the_text_format() {
        let text = Metrics::new().encode();
        for line in [
            "# HELP drover_minions_connected minions with a session: welcomed, heard from within three heartbeats.",
            "# TYPE drover_minions_connected gauge",
            "drover_minions_connected 0",
            "# TYPE drover_jobs_published_total counter",
            "drover_jobs_published_total 0",
            "drover_job_timeouts_total 0",
            "# TYPE drover_return_latency_seconds histogram",
            "drover_return_latency_seconds_bucket{le=\"0.005\"} 0",
            "drover_return_latency_seconds_bucket{le=\"+Inf\"} 0",
            "drover_return_latency_seconds_sum 0.0",
            "drover_return_latency_seconds_count 0",
            "drover_rollout_batches_total 0",
            "drover_fleet_container_deaths_total 0",
            "drover_chaos_kills_total 0",
            "# TYPE drover_master_build_info gauge",
            "drover_master_build_info{version=\"0.0.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        // labelled families have no sample until something is counted
        assert!(!text.contains("drover_rollouts_total{"), "{text}");
        // every sample line is `name{labels} value`, the value a number
        for line in samples(&text) {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(name.starts_with("drover_"), "{line:?}");
            assert!(value.parse::<f64>().is_ok(), "{line:?}");
        }
    }

    #[test]
    fn counts_show_as_samples_with_their_labels() {
        let m = Metrics::new();
        m.connected.set(3);
        m.jobs_published.inc();
        m.returned(true, Some(Duration::from_millis(3)));
        m.returned(true, Some(Duration::from_millis(30)));
        m.returned(false, None);
        m.dropped("event_rate", 2);
        let text = m.encode();
        for line in [
            "drover_minions_connected 3",
            "drover_jobs_published_total 1",
            "drover_returns_received_total{result=\"success\"} 2",
            "drover_returns_received_total{result=\"failure\"} 1",
            // buckets are cumulative; a return without a known send time is not timed
            "drover_return_latency_seconds_bucket{le=\"0.005\"} 1",
            "drover_return_latency_seconds_bucket{le=\"0.02\"} 1",
            "drover_return_latency_seconds_bucket{le=\"0.04\"} 2",
            "drover_return_latency_seconds_bucket{le=\"+Inf\"} 2",
            "drover_return_latency_seconds_count 2",
            "drover_dropped_total{reason=\"event_rate\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        let sum = text.lines().find_map(|l| l.strip_prefix("drover_return_latency_seconds_sum ")).unwrap();
        assert!((sum.parse::<f64>().unwrap() - 0.033).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn fleet_events_count_rollouts_by_outcome_and_heals_by_result() {
        let m = Metrics::new();
        let rollout = |state: &str| FleetEvent::Rollout { rollout: 1, state: state.into(), reason: None };
        for e in [
            rollout("running"),
            FleetEvent::Batch {
                rollout: 1,
                role: "web".into(),
                batch: 1,
                slots: vec!["f-web-1".into()],
                to: "2".into(),
            },
            FleetEvent::Revert { rollout: 1, slots: vec!["f-web-1".into(), "f-web-2".into()] },
            rollout("rolled-back"),
            rollout("running"),
            rollout("done"),
            slot("died"),
            slot("replaced"),
            slot("healed"),
            slot("died"),
            slot("gave-up"),
            slot("killed"),
            slot("creating"),
            FleetEvent::Ready { ready: 1, total: 1 },
        ] {
            m.fleet_event(&e);
        }
        let text = m.encode();
        for line in [
            "drover_rollouts_total{outcome=\"rolled-back\"} 1",
            "drover_rollouts_total{outcome=\"done\"} 1",
            "drover_rollout_batches_total 1",
            "drover_rollout_reverted_slots_total 2",
            "drover_fleet_container_deaths_total 2",
            "drover_fleet_heals_total{result=\"healed\"} 1",
            "drover_fleet_heals_total{result=\"gave-up\"} 1",
            "drover_chaos_kills_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert!(!text.contains("outcome=\"running\""), "{text}");
        assert!(!text.contains("result=\"failed\""), "{text}");
    }

    #[test]
    fn daemon_events_count_by_name_with_a_bounded_number_of_names() {
        let m = Metrics::new();
        m.minion_event("daemon/web/crashed");
        m.minion_event("daemon/web/restarted");
        m.minion_event("daemon/web/restarted");
        m.minion_event("daemon/web/started"); // not counted
        m.minion_event("custom/restarted"); // not the supervisor's
        // a name that needs escaping in the text format
        m.minion_event("daemon/we\"ird\\/restarted");
        let text = m.encode();
        for line in [
            "drover_daemon_restarts_total{daemon=\"web\"} 2",
            "drover_daemon_crashes_total{daemon=\"web\"} 1",
            "drover_daemon_restarts_total{daemon=\"we\\\"ird\\\\\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert_eq!(text.matches("daemon_restarts_total{").count(), 2, "{text}");

        for i in 0..MAX_DAEMON_NAMES + 20 {
            m.minion_event(&format!("daemon/d{i}/restarted"));
        }
        let text = m.encode();
        let names = text.lines().filter(|l| l.starts_with("drover_daemon_restarts_total{")).count();
        // web and we"ird\ took two of the names; the rest went to (other)
        assert_eq!(names, MAX_DAEMON_NAMES + 1, "{text}");
        assert!(text.contains("drover_daemon_restarts_total{daemon=\"(other)\"} 22"), "{text}");
    }
}
