//! What an accepted minion may not do to the master: returns for jobs it was not sent,
//! returns too large or too many, events in the master's name, unread queues, too many
//! new keys, a hello too large to read.

use std::time::Duration;

use serde_json::json;
use tests::{Master, RawMinion, minions, show, wait_until};
use wire::{Jid, JobReturn, MinionId, ToMaster, ToMinion};

const LIMIT: Duration = Duration::from_secs(30);

/// Starts `fun ARGS` on `target` without waiting; returns its jid.
fn start_async(master: &Master, target: &[&str], fun: &str, args: &[&str]) -> String {
    let mut all = vec!["--async"];
    all.extend(target);
    all.push(fun);
    all.extend(args);
    let out = master.drover(&all);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().find(|w| Jid::is_valid(w)).unwrap_or_else(|| panic!("{}", show(&out))).to_string()
}

fn a_return(jid: &str, id: &MinionId, ret: serde_json::Value) -> ToMaster {
    ToMaster::Return(JobReturn {
        jid: Jid(jid.to_string()),
        id: id.clone(),
        fun: "test.ping".into(),
        success: true,
        retcode: 0,
        ret,
        started_ms: 0,
        finished_ms: 0,
        killed: false,
    })
}

#[test]
fn a_return_for_a_job_not_sent_to_that_minion_is_not_stored() {
    let master = Master::start(&["--auto-accept"]);
    let _ok = minions(&master, "ok", 1, &[]);
    master.wait_for_minions(1);
    let intruder = RawMinion::welcomed(&master, "intruder");

    // a job for ok-01 only, still running: the intruder answers it as itself
    let jid = start_async(&master, &["-L", "ok-01"], "test.sleep", &["1.5"]);
    intruder.send(&a_return(&jid, &intruder.id, json!("forged")));
    // it is told to stop resending (acknowledged), but nothing is stored
    assert!(
        intruder.recv_until(LIMIT, |m| matches!(m, ToMinion::Ack { jid: j } if j.as_str() == jid)).is_some(),
        "the refused return was not acknowledged"
    );
    wait_until(LIMIT, "ok-01's return", || {
        let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
        v["returns"]["ok-01"].is_object()
    });
    let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
    assert_eq!(v["returns"].as_object().unwrap().keys().collect::<Vec<_>>(), ["ok-01"], "{v}");
    assert_eq!((v["returned"].clone(), v["targeted"].clone()), (json!(1), json!(1)), "{v}");

    // once the job is over, the store decides: still not a minion it targeted
    intruder.send(&a_return(&jid, &intruder.id, json!("late forgery")));
    // under a made-up jid: no job appears, and nothing is stored
    let made_up = Jid::generate();
    intruder.send(&a_return(made_up.as_str(), &intruder.id, json!("made up")));
    assert!(
        intruder.recv_until(LIMIT, |m| matches!(m, ToMinion::Ack { jid } if *jid == made_up)).is_some(),
        "the made-up return was not acknowledged"
    );
    assert_eq!(master.count("SELECT COUNT(*) FROM returns WHERE minion = 'intruder'"), 0);
    assert_eq!(master.count(&format!("SELECT COUNT(*) FROM returns WHERE jid = '{made_up}'")), 0);
    let out = master.drover(&["jobs", "show", made_up.as_str()]);
    assert_ne!(out.status.code(), Some(0), "a job appeared under a made-up jid: {}", show(&out));
    wait_until(LIMIT, "the master to log the drops", || {
        master.log().contains("return for a job not sent to it") && master.log().contains("intruder")
    });
}

#[test]
fn a_return_too_large_is_stored_as_a_failure_saying_so() {
    let master = Master::start(&["--auto-accept"]);
    let big = RawMinion::welcomed(&master, "big");
    let jid = start_async(&master, &["-L", "big"], "test.ping", &[]);
    assert!(big.recv_until(LIMIT, |m| matches!(m, ToMinion::Job(_))).is_some(), "the job did not come");
    big.send(&a_return(&jid, &big.id, json!("x".repeat(5 << 20))));
    wait_until(LIMIT, "big's return", || {
        let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
        v["returns"]["big"].is_object()
    });
    let (_, v, _) = master.drover_json(&["jobs", "show", &jid]);
    let ret = &v["returns"]["big"];
    assert_eq!(ret["success"], json!(false), "{ret}");
    let text = ret["ret"].as_str().unwrap_or_default();
    assert!(text.contains("over the 4096 KiB the master keeps for one return"), "{text:.200}");
}

