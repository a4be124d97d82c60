//! The controller: runs the fleet's operations against an [`Engine`] for a [`Host`].
//!
//! - `up`, `scale`, `upgrade`, `undo`, `down` (one at a time per fleet: a second is refused,
//!   naming the first), `ps`, `chaos`;
//! - `slots`: one slot's container made, swapped, reverted, waited for;
//! - `healer`: dead containers replaced in their slots, from the engine's events;
//! - `placing`: the nodes, the placement check before slots are created, `nodes`;
//! - `progress`: what operations tell as they go.
//!
//! Decisions come from the pure modules ([`crate::plan`], [`crate::rollout`],
//! [`crate::heal`]); this module does the I/O they ask for. Its small shared state (the
//! record, the slots an operation is changing, the healer's history) sits behind one mutex,
//! held only between awaits.

mod healer;
mod placing;
mod progress;
mod slots;
mod swarm;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use render::FleetFile;
use serde::{Deserialize, Serialize};

pub use api::fleet::SlotStatus;
pub use progress::{FleetEvent, Progress};

use crate::engine::*;
use crate::heal::Healer;
use crate::host::{Host, MinionView};
use crate::plan::{self, Action};
use crate::record::{Desired, FleetRecord, Override, SlotSpec};
use crate::rollout::{Rollout, RolloutState, SlotState, SlotStep, Step};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Host(#[from] crate::host::HostError),
    /// The request cannot be done as asked: nothing changed.
    #[error("{0}")]
    Refused(String),
    /// Another operation runs on this fleet.
    #[error("{0} is running; wait for it, or see `drover rollout status`")]
    Busy(String),
}

pub type Result<T, E = FleetError> = std::result::Result<T, E>;

/// How the controller times things.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often minions are looked at while waiting for them.
    pub poll: Duration,
    /// How long a container gets between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Containers made or removed at once.
    pub parallel: usize,
    /// How often the healer looks at every container (besides the engine's events).
    pub sweep: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            poll: Duration::from_millis(100),
            stop_timeout: Duration::from_secs(10),
            parallel: 16,
            sweep: Duration::from_secs(5),
        }
    }
}

/// What `drover upgrade --batch/--order` changes of each role's update policy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyOverride {
    pub batch: Option<render::fleet::BatchSize>,
    pub order: Option<render::fleet::Order>,
}

/// How an operation that waits for slots ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Slots connected, converged and healthy.
    pub ready: Vec<String>,
    /// Slots that were not, with why.
    pub not_ready: BTreeMap<String, String>,
    /// The rollout the operation ran, if it ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Lines worth telling (a problem left alone, what was removed).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Outcome {
    /// As the API answers it.
    pub fn to_api(&self) -> api::fleet::FleetOutcome {
        api::fleet::FleetOutcome {
            ready: self.ready.clone(),
            not_ready: self.not_ready.clone(),
            rollout: self.rollout.as_ref().map(Rollout::summary),
            notes: self.notes.clone(),
            killed: Vec::new(),
        }
    }

    /// Every slot ready and no rollout failed.
    pub fn ok(&self) -> bool {
        self.not_ready.is_empty() && self.rollout.as_ref().is_none_or(|r| r.state == RolloutState::Done)
    }
}

struct Shared {
    record: FleetRecord,
    /// Slots an operation is changing: the healer leaves them alone.
    busy: BTreeSet<String>,
    /// What holds the operation lock, to name it to a second one.
    operation: Option<String>,
    healer: Healer,
    /// Swarm: slots whose task died, since when (the healer reports the task replacing it).
    task_deaths: BTreeMap<String, tokio::time::Instant>,
    /// Swarm: the constraints derived for slots an operation is about to create.
    placements: BTreeMap<String, Vec<String>>,
}

/// The fleet's networks, as made sure of before containers are created.
pub(crate) struct FleetNetworks {
    pub fleet: String,
    /// The fleet's own network (`default` in fleet.yaml).
    pub default: NetworkInfo,
    /// The extra networks, by the names roles use.
    pub extra: BTreeMap<String, NetworkInfo>,
}

impl FleetNetworks {
    /// The network roles call `name`, if the fleet has it.
    pub fn get(&self, name: &str) -> Option<&NetworkInfo> {
        if name == render::fleet::DEFAULT_NETWORK { Some(&self.default) } else { self.extra.get(name) }
    }
}

pub(crate) struct Inner<E, H> {
    pub(crate) engine: E,
    pub(crate) host: H,
    pub(crate) opts: Options,
    shared: Mutex<Shared>,
    op: tokio::sync::Mutex<()>,
    /// The last container generation handed out.
    generation: std::sync::atomic::AtomicU64,
    /// Swarm with a registry, in the operation running: per registry and image reference,
    /// the local image id pushed and the reference by digest it got, or why the push failed.
    /// Held through a push, so one image is pushed once an operation, and the slots waiting
    /// on a push that failed fail with it. Emptied as an operation begins.
    pub(crate) pushed: tokio::sync::Mutex<BTreeMap<String, Pushed>>,
}

/// The last push of an image to the fleet's registry.
pub(crate) enum Pushed {
    /// The local image id pushed, and the reference by digest the registry gave it.
    Done { id: String, digest: String },
    /// Why it failed: the slots of the operation that need it fail alike, without waiting.
    Failed(String),
}

