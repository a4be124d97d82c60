//! [`Engine`] in memory, for unit tests: containers, images, networks and volumes are rows
//! in a table, every call is recorded ([`FakeEngine::calls`]), events go to every stream
//! opened, and a test can make the next calls of a kind fail ([`FakeEngine::fail`]) or
//! kill a container as the engine would ([`FakeEngine::die`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::Digest as _;
use tokio::sync::broadcast;
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::wrappers::BroadcastStream;

use crate::engine::*;

#[derive(Default)]
struct State {
    images: BTreeMap<String, ImageInfo>,
    networks: BTreeMap<String, NetworkInfo>,
    volumes: BTreeMap<String, VolumeInfo>,
    /// By id.
    containers: BTreeMap<String, (ContainerSpec, ContainerInfo)>,
    next_id: u64,
    calls: Vec<String>,
    /// Operation name → how many of the next calls fail.
    failing: BTreeMap<String, usize>,
    down: bool,
    /// In swarm mode ([`FakeEngine::set_swarm`]): services by name, secrets by name.
    swarm: bool,
    services: BTreeMap<String, (ServiceSpec, ContainerInfo)>,
    /// A service's spec before its last update, for [`FakeEngine::swarm_rolls_back`].
    previous: BTreeMap<String, ServiceSpec>,
    secrets: BTreeMap<String, Labels>,
    /// The swarm's nodes ([`FakeEngine::set_nodes`]); none set: one, `node-1`.
    nodes: Vec<crate::placement::NodeInfo>,
    /// The id of the node this engine is, in swarm mode ([`FakeEngine::set_node_id`]);
    /// `fake-node` unless set.
    node_id: Option<String>,
}

/// An engine in memory. Clones share it.
#[derive(Clone)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<ContainerEvent>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

fn matches(labels: &Labels, filter: &[impl AsRef<str>]) -> bool {
    filter.iter().all(|f| match f.as_ref().split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
        None => labels.contains_key(f.as_ref()),
    })
}

impl FakeEngine {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        FakeEngine { state: Arc::new(Mutex::new(State::default())), events }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a call; fails it if the test asked for that.
    fn call(&self, op: &str, what: &str) -> Result<()> {
        let mut s = self.lock();
        if s.down {
            return Err(EngineError::Unreachable {
                endpoint: "fake".into(),
                reason: "engine stopped".into(),
            });
        }
        s.calls.push(format!("{op} {what}").trim_end().to_string());
        if let Some(n) = s.failing.get_mut(op).filter(|n| **n > 0) {
            *n -= 1;
            return Err(EngineError::failed(format!("{op} {what}"), "injected failure"));
        }
        Ok(())
    }

    /// Every call so far, as `op target` lines (`create coins-worker-1`, `start coins-worker-1`).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Makes the next `times` calls of `op` (`create`, `start`, `stop`, `remove`, `build`...) fail.
    pub fn fail(&self, op: &str, times: usize) {
        self.lock().failing.insert(op.to_string(), times);
    }

    /// Puts the engine in swarm mode: services and secrets work, and `docker_gwbridge`
    /// exists (gateway 172.18.0.1).
    pub fn set_swarm(&self) {
        let mut s = self.lock();
        s.swarm = true;
        let bridge = NetworkInfo {
            id: "net-gwbridge".into(),
            name: "docker_gwbridge".into(),
            labels: Labels::new(),
            gateway: Some("172.18.0.1".parse().expect("an address")),
        };
        s.networks.insert(bridge.name.clone(), bridge);
    }

    /// The task of service `name` ends as if its main process exited with `code`, with the
    /// container event Docker sends for a Swarm task (its labels and the task id's).
    pub fn die_task(&self, name: &str, code: i64) {
        let event = {
            let mut s = self.lock();
            let Some((_, info)) = s.services.get_mut(name) else { return };
            info.state = ContainerState::Exited;
            info.exit_code = Some(code);
            let mut e = event("die", info);
            e.name = format!("{name}.1.task{code}");
            e.labels.insert("com.docker.swarm.task.id".into(), format!("task{code}"));
            e.exit_code = Some(code);
            e
        };
        let _ = self.events.send(event);
    }

