//! `drover-minion local`: states applied from a working tree with no master, as
//! `salt-call --local` does; what is not committed yet is what applies.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tests::{ConfigRepo, bin, show};

fn local(repo: &Path, grains_dir: &Path, words: &[&str]) -> Output {
    Command::new(bin("drover-minion"))
        .args(["--id", "web-1", "--dir"])
        .arg(grains_dir)
        .args(["--grain", "zone=eu", "local", "--repo"])
        .arg(repo)
        .args(words)
        .output()
        .expect("run drover-minion local")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_working_tree_applies_with_no_master_and_test_true_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let conf = scratch.path().join("out/app.conf");
    let repo = ConfigRepo::new();
    repo.commit(
        "web",
        &[
            ("roles/web.yaml", "description: web\nstates: [web]\npillar: {port: 8080}\n"),
            ("roles/db.yaml", "description: db\nstates: []\n"),
            ("roles/top.yaml", "'web-*': [web]\n'G@zone:us': [db]\n"),
        ],
    );
    // not committed: a local apply reads the tree as it is on disk
    let state = format!(
        "conf:\n  file.managed:\n    - name: {}\n    - contents: \"port={{{{ pillar.port }}}} id={{{{ grains.id }}}} zone={{{{ grains.zone }}}}\\n\"\n    - makedirs: true\n\
         server:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3071\"]\n",
        conf.display()
    );
    std::fs::create_dir_all(repo.path().join("states/web")).unwrap();
    std::fs::write(repo.path().join("states/web/init.yaml"), &state).unwrap();
    let dir = scratch.path().join("minion");

    // test=true: says what would change, changes nothing, exit 0
    let out = local(repo.path(), &dir, &["state.apply", "test=true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("would change conf") && text.contains("+port=8080 id=web-1 zone=eu"),
        "{}",
        show(&out)
    );
    assert!(text.contains("server would be started under a connected minion"), "{}", show(&out));
    assert!(
        text.ends_with("2 states: 0 ok, 2 would change, 0 failed (test=true: nothing was changed)\n"),
        "{text}"
    );
    assert!(!conf.exists(), "test=true wrote the file");

    // the named state only: the file is written; again, it is in the correct state
    let out = local(repo.path(), &dir, &["state.apply", "conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "port=8080 id=web-1 zone=eu\n");
    let out = local(repo.path(), &dir, &["--out", "json", "state.apply", "conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let ret: Value = serde_json::from_slice(&out.stdout).expect("json");
    let results: Vec<&Value> = ret.as_object().expect("a state return").values().collect();
    assert_eq!(results.len(), 1, "{ret}");
    assert_eq!((&results[0]["result"], &results[0]["changes"]), (&Value::Bool(true), &serde_json::json!({})));

    // every state: a daemon needs a connected minion, so that state fails, exit 1
    let out = local(repo.path(), &dir, &["state.apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("FAILED       server"), "{}", show(&out));
    assert!(stdout(&out).contains("does not start daemons"), "{}", show(&out));

    // a broken file is refused with its position, exit 2, nothing applied
    std::fs::write(repo.path().join("states/web/init.yaml"), "conf:\n  file.managed:\n    - mode: [\n")
        .unwrap();
    let out = local(repo.path(), &dir, &["state.apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("states/web/init.yaml:"), "{}", show(&out));

    // no role for this host in top.yaml, unless given
    std::fs::write(repo.path().join("states/web/init.yaml"), &state).unwrap();
    std::fs::write(repo.path().join("roles/top.yaml"), "'db-*': [db]\n").unwrap();
    let out = local(repo.path(), &dir, &["state.apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give some with --roles"), "{}", show(&out));
    let out = local(repo.path(), &dir, &["--roles", "web", "state.apply", "conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
