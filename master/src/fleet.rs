//! The master's side of the fleet: [`FleetHost`] gives the `fleet` crate's controller what it
//! needs of the master (minions from the hub, slot identities, the event bus, SQLite), and
//! [`FleetService`] holds the controller, connecting to Docker on first use, so a master
//! with no Docker engine still serves plain hosts.
//!
//! Enrollment: each slot has a keypair of its own, minted by the master on the slot's first
//! container and kept in `DIR/fleet/keys/<slot>.{key,pub}` (0600 in a 0700 folder); its
//! public key is written to `pki/accepted/<slot>`. Every container of the slot gets the
//! pair copied in before it starts (never in an image), so it connects and is welcomed at
//! once, with the same identity across version swaps. `drover down` (or a scale-down)
//! deletes both: the slot's key is no longer accepted. A container drover did not create
//! has no accepted key: it waits in `pending/` like any new minion.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use api::KeyState;
use fleet::docker::Docker;
use fleet::engine::FileIn;
use fleet::host::{Enrollment, Host, HostError, MinionView};
use fleet::record::FleetRecord;
use fleet::{Controller, EngineError, FleetEvent};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::{KeyPair, MinionId};

use crate::hub::Command;
use crate::metrics::Metrics;
use crate::pki::KeyStore;
use crate::store::Store;

/// Where a fleet container's minion keeps its keys.
const MINION_PKI: &str = "/var/lib/drover/minion/pki";

/// What the controller needs of the master.
#[derive(Clone)]
pub struct FleetHost {
    hub: mpsc::Sender<Command>,
    store: Store,
    pki: PathBuf,
    keys: PathBuf,
    master_key: String,
    port: u16,
    /// The address containers dial: `--advertise`, or the listen address when it is a
    /// specific one; none: the fleet network's gateway (the master listens on every address).
    host: Option<String>,
    /// Why containers cannot reach this master, if they cannot (it listens on loopback).
    unreachable: Option<String>,
    /// Every fleet event is counted there (rollouts, heals).
    metrics: Arc<Metrics>,
}

impl FleetHost {
    /// `dir` is the master's directory; `listen` the address it listens on for minions.
    pub fn new(
        dir: &std::path::Path,
        hub: mpsc::Sender<Command>,
        store: Store,
        master_key: String,
        listen: &str,
        advertise: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (addr, port) = listen.rsplit_once(':').unwrap_or((listen, "4506"));
        let addr = addr.trim_start_matches("tcp://").trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().unwrap_or(4506);
        let any = matches!(addr, "0.0.0.0" | "::" | "*" | "");
        let loopback =
            addr == "localhost" || addr.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let unreachable = (loopback && advertise.is_none()).then(|| {
            format!(
                "the master listens on {listen}, which containers cannot reach: start it with --listen 0.0.0.0:{port} \
                 (or --advertise ADDRESS if they reach it another way)"
            )
        });
        let host = advertise.or_else(|| (!any && !loopback).then(|| addr.to_string()));
        FleetHost {
            hub,
            store,
            pki: dir.join("pki"),
            keys: dir.join("fleet").join("keys"),
            master_key,
            port,
            host,
            unreachable,
            metrics,
        }
    }

    fn id(slot: &str) -> Result<MinionId, HostError> {
        MinionId::new(slot).map_err(|e| HostError(format!("slot {slot}: {e}")))
    }
}

fn host_error(e: impl ToString) -> HostError {
    HostError(e.to_string())
}