/// The fleet controller. Clones share it.
pub struct Controller<E, H> {
    inner: Arc<Inner<E, H>>,
}

impl<E, H> Clone for Controller<E, H> {
    fn clone(&self) -> Self {
        Controller { inner: self.inner.clone() }
    }
}

/// Holds the operation lock and marks slots busy; both released on drop.
struct OpGuard<'a, E, H> {
    inner: &'a Inner<E, H>,
    _lock: tokio::sync::MutexGuard<'a, ()>,
    busy: BTreeSet<String>,
}

impl<E, H> OpGuard<'_, E, H> {
    fn mark(&mut self, slots: impl IntoIterator<Item = String>) {
        let mut shared = self.inner.shared();
        for s in slots {
            shared.busy.insert(s.clone());
            shared.healer.forget(&s);
            self.busy.insert(s);
        }
    }
}

impl<E, H> Drop for OpGuard<'_, E, H> {
    fn drop(&mut self) {
        let mut shared = self.inner.shared();
        for s in &self.busy {
            shared.busy.remove(s);
        }
        shared.operation = None;
    }
}

impl<E, H> Inner<E, H> {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn filter_for(fleet: &str) -> String {
    format!("{LABEL_FLEET}={fleet}")
}

impl<E: Engine, H: Host> Controller<E, H> {
    /// A controller over `engine` for `host`, starting from the record the host kept.
    pub fn new(engine: E, host: H, record: FleetRecord, opts: Options) -> Self {
        let shared = Shared {
            record,
            busy: BTreeSet::new(),
            operation: None,
            healer: Healer::default(),
            task_deaths: BTreeMap::new(),
            placements: BTreeMap::new(),
        };
        let inner = Inner {
            engine,
            host,
            opts,
            shared: Mutex::new(shared),
            op: tokio::sync::Mutex::new(()),
            generation: Default::default(),
            pushed: Default::default(),
        };
        Controller { inner: Arc::new(inner) }
    }

    pub fn engine(&self) -> &E {
        &self.inner.engine
    }

    /// The record as it stands.
    pub fn record(&self) -> FleetRecord {
        self.inner.shared().record.clone()
    }

    /// Takes the operation lock, or says who holds it.
    fn begin(&self, name: String) -> Result<OpGuard<'_, E, H>> {
        let lock = match self.inner.op.try_lock() {
            Ok(lock) => lock,
            Err(_) => {
                let running =
                    self.inner.shared().operation.clone().unwrap_or_else(|| "another operation".into());
                return Err(FleetError::Busy(running));
            }
        };
        self.inner.shared().operation = Some(name);
        // each operation pushes every image it runs once: a registry emptied or replaced
        // since (a `down --volumes`, a registry without a volume) gets it again
        if let Ok(mut pushed) = self.inner.pushed.try_lock() {
            pushed.clear();
        }
        Ok(OpGuard { inner: &self.inner, _lock: lock, busy: BTreeSet::new() })
    }

    /// Keeps `record` (host first, then in memory).
    async fn save(&self, record: FleetRecord) -> Result<()> {
        self.inner.host.save(record.clone()).await?;
        self.inner.shared().record = record;
        Ok(())
    }

    pub(crate) fn emit(&self, progress: &Progress, event: FleetEvent) {
        let fleet = self.inner.shared().record.fleet().unwrap_or("").to_string();
        progress.send(&event);
        self.inner.host.event(&fleet, &event);
    }

    /// Containers of the fleet, by the engine; on Swarm its services, one per slot.
    async fn observed(&self, fleet: &str, swarm: bool) -> Result<Vec<ContainerInfo>> {
        if swarm {
            return Ok(self.inner.engine.services(&[&filter_for(fleet)]).await?);
        }
        Ok(self.inner.engine.containers(&[&filter_for(fleet)]).await?)
    }

    /// Every image reference the desired slots need exists; else which versions do.
    async fn check_images(&self, desired: &Desired) -> Result<()> {
        let mut missing = Vec::new();
        let refs: BTreeSet<(String, String)> =
            desired.slots.values().map(|s| (s.spec.image.clone(), s.version.clone())).collect();
        for (image, version) in refs {
            // only an image drover built as that tag: it has the minion as its entrypoint
            if crate::image::find(&self.inner.engine, &image, &version).await?.is_some() {
                continue;
            }
            let built = crate::image::versions(&self.inner.engine, &image).await?;
            let have = if built.is_empty() {
                format!(
                    "no version of {image} is built: `drover image build images/{image} --tag {image}:{version}`"
                )
            } else {
                let names: Vec<&str> = built.iter().map(|r| r.version.as_str()).collect();
                format!("versions built: {}", names.join(", "))
            };
            missing.push(format!("image {image}:{version} does not exist ({have})"));
        }
        if missing.is_empty() { Ok(()) } else { Err(FleetError::Refused(missing.join("; "))) }
    }

    /// The fleet's network and its extra ones (`networks:`), each created if missing (a
    /// bridge, or on Swarm an attachable overlay); one drover did not create is refused.
    async fn network(&self, desired: &Desired) -> Result<FleetNetworks> {
        let default = if desired.swarm {
            self.swarm_network(desired).await?
        } else {
            self.fleet_network(desired, &desired.network, "set `network:` in fleet.yaml").await?
        };
        let mut extra = BTreeMap::new();
        for name in &desired.networks {
            let docker = desired.network_name(name);
            let what = format!("rename the network `{name}` in fleet.yaml's `networks:`");
            let mut info = self.fleet_network(desired, &docker, &what).await?;
            if desired.swarm {
                // containers on an overlay reach the master through docker_gwbridge
                info.gateway = default.gateway;
            }
            extra.insert(name.clone(), info);
        }
        Ok(FleetNetworks { fleet: desired.fleet.clone(), default, extra })
    }

