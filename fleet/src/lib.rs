//! The container fleet: what the master needs to run a fleet of version-tagged containers.
//!
//! - [`controller`]: [`Controller`]: up, scale, upgrade, undo, down, ps, chaos, the healer, on one engine or on Swarm; the I/O the pure modules ask for.
//! - [`engine`]: the [`Engine`] seam (images, networks, volumes, containers, events; Swarm services and secrets) and its types.
//! - [`docker`]: [`Engine`] over the Docker Engine API (bollard), Swarm included; the only code that knows bollard.
//! - [`fake`]: [`Engine`] in memory, for unit tests of everything above it.
//! - [`image`]: images without a registry: the base from Debian packages, app images on it.
//! - [`placement`]: which node a slot may go to (constraints, spread, `max_per_node`, reservations) and the fleet's headroom, without I/O.
//! - [`plan`]: reconcile: the engine's containers against the slots wanted, without I/O.
//! - [`heal`]: when to replace a dead container and when to give a slot up, without I/O.
//! - [`host`]: [`host::Host`], what the controller needs of the master (minions, keys, events, storage).
//! - [`record`]: the fleet's record (fleet.yaml as brought up, overrides, rollouts) and the slots it wants.
//! - [`rollout`]: the rules of a rolling version change, without I/O.

pub mod controller;
pub mod docker;
pub mod engine;
pub mod fake;
pub mod heal;
pub mod host;
pub mod image;
pub mod placement;
pub mod plan;
pub mod record;
pub mod rollout;

pub use controller::{Controller, FleetError, FleetEvent, Outcome, Progress, SlotStatus};
pub use engine::{Engine, EngineError};