/// How long `minion.kill` has to answer before the chaos monkey gives up on a slot.
const KILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Host for FleetHost {
    /// A job like any other (`drover jobs` lists it): `minion.kill` to the slot's minion.
    async fn kill_minion(&self, slot: &str) -> Result<(), HostError> {
        let id = Self::id(slot)?;
        let job = crate::jobs::NewJob {
            fun: "minion.kill".into(),
            args: Vec::new(),
            kwargs: BTreeMap::new(),
            target: slot.to_string(),
            tgt_type: api::TargetType::List,
            targeted: vec![id],
            timeout: KILL_TIMEOUT,
            batch: None,
        };
        let (jid, answer) = crate::jobs::start(&self.store, &self.hub, job).await.map_err(host_error)?;
        let response = answer.await.map_err(|_| HostError("the master is shutting down".into()))?;
        match response.returns.get(slot) {
            Some(r) if r.success => Ok(()),
            Some(r) => Err(HostError(format!("minion.kill on {slot} failed (job {jid}): {}", r.ret))),
            None if response.not_connected.iter().any(|s| s == slot) => {
                Err(HostError(format!("{slot}'s minion is not connected")))
            }
            None => {
                // its return may have died with it (the minion ends half a second after it):
                // a minion no longer connected was killed all the same
                let views = self.minions(vec![slot.to_string()]).await;
                if views.get(slot).is_some_and(|v| v.connected) {
                    Err(HostError(format!(
                        "{slot}'s minion did not answer minion.kill within {KILL_TIMEOUT:?}"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
    async fn want(&self, slot: &str, generation: u64) {
        if let Ok(id) = Self::id(slot) {
            let _ = self.hub.send(Command::Want { id, generation }).await;
        }
    }

    async fn minions(&self, ids: Vec<String>) -> BTreeMap<String, MinionView> {
        let ids: Vec<MinionId> = ids.iter().filter_map(|i| MinionId::new(i.as_str()).ok()).collect();
        let (reply, answer) = oneshot::channel();
        if self.hub.send(Command::MinionViews { ids, reply }).await.is_err() {
            return BTreeMap::new();
        }
        let views = answer.await.unwrap_or_default();
        views
            .into_iter()
            .map(|v| {
                let report = v.converged.as_ref().filter(|c| c.current);
                let view = MinionView {
                    connected: v.connected,
                    generation: v.generation.unwrap_or(0),
                    converged: report.filter(|c| c.result).map(|c| c.commit.clone()),
                    failed: report.filter(|c| c.failed).map(|c| c.comment.clone()),
                    healthy: v.healthy.unwrap_or(false),
                    problem: v.problem,
                };
                (v.id.to_string(), view)
            })
            .collect()
    }

    async fn enroll(&self, slot: &str) -> Result<Enrollment, HostError> {
        if let Some(why) = &self.unreachable {
            return Err(HostError(why.clone()));
        }
        let id = Self::id(slot)?;
        let (pki, keys) = (self.pki.clone(), self.keys.clone());
        let slot = slot.to_string();
        let enrolled = id.clone();
        let files = tokio::task::spawn_blocking(move || -> Result<Vec<FileIn>, HostError> {
            let (pair, _) = KeyPair::load_or_create(&keys, &slot).map_err(host_error)?;
            let store = KeyStore::open(&pki).map_err(host_error)?;
            match store.lookup(&id) {
                Some((KeyState::Accepted, k)) if k == pair.public => {}
                Some((KeyState::Rejected, _)) => {
                    return Err(HostError(format!(
                        "the key of {slot} is rejected: `drover key delete {slot}` lets the fleet enroll it again"
                    )));
                }
                Some((KeyState::Accepted, _)) => {
                    return Err(HostError(format!(
                        "another key is accepted for {slot} (a minion that is not this fleet's container?): \
                         `drover key delete {slot}` if the fleet should have the id"
                    )));
                }
                _ => store.put(KeyState::Accepted, &id, &pair.public).map_err(host_error)?,
            }
            // the pair's files as written, for the minion's own pki folder
            let mut files = Vec::new();
            for (ext, mode) in [("key", 0o600), ("pub", 0o600)] {
                let path = keys.join(format!("{slot}.{ext}"));
                let data = std::fs::read(&path).map_err(|e| HostError(format!("{}: {e}", path.display())))?;
                files.push(FileIn { path: format!("{MINION_PKI}/minion.{ext}"), mode, data });
            }
            Ok(files)
        })
        .await
        .map_err(host_error)??;
        let _ = self.hub.send(Command::KeyFilesChanged { id: enrolled }).await;
        Ok(Enrollment {
            files,
            master_key: self.master_key.clone(),
            master_port: self.port,
            master_host: self.host.clone(),
        })
    }

    async fn revoke(&self, slot: &str) -> Result<(), HostError> {
        let id = Self::id(slot)?;
        let (pki, keys) = (self.pki.clone(), self.keys.clone());
        let slot = slot.to_string();
        let removed = id.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<(), HostError> {
            KeyStore::open(&pki).map_err(host_error)?.delete(&removed).map_err(host_error)?;
            for ext in ["key", "pub"] {
                let path = keys.join(format!("{slot}.{ext}"));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(HostError(format!("{}: {e}", path.display()))),
                }
            }
            Ok(())
        })
        .await
        .map_err(host_error)?;
        let _ = self.hub.send(Command::KeyFilesChanged { id }).await;
        done
    }

    fn event(&self, fleet: &str, event: &FleetEvent) {
        self.metrics.fleet_event(event);
        let data = serde_json::to_value(event).unwrap_or_default();
        if let Err(e) = self.store.event(None, &event.tag(fleet), data) {
            tracing::error!(error = %e, "cannot record a fleet event");
        }
    }

    async fn save(&self, record: FleetRecord) -> Result<(), HostError> {
        let json = serde_json::to_string(&record).map_err(host_error)?;
        self.store.save_fleet(json).await.map_err(host_error)
    }
}

pub type FleetController = Controller<Docker, FleetHost>;

/// The controller, made on first use (Docker is reached then).
pub struct FleetService {
    host: FleetHost,
    store: Store,
    controller: OnceCell<FleetController>,
    token: CancellationToken,
}

impl FleetService {
    pub fn new(host: FleetHost, store: Store, token: CancellationToken) -> Arc<Self> {
        Arc::new(FleetService { host, store, controller: OnceCell::new(), token })
    }

    /// The controller; the first call connects to Docker, loads the fleet's record, starts
    /// the healer and resumes a rollout a restart cut short.
    pub async fn controller(&self) -> Result<&FleetController, FleetServiceError> {
        self.controller
            .get_or_try_init(|| async {
                let docker = Docker::connect().await?;
                let record = match self.store.load_fleet().await.map_err(|e| FleetServiceError::Store(e.to_string()))? {
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|e| FleetServiceError::Store(format!("the fleet's record does not read: {e}")))?,
                    None => FleetRecord::default(),
                };
                let controller = Controller::new(docker, self.host.clone(), record, fleet::controller::Options::default());
                controller.spawn_healer(self.token.clone());
                let resuming = controller.clone();
                tokio::spawn(async move {
                    match resuming.resume().await {
                        Ok(Some(r)) => tracing::info!(rollout = r.id, state = %r.state.name(), "resumed an interrupted rollout"),
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "cannot resume the interrupted rollout"),
                    }
                });
                Ok(controller)
            })
            .await
    }

    /// At the master's start: when a fleet is up, reach Docker (trying again every 5 s) so
    /// that its containers are healed and an interrupted rollout goes on.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.store.load_fleet().await {
                Ok(Some(json))
                    if serde_json::from_str::<FleetRecord>(&json).is_ok_and(|r| r.fleet().is_some()) => {}
                _ => return,
            }
            loop {
                match this.controller().await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(error = %e, "the fleet waits for the Docker engine"),
                }
                tokio::select! {
                    _ = this.token.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Store(String),
}