    /// The network `name` of the fleet, created if missing; `rename` says how to use
    /// another name when one drover did not create is in the way.
    pub(crate) async fn fleet_network(
        &self,
        desired: &Desired,
        name: &str,
        rename: &str,
    ) -> Result<NetworkInfo> {
        match self.inner.engine.network(name).await? {
            Some(n) if n.labels.get(LABEL_FLEET) == Some(&desired.fleet) => Ok(n),
            Some(_) => Err(FleetError::Refused(format!(
                "a network named {name} exists that is not this fleet's (no {LABEL_FLEET}={} label): drover never \
                 touches it; remove or rename it, or {rename}",
                desired.fleet
            ))),
            None => {
                let labels = Labels::from([(LABEL_FLEET.to_string(), desired.fleet.clone())]);
                if desired.swarm {
                    Ok(self.inner.engine.create_overlay_network(name, &labels).await?)
                } else {
                    Ok(self.inner.engine.create_network(name, &labels).await?)
                }
            }
        }
    }

    /// Names the containers and volumes the plan would create that exist without the
    /// fleet's label: drover never touches them.
    async fn check_clashes(&self, desired: &Desired, creates: &[&SlotSpec]) -> Result<()> {
        let mut clashes = Vec::new();
        for slot in creates.iter().filter(|_| !desired.swarm) {
            if let Some(c) = self.inner.engine.container(&slot.slot).await?
                && c.labels.get(LABEL_FLEET) != Some(&desired.fleet)
            {
                clashes.push(format!("a container named {} exists that drover did not create", slot.slot));
            }
        }
        let ours: BTreeSet<String> = self
            .inner
            .engine
            .volumes(&[&filter_for(&desired.fleet)])
            .await?
            .into_iter()
            .map(|v| v.name)
            .collect();
        let all: BTreeSet<String> =
            self.inner.engine.volumes(&[]).await?.into_iter().map(|v| v.name).collect();
        for slot in creates {
            for target in &slot.spec.volumes {
                let name = crate::record::volume_name(&slot.slot, target);
                if all.contains(&name) && !ours.contains(&name) {
                    clashes.push(format!("a volume named {name} exists that drover did not create"));
                }
            }
        }
        if clashes.is_empty() {
            return Ok(());
        }
        Err(FleetError::Refused(format!(
            "{}; drover never touches what it did not create: remove or rename them, or choose another fleet name",
            clashes.join("; ")
        )))
    }

