//! The config files as the demo cloud's states render them (`states/coins/*.toml`, with
//! the pillar of `roles/*.yaml`) parse as the worker and the webui read them: for a fresh
//! cloud, with no peers yet, and for a full one.

use std::collections::BTreeMap;
use std::path::Path;

use coins::config::{WebuiConfig, WorkerConfig};
use render::{Files, Minion, Peer, Repo};
use serde_json::{Map, Value, json};

/// roles/ and states/ of the repository (every role's files: the repository is loaded whole).
fn files() -> Files {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec!["roles".to_string()];
    for entry in std::fs::read_dir(root.join("states")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dirs.push(format!("states/{}", path.file_name().unwrap().to_str().unwrap()));
        }
    }
    let mut files = Files::new();
    for dir in dirs {
        for entry in std::fs::read_dir(root.join(&dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            files.insert(format!("{dir}/{name}"), std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

fn grains(id: &str, ip: &str) -> Map<String, Value> {
    json!({"id": id, "ipv4": [ip]}).as_object().unwrap().clone()
}

/// Two members of each role, `<role>-<n>` at 10.0.<i>.<n>, <i> the role's place in `roles`.
fn full_cloud(roles: &[&str]) -> BTreeMap<String, Vec<Peer>> {
    let member = |i: usize, role: &str, n: usize| {
        let (id, address) = (format!("{role}-{n}"), format!("10.0.{i}.{n}"));
        Peer { grains: grains(&id, &address), id, address }
    };
    roles
        .iter()
        .enumerate()
        .map(|(i, role)| (role.to_string(), vec![member(i, role, 1), member(i, role, 2)]))
        .collect()
}

fn render(files: &Files, role: &str, source: &str, peers: BTreeMap<String, Vec<Peer>>) -> String {
    let repo = Repo::load(files).unwrap_or_else(|d| panic!("{d:?}"));
    let roles = repo.roles_named(&[role]).unwrap();
    let minion = Minion {
        id: format!("{role}-1"),
        grains: grains(&format!("{role}-1"), "10.9.9.9"),
        pillar: Map::new(),
        peers,
    };
    let ctx = render::Context::new(&minion, &roles);
    render::render_source(source, &files[source], &ctx).unwrap_or_else(|d| panic!("{d:?}"))
}

const ROLES: [&str; 6] = ["datastore", "rng", "hasher", "lb", "webui", "worker"];

#[test]
fn the_worker_reads_its_rendered_config() {
    let files = files();
    let fresh = render(&files, "worker", "states/coins/worker.toml", BTreeMap::new());
    let config = WorkerConfig::parse(&fresh, "worker.toml").unwrap_or_else(|e| panic!("{e}\n{fresh}"));
    assert!(config.redis.is_empty() && config.rng.is_empty() && config.hasher.is_empty(), "{config:?}");
    assert_eq!(config.listen.ip().to_string(), "127.0.0.1");
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());

    let full = render(&files, "worker", "states/coins/worker.toml", full_cloud(&ROLES));
    let config = WorkerConfig::parse(&full, "worker.toml").unwrap_or_else(|e| panic!("{e}\n{full}"));
    assert_eq!(config.redis, ["10.0.0.1:6379", "10.0.0.2:6379"]);
    // through the lb
    assert_eq!(config.rng, ["http://10.0.3.1:8001", "http://10.0.3.2:8001"]);
    assert_eq!(config.hasher, ["http://10.0.3.1:8002", "http://10.0.3.2:8002"]);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());

    // without an lb, directly
    let no_lb =
        render(&files, "worker", "states/coins/worker.toml", full_cloud(&["datastore", "rng", "hasher"]));
    let config = WorkerConfig::parse(&no_lb, "worker.toml").unwrap_or_else(|e| panic!("{e}\n{no_lb}"));
    assert_eq!(config.rng, ["http://10.0.1.1:8001", "http://10.0.1.2:8001"]);
    assert_eq!(config.hasher, ["http://10.0.2.1:8002", "http://10.0.2.2:8002"]);
}

#[test]
fn the_webui_reads_its_rendered_config() {
    let files = files();
    let fresh = render(&files, "webui", "states/coins/webui.toml", BTreeMap::new());
    let config = WebuiConfig::parse(&fresh, "webui.toml").unwrap_or_else(|e| panic!("{e}\n{fresh}"));
    assert!(config.redis.is_empty());
    let full = render(&files, "webui", "states/coins/webui.toml", full_cloud(&ROLES));
    let config = WebuiConfig::parse(&full, "webui.toml").unwrap_or_else(|e| panic!("{e}\n{full}"));
    assert_eq!(config.redis, ["10.0.0.1:6379", "10.0.0.2:6379"]);
    assert_eq!(config.listen.port(), 8080);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}
