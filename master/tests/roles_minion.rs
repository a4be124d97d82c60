//! The master's side of assignments as a minion sees it on the wire: a fake minion (a CURVE
//! DEALER) says hello, is sent its assignment, fetches files by hash, reports convergence,
//! and sends an event; another minion's peers follow.

mod common;

use common::{FakeMinion, Master, Repo};
use serde_json::json;
use wire::msg::sha256_hex;
use wire::{Converged, ToMaster, ToMinion};

const DB_ROLE: &str = "states: [db.server]\npillar: {password: s3cret}\n";
const WORKER_TOML: &str = "{% for p in peers.datastore %}db = \"{{ p.address }}\"\n{% endfor %}";

fn cloud() -> Vec<(&'static str, &'static str)> {
    vec![
        ("roles/top.yaml", "'db-*': [datastore]\n'w*': [worker]\n"),
        ("roles/datastore.yaml", DB_ROLE),
        ("roles/worker.yaml", "states: [coins.worker]\nrequires: [datastore]\n"),
        (
            "states/db/server.yaml",
            "db:\n  file.managed:\n    - name: /etc/db.conf\n    - contents: \"{{ pillar.password }}\"\n",
        ),
        (
            "states/coins/worker.yaml",
            "cfg:\n  file.managed:\n    - name: /etc/worker.toml\n    - source: coins/worker.toml\n    - template: tera\n",
        ),
        ("states/coins/worker.toml", WORKER_TOML),
    ]
}

#[test]
fn assign_fetch_converge_peers_and_events_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    let c1 = repo.commit(&cloud());
    let db_keys = Master::accept(dir.path(), "db-1");
    let w_keys = Master::accept(dir.path(), "w1");
    let m = Master::start(dir.path(), &repo.path());

    // connected before anything is applied: welcomed, nothing else
    let db = FakeMinion::connect(&m, "db-1", &db_keys, json!({"ipv4": ["10.1.0.2"], "os": "Debian"}));
    assert!(matches!(db.recv(), ToMinion::Welcome { .. }));
    let (status, _) = m.json("POST", "/api/v1/roles/apply", Some(&json!({})));
    assert_eq!(status, 200);
    let a = db.assignment();
    assert_eq!((a.commit.as_str(), a.roles.as_slice()), (c1.as_str(), ["datastore".to_string()].as_slice()));
    assert_eq!(a.files.keys().collect::<Vec<_>>(), ["roles/datastore.yaml", "states/db/server.yaml"]);
    assert!(a.peers.is_empty(), "its files read no peers and it requires no role");

    // the file server: what its manifest names, nothing else
    let others = sha256_hex(WORKER_TOML.as_bytes());
    let mut wanted: Vec<String> = a.files.values().cloned().collect();
    wanted.push(others.clone());
    db.send(&ToMaster::Fetch { sha256: wanted });
    let ToMinion::Files { blobs, missing } = db.recv() else { panic!("expected files") };
    assert_eq!(missing, [others]);
    assert_eq!(blobs.len(), 2);
    assert!(blobs.iter().any(|b| b.data == DB_ROLE.as_bytes() && b.sha256 == sha256_hex(DB_ROLE.as_bytes())));

    // w1 connects: welcomed, then its assignment (no datastore member serves yet)
    let w1 = FakeMinion::connect(&m, "w1", &w_keys, json!({"ipv4": ["10.1.0.3"]}));
    assert!(matches!(w1.recv(), ToMinion::Welcome { .. }));
    let first = w1.assignment();
    assert_eq!(first.roles, ["worker"]);
    assert_eq!(first.peers.keys().collect::<Vec<_>>(), ["datastore"]);
    assert!(first.peers["datastore"].is_empty());
    // the datastore's role file holds its secret pillar: not for w1
    w1.send(&ToMaster::Fetch { sha256: vec![sha256_hex(DB_ROLE.as_bytes())] });
    let ToMinion::Files { blobs, missing } = w1.recv() else { panic!("expected files") };
    assert!(blobs.is_empty() && missing.len() == 1);

    // db-1 converges: w1 is sent its peers, same commit, new serial
    db.send(&ToMaster::Converged(Converged {
        commit: c1.clone(),
        serial: a.serial,
        result: true,
        ..Default::default()
    }));
    let second = w1.assignment();
    assert_eq!(second.commit, c1);
    assert!(second.serial > first.serial);
    let peers = &second.peers["datastore"];
    assert_eq!(peers.len(), 1);
    assert_eq!((peers[0].id.as_str(), peers[0].address.as_str()), ("db-1", "10.1.0.2"));

    // an event from a minion is stored with its id and streamed
    db.send(&ToMaster::Event(wire::Event {
        tag: "daemon/db/crashed".into(),
        data: json!({"code": 9}),
        time_ms: 1,
    }));
    let crashed = common::wait_for(|| {
        let (_, body) = m.call("GET", "/api/v1/events?since=0", None);
        let text = String::from_utf8(body).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["tag"] == json!("drover/minion/db-1/daemon/db/crashed"))
    });
    assert_eq!(crashed["minion"], json!("db-1"));
    assert_eq!(crashed["data"], json!({"code": 9}));

    let (_, rows) = m.json("GET", "/api/v1/roles/status", None);
    assert_eq!(rows[0]["id"], json!("db-1"));
    assert_eq!(rows[0]["connected"], json!(true));
    assert_eq!(rows[0]["converged_commit"], json!(c1));
    assert_eq!(rows[0]["result"], json!(true));
    assert_eq!(rows[1]["result"], serde_json::Value::Null);

    // R@ targets the assigned roles
    let (_, ran) = m.json(
        "POST",
        "/api/v1/jobs",
        Some(&json!({"target": "R@datastore", "tgt_type": "compound", "fun": "test.ping", "timeout_secs": 0.2, "wait": false})),
    );
    assert_eq!(ran["targeted"], json!(["db-1"]));
    m.stop();
}
