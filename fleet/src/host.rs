//! What the controller needs from the master that hosts it, behind [`Host`]: the minions'
//! standing (from the hub), enrollment (keys minted and accepted by the master), the event
//! bus, and a place to keep the fleet's record (SQLite). The master implements it; tests
//! use a fake.

use std::collections::BTreeMap;
use std::future::Future;

use api::fleet::FleetEvent;
use serde::{Deserialize, Serialize};

use crate::engine::FileIn;
use crate::record::FleetRecord;

/// A minion as the master sees it, for the slot it runs in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MinionView {
    /// Welcomed, and heard from within three heartbeats.
    pub connected: bool,
    /// The generation of the container its session speaks for (`DROVER_GENERATION`).
    pub generation: u64,
    /// The commit it last converged to, when that apply succeeded and is its current
    /// assignment's.
    pub converged: Option<String>,
    /// Its last apply of its current assignment failed: why (first failing state).
    pub failed: Option<String>,
    /// Every daemon running and passing its health check (the minion's own verdict).
    pub healthy: bool,
    /// Why it is not healthy.
    pub problem: Option<String>,
}

impl MinionView {
    /// Ready to take traffic: connected, converged, healthy.
    pub fn ready(&self) -> bool {
        self.connected && self.converged.is_some() && self.healthy
    }
}

/// How a container of a slot joins the master: its identity files and where to dial.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrollment {
    /// The slot's keypair, as files for the minion's `DIR/pki` (the secret 0600).
    pub files: Vec<FileIn>,
    /// The master's public key (Z85), pinned by the minion.
    pub master_key: String,
    /// The master's port (ZeroMQ, CURVE).
    pub master_port: u16,
    /// The address containers dial when the master is not on the fleet network's gateway
    /// (`--advertise`); none: the network's gateway.
    pub master_host: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

pub trait Host: Send + Sync + 'static {
    /// The standing of these minions (absent ids: never seen).
    fn minions(&self, ids: Vec<String>) -> impl Future<Output = BTreeMap<String, MinionView>> + Send;
    /// The slot's identity (minted once, kept across version swaps), its key accepted.
    fn enroll(&self, slot: &str) -> impl Future<Output = Result<Enrollment, HostError>> + Send;
    /// The container of `slot` with `generation` is the one the fleet wants now: its minion
    /// has the slot's session even against a newer container (Swarm's rollback puts an
    /// older one back). Without it, the newer container has it.
    fn want(&self, slot: &str, generation: u64) -> impl Future<Output = ()> + Send;
    /// Forgets the slot's identity: its key is no longer accepted.
    fn revoke(&self, slot: &str) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Puts an event of `fleet` on the master's bus (`drover/fleet/<fleet>/...`,
    /// [`FleetEvent::tag`]).
    fn event(&self, fleet: &str, event: &FleetEvent);
    /// Keeps the fleet's record (what was brought up, overrides, rollouts); committed when
    /// the future ends.
    fn save(&self, record: FleetRecord) -> impl Future<Output = Result<(), HostError>> + Send;
}
