//! Targets a user gets wrong, through the real CLI: a compound target too deep or too long,
//! on the command line or as a key of `roles/top.yaml`, and a list with an invalid id. Each
//! is refused with exit 2 and a message saying what is wrong, and the master answers after.

use tests::{ConfigRepo, Master, Minion, show};

/// The master is alive and serving: `m1` answers a ping.
fn answers(master: &Master) {
    assert_eq!(master.ping(&["m1"]), ["m1"], "the master answers after a refused target");
}

fn refused(master: &Master, args: &[&str], wanted: &str) {
    let out = master.drover(args);
    let shown = show(&out);
    assert_eq!(out.status.code(), Some(2), "{:.2000}", shown);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(wanted), "expected {wanted:?} in stderr:\n{:.2000}", shown);
}

#[test]
fn too_deep_or_too_long_compound_targets_and_bad_list_ids_exit_2() {
    let master = Master::start(&["--auto-accept"]);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);

    // the shapes of issue 7, each of which aborted the master with a stack overflow; the
    // last is as long as one argument may be (128 KiB)
    let deep = format!("{}m1{}", "(".repeat(1200), ")".repeat(1200));
    let nots = "not ".repeat(10_000) + "m1";
    let ors = "m1 or ".repeat(20_000) + "m1";
    let cases = [
        (deep.as_str(), "compound target nests 1200 levels deep (at most 32"),
        (&nots, "compound target is 40002 bytes long (at most 4096)"),
        (&ors, "compound target is 120002 bytes long (at most 4096)"),
    ];
    for (target, wanted) in cases {
        refused(&master, &["-C", target, "test.ping"], wanted);
        answers(&master);
    }

    // an invalid id in a list is named, not skipped
    refused(&master, &["-L", "bad id,m1", "test.ping"], "invalid minion id \"bad id\"");
    refused(&master, &["-C", "L@m1,../m2", "test.ping"], "invalid minion id \"../m2\"");
    answers(&master);
}

#[test]
fn a_too_deep_target_in_top_yaml_refuses_the_commit_and_the_master_stays_up() {
    let repo = ConfigRepo::new();
    let deep = format!("{}m1{}", "(".repeat(1200), ")".repeat(1200));
    // YAML takes a key this long only as an explicit key (`? key`)
    let top = format!("'m1': [a]\n? '{deep}'\n: [a]\n");
    repo.commit(
        "a target too deep",
        &[
            ("roles/a.yaml", "description: a\nstates: [t.a]\n"),
            ("states/t/a.yaml", "marker:\n  file.absent:\n    - name: /tmp/drover-nothing-here\n"),
            ("roles/top.yaml", &top),
        ],
    );
    let master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);

    for action in ["apply", "diff"] {
        refused(&master, &["roles", action], "roles/top.yaml:2:4: bad target `((((");
        refused(&master, &["roles", action], "nests 1200 levels deep (at most 32");
        answers(&master);
    }
}
