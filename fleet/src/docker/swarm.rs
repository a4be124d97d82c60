//! Swarm services, secrets and overlay networks over the Docker Engine API, for
//! [`super::Docker`]'s [`Engine`] methods of the same names; and the pure conversions from
//! the fleet's [`ServiceSpec`] to Swarm's, unit-tested below.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use bollard::errors::Error as BollardError;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EndpointSpecModeEnum, Limit, Mount as DockerMount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, SecretSpec, Service,
    ServiceSpec as SwarmSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    ListNodesOptions, ListSecretsOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::{Docker, label_filter, labels_of};
use crate::engine::*;

/// Nanoseconds, as Swarm counts durations.
fn nanos(d: std::time::Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

/// The fleet's update configuration as Swarm's (and the matching rollback configuration:
/// one task at a time, the same order, pausing if going back fails too).
pub(crate) fn update_config(u: &ServiceUpdate) -> (ServiceSpecUpdateConfig, ServiceSpecRollbackConfig) {
    let update = ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism as i64),
        delay: Some(0),
        failure_action: Some(match u.failure_action {
            FailureAction::Rollback => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            FailureAction::Pause => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
        }),
        monitor: Some(nanos(u.monitor)),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(if u.start_first {
            ServiceSpecUpdateConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
        }),
    };
    let rollback = ServiceSpecRollbackConfig {
        parallelism: Some(1),
        delay: Some(0),
        failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
        monitor: Some(nanos(u.monitor)),
        max_failure_ratio: Some(0.0),
        order: Some(if u.start_first {
            ServiceSpecRollbackConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecRollbackConfigOrderEnum::STOP_FIRST
        }),
    };
    (update, rollback)
}

