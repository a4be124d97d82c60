//! The small fleet of the Docker tests (tests/tests/fleet.rs, tests/tests/dashboard.rs): a
//! master that containers reach, a config repo, and images built here `FROM base` (the
//! base image is built once per machine and kept, by its content hash).
//!
//! The fleet: `kv` (1 slot, a volume at /data), `web` (3 slots, an HTTP daemon with a
//! health check, upgraded one slot at a time) and `idle` (1 slot, no daemon). Version 3 of
//! the image is broken: its web daemon exits at start.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::docker::{Scope, base_yaml};
use crate::{ConfigRepo, Master, show};

const KV: &str = "#!/bin/sh\n# the kv daemon: keeps a heartbeat file on its volume\nwhile true; do date +%s > /data/heartbeat; sleep 1; done\n";

fn web(version: &str) -> String {
    if version == "3" {
        "#!/bin/sh\necho \"web $DROVER_IMAGE_VERSION cannot start: no such config\" >&2\nexit 3\n".into()
    } else {
        "#!/bin/sh\nmkdir -p /tmp/www && echo \"web $DROVER_IMAGE_VERSION\" > /tmp/www/index.html\nexec busybox httpd -f -p 8080 -h /tmp/www\n".into()
    }
}

/// Writes images/app for `version` under `root`.
fn image_dir(root: &Path, version: &str) -> PathBuf {
    let dir = root.join(format!("images-{version}")).join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM base\nCOPY kv web /app/\nRUN chmod 755 /app/kv /app/web\n")
        .unwrap();
    std::fs::write(dir.join("kv"), KV).unwrap();
    std::fs::write(dir.join("web"), web(version)).unwrap();
    dir
}

fn fleet_yaml(fleet: &str, version: &str) -> String {
    format!(
        "fleet: {fleet}\nimage: {fleet}-app\nversion: \"{version}\"\nroles:\n  \
         kv: {{replicas: 1, volumes: [/data], update: {{min_healthy: 1s, health_timeout: 60s}}}}\n  \
         web: {{replicas: 3, update: {{batch: 1, min_healthy: 1s, health_timeout: 30s}}}}\n  \
         idle: {{replicas: 1}}\n"
    )
}

const KV_STATE: &str = "kv:\n  daemon.running:\n    - cmd: [\"/app/kv\"]\n";
const WEB_STATE: &str =
    "web:\n  daemon.running:\n    - cmd: [\"/app/web\"]\n    - health: {tcp: \"127.0.0.1:8080\"}\n";

/// The fleet of the Swarm tests (tests/tests/swarm.rs): `engine: swarm`, `kv` (1 slot, a
/// volume at /data, on the extra overlay `data` only) and `web` (2 slots, upgraded one at a
/// time, start-first, on the fleet's network and `data`).
pub fn swarm_fleet_yaml(fleet: &str, version: &str) -> String {
    format!(
        "fleet: {fleet}\nengine: swarm\nimage: {fleet}-app\nversion: \"{version}\"\nnetworks: [data]\nroles:\n  \
         kv: {{replicas: 1, volumes: [/data], networks: [data], update: {{min_healthy: 1s, health_timeout: 60s}}}}\n  \
         web: {{replicas: 2, networks: [default, data], update: {{batch: 1, order: start-first, min_healthy: 1s, \
         health_timeout: 60s}}}}\n"
    )
}

/// The Swarm test fleet's `web` with a registry the fleet runs (the project's
/// `roles/registry.yaml`), published on [`registry_port`]: the services run their images
/// by digest from it.
pub fn registry_fleet_yaml(fleet: &str, version: &str) -> String {
    let port = registry_port();
    format!(
        "fleet: {fleet}\nengine: swarm\nimage: {fleet}-app\nversion: \"{version}\"\n\
         registry: {{address: \"127.0.0.1:{port}\", role: registry}}\nroles:\n  \
         registry: {{replicas: 1, ports: [\"{port}:5000\"], volumes: [/var/lib/docker-registry], \
         update: {{min_healthy: 1s, health_timeout: 60s}}}}\n  \
         web: {{replicas: 2, update: {{batch: 1, order: start-first, min_healthy: 1s, health_timeout: 60s}}}}\n"
    )
}

