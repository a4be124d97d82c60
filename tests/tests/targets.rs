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

#[test]
fn nodegroups_and_pillar_targets_select_by_the_applied_commit() {
    let repo = ConfigRepo::new();
    repo.commit(
        "roles with a pillar, and nodegroups",
        &[
            ("roles/web.yaml", "description: web\nstates: [t.a]\npillar: {app: {env: prod}, tier: front}\n"),
            ("roles/db.yaml", "description: db\nstates: [t.a]\npillar: {app: {env: staging}}\n"),
            ("states/t/a.yaml", "marker:\n  file.absent:\n    - name: /tmp/drover-nothing-here\n"),
            (
                "roles/nodegroups.yaml",
                "webs: 'web-*'\nfront: 'N@webs or G@tier:front'\nall: [N@front, 'db-*']\n",
            ),
            // a nodegroup in the top file too
            ("roles/top.yaml", "'N@webs': [web]\n'db-*': [db]\n"),
        ],
    );
    let master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let _m = [
        Minion::start(&master, "web-1", &[]),
        Minion::start(&master, "web-2", &[]),
        Minion::start(&master, "db-1", &[]),
        Minion::start(&master, "m1", &["--grain", "tier=front"]),
    ];
    master.wait_for_minions(4);
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    assert_eq!(master.ping(&["-N", "webs"]), ["web-1", "web-2"]);
    assert_eq!(master.ping(&["-N", "front"]), ["m1", "web-1", "web-2"]);
    assert_eq!(master.ping(&["-C", "N@all and not web-2"]), ["db-1", "m1", "web-1"]);
    // the pillar of the assigned roles, not grains: m1's `tier` grain is no pillar
    assert_eq!(master.ping(&["-I", "app:env:prod"]), ["web-1", "web-2"]);
    assert_eq!(master.ping(&["-I", "tier:front"]), ["web-1", "web-2"]);
    assert_eq!(master.ping(&["-C", "I@app:env:staging or L@m1"]), ["db-1", "m1"]);
    refused(
        &master,
        &["-N", "nope", "test.ping"],
        "no nodegroup 'nope' (roles/nodegroups.yaml defines 'all', 'front', 'webs')",
    );
    refused(&master, &["-C", "web-1 or N@nope", "test.ping"], "token 3 \"N@nope\": no nodegroup 'nope'");
    refused(&master, &["-I", "app:env:dev", "test.ping"], "no minions matched");

    // a bad nodegroups file refuses the commit, at the group, and the applied groups stay
    for (text, wanted) in [
        ("webs: 'web-* or N@front'\nfront: N@webs\n", "roles/nodegroups.yaml:1:1: nodegroup `webs`: "),
        (
            "webs: 'web-* or N@front'\nfront: N@webs\n",
            "nodegroups name each other in a cycle: webs -> front -> webs",
        ),
        (
            "webs: 'web-*'\nfront: 'N@web'\n",
            "roles/nodegroups.yaml:2:1: nodegroup `front`: bad compound target at token 1 \"N@web\": no nodegroup 'web'",
        ),
        ("webs: [\n", "roles/nodegroups.yaml:"),
    ] {
        repo.commit("a bad nodegroups file", &[("roles/nodegroups.yaml", text)]);
        refused(&master, &["roles", "apply"], wanted);
        assert_eq!(master.ping(&["-N", "webs"]), ["web-1", "web-2"]);
    }
    // I@ cannot pick roles (the pillar comes from them)
    repo.commit(
        "pillar in top",
        &[("roles/nodegroups.yaml", "webs: 'web-*'\n"), ("roles/top.yaml", "'I@app:env:prod': [web]\n")],
    );
    refused(
        &master,
        &["roles", "apply"],
        "roles/top.yaml:1:2: bad target `I@app:env:prod`: I@ cannot select roles",
    );
}
