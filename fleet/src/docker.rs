//! [`Engine`] over the Docker Engine API, with bollard. The only code that knows bollard.
//! Swarm's services, tasks, secrets and overlay networks are in `swarm`.
//!
//! The client negotiates the API version with the engine (this project's CI has Docker
//! 20.10, API 1.41; bollard speaks up to 1.53), and reaches it where `DOCKER_HOST` says,
//! else at `/var/run/docker.sock`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount as DockerMount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, EventsOptions, KillContainerOptions,
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions, LogsOptions,
    PushImageOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, StopContainerOptions,
    TagImageOptions, UploadToContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::*;

mod swarm;

/// The Docker engine this process can reach.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    endpoint: String,
}

fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

impl Docker {
    /// Connects to the engine `DOCKER_HOST` names (default: the local socket) and agrees on
    /// an API version with it. Fails with [`EngineError::Unreachable`].
    pub async fn connect() -> Result<Docker> {
        let endpoint = endpoint();
        let unreachable =
            |e: BollardError| EngineError::Unreachable { endpoint: endpoint.clone(), reason: e.to_string() };
        let client = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let client = client.negotiate_version().await.map_err(unreachable)?;
        Ok(Docker { client, endpoint })
    }

    /// The bollard client, for what [`Engine`] does not cover.
    pub fn client(&self) -> &bollard::Docker {
        &self.client
    }

    fn error(&self, what: impl Into<String>) -> impl FnOnce(BollardError) -> EngineError + '_ {
        let what = what.into();
        move |e| match e {
            BollardError::DockerResponseServerError { status_code: 404, message } => {
                let _ = message;
                EngineError::NotFound { what }
            }
            BollardError::DockerResponseServerError { status_code: 409, message } => {
                EngineError::Conflict { what, reason: message }
            }
            BollardError::DockerResponseServerError { message, .. } => {
                EngineError::Failed { what, reason: message }
            }
            BollardError::DockerStreamError { error } => EngineError::Failed { what, reason: error },
            BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::RequestTimeoutError => {
                EngineError::Unreachable { endpoint: self.endpoint.clone(), reason: e.to_string() }
            }
            other => EngineError::Failed { what, reason: other.to_string() },
        }
    }
}

/// `["a", "b=c"]` as the engine's `label` filter.
fn label_filter(filter: &[impl AsRef<str>]) -> Option<HashMap<String, Vec<String>>> {
    Some(HashMap::from([("label".to_string(), filter.iter().map(|s| s.as_ref().to_string()).collect())]))
}

fn labels_of(map: Option<HashMap<String, String>>) -> Labels {
    map.unwrap_or_default().into_iter().collect()
}

/// Health from a container list's status text (`Up 3 seconds (healthy)`), which is all
/// Docker 20.10 gives in a list.
fn health_from_status(status: &str) -> Health {
    if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

/// The exit code in `Exited (137) 5 seconds ago`.
fn exit_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

/// `Step 3/7 : COPY …` → (3, 7, text).
fn parse_step(line: &str) -> Option<(u32, u32, String)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, text) = rest.split_once(" : ")?;
    let (step, of) = counts.split_once('/')?;
    Some((step.trim().parse().ok()?, of.trim().parse().ok()?, text.trim().to_string()))
}

