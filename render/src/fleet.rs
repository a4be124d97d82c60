//! `fleet.yaml` → [`FleetFile`]: which containers the fleet runs, role by role, and how a
//! new version replaces them. It reads like a Compose file's `services:`:
//!
//! ```yaml
//! fleet: coins
//! image: coins            # images/coins, tagged coins:<version>
//! version: "1.0"
//! roles:
//!   datastore: {replicas: 1, volumes: [/var/lib/redis]}
//!   worker:    {version: "1.1", replicas: 2, update: {batch: 1, order: start-first}}
//!   lb:        {ports: ["127.0.0.1:8000:80"], resources: {cpus: 0.5, memory: 128M}}
//! ```
//!
//! A role's `placement` (constraints on node attributes, `spread` over node labels,
//! `max_per_node`) and `resources.reservations` are read and checked here; which node a
//! slot goes to is the fleet crate's (`fleet::placement`).
//!
//! A role runs `replicas` slots, `<fleet>-<role>-<n>` from 1: a slot's name is its
//! container's name and its minion's id, and that minion gets the role. Running the
//! containers is the fleet controller's; this module only reads and checks the file.

pub mod placement;
pub mod scalar;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::Value;

use crate::diag::{Diagnostic, finish, guard, lowercase_first};
use crate::locate::{At, Text};
use crate::path::{is_name, role_path};
use crate::state::describe;

pub use placement::{Constraint, Placement};

/// The fleet file, at the root of the config repository beside `roles/` and `states/`.
pub const FLEET_FILE: &str = "fleet.yaml";

/// The most replicas one role may have.
pub const MAX_REPLICAS: u32 = 1000;

/// The longest slot name: a slot's name is its minion's id, at most 64 characters.
const MAX_SLOT_NAME: usize = 64;

/// `fleet.yaml` as read. Only [`FleetFile::parse`] checks it; its serde form (the parsed
/// values, durations and batches spelled as in the file) is for storing and showing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetFile {
    /// `[a-z0-9][a-z0-9-]{0,30}`: prefixes every container, network and volume name.
    pub fleet: String,
    pub engine: EngineKind,
    /// The Docker network the containers join; the fleet's name unless given. Roles name it
    /// [`DEFAULT_NETWORK`].
    pub network: String,
    /// The fleet's extra networks (`networks:`), by the name roles use; each is the Docker
    /// network `<fleet>-<name>` ([`FleetFile::network_name`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Role name → how its containers run; every role has a `roles/<name>.yaml`.
    pub roles: BTreeMap<String, RoleSpec>,
    /// Where Swarm's nodes get the fleet's images (`registry:`; `engine: swarm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Registry>,
}

/// A registry the fleet's images go through on Swarm: drover pushes the image of each slot
/// it creates or updates there, and the slot's service names it by digest
/// (`127.0.0.1:5000/coins:1.0@sha256:…`), so every node pulls the same bytes and a tag
/// rebuilt or moved can never change what a service runs.
///
/// ```yaml
/// registry: 127.0.0.1:5000                          # one that runs already
/// registry: {address: 127.0.0.1:5000, role: registry}  # a role of this fleet runs it
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// `host:port`, as every node's engine reaches it (the master's engine pushes there, each
    /// node's pulls): `127.0.0.1:<port>` on one node (an engine trusts a registry on
    /// 127.0.0.0/8 without TLS); on several, the registry node's address, which each engine
    /// must trust (`insecure-registries`, or TLS).
    pub address: String,
    /// The role of this fleet that runs the registry: its slots run the image the master's
    /// engine has (nothing can be pulled before the registry runs), pinned to that engine's
    /// node, and it must publish the address's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Where the containers run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// One Docker engine, the master's.
    #[default]
    Local,
    /// Docker Swarm: each role a service.
    Swarm,
}

/// One role of the fleet. `Default` is what a role with no settings gets, without its image
/// and version (which come from the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleSpec {
    /// The image of `images/<image>`, run as `<image>:<version>`.
    pub image: String,
    /// The image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    pub version: String,
    /// At most [`MAX_REPLICAS`]; 0 runs none.
    pub replicas: u32,
    /// Absolute paths in the container; each slot has its own named volume for each.
    pub volumes: Vec<String>,
    pub ports: Vec<PortSpec>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub update: UpdatePolicy,
    /// Replace a container that dies (same slot, volumes and version).
    pub heal: bool,
    /// Extra DNS names of the role's containers on each of its networks.
    pub aliases: Vec<String>,
    /// The networks its containers join, by the names of `fleet.yaml`: [`DEFAULT_NETWORK`]
    /// (the fleet's network) and the fleet's `networks:`; `[default]` unless given. The
    /// first is where a container reaches the master.
    #[serde(default = "default_networks")]
    pub networks: Vec<String>,
    /// Which nodes its slots may run on, and how they spread (Swarm; checked against the one
    /// engine on `engine: local`).
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
}

impl Default for RoleSpec {
    fn default() -> Self {
        RoleSpec {
            image: String::new(),
            version: String::new(),
            replicas: 1,
            volumes: Vec::new(),
            ports: Vec::new(),
            env: BTreeMap::new(),
            resources: Resources::default(),
            update: UpdatePolicy::default(),
            heal: true,
            aliases: Vec::new(),
            networks: default_networks(),
            placement: Placement::default(),
        }
    }
}

/// How roles name the fleet's own network (`network:`, the fleet's name unless given).
pub const DEFAULT_NETWORK: &str = "default";

/// A role's networks when it names none: the fleet's network only.
fn default_networks() -> Vec<String> {
    vec![DEFAULT_NETWORK.to_string()]
}

/// A published port, Compose's short syntax: `80`, `8080:80`, `127.0.0.1:8080:80/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// `None`: every address of the host.
    pub host_ip: Option<IpAddr>,
    /// `None`: a free port the engine picks, one per container.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// Limits of each container; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPUs, such as 0.5.
    pub cpus: Option<f64>,
    /// Bytes (written `256M`, `1G`, `512k`, `1.5G` or a number of bytes).
    pub memory: Option<u64>,
    /// What each container is guaranteed: Swarm places a slot only on a node with this much
    /// not reserved yet; on one engine, a CPU share and a soft memory limit.
    #[serde(default, skip_serializing_if = "Reservations::is_empty")]
    pub reservations: Reservations,
}

/// CPUs and memory reserved for each container; `None`: nothing reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservations {
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
}

impl Reservations {
    pub fn is_empty(&self) -> bool {
        self.cpus.is_none() && self.memory.is_none()
    }
}

/// How a new version replaces a role's containers, batch by batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// Slots replaced at once.
    pub batch: BatchSize,
    pub order: Order,
    /// How long a new container must stay connected, converged and healthy for its batch
    /// to pass.
    #[serde(with = "duration_text")]
    pub min_healthy: Duration,
    /// How long a new container may take to get there before it counts as failed.
    #[serde(with = "duration_text")]
    pub health_timeout: Duration,
    /// The share of a rollout's slots that may fail before `on_failure` applies, 0 to 1.
    pub max_failure_ratio: f64,
    pub on_failure: OnFailure,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            batch: BatchSize::Count(1),
            order: Order::StopFirst,
            min_healthy: Duration::from_secs(3),
            health_timeout: Duration::from_secs(60),
            max_failure_ratio: 0.0,
            on_failure: OnFailure::Rollback,
        }
    }
}

/// `batch: 2` (slots) or `batch: 25%` (of the replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchSize {
    Count(u32),
    Percent(u32),
}

impl BatchSize {
    /// The slots of one batch for a role of `replicas`: at least 1, at most `replicas` (so 0
    /// for none); a share is rounded down.
    pub fn slots(&self, replicas: u32) -> u32 {
        let wanted = match *self {
            BatchSize::Count(n) => n,
            BatchSize::Percent(p) => (u64::from(replicas) * u64::from(p) / 100) as u32,
        };
        wanted.max(1).min(replicas)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// The old container stops, then the new one starts: the slot is down in between.
    #[default]
    StopFirst,
    /// The new container starts beside the old one, which stops once the new one is healthy.
    StartFirst,
}

/// What a rollout does when too many slots fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Put the replaced slots back on the old version, and stop.
    #[default]
    Rollback,
    /// Stop where it is, for a person to look.
    Pause,
    /// Go on with the next batch.
    Continue,
}

