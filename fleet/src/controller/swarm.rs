//! The fleet on Swarm (`engine: swarm`): each slot a service of one replica named after the
//! slot, so the slot's name stays its minion's id, its hostname and its volumes' prefix
//! across versions.
//!
//! - A slot's keys travel as Swarm secrets named by a hash of their content
//!   (`<slot>.key-<hash>`), mounted where the minion reads its keys; `down` (or a scale-down)
//!   removes them with the slot's services and revokes the keys.
//! - A swap is a service update: the role's update policy becomes the service's update
//!   configuration ([`service_update`]), Swarm starts the new task (gated by the image's
//!   health check, the minion's own) and rolls back on its own when it fails; drover waits
//!   for the minion as on one engine and reverts through another update if Swarm has not.
//! - A dead task is Swarm's to replace (its restart policy; none for a role with
//!   `heal: false`): the healer only reports it (`died`, `replaced`, `healed`), never
//!   recreates a service.
//! - The network is an overlay, attachable; containers reach a master that listens on every
//!   address through the node's `docker_gwbridge` gateway (one node; beyond it the master
//!   needs `--advertise`).

use std::time::Duration;

use render::fleet::{OnFailure, Order, UpdatePolicy};
use sha2::Digest;

use super::{Controller, FleetError, FleetEvent, FleetNetworks, Progress, Pushed, Result};
use crate::engine::*;
use crate::host::{Enrollment, Host};
use crate::record::{Desired, SlotSpec};

/// The bridge through which a node's Swarm containers reach the node itself.
pub const GWBRIDGE: &str = "docker_gwbridge";

/// A label Docker puts on every container of a Swarm task.
pub const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

/// How long `docker_gwbridge` may take to appear after `docker swarm init`.
const GWBRIDGE_WAIT: Duration = Duration::from_secs(30);

/// How long `down` waits for Swarm to remove the services' containers.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// How long a push waits for a registry the fleet runs to answer (its slot is created in
/// the same operation, so it starts while the first pushes wait), and for one it was told
/// about (a moment's hiccup, not a registry that is not there).
const REGISTRY_WAIT: Duration = Duration::from_secs(120);
const TOLD_REGISTRY_WAIT: Duration = Duration::from_secs(5);

/// The longest one push may take (a first push sends the whole image; one that hangs
/// must not hold every other slot of the operation).
const PUSH_TIMEOUT: Duration = Duration::from_secs(600);

/// A role's update policy as the update configuration of each of its slots' services. A
/// service holds one task, so parallelism is 1 and the failure ratio 0; the batches and
/// the role's `max_failure_ratio` stay drover's, across services.
pub(crate) fn service_update(policy: &UpdatePolicy, order: Order) -> ServiceUpdate {
    ServiceUpdate {
        parallelism: 1,
        start_first: order == Order::StartFirst,
        monitor: policy.min_healthy,
        failure_action: match policy.on_failure {
            OnFailure::Rollback => FailureAction::Rollback,
            OnFailure::Pause => FailureAction::Pause,
            OnFailure::Continue => FailureAction::Continue,
        },
        max_failure_ratio: 0.0,
    }
}

/// A secret to create for a slot: its name, labels and content, and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SlotSecret {
    pub name: String,
    pub labels: Labels,
    pub data: Vec<u8>,
    pub reference: SecretRef,
}

/// What a slot's container is made with besides its version and generation (its role's
/// settings: networks, aliases, ports, volumes, environment, resources, placement), as 12
/// hex digits of a sha256: the same for two specs that differ only in version.
pub(crate) fn settings_of(container: &ContainerSpec) -> String {
    let mut c = container.clone();
    c.image.clear();
    c.files.clear();
    for label in [LABEL_VERSION, LABEL_GENERATION, LABEL_REPLACES, LABEL_REPLACES_SETTINGS, LABEL_SETTINGS] {
        c.labels.remove(label);
    }
    for var in ["DROVER_GENERATION", "DROVER_IMAGE_VERSION"] {
        c.env.remove(var);
    }
    // Debug's form of the spec: a compiler that prints it differently only makes drover
    // update where it could have rolled back
    let hash = hex::encode(sha2::Sha256::digest(format!("{c:?}")));
    hash[..12].to_string()
}