impl Engine for Docker {
    async fn info(&self) -> Result<EngineInfo> {
        let unreachable = |e: BollardError| EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        };
        let version = self.client.version().await.map_err(unreachable)?;
        let info = self.client.info().await.map_err(unreachable)?;
        Ok(EngineInfo {
            endpoint: self.endpoint.clone(),
            version: version.version.unwrap_or_default(),
            api_version: self.client.client_version().to_string(),
            cpus: info.ncpu.unwrap_or(0).max(0) as u32,
            memory: info.mem_total.unwrap_or(0).max(0) as u64,
            node_id: info.swarm.as_ref().and_then(|s| s.node_id.clone()).unwrap_or_default(),
            swarm: info
                .swarm
                .and_then(|s| s.local_node_state)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "inactive".into()),
            name: info.name.unwrap_or_default(),
            os: info.os_type.unwrap_or_default(),
            arch: info.architecture.unwrap_or_default(),
            containers: info.containers_running.unwrap_or(0).max(0) as u32,
            labels: info
                .labels
                .unwrap_or_default()
                .iter()
                .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect(),
        })
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.client.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                tags: i.repo_tags.unwrap_or_default(),
                labels: labels_of(i.config.and_then(|c| c.labels)),
                created: i
                    .created
                    .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d).ok())
                    .map_or(0, |d| d.timestamp()),
                size: i.size.unwrap_or(0).max(0) as u64,
            })),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.error(format!("image {reference}"))(e)),
        }
    }

    async fn images(&self, filter: LabelFilter<'_>) -> Result<Vec<ImageInfo>> {
        let options = ListImagesOptions { filters: label_filter(filter), ..Default::default() };
        let list = self.client.list_images(Some(options)).await.map_err(self.error("list images"))?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                labels: i.labels.into_iter().collect(),
                created: i.created,
                size: i.size.max(0) as u64,
            })
            .collect())
    }

    async fn import_rootfs(&self, rootfs: &Path, tag: &str, labels: &Labels) -> Result<ImageInfo> {
        let what = format!("import {} as {tag}", rootfs.display());
        let file = tokio::fs::File::open(rootfs).await.map_err(|e| EngineError::failed(what.clone(), e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let (repo, version) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(version.into()),
            changes: labels.iter().map(|(k, v)| format!("LABEL {k}={}", quote(v))).collect(),
            ..Default::default()
        };
        let mut progress =
            self.client.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        while let Some(step) = progress.next().await {
            step.map_err(self.error(what.clone()))?;
        }
        self.image(tag)
            .await?
            .ok_or(EngineError::Failed { what, reason: "the engine has no such image afterwards".into() })
    }

    async fn build(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &Labels,
        progress: &UnboundedSender<BuildEvent>,
    ) -> Result<ImageInfo> {
        let what = format!("build {tag}");
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let mut stream = self.client.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(self.error(what.clone()))?;
            if let Some(detail) = info.error_detail {
                let reason = detail.message.unwrap_or_else(|| "the build failed".into());
                return Err(EngineError::Failed { what, reason: reason.trim().to_string() });
            }
            if let Some(text) = info.stream {
                for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                    let event = match parse_step(line) {
                        Some((step, of, text)) => BuildEvent::Step { step, of, text },
                        None => BuildEvent::Output(line.to_string()),
                    };
                    let _ = progress.send(event);
                }
            }
        }
        self.image(tag)
            .await?
            .ok_or(EngineError::Failed { what, reason: "the engine has no such image afterwards".into() })
    }

    async fn tag(&self, id: &str, repo: &str, tag: &str) -> Result<()> {
        let options = TagImageOptions { repo: Some(repo.into()), tag: Some(tag.into()) };
        self.client
            .tag_image(id, Some(options))
            .await
            .map_err(self.error(format!("tag {id} as {repo}:{tag}")))
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let options = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        self.client
            .remove_image(reference, Some(options), None)
            .await
            .map(|_| ())
            .map_err(self.error(format!("image {reference}")))
    }

    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        match self.client.inspect_network(name, None).await {
            Ok(n) => Ok(Some(NetworkInfo {
                gateway: n
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .into_iter()
                    .flatten()
                    .find_map(|c| c.gateway.and_then(|g| g.parse().ok())),
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                labels: labels_of(n.labels),
            })),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(self.error(format!("network {name}"))(e)),
        }
    }

    async fn networks(&self, filter: LabelFilter<'_>) -> Result<Vec<NetworkInfo>> {
        let options = ListNetworksOptions { filters: label_filter(filter) };
        let list = self.client.list_networks(Some(options)).await.map_err(self.error("list networks"))?;
        Ok(list
            .into_iter()
            .map(|n| NetworkInfo {
                gateway: n
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .into_iter()
                    .flatten()
                    .find_map(|c| c.gateway.and_then(|g| g.parse().ok())),
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                labels: labels_of(n.labels),
            })
            .collect())
    }

    async fn create_network(&self, name: &str, labels: &Labels) -> Result<NetworkInfo> {
        let request = NetworkCreateRequest {
            name: name.into(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.client.create_network(request).await.map_err(self.error(format!("create network {name}")))?;
        self.network(name).await?.ok_or(EngineError::NotFound { what: format!("network {name}") })
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.client.remove_network(name).await.map_err(self.error(format!("network {name}")))
    }

    async fn volumes(&self, filter: LabelFilter<'_>) -> Result<Vec<VolumeInfo>> {
        let options = ListVolumesOptions { filters: label_filter(filter) };
        let list = self.client.list_volumes(Some(options)).await.map_err(self.error("list volumes"))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeInfo { name: v.name, labels: v.labels.into_iter().collect() })
            .collect())
    }

    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        let request = VolumeCreateRequest {
            name: Some(name.into()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let v =
            self.client.create_volume(request).await.map_err(self.error(format!("create volume {name}")))?;
        Ok(VolumeInfo { name: v.name, labels: v.labels.into_iter().collect() })
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.client
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
            .map_err(self.error(format!("volume {name}")))
    }

    async fn containers(&self, filter: LabelFilter<'_>) -> Result<Vec<ContainerInfo>> {
        let options =
            ListContainersOptions { all: true, filters: label_filter(filter), ..Default::default() };
        let list = self.client.list_containers(Some(options)).await.map_err(self.error("list containers"))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let status = c.status.unwrap_or_default();
                let state =
                    c.state.map(|s| ContainerState::parse(s.as_ref())).unwrap_or(ContainerState::Exited);
                ContainerInfo {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    labels: labels_of(c.labels),
                    health: health_from_status(&status),
                    exit_code: if state == ContainerState::Running {
                        None
                    } else {
                        exit_from_status(&status)
                    },
                    state,
                    addresses: addresses(c.network_settings.and_then(|n| n.networks)),
                    node: None,
                    update: None,
                }
            })
            .collect())
    }

    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let c = match self.client.inspect_container(name, None).await {
            Ok(c) => c,
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
            Err(e) => return Err(self.error(format!("container {name}"))(e)),
        };
        let state = c.state.unwrap_or_default();
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let config = c.config.unwrap_or_default();
        Ok(Some(ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            image: config.image.unwrap_or_default(),
            labels: labels_of(config.labels),
            state: ContainerState::parse(&status),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| Health::parse(s.as_ref()))
                .unwrap_or(Health::None),
            addresses: addresses(c.network_settings.and_then(|n| n.networks)),
            exit_code: if running { None } else { state.exit_code },
            node: None,
            update: None,
        }))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let what = format!("create container {}", spec.name);
        let port_key = |p: &Publish| format!("{}/{}", p.container_port, p.protocol);
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &spec.publish {
            bindings.entry(port_key(p)).or_insert_with(|| Some(Vec::new())).get_or_insert_default().push(
                PortBinding {
                    host_ip: p.host_ip.map(|ip| ip.to_string()),
                    host_port: Some(p.host_port.map(|p| p.to_string()).unwrap_or_default()),
                },
            );
        }
        let host = HostConfig {
            mounts: Some(
                spec.mounts
                    .iter()
                    .map(|m| DockerMount {
                        target: Some(m.target.clone()),
                        source: Some(m.volume.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    })
                    .collect(),
            ),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            memory: spec.memory.map(|m| m as i64),
            cpu_shares: spec.reserve_cpus.map(|c| ((c * 1024.0) as i64).max(2)),
            memory_reservation: spec.reserve_memory.map(|m| m as i64),
            network_mode: Some(spec.network.clone()),
            ..Default::default()
        };
        let endpoint = EndpointSettings { aliases: Some(spec.aliases.clone()), ..Default::default() };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            hostname: Some(spec.hostname.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: Some(spec.publish.iter().map(port_key).collect()),
            stop_timeout: Some(spec.stop_timeout.as_secs() as i64),
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created =
            self.client.create_container(Some(options), body).await.map_err(self.error(what.clone()))?;
        // an engine before API 1.44 takes one network at create: the others are joined before
        // the container starts, with the same aliases
        for network in &spec.networks {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(spec.aliases.clone()),
                    ..Default::default()
                }),
            };
            if let Err(e) = self.client.connect_network(network, request).await {
                let _ = self.remove(&created.id).await;
                return Err(self.error(format!("connect {} to network {network}", spec.name))(e));
            }
        }
        if !spec.files.is_empty() {
            let upload = async {
                let archive = files_tar(&spec.files).map_err(|e| EngineError::failed(what.clone(), e))?;
                let options = UploadToContainerOptions { path: "/".into(), ..Default::default() };
                self.client
                    .upload_to_container(&created.id, Some(options), bollard::body_full(archive.into()))
                    .await
                    .map_err(self.error(format!("copy files into {}", spec.name)))
            };
            if let Err(e) = upload.await {
                let _ = self.remove(&created.id).await;
                return Err(e);
            }
        }
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.client.start_container(id, None).await.map_err(self.error(format!("start container {id}")))
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let options = StopContainerOptions { t: Some(timeout.as_secs() as i32), signal: None };
        match self.client.stop_container(id, Some(options)).await {
            // 304: it was not running
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(self.error(format!("stop container {id}"))(e)),
        }
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptions { signal: signal.into() };
        self.client
            .kill_container(id, Some(options))
            .await
            .map_err(self.error(format!("kill container {id}")))
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        let options = bollard::query_parameters::RenameContainerOptions { name: name.into() };
        self.client
            .rename_container(id, options)
            .await
            .map_err(self.error(format!("rename container {id} to {name}")))
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: false, link: false };
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.error(format!("remove container {id}"))(e)),
        }
    }

    async fn logs(&self, id: &str, lines: usize) -> Result<String> {
        // on Swarm, `id` is a slot's service
        if self.client.inspect_container(id, None).await.is_err()
            && self.client.inspect_service(id, None).await.is_ok()
        {
            return self.swarm_logs(id, lines).await;
        }
        let options =
            LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let chunks: Vec<_> = self
            .client
            .logs(id, Some(options))
            .try_collect()
            .await
            .map_err(self.error(format!("logs of {id}")))?;
        Ok(chunks.iter().map(|c| String::from_utf8_lossy(&c.clone().into_bytes()).into_owned()).collect())
    }

    fn events(&self, filter: &[String]) -> EventStream {
        let mut filters = label_filter(filter).unwrap_or_default();
        filters.insert("type".into(), vec!["container".into()]);
        let options = EventsOptions { filters: Some(filters), ..Default::default() };
        let endpoint = self.endpoint.clone();
        self.client
            .events(Some(options))
            .map(move |e| {
                let e = e.map_err(|e| EngineError::Unreachable {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                })?;
                let actor = e.actor.unwrap_or_default();
                let mut labels: Labels = actor.attributes.unwrap_or_default().into_iter().collect();
                let name = labels.remove("name").unwrap_or_default();
                let exit_code = labels.remove("exitCode").and_then(|c| c.parse().ok());
                labels.remove("image");
                Ok(ContainerEvent {
                    action: e.action.unwrap_or_default(),
                    id: actor.id.unwrap_or_default(),
                    name,
                    labels,
                    exit_code,
                })
            })
            .boxed()
    }

    async fn create_overlay_network(&self, name: &str, labels: &Labels) -> Result<NetworkInfo> {
        self.swarm_overlay(name, labels).await
    }

    async fn secrets(&self, filter: LabelFilter<'_>) -> Result<Vec<String>> {
        self.swarm_secrets(filter).await
    }

    async fn create_secret(&self, name: &str, labels: &Labels, data: &[u8]) -> Result<()> {
        self.swarm_create_secret(name, labels, data).await
    }

    async fn remove_secret(&self, name: &str) -> Result<()> {
        self.swarm_remove_secret(name).await
    }

    async fn services(&self, filter: LabelFilter<'_>) -> Result<Vec<ContainerInfo>> {
        self.swarm_services(filter).await
    }

    async fn service(&self, name: &str) -> Result<Option<ContainerInfo>> {
        self.swarm_service(name).await
    }

    async fn create_service(&self, spec: &ServiceSpec) -> Result<String> {
        self.swarm_create(spec).await
    }

    async fn update_service(&self, spec: &ServiceSpec) -> Result<()> {
        self.swarm_update(spec).await
    }

    async fn nodes(&self) -> Result<Vec<crate::placement::NodeInfo>> {
        self.swarm_nodes().await
    }

    async fn remove_service(&self, name: &str) -> Result<()> {
        self.swarm_remove(name).await
    }

    async fn rollback_service(&self, name: &str) -> Result<Labels> {
        self.swarm_rollback(name).await
    }

    async fn push(&self, reference: &str, repo: &str, tag: &str) -> Result<String> {
        let target = format!("{repo}:{tag}");
        self.tag(reference, repo, tag).await?;
        let options = PushImageOptions { tag: Some(tag.into()), ..Default::default() };
        // drover's registries take no credentials: one on 127.0.0.0/8, or one the engine trusts
        let mut pushed = self.client.push_image(repo, Some(options), None);
        while let Some(step) = pushed.next().await {
            step.map_err(self.error(format!("push {target}")))?;
        }
        let image =
            self.client.inspect_image(&target).await.map_err(self.error(format!("image {target}")))?;
        let digests = image.repo_digests.unwrap_or_default();
        digests.into_iter().find(|d| d.split_once('@').is_some_and(|(r, _)| r == repo)).ok_or_else(|| {
            EngineError::failed(format!("push {target}"), "the engine names no digest for it after the push")
        })
    }
}

