//! Requisites, Salt's way: whether a resource runs, given what its prerequisites did.
//!
//! - A prerequisite that failed (`result: false`, including one that did not run because
//!   its own requisite failed) stops every kind of dependent: `require`, `watch` and
//!   `onchanges` alike.
//! - With `onchanges` edges, the resource runs only if one of those prerequisites changed
//!   (or, with `test`, would change).
//! - A `watch`ed prerequisite that changed makes a `daemon.running` restart; for the other
//!   functions `watch` is `require`.
//! - A prerequisite that was not run (outside `only`, or skipped for `onchanges`) is met
//!   and unchanged.

use render::{Plan, RequisiteKind};

use super::Outcome;

/// What became of a resource, as its dependents see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    /// Not selected by `only`.
    NotRun,
    Failed,
    Done {
        changed: bool,
    },
}

impl Status {
    pub(super) fn of(outcome: &Outcome) -> Status {
        match outcome.result {
            Some(false) => Status::Failed,
            _ => Status::Done { changed: outcome.changed },
        }
    }
}

/// Whether resource `i` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// These prerequisites (`file: worker-config`) failed.
    Failed(Vec<String>),
    /// It has `onchanges` prerequisites and none changed.
    NoChanges,
    Run {
        watched_changed: bool,
    },
}

/// `statuses` holds the status of every resource before `i` (prerequisites come first).
pub(super) fn gate(plan: &Plan, i: usize, statuses: &[Status]) -> Gate {
    let mut failed = Vec::new();
    let (mut onchanges, mut onchanges_changed, mut watched_changed) = (false, false, false);
    for (kind, j) in plan.prerequisites(i) {
        let changed = match statuses.get(j) {
            Some(Status::Failed) => {
                let name = plan.resources.get(j).map(|r| r.reference().to_string()).unwrap_or_default();
                if !failed.contains(&name) {
                    failed.push(name);
                }
                continue;
            }
            Some(Status::Done { changed }) => *changed,
            Some(Status::NotRun) | None => false,
        };
        match kind {
            RequisiteKind::Require => {}
            RequisiteKind::Watch => watched_changed |= changed,
            RequisiteKind::Onchanges => {
                onchanges = true;
                onchanges_changed |= changed;
            }
        }
    }
    if !failed.is_empty() {
        Gate::Failed(failed)
    } else if onchanges && !onchanges_changed {
        Gate::NoChanges
    } else {
        Gate::Run { watched_changed }
    }
}