/// The slot's enrollment files as Swarm secrets: `<slot>.<ext>-<12 hex of sha256>`, so that
/// a key minted again (after a `down`) never meets a stale secret of the same name.
pub(crate) fn slot_secrets(fleet: &str, slot: &str, files: &[FileIn]) -> Vec<SlotSecret> {
    files
        .iter()
        .map(|f| {
            let ext = f.path.rsplit('.').next().filter(|e| !e.contains('/')).unwrap_or("file");
            let hash = hex::encode(sha2::Sha256::digest(&f.data));
            let name = format!("{slot}.{ext}-{}", &hash[..12]);
            SlotSecret {
                name: name.clone(),
                labels: Labels::from([
                    (LABEL_FLEET.to_string(), fleet.to_string()),
                    (LABEL_SLOT.to_string(), slot.to_string()),
                ]),
                data: f.data.clone(),
                reference: SecretRef { name, target: f.path.clone(), mode: f.mode },
            }
        })
        .collect()
}

impl<E: Engine, H: Host> Controller<E, H> {
    /// Whether the fleet brought up runs on Swarm.
    pub(crate) fn swarm(&self) -> bool {
        self.inner.shared().record.swarm()
    }

    /// The service of a slot, from its container spec: its secrets created first, and with a
    /// registry, its image pushed and named by digest.
    pub(crate) async fn service_spec(
        &self,
        fleet: &str,
        slot: &SlotSpec,
        mut container: ContainerSpec,
        order: Order,
        progress: &Progress,
    ) -> Result<ServiceSpec> {
        container.labels.insert(LABEL_SETTINGS.to_string(), settings_of(&container));
        let registry = self.inner.shared().record.registry().cloned();
        // the registry's own slots run the image the master's engine has (placement_for)
        if let Some(registry) = registry.filter(|r| r.role.as_ref() != Some(&slot.role)) {
            container.image = self.pinned(&registry, &container.image, &slot.slot, progress).await?;
        }
        let mut secrets = Vec::new();
        for s in slot_secrets(fleet, &slot.slot, &container.files) {
            self.inner.engine.create_secret(&s.name, &s.labels, &s.data).await?;
            secrets.push(s.reference);
        }
        container.files.clear();
        Ok(ServiceSpec {
            container,
            secrets,
            update: service_update(&slot.spec.update, order),
            restart: slot.spec.heal,
        })
    }

    /// The constraints drover gives a slot's service beyond its role's: `derived` (for
    /// `spread` and `max_per_node`), and for the fleet's registry role a pin to the node of
    /// the master's engine alone, whose image it runs (nothing can be pulled before it runs;
    /// a pin kept from a node the master has left is dropped).
    async fn placement_for(&self, slot: &SlotSpec, mut derived: Vec<String>) -> Result<Vec<String>> {
        let registry_role = self.inner.shared().record.registry().and_then(|r| r.role.clone());
        if registry_role.as_ref() != Some(&slot.role) {
            return Ok(derived);
        }
        let node = self.inner.engine.info().await?.node_id;
        if !node.is_empty() {
            derived.retain(|c| !c.starts_with("node.id=="));
            derived.push(format!("node.id=={node}"));
        }
        Ok(derived)
    }