impl FleetFile {
    /// Parse and check the text of `fleet.yaml`; `known_role(name)` tells whether
    /// `roles/<name>.yaml` exists at the same commit. Every problem is reported, or none.
    pub fn parse(text: &str, known_role: impl Fn(&str) -> bool) -> Result<FleetFile, Vec<Diagnostic>> {
        let located = Text::plain(FLEET_FILE, text);
        let mut value = guard(FLEET_FILE, "parsing", || serde_yaml::from_str::<Value>(text))
            .map_err(|d| vec![d])?
            .map_err(|e| vec![located.yaml_error(&e)])?;
        if let Err(e) = value.apply_merge() {
            let message = lowercase_first(&e.to_string());
            let (line, col) = located.find_text(0, located.len(), "<<").unwrap_or((0, 0));
            return Err(vec![
                located.at(line, col).diag(format!("{message}; expected `<<: *name` to merge a map")),
            ]);
        }
        let mut reader = Reader { text: located, diags: Vec::new() };
        let fleet = reader.file(&value, &known_role);
        finish(fleet, reader.diags)
    }

    /// The Docker network of the network roles call `name`: [`DEFAULT_NETWORK`] is the
    /// fleet's `network`, any other `<fleet>-<name>`.
    pub fn network_name(&self, name: &str) -> String {
        if name == DEFAULT_NETWORK { self.network.clone() } else { format!("{}-{name}", self.fleet) }
    }

    /// `<fleet>-<role>-<n>`, `n` from 1: the container's name and its minion's id.
    pub fn slot_name(&self, role: &str, n: u32) -> String {
        format!("{}-{role}-{n}", self.fleet)
    }

    /// The role and number of the slot named `id`: `id == slot_name(role, n)` for a role of
    /// this file and `n >= 1` written without leading zeros. `n` is not checked against
    /// `replicas`: a slot left over after scaling down is still of its role.
    pub fn slot_of(&self, id: &str) -> Option<(&str, u32)> {
        let rest = id.strip_prefix(self.fleet.as_str())?.strip_prefix('-')?;
        let (role, n) = rest.rsplit_once('-')?;
        if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = n.parse().ok()?;
        let (role, _) = self.roles.get_key_value(role)?;
        Some((role.as_str(), n))
    }
}

impl fmt::Display for PortSpec {
    /// The short syntax it was read from (`/tcp` left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match (self.host_port, self.host_ip) {
            (Some(port), _) => write!(f, "{port}:")?,
            (None, Some(_)) => write!(f, ":")?,
            (None, None) => {}
        }
        write!(f, "{}", self.container_port)?;
        if self.protocol == Protocol::Udp {
            write!(f, "/udp")?;
        }
        Ok(())
    }
}

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        scalar::port(s)
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSize::Count(n) => write!(f, "{n}"),
            BatchSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for BatchSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        scalar::batch(s)
    }
}

/// As written in the file: a number of slots, or a `"25%"` string.
impl Serialize for BatchSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BatchSize::Count(n) => s.serialize_u32(*n),
            BatchSize::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(u32),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Count(n) => n.to_string(),
            Written::Text(text) => text,
        };
        scalar::batch(&text).map_err(serde::de::Error::custom)
    }
}

/// Durations as written in the file: `"3s"`, `"500ms"`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};
    use serde_yaml::Value;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::scalar::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let written = Value::deserialize(d)?;
        crate::args::duration_ms(&written).map(Duration::from_millis).map_err(serde::de::Error::custom)
    }
}

const TOP_KEYS: &[&str] =
    &["fleet", "engine", "network", "networks", "image", "version", "roles", "registry"];
const REGISTRY_KEYS: &[&str] = &["address", "role"];
const ROLE_KEYS: &[&str] = &[
    "image",
    "version",
    "replicas",
    "volumes",
    "ports",
    "env",
    "resources",
    "update",
    "heal",
    "aliases",
    "networks",
    "placement",
];
const RESOURCE_KEYS: &[&str] = &["cpus", "memory", "reservations"];
const RESERVATION_KEYS: &[&str] = &["cpus", "memory"];
const PLACEMENT_KEYS: &[&str] = &["constraints", "spread", "max_per_node"];
const UPDATE_KEYS: &[&str] =
    &["batch", "order", "min_healthy", "health_timeout", "max_failure_ratio", "on_failure"];

/// A key as read: its name, where it is written, and its path for messages
/// (`roles.worker.update`).
struct Key {
    name: String,
    path: String,
    at: At,
}

/// A top-level `image:` or `version:` that roles fall back on.
enum Shared {
    Absent,
    /// Given but wrong (already reported).
    Broken,
    Given(String),
}

/// What the checks across roles need of one role.
struct Placed {
    name: String,
    at: At,
    replicas: u32,
    ports: Vec<(PortSpec, At)>,
    volumes: Vec<String>,
    /// Where `order: start-first` is written.
    start_first: Option<At>,
    aliases: Vec<(String, At)>,
    /// Each network the role lists, with where it is written.
    networks: Vec<(String, At)>,
    /// Where `max_per_node` is written, with its value.
    max_per_node: Option<(u32, At)>,
    /// Each constraint with where it is written.
    constraints: Vec<(Constraint, At)>,
}

