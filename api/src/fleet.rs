//! The fleet's routes: `POST /fleet/up`, `/fleet/scale`, `/fleet/upgrade`, `/fleet/undo`,
//! `/fleet/down`, `/fleet/chaos` answer with newline-delimited JSON [`FleetLine`]s: the
//! operation's [`FleetEvent`]s as they happen, then its [`FleetOutcome`] (or an error).
//! `GET /fleet/ps` lists [`SlotStatus`]es, `GET /fleet/rollouts` the [`RolloutSummary`]s,
//! `GET /fleet/nodes` answers a [`NodesReport`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpRequest {
    /// The config repo's revision to read fleet.yaml (and roles and states) at; HEAD if none.
    #[serde(default)]
    pub commit: Option<String>,
    /// How long to wait for every slot to be ready.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub role: String,
    pub replicas: u32,
    #[serde(default)]
    pub timeout_secs: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeRequest {
    /// Roles to upgrade; every role if empty.
    #[serde(default)]
    pub roles: Vec<String>,
    pub to: String,
    /// Overrides the roles' `update.batch` (`2` or `25%`).
    #[serde(default)]
    pub batch: Option<String>,
    /// Overrides the roles' `update.order` (`stop-first`, `start-first`).
    #[serde(default)]
    pub order: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DownRequest {
    /// Remove the slots' volumes too.
    #[serde(default)]
    pub volumes: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosRequest {
    #[serde(default)]
    pub role: Option<String>,
    pub every_secs: f64,
    pub for_secs: f64,
}

/// One line of an operation's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetLine {
    Event(FleetEvent),
    Done(FleetOutcome),
    Error(FleetFailure),
}

/// Why an operation did not end with an outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetFailure {
    pub error: String,
    /// The operation was refused before it changed anything (a usage or configuration
    /// error, an engine that does not answer, another operation running).
    pub refused: bool,
}

/// What an operation tells as it goes; also on the event bus as
/// `drover/fleet/<fleet>/…` ([`FleetEvent::tag`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum FleetEvent {
    /// What an operation is about to do.
    Plan {
        create: Vec<String>,
        replace: Vec<String>,
        remove: Vec<String>,
        change: Vec<VersionChange>,
        keep: Vec<String>,
    },
    /// A step on one slot: `creating`, `started`, `stopping`, `removed`, `renaming`,
    /// `waiting`, `ready`, `failed`, `died`, `replaced`, `gave-up`, `heal-failed`, `killed`;
    /// on Swarm also `updating` (its service updated) and `task` (its task's state changed).
    Slot {
        slot: String,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A rollout's batch starts.
    Batch { rollout: u64, role: String, batch: u32, slots: Vec<String>, to: String },
    /// Slots go back to their previous version.
    Revert { rollout: u64, slots: Vec<String> },
    /// A rollout starts or ends: `running`, `done`, `rolled-back`, `paused`, `interrupted`.
    Rollout {
        rollout: u64,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Slots waited for: how many of `total` are ready.
    Ready { ready: usize, total: usize },
    /// Anything else worth a line.
    Note { message: String },
}

impl FleetEvent {
    /// The event bus tag: `drover/fleet/<fleet>/slot/<slot>/<step>`, `…/rollout/<id>/<state>`…
    pub fn tag(&self, fleet: &str) -> String {
        match self {
            FleetEvent::Plan { .. } => format!("drover/fleet/{fleet}/plan"),
            FleetEvent::Slot { slot, step, .. } => format!("drover/fleet/{fleet}/slot/{slot}/{step}"),
            FleetEvent::Batch { rollout, .. } => format!("drover/fleet/{fleet}/rollout/{rollout}/batch"),
            FleetEvent::Revert { rollout, .. } => format!("drover/fleet/{fleet}/rollout/{rollout}/revert"),
            FleetEvent::Rollout { rollout, state, .. } => {
                format!("drover/fleet/{fleet}/rollout/{rollout}/{state}")
            }
            FleetEvent::Ready { .. } => format!("drover/fleet/{fleet}/ready"),
            FleetEvent::Note { .. } => format!("drover/fleet/{fleet}/note"),
        }
    }
}

/// A slot whose container runs another version than wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    pub slot: String,
    pub role: String,
    pub from: String,
    pub to: String,
}

