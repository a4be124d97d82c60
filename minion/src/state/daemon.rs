//! `daemon.running` and `daemon.dead`: asked of the supervisor through [`Daemons`].

use render::DaemonRunning;
use serde_json::{Map, Value};

use super::Outcome;
use crate::daemons::{DaemonOutcome, Daemons};

/// `restart`: a watched state changed (or, with `test`, would change).
pub(super) async fn running(
    daemons: &impl Daemons,
    spec: &DaemonRunning,
    restart: bool,
    test: bool,
) -> Outcome {
    outcome(daemons.ensure_running(spec, restart, test).await, test)
}

pub(super) async fn dead(daemons: &impl Daemons, name: &str, test: bool) -> Outcome {
    outcome(daemons.ensure_stopped(name, test).await, test)
}

/// The minion's roles are not ready: start nothing, and say so without failing.
pub(super) fn held(spec: &DaemonRunning, reason: &str) -> Outcome {
    Outcome::ok(format!("waiting for {reason}: {} is not started", spec.name))
}

fn outcome(d: DaemonOutcome, test: bool) -> Outcome {
    let changes = match d.changes {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("changes".to_string(), other)]),
    };
    let result = match (d.result, d.changed && test) {
        (false, _) => Some(false),
        (true, true) => None,
        (true, false) => Some(true),
    };
    Outcome { result, comment: d.comment, changes, changed: d.result && d.changed }
}