#[test]
fn a_flood_of_returns_is_cut_by_the_rate_limit_and_stores_nothing() {
    let master = Master::start(&["--auto-accept"]);
    let flooder = RawMinion::welcomed(&master, "flooder");
    let payload = json!("y".repeat(1000));
    for _ in 0..3000 {
        flooder.send(&a_return(Jid::generate().as_str(), &flooder.id, payload.clone()));
    }
    wait_until(LIMIT, "the master to log returns over the rate limit", || {
        master.log().contains("returns over the rate limit")
    });
    assert_eq!(master.count("SELECT COUNT(*) FROM returns"), 0);
    assert_eq!(master.count("SELECT COUNT(*) FROM jobs"), 0);
    // and it still serves
    let _ok = minions(&master, "ok", 1, &[]);
    master.wait_for_minions(1);
}

#[test]
fn a_minion_s_events_are_filed_under_its_own_name_and_limited() {
    let master = Master::start(&["--auto-accept"]);
    let evil = RawMinion::welcomed(&master, "evil");
    let event = |tag: &str| {
        ToMaster::Event(wire::Event { tag: tag.into(), data: json!({"id": "web-1"}), time_ms: 0 })
    };
    evil.send(&event("drover/key/delete"));
    evil.send(&event("drover/minion/disconnected"));
    evil.send(&event("daemon/web/crashed"));
    wait_until(LIMIT, "the events to be stored", || {
        master.count("SELECT COUNT(*) FROM events WHERE minion = 'evil' AND tag LIKE '%crashed'") == 1
    });
    let tags = |pattern: &str| master.count(&format!("SELECT COUNT(*) FROM events WHERE tag = '{pattern}'"));
    assert_eq!(tags("drover/key/delete"), 0, "a minion wrote an event in the master's name");
    assert_eq!(tags("drover/minion/evil/drover/key/delete"), 1);
    assert_eq!(tags("drover/minion/evil/drover/minion/disconnected"), 1);
    assert_eq!(tags("drover/minion/evil/daemon/web/crashed"), 1);
    // the master's own events about it keep their tags
    assert_eq!(tags("drover/minion/connected"), 1);

    // a flood of events is cut
    for i in 0..3000 {
        evil.send(&event(&format!("flood/{i}")));
    }
    wait_until(LIMIT, "the master to log events over the rate limit", || {
        master.log().contains("events over the rate limit")
    });
    let stored = master.count("SELECT COUNT(*) FROM events WHERE tag LIKE 'drover/minion/evil/flood/%'");
    assert!(stored < 3000, "{stored} of 3000 flooded events stored");
}

