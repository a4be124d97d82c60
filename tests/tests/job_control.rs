//! Job control and job events, as a user drives them: `drover jobs running`, `jobs kill`
//! (the job's process group dies, the minion lives on, the job is recorded killed),
//! `saltutil.running/find_job/kill_job`, the `drover/job/...` events with `events --tag`,
//! and the filters of `jobs list`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use tests::{Master, Minion, bin, pids_of, show, wait_until, zombies_of};

const LIMIT: Duration = Duration::from_secs(30);

/// Starts `ARGS` with `--async` and returns its jid.
fn start(master: &Master, args: &[&str]) -> String {
    let mut all = vec!["--async"];
    all.extend(args);
    let (code, v, stderr) = master.drover_json(&all);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    v["jid"].as_str().unwrap_or_else(|| panic!("no jid for {args:?}: {v}")).to_string()
}

fn job(master: &Master, jid: &str) -> Value {
    let (code, v, stderr) = master.drover_json(&["jobs", "show", jid]);
    assert_eq!(code, 0, "{stderr}");
    v
}

#[test]
fn a_killed_job_dies_with_its_processes_and_the_minions_live_on() {
    let master = Master::start(&["--auto-accept"]);
    let minions = [Minion::start(&master, "m1", &[]), Minion::start(&master, "m2", &[])];
    master.wait_for_minions(2);

    // two sleeps per minion in the job's process group: one in the background
    let sleep = ["sleep", "6173"];
    let jid = start(&master, &["*", "cmd.run", "sleep 6173 & sleep 6173; wait"]);
    wait_until(LIMIT, "4 sleeps", || pids_of(&sleep).len() == 4);

    let (code, running, stderr) = master.drover_json(&["jobs", "running"]);
    assert_eq!(code, 0, "{stderr}");
    let listed = running.as_array().unwrap().iter().find(|j| j["jid"] == json!(jid));
    let listed = listed.unwrap_or_else(|| panic!("{jid} not running: {running}"));
    assert_eq!(listed["busy_minions"], json!(["m1", "m2"]));
    assert_eq!(listed["fun"], json!("cmd.run"));

    let out = master.drover(&["jobs", "kill", &jid]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kill sent to: m1, m2"), "{}", show(&out));
    wait_until(LIMIT, "the job's processes to die", || pids_of(&sleep).is_empty());
    for m in &minions {
        let pid = m.pid().unwrap();
        wait_until(LIMIT, "the killed processes to be reaped", || zombies_of(pid).is_empty());
    }

    // each minion returned it as killed, and the store says so
    wait_until(LIMIT, "both killed returns", || {
        job(&master, &jid)["returns"].as_object().unwrap().len() == 2
    });
    let shown = job(&master, &jid);
    for id in ["m1", "m2"] {
        let ret = &shown["returns"][id];
        assert_eq!((&ret["success"], &ret["retcode"]), (&json!(false), &json!(137)), "{shown}");
        assert!(ret["ret"].as_str().unwrap().starts_with("killed: cmd.run was ended"), "{shown}");
    }
    assert!(shown["killed_ms"].as_u64().is_some(), "{shown}");
    let out = master.drover(&["jobs", "show", &jid]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("killed at "), "{}", show(&out));
    let out = master.drover(&["jobs", "list"]);
    let line = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with(&jid)).map(String::from);
    assert!(line.as_deref().is_some_and(|l| l.ends_with("killed")), "{}", show(&out));
    let (_, running, _) = master.drover_json(&["jobs", "running"]);
    assert!(!running.as_array().unwrap().iter().any(|j| j["jid"] == json!(jid)), "{running}");

    // the minions live on, and a second kill is refused: nothing runs
    assert_eq!(master.ping(&["*"]), ["m1", "m2"]);
    let out = master.drover(&["jobs", "kill", &jid]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"), "{}", show(&out));
}

#[test]
fn saltutil_lists_finds_and_kills_a_minions_jobs() {
    let master = Master::start(&["--auto-accept"]);
    let _minion = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);

    let jid = start(&master, &["m1", "test.sleep", "600"]);
    wait_until(LIMIT, "the job to show in saltutil.running", || {
        let (_, v, _) = master.drover_json(&["m1", "saltutil.running"]);
        v["m1"].as_array().is_some_and(|jobs| jobs.iter().any(|j| j["jid"] == json!(jid)))
    });
    let (code, v, stderr) = master.drover_json(&["m1", "saltutil.find_job", &jid]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!((&v["m1"]["fun"], &v["m1"]["arg"]), (&json!("test.sleep"), &json!(["600"])), "{v}");

    let (code, v, stderr) = master.drover_json(&["m1", "saltutil.kill_job", &jid]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["m1"], json!({"jid": jid, "fun": "test.sleep", "killed": true}));
    wait_until(LIMIT, "the killed return", || job(&master, &jid)["returns"]["m1"]["retcode"] == json!(137));
    assert!(job(&master, &jid)["killed_ms"].as_u64().is_some(), "the job is recorded killed");
    let (_, v, _) = master.drover_json(&["m1", "saltutil.find_job", &jid]);
    assert_eq!(v["m1"], json!({}));
    let (code, v, _) = master.drover_json(&["m1", "saltutil.kill_job", &jid]);
    assert_eq!(code, 1);
    assert!(v["m1"].as_str().unwrap().contains("is not running on this minion"), "{v}");
    assert_eq!(master.ping(&["m1"]), ["m1"]);
}

/// `ms` since the epoch as RFC 3339 with milliseconds (SQLite formats it).
fn rfc3339(ms: u64) -> String {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, 'unixepoch')", [ms as i64], |r| r.get(0))
        .unwrap()
}

