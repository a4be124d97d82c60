//! Roles and states from git: assignments pushed by the master, states applied and daemons
//! supervised by the minions. Every daemon here is `/bin/sleep <unique number>` (or a
//! shell around it) so the process table tells exactly which ones run.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{ConfigRepo, Master, Minion, children_of, pids_of, show, wait_until, zombies_of};

const LONG: Duration = Duration::from_secs(30);

fn master_for(repo: &ConfigRepo) -> Master {
    Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()])
}

fn apply(master: &Master) {
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

fn daemon_state(name: &str, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("{name}:\n  daemon.running:\n    - cmd: [{}]\n", argv.join(", "))
}

fn one_pid(argv: &[&str]) -> u32 {
    let mut pids = Vec::new();
    wait_until(LONG, &format!("{argv:?} to run"), || {
        pids = pids_of(argv);
        pids.len() == 1
    });
    pids[0]
}

fn status(master: &Master, id: &str) -> Value {
    let (_, v, _) = master.drover_json(&["roles", "status"]);
    v.as_array().and_then(|a| a.iter().find(|s| s["id"] == json!(id)).cloned()).unwrap_or(Value::Null)
}

#[test]
fn a_role_change_stops_one_daemon_and_starts_another() {
    let (a, b) = (["/bin/sleep", "3001"], ["/bin/sleep", "3002"]);
    let repo = ConfigRepo::new();
    repo.commit(
        "a and b",
        &[
            ("roles/a.yaml", "description: runs a\nstates: [t.a]\n"),
            ("roles/b.yaml", "description: runs b\nstates: [t.b]\n"),
            ("states/t/a.yaml", &daemon_state("a", &a)),
            ("states/t/b.yaml", &daemon_state("b", &b)),
            ("roles/top.yaml", "'m1': [a]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    one_pid(&a);
    assert!(pids_of(&b).is_empty());

    repo.commit("m1 becomes b", &[("roles/top.yaml", "'m1': [b]\n")]);
    apply(&master);
    one_pid(&b);
    wait_until(LONG, "daemon a to stop", || pids_of(&a).is_empty());
    wait_until(LONG, "m1 to report convergence", || status(&master, "m1")["result"] == json!(true));
    assert_eq!(status(&master, "m1")["roles"], json!(["b"]));
}

#[test]
fn editing_a_watched_file_restarts_exactly_the_watching_daemon() {
    let (d1, d2) = (["/bin/sleep", "3011"], ["/bin/sleep", "3012"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let states = format!(
        "f1:\n  file.managed:\n    - name: {d}/f1.conf\n    - source: t/f1.conf\n    - template: tera\n\
         f2:\n  file.managed:\n    - name: {d}/f2.conf\n    - source: t/f2.conf\n\
         d1:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3011\"]\n    - watch:\n      - file: f1\n\
         d2:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3012\"]\n    - watch:\n      - file: f2\n"
    );
    let repo = ConfigRepo::new();
    repo.commit(
        "two watched daemons",
        &[
            ("roles/w.yaml", "description: watch\nstates: [t.w]\n"),
            ("states/t/w.yaml", &states),
            ("states/t/f1.conf", "one = 1 # on {{ id }}\n"),
            ("states/t/f2.conf", "two = 2\n"),
            ("roles/top.yaml", "'*': [w]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    let (p1, p2) = (one_pid(&d1), one_pid(&d2));
    assert_eq!(std::fs::read_to_string(dir.path().join("f1.conf")).unwrap(), "one = 1 # on m1\n");

    repo.commit("edit f1", &[("states/t/f1.conf", "one = 11 # on {{ id }}\n")]);
    apply(&master);
    wait_until(LONG, "d1 to restart", || pids_of(&d1).first().is_some_and(|p| *p != p1));
    assert_eq!(std::fs::read_to_string(dir.path().join("f1.conf")).unwrap(), "one = 11 # on m1\n");
    wait_until(LONG, "m1 to converge", || status(&master, "m1")["result"] == json!(true));
    assert_eq!(pids_of(&d2), vec![p2], "d2 does not watch f1 and must not restart");
}

#[test]
fn included_state_files_reach_the_minion_and_a_handled_failure_converges() {
    let web = ["/bin/sleep", "3071"];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // `web` is a folder state that includes t.base, extends its file and watches it; a
    // failing command is handled by its `onfail` state
    let init = format!(
        "include:\n  - t.base\n\
         extend:\n  base-conf:\n    file:\n      - mode: \"0600\"\n\
         web:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3071\"]\n    - watch:\n      - file: base-conf\n\
         broken:\n  cmd.run:\n    - name: \"false\"\n\
         rescue:\n  cmd.run:\n    - name: touch {d}/rescued\n    - onfail:\n      - cmd: broken\n"
    );
    let base = format!(
        "base-conf:\n  file.managed:\n    - name: {d}/base.conf\n    - source: salt://t/base.conf\n    - template: tera\n"
    );
    let repo = ConfigRepo::new();
    repo.commit(
        "an including state",
        &[
            ("roles/web.yaml", "states: [web]\n"),
            ("states/web/init.yaml", &init),
            ("states/t/base.yaml", &base),
            ("states/t/base.conf", "on {{ id }}\n"),
            ("roles/top.yaml", "'*': [web]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    one_pid(&web);
    wait_until(LONG, "m1 to converge", || status(&master, "m1")["result"] == json!(true));
    let conf = dir.path().join("base.conf");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "on m1\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o7777, 0o600, "extended");
    assert!(dir.path().join("rescued").exists(), "the onfail state ran");
}

#[test]
fn a_crashing_daemon_is_restarted_and_its_crash_is_an_event() {
    let repo = ConfigRepo::new();
    let crasher = "crasher:\n  daemon.running:\n    - cmd: [\"/bin/sh\", \"-c\", \"sleep 0.2; exit 3\"]\n    - restart: always\n";
    repo.commit(
        "a crasher",
        &[
            ("roles/c.yaml", "description: crashes\nstates: [t.c]\n"),
            ("states/t/c.yaml", crasher),
            ("roles/top.yaml", "'*': [c]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    // a daemon that dies right after it starts fails its state: roles apply says so
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("m1: failed: crasher: "), "{}", show(&out));
    let events = || {
        let out = master.drover(&["--out", "json", "events", "--no-follow"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect::<Vec<Value>>()
    };
    wait_until(LONG, "two crashes and a restart in drover events", || {
        let ev = events();
        let n = |what: &str| {
            ev.iter()
                .filter(|e| {
                    let tag = e["tag"].as_str().unwrap_or("");
                    tag.contains("crasher") && tag.ends_with(what) && e["minion"] == json!("m1")
                })
                .count()
        };
        n("crashed") >= 2 && n("restarted") >= 1
    });
    // and counted in the master's metrics, by daemon name
    let metrics = master.metrics();
    assert!(
        metrics.get("drover_daemon_crashes_total{daemon=\"crasher\"}").is_some_and(|n| *n >= 2.0),
        "{metrics:?}"
    );
    assert!(
        metrics.get("drover_daemon_restarts_total{daemon=\"crasher\"}").is_some_and(|n| *n >= 1.0),
        "{metrics:?}"
    );
}

#[test]
fn broken_commits_are_refused_with_file_and_line_and_change_nothing() {
    let daemon = ["/bin/sleep", "3021"];
    let repo = ConfigRepo::new();
    let good = repo.commit(
        "good",
        &[
            ("roles/g.yaml", "description: good\nstates: [t.g]\npillar: {n: 1}\n"),
            ("states/t/g.yaml", &daemon_state("g", &daemon)),
            ("roles/top.yaml", "'*': [g]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    let pid = one_pid(&daemon);
    wait_until(LONG, "m1 to converge", || status(&master, "m1")["converged_commit"] == json!(good));

    let broken = [
        // Tera: an undefined variable on line 3
        (
            "broken tera",
            "g:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"{{ pillar.nosuch }}\"]\n",
            "states/t/g.yaml:3",
        ),
        // YAML: a mapping where a list item was expected
        (
            "broken yaml",
            "g:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3022\"\n  oops: : :\n",
            "states/t/g.yaml:",
        ),
        // a requisite cycle, named with its members
        (
            "cycle",
            "x:\n  file.absent:\n    - name: /tmp/drover-x\n    - require:\n      - file: y\n\
             y:\n  file.absent:\n    - name: /tmp/drover-y\n    - require:\n      - file: x\n",
            "cycle",
        ),
    ];
    for (what, text, expect) in broken {
        let bad = repo.commit(what, &[("states/t/g.yaml", text)]);
        let out = master.drover(&["roles", "apply"]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{what}: expected {expect:?} in stderr:\n{}", show(&out));
        if what == "cycle" {
            assert!(err.contains('x') && err.contains('y'), "the cycle names its members: {err}");
        }
        // diff refuses it the same way
        let out = master.drover(&["roles", "diff", "--commit", &bad]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", show(&out));
    }
    // runaway loops: refused within the render budget, naming the loop, while the master
    // keeps answering
    repo.commit(
        "runaway loops",
        &[(
            "states/t/g.yaml",
            "{% for a in range(end=100000) %}{% for b in range(end=100000) %}{% endfor %}{% endfor %}\n",
        )],
    );
    let applying = std::thread::scope(|s| {
        let applying = s.spawn(|| master.drover(&["roles", "apply"]));
        assert_eq!(master.ping(&["m1"]), ["m1"], "the master answers while it renders");
        applying.join().unwrap()
    });
    assert_eq!(applying.status.code(), Some(2), "{}", show(&applying));
    let err = String::from_utf8_lossy(&applying.stderr);
    assert!(
        err.contains("states/t/g.yaml:1:36: rendering stopped in this loop after "),
        "{}",
        show(&applying)
    );

    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pids_of(&daemon), vec![pid], "the daemon of the good commit still runs, untouched");
    let s = status(&master, "m1");
    assert_eq!((&s["assigned_commit"], &s["converged_commit"]), (&json!(good), &json!(good)), "{s}");
}

#[test]
fn test_true_changes_nothing_and_says_what_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("managed.conf");
    let states =
        format!("conf:\n  file.managed:\n    - name: {}\n    - contents: \"wanted\\n\"\n", file.display());
    let repo = ConfigRepo::new();
    repo.commit(
        "a managed file",
        &[
            ("roles/f.yaml", "description: file\nstates: [t.f]\n"),
            ("states/t/f.yaml", &states),
            ("roles/top.yaml", "'*': [f]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    wait_until(LONG, "the file to be written", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t == "wanted\n")
    });

    std::fs::write(&file, "changed by hand\n").unwrap();
    let (code, v, stderr) = master.drover_json(&["m1", "state.apply", "test=true"]);
    assert_eq!(code, 0, "{stderr} {v}");
    let results: Vec<&Value> = v["m1"].as_object().expect("a state return").values().collect();
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(results[0]["result"], Value::Null, "test=true reports null for a change: {v}");
    let diff = results[0]["changes"]["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("-changed by hand") && diff.contains("+wanted"), "{v}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "changed by hand\n", "test=true touched the disk");

    // highstate output is the default for state.apply
    let out = master.drover(&["m1", "state.apply", "test=true"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Summary for m1") && text.contains("conf"), "{}", show(&out));

    // and a real apply puts it back
    let (code, v, _) = master.drover_json(&["m1", "state.apply"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "wanted\n");
}

#[test]
fn a_peer_joining_a_role_rerenders_the_dependant_and_restarts_its_daemon() {
    let client = ["/bin/sleep", "3031"];
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("client.conf");
    let states = format!(
        "client-conf:\n  file.managed:\n    - name: {}\n    - source: t/client.conf\n    - template: tera\n\
         client:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3031\"]\n    - watch:\n      - file: client-conf\n",
        conf.display()
    );
    let repo = ConfigRepo::new();
    repo.commit(
        "servers and a client",
        &[
            ("roles/server.yaml", "description: serves\nstates: [t.server]\n"),
            ("states/t/server.yaml", "marker:\n  file.absent:\n    - name: /tmp/drover-nothing-here\n"),
            ("roles/client.yaml", "description: uses servers\nstates: [t.client]\n"),
            ("states/t/client.yaml", &states),
            (
                "states/t/client.conf",
                "servers = [{% for p in peers.server | default(value=[]) %}\"{{ p.id }}\", {% endfor %}]\n",
            ),
            ("roles/top.yaml", "'srv-*': [server]\n'cli-*': [client]\n"),
        ],
    );
    let master = master_for(&repo);
    let _c = Minion::start(&master, "cli-1", &[]);
    let _s1 = Minion::start(&master, "srv-1", &[]);
    master.wait_for_minions(2);
    apply(&master);
    let read = || std::fs::read_to_string(&conf).unwrap_or_default();
    wait_until(LONG, "the client to see srv-1", || read().contains("\"srv-1\""));
    let pid = one_pid(&client);

    let _s2 = Minion::start(&master, "srv-2", &[]);
    wait_until(LONG, "the client to see srv-2 join", || read().contains("\"srv-2\""));
    assert!(read().contains("\"srv-1\""));
    wait_until(LONG, "the client daemon to restart", || pids_of(&client).first().is_some_and(|p| *p != pid));
}

#[test]
fn as_pid_1_the_minion_reaps_orphans_forwards_signals_and_stops_its_daemons_on_sigterm() {
    let daemon = ["/bin/sh", "-c", "(sleep 0.3 &); exec /bin/sleep 3041"];
    let marks = tempfile::tempdir().unwrap();
    let hup = marks.path().join("hup");
    let listener = format!("trap 'echo hup >> {}' HUP; while :; do sleep 0.1; done", hup.display());
    let repo = ConfigRepo::new();
    repo.commit(
        "an orphan maker and a signal listener",
        &[
            ("roles/o.yaml", "description: orphans\nstates: [t.o]\n"),
            (
                "states/t/o.yaml",
                &(daemon_state("orphans", &daemon)
                    + &daemon_state("listener", &["/bin/sh", "-c", &listener])),
            ),
            ("roles/top.yaml", "'*': [o]\n"),
        ],
    );
    let master = master_for(&repo);
    let mut m = Minion::start_pid1(&master, "p1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    let sleeper = ["/bin/sleep", "3041"];
    one_pid(&sleeper);
    let unshare = m.pid().unwrap();
    let mut minion = Vec::new();
    wait_until(LONG, "the minion as PID 1 of its namespace", || {
        minion = children_of(unshare);
        minion.len() == 1
    });
    // the orphan (sleep 0.3) was reparented to the minion; once it exits it must be reaped
    std::thread::sleep(Duration::from_millis(500));
    wait_until(Duration::from_secs(10), "no zombie left under the PID-1 minion", || {
        zombies_of(minion[0]).is_empty()
    });

    // SIGHUP to PID 1 reaches the daemons
    let _ = std::process::Command::new("kill").args(["-HUP", &minion[0].to_string()]).status();
    wait_until(LONG, "the listener daemon to get the SIGHUP", || hup.exists());

    // SIGTERM: the minion stops its daemons, then exits
    let _ = std::process::Command::new("kill").args(["-TERM", &minion[0].to_string()]).status();
    wait_until(LONG, "the daemon to be stopped", || pids_of(&sleeper).is_empty());
    wait_until(LONG, "the minion to exit", || !m.running());
}

#[test]
fn a_role_that_requires_another_waits_for_a_converged_member() {
    let (db, app) = (["/bin/sleep", "3051"], ["/bin/sleep", "3052"]);
    let repo = ConfigRepo::new();
    repo.commit(
        "app requires db",
        &[
            ("roles/db.yaml", "description: the datastore\nstates: [t.db]\n"),
            ("states/t/db.yaml", &daemon_state("db", &db)),
            ("roles/app.yaml", "description: needs the datastore\nstates: [t.app]\nrequires: [db]\n"),
            ("states/t/app.yaml", &daemon_state("app", &app)),
            ("roles/top.yaml", "'app-*': [app]\n'db-*': [db]\n"),
        ],
    );
    let master = master_for(&repo);
    let _a = Minion::start(&master, "app-1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    wait_until(LONG, "app-1 to say it waits for db", || status(&master, "app-1")["waiting"] == json!(["db"]));
    assert!(pids_of(&app).is_empty(), "app started without a converged db member");

    let _d = Minion::start(&master, "db-1", &[]);
    one_pid(&db);
    one_pid(&app);
    wait_until(LONG, "app-1 to stop waiting", || status(&master, "app-1")["waiting"] == json!([]));
}

#[test]
fn a_fleet_slot_gets_its_role_from_fleet_yaml_and_a_bad_fleet_yaml_is_refused_with_its_lines() {
    let daemon = ["/bin/sleep", "3041"];
    let repo = ConfigRepo::new();
    let good = repo.commit(
        "a fleet of role a",
        &[
            ("roles/a.yaml", "description: runs a\nstates: [t.a]\n"),
            ("states/t/a.yaml", &daemon_state("a", &daemon)),
            ("fleet.yaml", "fleet: t\nimage: app\nversion: \"1.0\"\nroles:\n  a: {replicas: 2}\n"),
        ],
    );
    let master = master_for(&repo);
    // no top.yaml: its id, a slot name of the fleet, is all that gives it role a
    let _m = Minion::start(&master, "t-a-1", &[]);
    master.wait_for_minions(1);
    apply(&master);
    let pid = one_pid(&daemon);
    wait_until(LONG, "t-a-1 to converge", || status(&master, "t-a-1")["converged_commit"] == json!(good));
    assert_eq!(status(&master, "t-a-1")["roles"], json!(["a"]));

    let bad = repo.commit(
        "a broken fleet",
        &[(
            "fleet.yaml",
            "fleet: t\nimage: app\nversion: 1.10\nroles:\n  a: {replicas: 2, ports: [\"8080:80\"]}\n  ghost: {}\n",
        )],
    );
    for args in [vec!["roles", "apply"], vec!["roles", "diff", "--commit", &bad]] {
        let out = master.drover(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for expect in [
            "fleet.yaml:3:10: version: expected a version string, got the number 1.10; quote it",
            "fleet.yaml:5:28: roles.a.ports: host port 8080/tcp is fixed, but the role has 2 replicas",
            "fleet.yaml:6:3: roles.ghost: no file roles/ghost.yaml",
        ] {
            assert!(err.contains(expect), "{args:?}: expected {expect:?} in stderr:\n{}", show(&out));
        }
    }
    assert_eq!(pids_of(&daemon), vec![pid], "the daemon of the good commit still runs, untouched");
    let s = status(&master, "t-a-1");
    assert_eq!((&s["assigned_commit"], &s["converged_commit"]), (&json!(good), &json!(good)), "{s}");
}

#[test]
fn roles_apply_waits_for_the_reports_and_exits_1_when_a_state_failed() {
    let repo = ConfigRepo::new();
    let failing =
        "ok:\n  cmd.run:\n    - name: 'true'\nbroken:\n  cmd.run:\n    - name: 'echo no >&2; exit 3'\n";
    repo.commit(
        "a failing command",
        &[
            ("roles/c.yaml", "description: commands\nstates: [t.c]\n"),
            ("states/t/c.yaml", failing),
            ("roles/top.yaml", "'*': [c]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m1 = Minion::start(&master, "m1", &[]);
    let _m2 = Minion::start(&master, "m2", &[]);
    master.wait_for_minions(2);

    // it waits for both reports, names the failed state, and says so in its exit status
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ["m1", "m2"] {
        assert!(text.contains(&format!("{id}: failed: broken")), "{}", show(&out));
    }
    assert!(text.contains("0 ok, 2 failed"), "{}", show(&out));
    let (code, v, _) = master.drover_json(&["roles", "apply"]);
    assert_eq!(code, 1, "{v}");
    for m in v["minions"].as_array().expect("minions") {
        assert_eq!(m["outcome"]["result"], json!(false), "{v}");
        assert_eq!(m["outcome"]["failing"], json!(["broken"]), "{v}");
    }

    // --async answers once sent: exit 0, no RESULT column
    let out = master.drover(&["roles", "apply", "--async"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("RESULT"), "{}", show(&out));

    // fixed: every connected minion reports ok, exit 0
    repo.commit("fixed", &[("states/t/c.yaml", "ok:\n  cmd.run:\n    - name: 'true'\n")]);
    let out = master.drover(&["roles", "apply", "-t", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 ok, 0 failed"), "{}", show(&out));
    let status = status(&master, "m1");
    assert_eq!(status["result"], json!(true), "roles status agrees: {status}");
}

#[test]
fn roles_apply_test_dry_runs_a_new_commit_where_it_would_change_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.conf");
    let states = format!(
        "conf:\n  file.managed:\n    - name: {}\n    - source: t/app.conf\n    - template: tera\n",
        file.display()
    );
    let repo = ConfigRepo::new();
    let first = repo.commit(
        "a managed file",
        &[
            ("roles/f.yaml", "description: file\nstates: [t.f]\n"),
            ("roles/idle.yaml", "description: nothing\nstates: []\n"),
            ("states/t/f.yaml", &states),
            ("states/t/app.conf", "port = 1\n"),
            ("roles/top.yaml", "m1: [f]\nm2: [idle]\n"),
        ],
    );
    let master = master_for(&repo);
    let _m1 = Minion::start(&master, "m1", &[]);
    let _m2 = Minion::start(&master, "m2", &[]);
    master.wait_for_minions(2);
    apply(&master);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "port = 1\n");

    // a new source file: m1 fetches it for the dry run only; m2 is unchanged, not tested
    let second = repo.commit("another port", &[("states/t/app.conf", "port = {{ 1 + 1 }}\n")]);
    let out = master.drover(&["roles", "apply", "--test"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("m1:") && !text.contains("m2:"), "{}", show(&out));
    assert!(
        text.contains("-port = 1") && text.contains("+port = 2"),
        "the diff it would make: {}",
        show(&out)
    );
    assert!(
        text.contains("on 1 minion") && text.contains("1 unchanged; nothing was applied"),
        "{}",
        show(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "port = 1\n", "--test touched the disk");
    let s = status(&master, "m1");
    assert_eq!((&s["assigned_commit"], &s["converged_commit"]), (&json!(first), &json!(first)), "{s}");

    // --out json: the job's returns, with test=true's null result for a change
    let (code, v, stderr) = master.drover_json(&["roles", "apply", "--test", "--commit", &second]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["commit"], json!(second));
    assert_eq!(v["unchanged"], json!(["m2"]));
    let ret = &v["run"]["returns"]["m1"]["ret"];
    let results: Vec<&Value> = ret.as_object().expect("a state return").values().collect();
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(results[0]["result"], Value::Null, "{v}");

    // an assignment to test comes from the master, never from a command line
    let (code, v, _) = master.drover_json(&["m1", "state.apply", "assignment=x", "test=true"]);
    assert_eq!(code, 1, "{v}");

    // applied for real, it changes the file
    apply(&master);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "port = 2\n");
    let out = master.drover(&["roles", "apply", "--test"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("would change no minion"), "{}", show(&out));
}
