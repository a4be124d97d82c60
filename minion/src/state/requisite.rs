//! Requisites, Salt's way: whether a resource runs, given what its prerequisites did.
//!
//! - A prerequisite that failed (`result: false`, including one that did not run because
//!   its own requisite failed) stops every kind of dependent: `require`, `watch` and
//!   `onchanges` alike; not an `onfail` one.
//! - With `onchanges` edges, the resource runs only if one of those prerequisites changed
//!   (or, with `test`, would change).
//! - With `onfail` edges, the resource runs only if one of those prerequisites failed. A
//!   failure that its `onfail` dependents handled (each ran and none failed) is not the
//!   run's failure ([`handled`]).
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
    /// It has `onfail` prerequisites and none failed.
    NoFailure,
    Run {
        watched_changed: bool,
    },
}

/// `statuses` holds the status of every resource before `i` (prerequisites come first).
pub(super) fn gate(plan: &Plan, i: usize, statuses: &[Status]) -> Gate {
    let mut failed = Vec::new();
    let (mut onchanges, mut onchanges_changed, mut watched_changed) = (false, false, false);
    let (mut onfail, mut onfail_failed) = (false, false);
    for (kind, j) in plan.prerequisites(i) {
        if kind == RequisiteKind::Onfail {
            onfail = true;
            onfail_failed |= statuses.get(j) == Some(&Status::Failed);
            continue;
        }
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
            RequisiteKind::Onfail => {}
        }
    }
    if !failed.is_empty() {
        Gate::Failed(failed)
    } else if onchanges && !onchanges_changed {
        Gate::NoChanges
    } else if onfail && !onfail_failed {
        Gate::NoFailure
    } else {
        Gate::Run { watched_changed }
    }
}

/// Whether the failure of resource `i` was handled, as Salt counts it: it has `onfail`
/// dependents, and each of them ran without failing. `statuses` holds every resource's.
pub(super) fn handled(plan: &Plan, i: usize, statuses: &[Status]) -> bool {
    let Some(me) = plan.resources.get(i).map(|r| r.reference()) else { return false };
    let mut handlers = plan
        .edges
        .iter()
        .filter(|e| e.kind == RequisiteKind::Onfail && e.prerequisite == me)
        .map(|e| plan.index_of(&e.dependent).and_then(|j| statuses.get(j)))
        .peekable();
    handlers.peek().is_some() && handlers.all(|status| matches!(status, Some(Status::Done { .. })))
}
