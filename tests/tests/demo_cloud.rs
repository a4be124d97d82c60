//! Every file under `roles/` and `states/` of this repository (the dockercoins demo cloud)
//! loads, and every role renders and plans, both for a fresh cloud (no peers yet) and for a
//! full one, so the demo can never ship broken. The root `fleet.yaml` is checked with them,
//! and against what the states say (the datastore's volume holds redis's data, the lb
//! publishes the port haproxy serves).

use std::collections::BTreeMap;
use std::path::Path;

use render::{Files, Minion, Peer, Repo};
use serde_json::{Map, Value, json};

fn read_tree(root: &Path, dir: &str, files: &mut Files) {
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                files.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
}

fn grains(id: &str, ip: &str) -> Map<String, Value> {
    json!({"id": id, "os": "Debian", "os_family": "Debian", "ipv4": [ip], "num_cpus": 2})
        .as_object()
        .unwrap()
        .clone()
}

#[test]
fn every_role_and_state_of_the_demo_cloud_renders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Files::new();
    read_tree(root, "roles", &mut files);
    read_tree(root, "states", &mut files);
    let fleet_yaml =
        std::fs::read_to_string(root.join(render::fleet::FLEET_FILE)).expect("the demo cloud's fleet.yaml");
    files.insert(render::fleet::FLEET_FILE.to_string(), fleet_yaml);
    let repo = Repo::load(&files)
        .unwrap_or_else(|d| panic!("{}", d.iter().map(|d| d.to_string() + "\n").collect::<String>()));
    assert!(repo.roles.len() >= 6, "the demo cloud has its roles: {:?}", repo.roles.keys());

    let full: BTreeMap<String, Vec<Peer>> = repo
        .roles
        .keys()
        .enumerate()
        .map(|(i, role)| {
            let members = (1..=2)
                .map(|n| {
                    let id = format!("{role}-{n}");
                    let ip = format!("10.0.{i}.{n}");
                    Peer { grains: grains(&id, &ip), id, address: ip }
                })
                .collect();
            (role.clone(), members)
        })
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for role in repo.roles.keys() {
        for peers in [BTreeMap::new(), full.clone()] {
            let minion = Minion {
                id: format!("{role}-1"),
                grains: grains(&format!("{role}-1"), "10.9.9.9"),
                pillar: Map::new(),
                peers,
            };
            let plan = repo.plan(&files, &minion, &[role]).unwrap_or_else(|d| {
                panic!("role {role}: {}", d.iter().map(|d| d.to_string() + "\n").collect::<String>())
            });
            assert!(!plan.resources.is_empty(), "role {role} has no states");
            used.extend(plan.sources().into_iter().map(String::from));
            for r in &plan.resources {
                used.insert(r.state.path());
            }
        }
    }
    // peers reach the config files: the worker finds redis directly, and rng and hasher
    // through the lb (scaling them reloads haproxy and restarts no worker), or directly
    // when there is no lb
    let render = |role: &str, source: &str, peers: &BTreeMap<String, Vec<Peer>>| {
        let roles = repo.roles_named(&[role]).unwrap();
        let minion = Minion {
            id: "m".into(),
            grains: grains("m", "10.9.9.9"),
            pillar: Map::new(),
            peers: peers.clone(),
        };
        let ctx = render::Context::new(&minion, &roles);
        render::render_source(source, &files[source], &ctx).unwrap()
    };
    let ip = |role: &str| repo.roles.keys().position(|r| r == role).unwrap();
    let text = render("worker", "states/coins/worker.toml", &full);
    for (role, via, port) in [("datastore", "datastore", 6379), ("rng", "lb", 8001), ("hasher", "lb", 8002)] {
        let want = format!("10.0.{}.2:{port}", ip(via));
        assert!(text.contains(&want), "worker.toml lacks {role} at {want}:\n{text}");
        if via != role {
            let direct = format!("10.0.{}.1:{port}", ip(role));
            assert!(
                !text.contains(&direct),
                "worker.toml names {role} peer {direct}, not only the lb:\n{text}"
            );
        }
    }
    let mut no_lb = full.clone();
    no_lb.remove("lb");
    let text = render("worker", "states/coins/worker.toml", &no_lb);
    for (role, port) in [("rng", 8001), ("hasher", 8002)] {
        let want = format!("http://10.0.{}.2:{port}", ip(role));
        assert!(text.contains(&want), "without an lb, worker.toml lacks {role} peer {want}:\n{text}");
    }
    let haproxy = render("lb", "states/coins/haproxy.cfg", &full);
    for (role, port) in [("webui", 8080), ("rng", 8001), ("hasher", 8002)] {
        let want = format!("server {role}-2 10.0.{}.2:{port}", ip(role));
        assert!(haproxy.contains(&want), "haproxy.cfg lacks {want}:\n{haproxy}");
    }

    // the fleet: every role of the demo cloud runs, redis keeps its data on the
    // datastore's volume, and the lb publishes the port haproxy serves the webui on
    let fleet = repo.fleet.as_ref().expect("fleet.yaml is the demo cloud's fleet");
    assert_eq!(fleet.fleet, "coins");
    let fleet_roles: Vec<&String> = fleet.roles.keys().collect();
    // (roles/registry.yaml is for a fleet on Swarm: fleet.yaml shows it in a comment)
    let cloud_roles: Vec<&String> = repo.roles.keys().filter(|r| *r != "registry").collect();
    assert_eq!(fleet_roles, cloud_roles, "every role of roles/ is in fleet.yaml");
    let registry = render("registry", "states/registry/config.yml", &full);
    for want in ["rootdirectory: /var/lib/docker-registry", "addr: :5000", "enabled: false"] {
        assert!(registry.contains(want), "the registry's config lacks {want:?}:\n{registry}");
    }
    for spec in fleet.roles.values() {
        assert_eq!((spec.image.as_str(), spec.version.as_str()), ("coins", "1.0"));
    }
    let redis_conf = render("datastore", "states/coins/redis.conf", &full);
    let dir =
        redis_conf.lines().find_map(|l| l.strip_prefix("dir ")).expect("redis.conf names its dir").trim();
    assert!(
        fleet.roles["datastore"].volumes.iter().any(|v| v == dir),
        "redis keeps its data in {dir}, which is no volume of the datastore: {:?}",
        fleet.roles["datastore"].volumes
    );
    assert!(
        redis_conf.lines().any(|l| l.trim() == "appendonly yes"),
        "redis persists every write:\n{redis_conf}"
    );
    let lb_port = repo.roles["lb"].pillar["lb_port"].as_u64().unwrap();
    let published: Vec<u16> = fleet.roles["lb"].ports.iter().map(|p| p.container_port).collect();
    assert_eq!(published, [lb_port as u16], "the lb publishes the port haproxy serves the webui on");

    // every file under states/ is a state file or a source some role renders
    for path in files.keys().filter(|p| p.starts_with("states/")) {
        assert!(used.contains(path), "{path} is used by no role");
    }
}
