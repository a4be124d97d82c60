//! drover's benchmarks (the `drover-bench` binary).
//!
//! - [`swarm`]: one process simulating N minions with real CURVE sockets, like Salt's
//!   `minionswarm.py`: it says hello, heartbeats, and answers `test.ping`/`test.echo`.
//! - [`measure`]: starts the real binaries and the swarm, times jobs, reads memory.
//! - [`states`]: `state.apply` of 50 resources on one minion, a role apply to N minions.
//! - [`salt`]: runs the Salt baseline script (`salt-baseline.sh`) and reads its figures.
//! - [`table`]: prints figures side by side, with ratios.

pub mod measure;
pub mod salt;
pub mod states;
pub mod swarm;
pub mod table;