/// The port the registry of [`registry_fleet_yaml`] is published on: one free on this
/// machine when first asked (Swarm publishes it on the registry task's node).
pub fn registry_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    })
}

/// A master that containers can reach, a config repo with the test fleet (at version 1),
/// and the images of the fleet's versions asked for. Not up yet: `drover up` brings it up.
pub struct TestFleet {
    pub scope: Scope,
    pub master: Master,
    pub repo: ConfigRepo,
    _images: tempfile::TempDir,
}

impl TestFleet {
    /// `what` names the test (in the scope's fleet name); `versions` are built as
    /// `<fleet>-app:<version>` (3 is the broken one).
    pub fn new(what: &str, versions: &[&str]) -> TestFleet {
        TestFleet::with_file(what, versions, fleet_yaml)
    }

    /// The same, with the fleet.yaml `file(fleet, version)` gives (at version 1).
    pub fn with_file(what: &str, versions: &[&str], file: fn(&str, &str) -> String) -> TestFleet {
        let scope = Scope::new(what);
        let repo = ConfigRepo::new();
        repo.commit(
            "the test fleet",
            &[
                ("fleet.yaml", &file(&scope.fleet, "1")),
                ("roles/kv.yaml", "states: [app.kv]\n"),
                ("roles/web.yaml", "states: [app.web]\n"),
                ("roles/idle.yaml", "description: nothing runs here\n"),
                ("states/app/kv.yaml", KV_STATE),
                ("states/app/web.yaml", WEB_STATE),
                // the project's own registry role (tests/tests/swarm.rs runs it)
                ("roles/registry.yaml", &crate::project_file("roles/registry.yaml")),
                ("states/registry/registry.yaml", &crate::project_file("states/registry/registry.yaml")),
                ("states/registry/config.yml", &crate::project_file("states/registry/config.yml")),
                // the project's own base definition: its image is built once per machine
                ("images/base/base.yaml", &base_yaml()),
            ],
        );
        let master = Master::start_for_containers(repo.path());
        let images = tempfile::tempdir().unwrap();
        for version in versions {
            let dir = image_dir(images.path(), version);
            let tag = format!("{}-app:{version}", scope.fleet);
            let out = master.drover(&["image", "build", dir.to_str().unwrap(), "--tag", &tag]);
            assert!(out.status.success(), "image build {tag}: {}", show(&out));
        }
        TestFleet { scope, master, repo, _images: images }
    }

    /// `<fleet>-<role>-<n>`: a slot's name (its container's and its minion's).
    pub fn slot(&self, role: &str, n: u32) -> String {
        format!("{}-{role}-{n}", self.scope.fleet)
    }
}

pub use crate::ok;

/// `drover ps --out json`: one object per slot.
pub fn ps(master: &Master) -> Vec<Value> {
    master.ps()
}

/// The slot named `name` in a `ps` list.
pub fn slot<'a>(ps: &'a [Value], name: &str) -> &'a Value {
    ps.iter().find(|s| s["slot"] == name).unwrap_or_else(|| panic!("no slot {name} in {ps:?}"))
}

/// The daemons a slot's minion supervises, by name.
pub fn daemons(master: &Master, slot: &str) -> Vec<String> {
    let (code, v, err) = master.drover_json(&["-L", slot, "daemon.list"]);
    assert_eq!(code, 0, "daemon.list on {slot}: {err} {v}");
    let mut names: Vec<String> =
        v[slot].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

/// (slot, version) of every slot `ps` lists.
pub fn versions(master: &Master) -> Vec<(String, String)> {
    ps(master)
        .iter()
        .map(|s| (s["slot"].as_str().unwrap().into(), s["version"].as_str().unwrap().into()))
        .collect()
}