fn addresses(networks: Option<HashMap<String, EndpointSettings>>) -> BTreeMap<String, IpAddr> {
    networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, e)| e.ip_address.and_then(|ip| ip.parse().ok()).map(|ip| (name, ip)))
        .collect()
}

/// A `LABEL` value as a Dockerfile instruction reads it.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A tar of `files` at their absolute paths (parent folders included), owned by root.
fn files_tar(files: &[FileIn]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let path = f.path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        // folders an image has already (`/var`, `/var/lib`) keep the usual mode; only the
        // file's own folder is private
        for (i, dir) in chain.into_iter().enumerate().rev() {
            if dirs.insert(dir.clone()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(if i == 0 { 0o700 } else { 0o755 });
                header.set_size(0);
                builder.append_data(&mut header, &dir, std::io::empty())?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(f.mode);
        header.set_size(f.data.len() as u64);
        builder.append_data(&mut header, path, f.data.as_slice())?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_status_texts_give_health_and_exit_codes() {
        assert_eq!(health_from_status("Up 3 seconds (healthy)"), Health::Healthy);
        assert_eq!(health_from_status("Up 3 seconds (unhealthy)"), Health::Unhealthy);
        assert_eq!(health_from_status("Up 1 second (health: starting)"), Health::Starting);
        assert_eq!(health_from_status("Up 2 hours"), Health::None);
        assert_eq!(exit_from_status("Exited (137) 5 seconds ago"), Some(137));
        assert_eq!(exit_from_status("Up 2 hours"), None);
    }

    #[test]
    fn build_steps_are_read() {
        assert_eq!(parse_step("Step 3/7 : COPY a /b"), Some((3, 7, "COPY a /b".into())));
        assert_eq!(parse_step(" ---> Running in 1234"), None);
    }

    #[test]
    fn files_go_in_with_their_folders() {
        let files = [
            FileIn { path: "/var/lib/drover/minion/pki/minion.key".into(), mode: 0o600, data: b"k".to_vec() },
            FileIn { path: "/var/lib/drover/minion/pki/minion.pub".into(), mode: 0o644, data: b"p".to_vec() },
        ];
        let tar = files_tar(&files).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            [
                "var",
                "var/lib",
                "var/lib/drover",
                "var/lib/drover/minion",
                "var/lib/drover/minion/pki",
                "var/lib/drover/minion/pki/minion.key",
                "var/lib/drover/minion/pki/minion.pub"
            ]
        );
    }
}