/// The labels a slot's volume gets when Swarm creates it on a node: the container's
/// fleet, role and slot.
fn volume_labels(container: &ContainerSpec) -> HashMap<String, String> {
    [LABEL_FLEET, LABEL_ROLE, LABEL_SLOT]
        .iter()
        .filter_map(|k| container.labels.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// The Swarm spec of a slot's service: one replica, restarted whatever way it ends (unless
/// the role says `heal: false`), on the
/// fleet's network under the slot's aliases, with the slot's secrets at their paths. The
/// container's `files` are not used: on Swarm they travel as `secrets`.
pub(crate) fn swarm_spec(spec: &ServiceSpec, secret_ids: &HashMap<String, String>) -> SwarmSpec {
    let c = &spec.container;
    let labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    let (update, rollback) = update_config(&spec.update);
    let container = TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: Some(labels.clone()),
        args: (!c.command.is_empty()).then(|| c.command.clone()),
        hostname: Some(c.hostname.clone()),
        env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        mounts: Some(
            c.mounts
                .iter()
                .map(|m| DockerMount {
                    target: Some(m.target.clone()),
                    source: Some(m.volume.clone()),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(volume_labels(c)),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        stop_grace_period: Some(nanos(c.stop_timeout)),
        secrets: Some(
            spec.secrets
                .iter()
                .map(|s| TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(s.target.clone()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(s.mode),
                    }),
                    secret_name: Some(s.name.clone()),
                    secret_id: secret_ids.get(&s.name).cloned(),
                })
                .collect(),
        ),
        ..Default::default()
    };
    let limits = (c.cpus.is_some() || c.memory.is_some()).then(|| Limit {
        nano_cpus: c.cpus.map(|n| (n * 1e9) as i64),
        memory_bytes: c.memory.map(|m| m as i64),
        ..Default::default()
    });
    let reservations = (c.reserve_cpus.is_some() || c.reserve_memory.is_some()).then(|| ResourceObject {
        nano_cpus: c.reserve_cpus.map(|n| (n * 1e9) as i64),
        memory_bytes: c.reserve_memory.map(|m| m as i64),
        ..Default::default()
    });
    let resources = (limits.is_some() || reservations.is_some()).then(|| TaskSpecResources {
        limits,
        reservations,
        ..Default::default()
    });
    let placement = (!c.constraints.is_empty())
        .then(|| TaskSpecPlacement { constraints: Some(c.constraints.clone()), ..Default::default() });
    let ports: Vec<EndpointPortConfig> = c
        .publish
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(if p.protocol == "udp" {
                EndpointPortConfigProtocolEnum::UDP
            } else {
                EndpointPortConfigProtocolEnum::TCP
            }),
            target_port: Some(i64::from(p.container_port)),
            published_port: p.host_port.map(i64::from),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    SwarmSpec {
        name: Some(c.name.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources,
            placement,
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(if spec.restart {
                    TaskSpecRestartPolicyConditionEnum::ANY
                } else {
                    TaskSpecRestartPolicyConditionEnum::NONE
                }),
                delay: Some(nanos(std::time::Duration::from_secs(1))),
                max_attempts: Some(0),
                window: Some(0),
            }),
            networks: Some(
                std::iter::once(&c.network)
                    .chain(&c.networks)
                    .map(|network| NetworkAttachmentConfig {
                        target: Some(network.clone()),
                        aliases: Some(c.aliases.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        update_config: Some(update),
        rollback_config: Some(rollback),
        // A slot's service has one task: names resolve to the task's own address (DNS round
        // robin), not to a virtual address in front of it. A virtual address needs IPVS in
        // the node's kernel, and without it answers nothing; with one task it balances
        // nothing either. Its ports are published on the node the task runs on (the routing
        // mesh needs IPVS too, and DNS round robin refuses it).
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    }
}

/// A task's state as a container's: running once Swarm calls it running (after its health
/// check passed, when the image has one), exited once it ended, created before.
fn task_state(state: Option<&TaskState>) -> (ContainerState, Health) {
    match state {
        Some(TaskState::RUNNING) => (ContainerState::Running, Health::Healthy),
        Some(TaskState::STARTING) => (ContainerState::Running, Health::Starting),
        Some(
            TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED,
        ) => (ContainerState::Exited, Health::None),
        _ => (ContainerState::Created, Health::None),
    }
}

/// A service's image as drover named it: the engine adds `@sha256:…` to a tag it resolved
/// (`coins:1.0@sha256:…` is shown `coins:1.0`); an image named by digest only (from the
/// fleet's registry) is shown whole.
fn shown_image(image: &str) -> String {
    match image.split_once('@') {
        Some((name, _)) if name.rsplit('/').next().is_some_and(|last| last.contains(':')) => name.to_string(),
        _ => image.to_string(),
    }
}

/// The task created last.
fn newest<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks.max_by_key(|t| t.created_at.clone().map(|d| d.to_string()))
}

/// A service and its tasks as one [`ContainerInfo`]: the service's name and labels (its
/// current spec's), the state, exit code and node of its newest task that should run (else
/// its newest), the state of its last update.
pub(crate) fn service_info(
    service: &Service,
    tasks: &[&Task],
    nodes: &BTreeMap<String, String>,
) -> ContainerInfo {
    let spec = service.spec.clone().unwrap_or_default();
    let wanted = tasks.iter().copied().filter(|t| t.desired_state == Some(TaskState::RUNNING));
    let task = newest(wanted).or_else(|| newest(tasks.iter().copied()));
    let status = task.and_then(|t| t.status.clone()).unwrap_or_default();
    let (state, health) = task_state(status.state.as_ref());
    let image = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let update = match &service.update_status {
        Some(u) => {
            let state = u.state.map(|s| s.to_string()).unwrap_or_default();
            match u.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("{state}: {m}"),
                None => state,
            }
        }
        None => String::new(),
    };
    ContainerInfo {
        id: service.id.clone().unwrap_or_default(),
        name: spec.name.clone().unwrap_or_default(),
        image: shown_image(&image),
        labels: labels_of(spec.labels),
        state,
        health,
        addresses: BTreeMap::new(),
        exit_code: if state == ContainerState::Running {
            None
        } else {
            status.container_status.and_then(|c| c.exit_code)
        },
        node: task
            .and_then(|t| t.node_id.as_ref())
            .map(|id| nodes.get(id).cloned().unwrap_or_else(|| id.clone())),
        update: Some(update),
    }
}

/// A Swarm node as placement sees it, with the tasks of `tasks` whose container runs on it
/// counted (running, or starting: its health check has not passed yet).
pub(crate) fn node_info(node: &bollard::models::Node, tasks: &[Task]) -> crate::placement::NodeInfo {
    let spec = node.spec.clone().unwrap_or_default();
    let description = node.description.clone().unwrap_or_default();
    let platform = description.platform.clone().unwrap_or_default();
    let resources = description.resources.clone().unwrap_or_default();
    let id = node.id.clone().unwrap_or_default();
    let text = |s: Option<String>| s.unwrap_or_default();
    let running: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(id.as_str()))
        .filter(|t| {
            matches!(t.status.as_ref().and_then(|s| s.state), Some(TaskState::RUNNING | TaskState::STARTING))
        })
        .collect();
    let mut reserved_by: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for t in &running {
        let spec = t.spec.as_ref();
        let reserved = spec.and_then(|s| s.resources.as_ref()).and_then(|r| r.reservations.as_ref());
        let (cpus, memory) =
            reserved.map_or((0, 0), |r| (r.nano_cpus.unwrap_or(0), r.memory_bytes.unwrap_or(0)));
        if cpus <= 0 && memory <= 0 {
            continue;
        }
        let labels = spec.and_then(|s| s.container_spec.as_ref()).and_then(|c| c.labels.as_ref());
        let fleet = labels.and_then(|l| l.get(LABEL_FLEET)).cloned().unwrap_or_default();
        let entry = reserved_by.entry(fleet).or_default();
        entry.0 += cpus.max(0) as f64 / 1e9;
        entry.1 += memory.max(0) as u64;
    }
    crate::placement::NodeInfo {
        containers: running.len() as u32,
        reserved_by,
        others: (0.0, 0),
        id,
        hostname: text(description.hostname),
        role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
        availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
        ready: node.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY),
        os: text(platform.os),
        arch: text(platform.architecture),
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        engine_labels: description.engine.and_then(|e| e.labels).unwrap_or_default().into_iter().collect(),
        cpus: resources.nano_cpus.unwrap_or(0) as f64 / 1e9,
        memory: resources.memory_bytes.unwrap_or(0).max(0) as u64,
    }
}

impl Docker {
    pub(crate) async fn swarm_overlay(&self, name: &str, labels: &Labels) -> Result<NetworkInfo> {
        let request = NetworkCreateRequest {
            name: name.into(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.client.create_network(request).await.map_err(self.error(format!("create network {name}")))?;
        self.network(name).await?.ok_or(EngineError::NotFound { what: format!("network {name}") })
    }

    pub(crate) async fn swarm_secrets(&self, filter: LabelFilter<'_>) -> Result<Vec<String>> {
        let options = ListSecretsOptions { filters: label_filter(filter) };
        let list = self.client.list_secrets(Some(options)).await.map_err(self.error("list secrets"))?;
        Ok(list.into_iter().filter_map(|s| s.spec.and_then(|s| s.name)).collect())
    }

    pub(crate) async fn swarm_create_secret(&self, name: &str, labels: &Labels, data: &[u8]) -> Result<()> {
        let spec = SecretSpec {
            name: Some(name.into()),
            labels: Some(labels.clone().into_iter().collect()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        match self.client.create_secret(spec).await {
            Ok(_) | Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(e) => Err(self.error(format!("create secret {name}"))(e)),
        }
    }

    pub(crate) async fn swarm_remove_secret(&self, name: &str) -> Result<()> {
        match self.client.delete_secret(name).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.error(format!("remove secret {name}"))(e)),
        }
    }

    /// The swarm's nodes, each with the tasks that run on it counted.
    pub(crate) async fn swarm_nodes(&self) -> Result<Vec<crate::placement::NodeInfo>> {
        let nodes =
            self.client.list_nodes(None::<ListNodesOptions>).await.map_err(self.error("list nodes"))?;
        let tasks =
            self.client.list_tasks(None::<ListTasksOptions>).await.map_err(self.error("list tasks"))?;
        Ok(nodes.iter().map(|n| node_info(n, &tasks)).collect())
    }

    async fn node_names(&self) -> Result<BTreeMap<String, String>> {
        let nodes =
            self.client.list_nodes(None::<ListNodesOptions>).await.map_err(self.error("list nodes"))?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| Some((n.id?, n.description.and_then(|d| d.hostname).unwrap_or_default())))
            .collect())
    }

    /// `services` with their tasks and nodes, as [`ContainerInfo`]s.
    async fn with_tasks(&self, services: Vec<Service>) -> Result<Vec<ContainerInfo>> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        let options = ListTasksOptions { filters: Some(HashMap::from([("service".to_string(), ids)])) };
        let tasks = self.client.list_tasks(Some(options)).await.map_err(self.error("list tasks"))?;
        let nodes = self.node_names().await?;
        Ok(services
            .iter()
            .map(|s| {
                let mine: Vec<&Task> = tasks.iter().filter(|t| t.service_id == s.id).collect();
                service_info(s, &mine, &nodes)
            })
            .collect())
    }

    pub(crate) async fn swarm_services(&self, filter: LabelFilter<'_>) -> Result<Vec<ContainerInfo>> {
        let options = ListServicesOptions { filters: label_filter(filter), ..Default::default() };
        let list = self.client.list_services(Some(options)).await.map_err(self.error("list services"))?;
        self.with_tasks(list).await
    }

    pub(crate) async fn swarm_service(&self, name: &str) -> Result<Option<ContainerInfo>> {
        match self.client.inspect_service(name, None).await {
            Ok(s) => Ok(self.with_tasks(vec![s]).await?.pop()),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.error(format!("service {name}"))(e)),
        }
    }

    /// The ids of the secrets `spec` refers to (Swarm wants both name and id).
    async fn secret_ids(&self, spec: &ServiceSpec) -> Result<HashMap<String, String>> {
        if spec.secrets.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<String> = spec.secrets.iter().map(|s| s.name.clone()).collect();
        let options =
            ListSecretsOptions { filters: Some(HashMap::from([("name".to_string(), names.clone())])) };
        let list = self.client.list_secrets(Some(options)).await.map_err(self.error("list secrets"))?;
        let ids: HashMap<String, String> = list
            .into_iter()
            .filter_map(|s| Some((s.spec?.name?, s.id?)))
            .filter(|(name, _)| names.contains(name))
            .collect();
        if let Some(missing) = names.iter().find(|n| !ids.contains_key(*n)) {
            return Err(EngineError::NotFound { what: format!("secret {missing}") });
        }
        Ok(ids)
    }

    pub(crate) async fn swarm_create(&self, spec: &ServiceSpec) -> Result<String> {
        let what = format!("create service {}", spec.container.name);
        let body = swarm_spec(spec, &self.secret_ids(spec).await?);
        let created = self.client.create_service(body, None).await.map_err(self.error(what))?;
        Ok(created.id.unwrap_or_default())
    }

    /// The service's spec replaced.
    pub(crate) async fn swarm_update(&self, spec: &ServiceSpec) -> Result<()> {
        let ids = self.secret_ids(spec).await?;
        self.update_at_version(&spec.container.name, "update", None, |_| swarm_spec(spec, &ids)).await
    }

    /// `docker service rollback`: the service's current spec posted back with
    /// `rollback=previous`, on which Swarm puts its previous spec back (bollard's `Service`
    /// does not carry that spec; the service inspected afterwards does); the labels of the
    /// spec it went back to.
    pub(crate) async fn swarm_rollback(&self, name: &str) -> Result<Labels> {
        let current = |s: &Service| s.spec.clone().unwrap_or_default();
        self.update_at_version(name, "roll back", Some("previous"), current).await?;
        let service =
            self.client.inspect_service(name, None).await.map_err(self.error(format!("service {name}")))?;
        Ok(labels_of(service.spec.and_then(|s| s.labels)))
    }

    /// Posts the spec `body` makes of the service as it is, at its current version (Swarm
    /// refuses an update at another); tried again when Swarm changed it meanwhile (its own
    /// update state, a rollback) and the version given is out of date.
    async fn update_at_version(
        &self,
        name: &str,
        doing: &str,
        rollback: Option<&str>,
        body: impl Fn(&Service) -> SwarmSpec,
    ) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            let current = self
                .client
                .inspect_service(name, None)
                .await
                .map_err(self.error(format!("service {name}")))?;
            let options = UpdateServiceOptions {
                version: current.version.as_ref().and_then(|v| v.index).unwrap_or(0) as i32,
                rollback: rollback.map(String::from),
                ..Default::default()
            };
            match self.client.update_service(name, body(&current), options, None).await {
                Ok(_) => return Ok(()),
                Err(BollardError::DockerResponseServerError { message, .. })
                    if tries < 5 && message.contains("out of sequence") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(self.error(format!("{doing} service {name}"))(e)),
            }
        }
    }

    pub(crate) async fn swarm_remove(&self, name: &str) -> Result<()> {
        match self.client.delete_service(name).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.error(format!("remove service {name}"))(e)),
        }
    }

    /// The last `lines` lines its newest task wrote (the task drover waits for; a
    /// service's own logs mix every task it had).
    pub(crate) async fn swarm_logs(&self, name: &str, lines: usize) -> Result<String> {
        use futures_util::TryStreamExt;
        let options = ListTasksOptions {
            filters: Some(HashMap::from([("service".to_string(), vec![name.to_string()])])),
        };
        let tasks = self.client.list_tasks(Some(options)).await.map_err(self.error("list tasks"))?;
        let Some(task) = newest(tasks.iter()).and_then(|t| t.id.clone()) else { return Ok(String::new()) };
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let chunks: Vec<_> = self
            .client
            .task_logs(&task, Some(options))
            .try_collect()
            .await
            .map_err(self.error(format!("logs of task {task} of service {name}")))?;
        Ok(chunks.iter().map(|c| String::from_utf8_lossy(&c.clone().into_bytes()).into_owned()).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            container: ContainerSpec {
                name: "f-web-1".into(),
                image: "app:2".into(),
                command: Vec::new(),
                hostname: "f-web-1".into(),
                env: BTreeMap::from([("DROVER_MINION_ID".into(), "f-web-1".into())]),
                labels: Labels::from([
                    (LABEL_FLEET.into(), "f".into()),
                    (LABEL_ROLE.into(), "web".into()),
                    (LABEL_SLOT.into(), "f-web-1".into()),
                    (LABEL_VERSION.into(), "2".into()),
                ]),
                network: "f".into(),
                aliases: vec!["f-web-1".into(), "web".into()],
                networks: vec!["f-data".into()],
                mounts: vec![Mount { volume: "f-web-1-data".into(), target: "/data".into() }],
                publish: vec![Publish {
                    host_ip: None,
                    host_port: Some(8080),
                    container_port: 80,
                    protocol: "tcp".into(),
                }],
                cpus: Some(0.5),
                memory: None,
                reserve_cpus: Some(0.25),
                reserve_memory: Some(64 << 20),
                constraints: vec!["node.labels.zone==a".into(), "node.id==n1".into()],
                files: Vec::new(),
                stop_timeout: Duration::from_secs(10),
            },
            secrets: vec![SecretRef {
                name: "f-web-1.key-0123abcd".into(),
                target: "/var/lib/drover/minion/pki/minion.key".into(),
                mode: 0o600,
            }],
            update: ServiceUpdate {
                parallelism: 1,
                start_first: true,
                monitor: Duration::from_secs(3),
                failure_action: FailureAction::Rollback,
                max_failure_ratio: 0.0,
            },
            restart: true,
        }
    }

    #[test]
    fn an_image_is_shown_as_drover_named_it() {
        assert_eq!(shown_image("coins:1.0@sha256:ab"), "coins:1.0");
        assert_eq!(shown_image("127.0.0.1:5000/coins:1.0@sha256:ab"), "127.0.0.1:5000/coins:1.0");
        assert_eq!(shown_image("127.0.0.1:5000/coins@sha256:ab"), "127.0.0.1:5000/coins@sha256:ab");
        assert_eq!(shown_image("coins:1.0"), "coins:1.0");
    }

    #[test]
    fn the_update_policy_becomes_swarm_update_and_rollback_configs() {
        let (update, rollback) = update_config(&spec().update);
        assert_eq!(update.order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        assert_eq!(update.monitor, Some(3_000_000_000));
        assert_eq!(update.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK));
        assert_eq!(update.parallelism, Some(1));
        assert_eq!(rollback.order, Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST));
        assert_eq!(rollback.failure_action, Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE));
        let mut u = spec().update;
        (u.start_first, u.failure_action) = (false, FailureAction::Pause);
        let (update, _) = update_config(&u);
        assert_eq!(update.order, Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST));
        assert_eq!(update.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE));
    }

    #[test]
    fn a_slot_is_a_service_of_one_replica_with_its_secrets_volume_and_network() {
        let ids = HashMap::from([("f-web-1.key-0123abcd".to_string(), "sec1".to_string())]);
        let s = swarm_spec(&spec(), &ids);
        assert_eq!(s.name.as_deref(), Some("f-web-1"));
        assert_eq!(s.mode.unwrap().replicated.unwrap().replicas, Some(1));
        assert_eq!(s.labels.unwrap()["drover.version"], "2");
        let task = s.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.hostname.as_deref(), Some("f-web-1"));
        assert_eq!(c.labels.unwrap()["drover.slot"], "f-web-1");
        let secret = &c.secrets.unwrap()[0];
        assert_eq!(secret.secret_name.as_deref(), Some("f-web-1.key-0123abcd"));
        assert_eq!(secret.secret_id.as_deref(), Some("sec1"));
        let file = secret.file.as_ref().unwrap();
        assert_eq!(file.name.as_deref(), Some("/var/lib/drover/minion/pki/minion.key"));
        assert_eq!(file.mode, Some(0o600));
        let mount = &c.mounts.unwrap()[0];
        assert_eq!(mount.source.as_deref(), Some("f-web-1-data"));
        assert_eq!(mount.volume_options.as_ref().unwrap().labels.as_ref().unwrap()["drover.slot"], "f-web-1");
        // the fleet's network first, then each other network of the role, with the same aliases
        let nets = task.networks.unwrap();
        let targets: Vec<_> = nets.iter().map(|n| n.target.as_deref()).collect();
        assert_eq!(targets, [Some("f"), Some("f-data")]);
        for net in &nets {
            assert_eq!(net.aliases.as_deref(), Some(&["f-web-1".to_string(), "web".to_string()][..]));
        }
        assert_eq!(task.restart_policy.unwrap().condition, Some(TaskSpecRestartPolicyConditionEnum::ANY));
        let not_healed = swarm_spec(&ServiceSpec { restart: false, ..spec() }, &ids);
        assert_eq!(
            not_healed.task_template.unwrap().restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let resources = task.resources.unwrap();
        assert_eq!(resources.limits.unwrap().nano_cpus, Some(500_000_000));
        let reserved = resources.reservations.unwrap();
        assert_eq!((reserved.nano_cpus, reserved.memory_bytes), (Some(250_000_000), Some(64 << 20)));
        assert_eq!(
            task.placement.unwrap().constraints.unwrap(),
            ["node.labels.zone==a".to_string(), "node.id==n1".to_string()]
        );
        // names are the task's own address; ports are published on the task's node
        let endpoint = s.endpoint_spec.unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        let port = &endpoint.ports.unwrap()[0];
        assert_eq!((port.target_port, port.published_port), (Some(80), Some(8080)));
        assert_eq!(port.publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST));
    }

    #[test]
    fn a_service_shows_as_its_newest_running_task() {
        let service = Service {
            id: Some("svc1".into()),
            spec: Some(swarm_spec(&spec(), &HashMap::new())),
            update_status: Some(bollard::models::ServiceUpdateStatus {
                state: Some(bollard::models::ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED),
                message: Some("rollback completed".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let task = |id: &str, created: &str, desired: TaskState, state: TaskState, code: Option<i64>| Task {
            id: Some(id.into()),
            service_id: Some("svc1".into()),
            node_id: Some("n1".into()),
            created_at: Some(created.parse().unwrap()),
            desired_state: Some(desired),
            status: Some(bollard::models::TaskStatus {
                state: Some(state),
                container_status: Some(bollard::models::ContainerStatus {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let old = task("t1", "2026-01-01T00:00:00Z", TaskState::SHUTDOWN, TaskState::FAILED, Some(137));
        let new = task("t2", "2026-01-01T00:00:05Z", TaskState::RUNNING, TaskState::STARTING, None);
        let nodes = BTreeMap::from([("n1".to_string(), "node-a".to_string())]);
        let info = service_info(&service, &[&old, &new], &nodes);
        assert_eq!((info.name.as_str(), info.image.as_str()), ("f-web-1", "app:2"));
        assert_eq!((info.state, info.health), (ContainerState::Running, Health::Starting));
        assert_eq!(info.node.as_deref(), Some("node-a"));
        assert_eq!(info.update.as_deref(), Some("rollback_completed: rollback completed"));
        assert_eq!(info.label(LABEL_VERSION), Some("2"));
        // only the dead one: exited with its code
        let info = service_info(&service, &[&old], &nodes);
        assert_eq!((info.state, info.exit_code), (ContainerState::Exited, Some(137)));
    }

    #[test]
    fn a_node_shows_its_attributes_resources_and_running_tasks() {
        use bollard::models::{
            EngineDescription, Node, NodeDescription, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum,
            NodeState, NodeStatus, Platform, ResourceObject, TaskStatus,
        };
        let node = Node {
            id: Some("x1".into()),
            spec: Some(NodeSpec {
                labels: Some(HashMap::from([("zone".to_string(), "a".to_string())])),
                role: Some(NodeSpecRoleEnum::MANAGER),
                availability: Some(NodeSpecAvailabilityEnum::DRAIN),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: Some("n1".into()),
                platform: Some(Platform { architecture: Some("x86_64".into()), os: Some("linux".into()) }),
                resources: Some(ResourceObject {
                    nano_cpus: Some(2_000_000_000),
                    memory_bytes: Some(4 << 30),
                    ..Default::default()
                }),
                engine: Some(EngineDescription {
                    labels: Some(HashMap::from([("disk".to_string(), "ssd".to_string())])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus { state: Some(NodeState::READY), ..Default::default() }),
            ..Default::default()
        };
        let task = |node: &str, state: TaskState| Task {
            node_id: Some(node.into()),
            status: Some(TaskStatus { state: Some(state), ..Default::default() }),
            ..Default::default()
        };
        // a task reserving 0.5 CPU and 1G, of fleet `fleet` or of none
        let reserving = |state: TaskState, fleet: Option<&str>| Task {
            spec: Some(TaskSpec {
                resources: Some(TaskSpecResources {
                    reservations: Some(ResourceObject {
                        nano_cpus: Some(500_000_000),
                        memory_bytes: Some(1 << 30),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                container_spec: Some(TaskSpecContainerSpec {
                    labels: fleet.map(|f| HashMap::from([(LABEL_FLEET.to_string(), f.to_string())])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..task("x1", state)
        };
        let tasks = [
            task("x1", TaskState::RUNNING),
            task("x1", TaskState::PENDING),
            task("x2", TaskState::RUNNING),
            reserving(TaskState::RUNNING, Some("coins")),
            reserving(TaskState::STARTING, None),
            reserving(TaskState::SHUTDOWN, None),
        ];
        let info = node_info(&node, &tasks);
        assert_eq!((info.id.as_str(), info.hostname.as_str()), ("x1", "n1"));
        assert_eq!((info.role.as_str(), info.availability.as_str()), ("manager", "drain"));
        assert!(info.ready && !info.schedulable(), "drained: no new task");
        assert_eq!((info.os.as_str(), info.arch.as_str()), ("linux", "x86_64"));
        assert_eq!(info.labels["zone"], "a");
        assert_eq!(info.engine_labels["disk"], "ssd");
        assert_eq!((info.cpus, info.memory), (2.0, 4 << 30));
        assert_eq!(info.containers, 3, "its running and starting tasks only");
        // the reservations of those, by fleet
        let want = BTreeMap::from([("coins".to_string(), (0.5, 1 << 30)), (String::new(), (0.5, 1 << 30))]);
        assert_eq!(info.reserved_by, want);
    }
}