    /// Swarm rolls service `name` back to its spec before its last update, on its own (as
    /// its update's failure action says).
    pub fn swarm_rolls_back(&self, name: &str) {
        let mut s = self.lock();
        let Some(before) = s.previous.remove(name) else { return };
        let Some((spec, info)) = s.services.get_mut(name) else { return };
        info.image = before.container.image.clone();
        info.labels = before.container.labels.clone();
        info.update =
            Some("rollback_completed: update rolled back due to failure or early termination".into());
        *spec = before;
    }

    /// This engine is another node of the swarm from now on (the master moved).
    pub fn set_node_id(&self, id: &str) {
        self.lock().node_id = Some(id.to_string());
    }

    /// The service keeps no previous spec (as after its creation): Swarm cannot roll it back.
    pub fn forget_previous(&self, name: &str) {
        self.lock().previous.remove(name);
    }

    /// A service's spec, by name.
    /// The swarm's nodes from now on. A service pinned with `node.id==<id>` runs on that
    /// node; any other on the first node.
    pub fn set_nodes(&self, nodes: Vec<crate::placement::NodeInfo>) {
        self.lock().nodes = nodes;
    }

    fn node_list(s: &State) -> Vec<crate::placement::NodeInfo> {
        if !s.nodes.is_empty() {
            return s.nodes.clone();
        }
        vec![crate::placement::NodeInfo {
            id: "node-1".into(),
            hostname: "node-1".into(),
            role: "manager".into(),
            availability: "active".into(),
            ready: true,
            os: "linux".into(),
            arch: "x86_64".into(),
            cpus: 2.0,
            memory: 4 << 30,
            ..Default::default()
        }]
    }

    pub fn service_spec(&self, name: &str) -> Option<ServiceSpec> {
        self.lock().services.get(name).map(|(spec, _)| spec.clone())
    }

    /// Names of the secrets there are.
    pub fn secret_names(&self) -> Vec<String> {
        self.lock().secrets.keys().cloned().collect()
    }

    /// Makes every call fail as an unreachable engine does (or work again).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Adds an image, as if built or imported.
    pub fn add_image(&self, tag: &str, labels: Labels) -> ImageInfo {
        let mut s = self.lock();
        s.next_id += 1;
        let image = ImageInfo {
            id: format!("sha256:{:064x}", s.next_id),
            tags: vec![tag.to_string()],
            labels,
            created: 0,
            size: 0,
        };
        s.images.insert(tag.to_string(), image.clone());
        image
    }

    /// The container named `name` ends as if its main process exited with `code`.
    pub fn die(&self, name: &str, code: i64) {
        let event = {
            let mut s = self.lock();
            let Some((_, info)) = s.containers.values_mut().find(|(_, c)| c.name == name) else { return };
            info.state = ContainerState::Exited;
            info.exit_code = Some(code);
            event("die", info)
        };
        let _ = self.events.send(event);
    }

    /// As Docker does it: the `die` event comes while the container list still says the
    /// container runs; the list says it exited `lag` later. (Inspect has it right at once;
    /// the list is a view the engine updates after the event.)
    pub fn die_listed_late(&self, name: &str, code: i64, lag: std::time::Duration) {
        let (id, dead) = {
            let s = self.lock();
            let Some((_, info)) = s.containers.values().find(|(_, c)| c.name == name) else { return };
            let mut dead = info.clone();
            dead.state = ContainerState::Exited;
            dead.exit_code = Some(code);
            (info.id.clone(), dead)
        };
        let _ = self.events.send(event("die", &dead));
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(lag).await;
            let mut s = this.lock();
            if let Some((_, info)) = s.containers.values_mut().find(|(_, c)| c.id == id) {
                info.state = ContainerState::Exited;
                info.exit_code = Some(code);
            }
        });
    }

    /// Sets a container's health as its HEALTHCHECK would.
    pub fn set_health(&self, name: &str, health: Health) {
        let mut s = self.lock();
        if let Some((_, info)) = s.containers.values_mut().find(|(_, c)| c.name == name) {
            info.health = health;
        }
    }

    /// The spec a container was created with, by name.
    pub fn spec(&self, name: &str) -> Option<ContainerSpec> {
        self.lock().containers.values().find(|(_, c)| c.name == name).map(|(spec, _)| spec.clone())
    }

    /// Every container, by name: (state, image).
    pub fn table(&self) -> BTreeMap<String, (ContainerState, String)> {
        self.lock().containers.values().map(|(_, c)| (c.name.clone(), (c.state, c.image.clone()))).collect()
    }
}