    /// Swarm's rollback of the slot's service, whose previous spec is at `version`: that
    /// spec's generation. `None` when Swarm refused, or went back to another version than
    /// its labels said (an update then puts the slot at `version`).
    async fn rolled_back(&self, slot: &SlotSpec, version: &str, progress: &Progress) -> Option<u64> {
        let labels = self.inner.engine.rollback_service(&slot.slot).await.ok()?;
        if labels.get(LABEL_VERSION).map(String::as_str) != Some(version) {
            return None;
        }
        let generation = labels.get(LABEL_GENERATION).and_then(|g| g.parse().ok())?;
        // the older container comes back: the master lets its minion take the slot's session
        self.inner.host.want(&slot.slot, generation).await;
        self.emit(
            progress,
            FleetEvent::Slot {
                slot: slot.slot.clone(),
                step: "rolling-back".into(),
                detail: Some(format!("service to its previous spec, {version}")),
            },
        );
        Some(generation)
    }

    /// `reference` (`coins:1.0`) as the services run it: pushed to `registry` (once per
    /// image and operation) and named by its digest there.
    async fn pinned(
        &self,
        registry: &render::fleet::Registry,
        reference: &str,
        slot: &str,
        progress: &Progress,
    ) -> Result<String> {
        let mut pushed = self.inner.pushed.lock().await;
        let Some(image) = self.inner.engine.image(reference).await? else {
            return Err(FleetError::Refused(format!("image {reference} does not exist on this engine")));
        };
        let key = format!("{}/{reference}", registry.address);
        match pushed.get(&key) {
            Some(Pushed::Done { id, digest }) if *id == image.id => return Ok(digest.clone()),
            Some(Pushed::Failed(why)) => return Err(FleetError::Refused(why.clone())),
            _ => {}
        }
        let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let repo = format!("{}/{name}", registry.address);
        let say = |step: &str, detail: String| {
            let event = FleetEvent::Slot { slot: slot.to_string(), step: step.into(), detail: Some(detail) };
            self.emit(progress, event);
        };
        say("pushing", format!("{reference} to {}", registry.address));
        let wait = if registry.role.is_some() { REGISTRY_WAIT } else { TOLD_REGISTRY_WAIT };
        let deadline = tokio::time::Instant::now() + wait;
        let digest = loop {
            let attempt = tokio::time::timeout(PUSH_TIMEOUT, self.inner.engine.push(reference, &repo, tag));
            let result = attempt.await.unwrap_or_else(|_| {
                let took = render::fleet::scalar::format_duration(PUSH_TIMEOUT);
                Err(EngineError::failed(format!("push {reference}"), format!("no end after {took}")))
            });
            match result {
                Ok(digest) => break digest,
                Err(e) if e.is_not_found() || tokio::time::Instant::now() >= deadline => {
                    let runs = match &registry.role {
                        Some(role) => format!("its role {role} is not up, or "),
                        None => String::new(),
                    };
                    let why = format!(
                        "cannot push {reference} to the registry at {} (tried for {}): {e}; {runs}the master's \
                         engine does not reach it at that address (`registry:` in fleet.yaml)",
                        registry.address,
                        render::fleet::scalar::format_duration(wait)
                    );
                    pushed.insert(key, Pushed::Failed(why.clone()));
                    return Err(FleetError::Refused(why));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        say("pushed", digest.clone());
        pushed.insert(key, Pushed::Done { id: image.id, digest: digest.clone() });
        Ok(digest)
    }

    /// The fleet's overlay network, created if missing, with the address containers dial
    /// the master at as its gateway (`docker_gwbridge`'s, waited for).
    pub(crate) async fn swarm_network(&self, desired: &Desired) -> Result<NetworkInfo> {
        let info = self.inner.engine.info().await?;
        if info.swarm != "active" {
            return Err(FleetError::Refused(format!(
                "fleet {} says `engine: swarm`, but the Docker engine at {} is in no swarm (its swarm state: {}): \
                 `docker swarm init` (or join one), or remove the `engine:` line to run on this engine",
                desired.fleet, info.endpoint, info.swarm
            )));
        }
        let mut network =
            self.fleet_network(desired, &desired.network, "set `network:` in fleet.yaml").await?;
        let deadline = tokio::time::Instant::now() + GWBRIDGE_WAIT;
        network.gateway = loop {
            match self.inner.engine.network(GWBRIDGE).await? {
                Some(bridge) if bridge.gateway.is_some() => break bridge.gateway,
                _ if tokio::time::Instant::now() >= deadline => break None,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        Ok(network)
    }

    /// Creates the slot's service from its container spec, with the constraints
    /// [`Self::check_placement`] derived for it; returns the service's id.
    pub(crate) async fn create_slot_service(
        &self,
        fleet: &str,
        slot: &SlotSpec,
        container: ContainerSpec,
        progress: &Progress,
    ) -> Result<String> {
        let mut container = container;
        let placement = self.placement_for(slot, self.derived_for(&slot.slot)).await?;
        super::placing::with_placement(&mut container, &placement);
        let spec = self.service_spec(fleet, slot, container, slot.spec.update.order, progress).await?;
        Ok(self.inner.engine.create_service(&spec).await?)
    }

    /// A swap on Swarm: the slot's service updated to `version` (Swarm replaces its task as
    /// `order` says), then the wait for its minion. A service at `version` already (Swarm
    /// rolled it back, or a resumed rollout) is only waited for. Going `back`, Swarm's own
    /// rollback puts the service's previous spec back when that spec is at `version` (else
    /// an update does, as forward).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn swap_service(
        &self,
        slot: &SlotSpec,
        version: &str,
        order: Order,
        policy: &UpdatePolicy,
        network: &FleetNetworks,
        back: bool,
        progress: &Progress,
    ) -> std::result::Result<(), String> {
        let fleet = network.fleet.clone();
        let text = |e: FleetError| e.to_string();
        let current = self.inner.engine.service(&slot.slot).await.map_err(|e| e.to_string())?;
        let Some(current) = current else {
            let (id, generation) = self.launch(slot, version, network, progress).await.map_err(text)?;
            return self.wait_ready(&slot.slot, id, generation, policy, progress).await;
        };
        if current.label(LABEL_VERSION) == Some(version) {
            // Swarm rolled it back on its own (or a resumed rollout): that container is the one
            self.inner.host.want(&slot.slot, current.generation()).await;
            return self
                .wait_ready(&slot.slot, current.id.clone(), current.generation(), policy, progress)
                .await;
        }
        let enrollment: Enrollment = self.inner.host.enroll(&slot.slot).await.map_err(|e| e.to_string())?;
        let generation = self.next_generation();
        let mut container =
            super::slots::container_spec(&fleet, slot, version, generation, &enrollment, network)?;
        // the constraints drover derived when it made the service stay with it
        let placement =
            self.placement_for(slot, super::placing::recorded_placement(&current)).await.map_err(text)?;
        super::placing::with_placement(&mut container, &placement);
        // Swarm's previous spec is the one this service's last update replaced, unless a
        // rollback came since (which leaves the spec it left as the previous one); going
        // back to it is going back only when it is at `version` with the settings the slot
        // wants now (a role changed in the same `up` as its version is not reverted)
        let previous_is_wanted = current.label(LABEL_REPLACES) == Some(version)
            && current.label(LABEL_REPLACES_SETTINGS) == Some(settings_of(&container).as_str())
            && !current.update.as_deref().is_some_and(|u| u.starts_with("rollback"));
        if back
            && previous_is_wanted
            && let Some(generation) = self.rolled_back(slot, version, progress).await
        {
            return self.wait_ready(&slot.slot, current.id.clone(), generation, policy, progress).await;
        }
        self.inner.host.want(&slot.slot, generation).await;
        for (label, value) in [(LABEL_REPLACES, LABEL_VERSION), (LABEL_REPLACES_SETTINGS, LABEL_SETTINGS)] {
            if let Some(replaced) = current.label(value) {
                container.labels.insert(label.to_string(), replaced.to_string());
            }
        }
        let mut spec = self.service_spec(&fleet, slot, container, order, progress).await.map_err(text)?;
        spec.update = service_update(policy, order);
        self.emit(
            progress,
            FleetEvent::Slot {
                slot: slot.slot.clone(),
                step: "updating".into(),
                detail: Some(format!("service to {}", spec.container.image)),
            },
        );
        self.inner.engine.update_service(&spec).await.map_err(|e| e.to_string())?;
        self.wait_ready(&slot.slot, current.id.clone(), generation, policy, progress).await
    }

    /// While waiting for a slot's minion on Swarm: the service still wants `generation`
    /// (else Swarm rolled it back, or someone changed it); its task's state in a few words.
    pub(crate) async fn service_still_wanted(
        &self,
        id: &str,
        generation: u64,
    ) -> std::result::Result<String, String> {
        match self.inner.engine.service(id).await {
            Ok(Some(s)) if s.generation() == generation => Ok(task_text(&s)),
            Ok(Some(s)) => {
                let update = s.update.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "changed".into());
                Err(format!(
                    "Swarm put the service back at {} ({update})",
                    s.label(LABEL_VERSION).unwrap_or("another version")
                ))
            }
            Ok(None) => Err("its service is gone".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `down` on Swarm, after the services are removed: waits (bounded) until Swarm removed
    /// their containers, then removes the fleet's secrets. Returns how many.
    pub(crate) async fn swarm_leftovers(&self, fleet: &str) -> Result<usize> {
        let filter = super::filter_for(fleet);
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while !self.inner.engine.containers(&[&filter]).await?.is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let secrets = self.inner.engine.secrets(&[&filter]).await?;
        for s in &secrets {
            self.inner.engine.remove_secret(s).await?;
        }
        Ok(secrets.len())
    }

    /// The secrets of a slot no longer wanted (after its service is removed).
    pub(crate) async fn remove_slot_secrets(&self, fleet: &str, slot: &str) {
        let filter = [super::filter_for(fleet), format!("{LABEL_SLOT}={slot}")];
        let Ok(secrets) = self.inner.engine.secrets(&[&filter[0], &filter[1]]).await else { return };
        for s in secrets {
            // the service's removal may still be under way: a moment later, once
            for _ in 0..20 {
                if self.inner.engine.remove_secret(&s).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    /// A container event of a Swarm task of the fleet: a death is reported (Swarm replaces
    /// the task), the start of the task that replaces it too, then its minion's readiness.
    pub(crate) fn on_task_event(&self, event: &ContainerEvent) {
        let Some(slot) = event.labels.get(LABEL_SLOT).cloned() else { return };
        let progress = Progress::none();
        {
            let shared = self.inner.shared();
            let record = &shared.record;
            if !record.swarm()
                || event.labels.get(LABEL_FLEET).map(String::as_str) != record.fleet()
                || shared.busy.contains(&slot)
            {
                return;
            }
        }
        match event.action.as_str() {
            "die" => {
                let code = event.exit_code.map(|c| format!("exit code {c}; ")).unwrap_or_default();
                self.inner.shared().task_deaths.insert(slot.clone(), tokio::time::Instant::now());
                self.emit(
                    &progress,
                    FleetEvent::Slot {
                        slot,
                        step: "died".into(),
                        detail: Some(format!("{code}Swarm replaces its task")),
                    },
                );
            }
            "start" => {
                let Some(died) = self.inner.shared().task_deaths.remove(&slot) else { return };
                self.emit(
                    &progress,
                    FleetEvent::Slot {
                        slot: slot.clone(),
                        step: "replaced".into(),
                        detail: Some("by Swarm".into()),
                    },
                );
                let this = self.clone();
                tokio::spawn(async move {
                    let Ok(Some(service)) = this.inner.engine.service(&slot).await else { return };
                    let policy = UpdatePolicy {
                        min_healthy: Duration::ZERO,
                        health_timeout: Duration::from_secs(120),
                        ..UpdatePolicy::default()
                    };
                    let generation = service.generation();
                    if this.wait_ready(&slot, service.id, generation, &policy, &progress).await.is_ok() {
                        let detail = format!("ready {:.1} s after it died", died.elapsed().as_secs_f64());
                        this.emit(
                            &progress,
                            FleetEvent::Slot { slot, step: "healed".into(), detail: Some(detail) },
                        );
                    }
                });
            }
            _ => {}
        }
    }
}

/// A service's task as progress tells it: `running on node-1`, `starting (its health
/// check) on node-1`, `exited with code 3, Swarm restarts it`.
pub(crate) fn task_text(s: &ContainerInfo) -> String {
    let on = s.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
    match (s.state, s.health) {
        (ContainerState::Running, Health::Starting) => format!("starting (its health check){on}"),
        (ContainerState::Running, _) => format!("running{on}"),
        (ContainerState::Exited, _) => {
            let code = s.exit_code.map(|c| format!(" with code {c}")).unwrap_or_default();
            format!("exited{code}{on}, Swarm restarts it")
        }
        (other, _) => format!("{}{on}", other.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_policy_maps_onto_each_service_update() {
        let policy = UpdatePolicy {
            min_healthy: Duration::from_secs(5),
            on_failure: OnFailure::Rollback,
            ..UpdatePolicy::default()
        };
        let u = service_update(&policy, Order::StartFirst);
        assert_eq!(
            u,
            ServiceUpdate {
                parallelism: 1,
                start_first: true,
                monitor: Duration::from_secs(5),
                failure_action: FailureAction::Rollback,
                max_failure_ratio: 0.0,
            }
        );
        let pause = UpdatePolicy { on_failure: OnFailure::Pause, ..policy };
        assert_eq!(service_update(&pause, Order::StopFirst).failure_action, FailureAction::Pause);
        assert!(!service_update(&pause, Order::StopFirst).start_first);
        let go_on = UpdatePolicy { on_failure: OnFailure::Continue, ..policy };
        assert_eq!(service_update(&go_on, Order::StopFirst).failure_action, FailureAction::Continue);
    }

    #[test]
    fn a_task_is_told_in_a_few_words() {
        let task = |state, health, code: Option<i64>| ContainerInfo {
            id: "s1".into(),
            name: "f-web-1".into(),
            image: "app:1".into(),
            labels: Labels::new(),
            state,
            health,
            addresses: Default::default(),
            exit_code: code,
            node: Some("n1".into()),
            update: Some(String::new()),
        };
        assert_eq!(task_text(&task(ContainerState::Running, Health::Healthy, None)), "running on n1");
        assert_eq!(
            task_text(&task(ContainerState::Running, Health::Starting, None)),
            "starting (its health check) on n1"
        );
        assert_eq!(
            task_text(&task(ContainerState::Exited, Health::None, Some(3))),
            "exited with code 3 on n1, Swarm restarts it"
        );
        assert_eq!(task_text(&task(ContainerState::Created, Health::None, None)), "created on n1");
    }

    #[test]
    fn a_slot_keys_become_secrets_named_by_their_content() {
        let files = [
            FileIn {
                path: "/var/lib/drover/minion/pki/minion.key".into(),
                mode: 0o600,
                data: b"secret".to_vec(),
            },
            FileIn {
                path: "/var/lib/drover/minion/pki/minion.pub".into(),
                mode: 0o600,
                data: b"public".to_vec(),
            },
        ];
        let secrets = slot_secrets("f", "f-web-1", &files);
        let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
        // sha256("secret") and sha256("public"), 12 hex digits each
        assert_eq!(names, ["f-web-1.key-2bb80d537b1d", "f-web-1.pub-efa1f375d761"]);
        assert_eq!(secrets[0].labels[LABEL_FLEET], "f");
        assert_eq!(secrets[0].labels[LABEL_SLOT], "f-web-1");
        assert_eq!(secrets[0].reference.target, "/var/lib/drover/minion/pki/minion.key");
        assert_eq!(secrets[0].reference.mode, 0o600);
        // another key, another name
        let again = slot_secrets("f", "f-web-1", &[FileIn { data: b"other".to_vec(), ..files[0].clone() }]);
        assert_ne!(again[0].name, secrets[0].name);
    }
}
