//! The functions people reach for first, run through `drover` on a real minion: `sys.doc`,
//! `file.*`, and `cp.get_file` from the states tree of the minion's assignment (and not
//! from outside it).

use std::time::Duration;

use serde_json::json;
use tests::{ConfigRepo, Master, Minion, show, wait_until};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn sys_doc_and_file_functions() {
    let master = Master::start(&["--auto-accept"]);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    let (code, v, _) = master.drover_json(&["m1", "sys.doc", "test.ping"]);
    assert_eq!(
        (code, v),
        (0, json!({"m1": {"test.ping": "Returns true: the minion is connected and answers."}}))
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("motd");
    let f = f.to_str().unwrap();
    let (code, _, _) = master.drover_json(&["m1", "file.write", f, "port = 80", "host = a"]);
    assert_eq!(code, 0);
    let (code, v, _) = master.drover_json(&["m1", "file.replace", f, r"^port = (\d+)$", r"port = 8\1"]);
    assert_eq!(code, 0);
    assert!(v["m1"].as_str().unwrap().contains("+port = 880\n"), "{v}");
    let (_, v, _) = master.drover_json(&["m1", "file.read", f]);
    assert_eq!(v, json!({"m1": "port = 880\nhost = a\n"}));
    let (code, v, _) = master.drover_json(&["m1", "file.read", "relative/path"]);
    assert_eq!(code, 1);
    assert!(v["m1"].as_str().unwrap().contains("expects an absolute path"), "{v}");
}

#[test]
fn cp_get_file_copies_only_files_of_the_minions_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let repo = ConfigRepo::new();
    repo.commit(
        "an app with a config file, and a role m1 does not have",
        &[
            ("roles/app.yaml", "description: app\nstates: [t.app]\n"),
            ("roles/db.yaml", "description: db\nstates: [t.db]\n"),
            (
                "states/t/app.yaml",
                &format!("conf:\n  file.managed:\n    - name: {d}/managed.conf\n    - source: t/app.conf\n"),
            ),
            ("states/t/app.conf", "port = 8000\n"),
            (
                "states/t/db.yaml",
                &format!("db:\n  file.managed:\n    - name: {d}/db.conf\n    - source: t/db.conf\n"),
            ),
            ("states/t/db.conf", "password = secret\n"),
            ("roles/top.yaml", "'m1': [app]\n"),
        ],
    );
    let master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    wait_until(LONG, "m1 to converge", || {
        let (_, v, _) = master.drover_json(&["roles", "status"]);
        v.as_array().is_some_and(|a| a.iter().any(|s| s["id"] == json!("m1") && s["result"] == json!(true)))
    });
    assert_eq!(
        std::fs::read_to_string(dir.path().join("managed.conf")).unwrap(),
        "port = 8000
"
    );

    let dest = format!("{d}/copies/app.conf");
    let (code, v, _) =
        master.drover_json(&["m1", "cp.get_file", "salt://t/app.conf", &dest, "makedirs=true"]);
    assert_eq!((code, v), (0, json!({"m1": dest})));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "port = 8000\n");
    // the role's own state file is in its assignment too
    let (code, _, _) =
        master.drover_json(&["m1", "cp.get_file", "salt://t/app.yaml", &format!("{d}/app.yaml")]);
    assert_eq!(code, 0);

    // another role's file, in the same commit, is not
    let (code, v, _) =
        master.drover_json(&["m1", "cp.get_file", "salt://t/db.conf", &format!("{d}/db.conf")]);
    assert_eq!(code, 1);
    let msg = v["m1"].as_str().unwrap();
    assert!(msg.contains("states/t/db.conf is not a file of this minion's assignment"), "{msg}");
    assert!(!dir.path().join("db.conf").exists());
}