struct Reader<'a> {
    text: Text<'a>,
    diags: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn report(&mut self, at: At, path: &str, message: impl fmt::Display) {
        let message = if path.is_empty() { message.to_string() } else { format!("{path}: {message}") };
        self.diags.push(self.text.at(at.0, at.1).diag(message));
    }

    /// `result`, or its error reported at the value of `key`.
    fn check<T>(&mut self, key: &Key, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.report(self.text.value_at(key.at), &key.path, message);
                None
            }
        }
    }

    /// Reports that the value of `key` is not what `expected` says.
    fn wrong_type(&mut self, key: &Key, value: &Value, expected: &str) {
        self.report(
            self.text.value_at(key.at),
            &key.path,
            format!("expected {expected}, got {}", describe(value)),
        );
    }

    /// The entries of the map `value`, the value of `parent` (`None`: the file), each with
    /// its key. Keys not in `allowed` (when given) are reported, and so is a value that is
    /// not a map; nothing (`key:` alone) is an empty map.
    fn map<'v>(
        &mut self,
        value: &'v Value,
        parent: Option<&Key>,
        allowed: Option<&[&str]>,
        example: &str,
    ) -> Vec<(Key, &'v Value)> {
        let (path, parent_at) = parent.map_or(("", None), |k| (k.path.as_str(), Some(k.at)));
        let here = parent_at.map_or((0, 0), |at| self.text.value_at(at));
        let map = match value {
            Value::Null => return Vec::new(),
            Value::Mapping(map) => map,
            other => {
                self.report(here, path, format!("expected a map such as {example}, got {}", describe(other)));
                return Vec::new();
            }
        };
        let mut entries = Vec::new();
        for (key, value) in map {
            let Value::String(name) = key else {
                self.report(
                    here,
                    path,
                    format!("expected names as keys, such as {example}, got {}", describe(key)),
                );
                continue;
            };
            if parent.is_none() && name.starts_with("x-") {
                continue; // an extension key, as in Compose: a place for anchors
            }
            let at = self.text.child_key(parent_at, name).unwrap_or(here);
            let key = Key { name: name.clone(), path: join(path, name), at };
            if let Some(allowed) = allowed
                && !allowed.contains(&name.as_str())
            {
                let list = allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                let extension = if parent.is_none() { " (or an extension key `x-...`, ignored)" } else { "" };
                self.report(at, path, format!("unknown key `{name}`; expected one of {list}{extension}"));
                continue;
            }
            entries.push((key, value));
        }
        entries
    }

    /// The items of the list `value`, each at its position (the value's when the items
    /// cannot be told apart in the text).
    fn list<'v>(&mut self, key: &Key, value: &'v Value, example: &str) -> Vec<(At, &'v Value)> {
        let items = match value {
            Value::Null => return Vec::new(),
            Value::Sequence(items) => items,
            other => {
                self.wrong_type(key, other, &format!("a list such as {example}"));
                return Vec::new();
            }
        };
        let found = self.text.items(key.at);
        let here = self.text.value_at(key.at);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| (if found.len() == items.len() { found[i] } else { here }, item))
            .collect()
    }

    fn string<'v>(&mut self, key: &Key, value: &'v Value, example: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                let quote =
                    if matches!(other, Value::Number(_) | Value::Bool(_)) { "; quote it" } else { "" };
                let message = format!("expected a string such as {example}, got {}{quote}", describe(other));
                self.report(self.text.value_at(key.at), &key.path, message);
                None
            }
        }
    }

    /// A string that `grammar` accepts (a fleet, network or image name).
    fn name(&mut self, key: &Key, value: &Value, grammar: fn(&str) -> Result<(), String>) -> Option<String> {
        let name = self.string(key, value, "`coins`")?;
        self.check(key, grammar(name).map(|()| name.to_string()))
    }

    fn choice<T: Copy>(&mut self, key: &Key, value: &Value, choices: &[(&str, T)]) -> Option<T> {
        let names = match choices.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().as_slice() {
            [rest @ .., last] if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            all => all.join(""),
        };
        match value {
            Value::String(s) => {
                let found = choices.iter().find(|(n, _)| n == s).map(|(_, v)| *v);
                self.check(key, found.ok_or_else(|| format!("expected {names}, got `{s}`")))
            }
            other => {
                self.wrong_type(key, other, &names);
                None
            }
        }
    }

    fn whole(&mut self, key: &Key, value: &Value, max: u64) -> Option<u64> {
        let expected = format!("a whole number from 0 to {max}");
        match value {
            Value::Number(n) => {
                let found = n.as_u64().filter(|n| *n <= max);
                self.check(key, found.ok_or_else(|| format!("expected {expected}, got {n}")))
            }
            other => {
                self.wrong_type(key, other, &expected);
                None
            }
        }
    }

    /// A version: a string, never a YAML number (YAML reads `1.10` as 1.1).
    fn version(&mut self, key: &Key, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => self.check(key, scalar::tag(s).map(|()| s.clone())),
            Value::Number(n) => {
                let at = self.text.value_at(key.at);
                let raw = self.text.scalar_at(at);
                let written = if serde_yaml::from_str::<Value>(raw).ok().as_ref() == Some(value) {
                    raw.to_string()
                } else {
                    n.to_string()
                };
                self.report(
                    at,
                    &key.path,
                    format!(
                        "expected a version string, got the number {written}; quote it: \"{written}\" \
                         (a version is text: YAML reads 1.10 as the number 1.1)"
                    ),
                );
                None
            }
            other => {
                self.wrong_type(key, other, "a version string such as \"1.0\"");
                None
            }
        }
    }

    /// A top-level `image:` or `version:`.
    fn shared(value: Option<String>) -> Shared {
        value.map_or(Shared::Broken, Shared::Given)
    }

    fn file(&mut self, value: &Value, known_role: &dyn Fn(&str) -> bool) -> FleetFile {
        if !matches!(value, Value::Mapping(_)) {
            let start = self.text.start();
            self.diags.push(start.diag(format!(
                "expected a map with `fleet:` and `roles:`, such as `fleet: coins`, got {}",
                describe(value)
            )));
            return FleetFile {
                fleet: String::new(),
                engine: EngineKind::Local,
                network: String::new(),
                networks: Vec::new(),
                roles: BTreeMap::new(),
                registry: None,
            };
        }
        let (mut fleet, mut network, mut engine) = (None, None, EngineKind::Local);
        let (mut image, mut version) = (Shared::Absent, Shared::Absent);
        let mut roles = None;
        let mut networks = Vec::new();
        let mut registry = None;
        for (key, value) in self.map(value, None, Some(TOP_KEYS), "`fleet: coins`") {
            match key.name.as_str() {
                "fleet" => {
                    fleet = self.name(&key, value, scalar::fleet_name);
                    if fleet.is_none() {
                        fleet = Some(String::new()); // reported
                    }
                }
                "engine" => {
                    engine = self
                        .choice(&key, value, &[("local", EngineKind::Local), ("swarm", EngineKind::Swarm)])
                        .unwrap_or_default();
                }
                "network" => {
                    network = self.name(&key, value, scalar::network_name);
                }
                "networks" => networks = self.fleet_networks(&key, value),
                "image" => {
                    let found = self.name(&key, value, scalar::image_name);
                    image = Self::shared(found);
                }
                "version" => version = Self::shared(self.version(&key, value)),
                "roles" => roles = Some((key, value)),
                "registry" => registry = self.registry(&key, value),
                _ => {}
            }
        }
        let fleet = fleet.unwrap_or_else(|| {
            let start = self.text.start();
            self.diags.push(start.diag("no `fleet:`; expected the fleet's name, such as `fleet: coins`"));
            String::new()
        });
        let mut placed = Vec::new();
        let mut specs = BTreeMap::new();
        if let Some((key, value)) = roles {
            for (role_key, body) in self.map(value, Some(&key), None, "`worker: {replicas: 2}`") {
                let name = role_key.name.clone();
                if !is_name(&name) || name == "top" {
                    let message = format!(
                        "`{name}` cannot be a role name: expected letters, digits, `_` and `-` \
                         (and not `top`)"
                    );
                    self.report(role_key.at, "roles", message);
                } else if !known_role(&name) {
                    let file = role_path(&name);
                    let message = format!(
                        "no file {file}; expected that file (a role of the fleet is a role: its \
                         states and pillar)"
                    );
                    self.report(role_key.at, &role_key.path, message);
                }
                let (spec, place) = self.role(&role_key, body, &image, &version);
                specs.insert(name, spec);
                placed.push(place);
            }
        }
        self.across(&fleet, &placed);
        self.role_networks(&networks, &placed);
        if engine == EngineKind::Swarm {
            self.on_swarm(&placed);
        } else {
            self.on_local(&placed);
        }
        let network = network.unwrap_or_else(|| fleet.clone());
        for (name, at) in &networks {
            let docker = format!("{fleet}-{name}");
            if docker == network {
                let message = format!(
                    "the network `{name}` would be the Docker network {docker}, which is already the \
                     fleet's own (`network:`); expected another name"
                );
                self.report(*at, "networks", message);
            }
        }
        if let Some(read) = &registry {
            self.registry_fits(read, engine, &placed);
        }
        let networks = networks.into_iter().map(|(name, _)| name).collect();
        let registry = registry.map(|(r, ..)| r);
        FleetFile { fleet, engine, network, networks, roles: specs, registry }
    }

    /// `registry: HOST:PORT` or `registry: {address: HOST:PORT, role: NAME}`, with where it
    /// is written and where its role is.
    fn registry(&mut self, key: &Key, value: &Value) -> Option<(Registry, At, Option<At>)> {
        let at = self.text.value_at(key.at);
        const EXAMPLE: &str = "`127.0.0.1:5000` or `{address: 127.0.0.1:5000, role: registry}`";
        if let Value::String(address) = value {
            let address = self.check(key, scalar::registry_address(address).map(|()| address.clone()))?;
            return Some((Registry { address, role: None }, at, None));
        }
        if !matches!(value, Value::Mapping(_)) {
            self.wrong_type(key, value, &format!("a registry's address or a map, such as {EXAMPLE}"));
            return None;
        }
        let (mut address, mut role) = (None, None);
        for (k, v) in self.map(value, Some(key), Some(REGISTRY_KEYS), EXAMPLE) {
            match k.name.as_str() {
                "address" => {
                    let text = self.string(&k, v, "`127.0.0.1:5000`")?;
                    address = self.check(&k, scalar::registry_address(text).map(|()| text.to_string()));
                    address.as_ref()?;
                }
                "role" => {
                    role = Some((self.string(&k, v, "`registry`")?.to_string(), self.text.value_at(k.at)));
                }
                _ => {}
            }
        }
        let Some(address) = address else {
            self.report(
                at,
                &key.path,
                format!("no `address:`; expected the registry's HOST:PORT, such as {EXAMPLE}"),
            );
            return None;
        };
        let role_at = role.as_ref().map(|(_, role_at)| *role_at);
        Some((Registry { address, role: role.map(|(name, _)| name) }, at, role_at))
    }

    /// A registry is for Swarm, and the role that runs it is one of the fleet's, publishing
    /// the address's port.
    fn registry_fits(
        &mut self,
        (registry, at, role_at): &(Registry, At, Option<At>),
        engine: EngineKind,
        placed: &[Placed],
    ) {
        if engine != EngineKind::Swarm {
            self.report(
                *at,
                "registry",
                "a registry carries images to Swarm's nodes, and this fleet runs on one engine, which \
                 has them already; expected `engine: swarm`, or no `registry:`",
            );
        }
        let (Some(name), Some(role_at)) = (&registry.role, *role_at) else { return };
        let Some(role) = placed.iter().find(|r| &r.name == name) else {
            let roles = placed.iter().map(|r| format!("`{}`", r.name)).collect::<Vec<_>>().join(", ");
            self.report(
                role_at,
                "registry.role",
                format!("`{name}` is not a role of the fleet; expected one of {roles}, or no `role:` for a registry that runs already"),
            );
            return;
        };
        let port = registry.address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        if !role.ports.iter().any(|(p, _)| p.host_port.is_some() && p.host_port == port) {
            let port = port.unwrap_or_default();
            self.report(
                role_at,
                "registry.role",
                format!(
                    "role {name} publishes no port {port}, so nothing answers at {}; expected \
                     `ports: [\"{port}:5000\"]` on it (the registry's port in its container)",
                    registry.address
                ),
            );
        }
    }

    fn role(&mut self, key: &Key, body: &Value, image: &Shared, version: &Shared) -> (RoleSpec, Placed) {
        let mut spec = RoleSpec::default();
        let mut placed = Placed {
            name: key.name.clone(),
            at: key.at,
            replicas: 1,
            ports: Vec::new(),
            volumes: Vec::new(),
            start_first: None,
            aliases: Vec::new(),
            networks: Vec::new(),
            max_per_node: None,
            constraints: Vec::new(),
        };
        let (mut own_image, mut own_version) = (None, None);
        for (key, value) in self.map(body, Some(key), Some(ROLE_KEYS), "`{replicas: 2}`") {
            match key.name.as_str() {
                "image" => {
                    let found = self.name(&key, value, scalar::image_name);
                    own_image = Some(found.unwrap_or_default());
                }
                "version" => own_version = Some(self.version(&key, value).unwrap_or_default()),
                "replicas" => {
                    spec.replicas = self.whole(&key, value, u64::from(MAX_REPLICAS)).map_or(1, |n| n as u32);
                }
                "volumes" => spec.volumes = self.volumes(&key, value),
                "ports" => {
                    placed.ports = self.ports(&key, value);
                    spec.ports = placed.ports.iter().map(|(port, _)| *port).collect();
                }
                "env" => self.env(&key, value, &mut spec.env),
                "resources" => spec.resources = self.resources(&key, value),
                "update" => {
                    let (update, start_first) = self.update(&key, value);
                    spec.update = update;
                    placed.start_first = start_first;
                }
                "heal" => match value {
                    Value::Bool(b) => spec.heal = *b,
                    other => self.wrong_type(&key, other, "true or false"),
                },
                "aliases" => {
                    placed.aliases = self.aliases(&key, value);
                    spec.aliases = placed.aliases.iter().map(|(alias, _)| alias.clone()).collect();
                }
                "networks" => {
                    if matches!(value, Value::Null) || matches!(value, Value::Sequence(s) if s.is_empty()) {
                        let message = format!(
                            "expected at least one network, such as [{DEFAULT_NETWORK}, data] (a container \
                             on none could not reach the master); leave `networks:` out for [{DEFAULT_NETWORK}]"
                        );
                        self.report(self.text.value_at(key.at), &key.path, message);
                    }
                    placed.networks = self.network_list(&key, value, true);
                    if !placed.networks.is_empty() {
                        spec.networks = placed.networks.iter().map(|(n, _)| n.clone()).collect();
                    }
                }
                "placement" => {
                    spec.placement = self.placement(&key, value, &mut placed);
                }
                _ => {}
            }
        }
        match (own_image, image) {
            (Some(own), _) => spec.image = own,
            (None, Shared::Given(shared)) => spec.image = shared.clone(),
            (None, Shared::Broken) => {}
            (None, Shared::Absent) => self.report(
                key.at,
                &key.path,
                "no image; expected `image:` in the role or at the top of the file, such as `image: coins`",
            ),
        }
        match (own_version, version) {
            (Some(own), _) => spec.version = own,
            (None, Shared::Given(shared)) => spec.version = shared.clone(),
            (None, Shared::Broken) => {}
            (None, Shared::Absent) => self.report(
                key.at,
                &key.path,
                "no version; expected `version:` in the role or at the top of the file, such as \
                 `version: \"1.0\"`",
            ),
        }
        placed.replicas = spec.replicas;
        placed.volumes = spec.volumes.clone();
        (spec, placed)
    }

    fn volumes(&mut self, key: &Key, value: &Value) -> Vec<String> {
        let mut volumes: Vec<String> = Vec::new();
        for (at, item) in self.list(key, value, "[/var/lib/redis]") {
            let Value::String(path) = item else {
                let message = format!("expected a path such as /var/lib/redis, got {}", describe(item));
                self.report(at, &key.path, message);
                continue;
            };
            if let Err(message) = scalar::volume_path(path) {
                self.report(at, &key.path, message);
            } else if volumes.contains(path) {
                self.report(at, &key.path, format!("`{path}` is listed twice; expected each path once"));
            } else {
                volumes.push(path.clone());
            }
        }
        volumes
    }

    /// Each port with where it is written.
    fn ports(&mut self, key: &Key, value: &Value) -> Vec<(PortSpec, At)> {
        let mut ports = Vec::new();
        for (at, item) in self.list(key, value, "[\"8080:80\"]") {
            let text = match item {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_u64() => n.to_string(),
                other => {
                    let message = format!("expected a port such as \"8080:80\", got {}", describe(other));
                    self.report(at, &key.path, message);
                    continue;
                }
            };
            match scalar::port(&text) {
                Ok(port) => ports.push((port, at)),
                Err(message) => self.report(at, &key.path, message),
            }
        }
        ports
    }

    /// Each alias with where it is written.
    fn aliases(&mut self, key: &Key, value: &Value) -> Vec<(String, At)> {
        let mut aliases: Vec<(String, At)> = Vec::new();
        for (at, item) in self.list(key, value, "[cache]") {
            let Value::String(alias) = item else {
                let message = format!("expected a DNS name such as `cache`, got {}", describe(item));
                self.report(at, &key.path, message);
                continue;
            };
            if let Err(message) = scalar::dns_name(alias) {
                self.report(at, &key.path, message);
            } else if aliases.iter().any(|(a, _)| a == alias) {
                self.report(at, &key.path, format!("`{alias}` is listed twice; expected each alias once"));
            } else {
                aliases.push((alias.clone(), at));
            }
        }
        aliases
    }

    /// The top-level `networks: [data, front]`: each name with where it is written.
    fn fleet_networks(&mut self, key: &Key, value: &Value) -> Vec<(String, At)> {
        let names = self.network_list(key, value, false);
        for (name, at) in &names {
            if name == DEFAULT_NETWORK {
                let message = format!(
                    "`{DEFAULT_NETWORK}` is the fleet's own network, there without being listed; expected \
                     the names of extra networks, such as `data`"
                );
                self.report(*at, &key.path, message);
            }
        }
        names.into_iter().filter(|(name, _)| name != DEFAULT_NETWORK).collect()
    }

    /// A list of network names (`[a-z0-9][a-z0-9_-]*`, at most 32), each once, with where
    /// each is written; `role`: a role's list (in the messages' example).
    fn network_list(&mut self, key: &Key, value: &Value, role: bool) -> Vec<(String, At)> {
        let example = if role { "[default, data]" } else { "[data]" };
        let mut names: Vec<(String, At)> = Vec::new();
        for (at, item) in self.list(key, value, example) {
            let Value::String(name) = item else {
                let message = format!("expected a network name such as `data`, got {}", describe(item));
                self.report(at, &key.path, message);
                continue;
            };
            let ok = name.len() <= 32
                && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
            if !ok {
                let message = format!(
                    "`{name}` cannot be a network name: expected at most 32 lowercase letters, digits, `_` \
                     and `-`, starting with a letter or digit, such as `data`"
                );
                self.report(at, &key.path, message);
            } else if names.iter().any(|(n, _)| n == name) {
                self.report(at, &key.path, format!("`{name}` is listed twice; expected each network once"));
            } else {
                names.push((name.clone(), at));
            }
        }
        names
    }

    /// Every network a role lists is `default` or one of the fleet's `networks:`.
    fn role_networks(&mut self, fleet_networks: &[(String, At)], placed: &[Placed]) {
        for role in placed {
            for (name, at) in &role.networks {
                if name != DEFAULT_NETWORK && !fleet_networks.iter().any(|(n, _)| n == name) {
                    let defined = fleet_networks.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>();
                    let defined = if defined.is_empty() {
                        "the fleet defines none".to_string()
                    } else {
                        format!("the fleet's are {}", defined.join(", "))
                    };
                    let message = format!(
                        "no network `{name}`; expected `{DEFAULT_NETWORK}` or a network of the top-level \
                         `networks:` ({defined}); add it there, such as `networks: [{name}]`"
                    );
                    self.report(*at, &format!("roles.{}.networks", role.name), message);
                }
            }
        }
    }

    fn env(&mut self, key: &Key, value: &Value, env: &mut BTreeMap<String, String>) {
        for (var, value) in self.map(value, Some(key), None, "`{LOG_LEVEL: debug}`") {
            let name = &var.name;
            if name.is_empty() {
                self.report(var.at, &key.path, "expected a variable name, got an empty one");
                continue;
            }
            if name.contains(['=', '\0']) {
                self.report(
                    var.at,
                    &key.path,
                    format!(
                        "`{}` cannot be a variable name: expected a name without `=`",
                        name.escape_debug()
                    ),
                );
                continue;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => {
                    // as written: `1.10` stays "1.10", `0x10` stays "0x10"
                    let raw = self.text.scalar_at(self.text.value_at(var.at));
                    if serde_yaml::from_str::<Value>(raw).ok().as_ref() == Some(value) {
                        raw.to_string()
                    } else {
                        n.to_string()
                    }
                }
                other => {
                    let hint = if other.is_null() { "; write \"\" for an empty value" } else { "" };
                    let message =
                        format!("expected a string, a number or true/false, got {}{hint}", describe(other));
                    self.report(self.text.value_at(var.at), &var.path, message);
                    continue;
                }
            };
            if text.contains('\0') {
                self.report(
                    self.text.value_at(var.at),
                    &var.path,
                    "expected a value without a NUL character",
                );
                continue;
            }
            env.insert(name.clone(), text);
        }
    }

    fn resources(&mut self, key: &Key, value: &Value) -> Resources {
        let mut resources = Resources::default();
        let example = "`{cpus: 0.5, memory: 256M, reservations: {cpus: 0.25, memory: 128M}}`";
        let mut reservations_at = None;
        for (key, value) in self.map(value, Some(key), Some(RESOURCE_KEYS), example) {
            match key.name.as_str() {
                "cpus" => resources.cpus = self.cpus(&key, value),
                "memory" => resources.memory = self.memory(&key, value),
                "reservations" => {
                    let example = "`{cpus: 0.25, memory: 128M}`";
                    for (key, value) in self.map(value, Some(&key), Some(RESERVATION_KEYS), example) {
                        if key.name == "cpus" {
                            resources.reservations.cpus = self.cpus(&key, value);
                        } else {
                            resources.reservations.memory = self.memory(&key, value);
                        }
                    }
                    reservations_at = Some(key);
                }
                _ => {}
            }
        }
        if let Some(key) = reservations_at {
            let r = resources.reservations;
            if let (Some(reserved), Some(limit)) = (r.cpus, resources.cpus)
                && reserved > limit
            {
                let message = format!(
                    "reserves {reserved} CPUs, above the limit of {limit}; expected a reservation at most the limit"
                );
                self.report(self.text.value_at(key.at), &key.path, message);
            }
            if let (Some(reserved), Some(limit)) = (r.memory, resources.memory)
                && reserved > limit
            {
                let message = format!(
                    "reserves {} of memory, above the limit of {}; expected a reservation at most the limit",
                    scalar::size_text(reserved),
                    scalar::size_text(limit)
                );
                self.report(self.text.value_at(key.at), &key.path, message);
            }
        }
        resources
    }

    fn cpus(&mut self, key: &Key, value: &Value) -> Option<f64> {
        let cpus = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        let cpus = cpus.filter(|c| c.is_finite() && *c > 0.0);
        self.check(
            key,
            cpus.ok_or_else(|| {
                format!("expected a number of CPUs above 0, such as 0.5, got {}", shown(value))
            }),
        )
    }

    fn memory(&mut self, key: &Key, value: &Value) -> Option<u64> {
        let text = match value {
            Value::Number(n) if n.is_u64() => n.to_string(),
            Value::String(s) => s.clone(),
            other => {
                self.wrong_type(key, other, "a size such as 256M");
                return None;
            }
        };
        self.check(key, scalar::memory(&text))
    }

    /// `placement: {constraints: [...], spread: [...], max_per_node: N}`.
    /// Where each constraint and `max_per_node` are written goes into `placed`.
    fn placement(&mut self, key: &Key, value: &Value, placed: &mut Placed) -> Placement {
        let mut placement = Placement::default();
        let example =
            "`{constraints: [\"node.labels.zone==a\"], spread: [node.labels.zone], max_per_node: 1}`";
        for (key, value) in self.map(value, Some(key), Some(PLACEMENT_KEYS), example) {
            match key.name.as_str() {
                "constraints" => {
                    for (at, item) in self.list(&key, value, "[\"node.labels.zone==a\"]") {
                        let Value::String(text) = item else {
                            let message = format!(
                                "expected a constraint such as \"node.labels.zone==a\", got {}",
                                describe(item)
                            );
                            self.report(at, &key.path, message);
                            continue;
                        };
                        match text.parse::<Constraint>() {
                            Ok(c) if placement.constraints.contains(&c) => self.report(
                                at,
                                &key.path,
                                format!("`{c}` is listed twice; expected each once"),
                            ),
                            Ok(c) => {
                                placed.constraints.push((c.clone(), at));
                                placement.constraints.push(c);
                            }
                            Err(message) => self.report(at, &key.path, message),
                        }
                    }
                }
                "spread" => {
                    for (at, item) in self.list(&key, value, "[node.labels.zone]") {
                        let Value::String(text) = item else {
                            let message = format!(
                                "expected a node label such as node.labels.zone, got {}",
                                describe(item)
                            );
                            self.report(at, &key.path, message);
                            continue;
                        };
                        match placement::spread_label(text) {
                            Ok(_) if placement.spread.contains(text) => self.report(
                                at,
                                &key.path,
                                format!("`{text}` is listed twice; expected each once"),
                            ),
                            Ok(_) => placement.spread.push(text.clone()),
                            Err(message) => self.report(at, &key.path, message),
                        }
                    }
                }
                "max_per_node" => {
                    let n = self.whole(&key, value, u64::from(MAX_REPLICAS));
                    match n {
                        Some(0) => self.report(
                            self.text.value_at(key.at),
                            &key.path,
                            "expected at least 1 (0 would place no slot anywhere; use `replicas: 0`)",
                        ),
                        Some(n) => {
                            placement.max_per_node = Some(n as u32);
                            placed.max_per_node = Some((n as u32, self.text.value_at(key.at)));
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
        placement
    }

    /// The policy, and where `order: start-first` is written if it is.
    fn update(&mut self, key: &Key, value: &Value) -> (UpdatePolicy, Option<At>) {
        let mut update = UpdatePolicy::default();
        let mut start_first = None;
        let example = "`{batch: 1, order: start-first}`";
        for (key, value) in self.map(value, Some(key), Some(UPDATE_KEYS), example) {
            match key.name.as_str() {
                "batch" => {
                    let text = match value {
                        Value::Number(n) => n.to_string(),
                        Value::String(s) => s.clone(),
                        other => {
                            self.wrong_type(
                                &key,
                                other,
                                "a number of slots such as 2, or a share such as \"25%\"",
                            );
                            continue;
                        }
                    };
                    update.batch = self.check(&key, scalar::batch(&text)).unwrap_or(update.batch);
                }
                "order" => {
                    let choices = [("stop-first", Order::StopFirst), ("start-first", Order::StartFirst)];
                    update.order = self.choice(&key, value, &choices).unwrap_or_default();
                    if update.order == Order::StartFirst {
                        start_first = Some(self.text.value_at(key.at));
                    }
                }
                "min_healthy" | "health_timeout" => {
                    let parsed = crate::args::duration_ms(value).map(Duration::from_millis).and_then(|d| {
                        if key.name == "health_timeout" && d.is_zero() {
                            Err("expected a duration above 0, such as \"60s\"".to_string())
                        } else {
                            Ok(d)
                        }
                    });
                    if let Some(d) = self.check(&key, parsed) {
                        if key.name == "min_healthy" {
                            update.min_healthy = d;
                        } else {
                            update.health_timeout = d;
                        }
                    }
                }
                "max_failure_ratio" => {
                    let ratio = value.as_f64().filter(|r| (0.0..=1.0).contains(r));
                    update.max_failure_ratio = self
                        .check(
                            &key,
                            ratio.ok_or_else(|| {
                                format!("expected a number from 0 to 1, such as 0.25, got {}", shown(value))
                            }),
                        )
                        .unwrap_or_default();
                }
                "on_failure" => {
                    let choices = [
                        ("rollback", OnFailure::Rollback),
                        ("pause", OnFailure::Pause),
                        ("continue", OnFailure::Continue),
                    ];
                    update.on_failure = self.choice(&key, value, &choices).unwrap_or_default();
                }
                _ => {}
            }
        }
        (update, start_first)
    }

    /// What no role can tell alone: host ports published twice, fixed host ports on many
    /// replicas, start-first with volumes or fixed host ports, aliases another role answers
    /// to, slot names too long.
    fn across(&mut self, fleet: &str, placed: &[Placed]) {
        let mut published = Vec::new();
        for (i, role) in placed.iter().enumerate() {
            self.host_ports(role, &mut published);
            self.start_first(role);
            self.aliases_taken(role, &placed[..i], placed);
            self.slot_names(fleet, role);
        }
    }

    /// What Swarm cannot honour: it publishes a port on every address of the node a task
    /// runs on, so a host address on a port cannot be kept.
    fn on_swarm(&mut self, placed: &[Placed]) {
        for role in placed {
            let path = format!("roles.{}.ports", role.name);
            for &(port, at) in role.ports.iter().filter(|(port, _)| port.host_ip.is_some()) {
                let message = format!(
                    "`{port}` binds host address {}, which Swarm cannot honour: it publishes a port on every \
                     address of the task's node; expected no address on a fleet with `engine: swarm` (\"{}\")",
                    port.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    PortSpec { host_ip: None, ..port }
                );
                self.report(at, &path, message);
            }
        }
    }

    /// What one engine cannot honour: it is the only node, and has no node labels (they are
    /// Swarm's). Constraints on its hostname, role or engine labels are checked at `up`.
    fn on_local(&mut self, placed: &[Placed]) {
        for role in placed {
            let path = format!("roles.{}.placement", role.name);
            if let Some((max, at)) = role.max_per_node
                && role.replicas > max
            {
                let message = format!(
                    "at most {max} per node, but the role has {} replicas and `engine: local` is one node; \
                     expected max_per_node of at least the replicas, fewer replicas, or `engine: swarm`",
                    role.replicas
                );
                self.report(at, &format!("{path}.max_per_node"), message);
            }
            for (c, at) in &role.constraints {
                if c.equal && c.attribute.starts_with("node.labels.") {
                    let message = format!(
                        "`{c}` cannot hold on `engine: local`: the one engine has no node labels (they are \
                         Swarm's); expected no such constraint there, or `engine: swarm`"
                    );
                    self.report(*at, &format!("{path}.constraints"), message);
                }
            }
        }
    }

    /// A fixed host port binds one container: not on many replicas, not twice in the fleet.
    fn host_ports<'p>(&mut self, role: &'p Placed, published: &mut Vec<(&'p str, PortSpec, At)>) {
        let path = format!("roles.{}.ports", role.name);
        for &(port, at) in role.ports.iter().filter(|(port, _)| port.host_port.is_some()) {
            let binding = binding(&port);
            if role.replicas > 1 {
                let message = format!(
                    "host port {binding} is fixed, but the role has {} replicas and they would collide \
                     on it; expected no host port (\"{}\": each container gets a free one) or one \
                     replica (behind a load balancer role)",
                    role.replicas,
                    container_only(port)
                );
                self.report(at, &path, message);
            }
            if let Some((other, _, other_at)) = published.iter().find(|(_, p, _)| overlaps(p, &port)) {
                let whose =
                    if *other == role.name { "this role".to_string() } else { format!("role `{other}`") };
                let there = self.text.at(other_at.0, other_at.1).short();
                let message = format!(
                    "host port {binding} is already published by {whose} ({there}); expected each host \
                     port once"
                );
                self.report(at, &path, message);
            }
            published.push((&role.name, port, at));
        }
    }

    /// `order: start-first` runs two containers of a slot at once: they would share its
    /// volumes, and the new one could not bind a fixed host port.
    fn start_first(&mut self, role: &Placed) {
        let Some(at) = role.start_first else { return };
        let path = format!("roles.{}.update.order", role.name);
        if !role.volumes.is_empty() {
            let message = format!(
                "start-first starts the new container beside the old one, and both would write the \
                 slot's volumes ({}) at once; expected stop-first for a role with volumes",
                role.volumes.join(", ")
            );
            self.report(at, &path, message);
        }
        for (port, _) in role.ports.iter().filter(|(port, _)| port.host_port.is_some()) {
            let message = format!(
                "start-first starts the new container beside the old one, which holds host port {}: \
                 the new one could not bind it; expected stop-first, or no host port (\"{}\")",
                binding(port),
                container_only(*port)
            );
            self.report(at, &path, message);
        }
    }

    /// An alias must name this role alone: not another role, nor an alias of one before it.
    fn aliases_taken(&mut self, role: &Placed, before: &[Placed], all: &[Placed]) {
        let path = format!("roles.{}.aliases", role.name);
        for (alias, at) in &role.aliases {
            let message = if let Some(other) = all.iter().find(|r| r.name == *alias && r.name != role.name) {
                format!(
                    "`{alias}` is the name of role `{}`; expected a name no other role answers to",
                    other.name
                )
            } else if let Some(other) = before.iter().find(|r| r.aliases.iter().any(|(a, _)| a == alias)) {
                format!(
                    "`{alias}` is an alias of role `{}` too; expected a name no other role answers to",
                    other.name
                )
            } else {
                continue;
            };
            self.report(*at, &path, message);
        }
    }

    /// A slot's name is its minion's id: at most 64 characters.
    fn slot_names(&mut self, fleet: &str, role: &Placed) {
        let last = format!("{fleet}-{}-{}", role.name, role.replicas.max(1));
        if !fleet.is_empty() && last.len() > MAX_SLOT_NAME {
            let message = format!(
                "makes slot names such as `{last}`, {} characters; expected at most {MAX_SLOT_NAME} (a \
                 slot's name is its minion's id): shorten the role's or the fleet's name",
                last.len()
            );
            self.report(role.at, &format!("roles.{}", role.name), message);
        }
    }
}

/// The port with its host side left to the engine: `"80"` for `"8080:80"`.
fn container_only(port: PortSpec) -> PortSpec {
    PortSpec { host_ip: None, host_port: None, ..port }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// A value for a message: `0.5`, `"x"`, `a list`.
fn shown(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        other => describe(other).to_string(),
    }
}

/// `127.0.0.1:8000/tcp`, `[::1]:53/udp`, `8000/tcp`.
fn binding(port: &PortSpec) -> String {
    let protocol = match port.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let number = port.host_port.map_or_else(String::new, |p| p.to_string());
    match port.host_ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{number}/{protocol}"),
        Some(ip) => format!("{ip}:{number}/{protocol}"),
        None => format!("{number}/{protocol}"),
    }
}

/// Do two published ports take the same host port? Same protocol and port, and addresses
/// that overlap (an unspecified address overlaps every address).
fn overlaps(a: &PortSpec, b: &PortSpec) -> bool {
    let any = |ip: Option<IpAddr>| ip.is_none_or(|ip| ip.is_unspecified());
    a.protocol == b.protocol
        && a.host_port.is_some()
        && a.host_port == b.host_port
        && (any(a.host_ip) || any(b.host_ip) || a.host_ip == b.host_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FleetFile {
        FleetFile::parse(text, |_| true).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn slot_names_and_back() {
        let fleet =
            parse("fleet: coins\nimage: coins\nversion: \"1\"\nroles: {worker: {}, web-ui: {}, web: {}}\n");
        assert_eq!(fleet.slot_name("worker", 3), "coins-worker-3");
        assert_eq!(fleet.slot_of("coins-worker-3"), Some(("worker", 3)));
        assert_eq!(fleet.slot_of("coins-web-ui-12"), Some(("web-ui", 12)));
        assert_eq!(fleet.slot_of("coins-web-1"), Some(("web", 1)));
        assert_eq!(fleet.slot_of(&fleet.slot_name("web-ui", u32::MAX)), Some(("web-ui", u32::MAX)));
        for not in [
            "coins-worker-0",
            "coins-worker-01",
            "coins-worker-",
            "coins-worker",
            "coins-worker-1x",
            "coins-worker-+1",
            "coins-worker-4294967296",
            "coins-ghost-1",
            "coinsworker-1",
            "coin-worker-1",
            "other-worker-1",
            "coins--worker-1",
            "xcoins-worker-1",
            "",
        ] {
            assert_eq!(fleet.slot_of(not), None, "{not}");
        }
        for (role, n) in [("worker", 1), ("web-ui", 7), ("web", 1000)] {
            assert_eq!(fleet.slot_of(&fleet.slot_name(role, n)), Some((role, n)));
        }
    }

    #[test]
    fn batches_cover_at_least_one_slot_and_at_most_all() {
        assert_eq!(BatchSize::Count(1).slots(5), 1);
        assert_eq!(BatchSize::Count(10).slots(5), 5);
        assert_eq!(BatchSize::Count(3).slots(0), 0, "no replicas, no slots");
        assert_eq!(BatchSize::Percent(25).slots(10), 2, "rounded down");
        assert_eq!(BatchSize::Percent(25).slots(3), 1, "at least one");
        assert_eq!(BatchSize::Percent(100).slots(7), 7);
        assert_eq!(BatchSize::Percent(50).slots(1000), 500);
        assert_eq!(BatchSize::Percent(1).slots(0), 0);
    }

    #[test]
    fn round_trips_through_json_and_yaml() {
        let fleet = parse(
            "fleet: coins\nimage: coins\nversion: \"1.0\"\nroles:\n  lb: {ports: [\"[::1]:8000:80/udp\", \
             \"80\"], \
             resources: {cpus: 0.5, memory: 1.5G}, update: {batch: 25%, min_healthy: 90s, \
             health_timeout: 500ms, max_failure_ratio: 0.5, on_failure: pause}, env: {A: 1.10}}\n",
        );
        let json = serde_json::to_string(&fleet).unwrap();
        assert!(
            json.contains(
                r#""batch":"25%","order":"stop-first","min_healthy":"90s","health_timeout":"500ms""#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<FleetFile>(&json).unwrap(), fleet);
        let yaml = serde_yaml::to_string(&fleet).unwrap();
        assert_eq!(serde_yaml::from_str::<FleetFile>(&yaml).unwrap(), fleet);
        assert_eq!(fleet.roles["lb"].env["A"], "1.10", "a number as written");
    }

    fn problems(text: &str) -> Vec<String> {
        FleetFile::parse(text, |_| true).expect_err("refused").iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn placement_and_reservations_are_read() {
        let fleet = parse(
            "fleet: coins\nimage: coins\nversion: \"1\"\nengine: swarm\nroles:\n  web:\n    replicas: 4\n    \
             placement:\n      constraints: [\"node.labels.zone!=c\", \"node.role==worker\"]\n      \
             spread: [node.labels.zone]\n      max_per_node: 2\n    resources: {cpus: 1, memory: 1G, \
             reservations: {cpus: 0.5, memory: 256M}}\n  db: {}\n",
        );
        let web = &fleet.roles["web"];
        let shown: Vec<String> = web.placement.constraints.iter().map(Constraint::to_string).collect();
        assert_eq!(shown, ["node.labels.zone!=c", "node.role==worker"]);
        assert_eq!(web.placement.spread, ["node.labels.zone"]);
        assert_eq!(web.placement.max_per_node, Some(2));
        assert_eq!(web.resources.reservations, Reservations { cpus: Some(0.5), memory: Some(256 << 20) });
        assert!(fleet.roles["db"].placement.is_empty());
        // stored and read back; a record written before placement existed still reads
        let json = serde_json::to_string(&fleet).unwrap();
        assert!(json.contains(r#""constraints":["node.labels.zone!=c","node.role==worker"]"#), "{json}");
        assert_eq!(serde_json::from_str::<FleetFile>(&json).unwrap(), fleet);
        let old = json.replace(r#","placement":{"constraints":["node.labels.zone!=c","node.role==worker"],"spread":["node.labels.zone"],"max_per_node":2}"#, "");
        assert_ne!(old, json);
        assert!(serde_json::from_str::<FleetFile>(&old).unwrap().roles["web"].placement.is_empty());
    }

    #[test]
    fn networks_are_read() {
        let fleet = parse(
            "fleet: coins\nimage: coins\nversion: \"1\"\nnetworks: [data, front_2]\nroles:\n  \
             redis: {networks: [data]}\n  worker: {networks: [default, data]}\n  lb: {}\n",
        );
        assert_eq!(fleet.networks, ["data", "front_2"]);
        assert_eq!(fleet.roles["redis"].networks, ["data"]);
        assert_eq!(fleet.roles["worker"].networks, ["default", "data"]);
        assert_eq!(fleet.roles["lb"].networks, [DEFAULT_NETWORK], "no key: the fleet's network only");
        assert_eq!(fleet.network_name("default"), "coins");
        assert_eq!(fleet.network_name("data"), "coins-data");
        // stored and read back; a record written before networks existed still reads
        let json = serde_json::to_string(&fleet).unwrap();
        assert_eq!(serde_json::from_str::<FleetFile>(&json).unwrap(), fleet);
        let plain = parse("fleet: coins\nimage: coins\nversion: \"1\"\nroles: {lb: {}}\n");
        let json = serde_json::to_string(&plain).unwrap();
        let old = json.replace(r#","networks":["default"]"#, "");
        assert_ne!(old, json);
        assert!(!old.contains("networks"), "{old}");
        assert_eq!(serde_json::from_str::<FleetFile>(&old).unwrap(), plain);
    }

    #[test]
    fn a_registry_is_read_as_an_address_or_with_the_role_that_runs_it() {
        let head = "fleet: coins\nengine: swarm\nimage: coins\nversion: \"1\"\n";
        let told = parse(&format!("{head}registry: 127.0.0.1:5000\nroles: {{web: {{}}}}\n"));
        assert_eq!(told.registry, Some(Registry { address: "127.0.0.1:5000".into(), role: None }));
        let run = parse(&format!(
            "{head}registry: {{address: \"127.0.0.1:5000\", role: reg}}\nroles:\n  web: {{}}\n  \
             reg: {{ports: [\"5000:5000\"], volumes: [/var/lib/docker-registry]}}\n"
        ));
        let want = Registry { address: "127.0.0.1:5000".into(), role: Some("reg".into()) };
        assert_eq!(run.registry.as_ref(), Some(&want));
        let json = serde_json::to_string(&run).unwrap();
        assert_eq!(serde_json::from_str::<FleetFile>(&json).unwrap(), run);
        let none = parse(&format!("{head}roles: {{web: {{}}}}\n"));
        assert!(
            !serde_json::to_string(&none).unwrap().contains("registry"),
            "a record without one reads as before"
        );
        for good in ["registry.internal:443", "10.0.0.7:5000", "localhost:5000"] {
            assert_eq!(scalar::registry_address(good), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "http://127.0.0.1:5000",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            ":5000",
            "a_b:5000",
            "h:05000",
        ] {
            assert!(scalar::registry_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_registry_is_refused_where_it_is_written() {
        let on_local = problems(
            "fleet: coins\nimage: coins\nversion: \"1\"\nregistry: 127.0.0.1:5000\nroles: {web: {}}\n",
        );
        assert_eq!(on_local.len(), 1, "{on_local:#?}");
        assert!(
            on_local[0].starts_with("fleet.yaml:4:11: registry: a registry carries images to Swarm's nodes"),
            "{on_local:#?}"
        );
        let head = "fleet: coins\nengine: swarm\nimage: coins\nversion: \"1\"\n";
        let cases = [
            (
                "registry: http://r:5000\n",
                "fleet.yaml:5:11: registry: `http://r:5000` cannot be a registry's address: an engine names a registry without a scheme",
            ),
            ("registry: 5000\n", "fleet.yaml:5:11: registry: expected a registry's address or a map"),
            ("registry: {role: web}\n", "fleet.yaml:5:11: registry: no `address:`"),
            (
                "registry: {address: \"r:5000\", role: ghost}\n",
                "fleet.yaml:5:37: registry.role: `ghost` is not a role of the fleet; expected one of `web`",
            ),
            (
                "registry: {address: \"r:5000\", role: web}\n",
                "fleet.yaml:5:37: registry.role: role web publishes no port 5000, so nothing answers at r:5000",
            ),
            (
                "registry: {address: \"r:5000\", tls: true}\n",
                "fleet.yaml:5:31: registry: unknown key `tls`; expected one of `address`, `role`",
            ),
        ];
        for (line, want) in cases {
            let found = problems(&format!("{head}{line}roles: {{web: {{}}}}\n"));
            assert!(found.iter().any(|f| f.starts_with(want)), "{want}\nnot in {found:#?}");
        }
    }

    #[test]
    fn bad_networks_are_refused_where_they_are_written() {
        let text = "fleet: coins\nimage: coins\nversion: \"1\"\nnetworks: [data, Data, default, data, 3]\n\
                    roles:\n  a: {networks: [cache]}\n  b: {networks: []}\n  c: {networks: [data, data, -x]}\n  \
                    d: {networks: data}\n";
        let found = problems(text);
        let expect = [
            "fleet.yaml:4:18: networks: `Data` cannot be a network name: expected at most 32 lowercase",
            "fleet.yaml:4:24: networks: `default` is the fleet's own network",
            "fleet.yaml:4:33: networks: `data` is listed twice; expected each network once",
            "fleet.yaml:4:39: networks: expected a network name such as `data`, got a number",
            "fleet.yaml:6:18: roles.a.networks: no network `cache`; expected `default` or a network of the \
             top-level `networks:` (the fleet's are `data`); add it there, such as `networks: [cache]`",
            "fleet.yaml:7:17: roles.b.networks: expected at least one network",
            "fleet.yaml:8:24: roles.c.networks: `data` is listed twice",
            "fleet.yaml:8:30: roles.c.networks: `-x` cannot be a network name",
            "fleet.yaml:9:17: roles.d.networks: expected a list such as [default, data], got a string",
        ];
        for e in expect {
            assert!(found.iter().any(|f| f.starts_with(e)), "{e}\nnot in {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        // a network of the fleet that would take the name of the fleet's own network
        let found = problems(
            "fleet: coins\nnetwork: coins-data\nimage: coins\nversion: \"1\"\nnetworks: [data]\nroles: {a: {}}\n",
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with(
                "fleet.yaml:5:12: networks: the network `data` would be the Docker network coins-data"
            ),
            "{found:#?}"
        );
        // no `networks:` at the top: a role may only name `default`
        let found =
            problems("fleet: coins\nimage: coins\nversion: \"1\"\nroles: {a: {networks: [default, data]}}\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("no network `data`; expected `default` or a network of the top-level `networks:` (the fleet defines none)"), "{found:#?}");
    }

    #[test]
    fn bad_placement_is_refused_where_it_is_written() {
        let text = "fleet: coins\nimage: coins\nversion: \"1\"\nroles:\n  web:\n    placement:\n      \
                    constraints: [\"node.zone==a\", \"node.labels.zone=a\", 3, \"node.role==worker\", \
                    \"node.role==worker\"]\n      spread: [node.hostname]\n      max_per_node: 0\n      \
                    pin: n1\n    resources: {cpus: 0.5, memory: 64M, reservations: {cpus: 1, memory: 128M, \
                    disk: 1G}}\n";
        let found = problems(text);
        let expect = [
            "fleet.yaml:7:21: roles.web.placement.constraints: `node.zone` is not a node attribute",
            "fleet.yaml:7:37: roles.web.placement.constraints: `node.labels.zone=a` has no `==` or `!=`",
            "fleet.yaml:7:59: roles.web.placement.constraints: expected a constraint such as",
            "fleet.yaml:7:83: roles.web.placement.constraints: `node.role==worker` is listed twice",
            "fleet.yaml:8:16: roles.web.placement.spread: `node.hostname` cannot be spread over",
            "fleet.yaml:9:21: roles.web.placement.max_per_node: expected at least 1",
            "fleet.yaml:10:7: roles.web.placement: unknown key `pin`; expected one of `constraints`, `spread`, \
             `max_per_node`",
            "roles.web.resources.reservations: unknown key `disk`; expected one of `cpus`, `memory`",
            "roles.web.resources.reservations: reserves 1 CPUs, above the limit of 0.5",
            "roles.web.resources.reservations: reserves 128M of memory, above the limit of 64M",
        ];
        for e in expect {
            assert!(found.iter().any(|f| f.starts_with(e) || f.contains(e)), "{e}\nnot in {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn placement_one_engine_cannot_honour_is_refused() {
        let text = "fleet: coins\nimage: coins\nversion: \"1\"\nroles:\n  web:\n    replicas: 3\n    \
                    placement:\n      constraints: [\"node.labels.zone==a\", \"node.labels.zone!=b\", \
                    \"node.hostname==n1\"]\n      max_per_node: 2\n";
        let found = problems(text);
        assert_eq!(
            found,
            [
                "fleet.yaml:9:21: roles.web.placement.max_per_node: at most 2 per node, but the role has 3 \
                 replicas and `engine: local` is one node; expected max_per_node of at least the replicas, \
                 fewer replicas, or `engine: swarm`",
                "fleet.yaml:8:21: roles.web.placement.constraints: `node.labels.zone==a` cannot hold on \
                 `engine: local`: the one engine has no node labels (they are Swarm's); expected no such \
                 constraint there, or `engine: swarm`",
            ]
        );
        // the same on Swarm reads
        parse(&text.replace("roles:", "engine: swarm\nroles:"));
    }
}
