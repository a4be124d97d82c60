//! The seam between the fleet and a container engine: [`Engine`], the operations the fleet
//! needs (images, networks, volumes, containers, events) in the fleet's own terms.
//!
//! Two implementations: [`crate::docker::Docker`] over the Docker Engine API (bollard), and
//! [`crate::fake::FakeEngine`], in memory, for the unit tests of plans and rollouts. Nothing
//! outside them knows what a bollard type looks like.
//!
//! On Swarm (`engine: swarm` in fleet.yaml) the same engine is asked for services instead of
//! containers: a slot is a service of one replica named after the slot ([`ServiceSpec`]:
//! the slot's container spec, its keys as Swarm secrets, its update configuration), listed
//! as one [`ContainerInfo`] per service (its current task, the node it runs on). A swap is a
//! service update, a death is Swarm's to replace. The operations for services have default
//! bodies that refuse, so an engine without Swarm (the fake, for most tests) needs none of
//! them. The CLI and fleet.yaml do not change with the engine.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};

/// Labels on an image, container, network or volume.
pub type Labels = BTreeMap<String, String>;

/// Every object drover creates carries this label; nothing without it is ever touched.
pub const LABEL_FLEET: &str = "drover.fleet";
/// A container's role.
pub const LABEL_ROLE: &str = "drover.role";
/// A container's or volume's slot: `<fleet>-<role>-<n>`, also the minion id and container name.
pub const LABEL_SLOT: &str = "drover.slot";
/// A container's image version; on an image, the version it was built as.
pub const LABEL_VERSION: &str = "drover.version";
/// A container's generation within its slot: every container made for a slot has a higher
/// one than the last, so the master tells the newer of two containers of one slot.
pub const LABEL_GENERATION: &str = "drover.generation";
/// An image's name (`images/<name>`).
pub const LABEL_IMAGE: &str = "drover.image";
/// An image's content: sha256 of everything it was built from (definition, base, minion).
pub const LABEL_CONTENT: &str = "drover.content";
/// On a slot's Swarm service: the constraints drover derived for it (`max_per_node`,
/// `spread`), `,`-separated, kept through its updates.
pub const LABEL_PLACEMENT: &str = "drover.placement";
/// On a slot's Swarm service updated by drover: the version of the spec it replaced, which
/// is Swarm's previous spec until the next update or rollback (Swarm's API shows that spec,
/// but bollard's `Service` does not carry it).
pub const LABEL_REPLACES: &str = "drover.replaces";
/// The git commit an image's definition came from (`-dirty` when the tree had changes).
pub const LABEL_COMMIT: &str = "drover.commit";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {reason}; is dockerd running, and may this user \
         use its socket? (DOCKER_HOST selects another engine)"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what}: {reason}")]
    Conflict { what: String, reason: String },
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
}

impl EngineError {
    pub fn failed(what: impl Into<String>, reason: impl ToString) -> Self {
        EngineError::Failed { what: what.into(), reason: reason.to_string() }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::NotFound { .. })
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What the engine says of itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Where it was reached (`unix:///var/run/docker.sock`).
    pub endpoint: String,
    pub version: String,
    pub api_version: String,
    /// Cores and memory (bytes) of the machine (of the node, on one engine).
    pub cpus: u32,
    pub memory: u64,
    /// `active` when the engine is a Swarm node.
    pub swarm: String,
    /// Its node's id in the swarm; empty outside one.
    #[serde(default)]
    pub node_id: String,
    /// The machine's hostname, as the engine reports it.
    #[serde(default)]
    pub name: String,
    /// Containers running on the engine, whoever's.
    #[serde(default)]
    pub containers: u32,
    /// The engine's labels (`daemon.json`'s `labels`).
    #[serde(default)]
    pub labels: Labels,
    /// `linux`; `x86_64`, `aarch64`.
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `sha256:…`
    pub id: String,
    /// `name:tag` references that point at it.
    pub tags: Vec<String>,
    pub labels: Labels,
    /// Seconds since the epoch.
    pub created: i64,
    pub size: u64,
}

