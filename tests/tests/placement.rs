//! Placement on a one-node Docker Swarm this test makes (and leaves, passed or failed):
//! a node label the test sets on its own swarm's node, a role constrained to it with
//! reservations and a limit (as `docker service inspect` shows them), a role with
//! `max_per_node` and `spread` (its slots pinned to the node), `drover nodes --out json`
//! checked against `docker info`, and what the node cannot hold refused before anything
//! changes, with the message and exit status 2: a scale past `max_per_node` and a role whose
//! constraint no node satisfies.
//!
//! An engine in a swarm the test did not make is never touched: the test says it skipped.
//! Every wait is bounded.

use tests::docker::docker;
use tests::fleet::{TestFleet, ok, ps};
use tests::show;
use tests::swarm::OneNodeSwarm;

/// The node label this fleet's roles are placed by: `<fleet>.zone`, set to `a` on the node.
fn zone(fleet: &str) -> String {
    format!("{fleet}.zone")
}

/// kv: constrained to the node labelled `<fleet>.zone=a`, reserving 0.25 CPUs and 64M under
/// a 256M limit; web: 2 slots, at most 2 per node, spread over the zones.
fn placed_fleet_yaml(fleet: &str, version: &str) -> String {
    let zone = zone(fleet);
    format!(
        "fleet: {fleet}\nengine: swarm\nimage: {fleet}-app\nversion: \"{version}\"\nroles:\n  \
         kv:\n    volumes: [/data]\n    placement: {{constraints: [\"node.labels.{zone}==a\"]}}\n    \
         resources: {{memory: 256M, reservations: {{cpus: 0.25, memory: 64M}}}}\n    \
         update: {{min_healthy: 1s, health_timeout: 60s}}\n  \
         web:\n    replicas: 2\n    placement: {{max_per_node: 2, spread: [node.labels.{zone}]}}\n    \
         update: {{min_healthy: 1s, health_timeout: 60s}}\n"
    )
}

/// `docker service inspect` of `service` with a Go template.
fn inspect(service: &str, format: &str) -> String {
    docker(&["service", "inspect", "--format", format, service]).trim().to_string()
}

#[test]
fn placement_on_a_one_node_swarm() {
    // dropped last: the fleet's objects go first, then the swarm (and the node's label)
    let Some(swarm) = OneNodeSwarm::init() else { return };
    let TestFleet { scope, master, repo, .. } = TestFleet::with_file("place", &["1"], placed_fleet_yaml);
    let f = scope.fleet.clone();
    let zone = zone(&f);
    let node_id = docker(&["info", "--format", "{{.Swarm.NodeID}}"]).trim().to_string();
    let node = swarm.node();
    docker(&["node", "update", "--label-add", &format!("{zone}=a"), &node_id]);
    let kv = format!("{f}-kv-1");

    // up: every slot placed on the labelled node, with its constraints and reservations
    ok(&master.drover(&["up", "--timeout", "180"]));
    let slots = ps(&master);
    assert_eq!(slots.len(), 3, "{slots:?}");
    assert!(slots.iter().all(|s| s["node"] == node.as_str() && s["state"] == "running"), "{slots:?}");
    assert_eq!(
        inspect(&kv, "{{json .Spec.TaskTemplate.Placement.Constraints}}"),
        format!("[\"node.labels.{zone}==a\"]")
    );
    assert_eq!(
        inspect(
            &kv,
            "{{.Spec.TaskTemplate.Resources.Reservations.NanoCPUs}} \
             {{.Spec.TaskTemplate.Resources.Reservations.MemoryBytes}} \
             {{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}}"
        ),
        format!("250000000 {} {}", 64 << 20, 256 << 20)
    );
    // web: max_per_node pins each slot to the node drover chose (spread's label is implied)
    for n in 1..=2 {
        let web = format!("{f}-web-{n}");
        assert_eq!(
            inspect(&web, "{{json .Spec.TaskTemplate.Placement.Constraints}}"),
            format!("[\"node.id=={node_id}\"]"),
            "{web}"
        );
        assert_eq!(
            inspect(&web, "{{index .Spec.Labels \"drover.placement\"}}"),
            format!("node.id=={node_id}")
        );
    }

    // drover nodes: the one node, the fleet's 3 containers, kv's reservation; no headroom
    let (code, report, err) = master.drover_json(&["nodes"]);
    assert_eq!(code, 1, "one node cannot be lost: {err}");
    assert_eq!(report["engine"], "swarm", "{report}");
    assert_eq!(report["fleet"], f.as_str());
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{report}");
    let n = &nodes[0];
    assert_eq!((n["id"].as_str(), n["name"].as_str()), (Some(node_id.as_str()), Some(node.as_str())));
    assert_eq!((n["role"].as_str(), n["availability"].as_str()), (Some("manager"), Some("active")));
    assert_eq!(n["labels"][&zone], "a");
    assert_eq!(n["containers"], 3, "{n}");
    assert!(n["containers_total"].as_u64().unwrap() >= 3, "{n}\n{}", docker(&["node", "ps", &node_id]));
    let ncpu: f64 = docker(&["info", "--format", "{{.NCPU}}"]).trim().parse().unwrap();
    assert_eq!(n["cpus"].as_f64(), Some(ncpu), "{n}");
    assert!(n["memory"].as_u64().unwrap() > 64 << 20, "{n}");
    assert_eq!(n["reserved_cpus"].as_f64(), Some(0.25), "{n}");
    assert_eq!(n["reserved_memory"].as_u64(), Some(64 << 20), "{n}");
    assert_eq!(n["free_cpus"].as_f64(), Some(ncpu - 0.25), "{n}");
    assert_eq!(n["free_memory"].as_u64(), Some(n["memory"].as_u64().unwrap() - (64 << 20)), "{n}");
    assert_eq!(report["headroom"]["ok"], false);
    assert_eq!(report["headroom"]["verdict"], format!("no: one node ({node})").as_str());
    let text = String::from_utf8_lossy(&master.drover(&["nodes"]).stdout).to_string();
    assert!(text.lines().next().is_some_and(|h| h.starts_with("NODE")), "{text}");
    assert!(text.contains(&format!("{node} ")) && text.contains("3/"), "{text}");
    assert!(text.contains("can lose its largest node: no: one node"), "{text}");

    // a third web slot: at most 2 per node on one node; refused, nothing made
    let out = master.drover(&["scale", "web=3"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("role web wants 3 slots, but at most 2 per node on the 1 node(s) that may run it"),
        "{text}"
    );
    assert_eq!(scope.services().len(), 3, "{:?}", scope.services());

    // a role whose constraint no node satisfies: the whole up is refused, nothing made
    let file = placed_fleet_yaml(&f, "1")
        + &format!("  idle:\n    placement: {{constraints: [\"node.labels.{zone}==b\"]}}\n");
    repo.commit("a role for zone b", &[("fleet.yaml", &file)]);
    let out = master.drover(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains(&format!(
            "role idle cannot be placed: no active node satisfies its constraints (node.labels.{zone}==b)"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("nodes: {node} ({zone}=a)")), "{text}");
    assert_eq!(scope.services().len(), 3, "{:?}", scope.services());

    ok(&master.drover(&["down"]));
    assert!(scope.services().is_empty(), "{:?}", scope.services());
}
