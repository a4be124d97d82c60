//! The master's settings, as `drover-master`'s flags give them.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// Where keys (`pki/`), the job store (`drover.db`) and `api.json` live.
    pub dir: PathBuf,
    /// ZeroMQ address minions connect to (`ADDR:PORT`; the key port is PORT - 1).
    pub listen: String,
    /// The address fleet containers dial, when it is not the fleet network's gateway.
    pub advertise: Option<String>,
    /// HTTP API address (`ADDR:PORT`, loopback by default).
    pub api: String,
    /// The config repository (git) holding `roles/` and `states/`.
    pub repo: PathBuf,
    /// Accept every new minion key (development only).
    pub auto_accept: bool,
    /// How often minions send heartbeats; three missed ones mark a minion disconnected.
    pub heartbeat: Duration,
    /// Jobs (with their returns) and events older than this are deleted, hourly.
    pub keep: Duration,
    /// The `drover-minion` binary put into app images (default: the one beside this
    /// executable).
    pub minion_bin: Option<PathBuf>,
    /// Scratch space for building the base image (default: `DIR/build`).
    pub build_dir: Option<PathBuf>,
}
