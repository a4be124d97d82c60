//! Roles and states: parse, render with Tera, validate, plan. Pure: no file, network or
//! process I/O; every input is in memory, every problem is a [`Diagnostic`] (`file:line:col`).
//!
//! - `diag`: [`Diagnostic`], the one error type, pointing into a user's file
//! - `path`: [`Files`] (path → contents), [`StateId`] (`a.b` ↔ `states/a/b.yaml`), sources
//! - `role`: `roles/<name>.yaml` → [`Role`]
//! - `top`: `roles/top.yaml` → [`TopFile`] (target → roles; matching is the caller's)
//! - `fleet`: `fleet.yaml` → [`FleetFile`] (role → image, version, replicas...; slot names)
//! - `repo`: every role, the top file and the fleet file of a commit, cross-checked → [`Repo`]
//! - `template`: the Tera [`Context`] (`id, grains, roles, pillar, peers`), [`render_source`]
//! - `budget`: the most loop iterations and time one render may take
//! - `state`: a rendered state file → its includes, extends and declarations (Salt's)
//! - `function`: the state functions and their typed arguments ([`Function`])
//! - `plan`: a minion's resources in apply order with requisite edges → [`plan()`], [`Plan`]
//!
//! - `locate`: positions of keys and items in a YAML text, for diagnostics (also used by
//!   the compose importer, which points at a user's compose file the same way)
//!
//! Internal: `args` reads arguments, `graph` orders.

mod args;
mod budget;
mod diag;
pub mod fleet;
mod function;
mod graph;
pub mod locate;
mod nodegroups;
mod path;
mod plan;
mod repo;
mod role;
mod state;
mod template;
mod top;

pub use budget::{MAX_ITERATIONS, MAX_TIME};
pub use diag::Diagnostic;
pub use fleet::{
    BatchSize, Constraint, EngineKind, FLEET_FILE, FleetFile, MAX_REPLICAS, OnFailure, Order, Placement,
    PortSpec, Protocol, Reservations, Resources, RoleSpec, UpdatePolicy,
};
pub use function::{
    CmdRun, DaemonDead, DaemonRunning, FileAbsent, FileDirectory, FileManaged, FileSymlink, Function,
    GroupPresent, Health, HealthCheck, Mode, PkgInstalled, PkgRemoved, Restart, Service, TemplateEngine,
    UserPresent,
};
pub use nodegroups::{NodegroupEntry, NodegroupsFile};
pub use path::{
    Files, NODEGROUPS_FILE, ROLES_DIR, STATES_DIR, StateId, TOP_FILE, is_name, role_path, source_path,
};
pub use plan::{Edge, Plan, RequisiteKind, Resource, ResourceRef, check_sources, plan, plan_with_files};
pub use repo::Repo;
pub use role::Role;
pub use state::includes_written;
pub use template::{Context, MAX_OUTPUT, Minion, Peer, peer_reads, render_source};
pub use top::{TopEntry, TopFile};
