//! drover-minion: connects to the master, reports grains, runs jobs.
//!
//! - [`config`]: command-line flags and the configuration [`run`] takes.
//! - [`session`]: the session with the master (hello, heartbeats, reconnects, jobs); [`run`].
//! - [`transport`]: the OS thread that owns the ZeroMQ socket to the master.
//! - [`pki`]: which master key to trust; asking the master's key port.
//! - [`outbox`]: job returns spooled to disk until the master acknowledges them.
//! - [`functions`]: the functions jobs call (`test.*`, `cmd.*`, `file.*`, `grains.*`, `sys.*`, ...).
//! - [`outcome`]: what a function returned (`Outcome`), a leaf module.
//! - [`jobs`]: the jobs running now, that `saltutil.*` lists and a kill aborts.
//! - [`grains`]: the facts the minion reports.
//! - [`health`]: the minion's own verdict (link, convergence, daemons); its socket and
//!   `drover-minion health`.
//! - [`converge`]: the owner of the role assignment: fetch files, render, apply, report.
//! - [`daemons`]: the `Daemons` trait, the seam between the state engine and the supervisor.
//! - [`supervisor`]: starts, restarts (with backoff), health-checks and stops the daemons.
//! - [`reaper`]: reaps orphans (PID 1 or child subreaper); every child is spawned through it.
//! - [`runas`]: running a child as another user (`user:`, `runas=`).
//! - [`state`]: the state engine: applies a rendered plan, Salt's way ([`state::apply`]).
//! - [`backoff`]: jittered exponential backoff.
//! - [`error`]: the error [`run`] can end with.

pub mod backoff;
pub mod config;
pub mod converge;
pub mod daemons;
pub mod error;
pub mod functions;
pub mod grains;
pub mod health;
pub mod jobs;
pub mod local;
pub mod outbox;
pub mod outcome;
pub mod pki;
pub mod reaper;
pub mod runas;
pub mod session;
pub mod state;
pub mod supervisor;
pub mod transport;

pub use config::{Cli, Config};
pub use error::Error;
pub use session::run;
