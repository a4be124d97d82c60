//! What the state engine asks of the supervisor: the seam between `state` (applies a plan)
//! and `supervisor` (owns processes). The state engine is tested with a recording fake.

use std::collections::BTreeSet;
use std::future::Future;

use serde_json::Value;

/// The outcome of one daemon operation, in the terms of a state result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonOutcome {
    /// false: the operation failed (could not start, died at once, did not stop).
    pub result: bool,
    /// Whether anything changed (or, with `test`, would change).
    pub changed: bool,
    /// One line for people: "started worker (pid 42)", "worker is already running"...
    pub comment: String,
    /// What changed, e.g. `{"pid": 42}` or `{"restarted": true}`; `{}` when nothing did.
    pub changes: Value,
}

pub trait Daemons {
    /// Makes `spec.name` run with exactly `spec`. Already running with the same spec: no
    /// change, unless `restart` (a watched state changed), which restarts it. Running with
    /// another spec: restarted with the new one. With `test`, changes nothing and says what
    /// it would do.
    fn ensure_running(
        &self,
        spec: &render::DaemonRunning,
        restart: bool,
        test: bool,
    ) -> impl Future<Output = DaemonOutcome> + Send;

    /// Makes `name` not run (signal, then SIGKILL to its group after its stop timeout).
    fn ensure_stopped(&self, name: &str, test: bool) -> impl Future<Output = DaemonOutcome> + Send;

    /// Stops every supervised daemon whose name is not in `keep`; returns the names stopped.
    fn retain(&self, keep: &BTreeSet<String>) -> impl Future<Output = Vec<String>> + Send;
}