fn listed(master: &Master, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["jobs", "list"];
    args.extend(filters);
    let (code, v, stderr) = master.drover_json(&args);
    assert_eq!(code, 0, "{filters:?}: {stderr}");
    v.as_array().unwrap().iter().map(|j| j["jid"].as_str().unwrap().to_string()).collect()
}

#[test]
fn job_events_follow_each_job_and_jobs_list_filters() {
    let master = Master::start(&["--auto-accept"]);
    let _minions = [Minion::start(&master, "web-1", &[]), Minion::start(&master, "db-1", &[])];
    master.wait_for_minions(2);

    // a live stream of returns only
    let mut follow = Command::new(bin("drover"))
        .arg("--dir")
        .arg(master.state_dir())
        .args(["--out", "json", "events", "--tag", "drover/job/*/ret/*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, live) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // the stream is open once an event after it shows (a ping's returns)
    wait_until(LIMIT, "the live stream to carry a return", || {
        master.ping(&["web-1"]);
        live.recv_timeout(Duration::from_millis(200)).is_ok()
    });

    let ping = start(&master, &["web-1", "test.ping"]);
    let failing = start(&master, &["*", "cmd.run", "exit 3"]);
    let echo = start(&master, &["db-1", "test.echo", "hi"]);
    for jid in [&ping, &failing, &echo] {
        wait_until(LIMIT, "every return", || job(&master, jid)["busy"] == json!(0));
    }

    let wanted = [
        format!("drover/job/{ping}/ret/web-1"),
        format!("drover/job/{failing}/ret/db-1"),
        format!("drover/job/{failing}/ret/web-1"),
        format!("drover/job/{echo}/ret/db-1"),
    ];
    let mut rets = Vec::new();
    while !wanted.iter().all(|w| rets.contains(w)) {
        let Ok(line) = live.recv_timeout(LIMIT) else { break };
        let event: Value = serde_json::from_str(&line).unwrap();
        let tag = event["tag"].as_str().unwrap().to_string();
        assert!(tag.starts_with("drover/job/") && tag.contains("/ret/"), "{line}");
        rets.push(tag);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    for want in wanted {
        assert!(rets.contains(&want), "{want} not in {rets:?}");
    }

    // the stored events: each job's new event comes before its returns, with its data
    let out = master.drover(&[
        "--out",
        "json",
        "events",
        "--since",
        "0",
        "--no-follow",
        "--tag",
        &format!("drover/job/{failing}/*"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let tags: Vec<&str> = events.iter().map(|e| e["tag"].as_str().unwrap()).collect();
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert_eq!(tags[0], format!("drover/job/{failing}/new"));
    assert_eq!(events[0]["data"]["minions"], json!(["db-1", "web-1"]));
    assert_eq!(events[0]["data"]["fun"], json!("cmd.run"));
    let web = events.iter().find(|e| e["tag"] == json!(format!("drover/job/{failing}/ret/web-1"))).unwrap();
    assert_eq!(
        (&web["minion"], &web["data"]["retcode"], &web["data"]["success"]),
        (&json!("web-1"), &json!(3), &json!(false))
    );

    // jobs list filters, each alone and together
    let mine = |found: Vec<String>| -> Vec<String> {
        found.into_iter().filter(|j| [&ping, &failing, &echo].contains(&j)).collect()
    };
    assert_eq!(mine(listed(&master, &["--function", "cmd.*"])), [failing.as_str()]);
    assert_eq!(mine(listed(&master, &["--function", "test.*"])), [ping.as_str(), echo.as_str()]);
    assert_eq!(mine(listed(&master, &["--target", "web-*"])), [ping.as_str(), failing.as_str()]);
    assert_eq!(mine(listed(&master, &["--failed"])), [failing.as_str()]);
    let created = job(&master, &failing)["created_ms"].as_u64().unwrap();
    assert_eq!(listed(&master, &["--since", &rfc3339(created)]), [failing.as_str(), echo.as_str()]);
    assert_eq!(listed(&master, &["--since", &rfc3339(created), "--target", "web-1"]), [failing.as_str()]);
    assert_eq!(mine(listed(&master, &["--since", "1h", "--function", "test.echo"])), [echo.as_str()]);
    let out = master.drover(&["jobs", "list", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a time"), "{}", show(&out));
}

#[test]
fn a_minion_that_lost_a_job_answers_the_kill_and_is_busy_no_more() {
    let master = Master::start(&["--auto-accept"]);
    let mut minion = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);

    let jid = start(&master, &["m1", "test.sleep", "600"]);
    wait_until(LIMIT, "the job to run", || {
        let (_, v, _) = master.drover_json(&["m1", "saltutil.find_job", &jid]);
        v["m1"]["jid"] == json!(jid)
    });
    // the minion restarts: the job is gone with it, and the master still counts it busy
    minion.stop();
    minion.restart();
    master.wait_for_minions(1);
    let (_, running, _) = master.drover_json(&["jobs", "running"]);
    assert!(running.as_array().unwrap().iter().any(|j| j["jid"] == json!(jid)), "{running}");

    let out = master.drover(&["jobs", "kill", &jid]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    wait_until(LIMIT, "the minion's answer", || job(&master, &jid)["returns"]["m1"].is_object());
    let ret = &job(&master, &jid)["returns"]["m1"];
    assert_eq!(ret["retcode"], json!(137), "{ret}");
    assert!(
        ret["ret"].as_str().unwrap().contains("was not running on this minion when the kill came"),
        "{ret}"
    );
    let (_, running, _) = master.drover_json(&["jobs", "running"]);
    assert!(!running.as_array().unwrap().iter().any(|j| j["jid"] == json!(jid)), "{running}");
}
