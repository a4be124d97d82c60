//! Keys: an unaccepted minion runs nothing; after `key accept` it runs; a second process
//! claiming an accepted id with another key is refused and reported.

use std::time::Duration;

use serde_json::json;
use tests::{Master, Minion, show, wait_until};

fn key_state(master: &Master, id: &str) -> Option<String> {
    let (_, v, _) = master.drover_json(&["key", "list"]);
    v["keys"]
        .as_array()?
        .iter()
        .find(|k| k["id"] == json!(id))
        .map(|k| k["state"].as_str().unwrap_or("").to_string())
}

#[test]
fn unaccepted_keys_run_nothing_until_accepted() {
    let master = Master::start(&[]);
    let minion = Minion::start(&master, "m1", &[]);
    wait_until(Duration::from_secs(20), "m1's key to be pending", || {
        key_state(&master, "m1").as_deref() == Some("pending")
    });
    let marker = minion.dir.path().join("ran");
    let marker = marker.to_str().unwrap();

    // Not accepted: no target selects it, so no job can reach it.
    for target in [&["*"][..], &["-L", "m1"], &["m1"]] {
        let mut args = target.to_vec();
        args.extend(["cmd.run", "touch", marker]);
        let out = master.drover(&args);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    }
    // and the minion was never told to run it: wait a few of its heartbeats to be sure
    std::thread::sleep(Duration::from_secs(2));
    assert!(!std::path::Path::new(marker).exists(), "an unaccepted minion ran a command");
    assert!(!minion.log().contains("touch"), "an unaccepted minion got a job:\n{}", minion.log());

    let out = master.drover(&["key", "accept", "m1"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(key_state(&master, "m1").as_deref(), Some("accepted"));
    master.wait_for_minions(1);
    let (code, _, stderr) = master.drover_json(&["m1", "cmd.run", "touch", marker]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::path::Path::new(marker).exists());

    // rejecting cuts it off again; an unknown id is a usage error
    let out = master.drover(&["key", "reject", "m1"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = master.drover(&["m1", "test.ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = master.drover(&["key", "accept", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // the key files are there to inspect with ls
    assert!(master.state_dir().join("pki/rejected/m1").exists());
}

#[test]
fn a_second_key_for_an_accepted_id_is_refused_and_reported() {
    let master = Master::start(&[]);
    let real = Minion::start(&master, "m1", &[]);
    wait_until(Duration::from_secs(20), "m1's key to be pending", || {
        key_state(&master, "m1").as_deref() == Some("pending")
    });
    master.drover(&["key", "accept", "--all"]);
    master.wait_for_minions(1);
    let (_, before, _) = master.drover_json(&["key", "list"]);

    // another process, another key (its own dir), the same id
    let impostor = Minion::start(&master, "m1", &["--grain", "impostor=yes"]);
    wait_until(Duration::from_secs(20), "the master to report the impostor", || {
        master.log().contains("another key is registered for this id")
    });
    wait_until(Duration::from_secs(20), "the impostor to be told it is refused", || {
        impostor.log().contains("another key is registered")
    });
    // the accepted key did not change, and jobs still reach only the real minion
    let (_, after, _) = master.drover_json(&["key", "list"]);
    assert_eq!(before, after);
    for _ in 0..5 {
        let (code, v, _) = master.drover_json(&["m1", "grains.get", "impostor"]);
        assert_eq!((code, &v), (0, &json!({"m1": ""})));
    }
    drop(real);
}

#[test]
fn keys_moved_by_hand_take_effect() {
    let master = Master::start(&[]);
    let minion = Minion::start(&master, "m1", &[]);
    wait_until(Duration::from_secs(20), "m1's key to be pending", || {
        key_state(&master, "m1").as_deref() == Some("pending")
    });
    master.drover(&["key", "accept", "m1"]);
    master.wait_for_minions(1);
    let told = minion.log().matches("key not accepted yet").count();
    let pki = master.state_dir().join("pki");
    std::fs::rename(pki.join("accepted/m1"), pki.join("pending/m1")).unwrap();
    // the session ends; the minion says hello again and is told its key waits
    wait_until(Duration::from_secs(20), "the minion to be told its key is pending", || {
        minion.log().matches("key not accepted yet").count() > told
    });
    let out = master.drover(&["m1", "test.ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = master.drover(&["key", "accept", "m1"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    master.wait_for_minions(1);
}

#[test]
fn a_grain_listed_in_autosign_grains_accepts_a_key_and_an_unsafe_file_does_not() {
    use std::os::unix::fs::PermissionsExt;

    let master = Master::start(&[]);
    let dir = master.state_dir().join("autosign_grains");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("tier"), "# frontends join by themselves\nfront\n").unwrap();
    std::fs::write(dir.join("rack"), "r1\n").unwrap();
    std::fs::set_permissions(dir.join("rack"), std::fs::Permissions::from_mode(0o666)).unwrap();

    let _front = Minion::start(&master, "m1", &["--grain", "tier=front"]);
    let _back = Minion::start(&master, "m2", &["--grain", "tier=back"]);
    let _racked = Minion::start(&master, "m3", &["--grain", "rack=r1"]);
    master.wait_for_minions(1);
    assert_eq!(key_state(&master, "m1").as_deref(), Some("accepted"));
    assert_eq!(master.ping(&["*"]), ["m1"]);
    wait_until(Duration::from_secs(20), "m2 and m3 to wait in pending", || {
        key_state(&master, "m2").as_deref() == Some("pending")
            && key_state(&master, "m3").as_deref() == Some("pending")
    });
    // the world-writable file is named, and accepted nobody
    wait_until(Duration::from_secs(20), "the master to warn of the unsafe file", || {
        master.log().contains("is writable by everyone (mode 666)")
    });
    assert_eq!(key_state(&master, "m3").as_deref(), Some("pending"));
    assert!(master.log().contains("key accepted by a grain (autosign)"), "{}", master.log());

    // the event says why
    let out = master.drover(&[
        "--out",
        "json",
        "events",
        "--since",
        "0",
        "--no-follow",
        "--tag",
        "drover/key/autosign",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((&events[0]["data"]["id"], &events[0]["data"]["grain"]), (&json!("m1"), &json!("tier")));
    assert_eq!(events[0]["data"]["value"], json!("front"));

    // a pending minion is accepted at its next hello once its value is listed
    std::fs::write(dir.join("tier"), "front\nback\n").unwrap();
    master.wait_for_minions(2);
    assert_eq!(master.ping(&["*"]), ["m1", "m2"]);
    assert_eq!(key_state(&master, "m3").as_deref(), Some("pending"));
}
