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

/// What the fake master answers.
enum Reply {
    /// A JSON body of this status.
    Json(u16, Value),
    /// A 200 answer streamed with chunked encoding, one chunk each; then the body ends, or
    /// with `open` stays open until the client goes away (a `follow` stream).
    Chunks { chunks: Vec<String>, open: bool },
}

impl From<(u16, Value)> for Reply {
    fn from((status, body): (u16, Value)) -> Self {
        Reply::Json(status, body)
    }
}

type Route = dyn Fn(&Request) -> Reply + Send + Sync;

/// A fake master: answers every request with `route`, records what it got.
struct FakeMaster {
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeMaster {
    fn start<R: Into<Reply>>(route: impl Fn(&Request) -> R + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = write_api_file(&format!("http://{}", listener.local_addr().unwrap()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(move |req: &Request| route(req).into());
        let seen = requests.clone();
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
    // a body that is not JSON (an image's build context) is kept as its size
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| json!(format!("{} bytes", body.len())))
    };
    let req = Request { method, path, auth, body };
    let reply = route(&req);
    seen.lock().unwrap().push(req);
    let mut stream = stream;
    match reply {
        Reply::Json(status, answer) => {
            let answer = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
        Reply::Chunks { chunks, open } => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            for chunk in chunks {
                let _ = write!(stream, "{:x}\r\n{chunk}\r\n", chunk.len());
                let _ = stream.flush();
            }
            if open {
                // Until the client closes its end.
                let mut buf = [0; 64];
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            } else {
                let _ = write!(stream, "0\r\n\r\n");
            }
        }
    }
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
fn log_level_shows_the_master_then_requests_then_bodies_never_the_token() {
    let master = job_master(&["web-1"], json!({"web-1": minion_return(true, json!(true))}), &[], &[]);
    let api = master.dir.path().join("api.json");
    let url = serde_json::from_str::<Value>(&std::fs::read_to_string(&api).unwrap()).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let found = format!("INFO the master is at {url} (from {})\n", api.display());
    let post = format!("DEBUG POST {url}/api/v1/jobs\n");
    for (args, shown, hidden) in [
        (&["web-1", "test.ping"][..], vec![], vec!["INFO", "DEBUG"]),
        (&["-l", "quiet", "web-1", "test.ping"], vec![], vec!["INFO", "DEBUG"]),
        (&["-l", "info", "web-1", "test.ping"], vec![found.as_str()], vec!["DEBUG"]),
        (
            &["-l", "debug", "web-1", "test.ping"],
            vec![found.as_str(), post.as_str(), "DEBUG answered 200 OK in "],
            vec!["TRACE"],
        ),
        // after the function, and Salt's names
        (&["web-1", "test.ping", "--log-level=profile"], vec![post.as_str()], vec!["TRACE"]),
        (
            &["web-1", "test.ping", "--log-level", "garbage"],
            vec![post.as_str(), "TRACE body: {", "\"fun\":\"test.ping\"", "TRACE answer: {"],
            vec![],
        ),
    ] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "web-1:\n    true\n", "{args:?}");
        let err = stderr(&out);
        for want in shown {
            assert!(err.contains(want), "{args:?}: {want:?} not in\n{err}");
        }
        for not in hidden.iter().chain(&["secret"]) {
            assert!(!err.contains(not), "{args:?}: {not:?} in\n{err}");
        }
    }
    // the error a command ends with is printed at every level
    let empty = tempfile::tempdir().unwrap();
    let out = drover(empty.path(), &["-l", "quiet", "web-1", "test.ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("drover: cannot read "), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = master.drover(&["-l", "loud", "web-1", "test.ping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("possible values: quiet, error, warning, info, debug, trace"),
        "{}",
        stderr(&out)
    );
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

    // --out-file: the same document in the file, nothing on stdout
    let file = master.dir.path().join("out.json");
    let out = master.drover(&["*", "grains.items", "--out", "json", "--out-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let printed: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(printed, json!({"m1": {"ipv4": ["10.0.0.1"]}, "m2": "x"}));
    // a file that cannot be made: exit 2 before any request, naming it
    let out = master.drover(&["--out-file", "/nonexistent/dir/out", "*", "grains.items"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("drover: --out-file /nonexistent/dir/out: "), "{}", stderr(&out));
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
            json!({"jid": "20250101120000000042", "targeted": ["m1"], "returns": {}, "timed_out": [], "not_connected": []}),
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
        "targeted": 2, "returned": 1, "failed": 0, "busy": 1,
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
        "JID                   FUNCTION   TARGET  RETURNED  FAILED  STATUS\n\
         20250101120000000001  test.ping  web-*   2/2       1       done\n\
         20250101120000000002  test.ping  web-*   2/2       1       done\n"
    );
    assert_eq!(master.requests()[0].path, "/api/v1/jobs?limit=100");

    // the filters go to the master as query parameters
    let out = master.drover(&[
        "jobs",
        "list",
        "--function",
        "cmd.*",
        "--target",
        "web-*",
        "--failed",
        "--since",
        "2025-01-01",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        master.requests()[1].path,
        "/api/v1/jobs?limit=100&function=cmd.*&target=web-*&since_ms=1735689600000&failed=true"
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

/// A `state.apply` return: one state changed a file, one failed.
fn state_return() -> Value {
    json!({
        "file_|-conf_|-/etc/app.conf_|-managed": {
            "__id__": "conf", "function": "file.managed", "name": "/etc/app.conf", "result": true,
            "comment": "updated /etc/app.conf", "changes": {"diff": "@@ -1 +1 @@\n-a\n+b\n"},
            "duration": 1.25, "__run_num__": 0
        },
        "daemon_|-app_|-app_|-running": {
            "__id__": "app", "function": "daemon.running", "name": "app", "result": false,
            "comment": "exited with status 1", "changes": {}, "duration": 2.5, "__run_num__": 1
        }
    })
}

const STATE_HIGHSTATE: &str = "\
web-1:
----------
          ID: conf
    Function: file.managed
        Name: /etc/app.conf
      Result: True
     Comment: updated /etc/app.conf
    Duration: 1.250 ms
     Changes:
              diff:
                  @@ -1 +1 @@
                  -a
                  +b
----------
          ID: app
    Function: daemon.running
        Name: app
      Result: False
     Comment: exited with status 1
    Duration: 2.500 ms
     Changes:

Summary for web-1
------------
Succeeded: 1 (changed=1)
Failed:    1
------------
Total states run:     2
Total run time:   3.750 ms
";

#[test]
fn state_apply_prints_highstate_unless_told_otherwise() {
    let master = job_master(&["web-1"], json!({"web-1": minion_return(false, state_return())}), &[], &[]);
    let out = master.drover(&["web-1", "state.apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), STATE_HIGHSTATE);

    let out = master.drover(&["web-1", "state.highstate"]);
    assert_eq!(stdout(&out), STATE_HIGHSTATE);

    let out = master.drover(&["--out", "json", "web-1", "state.apply"]);
    assert_eq!(out.status.code(), Some(1));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, json!({"web-1": state_return()}));

    let out = master.drover(&["--out", "text", "web-1", "state.apply"]);
    assert!(stdout(&out).starts_with("web-1:\n    daemon_|-app_|-app_|-running:\n"), "{}", stdout(&out));

    // other functions stay text, unless --out highstate (which falls back to text for them)
    let master = job_master(&["web-1"], json!({"web-1": minion_return(true, json!("up"))}), &[], &[]);
    for args in [&["web-1", "cmd.run", "uptime"][..], &["--out", "highstate", "web-1", "cmd.run", "uptime"]] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "web-1:\n    up\n", "{args:?}");
    }
}

#[test]
fn state_output_shortens_states_before_or_after_the_function() {
    let master = job_master(&["web-1"], json!({"web-1": minion_return(false, state_return())}), &[], &[]);
    // the failed state's block, and the summary
    let (block_at, summary_at) = (
        STATE_HIGHSTATE.find("----------\n          ID: app").unwrap(),
        STATE_HIGHSTATE.find("\nSummary").unwrap(),
    );
    let (app_block, summary) = (&STATE_HIGHSTATE[block_at..summary_at], &STATE_HIGHSTATE[summary_at..]);
    let conf = "  Name: /etc/app.conf - Function: file.managed - Result: Changed - Duration: 1.250 ms\n";
    let app = "  Name: app - Function: daemon.running - Result: Failed - Duration: 2.500 ms\n";
    let terse = format!("web-1:\n{conf}{app}{summary}");
    let mixed = format!("web-1:\n{conf}{app_block}{summary}");
    let cases: [(&[&str], &str); 5] = [
        (&["--state-output", "terse", "web-1", "state.apply"], &terse),
        (&["web-1", "state.apply", "--state-output=terse"], &terse),
        (&["web-1", "state.apply", "--state_output", "mixed"], &mixed),
        // both states changed or failed: in full
        (&["--state-output", "changes", "web-1", "state.apply"], STATE_HIGHSTATE),
        (&["--state-output=full", "web-1", "state.apply"], STATE_HIGHSTATE),
    ];
    for (args, want) in cases {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{args:?}");
    }
    let out = master.drover(&["web-1", "state.apply", "--state-output", "verbose"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected full, terse, mixed or changes"), "{}", stderr(&out));
}

#[test]
fn jobs_show_prints_a_state_job_as_highstate() {
    let detail = json!({
        "jid": "20250101120000000001", "fun": "state.apply", "args": [], "kwargs": {},
        "target": "web-1", "tgt_type": "glob", "created_ms": 999,
        "targeted": 1, "returned": 1, "failed": 1,
        "minions": ["web-1"],
        "returns": {"web-1": minion_return(false, state_return())},
    });
    let master = FakeMaster::start(move |_| (200, detail.clone()));
    let out = master.drover(&["jobs", "show", "20250101120000000001"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), STATE_HIGHSTATE);
    let out = master.drover(&["jobs", "show", "20250101120000000001", "--state-output", "terse"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("web-1:\n  Name: /etc/app.conf - Function: file.managed - Result: Changed")
    );
}

const COMMIT: &str = "3f2a1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";

#[test]
fn roles_apply_prints_each_minion_and_a_summary() {
    let master = FakeMaster::start(|req| {
        let waited = req.body["wait_secs"].is_number();
        let outcome = |result: bool, comment: &str| {
            if waited {
                json!({"result": result, "failing": if result { json!([]) } else { json!(["w"]) }, "changed": 1, "comment": comment})
            } else {
                Value::Null
            }
        };
        (
            200,
            json!({"commit": COMMIT, "waited": waited, "minions": [
                {"id": "web-1", "roles": ["webui", "worker"], "changed": true, "connected": true, "serial": 3,
                 "outcome": outcome(false, "w: exited 1")},
                {"id": "db-1", "roles": ["datastore"], "changed": false, "connected": false, "serial": 2},
            ]}),
        )
    });
    let out = master.drover(&["roles", "apply", "--commit", "v1.4", "--async"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ID     ROLES         CHANGED  CONNECTED\n\
         db-1   datastore     no       no\n\
         web-1  webui,worker  yes      yes\n\
         applied 3f2a1c9d8e7f to 2 minions: 1 changed, 1 unchanged, 1 not connected (sent when it connects)\n"
    );
    assert_eq!(stderr(&out), "");

    // by default it waits for the reports, and a failed state is exit status 1
    let out = master.drover(&["roles", "apply", "-t", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ID     ROLES         CHANGED  CONNECTED  RESULT\n\
         db-1   datastore     no       no         not connected\n\
         web-1  webui,worker  yes      yes        failed (1 state)\n\
         applied 3f2a1c9d8e7f to 2 minions: 1 changed, 1 unchanged, 1 not connected (sent when it connects); \
         0 ok, 1 failed\n\
         web-1: failed: w: exited 1\n"
    );

    let out = master.drover(&["roles", "apply", "--out", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["commit"], COMMIT);
    assert_eq!(printed["minions"][1]["roles"], json!(["datastore"]));
    assert_eq!(printed["minions"][0]["outcome"]["result"], json!(false));

    let out = master.drover(&["roles", "apply", "--async", "-t", "5"]);
    assert_eq!(out.status.code(), Some(2), "--async and -t conflict: {}", stderr(&out));

    let reqs = master.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/api/v1/roles/apply"));
    assert_eq!(reqs[0].auth, "Bearer secret");
    assert_eq!(reqs[0].body, json!({"commit": "v1.4"}));
    assert_eq!(reqs[1].body, json!({"commit": null, "wait_secs": 5.0}));
    assert_eq!(reqs[2].body, json!({"commit": null, "wait_secs": 60.0}));
}

#[test]
fn roles_apply_of_a_broken_commit_prints_its_diagnostics_and_exits_2() {
    let master = FakeMaster::start(|_| {
        (
            422,
            json!({
                "error": "commit 3f2a1c9 has 2 errors; nothing was applied",
                "diagnostics": [
                    "roles/worker.yaml:3:9: unknown state coins.wrker",
                    "states/coins/worker.yaml:12:5: expected a list of requisites, got a map",
                ],
            }),
        )
    });
    for args in [&["roles", "apply"][..], &["roles", "apply", "--out", "json"], &["roles", "diff"]] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(
            stderr(&out),
            "roles/worker.yaml:3:9: unknown state coins.wrker\n\
             states/coins/worker.yaml:12:5: expected a list of requisites, got a map\n\
             drover: commit 3f2a1c9 has 2 errors; nothing was applied\n",
            "{args:?}"
        );
    }
    // any other refusal is one line
    let master = FakeMaster::start(|_| (404, json!({"error": "unknown revision nope"})));
    let out = master.drover(&["roles", "apply", "--commit", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "drover: unknown revision nope\n");
}

#[test]
fn roles_diff_asks_for_a_commit_and_prints_the_changes() {
    let diff = json!({
        "commit": COMMIT, "current_commit": null,
        "minions": [{"id": "web-1", "roles_added": ["worker"], "roles_removed": [],
                     "files_changed": [], "files_added": ["states/coins/worker.yaml"], "files_removed": []}],
    });
    let answer = diff.clone();
    let master = FakeMaster::start(move |_| (200, answer.clone()));
    let out = master.drover(&["roles", "diff", "--commit", "HEAD~1", "--out", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, diff);

    let out = master.drover(&["roles", "diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "from nothing applied to 3f2a1c9d8e7f\nweb-1:\n    + role worker\n    + states/coins/worker.yaml\n1 minion would change\n"
    );

    // a revision with characters a URL reserves is percent-encoded
    let out = master.drover(&["roles", "diff", "--commit", "release/1.0&x=y"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let paths: Vec<String> = master.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/roles/diff?commit=HEAD~1",
            "/api/v1/roles/diff",
            "/api/v1/roles/diff?commit=release%2F1.0%26x%3Dy",
        ]
    );
}

#[test]
fn roles_status_exits_1_when_a_minion_failed() {
    let row = |id: &str, result: Value| {
        json!({"id": id, "connected": true, "roles": ["worker"], "assigned_commit": COMMIT,
               "converged_commit": COMMIT, "result": result, "failing": [], "waiting": [], "comment": ""})
    };
    let rows = json!([row("b", json!(true)), row("a", json!(null))]);
    let answer = rows.clone();
    let master = FakeMaster::start(move |_| (200, answer.clone()));
    let out = master.drover(&["roles", "status", "--out", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, rows);
    assert_eq!(master.requests()[0].path, "/api/v1/roles/status");

    let out = master.drover(&["roles", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ID  CONNECTED  ROLES   COMMIT        RESULT  DETAIL\n\
         a   yes        worker  3f2a1c9d8e7f  never\n\
         b   yes        worker  3f2a1c9d8e7f  ok\n"
    );

    let mut failed = row("c", json!(false));
    failed["failing"] = json!(["worker"]);
    let rows = json!([row("a", json!(true)), failed]);
    let master = FakeMaster::start(move |_| (200, rows.clone()));
    for args in [&["roles", "status"][..], &["roles", "status", "--out", "yaml"]] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
    let out = master.drover(&["roles", "status"]);
    assert!(
        stdout(&out).contains("\nc   yes        worker  3f2a1c9d8e7f  failed  failing: worker\n"),
        "{}",
        stdout(&out)
    );
}

fn event(seq: u64, tag: &str, minion: Option<&str>, data: Value) -> Value {
    json!({"seq": seq, "time_ms": 1_735_732_800_000u64 + seq, "tag": tag, "minion": minion, "data": data})
}

/// Three events, cut into chunks across and inside lines, with a blank keep-alive line.
fn event_chunks() -> (Vec<Value>, Vec<String>) {
    let events = vec![
        event(6, "drover/minion/connected", Some("web-1"), json!({"address": "10.0.0.5"})),
        event(7, "drover/key/accept", None, json!({"id": "web-2"})),
        event(8, "drover/minion/web-1/daemon/worker/crashed", Some("web-1"), json!({"status": 137})),
    ];
    let text: String = events
        .iter()
        .map(|e| format!("{e}\n"))
        .collect::<String>()
        .replace("}\n{\"seq\":8", "}\n\n{\"seq\":8");
    let cuts = [10, text.find('\n').unwrap() + 1, text.len() - 5];
    let chunks = vec![
        text[..cuts[0]].to_string(),
        text[cuts[0]..cuts[1]].to_string(),
        text[cuts[1]..cuts[2]].to_string(),
        text[cuts[2]..].to_string(),
    ];
    (events, chunks)
}

#[test]
fn events_stream_one_line_each_until_the_end() {
    let (events, chunks) = event_chunks();
    let master = FakeMaster::start(move |_| Reply::Chunks { chunks: chunks.clone(), open: false });
    let out = master.drover(&["events", "--since", "5", "--no-follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "2025-01-01T12:00:00.006Z  drover/minion/connected  web-1  {\"address\":\"10.0.0.5\"}\n\
         2025-01-01T12:00:00.007Z  drover/key/accept  -  {\"id\":\"web-2\"}\n\
         2025-01-01T12:00:00.008Z  drover/minion/web-1/daemon/worker/crashed  web-1  {\"status\":137}\n"
    );
    assert_eq!(stderr(&out), "");

    // json: one object per line
    let out = master.drover(&["events", "--out", "json", "--no-follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(printed, events);

    // following, the end of the stream is the master going away: said on stderr
    let out = master.drover(&["events"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3);
    assert_eq!(stderr(&out), "the master closed the event stream\n");

    let paths: Vec<String> = master.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/api/v1/events?since=5&follow=false", "/api/v1/events?follow=false", "/api/v1/events?follow=true"]
    );
    assert_eq!(master.requests()[0].auth, "Bearer secret");
}

#[test]
fn a_bad_event_line_exits_2() {
    let master =
        FakeMaster::start(|_| Reply::Chunks { chunks: vec!["{\"seq\": 1}\n".to_string()], open: false });
    let out = master.drover(&["events", "--no-follow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("drover: bad answer from the master: event "), "{}", stderr(&out));
}

#[test]
fn ctrl_c_ends_a_followed_stream_with_exit_0() {
    let (_, chunks) = event_chunks();
    let first = chunks[..2].to_vec();
    let master = FakeMaster::start(move |_| Reply::Chunks { chunks: first.clone(), open: true });
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["events", "--out", "json"])
        .env("DROVER_DIR", master.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first event is printed: drover is streaming, and waits for more.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(line["seq"], 6);

    let pid = nix::unistd::Pid::from_raw(child.id().try_into().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(lines.next().is_none());
}

#[test]
fn new_subcommands_complete() {
    let empty = tempfile::tempdir().unwrap();
    let out = drover(empty.path(), &["completions", "bash"]);
    let script = stdout(&out);
    for word in ["roles", "events", "apply", "--no-follow", "--since", "--commit"] {
        assert!(script.contains(word), "{word}");
    }
}

#[test]
fn dashboard_prints_the_link_with_the_token_in_the_fragment() {
    let master = FakeMaster::start(|_| (500, json!({"error": "not asked"})));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(master.dir.path().join("api.json")).unwrap()).unwrap();
    let url = info["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let out = master.drover(&["dashboard"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{url}/#token=secret\n"));
    assert_eq!(stderr(&out), "");
    assert_eq!(master.requests().len(), 0, "the link is made from api.json alone");

    // --dir names the master too; a trailing slash in the url is not doubled
    let dir = tempfile::tempdir().unwrap();
    let info = json!({"url": "http://127.0.0.1:24611/", "token": "0123abcd"});
    std::fs::write(dir.path().join("api.json"), info.to_string()).unwrap();
    let out =
        drover(tempfile::tempdir().unwrap().path(), &["--dir", dir.path().to_str().unwrap(), "dashboard"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "http://127.0.0.1:24611/#token=0123abcd\n");

    // the help says what the link is
    let help = stdout(&drover(dir.path(), &["dashboard", "--help"]));
    assert!(help.contains("treat it like a password"), "{help}");
}

#[test]
fn dashboard_open_hands_the_link_to_xdg_open_and_ignores_its_failure() {
    use std::os::unix::fs::PermissionsExt;

    let dir = write_api_file("http://127.0.0.1:24611");
    let bin = tempfile::tempdir().unwrap();
    let seen = bin.path().join("seen");
    let script = bin.path().join("xdg-open");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", seen.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["dashboard", "--open"])
            .env("DROVER_DIR", dir.path())
            .env("PATH", path)
            .output()
            .unwrap()
    };

    let out = run(bin.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "http://127.0.0.1:24611/#token=secret\n");
    assert_eq!(stderr(&out), "");
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "http://127.0.0.1:24611/#token=secret");

    // no xdg-open: the link is printed, the failure noted, the exit status still 0
    let nothing = tempfile::tempdir().unwrap();
    let out = run(nothing.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "http://127.0.0.1:24611/#token=secret\n");
    assert!(stderr(&out).starts_with("could not open a browser (xdg-open: "), "{}", stderr(&out));
}

#[test]
fn dashboard_without_a_master_exits_2_saying_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let out = drover(empty.path(), &["dashboard"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.starts_with("drover: cannot read ") && err.contains("is drover-master running"), "{err}");
}

/// An image's folder: a Dockerfile and a file.
fn image_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM base\nCOPY hello /hello\n").unwrap();
    std::fs::write(dir.path().join("hello"), "hi\n").unwrap();
    dir
}

fn built_image(up_to_date: bool) -> Value {
    json!({"name": "coins", "version": "1.0", "tag": "coins:1.0", "id": "sha256:0123456789abcdef",
           "commit": null, "content": "fedcba9876543210", "created_ms": 1_735_732_800_000u64,
           "size": 152_400_000, "base": "base:aaaaaaaaaaaa", "up_to_date": up_to_date, "seconds": 12.34})
}

fn lines(values: &[Value]) -> Vec<String> {
    values.iter().map(|v| format!("{v}\n")).collect()
}

#[test]
fn image_build_uploads_the_folder_shows_progress_and_prints_the_result() {
    let chunks = lines(&[
        json!({"type": "phase", "text": "base:aaaaaaaaaaaa is up to date"}),
        json!({"type": "step", "step": 1, "of": 2, "text": "FROM base:aaaaaaaaaaaa"}),
        json!({"type": "step", "step": 2, "of": 2, "text": "COPY hello /hello"}),
        json!({"type": "output", "line": " ---> 5bce36b6a993"}),
        json!({"type": "done", "image": built_image(false)}),
    ]);
    let master = FakeMaster::start(move |_| Reply::Chunks { chunks: chunks.clone(), open: false });
    let folder = image_folder();
    let path = folder.path().to_str().unwrap();
    let out = master.drover(&["image", "build", path, "--tag", "coins:1.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "built coins:1.0 (image 0123456789ab, content fedcba987654, 152 MB, on base:aaaaaaaaaaaa) in 12.3 s\n"
    );
    // not a terminal: plain lines
    assert_eq!(
        stderr(&out),
        "base:aaaaaaaaaaaa is up to date\nStep 1/2 : FROM base:aaaaaaaaaaaa\nStep 2/2 : COPY hello /hello\n   ---> 5bce36b6a993\n"
    );
    let req = &master.requests()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/api/v1/images/build?tag=coins%3A1.0"));
    // the tar of the folder: a Dockerfile and a file, 512-byte blocks
    let size: usize = req.body.as_str().unwrap().trim_end_matches(" bytes").parse().unwrap();
    assert!(size >= 4 * 512 && size.is_multiple_of(512), "{size}");

    let out = master.drover(&["--out", "json", "image", "build", path, "--tag", "coins:1.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), built_image(false));
}

#[test]
fn a_failed_image_build_exits_1_with_its_last_lines() {
    let chunks = lines(&[
        json!({"type": "step", "step": 2, "of": 5, "text": "RUN make"}),
        json!({"type": "output", "line": "make: *** No targets.  Stop."}),
        json!({"type": "failed", "error": "building coins:1.0 failed at step 2/5 (RUN make): returned a non-zero code: 2",
               "last_lines": ["make: *** No targets.  Stop."]}),
    ]);
    let master = FakeMaster::start(move |_| Reply::Chunks { chunks: chunks.clone(), open: false });
    let folder = image_folder();
    let out = master.drover(&["image", "build", folder.path().to_str().unwrap(), "--tag", "coins:1.0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).ends_with(
            "  | make: *** No targets.  Stop.\n\
             drover: building coins:1.0 failed at step 2/5 (RUN make): returned a non-zero code: 2\n"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_refused_image_build_exits_2_with_the_masters_message() {
    let refusal = "coins:1.0 exists with other content (built from commit 0123456789ab, content fedcba987654, \
                   image 0123456789ab); a tag is never rebuilt: build a new version";
    let master = FakeMaster::start(move |_| (409, json!({"error": refusal})));
    let folder = image_folder();
    let out = master.drover(&["image", "build", folder.path().to_str().unwrap(), "--tag", "coins:1.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("drover: {refusal}\n"));

    // no engine: one line
    let master = FakeMaster::start(|_| {
        (503, json!({"error": "cannot reach the Docker engine at unix:///var/run/docker.sock: no such file"}))
    });
    let out = master.drover(&["image", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "drover: cannot reach the Docker engine at unix:///var/run/docker.sock: no such file\n"
    );

    // a folder without a Dockerfile never reaches the master
    let empty = tempfile::tempdir().unwrap();
    let out = master.drover(&["image", "build", empty.path().to_str().unwrap(), "--tag", "coins:1.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).ends_with("has no Dockerfile\n"), "{}", stderr(&out));
    assert_eq!(master.requests().len(), 1);
}

#[test]
fn image_list_prints_a_table_or_json() {
    let mut image = built_image(false);
    for k in ["base", "up_to_date", "seconds"] {
        image.as_object_mut().unwrap().remove(k);
    }
    let listed = json!([image.clone()]);
    let master = FakeMaster::start(move |_| (200, listed.clone()));
    let out = master.drover(&["image", "list", "coins"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME   VERSION  TAG        COMMIT  CONTENT       CREATED              SIZE\n\
         coins  1.0      coins:1.0  -       fedcba987654  2025-01-01 12:00:00  152 MB\n"
    );
    assert_eq!(master.requests()[0].path, "/api/v1/images?name=coins");
    let out = master.drover(&["--out", "json", "image", "list"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), json!([image]));
}

#[test]
fn nodes_prints_each_node_and_the_headroom_and_exits_by_it() {
    let node = |name: &str, slots: &[&str], reserved: f64| {
        json!({
            "id": format!("id-{name}"), "name": name, "role": "worker", "availability": "active", "ready": true,
            "labels": {}, "slots": slots, "containers": slots.len(), "containers_total": slots.len() + 1,
            "cpus": 2.0, "memory": 4u64 << 30, "reserved_cpus": reserved, "reserved_memory": 512u64 << 20,
            "free_cpus": 2.0 - reserved, "free_memory": (4u64 << 30) - (512 << 20),
        })
    };
    let report = |ok: bool, verdict: &str| {
        json!({
            "engine": "swarm", "fleet": "coins",
            "nodes": [node("n1", &["coins-web-1", "coins-db-1"], 1.5), node("n2", &["coins-web-2"], 0.5)],
            "headroom": {"ok": ok, "verdict": verdict, "largest": "n1", "unplaced": []},
        })
    };
    let yes = report(true, "yes: the slots of n1 would fit on the other nodes");
    let master = FakeMaster::start(move |_| (200, yes.clone()));
    let out = master.drover(&["nodes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(master.requests()[0].path, "/api/v1/fleet/nodes");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NODE") && lines[0].contains("CPU RESERVED") && lines[0].contains("MEM FREE"),
        "{text}"
    );
    let n1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(n1, ["n1", "worker", "active", "2/3", "1.5/2", "0.5", "512M/4G", "3.5G"], "{text}");
    assert!(
        text.ends_with(
            "fleet coins on the Swarm engine; can lose its largest node: yes: the slots of n1 would fit on the other nodes\n"
        ),
        "{text}"
    );
    let json_out = master.drover(&["--out", "json", "nodes"]);
    let printed: Value = serde_json::from_str(&stdout(&json_out)).unwrap();
    assert_eq!(printed["nodes"][1]["slots"], json!(["coins-web-2"]));

    let no = report(false, "no: without n1, coins-web-1 would fit nowhere");
    let master = FakeMaster::start(move |_| (200, no.clone()));
    let out = master.drover(&["nodes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("no: without n1, coins-web-1 would fit nowhere"));
}
