//! drover's benchmarks (the `drover-bench` binary).
//!
//! - [`swarm`]: one process simulating N minions with real CURVE sockets, like Salt's
//!   `minionswarm.py`: it says hello, heartbeats, and answers `test.ping`/`test.echo`.
//! - [`fleet`]: the container fleet on Docker (up, a slot swap, heal, a rollout, wipe and
//!   restart), side by side with docker-compose.
//! - [`fleet_swarm`]: the fleet on a one-node Swarm this run makes, beside the local engine
//!   (up of 10 slots, a 10-slot rollout).
//! - [`demo`]: the demo cloud (`drover demo`, a warm wipe-and-restart), side by side with
//!   docker-compose running the same containers.
//! - [`measure`]: starts the real binaries and the swarm, times jobs, reads memory.
//! - [`states`]: `state.apply` of 50 resources on one minion, a role apply to N minions.
//! - [`salt`]: runs the Salt baseline script (`salt-baseline.sh`) and reads its figures.
//! - [`table`]: prints figures side by side, with ratios.

pub mod demo;
pub mod fleet;
pub mod fleet_swarm;
pub mod measure;
pub mod salt;
pub mod states;
pub mod swarm;
pub mod table;