/// The labels of the `LABEL "k"="v" …` lines of the context's Dockerfile, as a build
/// gives them to its image.
fn dockerfile_labels(context: &[u8]) -> Labels {
    let mut archive = tar::Archive::new(context);
    let mut text = String::new();
    if let Ok(entries) = archive.entries() {
        for mut e in entries.flatten() {
            if e.path().is_ok_and(|p| p.as_os_str() == "Dockerfile") {
                let _ = std::io::Read::read_to_string(&mut e, &mut text);
            }
        }
    }
    let unquote = |s: &str| s.trim_matches('"').replace("\\\"", "\"").replace("\\\\", "\\");
    text.lines()
        .filter_map(|l| l.strip_prefix("LABEL "))
        .flat_map(|l| l.split("\" \"").map(str::to_string).collect::<Vec<_>>())
        .filter_map(|pair| pair.split_once("\"=\"").map(|(k, v)| (unquote(k), unquote(v))))
        .collect()
}

fn event(action: &str, c: &ContainerInfo) -> ContainerEvent {
    ContainerEvent {
        action: action.into(),
        id: c.id.clone(),
        name: c.name.clone(),
        labels: c.labels.clone(),
        exit_code: c.exit_code,
    }
}

impl Engine for FakeEngine {
    async fn info(&self) -> Result<EngineInfo> {
        self.call("info", "")?;
        Ok(EngineInfo {
            endpoint: "fake".into(),
            version: "0".into(),
            api_version: "0".into(),
            cpus: 2,
            memory: 4 << 30,
            swarm: if self.lock().swarm { "active" } else { "inactive" }.into(),
            node_id: match &*self.lock() {
                s if s.swarm => s.node_id.clone().unwrap_or_else(|| "fake-node".into()),
                _ => String::new(),
            },
            name: "fake".into(),
            containers: 0,
            labels: Labels::new(),
            os: "linux".into(),
            arch: "x86_64".into(),
        })
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        Ok(self.lock().images.get(reference).cloned())
    }

    async fn images(&self, filter: LabelFilter<'_>) -> Result<Vec<ImageInfo>> {
        Ok(self.lock().images.values().filter(|i| matches(&i.labels, filter)).cloned().collect())
    }

    async fn import_rootfs(&self, _rootfs: &Path, tag: &str, labels: &Labels) -> Result<ImageInfo> {
        self.call("import", tag)?;
        Ok(self.add_image(tag, labels.clone()))
    }

    async fn build(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &Labels,
        progress: &UnboundedSender<BuildEvent>,
    ) -> Result<ImageInfo> {
        self.call("build", tag)?;
        let _ = progress.send(BuildEvent::Step { step: 1, of: 1, text: format!("build {tag}") });
        let mut labels = labels.clone();
        labels.extend(dockerfile_labels(&context));
        Ok(self.add_image(tag, labels))
    }