/// A step of an image build, as the engine reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BuildEvent {
    /// `Step 3/7 : COPY …`: `step` of `of`.
    Step { step: u32, of: u32, text: String },
    /// Output of the step that runs.
    Output(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    pub fn parse(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Exited,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
        }
    }
}

/// The verdict of the image's `HEALTHCHECK` (the minion's `drover-minion health`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn parse(s: &str) -> Health {
        match s {
            "starting" => Health::Starting,
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            _ => Health::None,
        }
    }
}

/// A container as the engine has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// The reference it was created from (`coins:1.0`).
    pub image: String,
    pub labels: Labels,
    pub state: ContainerState,
    pub health: Health,
    /// Its address on each network it is attached to, by network name.
    pub addresses: BTreeMap<String, IpAddr>,
    /// How it last ended, when it is not running.
    pub exit_code: Option<i64>,
    /// The node it runs on (Swarm); none on one engine.
    pub node: Option<String>,
    /// Swarm: the state of the service's last update (`updating`, `rollback_completed`...),
    /// with Swarm's message after a `:`; none on one engine.
    pub update: Option<String>,
}

impl ContainerInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Its generation within its slot (0 when the label is missing or not a number).
    pub fn generation(&self) -> u64 {
        self.label(LABEL_GENERATION).and_then(|g| g.parse().ok()).unwrap_or(0)
    }
}

/// A named volume mounted at `target` in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub volume: String,
    pub target: String,
}

/// A published port: `host_ip:host_port` on the host → `container_port/protocol`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub host_ip: Option<IpAddr>,
    /// None: any free port.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A file put into a container before it starts (a slot's keys, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileIn {
    /// Absolute path in the container.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Everything needed to create one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Arguments to the image's entrypoint; empty: the image's own.
    pub command: Vec<String>,
    pub hostname: String,
    pub env: BTreeMap<String, String>,
    pub labels: Labels,
    /// The network it is created on: where it reaches the master.
    pub network: String,
    /// DNS names on `network`, and on each of `networks`, besides its name.
    pub aliases: Vec<String>,
    /// The other networks it joins (before it starts), with the same aliases.
    pub networks: Vec<String>,
    pub mounts: Vec<Mount>,
    pub publish: Vec<Publish>,
    /// CPUs (0.5 is half a core).
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    /// CPUs reserved for it: on Swarm a reservation the scheduler honours, on one engine a
    /// CPU share (1024 a CPU) that weighs it when CPUs are contended.
    pub reserve_cpus: Option<f64>,
    /// Bytes reserved for it: on Swarm a reservation, on one engine a soft limit.
    pub reserve_memory: Option<u64>,
    /// Swarm placement constraints (`node.labels.zone==a`); unused on one engine.
    pub constraints: Vec<String>,
    /// Put into the container before it starts; owned by root.
    pub files: Vec<FileIn>,
    /// How long the container's main process (the minion) has after SIGTERM.
    pub stop_timeout: Duration,
}

/// Where a Swarm secret appears in a service's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's name (it must exist).
    pub name: String,
    /// Absolute path in the container.
    pub target: String,
    pub mode: u32,
}

/// What a service update does when its task fails, and how it starts the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    Rollback,
    Pause,
    Continue,
}

/// A service's update configuration (Swarm's `UpdateConfig`), as drover sets it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServiceUpdate {
    /// Tasks updated at once.
    pub parallelism: u64,
    /// The new task starts before the old one stops.
    pub start_first: bool,
    /// How long Swarm watches a new task for a failure before calling it updated.
    pub monitor: Duration,
    pub failure_action: FailureAction,
    /// The share of tasks that may fail.
    pub max_failure_ratio: f64,
}

/// A slot as a Swarm service: one replica of `container` (its name is the service's),
/// with `secrets` in place of `container.files`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    pub container: ContainerSpec,
    pub secrets: Vec<SecretRef>,
    pub update: ServiceUpdate,
    /// Swarm starts another task when the task ends, however it ends (the role's `heal`).
    pub restart: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub labels: Labels,
    /// The address of the host on this network: where a container reaches a master that
    /// listens on all of the host's addresses.
    pub gateway: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub labels: Labels,
}

