//! The state engine: applies a minion's [`render::Plan`] in order, the way Salt does.
//!
//! - [`apply`]: runs every resource (or the `only` ones), honouring requisites, then stops
//!   the daemons the plan does not ask for; [`ApplyOptions`] in, [`Applied`] out.
//! - `requisite`: whether a resource runs, given what its prerequisites did.
//! - `file/`: `file.managed`, `file.directory`, `file.absent`, `file.symlink`.
//! - `cmd`: `cmd.run` with `creates`, `onlyif` and `unless`, through [`crate::functions`].
//! - `daemon`: `daemon.running` and `daemon.dead`, through the [`Daemons`] seam.
//! - `pkg`, `service`, `account`: `pkg.installed|removed`, `service.running|dead`,
//!   `user.present`, `group.present` on the host, through the `Host` seam of
//!   [`crate::functions`] (refused in a fleet container).
//!
//! Nothing here fails as a whole: every problem (an I/O error, a missing source, a user
//! that does not exist) is one state with `result: false` and a comment that says why.

mod account;
mod cmd;
mod daemon;
mod file;
mod pkg;
mod requisite;
mod service;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::Instant;

use render::{Function, Plan, Resource};
use serde_json::{Map, Value, json};
use wire::msg::StateResult;

use crate::daemons::Daemons;
use crate::functions::host::Host;
use requisite::{Gate, Status};

/// The contents of the `source` files of `file.managed`, by their path from the repository
/// root (`states/coins/worker.toml`, as [`render::source_path`] writes them).
pub type SourceFiles = render::Files;

/// The id of the result that reports the daemons stopped after an apply.
pub const RETAIN_ID: &str = "__retain__";

/// How to apply a plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyOptions {
    /// Change nothing; report what would change (`result: null`).
    pub test: bool,
    /// Apply only the states with these ids, and nothing else: their prerequisites outside
    /// the list are not run and count as met and unchanged, and no daemon is stopped.
    pub only: Option<Vec<String>>,
    /// The minion's roles are not ready (e.g. a required peer is missing): `daemon.running`
    /// states start nothing and say they wait for `hold_reason`.
    pub hold_daemons: bool,
    /// What the daemons wait for, e.g. "role datastore".
    pub hold_reason: String,
}

/// [`ApplyOptions::only`] for `state.apply NAME...`: each name is a state file (`a.b`, as
/// Salt's state.apply names SLS files), standing for its states, or a state id; none: all.
pub fn only_ids(plan: &Plan, names: &[String]) -> Option<Vec<String>> {
    (!names.is_empty()).then(|| {
        let mut ids = Vec::new();
        for want in names {
            let by_file: Vec<String> = plan
                .resources
                .iter()
                .filter(|r| r.state.to_string() == *want)
                .map(|r| r.id.clone())
                .collect();
            if by_file.is_empty() { ids.push(want.clone()) } else { ids.extend(by_file) }
        }
        ids
    })
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// One per state that was considered, in apply order (`run_num` = position), and the
    /// result with id [`RETAIN_ID`] last when daemons were stopped.
    pub results: Vec<StateResult>,
    /// How many results changed something (with `test`: would change something).
    pub changed: usize,
    /// The ids of the states with `result: false`, but for those whose failure was handled
    /// by their `onfail` states (which ran and did not fail).
    pub failed: Vec<String>,
    /// The daemons stopped because no state of the plan asks for them.
    pub stopped: Vec<String>,
    /// Ids in [`ApplyOptions::only`] that no state of the plan has.
    pub unknown: Vec<String>,
}

impl Applied {
    /// No state failed and every id asked for exists.
    pub fn success(&self) -> bool {
        self.failed.is_empty() && self.unknown.is_empty()
    }

    /// The `state.apply` return, Salt's shape: [`StateResult::key`] → the result.
    pub fn to_return(&self) -> Value {
        let map: Map<String, Value> = self
            .results
            .iter()
            .map(|r| (r.key(), serde_json::to_value(r).unwrap_or_else(|e| json!(e.to_string()))))
            .collect();
        Value::Object(map)
    }

    fn push(&mut self, id: &str, function: &str, name: String, outcome: Outcome, started: Instant) {
        if outcome.changed {
            self.changed += 1;
        }
        self.results.push(StateResult {
            id: id.to_string(),
            function: function.to_string(),
            name,
            result: outcome.result,
            comment: outcome.comment,
            changes: Value::Object(outcome.changes),
            duration: started.elapsed().as_secs_f64() * 1000.0,
            run_num: self.results.len(),
        });
    }
}

/// What one state did, before it becomes a [`StateResult`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outcome {
    /// `Some(true)`: done or nothing to do; `Some(false)`: failed; `None`: would change.
    pub result: Option<bool>,
    pub comment: String,
    pub changes: Map<String, Value>,
    /// Changed something (or, with `test`, would): what `onchanges` and `watch` react to.
    pub changed: bool,
}