/// How an operation ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetOutcome {
    /// Slots connected, converged and healthy.
    pub ready: Vec<String>,
    /// Slots that were not, with why.
    pub not_ready: BTreeMap<String, String>,
    /// The rollout the operation ran, if it ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSummary>,
    /// Lines worth telling.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Slots `chaos` killed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killed: Vec<String>,
}

impl FleetOutcome {
    /// Every slot waited for is ready and no rollout failed.
    pub fn ok(&self) -> bool {
        self.not_ready.is_empty() && self.rollout.as_ref().is_none_or(|r| r.state == "done")
    }
}

/// A rollout, as `drover rollout status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub id: u64,
    /// `running`, `done`, `rolled-back`, `paused`, `interrupted`.
    pub state: String,
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    pub batches: u32,
    #[serde(default)]
    pub reason: Option<String>,
    /// The rollout this one undid.
    #[serde(default)]
    pub undoes: Option<u64>,
    pub slots: Vec<RolloutSlot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutSlot {
    pub slot: String,
    pub role: String,
    pub from: String,
    pub to: String,
    /// `pending`, `swapping`, `done`, `failed`, `reverting`, `reverted`, `revert-failed`.
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One slot as `drover ps --out json` prints it (a contract: scripts read these names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub slot: String,
    pub role: String,
    pub image: String,
    pub version: String,
    /// The container's state (`running`, `exited`...), `missing` when the slot has none.
    pub state: String,
    pub connected: bool,
    /// The commit its minion converged to.
    pub converged: Option<String>,
    /// `healthy`, `unhealthy`, `starting` or `none`.
    pub health: String,
    /// The node it runs on (Swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How it differs from fleet.yaml at HEAD, or from what the fleet wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `drover nodes --out json` (a contract: scripts read these names): the nodes the fleet
/// runs on (the one engine, or the swarm's), and whether it could lose its largest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodesReport {
    /// `local` (one engine) or `swarm`.
    pub engine: String,
    /// The fleet up, if any.
    #[serde(default)]
    pub fleet: Option<String>,
    pub nodes: Vec<NodeStatus>,
    pub headroom: HeadroomStatus,
}

/// One node: what it is, what of the fleet it runs, what is reserved there and what is free.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    /// Its hostname.
    pub name: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// Swarm calls it ready.
    pub ready: bool,
    /// Its node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The fleet's slots placed there.
    pub slots: Vec<String>,
    /// How many of the fleet's containers run there.
    pub containers: u32,
    /// Containers running there, whoever's.
    pub containers_total: u32,
    pub cpus: f64,
    /// Bytes.
    pub memory: u64,
    /// The sum of the reservations of the fleet's slots placed there.
    pub reserved_cpus: f64,
    pub reserved_memory: u64,
    /// What other fleets' and services' tasks reserve there (Swarm), CPUs and bytes: not
    /// free for this fleet either.
    #[serde(default)]
    pub others_cpus: f64,
    #[serde(default)]
    pub others_memory: u64,
    /// What is left: total less the fleet's and the others' reservations (never below 0).
    pub free_cpus: f64,
    pub free_memory: u64,
}

/// Could the fleet lose its largest node (by reservations placed) and still fit?
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadroomStatus {
    pub ok: bool,
    /// `yes: ...` or `no: ...`, in a line.
    pub verdict: String,
    /// The node it would lose.
    #[serde(default)]
    pub largest: Option<String>,
    /// The slots of that node that would fit nowhere else.
    #[serde(default)]
    pub unplaced: Vec<String>,
}
