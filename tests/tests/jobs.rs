//! A master and 20 minions: every target form selects exactly its subset; exit codes and
//! output shapes are those of the design.

use serde_json::json;
use tests::{Master, Minion, show};

fn fleet(master: &Master) -> Vec<Minion> {
    let mut v = Vec::new();
    for i in 1..=10 {
        let rack = format!("rack={}", 1 + i % 2);
        v.push(Minion::start(
            master,
            &format!("web-{i:02}"),
            &["--grain", "tier=frontend", "--grain", &rack],
        ));
    }
    for i in 1..=5 {
        v.push(Minion::start(master, &format!("db-{i:02}"), &["--grain", "tier=backend"]));
    }
    for i in 1..=5 {
        v.push(Minion::start(master, &format!("worker-{i:02}"), &["--grain", "tier=worker"]));
    }
    v
}

fn ids(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:02}")).collect()
}

#[test]
fn twenty_minions_and_every_target_form() {
    let master = Master::start(&["--auto-accept"]);
    let _minions = fleet(&master);
    master.wait_for_minions(20);

    let (code, v, stderr) = master.drover_json(&["*", "test.ping"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v.as_object().unwrap().len(), 20);
    assert!(v.as_object().unwrap().values().all(|r| r == &json!(true)));

    let odd_racks: Vec<String> = (1..=10).filter(|i| i % 2 == 1).map(|i| format!("web-{i:02}")).collect();
    let mut not_frontend = ids("db", 1..=5);
    not_frontend.extend(ids("worker", 1..=5));
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec!["web-*"], ids("web", 1..=10)),
        (vec!["db-0[1-3]"], ids("db", 1..=3)),
        (vec!["-E", "db-0[1-3]"], ids("db", 1..=3)),
        (vec!["-E", "worker"], ids("worker", 1..=5)),
        (vec!["-L", "web-01,db-02,worker-05"], vec!["db-02".into(), "web-01".into(), "worker-05".into()]),
        (vec!["-G", "tier:backend"], ids("db", 1..=5)),
        (vec!["-G", "rack:2"], odd_racks.clone()),
        (vec!["-G", "os:debian"], {
            let mut all = ids("db", 1..=5);
            all.extend(ids("web", 1..=10));
            all.extend(ids("worker", 1..=5));
            all
        }),
        (vec!["-C", "G@tier:frontend and G@rack:2"], odd_racks),
        (vec!["-C", "worker-* or L@db-01"], {
            let mut v = vec!["db-01".to_string()];
            v.extend(ids("worker", 1..=5));
            v
        }),
        (vec!["-C", "not G@tier:frontend"], not_frontend),
        (vec!["-C", "(web-0[1-2] or db-01) and not L@web-02"], vec!["db-01".into(), "web-01".into()]),
        (vec!["-C", "E@^db and not G@tier:backend"], vec![]),
    ];
    for (target, want) in cases {
        let got = master.ping(&target);
        assert_eq!(got, want, "target {target:?}");
    }
}