impl Outcome {
    /// Nothing to do.
    pub fn ok(comment: impl Into<String>) -> Self {
        Self { result: Some(true), comment: comment.into(), changes: Map::new(), changed: false }
    }

    pub fn fail(comment: impl Into<String>) -> Self {
        Self { result: Some(false), comment: comment.into(), changes: Map::new(), changed: false }
    }

    /// Changed (`result: true`) or, with `test`, would change (`result: null`).
    pub fn changed(test: bool, comment: impl Into<String>, changes: Map<String, Value>) -> Self {
        let result = if test { None } else { Some(true) };
        Self { result, comment: comment.into(), changes, changed: true }
    }
}

/// What every state may need besides its own arguments.
struct Env<'a, D> {
    sources: &'a SourceFiles,
    ctx: &'a render::Context,
    opts: &'a ApplyOptions,
    daemons: &'a D,
}

/// Applies `plan` (see the module docs). The resources run one at a time, in plan order.
pub async fn apply(
    plan: &Plan,
    sources: &SourceFiles,
    ctx: &render::Context,
    opts: &ApplyOptions,
    daemons: &impl Daemons,
) -> Applied {
    let env = Env { sources, ctx, opts, daemons };
    let mut applied = Applied::default();
    if let Some(only) = &opts.only {
        for id in only {
            if !plan.resources.iter().any(|r| &r.id == id) && !applied.unknown.contains(id) {
                applied.unknown.push(id.clone());
            }
        }
    }

    let mut statuses: Vec<Status> = Vec::with_capacity(plan.resources.len());
    for (i, resource) in plan.resources.iter().enumerate() {
        if opts.only.as_ref().is_some_and(|only| !only.contains(&resource.id)) {
            statuses.push(Status::NotRun);
            continue;
        }
        let started = Instant::now();
        let outcome = match requisite::gate(plan, i, &statuses) {
            Gate::Failed(refs) => Outcome::fail(format!("one or more requisite failed: {}", refs.join(", "))),
            Gate::NoChanges => Outcome::ok("state was not run because none of the onchanges reqs changed"),
            Gate::NoFailure => Outcome::ok("state was not run because none of the onfail reqs failed"),
            Gate::Run { watched_changed } => run(resource, watched_changed, &env).await,
        };
        let function = resource.function.function_name();
        tracing::debug!(id = %resource.id, function, result = ?outcome.result, comment = %outcome.comment, "state");
        statuses.push(Status::of(&outcome));
        let name = resource.function.name().to_string();
        applied.push(&resource.id, function, name, outcome, started);
    }
    // a failure its `onfail` states handled is not the run's (Salt's way)
    applied.failed = (0..statuses.len())
        .filter(|&i| statuses[i] == Status::Failed && !requisite::handled(plan, i, &statuses))
        .map(|i| plan.resources[i].id.clone())
        .collect();

    if !opts.test && opts.only.is_none() {
        let started = Instant::now();
        let keep: BTreeSet<String> = plan.daemons().into_iter().map(str::to_string).collect();
        let stopped = daemons.retain(&keep).await;
        if !stopped.is_empty() {
            let outcome = Outcome::changed(
                false,
                format!("stopped daemons that no applied state asks for: {}", stopped.join(", ")),
                Map::from_iter([("stopped".to_string(), json!(stopped))]),
            );
            applied.push(RETAIN_ID, "daemon.dead", stopped.join(","), outcome, started);
        }
        applied.stopped = stopped;
    }
    applied
}

/// Runs one resource whose requisites are met.
async fn run<D: Daemons>(resource: &Resource, watched_changed: bool, env: &Env<'_, D>) -> Outcome {
    let test = env.opts.test;
    match &resource.function {
        Function::FileManaged(f) => file::managed(f, env.sources, env.ctx, test).await,
        Function::FileDirectory(f) => file::directory(f, test).await,
        Function::FileAbsent(f) => file::absent(f, test).await,
        Function::FileSymlink(f) => file::symlink(f, test).await,
        Function::CmdRun(c) => cmd::run(c, test).await,
        Function::DaemonRunning(d) if env.opts.hold_daemons => daemon::held(d, &env.opts.hold_reason),
        Function::DaemonRunning(d) => daemon::running(env.daemons, d, watched_changed, test).await,
        Function::DaemonDead(d) => daemon::dead(env.daemons, &d.name, test).await,
        Function::PkgInstalled(p) => pkg::installed(&Host::real(), p, &env.ctx.grains, test).await,
        Function::PkgRemoved(p) => pkg::removed(&Host::real(), p, &env.ctx.grains, test).await,
        Function::ServiceRunning(s) => {
            service::apply(&Host::real(), s, true, watched_changed, &env.ctx.grains, test).await
        }
        Function::ServiceDead(s) => {
            service::apply(&Host::real(), s, false, false, &env.ctx.grains, test).await
        }
        Function::UserPresent(u) => account::user_present(&Host::real(), u, &env.ctx.grains, test).await,
        Function::GroupPresent(g) => account::group_present(&Host::real(), g, &env.ctx.grains, test).await,
    }
}
