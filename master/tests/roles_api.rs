//! The roles and events routes of a real master (in-process, ports picked by the kernel, a
//! temp dir, a config repository made with the `git` CLI), spoken to over plain HTTP.

mod common;

use std::io::Read;

use common::{Master, Repo};
use serde_json::{Value, json};

const SITE: &str =
    "site:\n  file.managed:\n    - name: /etc/site.conf\n    - source: web/site.conf\n    - template: tera\n";

fn first_commit() -> Vec<(&'static str, &'static str)> {
    vec![
        ("roles/top.yaml", "'*': [base]\n'web-*': [web]\n"),
        ("roles/base.yaml", "states: [base.motd]\n"),
        ("roles/web.yaml", "states: [web.site]\npillar: {port: 80}\n"),
        (
            "states/base/motd.yaml",
            "motd:\n  file.managed:\n    - name: /etc/motd\n    - contents: hello {{ id }}\n",
        ),
        ("states/web/site.yaml", SITE),
        ("states/web/site.conf", "port = {{ pillar.port }}\n"),
    ]
}

fn ids(rows: &Value) -> Vec<(String, Value, bool)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["roles"].clone(),
                r["changed"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn apply_diff_refuse_status_events_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    let c1 = repo.commit(&first_commit());
    Master::accept(dir.path(), "web-1");
    Master::accept(dir.path(), "db-1");
    let m = Master::start(dir.path(), &repo.path());

    // apply HEAD: every accepted minion planned, none connected
    let (status, applied) = m.json("POST", "/api/v1/roles/apply", Some(&json!({})));
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["commit"], json!(c1));
    assert_eq!(
        ids(&applied["minions"]),
        [("db-1".into(), json!(["base"]), true), ("web-1".into(), json!(["base", "web"]), true)]
    );
    assert!(applied["minions"].as_array().unwrap().iter().all(|m| m["connected"] == json!(false)));

    let (status, rows) = m.json("GET", "/api/v1/roles/status", None);
    assert_eq!(status, 200);
    assert_eq!(rows[1]["id"], json!("web-1"));
    assert_eq!(rows[1]["assigned_commit"], json!(c1));
    assert_eq!(rows[1]["result"], Value::Null);
    assert_eq!(rows[1]["roles"], json!(["base", "web"]));

    // a change to web's template shows in the diff for web-1 only
    let c2 = repo.commit(&[("states/web/site.conf", "port = {{ pillar.port }}\nworkers = 4\n")]);
    let (status, diff) = m.json("GET", "/api/v1/roles/diff", None);
    assert_eq!(status, 200, "{diff}");
    assert_eq!((diff["commit"].clone(), diff["current_commit"].clone()), (json!(c2), json!(c1)));
    assert_eq!(
        diff["minions"],
        json!([{"id": "web-1", "roles_added": [], "roles_removed": [], "files_changed": ["states/web/site.conf"],
                "files_added": [], "files_removed": []}])
    );
    let (_, same) = m.json("GET", &format!("/api/v1/roles/diff?commit={}", &c1[..8]), None);
    assert_eq!(same["minions"], json!([]));

    // a broken commit is refused whole, with file:line, and nothing changes
    repo.commit(&[("roles/web.yaml", "states: [web.site\npillar: {port: 80}\n")]);
    let (status, refused) = m.json("POST", "/api/v1/roles/apply", Some(&json!({"commit": "HEAD"})));
    assert_eq!(status, 422, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.starts_with("commit ") && error.ends_with(" is refused: 1 problem"), "{error}");
    let diags: Vec<&str> =
        refused["diagnostics"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(diags[0].starts_with("roles/web.yaml:"), "{diags:?}");
    repo.commit(&[
        ("roles/web.yaml", "states: [web.site]\npillar: {port: 80}\n"),
        ("states/base/motd.yaml", "motd:\n  file.managed:\n    - name: {{ nope( }}\n"),
    ]);
    let (status, refused) = m.json("POST", "/api/v1/roles/apply", Some(&json!({})));
    assert_eq!(status, 422, "{refused}");
    assert!(refused["error"].as_str().unwrap().ends_with(" is refused: 1 problem"), "{refused}");
    let diags: Vec<&str> =
        refused["diagnostics"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(diags[0].starts_with("states/base/motd.yaml:3:22: "), "{diags:?}");
    assert!(diags[0].ends_with("(rendering for db-1 and 1 more)"), "one line for every minion: {diags:?}");
    let (status, diff) = m.json("GET", "/api/v1/roles/diff", None);
    assert_eq!(status, 422, "diff refuses a broken commit too: {diff}");
    let (_, rows) = m.json("GET", "/api/v1/roles/status", None);
    assert!(rows.as_array().unwrap().iter().all(|r| r["assigned_commit"] == json!(c1)), "{rows}");

    let (status, unknown) = m.json("POST", "/api/v1/roles/apply", Some(&json!({"commit": "nope"})));
    assert_eq!(status, 400);
    assert!(unknown["error"].as_str().unwrap().starts_with("'nope' is not a commit in "), "{unknown}");

    // events: the past ones, then a followed stream that sees a new apply
    let (status, body) = m.call("GET", "/api/v1/events?since=0", None);
    assert_eq!(status, 200);
    let past: Vec<Value> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let applies: Vec<&Value> = past.iter().filter(|e| e["tag"] == json!("drover/roles/apply")).collect();
    assert_eq!(applies.len(), 1);
    assert_eq!(applies[0]["data"]["commit"], json!(c1));
    let last = past.last().unwrap()["seq"].as_u64().unwrap();
    let (_, none) = m.call("GET", &format!("/api/v1/events?since={last}&follow=false"), None);
    assert!(none.is_empty());

    let mut follow = m.send("GET", "/api/v1/events?follow=true", None);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // the stream is open once its header arrived
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = follow.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let (status, again) = m.json("POST", "/api/v1/roles/apply", Some(&json!({"commit": c1})));
    assert_eq!(status, 200, "{again}");
    assert!(again["minions"].as_array().unwrap().iter().all(|m| m["changed"] == json!(false)));
    while !String::from_utf8_lossy(&seen).contains("drover/roles/apply") {
        let n = follow.read(&mut buf).expect("the followed stream shows the new apply");
        assert!(n > 0, "the stream stays open");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(text.matches("drover/roles/apply").count(), 1, "only new events: {text}");

    // a restart keeps the assignments and the applied files, even without the repository
    m.stop();
    assert!(dir.path().join("files").join(wire::msg::sha256_hex(SITE.as_bytes())).exists());
    let repo_path = repo.path();
    drop(repo);
    let m = Master::start(dir.path(), &repo_path);
    let (_, rows) = m.json("GET", "/api/v1/roles/status", None);
    assert_eq!(rows[0]["roles"], json!(["base"]));
    assert!(rows.as_array().unwrap().iter().all(|r| r["assigned_commit"] == json!(c1)), "{rows}");
    let (status, gone) = m.json("POST", "/api/v1/roles/apply", Some(&json!({})));
    assert_eq!(status, 400, "{gone}");
    assert!(gone["error"].as_str().unwrap().contains("is not a commit in"), "{gone}");
    m.stop();
}
