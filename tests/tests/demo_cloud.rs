//! Every file under `roles/` and `states/` of this repository (the dockercoins demo cloud)
//! loads, and every role renders and plans, both for a fresh cloud (no peers yet) and for a
//! full one, so the demo can never ship broken.

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
    // peers reach the config files: the worker finds redis, rng and hasher
    let roles = repo.roles_named(&["worker"]).unwrap();
    let minion = Minion { id: "w".into(), grains: grains("w", "10.9.9.9"), pillar: Map::new(), peers: full };
    let ctx = render::Context::new(&minion, &roles);
    let text =
        render::render_source("states/coins/worker.toml", &files["states/coins/worker.toml"], &ctx).unwrap();
    let ip = |role: &str| repo.roles.keys().position(|r| r == role).unwrap();
    for (role, port) in [("datastore", 6379), ("rng", 8001), ("hasher", 8002)] {
        let want = format!("10.0.{}.2:{port}", ip(role));
        assert!(text.contains(&want), "worker.toml lacks {role} peer {want}:\n{text}");
    }

    // every file under states/ is a state file or a source some role renders
    for path in files.keys().filter(|p| p.starts_with("states/")) {
        assert!(used.contains(path), "{path} is used by no role");
    }
}
