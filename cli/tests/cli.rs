//! End to end: the built `drover` binary against a fake master API (a tiny HTTP responder
//! on port 0), each test in its own temp dir, checking exit statuses and output shapes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{Value, json};

/// One request the fake master received.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    auth: String,
    body: Value,
}

type Route = dyn Fn(&Request) -> (u16, Value) + Send + Sync;

/// A fake master: answers every request with `route`, records what it got.
struct FakeMaster {
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeMaster {
    fn start(route: impl Fn(&Request) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = write_api_file(&format!("http://{}", listener.local_addr().unwrap()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, route): (_, Arc<Route>) = (requests.clone(), Arc::new(route));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, route) = (seen.clone(), route.clone());
                thread::spawn(move || serve(stream, &seen, &*route));
            }
        });
        FakeMaster { dir, requests }
    }

    fn drover(&self, args: &[&str]) -> Output {
        drover(self.dir.path(), args)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn write_api_file(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let info = json!({"url": url, "token": "secret"});
    std::fs::write(dir.path().join("api.json"), info.to_string()).unwrap();
    dir
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Request>>, route: &Route) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap().to_string(), words.next().unwrap().to_string());
    let (mut length, mut auth) = (0, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => auth = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
    let req = Request { method, path, auth, body };
    let (status, answer) = route(&req);
    seen.lock().unwrap().push(req);
    let answer = answer.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

fn drover(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .env("DROVER_DIR", dir)
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn minion_return(success: bool, ret: Value) -> Value {
    json!({"success": success, "retcode": i32::from(!success), "ret": ret, "started_ms": 1000, "finished_ms": 1500})
}

/// A master whose every job targets `targeted`, answering with the given returns and misses.
fn job_master(targeted: &[&str], returns: Value, timed_out: &[&str], not_connected: &[&str]) -> FakeMaster {
    let answer = json!({
        "jid": "20250101120000000001",
        "targeted": targeted,
        "returns": returns,
        "timed_out": timed_out,
        "not_connected": not_connected,
    });
    FakeMaster::start(move |_| (200, answer.clone()))
}

#[test]
fn all_returned_success_exits_0() {
    let master = job_master(
        &["web-1", "web-2"],
        json!({"web-1": minion_return(true, json!(true)), "web-2": minion_return(true, json!({"os": "debian"}))}),
        &[],
        &[],
    );
    let out = master.drover(&["web-*", "test.ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "web-1:\n    true\nweb-2:\n    os: debian\n");
    assert_eq!(stderr(&out), "");

    let reqs = master.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str(), req.auth.as_str()),
        ("POST", "/api/v1/jobs", "Bearer secret")
    );
    assert_eq!(req.body["target"], "web-*");
    assert_eq!(req.body["tgt_type"], "glob");
    assert_eq!(req.body["fun"], "test.ping");
    assert_eq!(req.body["timeout_secs"], 10.0);
    assert_eq!(req.body["wait"], true);
}

#[test]
fn the_request_carries_target_type_args_and_kwargs() {
    let master = job_master(&["a"], json!({"a": minion_return(true, json!("up 3 days"))}), &[], &[]);
    let out =
        master.drover(&["-G", "os:debian", "-t", "3", "-b", "50%", "cmd.run", "ls", "-la", "shell=true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = &master.requests()[0].body;
    assert_eq!(body["target"], "os:debian");
    assert_eq!(body["tgt_type"], "grain");
    assert_eq!(body["fun"], "cmd.run");
    assert_eq!(body["args"], json!(["ls", "-la"]));
    assert_eq!(body["kwargs"], json!({"shell": true}));
    assert_eq!(body["timeout_secs"], 3.0);
    assert_eq!(body["batch"], json!({"percent": 50}));
}

#[test]
fn a_failed_return_exits_1() {
    let master = job_master(
        &["a", "b"],
        json!({"a": minion_return(true, json!("ok")), "b": minion_return(false, json!("exit 1: boom\nmore"))}),
        &[],
        &[],
    );
    let out = master.drover(&["*", "cmd.run", "false"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a:\n    ok\nb:\n    exit 1: boom\n    more\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn missing_returns_exit_3_and_are_named_on_stderr() {
    let master = job_master(
        &["a", "b", "c", "d"],
        json!({"a": minion_return(false, json!(false))}),
        &["b", "c"],
        &["d"],
    );
    let out = master.drover(&["--out", "json", "*", "test.ping"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, json!({"a": false}));
    assert_eq!(stderr(&out), "timed out: b, c\nnot connected: d\n");
}

#[test]
fn json_and_yaml_print_minion_id_to_return() {
    let returns = json!({
        "m1": minion_return(true, json!({"ipv4": ["10.0.0.1"]})),
        "m2": minion_return(true, json!("x")),
    });
    let master = job_master(&["m1", "m2"], returns, &[], &[]);
    let out = master.drover(&["--out", "json", "*", "grains.items"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, json!({"m1": {"ipv4": ["10.0.0.1"]}, "m2": "x"}));

    let out = master.drover(&["--out=yaml", "*", "grains.items"]);
    assert_eq!(stdout(&out), "m1:\n  ipv4:\n  - 10.0.0.1\nm2: x\n");
}

#[test]
fn no_matching_minion_exits_2() {
    let master = job_master(&[], json!({}), &[], &[]);
    let out = master.drover(&["nope-*", "test.ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "drover: no minions matched the target 'nope-*'\n");
}

#[test]
fn a_refused_request_exits_2_with_the_masters_message_once() {
    let master =
        FakeMaster::start(|_| (400, json!({"error": "bad regular expression \"(\": unclosed group"})));
    let out = master.drover(&["-E", "(", "test.ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "drover: bad regular expression \"(\": unclosed group\n");
    assert_eq!(master.requests()[0].body["tgt_type"], "pcre");

    let out = master.drover(&["key", "accept", "ghost"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn a_failing_master_exits_2() {
    let master = FakeMaster::start(|_| (500, json!({"error": "database is locked"})));
    let out = master.drover(&["*", "test.ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "drover: master error: database is locked\n");
}

#[test]
fn no_master_exits_2_saying_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let out = drover(empty.path(), &["*", "test.ping"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("drover: cannot read ") && err.contains("api.json"), "{err}");
    assert!(err.contains("is drover-master running"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // api.json names a port nobody listens on
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = write_api_file(&format!("http://127.0.0.1:{port}"));
    let out = drover(dir.path(), &["key", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("drover: cannot reach the master at "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn usage_errors_exit_2_without_a_request() {
    let master = job_master(&["a"], json!({}), &[], &[]);
    for args in [
        &["web-1"][..],
        &["-L", "a"],
        &["*", "key"],
        &["-t", "5", "key", "list"],
        &["-b", "0%", "*", "test.ping"],
    ] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    assert_eq!(master.requests().len(), 0);
    let out = master.drover(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage:"));
}

#[test]
fn async_prints_the_jid() {
    let master = FakeMaster::start(|_| {
        (
            200,
            json!({"jid": "20250101120000000042", "targeted": [], "returns": {}, "timed_out": [], "not_connected": []}),
        )
    });
    let out = master.drover(&["--async", "*", "test.sleep", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "jid: 20250101120000000042\n");
    assert_eq!(master.requests()[0].body["wait"], false);

    let out = master.drover(&["--async", "--out", "json", "*", "test.sleep", "60"]);
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, json!({"jid": "20250101120000000042"}));
}

#[test]
fn jobs_show_json_is_the_whole_job() {
    let detail = json!({
        "jid": "20250101120000000001", "fun": "test.ping", "args": [], "kwargs": {},
        "target": "*", "tgt_type": "glob", "created_ms": 999,
        "targeted": 2, "returned": 1, "failed": 0,
        "minions": ["a", "b"],
        "returns": {"a": minion_return(true, json!(true))},
    });
    let answer = detail.clone();
    let master = FakeMaster::start(move |_| (200, answer.clone()));
    let out = master.drover(&["jobs", "show", "20250101120000000001", "--out", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, detail);
    assert_eq!(printed["returns"]["a"]["started_ms"], 1000);
    assert_eq!(master.requests()[0].path, "/api/v1/jobs/20250101120000000001");

    let out = master.drover(&["jobs", "show", "20250101120000000001"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a:\n    true\n");
    assert_eq!(stderr(&out), "no return: b\n");
}

#[test]
fn jobs_list_prints_a_table_newest_last() {
    let job = |jid: &str, created_ms: u64| {
        json!({"jid": jid, "fun": "test.ping", "args": [], "kwargs": {}, "target": "web-*", "tgt_type": "glob",
               "created_ms": created_ms, "targeted": 2, "returned": 2, "failed": 1})
    };
    let jobs = json!([job("20250101120000000002", 2), job("20250101120000000001", 1)]);
    let master = FakeMaster::start(move |_| (200, jobs.clone()));
    let out = master.drover(&["jobs", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "JID                   FUNCTION   TARGET  RETURNED  FAILED\n\
         20250101120000000001  test.ping  web-*   2/2       1\n\
         20250101120000000002  test.ping  web-*   2/2       1\n"
    );
}

#[test]
fn keys_list_and_change() {
    let master = FakeMaster::start(|req| match (req.method.as_str(), req.body["all"].as_bool()) {
        ("GET", _) => (
            200,
            json!({"master_fingerprint": "aa:bb", "keys": [
                {"id": "m1", "fingerprint": "11:22", "state": "accepted"},
                {"id": "new", "fingerprint": "33:44", "state": "pending"},
            ]}),
        ),
        (_, Some(true)) => (200, json!({"changed": []})),
        _ => (200, json!({"changed": ["new"]})),
    });
    let out = master.drover(&["key", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Master fingerprint: aa:bb\nAccepted Keys:\nm1   11:22\nUnaccepted Keys:\nnew  33:44\nRejected Keys:\n"
    );

    let out = master.drover(&["key", "accept", "new"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "accepted: new\n");
    let body = &master.requests()[1].body;
    assert_eq!(body, &json!({"action": "accept", "id": "new", "all": false}));

    let out = master.drover(&["key", "reject", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no keys to reject\n");

    let out = master.drover(&["key", "list", "--out", "json"]);
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["master_fingerprint"], "aa:bb");
}

#[test]
fn completions_need_no_master() {
    let empty = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = drover(empty.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("drover"), "{shell}");
    }
}
