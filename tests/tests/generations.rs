//! Two containers of one fleet slot, as in a start-first swap and its rollback: two real
//! minions with the same id and key (the pki dir copied, as the master copies a slot's
//! keypair into each of its containers), configured by environment variables alone, of
//! different generations. The higher generation gets the jobs; the lower one keeps its
//! daemon running, says so in its health, and is the minion again once the higher one stops.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{ConfigRepo, Master, Minion, pids_of, show, wait_until};

const LONG: Duration = Duration::from_secs(60);
const SLOT: &str = "coins-worker-1";
const WORKER: [&str; 2] = ["/bin/sleep", "3101"];

/// Which container answers for the slot: the `image_version` grain of the minion that ran
/// the job (each container has its own `DROVER_IMAGE_VERSION`).
fn answering_version(master: &Master) -> Value {
    let (_, v, _) = master.drover_json(&["-t", "5", "-L", SLOT, "grains.get", "image_version"]);
    v[SLOT].clone()
}

fn slot_status(master: &Master) -> Value {
    let minions = master.api("minions");
    minions.as_array().unwrap().iter().find(|m| m["id"] == json!(SLOT)).cloned().unwrap_or(Value::Null)
}

#[test]
fn the_higher_generation_gets_the_jobs_and_the_lower_one_takes_over_when_it_stops() {
    let repo = ConfigRepo::new();
    let commit = repo.commit(
        "a worker",
        &[
            ("roles/top.yaml", "'coins-worker-*': [worker]\n"),
            ("roles/worker.yaml", "states: [coins.worker]\n"),
            (
                "states/coins/worker.yaml",
                "worker:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3101\"]\n",
            ),
        ],
    );
    let master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let container = |generation: &str, version: &str| {
        let env = [
            ("DROVER_GENERATION", generation),
            ("DROVER_IMAGE", "coins"),
            ("DROVER_IMAGE_VERSION", version),
            ("DROVER_CONTAINER", "1"),
            ("DROVER_FLEET", "coins"),
            ("DROVER_SLOT", SLOT),
        ];
        Minion::container(&master, SLOT, &env)
    };

    // the first container: connected, converged, its daemon healthy
    let mut old = container("1", "1.0");
    old.restart();
    master.wait_for_minions(1);
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    wait_until(LONG, "the first container to be healthy", || old.health().0 == 0);
    let (_, health) = old.health();
    assert_eq!(health["connected"], json!(true), "{health}");
    assert_eq!(health["converged"], json!(true), "{health}");
    assert_eq!(health["commit"], json!(commit), "{health}");
    assert_eq!(health["problem"], Value::Null, "{health}");
    assert_eq!(
        health["daemons"],
        json!([{"name": "worker", "state": "running", "healthy": true, "problem": null}])
    );
    wait_until(LONG, "the master to show it healthy", || slot_status(&master)["healthy"] == json!(true));
    let (_, grains, _) = master.drover_json(&["-L", SLOT, "grains.items"]);
    for (grain, want) in [
        ("image", json!("coins")),
        ("image_version", json!("1.0")),
        ("container", json!(true)),
        ("fleet", json!("coins")),
        ("slot", json!(SLOT)),
    ] {
        assert_eq!(grains[SLOT][grain], want, "grain {grain}: {grains}");
    }

    // the second container of the slot, a higher generation: it takes the session
    let mut new = container("2", "2.0");
    new.copy_keys_from(&old);
    new.restart();
    wait_until(LONG, "the jobs to go to the new container", || answering_version(&master) == json!("2.0"));
    wait_until(LONG, "the new container to be healthy", || new.health().0 == 0);
    for _ in 0..3 {
        assert_eq!(answering_version(&master), json!("2.0"));
    }
    // the old one is superseded, not gone: its daemon still runs, it says so in its health
    wait_until(LONG, "both workers to run", || pids_of(&WORKER).len() == 2);
    let (code, health) = old.health();
    assert_eq!(code, 1, "{health}");
    assert_eq!(health["connected"], json!(false), "{health}");
    assert!(health["problem"].as_str().unwrap().contains("superseded by generation 2"), "{health}");
    assert_eq!(health["daemons"][0]["state"], json!("running"), "{health}");

    // the new container goes away (a rollback): the old one is the minion again
    new.stop();
    wait_until(LONG, "the jobs to go to the old container again", || {
        answering_version(&master) == json!("1.0")
    });
    wait_until(LONG, "the old container to be healthy again", || old.health().0 == 0);
    wait_until(LONG, "the master to show it healthy again", || {
        slot_status(&master)["healthy"] == json!(true)
    });
    wait_until(LONG, "the new container's worker to stop with it", || pids_of(&WORKER).len() == 1);
    let log = old.log();
    assert_eq!(log.matches("superseded: another container").count(), 1, "logged once:\n{log}");

    // no minion, no answer
    old.stop();
    assert_eq!(old.health().0, 2);
}
