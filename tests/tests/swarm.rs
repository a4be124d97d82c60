//! The fleet on a one-node Docker Swarm this test makes (and leaves, passed or failed):
//! `up` of 2 roles and 3 slots as Swarm services, `ps` with each slot's node, a healthy
//! upgrade (a service update per slot, the slot's volume kept), a broken upgrade rolled
//! back with exit 1 naming why, `rollout undo` through each service's own rollback (Swarm's
//! `rollback=previous`), a killed task replaced by Swarm in its slot with its volume's
//! data, an extra overlay network (`data`, kv on it alone) and `down` leaving no service,
//! secret, container or network.
//!
//! A second fleet runs its own registry (the project's `roles/registry.yaml`, Debian's
//! docker-registry) as a role: its services run their images by the digest the registry
//! answered to drover's push, and an upgrade moves them to the new version's digest.
//!
//! An engine in a swarm the test did not make is never touched: the test says it skipped.
//! Every wait is bounded.

use std::time::Duration;

use tests::docker::{Scope, docker, exec};
use tests::fleet::{
    TestFleet, daemons, ok, ps, registry_fleet_yaml, registry_port, swarm_fleet_yaml, versions,
};
use tests::swarm::OneNodeSwarm;
use tests::{show, wait_until};

/// `docker service inspect` of `service` with a Go template.
fn inspect(service: &str, format: &str) -> String {
    docker(&["service", "inspect", "--format", format, service]).trim().to_string()
}

/// The running task container of a slot (on this node), if one runs.
fn task_container(scope: &Scope, slot: &str) -> Option<String> {
    let out = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label={}", scope.label()),
        "--filter",
        &format!("label=drover.slot={slot}"),
    ]);
    out.lines().next().map(String::from)
}