    /// `drover up`: the fleet of `file` (at `commit`) made real, then waited for.
    pub async fn up(
        &self,
        file: FleetFile,
        commit: String,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Outcome> {
        let mut op = self.begin(format!("up of fleet {}", file.fleet))?;
        self.inner.engine.info().await?;
        let before = self.record();
        if let Some(old) = before.fleet().filter(|old| *old != file.fleet) {
            return Err(FleetError::Refused(format!(
                "this master runs fleet {old}; fleet.yaml now names {}: `drover down` first, or keep the name",
                file.fleet
            )));
        }
        let swarm = file.engine == render::fleet::EngineKind::Swarm;
        if before.fleet().is_some() && before.swarm() != swarm {
            let (was, now) = if swarm { ("this engine", "swarm") } else { ("Swarm", "local") };
            return Err(FleetError::Refused(format!(
                "fleet {} runs on {was}; fleet.yaml now says `engine: {now}`: `drover down` first (a fleet does not \
                 move between engines in place)",
                file.fleet
            )));
        }
        let record = before.brought_up(file, commit);
        let desired = record.desired();
        self.check_images(&desired).await?;
        let observed = self.observed(&desired.fleet, desired.swarm).await?;
        let mut plan = plan::reconcile(&desired, &observed);
        if desired.swarm {
            // a slot whose task is not running is Swarm's to restart, not drover's to replace
            plan.actions.retain(|a| !matches!(a, Action::Replace { .. }));
        }
        let creates: Vec<&SlotSpec> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { slot } => desired.slots.get(slot),
                _ => None,
            })
            .collect();
        self.check_clashes(&desired, &creates).await?;
        self.check_placement(&desired, &observed, &creates).await?;
        let network = self.network(&desired).await?;
        self.save(record).await?;
        op.mark(desired.slots.keys().cloned());
        op.mark(observed.iter().filter_map(|c| c.label(LABEL_SLOT).map(String::from)));
        let mut outcome = Outcome { notes: plan.problems.clone(), ..Outcome::default() };
        self.apply_plan(&desired, &network, &plan, progress).await?;
        if !plan.changes.is_empty() {
            let rollout = self.new_rollout(&desired, &plan.changes, &PolicyOverride::default());
            outcome.rollout = Some(self.run_rollout(rollout, &desired, &network, progress).await?);
        }
        self.wait_all(&desired, timeout, progress, &mut outcome).await;
        Ok(outcome)
    }

    /// Removes, creates and replaces what `plan` says (not its version changes).
    async fn apply_plan(
        &self,
        desired: &Desired,
        network: &FleetNetworks,
        plan: &plan::Plan,
        progress: &Progress,
    ) -> Result<()> {
        self.emit(
            progress,
            FleetEvent::Plan {
                create: slots_of(plan, |a| matches!(a, Action::Create { .. })),
                replace: slots_of(plan, |a| matches!(a, Action::Replace { .. })),
                remove: slots_of(plan, |a| matches!(a, Action::Remove { .. })),
                change: plan.changes.iter().map(plan::Change::to_api).collect(),
                keep: plan.keep.clone(),
            },
        );
        let removed_slots: BTreeSet<String> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove { container, .. } => {
                    container.label(LABEL_SLOT).filter(|s| !desired.slots.contains_key(*s)).map(String::from)
                }
                _ => None,
            })
            .collect();
        // owned actions: a closure over borrowed ones makes the future not `Send` for every
        // lifetime (rust-lang/rust#102211)
        let mut actions = plan.actions.clone();
        if let Some(role) = desired.registry.as_ref().and_then(|r| r.role.as_deref()) {
            // the registry's own slots start first: the others' pushes wait for it
            let registry_slot = |a: &Action| match a {
                Action::Create { slot } | Action::Replace { slot, .. } => {
                    desired.slots.get(slot).is_some_and(|s| s.role == role)
                }
                Action::Remove { .. } => false,
            };
            actions.sort_by_key(|a| !registry_slot(a));
        }
        let results: Vec<Result<()>> = futures_util::stream::iter(actions)
            .map(|action| async move {
                match &action {
                    Action::Remove { container, .. } => self.remove_container(container, progress).await,
                    Action::Create { slot } => {
                        let spec = &desired.slots[slot];
                        self.launch(spec, &spec.version, network, progress).await.map(|_| ())
                    }
                    Action::Replace { slot, container } => {
                        self.remove_container(container, progress).await?;
                        let spec = &desired.slots[slot];
                        self.launch(spec, &spec.version, network, progress).await.map(|_| ())
                    }
                }
            })
            .buffer_unordered(self.inner.opts.parallel.max(1))
            .collect()
            .await;
        for slot in removed_slots {
            self.inner.host.revoke(&slot).await?;
            if desired.swarm {
                self.remove_slot_secrets(&desired.fleet, &slot).await;
            }
        }
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// A rollout of `changes`, with each role's policy, `over` it.
    fn new_rollout(&self, desired: &Desired, changes: &[plan::Change], over: &PolicyOverride) -> Rollout {
        let mut roles: Vec<String> = changes.iter().map(|c| c.role.clone()).collect();
        roles.dedup();
        let parts = roles
            .iter()
            .map(|role| {
                let mut p = desired.slots_of(role).next().map(|s| s.spec.update).unwrap_or_default();
                if let Some(batch) = over.batch {
                    p.batch = batch;
                }
                if let Some(order) = over.order {
                    p.order = order;
                }
                (role.clone(), p)
            })
            .collect();
        let slots = changes
            .iter()
            .map(|c| SlotStep {
                slot: c.slot.clone(),
                role: c.role.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                state: SlotState::Pending,
                reason: None,
            })
            .collect();
        let id = self.inner.shared().record.rollouts.last().map_or(1, |r| r.id + 1);
        Rollout::new(id, parts, slots, wire::msg::now_ms())
    }

    /// Runs `rollout` to its end, keeping it after every step.
    async fn run_rollout(
        &self,
        mut rollout: Rollout,
        desired: &Desired,
        network: &FleetNetworks,
        progress: &Progress,
    ) -> Result<Rollout> {
        self.emit(
            progress,
            FleetEvent::Rollout { rollout: rollout.id, state: rollout.state.name(), reason: None },
        );
        loop {
            let step = rollout.next_step();
            self.keep_rollout(&rollout).await?;
            match step {
                Step::Swap { role, order, slots } => {
                    let to = rollout.slot(&slots[0]).map(|s| s.to.clone()).unwrap_or_default();
                    self.emit(
                        progress,
                        FleetEvent::Batch {
                            rollout: rollout.id,
                            role: role.clone(),
                            batch: rollout.batches,
                            slots: slots.clone(),
                            to,
                        },
                    );
                    let outcomes =
                        self.swap_all(&rollout, &slots, order, network, desired, false, progress).await;
                    rollout.swapped(outcomes);
                }
                Step::Revert { slots } => {
                    self.emit(progress, FleetEvent::Revert { rollout: rollout.id, slots: slots.clone() });
                    let order = render::fleet::Order::StopFirst;
                    let outcomes =
                        self.swap_all(&rollout, &slots, order, network, desired, true, progress).await;
                    rollout.reverted(outcomes);
                }
                Step::Done(state) => {
                    if state == RolloutState::RolledBack {
                        // the record wants what runs again
                        let mut record = self.record();
                        for s in rollout.slots.iter().filter(|s| s.state != SlotState::Pending) {
                            record.overrides.entry(s.role.clone()).or_default().version =
                                Some(s.from.clone());
                        }
                        record.put_rollout(rollout.clone());
                        self.save(record).await?;
                    }
                    self.emit(
                        progress,
                        FleetEvent::Rollout {
                            rollout: rollout.id,
                            state: state.name(),
                            reason: rollout.reason.clone(),
                        },
                    );
                    return Ok(rollout);
                }
            }
        }
    }

    async fn keep_rollout(&self, rollout: &Rollout) -> Result<()> {
        let mut record = self.record();
        record.put_rollout(rollout.clone());
        self.save(record).await
    }

    /// Swaps (or reverts) `slots` at once; each slot's outcome.
    #[allow(clippy::too_many_arguments)]
    async fn swap_all(
        &self,
        rollout: &Rollout,
        slots: &[String],
        order: render::fleet::Order,
        network: &FleetNetworks,
        desired: &Desired,
        back: bool,
        progress: &Progress,
    ) -> Vec<crate::rollout::Outcome> {
        futures_util::future::join_all(slots.iter().map(|name| async move {
            let Some(step) = rollout.slot(name) else {
                return (name.clone(), Err("not in the rollout".to_string()));
            };
            let Some(spec) = desired.slots.get(name) else {
                return (name.clone(), Err("no longer wanted by the fleet".to_string()));
            };
            let version = if back { &step.from } else { &step.to };
            let policy = &spec.spec.update;
            // putting a slot back (a failed swap reverted, or `rollout undo`): on Swarm, its
            // service's own rollback to the spec it had
            let back = back || rollout.undoes.is_some();
            let result = self.swap(spec, version, order, policy, network, back, progress).await;
            (name.clone(), result)
        }))
        .await
    }

    /// Waits until every desired slot is ready or `timeout` passed; fills `outcome`.
    async fn wait_all(
        &self,
        desired: &Desired,
        timeout: Duration,
        progress: &Progress,
        outcome: &mut Outcome,
    ) {
        let names: Vec<String> = desired.slots.keys().cloned().collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let total = names.len();
        let mut last_ready = usize::MAX;
        loop {
            let views = self.inner.host.minions(names.clone()).await;
            let containers = self.observed(&desired.fleet, desired.swarm).await.unwrap_or_default();
            let current: BTreeMap<&str, &ContainerInfo> = containers
                .iter()
                .filter(|c| c.label(LABEL_SLOT) == Some(c.name.as_str()))
                .map(|c| (c.name.as_str(), c))
                .collect();
            let mut ready = Vec::new();
            let mut not_ready = BTreeMap::new();
            for name in &names {
                let view = views.get(name);
                match (current.get(name.as_str()), view) {
                    (Some(c), Some(v)) if v.ready() && speaks_for(v, c) => ready.push(name.clone()),
                    (c, v) => {
                        not_ready.insert(name.clone(), why_not_ready(c.copied(), v));
                    }
                }
            }
            if ready.len() != last_ready {
                last_ready = ready.len();
                self.emit(progress, FleetEvent::Ready { ready: ready.len(), total });
            }
            if not_ready.is_empty() || tokio::time::Instant::now() >= deadline {
                outcome.ready = ready;
                outcome.not_ready = not_ready;
                return;
            }
            tokio::time::sleep(self.inner.opts.poll).await;
        }
    }

    /// `drover scale role=n`.
    pub async fn scale(
        &self,
        role: &str,
        replicas: u32,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Outcome> {
        let mut op = self.begin(format!("scale of {role} to {replicas}"))?;
        self.inner.engine.info().await?;
        let mut record = self.record();
        let Some(applied) = &record.applied else {
            return Err(FleetError::Refused("no fleet is up: `drover up` first".into()));
        };
        let Some(spec) = applied.file.roles.get(role) else {
            let roles: Vec<&str> = applied.file.roles.keys().map(String::as_str).collect();
            return Err(FleetError::Refused(format!(
                "the fleet has no role {role} (roles: {})",
                roles.join(", ")
            )));
        };
        if replicas > 1000 {
            return Err(FleetError::Refused(format!("{replicas} replicas: at most 1000")));
        }
        if replicas > 1 && spec.ports.iter().any(|p| p.host_port.is_some()) {
            return Err(FleetError::Refused(format!(
                "{role} publishes a fixed host port: {replicas} replicas would collide on it (publish no host port, \
                 or put the replicas behind a load balancer)"
            )));
        }
        record.overrides.entry(role.to_string()).or_default().replicas = Some(replicas);
        if record.overrides[role].replicas == Some(spec.replicas) {
            record.overrides.entry(role.to_string()).or_default().replicas = None;
        }
        record.overrides.retain(|_, o| *o != Override::default());
        let desired = record.desired();
        self.check_images(&desired).await?;
        let observed = self.observed(&desired.fleet, desired.swarm).await?;
        let mut plan = plan::reconcile(&desired, &observed);
        if desired.swarm {
            plan.actions.retain(|a| !matches!(a, Action::Replace { .. }));
        }
        // scale creates and removes this role's slots; other drift is left to `up`
        let of_role = |slot: &str| {
            desired.slots.get(slot).map(|s| s.role.as_str()) == Some(role)
                || slot_role(&observed, slot) == Some(role)
        };
        plan.actions.retain(|a| of_role(&action_slot(a)));
        plan.changes.clear();
        let creates: Vec<&SlotSpec> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { slot } => desired.slots.get(slot),
                _ => None,
            })
            .collect();
        self.check_clashes(&desired, &creates).await?;
        self.check_placement(&desired, &observed, &creates).await?;
        let network = self.network(&desired).await?;
        self.save(record).await?;
        op.mark(plan.actions.iter().map(action_slot));
        self.apply_plan(&desired, &network, &plan, progress).await?;
        let mut outcome = Outcome::default();
        let only_role = Desired {
            slots: desired
                .slots
                .iter()
                .filter(|(_, s)| s.role == role)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..desired.clone()
        };
        self.wait_all(&only_role, timeout, progress, &mut outcome).await;
        Ok(outcome)
    }

    /// `drover upgrade [role...] --to VERSION`: a rollout of the roles' slots to `to`.
    pub async fn upgrade(
        &self,
        roles: &[String],
        to: &str,
        over: PolicyOverride,
        progress: &Progress,
    ) -> Result<Outcome> {
        let mut record = self.record();
        let Some(applied) = &record.applied else {
            return Err(FleetError::Refused("no fleet is up: `drover up` first".into()));
        };
        let all: Vec<String> = applied.file.roles.keys().cloned().collect();
        let roles: Vec<String> = if roles.is_empty() { all.clone() } else { roles.to_vec() };
        if let Some(unknown) = roles.iter().find(|r| !all.contains(r)) {
            return Err(FleetError::Refused(format!(
                "the fleet has no role {unknown} (roles: {})",
                all.join(", ")
            )));
        }
        let mut op = self.begin(format!("upgrade of {} to {to}", roles.join(", ")))?;
        self.inner.engine.info().await?;
        for role in &roles {
            record.overrides.entry(role.clone()).or_default().version = Some(to.to_string());
        }
        let desired = record.desired();
        self.check_images(&desired).await?;
        let network = self.network(&desired).await?;
        let observed = self.observed(&desired.fleet, desired.swarm).await?;
        let plan = plan::reconcile(&desired, &observed);
        let changes: Vec<plan::Change> =
            plan.changes.iter().filter(|c| roles.contains(&c.role)).cloned().collect();
        self.save(record).await?;
        op.mark(desired.slots.values().filter(|s| roles.contains(&s.role)).map(|s| s.slot.clone()));
        let mut outcome = Outcome::default();
        if changes.is_empty() {
            outcome.notes.push(format!("every slot of {} runs {to} already", roles.join(", ")));
        } else {
            let rollout = self.new_rollout(&desired, &changes, &over);
            outcome.rollout = Some(self.run_rollout(rollout, &desired, &network, progress).await?);
        }
        Ok(outcome)
    }

    /// `drover rollout undo`: the last rollout that ended done or paused, reverted.
    pub async fn undo(&self, progress: &Progress) -> Result<Outcome> {
        let mut op = self.begin("rollout undo".into())?;
        self.inner.engine.info().await?;
        let mut record = self.record();
        let Some(last) = record
            .rollouts
            .iter()
            .rev()
            .find(|r| matches!(r.state, RolloutState::Done | RolloutState::Paused))
            .cloned()
        else {
            return Err(FleetError::Refused("no finished rollout to undo".into()));
        };
        if record.rollouts.iter().any(|r| r.undoes == Some(last.id)) {
            return Err(FleetError::Refused(format!("rollout {} was undone already", last.id)));
        }
        let id = record.rollouts.last().map_or(1, |r| r.id + 1);
        let undo = last.undo(id, wire::msg::now_ms());
        for s in &undo.slots {
            record.overrides.entry(s.role.clone()).or_default().version = Some(s.to.clone());
        }
        let desired = record.desired();
        self.check_images(&desired).await?;
        let network = self.network(&desired).await?;
        self.save(record).await?;
        op.mark(undo.slots.iter().map(|s| s.slot.clone()));
        let rollout = self.run_rollout(undo, &desired, &network, progress).await?;
        Ok(Outcome { rollout: Some(rollout), ..Outcome::default() })
    }

    /// `drover down`: every container and network of the fleet removed, its keys revoked;
    /// its volumes too with `volumes`.
    pub async fn down(&self, volumes: bool, progress: &Progress) -> Result<Outcome> {
        let mut op = self.begin("down".into())?;
        self.inner.engine.info().await?;
        let mut record = self.record();
        let Some(fleet) = record.fleet().map(String::from) else {
            return self.down_leftovers(record.taken_down.as_deref(), volumes).await;
        };
        let desired = record.desired();
        let observed = self.observed(&fleet, desired.swarm).await?;
        let mut slots: BTreeSet<String> = desired.slots.keys().cloned().collect();
        slots.extend(observed.iter().filter_map(|c| c.label(LABEL_SLOT).map(String::from)));
        op.mark(slots.iter().cloned());
        // the healer stops at once: no fleet is brought up any more
        record.applied = None;
        record.overrides.clear();
        record.taken_down = Some(fleet.clone());
        self.save(record).await?;
        let results: Vec<Result<()>> = futures_util::stream::iter(observed.clone())
            .map(|c| async move { self.remove_container(&c, progress).await })
            .buffer_unordered(self.inner.opts.parallel.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        for slot in &slots {
            self.inner.host.revoke(slot).await?;
        }
        let filter = filter_for(&fleet);
        let mut notes = Vec::new();
        if desired.swarm {
            let secrets = self.swarm_leftovers(&fleet).await?;
            notes.push(format!("removed {secrets} secrets"));
        }
        for n in self.inner.engine.networks(&[&filter]).await? {
            // an overlay's endpoints may outlive the containers a moment
            let mut tries = if desired.swarm { 40 } else { 1 };
            loop {
                tries -= 1;
                match self.inner.engine.remove_network(&n.name).await {
                    Ok(()) => break,
                    Err(_) if tries > 0 => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => return Err(e.into()),
                }
            }
            notes.push(format!("removed network {}", n.name));
        }
        let vols = self.inner.engine.volumes(&[&filter]).await?;
        if volumes {
            for v in &vols {
                self.inner.engine.remove_volume(&v.name).await?;
            }
            notes.push(format!("removed {} volumes", vols.len()));
        } else if !vols.is_empty() {
            notes.push(format!("kept {} volumes (`drover down --volumes` removes them)", vols.len()));
        }
        let what = if desired.swarm { "services" } else { "containers" };
        notes.insert(0, format!("removed {} {what}", observed.len()));
        Ok(Outcome { notes, ..Outcome::default() })
    }

    /// `down` with no fleet up: what the last `down` kept of fleet `last` (its volumes, with
    /// `volumes`).
    async fn down_leftovers(&self, last: Option<&str>, volumes: bool) -> Result<Outcome> {
        let Some(fleet) = last else {
            return Ok(Outcome { notes: vec!["no fleet is up".into()], ..Outcome::default() });
        };
        let vols = self.inner.engine.volumes(&[&filter_for(fleet)]).await?;
        let note = match (volumes, vols.len()) {
            (_, 0) => format!("no fleet is up, and fleet {fleet}, taken down before, left no volumes"),
            (true, n) => {
                for v in &vols {
                    self.inner.engine.remove_volume(&v.name).await?;
                }
                format!("no fleet is up; removed the {n} volumes fleet {fleet} left when it was taken down")
            }
            (false, n) => format!(
                "no fleet is up; fleet {fleet}, taken down before, left {n} volumes (`drover down --volumes` \
                 removes them)"
            ),
        };
        Ok(Outcome { notes: vec![note], ..Outcome::default() })
    }

    /// `drover ps`: every slot, wanted or found, with its minion; `head` is fleet.yaml at
    /// HEAD, to show drift from it.
    pub async fn ps(&self, head: Option<&FleetFile>) -> Result<Vec<SlotStatus>> {
        let record = self.record();
        let Some(fleet) = record.fleet().map(String::from) else { return Ok(Vec::new()) };
        let desired = record.desired();
        let observed = self.observed(&fleet, desired.swarm).await?;
        let mut names: BTreeSet<String> = desired.slots.keys().cloned().collect();
        names.extend(observed.iter().filter_map(|c| c.label(LABEL_SLOT).map(String::from)));
        let views = self.inner.host.minions(names.iter().cloned().collect()).await;
        let given_up = self.inner.shared().healer.given_up_slots();
        let mut out = Vec::new();
        for name in names {
            let want = desired.slots.get(&name);
            let containers: Vec<&ContainerInfo> =
                observed.iter().filter(|c| c.label(LABEL_SLOT) == Some(name.as_str())).collect();
            let current = containers.iter().max_by_key(|c| c.generation()).copied();
            let view = views.get(&name);
            let role = want
                .map(|w| w.role.clone())
                .or_else(|| current.and_then(|c| c.label(LABEL_ROLE).map(String::from)))
                .unwrap_or_default();
            let version = current.and_then(|c| c.label(LABEL_VERSION)).unwrap_or("").to_string();
            let mut drift = Vec::new();
            match want {
                None => drift.push("not wanted: removed by the next `drover up`".to_string()),
                Some(w) if current.is_some() && w.version != version => {
                    drift.push(format!("wanted at {}", w.version))
                }
                _ => {}
            }
            if let (Some(head), Some(w)) = (head, want) {
                match head.roles.get(&w.role) {
                    None => drift.push("its role is gone from fleet.yaml at HEAD".into()),
                    Some(h) => {
                        if h.version != w.version {
                            drift.push(format!("fleet.yaml at HEAD says {}", h.version));
                        }
                        if w.n > h.replicas {
                            drift.push(format!("fleet.yaml at HEAD has {} replicas", h.replicas));
                        }
                    }
                }
            }
            let live = current.filter(|c| view.is_some_and(|v| speaks_for(v, c)));
            let problem = if given_up.contains(&name) {
                Some(format!(
                    "given up after {} deaths in {} min",
                    crate::heal::GIVE_UP_AFTER,
                    crate::heal::WINDOW.as_secs() / 60
                ))
            } else if view.is_some_and(MinionView::ready) && live.is_some() {
                None
            } else {
                Some(why_not_ready(current, view))
            };
            out.push(SlotStatus {
                slot: name.clone(),
                role,
                image: current
                    .map(|c| c.image.clone())
                    .or_else(|| want.map(SlotSpec::reference))
                    .unwrap_or_default(),
                version,
                state: current.map_or("missing", |c| c.state.as_str()).to_string(),
                connected: live.is_some() && view.is_some_and(|v| v.connected),
                converged: live.and(view).and_then(|v| v.converged.clone()),
                health: current
                    .map_or("none", |c| match c.health {
                        Health::Healthy => "healthy",
                        Health::Unhealthy => "unhealthy",
                        Health::Starting => "starting",
                        Health::None => "none",
                    })
                    .to_string(),
                node: current.and_then(|c| c.node.clone()),
                drift: (!drift.is_empty()).then(|| drift.join("; ")),
                problem,
            });
        }
        Ok(out)
    }

    /// `drover chaos kill`: kills a running container of `role` (any role) every `every`
    /// for `length`; the healer replaces them. Returns the slots killed.
    pub async fn chaos(
        &self,
        role: Option<&str>,
        every: Duration,
        length: Duration,
        progress: &Progress,
    ) -> Result<Vec<String>> {
        let record = self.record();
        let Some(fleet) = record.fleet().map(String::from) else {
            return Err(FleetError::Refused("no fleet is up: `drover up` first".into()));
        };
        if let Some(role) = role
            && !record.desired().slots.values().any(|s| s.role == role)
        {
            return Err(FleetError::Refused(format!("the fleet has no slot of role {role}")));
        }
        let swarm = record.swarm();
        let every = every.max(Duration::from_millis(100));
        let rounds = (length.as_millis() / every.as_millis()).clamp(1, 1000) as usize;
        let mut killed = Vec::new();
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(every).await;
            }
            let busy = self.inner.shared().busy.clone();
            // on Swarm: every slot's service, on whichever node its task runs
            let candidates: Vec<ContainerInfo> = self
                .observed(&fleet, swarm)
                .await?
                .into_iter()
                .filter(|c| c.state == ContainerState::Running)
                .filter(|c| role.is_none_or(|r| c.label(LABEL_ROLE) == Some(r)))
                .filter(|c| c.label(LABEL_SLOT).is_some_and(|s| !busy.contains(s)))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let victim = &candidates[fastrand::usize(..candidates.len())];
            let slot = victim.label(LABEL_SLOT).unwrap_or(&victim.name).to_string();
            let detail = if swarm {
                // the manager's engine cannot reach a container on another node; the
                // minion, PID 1 of its container, ends itself and the container with it
                if let Err(e) = self.inner.host.kill_minion(&slot).await {
                    tracing::warn!(%slot, error = %e, "chaos: the slot's minion could not be killed");
                    continue;
                }
                match &victim.node {
                    Some(node) => format!("chaos: minion.kill on {node}"),
                    None => "chaos: minion.kill".to_string(),
                }
            } else {
                self.inner.engine.kill(&victim.id, "KILL").await?;
                "chaos".to_string()
            };
            self.emit(
                progress,
                FleetEvent::Slot { slot: slot.clone(), step: "killed".into(), detail: Some(detail) },
            );
            killed.push(slot);
        }
        Ok(killed)
    }

    /// At the master's start: a rollout that was running when it stopped is resumed.
    pub async fn resume(&self) -> Result<Option<Rollout>> {
        let record = self.record();
        let Some(mut rollout) = record.running().cloned() else { return Ok(None) };
        let mut op = self.begin(format!("rollout {} (resumed after a restart)", rollout.id))?;
        rollout.resume();
        let desired = record.desired();
        let network = self.network(&desired).await?;
        op.mark(rollout.slots.iter().map(|s| s.slot.clone()));
        let progress = Progress::none();
        self.emit(
            &progress,
            FleetEvent::Note {
                message: format!("rollout {} was interrupted by a master restart: resuming it", rollout.id),
            },
        );
        Ok(Some(self.run_rollout(rollout, &desired, &network, &progress).await?))
    }
}

