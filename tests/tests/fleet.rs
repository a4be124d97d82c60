//! The container fleet end to end, on the real Docker engine: `drover image build`, `up`,
//! `ps`, `nodes`, `upgrade` (healthy and broken), `scale`, chaos and healing, a master killed in
//! the middle of a rollout, `down`. Each test's fleet, images, network and volumes carry
//! its own name ([`Scope`]) and are removed when it ends, passed or failed.
//!
//! The fleet of these tests is `tests::fleet::TestFleet`'s, with images 1 to 3 (3 is broken).

use std::time::Duration;

use tests::docker::{Scope, docker, required};
use tests::fleet::{TestFleet, daemons, ok, ps, slot, versions};
use tests::{ConfigRepo, Master, show, wait_until};

/// The fleet of these tests, with images 1 to 3.
fn setup(what: &str) -> TestFleet {
    TestFleet::new(what, &["1", "2", "3"])
}

#[test]
fn up_ps_upgrade_and_down() {
    if !required() {
        return;
    }
    let TestFleet { scope, master, repo: _repo, .. } = setup("up");
    let f = scope.fleet.clone();

    // up: every slot connected, converged and healthy
    let out = master.drover(&["up", "--timeout", "120"]);
    ok(&out);
    let slots = ps(&master);
    assert_eq!(slots.len(), 5, "{slots:?}");
    for s in &slots {
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["connected"], true, "{s}");
        assert!(s["converged"].is_string(), "{s}");
        assert_eq!(s["version"], "1", "{s}");
    }
    assert_eq!(scope.containers().len(), 5);
    // drover nodes: the one engine as the one node, with the fleet's 5 containers; no headroom
    let (code, report, err) = master.drover_json(&["nodes"]);
    assert_eq!(code, 1, "one node cannot be lost: {err}");
    assert_eq!(report["engine"], "local", "{report}");
    let nodes = report["nodes"].as_array().expect("a list of nodes");
    assert_eq!(nodes.len(), 1, "{report}");
    let n = &nodes[0];
    let info = docker(&["info", "--format", "{{.Name}} {{.NCPU}} {{.MemTotal}}"]);
    let info: Vec<&str> = info.split_whitespace().collect();
    assert_eq!(n["name"], info[0], "{n}");
    assert_eq!(n["cpus"].as_f64(), info[1].parse().ok(), "{n}");
    assert_eq!(n["memory"].as_u64(), info[2].parse().ok(), "{n}");
    assert_eq!(n["containers"], 5, "{n}");
    assert!(n["containers_total"].as_u64().unwrap() >= 5, "{n}");
    assert_eq!((n["reserved_cpus"].as_f64(), n["free_cpus"].as_f64()), (Some(0.0), n["cpus"].as_f64()));
    assert_eq!(report["headroom"]["verdict"], format!("no: one node ({})", info[0]).as_str());
    // each container runs exactly its role's daemons
    assert_eq!(daemons(&master, &format!("{f}-kv-1")), ["kv"]);
    assert_eq!(daemons(&master, &format!("{f}-web-2")), ["web"]);
    assert!(daemons(&master, &format!("{f}-idle-1")).is_empty());
    // its key was never pending: enrolled by the master
    let keys = master.drover(&["key", "list"]);
    assert!(!String::from_utf8_lossy(&keys.stdout).contains("pending"), "{}", show(&keys));
    // docker itself shows the minion's health check
    wait_until(Duration::from_secs(60), "docker to call every container healthy", || {
        scope.containers().len() == 5
            && docker(&["ps", "--filter", &format!("label={}", scope.label()), "--format", "{{.Status}}"])
                .lines()
                .all(|l| l.contains("(healthy)"))
    });

    // up again changes nothing
    let before = docker(&["ps", "-q", "--filter", &format!("label={}", scope.label())]);
    let out = master.drover(&["up"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to change"), "{}", show(&out));
    assert_eq!(docker(&["ps", "-q", "--filter", &format!("label={}", scope.label())]), before);

    // data on the kv slot's volume, written under version 1
    let kv = format!("{f}-kv-1");
    let out = master.drover(&["-L", &kv, "cmd.run", "sh -c 'echo written-by-1 > /data/mark'"]);
    ok(&out);

    // upgrade to 2, one slot at a time: same slots, the data is still there
    let out = master.drover(&["upgrade", "--to", "2", "--batch", "1"]);
    ok(&out);
    assert!(versions(&master).iter().all(|(_, v)| v == "2"), "{:?}", versions(&master));
    let (code, v, err) = master.drover_json(&["-L", &kv, "cmd.run", "cat /data/mark"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v[&kv].as_str().map(str::trim), Some("written-by-1"), "{v}");
    assert_eq!(scope.containers().len(), 5, "{:?}", scope.containers());

    // a broken 3: the first batch is rolled back, the other slots never touched, exit 1
    // naming the daemon and what it said
    let out = master.drover(&["upgrade", "web", "--to", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains("rolled-back"), "{text}");
    assert!(text.contains(&format!("{f}-web-1 failed to become ready at 3")), "{text}");
    // the daemon named, and its own last words
    assert!(text.contains("web exited with code 3"), "{text}");
    assert!(text.contains("cannot start: no such config"), "{text}");
    assert!(versions(&master).iter().all(|(_, v)| v == "2"), "{:?}", versions(&master));
    let (code, rollouts, _) = master.drover_json(&["rollout", "status"]);
    assert_eq!(code, 1);
    assert_eq!(rollouts[0]["state"], "rolled-back");
    let touched: Vec<&str> = rollouts[0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "pending")
        .map(|s| s["slot"].as_str().unwrap())
        .collect();
    assert_eq!(touched, [format!("{f}-web-1")]);

    // down: no container or network left; the volume stays without --volumes
    let out = master.drover(&["down"]);
    ok(&out);
    assert!(scope.containers().is_empty(), "{:?}", scope.containers());
    assert!(scope.networks().is_empty());
    assert_eq!(scope.volumes().len(), 1);
    assert!(ps(&master).is_empty());
    // a second down, with --volumes, removes what the first one kept
    let out = master.drover(&["down", "--volumes"]);
    ok(&out);
    assert!(scope.volumes().is_empty(), "{:?}", scope.volumes());
}

#[test]
fn chaos_kills_are_healed_in_their_slots() {
    if !required() {
        return;
    }
    let TestFleet { scope, master, repo: _repo, .. } = setup("chaos");
    ok(&master.drover(&["up", "--timeout", "120"]));
    let f = scope.fleet.clone();
    let kv = format!("{f}-kv-1");
    ok(&master.drover(&["-L", &kv, "cmd.run", "sh -c 'echo survives > /data/mark'"]));
    let ids = |scope: &Scope| docker(&["ps", "-q", "--filter", &format!("label={}", scope.label())]);
    let before = ids(&scope);

    let out = master.drover(&["chaos", "kill", "--every", "2s", "--for", "6s"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("killed 3 containers"), "{}", show(&out));

    // each is replaced in its slot: all ready again, with new containers
    wait_until(Duration::from_secs(90), "every slot ready again", || {
        let slots = ps(&master);
        slots.len() == 5
            && slots
                .iter()
                .all(|s| s["state"] == "running" && s["connected"] == true && s["converged"].is_string())
    });
    assert_ne!(ids(&scope), before);
    assert_eq!(scope.containers().len(), 5);
    // the kv slot kept its volume (when chaos picked it, and anyway)
    let (_, v, _) = master.drover_json(&["-L", &kv, "cmd.run", "cat /data/mark"]);
    assert_eq!(v[&kv].as_str().map(str::trim), Some("survives"));
    let (_, events, _) = master.drover_json(&["events", "--no-follow"]);
    let _ = events;
    ok(&master.drover(&["down", "--volumes"]));
}

#[test]
fn a_master_killed_in_a_rollout_resumes_it_and_leaves_no_slot_empty() {
    if !required() {
        return;
    }
    let TestFleet { scope, mut master, repo: _repo, .. } = setup("resume");
    ok(&master.drover(&["up", "--timeout", "120"]));
    let f = scope.fleet.clone();

    // an upgrade of web, killed (kill -9) once its second batch started
    let mut cmd = std::process::Command::new(tests::bin("drover"));
    cmd.arg("--dir").arg(master.state_dir()).args(["upgrade", "web", "--to", "2"]);
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_until(Duration::from_secs(90), "the second batch to start", || {
        master.log().contains("rollout/1/batch") || {
            let (_, v, _) = master.drover_json(&["rollout", "status"]);
            v[0]["batches"].as_u64().unwrap_or(0) >= 2
        }
    });
    master.kill9();
    drop(child);
    master.restart();

    // it resumes: every web slot ends at 2, none empty
    wait_until(Duration::from_secs(120), "the rollout to finish after the restart", || {
        let (_, v, _) = master.drover_json(&["rollout", "status"]);
        v[0]["state"] == "done"
    });
    wait_until(Duration::from_secs(60), "every slot ready", || {
        let slots = ps(&master);
        slots.len() == 5 && slots.iter().all(|s| s["connected"] == true)
    });
    let v = versions(&master);
    assert!(v.iter().filter(|(s, _)| s.starts_with(&format!("{f}-web"))).all(|(_, v)| v == "2"), "{v:?}");
    assert_eq!(scope.containers().len(), 5, "{:?}", scope.containers());
    assert!(master.log().contains("resum"), "the master says it resumed");
    ok(&master.drover(&["down", "--volumes"]));
}

#[test]
fn scale_and_refusals() {
    if !required() {
        return;
    }
    let TestFleet { scope, master, repo: _repo, .. } = setup("scale");
    ok(&master.drover(&["up", "--timeout", "120"]));
    let f = scope.fleet.clone();
    ok(&master.drover(&["scale", "web=4"]));
    let slots = ps(&master);
    assert_eq!(slots.len(), 6);
    assert!(slot(&slots, &format!("{f}-web-4"))["drift"].as_str().unwrap().contains("3 replicas"));
    ok(&master.drover(&["scale", "web=1"]));
    assert_eq!(ps(&master).len(), 3);

    // refusals: exit 2, one clear line, nothing changed
    let out = master.drover(&["upgrade", "web", "--to", "9"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("does not exist (versions built: 1, 2, 3)"), "{}", show(&out));
    let out = master.drover(&["scale", "nope=2"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // a container drover did not make, named like a slot, is never touched
    let name = format!("{f}-web-2");
    let made = docker(&["create", "--name", &name, &format!("{f}-app:1"), "true"]);
    assert!(!made.trim().is_empty());
    let out = master.drover(&["scale", "web=2"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("a container named {name} exists that drover did not create")),
        "{}",
        show(&out)
    );
    docker(&["rm", "-f", &name]);
    ok(&master.drover(&["down", "--volumes"]));
}

#[test]
fn no_docker_engine_is_one_line_and_exit_2() {
    // no engine needed: the master is pointed at one that does not exist
    let repo = ConfigRepo::new();
    repo.commit(
        "a fleet",
        &[
            ("fleet.yaml", "fleet: nodocker\nimage: app\nversion: \"1\"\nroles:\n  web: {}\n"),
            ("roles/web.yaml", "states: []\n"),
        ],
    );
    let master = Master::start_with_env(
        &["--repo", repo.path().to_str().unwrap()],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    for args in [&["ps"][..], &["up"], &["upgrade", "--to", "2"], &["down"], &["rollout", "status"]] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
            "{args:?}: {err}"
        );
    }
    // the master still serves plain hosts
    let out = master.drover(&["key", "list"]);
    assert!(out.status.success(), "{}", show(&out));
}

/// The test fleet segmented: `kv` on the extra network `data` only, `web` on the fleet's
/// network and `data`, `idle` on the fleet's network only.
fn segmented_yaml(fleet: &str, version: &str) -> String {
    format!(
        "fleet: {fleet}\nimage: {fleet}-app\nversion: \"{version}\"\nnetworks: [data]\nroles:\n  \
         kv: {{replicas: 1, volumes: [/data], networks: [data], update: {{min_healthy: 1s}}}}\n  \
         web: {{replicas: 2, networks: [default, data], update: {{min_healthy: 1s}}}}\n  \
         idle: {{replicas: 1}}\n"
    )
}

/// What `sh -c "<script>"` prints on `slot`, trimmed.
fn run_on(master: &Master, slot: &str, script: &str) -> String {
    let (code, v, err) = master.drover_json(&["-L", slot, "cmd.run", &format!("sh -c '{script}'")]);
    assert_eq!(code, 0, "{script} on {slot}: {err} {v}");
    v[slot].as_str().unwrap_or_else(|| panic!("{slot}: {v}")).trim().to_string()
}

#[test]
fn per_role_networks_segment_the_fleet() {
    if !required() {
        return;
    }
    let TestFleet { scope, master, repo: _repo, .. } = TestFleet::with_file("nets", &["1"], segmented_yaml);
    let f = scope.fleet.clone();
    ok(&master.drover(&["up", "--timeout", "120"]));
    // every minion, kv's too (on `data` only), reached the master and converged
    let slots = ps(&master);
    assert_eq!(slots.len(), 4, "{slots:?}");
    for s in &slots {
        assert_eq!(s["connected"], true, "{s}");
        assert!(s["converged"].is_string(), "{s}");
    }
    // the extra network is <fleet>-data, with the fleet's label
    let data = format!("{f}-data");
    let nets =
        docker(&["network", "ls", "--filter", &format!("label={}", scope.label()), "--format", "{{.Name}}"]);
    let mut nets: Vec<&str> = nets.lines().collect();
    nets.sort();
    assert_eq!(nets, [f.as_str(), data.as_str()]);
    let kv = format!("{f}-kv-1");
    let attached =
        docker(&["inspect", "--format", "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{end}}", &kv]);
    assert_eq!(attached.trim(), data, "kv is on {data} only");

    // whether `name` resolves in `slot`'s container
    let resolves = |slot: &str, name: &str| {
        run_on(&master, slot, &format!("getent hosts {name} >/dev/null && echo resolved || echo unresolved"))
            == "resolved"
    };
    // web (default + data) resolves kv by its role's name and reaches it
    let web = format!("{f}-web-1");
    assert!(resolves(&web, "kv"), "web resolves kv");
    assert_eq!(
        run_on(&master, &web, "busybox ping -c 1 -W 5 kv >/dev/null && echo reached || echo unreached"),
        "reached"
    );
    // kv (data only) reaches web's HTTP daemon by name over data
    // (a TCP connection from bash: busybox's wget crashes on this image)
    let connect = "timeout 5 bash -c \"echo > /dev/tcp/web/8080\" && echo reached || echo unreached";
    let mut answer = String::new();
    for _ in 0..15 {
        answer = run_on(&master, &kv, connect);
        if answer == "reached" {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(answer, "reached", "kv connecting to web:8080");
    // idle (default only) resolves web but not kv
    let idle = format!("{f}-idle-1");
    assert!(resolves(&idle, "web"), "idle resolves web");
    assert!(!resolves(&idle, "kv"), "idle does not resolve kv");

    // down takes both networks
    ok(&master.drover(&["down", "--volumes"]));
    assert!(scope.containers().is_empty(), "{:?}", scope.containers());
    assert!(scope.networks().is_empty(), "{:?}", scope.networks());
}