#[test]
fn a_fleet_on_a_one_node_swarm() {
    // dropped last: the fleet's objects go first, then the swarm
    let Some(swarm) = OneNodeSwarm::init() else { return };
    let TestFleet { scope, master, repo: _repo, .. } =
        TestFleet::with_file("swarm", &["1", "2", "3"], swarm_fleet_yaml);
    let f = scope.fleet.clone();
    let kv = format!("{f}-kv-1");
    let web1 = format!("{f}-web-1");

    // up: a service per slot, named after it, every minion connected, converged, healthy
    let out = master.drover(&["up", "--timeout", "180"]);
    ok(&out);
    let slots = ps(&master);
    assert_eq!(slots.len(), 3, "{slots:?}");
    let node = swarm.node();
    for s in &slots {
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["connected"], true, "{s}");
        assert!(s["converged"].is_string(), "{s}");
        assert_eq!(s["version"], "1", "{s}");
        assert_eq!(s["node"], node.as_str(), "{s}");
    }
    let text = String::from_utf8_lossy(&master.drover(&["ps"]).stdout).to_string();
    assert!(text.lines().next().is_some_and(|h| h.contains("NODE")), "{text}");
    assert!(text.contains(&node), "{text}");
    // Swarm counts a task running once the image's health check (the minion's) passed
    let services = || {
        let mut list: Vec<String> = docker(&[
            "service",
            "ls",
            "--filter",
            &format!("label={}", scope.label()),
            "--format",
            "{{.Name}} {{.Replicas}}",
        ])
        .lines()
        .map(String::from)
        .collect();
        list.sort();
        list
    };
    let want = [format!("{kv} 1/1"), format!("{web1} 1/1"), format!("{f}-web-2 1/1")];
    wait_until(Duration::from_secs(90), "every service at 1/1", || services() == want);
    // the keys are secrets of the slot, labelled; no key is pending
    assert_eq!(scope.secrets().len(), 6, "a key and a public key per slot");
    let keys = master.drover(&["key", "list"]);
    assert!(!String::from_utf8_lossy(&keys.stdout).contains("pending"), "{}", show(&keys));
    // the network is an attachable overlay; the container is named for its slot inside
    assert_eq!(
        docker(&["network", "inspect", "--format", "{{.Driver}} {{.Attachable}}", &f]).trim(),
        "overlay true"
    );
    // and so is the extra network `data`; kv's service is on it alone (its minion reached the
    // master all the same), web's on both, and web resolves kv there
    let data = format!("{f}-data");
    assert_eq!(
        docker(&["network", "inspect", "--format", "{{.Driver}} {{.Attachable}}", &data]).trim(),
        "overlay true"
    );
    let attached = |service: &str| {
        let ids = inspect(service, "{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}");
        let mut names: Vec<String> = ids
            .split_whitespace()
            .map(|id| docker(&["network", "inspect", "--format", "{{.Name}}", id]).trim().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(attached(&kv), std::slice::from_ref(&data));
    let mut both = vec![f.clone(), data.clone()];
    both.sort();
    assert_eq!(attached(&web1), both);
    let container = task_container(&scope, &kv).expect("the kv task runs here");
    assert_eq!(exec(&container, "hostname").trim(), kv);
    let web_task = task_container(&scope, &web1).expect("the web-1 task runs here");
    assert!(!exec(&web_task, "getent hosts kv").trim().is_empty(), "web resolves kv on {data}");
    // and kv reaches web by its role's name: names are the task's own address (a virtual
    // address in front of it needs IPVS, which a node's kernel may lack, and then answers
    // nothing)
    exec(&container, "bash -c ': > /dev/tcp/web/8080'");
    assert_eq!(daemons(&master, &kv), ["kv"]);
    assert_eq!(daemons(&master, &web1), ["web"]);

    // up again changes nothing
    let out = master.drover(&["up"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to change"), "{}", show(&out));

    // data on the kv slot's volume, written under version 1
    ok(&master.drover(&["-L", &kv, "cmd.run", "sh -c 'echo written-by-1 > /data/mark'"]));

    // a healthy upgrade: each slot's service updated in place, its update config the role's
    let out = master.drover(&["upgrade", "--to", "2"]);
    ok(&out);
    assert!(versions(&master).iter().all(|(_, v)| v == "2"), "{:?}", versions(&master));
    assert!(inspect(&kv, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").starts_with(&format!("{f}-app:2")));
    assert_eq!(
        inspect(&web1, "{{.Spec.UpdateConfig.Order}} {{.Spec.UpdateConfig.FailureAction}}"),
        "start-first rollback"
    );
    let (code, v, err) = master.drover_json(&["-L", &kv, "cmd.run", "cat /data/mark"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v[&kv].as_str().map(str::trim), Some("written-by-1"), "{v}");
    assert_eq!(scope.services().len(), 3);

    // a broken 3: the first slot goes back, the other is never touched, exit 1 naming why
    let out = master.drover(&["upgrade", "web", "--to", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    eprintln!("the broken upgrade, as drover told it:\n{text}");
    assert!(text.contains("rolled-back"), "{text}");
    assert!(text.contains(&format!("{web1} failed to become ready at 3")), "{text}");
    assert!(text.contains("web exited with code 3"), "{text}");
    wait_until(Duration::from_secs(120), "every slot back at 2 and ready", || {
        ps(&master)
            .iter()
            .all(|s| s["version"] == "2" && s["connected"] == true && s["converged"].is_string())
    });
    assert!(inspect(&web1, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").starts_with(&format!("{f}-app:2")));
    let (_, rollouts, _) = master.drover_json(&["rollout", "status"]);
    assert_eq!(rollouts[0]["state"], "rolled-back");
    let touched: Vec<&str> = rollouts[0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "pending")
        .map(|s| s["slot"].as_str().unwrap())
        .collect();
    assert_eq!(touched, [web1.as_str()]);

    // rollout undo of the healthy upgrade: each service's own rollback where Swarm's previous
    // spec is version 1 (kv, web-2); web-1's previous spec is the broken 3 it was rolled
    // back from, so an update takes it to 1
    let out = master.drover(&["rollout", "undo"]);
    ok(&out);
    eprintln!("the undo, as drover told it:\n{}", show(&out));
    assert!(versions(&master).iter().all(|(_, v)| v == "1"), "{:?}", versions(&master));
    let web2 = format!("{f}-web-2");
    for service in [&kv, &web2] {
        assert!(
            inspect(service, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").starts_with(&format!("{f}-app:1"))
        );
        // Swarm ends its rollback after the monitor period, once the old task is stopped
        wait_until(Duration::from_secs(60), "Swarm to end the rollback", || {
            inspect(service, "{{.UpdateStatus.State}}") == "rollback_completed"
        });
    }
    assert_eq!(inspect(&web1, "{{.UpdateStatus.State}}"), "completed");
    wait_until(Duration::from_secs(120), "every slot at 1 and ready", || {
        ps(&master)
            .iter()
            .all(|s| s["version"] == "1" && s["connected"] == true && s["converged"].is_string())
    });

    // a killed task: Swarm starts another in the same slot (same service, same volume), the
    // minion comes back under the slot's name and finds its data
    let before = task_container(&scope, &kv).expect("the kv task runs");
    docker(&["kill", &before]);
    wait_until(Duration::from_secs(120), "Swarm to replace the killed kv task", || {
        task_container(&scope, &kv).is_some_and(|c| c != before)
    });
    wait_until(Duration::from_secs(120), "the kv slot's minion back with its data", || {
        let (code, v, _) = master.drover_json(&["-t", "5", "-L", &kv, "cmd.run", "cat /data/mark"]);
        code == 0 && v[&kv].as_str().map(str::trim) == Some("written-by-1")
    });
    assert_eq!(scope.services().len(), 3, "Swarm replaced the task, drover made no service");
    // the healer reported the death, Swarm's new task, and its minion ready again
    let events = || {
        let out = master.drover(&["--out", "json", "events", "--since", "0", "--no-follow"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_until(Duration::from_secs(60), "the kv slot's death and heal reported", || {
        let all = events();
        ["died", "replaced", "healed"]
            .iter()
            .all(|step| all.contains(&format!("drover/fleet/{f}/slot/{kv}/{step}")))
    });

    // down: no service, secret, container or network left; the volume stays without --volumes
    ok(&master.drover(&["down"]));
    assert!(scope.services().is_empty(), "{:?}", scope.services());
    assert!(scope.secrets().is_empty(), "{:?}", scope.secrets());
    assert!(scope.containers().is_empty(), "{:?}", scope.containers());
    assert!(scope.networks().is_empty(), "{:?}", scope.networks());
    assert_eq!(scope.volumes().len(), 1);
    assert!(ps(&master).is_empty());
    // (the volume goes with the scope: a `down --volumes` after a `down` finds no fleet up)
}

/// `GET path` of the registry on 127.0.0.1:`port`, asking for a v2 manifest: the status and
/// the `Docker-Content-Digest` header.
fn registry_get(port: u16, path: &str) -> (u16, Option<String>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the registry's port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Accept: application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let digest = response
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Docker-Content-Digest: ").map(|d| d.trim().to_string()));
    (status, digest)
}

#[test]
fn a_fleet_gets_its_images_from_its_own_registry_by_digest() {
    let Some(_swarm) = OneNodeSwarm::init() else { return };
    let TestFleet { scope, master, repo: _repo, .. } =
        TestFleet::with_file("registry", &["1", "2"], registry_fleet_yaml);
    let f = scope.fleet.clone();
    let (port, app) = (registry_port(), format!("{f}-app"));
    let (registry, web1) = (format!("{f}-registry-1"), format!("{f}-web-1"));

    // up: the registry's slot first, on the image this engine has, pinned to this node; the
    // web slots' pushes wait for it, and their services name the image by digest
    let out = master.drover(&["up", "--timeout", "240"]);
    ok(&out);
    eprintln!("up, as drover told it:\n{}", show(&out));
    let image = |service: &str| inspect(service, "{{.Spec.TaskTemplate.ContainerSpec.Image}}");
    assert!(image(&registry).starts_with(&format!("{app}:1")), "{}", image(&registry));
    let pin = inspect(&registry, "{{range .Spec.TaskTemplate.Placement.Constraints}}{{.}} {{end}}");
    let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]).trim().to_string();
    assert!(pin.contains(&format!("node.id=={node}")), "{pin}");
    let prefix = format!("127.0.0.1:{port}/{app}@sha256:");
    let v1 = image(&web1);
    assert!(v1.starts_with(&prefix), "{v1}");
    assert_eq!(image(&format!("{f}-web-2")), v1, "one image, one digest");
    // the digest is the registry's own for the tag drover pushed
    let (status, digest) = registry_get(port, &format!("/v2/{app}/manifests/1"));
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), v1.strip_prefix(&format!("127.0.0.1:{port}/{app}@")));
    for s in ps(&master) {
        assert_eq!((s["state"].as_str(), s["connected"].as_bool()), (Some("running"), Some(true)), "{s}");
        assert!(s["converged"].is_string(), "{s}");
    }
    let shown: Vec<String> =
        ps(&master).iter().map(|s| s["image"].as_str().unwrap_or("").to_string()).collect();
    assert!(shown.contains(&v1), "ps shows the digest a slot runs: {shown:?}");

    // an upgrade pushes version 2 and moves each web service to its digest
    let out = master.drover(&["upgrade", "web", "--to", "2"]);
    ok(&out);
    let v2 = image(&web1);
    assert!(v2.starts_with(&prefix) && v2 != v1, "{v2}");
    let (status, digest) = registry_get(port, &format!("/v2/{app}/manifests/2"));
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), v2.strip_prefix(&format!("127.0.0.1:{port}/{app}@")));
    wait_until(Duration::from_secs(120), "every web slot at 2 and ready", || {
        ps(&master)
            .iter()
            .filter(|s| s["role"] == "web")
            .all(|s| s["version"] == "2" && s["connected"] == true && s["converged"].is_string())
    });

    ok(&master.drover(&["down", "--volumes"]));
    assert!(scope.services().is_empty(), "{:?}", scope.services());
    assert!(scope.volumes().is_empty(), "{:?}", scope.volumes());
}