#[test]
fn exit_codes_and_output_shapes() {
    let master = Master::start(&["--auto-accept"]);
    let _minions = [Minion::start(&master, "a", &[]), Minion::start(&master, "b", &[])];
    master.wait_for_minions(2);

    // a bad compound target names the token and changes nothing
    let out = master.drover(&["-C", "G@os:debian and", "test.ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token 2") && err.contains("and"), "{}", show(&out));

    // nothing matched
    let out = master.drover(&["nomatch-*", "test.ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // ... with --async too: no job id for a job that went nowhere
    let out = master.drover(&["--async", "nomatch-*", "test.ping"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no minions matched"), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));

    // cmd.run: a command line runs in a shell, as Salt's does (pipes, redirections,
    // expansions); it returns stdout and stderr merged in order, trailing newlines trimmed;
    // a failing command makes exit 1
    let (code, v, _) = master.drover_json(&["-L", "a", "cmd.run", "echo hello"]);
    assert_eq!((code, v), (0, json!({"a": "hello"})));
    let (code, v, _) = master.drover_json(&["a", "cmd.run", "printf 'x\\ny\\nx\\n' | grep x | wc -l"]);
    assert_eq!((code, v["a"].as_str().map(str::trim)), (0, Some("2")), "{v}");
    let (code, v, _) = master.drover_json(&["a", "cmd.run", "echo out; echo oops >&2; exit 3"]);
    assert_eq!((code, v), (1, json!({"a": "out\noops"})));
    // cmd.run_all keeps the streams apart, cmd.retcode gives the exit status
    let (code, v, _) = master.drover_json(&["a", "cmd.run_all", "echo out; echo oops >&2; exit 3"]);
    assert_eq!(code, 1);
    assert_eq!(
        (&v["a"]["stdout"], &v["a"]["stderr"], &v["a"]["retcode"]),
        (&json!("out"), &json!("oops"), &json!(3))
    );
    let (code, v, _) = master.drover_json(&["a", "cmd.retcode", "test -d /"]);
    assert_eq!((code, v), (0, json!({"a": 0})));
    // no shell with shell=false, or with the program and its arguments as separate words
    let (_, v, _) = master.drover_json(&["a", "cmd.run", "echo $HOME", "shell=false"]);
    assert_eq!(v, json!({"a": "$HOME"}));
    let (_, v, _) = master.drover_json(&["a", "cmd.run", "echo", "$((6*7))"]);
    assert_eq!(v, json!({"a": "$((6*7))"}));

    // the other functions
    let (_, v, _) = master.drover_json(&["b", "test.echo", "hi there"]);
    assert_eq!(v, json!({"b": "hi there"}));
    let (_, v, _) = master.drover_json(&["b", "grains.get", "id"]);
    assert_eq!(v, json!({"b": "b"}));
    let (_, v, _) = master.drover_json(&["b", "grains.items"]);
    for key in ["id", "hostname", "os", "os_family", "kernel", "num_cpus", "mem_total", "ipv4"] {
        assert!(v["b"].get(key).is_some(), "grain {key} missing in {v}");
    }
    let (_, v, _) = master.drover_json(&["b", "sys.list_functions"]);
    let funs: Vec<&str> = v["b"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    for f in [
        "test.ping",
        "test.echo",
        "test.sleep",
        "cmd.run",
        "cmd.run_all",
        "cmd.retcode",
        "grains.items",
        "grains.get",
        "sys.list_functions",
    ] {
        assert!(funs.contains(&f), "{f} not in {funs:?}");
    }
    let (code, v, _) = master.drover_json(&["b", "nosuch.function"]);
    assert_eq!(code, 1);
    assert!(v["b"].as_str().unwrap().contains("not available"), "{v}");

    // YAML output has the same shape
    let out = master.drover(&["--out", "yaml", "*", "test.ping"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a: true\nb: true");

    // a minion that does not answer in time: exit 3, named on stderr as timed out
    let out = master.drover(&["-t", "1", "a", "test.sleep", "5"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out: a"), "{}", show(&out));

    // jobs are listed and shown
    let (code, v, _) = master.drover_json(&["jobs", "list"]);
    assert_eq!(code, 0);
    let jobs = v.as_array().expect("a list of jobs");
    assert!(jobs.len() >= 10, "{v}");
    let jid = jobs.last().unwrap()["jid"].as_str().unwrap().to_string();
    let (code, v, _) = master.drover_json(&["jobs", "show", &jid]);
    assert_eq!(code, 0);
    assert_eq!(v["fun"], json!("test.sleep"));
    let out = master.drover(&["jobs", "show", "12345678901234567890"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[test]
fn stopped_minions_are_named_not_connected() {
    let master = Master::start(&["--auto-accept"]);
    let mut m = [Minion::start(&master, "up", &[]), Minion::start(&master, "down", &[])];
    master.wait_for_minions(2);
    m[1].stop();
    // three missed heartbeats (1 s each in tests) mark it disconnected
    tests::wait_until(std::time::Duration::from_secs(20), "'down' to be seen as disconnected", || {
        let out = master.drover(&["-t", "2", "*", "test.ping"]);
        String::from_utf8_lossy(&out.stderr).contains("not connected: down")
    });
    let out = master.drover(&["-t", "2", "*", "test.ping"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not connected: down") && !err.contains("timed out"), "{}", show(&out));
}