    async fn tag(&self, id: &str, repo: &str, tag: &str) -> Result<()> {
        self.call("tag", &format!("{repo}:{tag}"))?;
        let mut s = self.lock();
        let image = s.images.values().find(|i| i.id == id).cloned();
        let Some(mut image) = image else {
            return Err(EngineError::NotFound { what: format!("image {id}") });
        };
        image.tags.push(format!("{repo}:{tag}"));
        s.images.insert(format!("{repo}:{tag}"), image);
        Ok(())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        self.call("rmi", reference)?;
        self.lock()
            .images
            .remove(reference)
            .map(|_| ())
            .ok_or(EngineError::NotFound { what: format!("image {reference}") })
    }

    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        Ok(self.lock().networks.get(name).cloned())
    }

    async fn networks(&self, filter: LabelFilter<'_>) -> Result<Vec<NetworkInfo>> {
        Ok(self.lock().networks.values().filter(|n| matches(&n.labels, filter)).cloned().collect())
    }

    async fn create_network(&self, name: &str, labels: &Labels) -> Result<NetworkInfo> {
        self.call("network", name)?;
        let mut s = self.lock();
        if s.networks.contains_key(name) {
            return Err(EngineError::Conflict { what: format!("network {name}"), reason: "exists".into() });
        }
        let net = NetworkInfo {
            id: format!("net-{name}"),
            name: name.into(),
            labels: labels.clone(),
            gateway: Some("172.30.0.1".parse().expect("an address")),
        };
        s.networks.insert(name.into(), net.clone());
        Ok(net)
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.call("rm-network", name)?;
        self.lock()
            .networks
            .remove(name)
            .map(|_| ())
            .ok_or(EngineError::NotFound { what: format!("network {name}") })
    }

    async fn volumes(&self, filter: LabelFilter<'_>) -> Result<Vec<VolumeInfo>> {
        Ok(self.lock().volumes.values().filter(|v| matches(&v.labels, filter)).cloned().collect())
    }

    async fn create_volume(&self, name: &str, labels: &Labels) -> Result<VolumeInfo> {
        self.call("volume", name)?;
        let mut s = self.lock();
        let v =
            s.volumes.entry(name.into()).or_insert(VolumeInfo { name: name.into(), labels: labels.clone() });
        Ok(v.clone())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.call("rm-volume", name)?;
        let mut s = self.lock();
        if s.containers.values().any(|(spec, _)| spec.mounts.iter().any(|m| m.volume == name)) {
            return Err(EngineError::Conflict { what: format!("volume {name}"), reason: "in use".into() });
        }
        s.volumes.remove(name).map(|_| ()).ok_or(EngineError::NotFound { what: format!("volume {name}") })
    }

    async fn containers(&self, filter: LabelFilter<'_>) -> Result<Vec<ContainerInfo>> {
        let s = self.lock();
        if s.down {
            return Err(EngineError::Unreachable {
                endpoint: "fake".into(),
                reason: "engine stopped".into(),
            });
        }
        Ok(s.containers.values().map(|(_, c)| c).filter(|c| matches(&c.labels, filter)).cloned().collect())
    }

    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let s = self.lock();
        let found = s.containers.values().map(|(_, c)| c).find(|c| c.name == name || c.id == name);
        // a service's task stands for its container (the fake host finds minions so)
        let task = || s.services.values().map(|(_, c)| c).find(|c| c.name == name || c.id == name);
        Ok(found.or_else(task).cloned())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        self.call("create", &spec.name)?;
        let mut s = self.lock();
        if s.containers.values().any(|(_, c)| c.name == spec.name) {
            return Err(EngineError::Conflict {
                what: format!("create container {}", spec.name),
                reason: "the name is in use".into(),
            });
        }
        if !s.images.contains_key(&spec.image) {
            return Err(EngineError::NotFound { what: format!("image {}", spec.image) });
        }
        s.next_id += 1;
        let id = format!("c{:04}", s.next_id);
        let n = s.next_id;
        let info = ContainerInfo {
            id: id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
            state: ContainerState::Created,
            health: Health::None,
            addresses: std::iter::once(&spec.network)
                .chain(&spec.networks)
                .map(|net| {
                    (net.clone(), format!("172.30.{}.{}", n / 250, n % 250 + 2).parse().expect("an address"))
                })
                .collect(),
            exit_code: None,
            node: None,
            update: None,
        };
        s.containers.insert(id.clone(), (spec.clone(), info));
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let name = self.name_of(id)?;
        self.call("start", &name)?;
        let event = {
            let mut s = self.lock();
            let (_, info) = s.containers.get_mut(id).expect("checked");
            info.state = ContainerState::Running;
            info.exit_code = None;
            info.health = Health::Starting;
            event("start", info)
        };
        let _ = self.events.send(event);
        Ok(())
    }

    async fn stop(&self, id: &str, _timeout: Duration) -> Result<()> {
        let name = self.name_of(id)?;
        self.call("stop", &name)?;
        let event = {
            let mut s = self.lock();
            let (_, info) = s.containers.get_mut(id).expect("checked");
            if info.state != ContainerState::Running {
                return Ok(());
            }
            info.state = ContainerState::Exited;
            info.exit_code = Some(0);
            event("die", info)
        };
        let _ = self.events.send(event);
        Ok(())
    }

    async fn kill(&self, id: &str, _signal: &str) -> Result<()> {
        let name = self.name_of(id)?;
        self.call("kill", &name)?;
        self.die(&name, 137);
        Ok(())
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        let old = self.name_of(id)?;
        self.call("rename", &format!("{old} {name}"))?;
        let mut s = self.lock();
        if s.containers.values().any(|(_, c)| c.name == name) {
            return Err(EngineError::Conflict {
                what: format!("rename {old}"),
                reason: format!("{name} is in use"),
            });
        }
        let (spec, info) = s.containers.get_mut(id).expect("checked");
        spec.name = name.into();
        info.name = name.into();
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let Ok(name) = self.name_of(id) else { return Ok(()) };
        self.call("remove", &name)?;
        let removed = self.lock().containers.remove(id);
        if let Some((_, mut info)) = removed {
            let was_running = info.state == ContainerState::Running;
            info.state = ContainerState::Removing;
            if was_running {
                info.exit_code = Some(137);
                let _ = self.events.send(event("die", &info));
            }
            let _ = self.events.send(event("destroy", &info));
        }
        Ok(())
    }

    async fn logs(&self, id: &str, _lines: usize) -> Result<String> {
        let name = self.name_of(id)?;
        Ok(format!("(log of {name})\n"))
    }

    fn events(&self, filter: &[String]) -> EventStream {
        let filter = filter.to_vec();
        // a stream that lagged skips what it missed, as a real one that reconnects does
        BroadcastStream::new(self.events.subscribe())
            .filter_map(move |e| {
                let e = e.ok().filter(|e| matches(&e.labels, &filter));
                async move { e.map(Ok) }
            })
            .boxed()
    }

    async fn create_overlay_network(&self, name: &str, labels: &Labels) -> Result<NetworkInfo> {
        self.call("overlay", name)?;
        let mut s = self.lock();
        if !s.swarm {
            return Err(EngineError::failed(format!("network {name}"), "not a swarm manager"));
        }
        let net = NetworkInfo {
            id: format!("net-{name}"),
            name: name.into(),
            labels: labels.clone(),
            gateway: Some("10.0.9.1".parse().expect("an address")),
        };
        s.networks.insert(name.into(), net.clone());
        Ok(net)
    }

    async fn secrets(&self, filter: LabelFilter<'_>) -> Result<Vec<String>> {
        Ok(self.lock().secrets.iter().filter(|(_, l)| matches(l, filter)).map(|(n, _)| n.clone()).collect())
    }

    async fn create_secret(&self, name: &str, labels: &Labels, _data: &[u8]) -> Result<()> {
        self.call("secret", name)?;
        self.lock().secrets.entry(name.into()).or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn remove_secret(&self, name: &str) -> Result<()> {
        self.call("rm-secret", name)?;
        let mut s = self.lock();
        if s.services.values().any(|(spec, _)| spec.secrets.iter().any(|r| r.name == name)) {
            return Err(EngineError::Conflict { what: format!("secret {name}"), reason: "in use".into() });
        }
        s.secrets.remove(name);
        Ok(())
    }

    async fn services(&self, filter: LabelFilter<'_>) -> Result<Vec<ContainerInfo>> {
        let s = self.lock();
        Ok(s.services.values().map(|(_, c)| c).filter(|c| matches(&c.labels, filter)).cloned().collect())
    }

    async fn service(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let s = self.lock();
        Ok(s.services.values().map(|(_, c)| c).find(|c| c.name == name || c.id == name).cloned())
    }

    async fn create_service(&self, spec: &ServiceSpec) -> Result<String> {
        let c = &spec.container;
        self.call("service", &c.name)?;
        let mut s = self.lock();
        if !s.images.contains_key(&c.image) {
            return Err(EngineError::NotFound { what: format!("image {}", c.image) });
        }
        if let Some(missing) = spec.secrets.iter().find(|r| !s.secrets.contains_key(&r.name)) {
            return Err(EngineError::NotFound { what: format!("secret {}", missing.name) });
        }
        s.next_id += 1;
        let id = format!("s{:04}", s.next_id);
        let nodes = Self::node_list(&s);
        let pinned = c.constraints.iter().find_map(|c| c.strip_prefix("node.id=="));
        let node = nodes.iter().find(|n| Some(n.id.as_str()) == pinned).or(nodes.first());
        let info = ContainerInfo {
            id: id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            labels: c.labels.clone(),
            state: ContainerState::Running,
            health: Health::Healthy,
            addresses: BTreeMap::new(),
            exit_code: None,
            node: node.map(|n| n.hostname.clone()),
            update: Some(String::new()),
        };
        s.services.insert(c.name.clone(), (spec.clone(), info));
        Ok(id)
    }

    async fn update_service(&self, spec: &ServiceSpec) -> Result<()> {
        let c = &spec.container;
        self.call("update", &format!("{} {}", c.name, c.image))?;
        let mut s = self.lock();
        let Some((old, info)) = s.services.get_mut(&c.name) else {
            return Err(EngineError::NotFound { what: format!("service {}", c.name) });
        };
        let before = std::mem::replace(old, spec.clone());
        info.image = c.image.clone();
        info.labels = c.labels.clone();
        info.update = Some("completed".into());
        s.previous.insert(c.name.clone(), before);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<crate::placement::NodeInfo>> {
        let s = self.lock();
        if !s.swarm {
            return Err(EngineError::failed("list nodes", "not a swarm manager"));
        }
        let mut nodes = Self::node_list(&s);
        for n in &mut nodes {
            n.containers =
                s.services.values().filter(|(_, c)| c.node.as_deref() == Some(n.hostname.as_str())).count()
                    as u32;
        }
        Ok(nodes)
    }

    async fn remove_service(&self, name: &str) -> Result<()> {
        self.call("rm-service", name)?;
        self.lock().services.remove(name);
        Ok(())
    }

    async fn rollback_service(&self, name: &str) -> Result<Labels> {
        self.call("rollback-service", name)?;
        if !self.lock().previous.contains_key(name) {
            return Err(EngineError::failed(
                format!("roll back service {name}"),
                "service has no previous spec",
            ));
        }
        self.swarm_rolls_back(name);
        let mut s = self.lock();
        let Some((_, info)) = s.services.get_mut(name) else {
            return Err(EngineError::NotFound { what: format!("service {name}") });
        };
        info.update = Some("rollback_completed: manually requested rollback".into());
        Ok(info.labels.clone())
    }

    /// The digest is a hash of the image's id: one image pushed twice has one digest.
    async fn push(&self, reference: &str, repo: &str, tag: &str) -> Result<String> {
        self.call("push", &format!("{reference} {repo}:{tag}"))?;
        let id = self.lock().images.get(reference).map(|i| i.id.clone());
        let Some(id) = id else { return Err(EngineError::NotFound { what: format!("image {reference}") }) };
        self.tag(&id, repo, tag).await?;
        let digest = format!("{repo}@sha256:{}", hex::encode(sha2::Sha256::digest(id.as_bytes())));
        let mut s = self.lock();
        let image = s.images[reference].clone();
        s.images.insert(digest.clone(), image);
        Ok(digest)
    }
}

impl FakeEngine {
    fn name_of(&self, id: &str) -> Result<String> {
        let s = self.lock();
        s.containers
            .get(id)
            .map(|(_, c)| c.name.clone())
            .ok_or(EngineError::NotFound { what: format!("container {id}") })
    }
}