#[test]
fn pending_keys_are_capped_and_a_refused_minion_says_why() {
    let master = Master::start(&[]);
    let pending = master.state_dir().join("pki/pending");
    for i in 0..1000 {
        let key = wire::KeyPair::generate().unwrap().public;
        std::fs::write(pending.join(format!("p{i:04}")), format!("{key}\n")).unwrap();
    }
    // keys put by hand are read within a second of their folder changing
    wait_until(LIMIT, "the master to list the keys put by hand", || {
        String::from_utf8_lossy(&master.drover(&["key", "list"]).stdout).contains("p0999")
    });
    let late = tests::Minion::start(&master, "late", &[]);
    wait_until(LIMIT, "the late minion to log why it is refused", || {
        late.log().contains("keys waiting for acceptance (its limit is 1000)")
    });
    assert!(!pending.join("late").exists(), "a key past the cap was recorded");
    wait_until(LIMIT, "the master to log the refusal", || {
        master.log().contains("pending keys at their limit")
    });

    // accepting them all says how many
    let out = master.drover(&["key", "accept", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("accepted 1000 keys\n"), "{}", show(&out));
    // room again: a new key waits
    let next = RawMinion::hello(&master, "next", json!({}));
    assert!(
        next.recv_until(LIMIT, |m| matches!(m, ToMinion::Pending)).is_some(),
        "next was not told it waits"
    );
}

#[test]
fn a_minion_whose_hello_is_too_large_is_told_why_and_named() {
    let master = Master::start(&["--auto-accept"]);
    let mut m = tests::Minion::start(&master, "grainy", &[]);
    master.wait_for_minions(1);
    m.stop();
    let huge = "z".repeat(300 << 10);
    std::fs::write(m.state_dir().join("grains.yaml"), format!("notes: {huge}\n")).unwrap();
    m.restart();
    wait_until(LIMIT, "the minion to log the master's reason", || {
        m.log().contains("the master reads at most 256 KiB from a minion before it is welcomed")
    });
    wait_until(LIMIT, "the master to name it", || {
        master
            .log()
            .lines()
            .any(|l| l.contains("grainy/…") && l.contains("frame over 256 KiB before a session"))
    });
}

#[test]
fn a_minion_that_fetches_without_reading_cannot_fill_the_master_s_memory() {
    // a role whose file is 4 MiB, given to "hog"
    let repo = tests::ConfigRepo::new();
    let blob: String = (0..4 << 20).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    repo.commit(
        "big file",
        &[
            ("roles/top.yaml", "'hog': [big]\n"),
            ("roles/big.yaml", "states: [big.file]\n"),
            (
                "states/big/file.yaml",
                "blob:\n  file.managed:\n    - name: /tmp/blob\n    - source: big/blob.txt\n",
            ),
            ("states/big/blob.txt", &blob),
        ],
    );
    let mut master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let _ok = minions(&master, "ok", 1, &[]);
    master.wait_for_minions(1);
    // it reads nothing: its socket holds one message and a small kernel buffer
    let unread = |s: &zmq::Socket| {
        s.set_rcvhwm(1).unwrap();
        s.set_rcvbuf(4096).unwrap();
    };
    let hog = RawMinion::connect_with(&master, "hog", unread);
    hog.send_hello(json!({}));
    let accepted = master.state_dir().join("pki/accepted/hog");
    wait_until(LIMIT, "hog to be accepted", || accepted.exists());
    let out = master.drover(&["roles", "apply", "--async"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let pid = master.pid().unwrap();
    let before = tests::rss_kib(pid);
    let fetch = ToMaster::Fetch { sha256: vec![wire::msg::sha256_hex(blob.as_bytes())] };
    for _ in 0..150 {
        hog.send(&fetch);
    }
    // 150 answers of 4 MiB would be 600 MiB; the master keeps far less, and drops hog
    let bound = 200 << 10;
    let mut peak = before;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !master.log().contains("reason=did not read what the master sent") {
        peak = peak.max(tests::rss_kib(pid));
        assert!(peak < bound, "the master's RSS reached {peak} KiB (from {before} KiB)");
        assert!(std::time::Instant::now() < deadline, "hog was not dropped:\n{}", master.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // it keeps serving the others, and stays bounded meanwhile
    for _ in 0..3 {
        assert_eq!(master.ping(&["ok-01"]), ["ok-01"]);
        peak = peak.max(tests::rss_kib(pid));
    }
    assert!(peak < bound, "the master's RSS reached {peak} KiB (from {before} KiB)");
    eprintln!("the master's RSS: {before} KiB before the fetches, {peak} KiB at most after");

    // hog is refused while the master still holds what it sent it; once that connection
    // closed, hog (its key, a new connection) is taken back
    let keys = hog.keys.clone();
    let again = RawMinion::connect_as(&master, "hog", keys.clone(), |_| {});
    again.send_hello(json!({}));
    match again.recv(LIMIT) {
        Some(ToMinion::Refused { reason }) => assert!(reason.contains("did not read"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop((hog, again));
    wait_until(LIMIT, "hog to be welcomed again", || {
        let m = RawMinion::connect_as(&master, "hog", keys.clone(), |_| {});
        m.send_hello(json!({}));
        matches!(m.recv(Duration::from_secs(2)), Some(ToMinion::Welcome { .. }))
    });
    master.stop();
}

#[test]
fn a_manifest_larger_than_a_connection_s_queue_is_served_in_full_to_a_minion_that_reads() {
    // twelve files of 4 MiB: 48 MiB, more than the master queues for one connection
    let repo = tests::ConfigRepo::new();
    let blobs: Vec<String> = (0..12u8)
        .map(|n| (0..4 << 20).map(|i| char::from(b'a' + ((i * 7 + n as usize) % 26) as u8)).collect())
        .collect();
    let mut files = vec![
        ("roles/top.yaml".to_string(), "'reader': [big]\n".to_string()),
        ("roles/big.yaml".to_string(), "states: [big.files]\n".to_string()),
    ];
    let mut states = String::new();
    for (n, blob) in blobs.iter().enumerate() {
        states += &format!("f{n}:\n  file.managed:\n    - name: /tmp/f{n}\n    - source: big/f{n}.txt\n");
        files.push((format!("states/big/f{n}.txt"), blob.clone()));
    }
    files.push(("states/big/files.yaml".to_string(), states));
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    repo.commit("big files", &files);
    let master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let reader = RawMinion::welcomed(&master, "reader");
    let out = master.drover(&["roles", "apply", "--async"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let Some(ToMinion::Assign(a)) = reader.recv_until(LIMIT, |m| matches!(m, ToMinion::Assign(_))) else {
        panic!("no assignment")
    };
    let wanted: std::collections::BTreeSet<String> = a.files.values().cloned().collect();
    reader.send(&ToMaster::Fetch { sha256: wanted.iter().cloned().collect() });
    let mut got = std::collections::BTreeSet::new();
    while got.len() < wanted.len() {
        match reader.recv(LIMIT) {
            Some(ToMinion::Files { blobs, missing }) => {
                assert!(missing.is_empty(), "refused: {missing:?}");
                got.extend(blobs.into_iter().map(|b| b.sha256));
            }
            Some(_) => {}
            None => panic!("{} of {} files came\n{}", got.len(), wanted.len(), master.log()),
        }
    }
    assert!(!master.log().contains("does not read"), "{}", master.log());
}