/// What happened to a container, from the engine's event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerEvent {
    /// `start`, `die`, `stop`, `kill`, `destroy`, `oom`, `health_status: healthy`...
    pub action: String,
    pub id: String,
    pub name: String,
    pub labels: Labels,
    /// For `die`: how it ended.
    pub exit_code: Option<i64>,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEvent>> + Send>>;

/// A filter on labels: every `key` (or `key=value`) given must be there.
pub type LabelFilter<'a> = &'a [&'a str];

/// The operations the fleet needs from a container engine. Every object the fleet creates
/// carries [`LABEL_FLEET`]; the fleet lists with that label and never touches what lacks it.
pub trait Engine: Send + Sync + 'static {
    /// Reaches the engine: its version and size. Fails with [`EngineError::Unreachable`].
    fn info(&self) -> impl Future<Output = Result<EngineInfo>> + Send;

    /// The image a reference (`name:tag` or id) names, if the engine has it.
    fn image(&self, reference: &str) -> impl Future<Output = Result<Option<ImageInfo>>> + Send;
    /// Images carrying every label of `filter`.
    fn images(&self, filter: LabelFilter<'_>) -> impl Future<Output = Result<Vec<ImageInfo>>> + Send;
    /// Imports a root file system (an uncompressed tar of `/`) as image `tag`, with labels.
    fn import_rootfs(
        &self,
        rootfs: &std::path::Path,
        tag: &str,
        labels: &Labels,
    ) -> impl Future<Output = Result<ImageInfo>> + Send;
    /// Builds an image from a build context (a tar holding the Dockerfile), tags it `tag`,
    /// reporting each step and its output on `progress`.
    fn build(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &Labels,
        progress: &tokio::sync::mpsc::UnboundedSender<BuildEvent>,
    ) -> impl Future<Output = Result<ImageInfo>> + Send;
    /// Points `repo:tag` at the image `id`.
    fn tag(&self, id: &str, repo: &str, tag: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes a reference (and the image when it was its last).
    fn remove_image(&self, reference: &str) -> impl Future<Output = Result<()>> + Send;

    fn network(&self, name: &str) -> impl Future<Output = Result<Option<NetworkInfo>>> + Send;
    fn networks(&self, filter: LabelFilter<'_>) -> impl Future<Output = Result<Vec<NetworkInfo>>> + Send;
    fn create_network(&self, name: &str, labels: &Labels)
    -> impl Future<Output = Result<NetworkInfo>> + Send;
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    fn volumes(&self, filter: LabelFilter<'_>) -> impl Future<Output = Result<Vec<VolumeInfo>>> + Send;
    fn create_volume(&self, name: &str, labels: &Labels) -> impl Future<Output = Result<VolumeInfo>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    /// Containers (running or not) carrying every label of `filter`.
    fn containers(&self, filter: LabelFilter<'_>) -> impl Future<Output = Result<Vec<ContainerInfo>>> + Send;
    /// The container with this name or id, whoever made it.
    fn container(&self, name: &str) -> impl Future<Output = Result<Option<ContainerInfo>>> + Send;
    /// Creates the container (not started) with its files in place; returns its id.
    fn create(&self, spec: &ContainerSpec) -> impl Future<Output = Result<String>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// SIGTERM, then SIGKILL after `timeout`.
    fn stop(&self, id: &str, timeout: Duration) -> impl Future<Output = Result<()>> + Send;
    /// Sends `signal` (`KILL`, `TERM`...) to the container's main process.
    fn kill(&self, id: &str, signal: &str) -> impl Future<Output = Result<()>> + Send;
    /// Renames a container (a start-first swap moves the old one aside).
    fn rename(&self, id: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes the container, killing it first if it runs.
    fn remove(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// The last `lines` lines of the container's output (the minion's log).
    fn logs(&self, id: &str, lines: usize) -> impl Future<Output = Result<String>> + Send;

    /// Container events from now on, for containers carrying every label of `filter`.
    fn events(&self, filter: &[String]) -> EventStream;

    /// A Swarm overlay network, attachable (a container outside the swarm, such as a master
    /// in a container, may join it).
    fn create_overlay_network(
        &self,
        name: &str,
        labels: &Labels,
    ) -> impl Future<Output = Result<NetworkInfo>> + Send {
        let _ = labels;
        async move { Err(no_swarm(format!("create network {name}"))) }
    }

    /// Names of the Swarm secrets carrying every label of `filter`.
    fn secrets(&self, filter: LabelFilter<'_>) -> impl Future<Output = Result<Vec<String>>> + Send {
        let _ = filter;
        async { Err(no_swarm("list secrets")) }
    }
    /// Creates a Swarm secret; one of that name existing already is left as it is (a
    /// secret's name says its content: drover names them by a hash of it).
    fn create_secret(
        &self,
        name: &str,
        labels: &Labels,
        data: &[u8],
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (labels, data);
        async move { Err(no_swarm(format!("create secret {name}"))) }
    }
    fn remove_secret(&self, name: &str) -> impl Future<Output = Result<()>> + Send {
        async move { Err(no_swarm(format!("remove secret {name}"))) }
    }

    /// Swarm services carrying every label of `filter`, one [`ContainerInfo`] each: named and
    /// labelled as the service, its state, health, exit code and node those of its newest
    /// task, its `update` the service's update state.
    fn services(&self, filter: LabelFilter<'_>) -> impl Future<Output = Result<Vec<ContainerInfo>>> + Send {
        let _ = filter;
        async { Err(no_swarm("list services")) }
    }
    /// The service of this name, as [`Engine::services`] shows it.
    fn service(&self, name: &str) -> impl Future<Output = Result<Option<ContainerInfo>>> + Send {
        async move { Err(no_swarm(format!("service {name}"))) }
    }
    /// Creates the service (one replica, started by Swarm); returns its id.
    fn create_service(&self, spec: &ServiceSpec) -> impl Future<Output = Result<String>> + Send {
        async move { Err(no_swarm(format!("create service {}", spec.container.name))) }
    }
    /// Replaces the service's spec (image, labels, environment, update configuration):
    /// Swarm replaces its task as the update configuration says.
    fn update_service(&self, spec: &ServiceSpec) -> impl Future<Output = Result<()>> + Send {
        async move { Err(no_swarm(format!("update service {}", spec.container.name))) }
    }
    /// The swarm's nodes, with their running tasks counted.
    fn nodes(&self) -> impl Future<Output = Result<Vec<crate::placement::NodeInfo>>> + Send {
        async { Err(no_swarm("list nodes")) }
    }
    /// Removes the service; Swarm stops and removes its task.
    fn remove_service(&self, name: &str) -> impl Future<Output = Result<()>> + Send {
        async move { Err(no_swarm(format!("remove service {name}"))) }
    }

    /// Swarm's own rollback of the service to its previous spec (what `docker service
    /// rollback` does, with the service's rollback configuration): returns the labels of the
    /// spec it went back to.
    fn rollback_service(&self, name: &str) -> impl Future<Output = Result<Labels>> + Send {
        async move { Err(no_swarm(format!("roll back service {name}"))) }
    }

    /// Pushes the image `reference` (`coins:1.0`) to a registry as `repo:tag`
    /// (`127.0.0.1:5000/coins:1.0`), and returns it by digest as the registry keeps it
    /// (`127.0.0.1:5000/coins@sha256:…`). The engine pushes, so `repo` names the registry
    /// as the engine reaches it.
    fn push(&self, reference: &str, repo: &str, tag: &str) -> impl Future<Output = Result<String>> + Send {
        let _ = tag;
        async move { Err(no_swarm(format!("push {reference} to {repo}"))) }
    }
}

fn no_swarm(what: impl Into<String>) -> EngineError {
    EngineError::failed(what, "this engine runs no Swarm services")
}