/// The slot an action is about.
fn action_slot(a: &Action) -> String {
    match a {
        Action::Create { slot } | Action::Replace { slot, .. } => slot.clone(),
        Action::Remove { container, .. } => {
            container.label(LABEL_SLOT).unwrap_or(&container.name).to_string()
        }
    }
}

/// The slots of the plan's actions of one kind.
fn slots_of(plan: &plan::Plan, kind: impl Fn(&Action) -> bool) -> Vec<String> {
    plan.actions.iter().filter(|a| kind(a)).map(action_slot).collect()
}

fn slot_role<'a>(observed: &'a [ContainerInfo], slot: &str) -> Option<&'a str> {
    observed.iter().find(|c| c.label(LABEL_SLOT) == Some(slot)).and_then(|c| c.label(LABEL_ROLE))
}

/// Whether the minion `view` shows is the one of container `c`: of its generation, and `c`
/// running. (A task Swarm moves to another node has the generation of the one it replaces,
/// whose minion may still be connected while the new task is only created.)
fn speaks_for(view: &MinionView, c: &ContainerInfo) -> bool {
    c.state == ContainerState::Running && view.generation == c.generation()
}

/// Why a slot is not ready, in a few words.
fn why_not_ready(container: Option<&ContainerInfo>, view: Option<&MinionView>) -> String {
    let Some(c) = container else { return "no container".into() };
    if c.state != ContainerState::Running {
        return match c.exit_code {
            Some(code) => format!("container {} (exit code {code})", c.state.as_str()),
            None => format!("container {}", c.state.as_str()),
        };
    }
    let Some(v) = view.filter(|v| v.generation == c.generation()) else {
        return "minion not connected yet".into();
    };
    if !v.connected {
        return "minion not connected".into();
    }
    if let Some(failed) = &v.failed {
        return format!("apply failed: {failed}");
    }
    if v.converged.is_none() {
        return "not converged yet".into();
    }
    v.problem.clone().unwrap_or_else(|| "not healthy yet".into())
}
