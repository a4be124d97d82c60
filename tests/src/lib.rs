//! A harness for end-to-end tests: real `drover-master`, `drover-minion` and `drover`
//! binaries, each daemon in its own temp dir, on 127.0.0.1 ports picked per test.
//!
//! - [`Master`], [`Minion`]: start, kill (`kill -9` too), restart; logs kept in the temp dir.
//!   [`Minion::container`] configures a minion as a fleet container is: environment only.
//! - [`Master::drover`]: run the CLI against that master, the way a user does.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping.
//! - [`ConfigRepo`]: a git config repository in a temp dir; [`repo_root`], [`write_files`].
//! - [`RawMinion`], [`curve_client`]: a minion reduced to its wire protocol (a CURVE DEALER),
//!   to send what drover-minion never would.
//! - [`rss_kib`]: a process's resident memory.
//! - [`docker`]: what a Docker test creates, and removes whatever happens; [`fleet`]: the
//!   small fleet of the Docker tests; [`browser`]: headless Chromium driven over the DevTools
//!   protocol, for the dashboard; [`swarm`]: a one-node Docker Swarm a test makes and leaves.
//!
//! The binaries are found next to the test executable's `deps/` folder; `scripts/test.sh`
//! builds them first (`cargo build --workspace --bins`).

pub mod browser;
pub mod docker;
pub mod fleet;
pub mod swarm;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use wire::{Hello, KeyPair, MinionId, PublicKey, ToMaster, ToMinion};

/// The repository (the workspace's root), with the project's `images/base/base.yaml`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// A file of this project (`path` from its root), for a test's config repo.
pub fn project_file(path: &str) -> String {
    let path = repo_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Writes `files` (path → contents) under `dir`, making folders as needed.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, data) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("a file in a folder")).expect("make the folder");
        std::fs::write(&full, data).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
    }
}

/// The folder holding the workspace's binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    for b in ["drover", "drover-master", "drover-minion"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            dir.join(b).display()
        );
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

static PORTS: Mutex<u16> = Mutex::new(0);

/// A free TCP port whose predecessor is free too: the master's listen port (its key port is
/// the one below).
pub fn free_port_pair() -> u16 {
    let mut last = PORTS.lock().unwrap();
    // Start from a per-process spread so that parallel test binaries rarely meet.
    if *last == 0 {
        *last = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    }
    loop {
        *last = if *last > 60_000 { 20_000 } else { *last + 2 };
        let p = *last;
        let free =
            |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok();
        if free(p) && free(p + 1) {
            return p + 1;
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("spawn")
}

fn stop(child: &mut Option<Child>, signal: &str) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill").args([signal, &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A running `drover-master`.
pub struct Master {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The address it listens on for minions (loopback, or every address for containers).
    pub listen_host: &'static str,
    pub args: Vec<String>,
    /// Environment variables it starts with, besides the test's own.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    starts: usize,
}

impl Master {
    /// Starts a master with `extra` flags (e.g. `--auto-accept`) and waits for its API.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// Starts a master with `extra` flags and `env` variables (`DOCKER_HOST`, say).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_pair();
        let mut m = Master {
            dir,
            port,
            listen_host: "127.0.0.1",
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            starts: 0,
        };
        m.restart();
        m
    }

    /// A master whose config repo is `repo`, listening on every address so that fleet
    /// containers reach it through their network's gateway.
    pub fn start_for_containers(repo: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_pair();
        let args = vec!["--repo".to_string(), repo.display().to_string()];
        let mut m =
            Master { dir, port, listen_host: "0.0.0.0", args, env: Vec::new(), child: None, starts: 0 };
        m.restart();
        m
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("master")
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the master again (after [`Master::kill9`] or [`Master::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "master already running");
        let _ = std::fs::remove_file(self.state_dir().join("api.json"));
        self.starts += 1;
        let log = self.dir.path().join(format!("master.{}.log", self.starts));
        let mut cmd = Command::new(bin("drover-master"));
        cmd.arg("--dir")
            .arg(self.state_dir())
            .args(["--listen", &format!("{}:{}", self.listen_host, self.port), "--api", "127.0.0.1:0"])
            .args(["--heartbeat", "1"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DROVER_LOG", "info,master=debug");
        self.child = Some(spawn(&mut cmd, &log));
        let api = self.state_dir().join("api.json");
        wait_until(Duration::from_secs(20), "the master's api.json", || api.exists());
    }

    /// Everything the master logged, over all its starts.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("master.{i}.log"))).unwrap_or_default()
            })
            .collect()
    }

    pub fn kill9(&mut self) {
        stop(&mut self.child, "-KILL");
    }

    /// The running master's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A count from the master's job store (read beside the master), e.g.
    /// `SELECT COUNT(*) FROM returns`.
    pub fn count(&self, query: &str) -> i64 {
        let db = rusqlite::Connection::open_with_flags(
            self.state_dir().join("drover.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the job store");
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.query_row(query, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    pub fn stop(&mut self) {
        stop(&mut self.child, "-TERM");
    }

    /// Runs `drover --dir <this master> ARGS...`.
    pub fn drover(&self, args: &[&str]) -> Output {
        Command::new(bin("drover"))
            .arg("--dir")
            .arg(self.state_dir())
            .args(args)
            .output()
            .expect("run drover")
    }

    /// Runs the CLI with `--out json` and parses stdout; also returns the exit code.
    pub fn drover_json(&self, args: &[&str]) -> (i32, Value, String) {
        let mut all = vec!["--out", "json"];
        all.extend(args);
        let out = self.drover(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), value, stderr)
    }

    /// `drover ps --out json`: one object per slot.
    pub fn ps(&self) -> Vec<Value> {
        let (code, v, err) = self.drover_json(&["ps"]);
        assert!(code == 0 || code == 1, "ps: {code} {err}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// Minion ids that answer `test.ping` on `target`.
    pub fn ping(&self, target: &[&str]) -> Vec<String> {
        let mut args = vec!["-t", "5"];
        args.extend(target);
        args.push("test.ping");
        let (_, v, _) = self.drover_json(&args);
        let mut ids: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        ids.sort();
        ids
    }

    /// The API's address (`http://127.0.0.1:PORT`) and bearer token, from `DIR/api.json`.
    pub fn api_info(&self) -> (String, String) {
        let info: Value = serde_json::from_str(
            &std::fs::read_to_string(self.state_dir().join("api.json")).expect("the master's api.json"),
        )
        .expect("api.json is JSON");
        (info["url"].as_str().unwrap().to_string(), info["token"].as_str().unwrap().to_string())
    }

    /// `GET /api/v1/<path>` with the token of `DIR/api.json`: the answer's JSON body.
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = self.http("GET", &format!("/api/v1/{path}"), None, true);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("a JSON answer")
    }

    /// One HTTP request to the API (`path` from the root, `body` as JSON), with the token
    /// or without: the answer's status and body (chunked answers joined).
    pub fn http(&self, method: &str, path: &str, body: Option<&Value>, with_token: bool) -> (u16, String) {
        use std::io::{Read, Write};
        let (url, token) = self.api_info();
        let host = url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).expect("connect to the API");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = if with_token { format!("Authorization: Bearer {token}\r\n") } else { String::new() };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP header");
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status");
        let mut body = &raw[split + 4..];
        let mut dechunked = Vec::new();
        if head.contains("transfer-encoding: chunked") {
            loop {
                let end = body.windows(2).position(|w| w == b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().trim(), 16).unwrap();
                if size == 0 {
                    break;
                }
                dechunked.extend_from_slice(&body[end + 2..end + 2 + size]);
                body = &body[end + 4 + size..];
            }
            body = dechunked.as_slice();
        }
        (status, String::from_utf8_lossy(body).into_owned())
    }

    /// `GET /metrics`: the value of each sample line (`name{labels} value`), by its
    /// `name{labels}`.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let (status, text) = self.http("GET", "/metrics", None, true);
        assert_eq!(status, 200, "GET /metrics: {text}");
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a bad sample line {l:?}"));
                (name.to_string(), value.parse().unwrap_or_else(|_| panic!("a bad value in {l:?}")))
            })
            .collect()
    }

    /// The ids of connected minions, via the API (`GET /minions` through `drover`-less HTTP
    /// is not exposed by the CLI yet, so this pings).
    pub fn wait_for_minions(&self, n: usize) {
        wait_until(Duration::from_secs(60), &format!("{n} minions answering test.ping"), || {
            self.ping(&["*"]).len() >= n
        });
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        stop(&mut self.child, "-TERM");
    }
}

/// A running `drover-minion`.
pub struct Minion {
    pub id: String,
    pub dir: tempfile::TempDir,
    master: String,
    args: Vec<String>,
    /// A command the minion runs under (e.g. `unshare --pid --fork` for PID-1 mode).
    wrapper: Vec<String>,
    /// Set: configured by these environment variables alone, with no flags (a container).
    env: Option<Vec<(String, String)>>,
    child: Option<Child>,
    starts: usize,
}

impl Minion {
    pub fn start(master: &Master, id: &str, extra: &[&str]) -> Self {
        Self::start_under(&[], master, id, extra)
    }

    /// Starts the minion as PID 1 of a new PID namespace (as in a container), with a
    /// fresh /proc; needs root, as CI has.
    pub fn start_pid1(master: &Master, id: &str, extra: &[&str]) -> Self {
        Self::start_under(&["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"], master, id, extra)
    }

    fn start_under(wrapper: &[&str], master: &Master, id: &str, extra: &[&str]) -> Self {
        let mut m = Minion {
            id: id.to_string(),
            dir: tempfile::tempdir().expect("temp dir"),
            master: master.address(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            env: None,
            child: None,
            starts: 0,
        };
        m.restart();
        m
    }

    /// A minion configured the way the master configures a fleet container's: no command
    /// line, only `DROVER_MINION_ID`, `DROVER_MASTER`, `DROVER_MINION_DIR` (and a heartbeat of
    /// a second) plus `env`. Not started: [`Minion::restart`] starts it.
    pub fn container(master: &Master, id: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = vec![
            ("DROVER_MINION_ID".to_string(), id.to_string()),
            ("DROVER_MASTER".to_string(), master.address()),
            ("DROVER_MINION_DIR".to_string(), dir.path().join("minion").display().to_string()),
            ("DROVER_HEARTBEAT".to_string(), "1".to_string()),
            ("DROVER_LOG".to_string(), "info,minion=debug".to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Minion {
            id: id.to_string(),
            dir,
            master: master.address(),
            args: Vec::new(),
            wrapper: Vec::new(),
            env: Some(vars),
            child: None,
            starts: 0,
        }
    }

    /// Gives this minion the keys of `other` (as the master copies a slot's keypair into
    /// each of its containers), before it starts.
    pub fn copy_keys_from(&self, other: &Minion) {
        let (from, to) = (other.state_dir().join("pki"), self.state_dir().join("pki"));
        std::fs::create_dir_all(&to).expect("pki dir");
        for name in ["minion.key", "minion.pub", "master.pub"] {
            std::fs::copy(from.join(name), to.join(name)).unwrap_or_else(|e| panic!("copy {name}: {e}"));
        }
    }

    /// `drover-minion health` run as Docker's HEALTHCHECK runs it (in a container: with the
    /// container's environment): its exit code and the JSON line it printed (null if none).
    pub fn health(&self) -> (i32, Value) {
        let mut cmd = Command::new(bin("drover-minion"));
        cmd.arg("health").env_clear();
        match &self.env {
            Some(vars) => cmd.envs(vars.iter().map(|(k, v)| (k, v))),
            None => cmd.env("DROVER_MINION_DIR", self.state_dir()),
        };
        let out = cmd.output().expect("run drover-minion health");
        let line = String::from_utf8_lossy(&out.stdout);
        (out.status.code().unwrap_or(-1), serde_json::from_str(line.trim()).unwrap_or(Value::Null))
    }

    /// The pid of the child the harness started (the wrapper's, with a wrapper).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("minion")
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "minion already running");
        self.starts += 1;
        let log = self.dir.path().join(format!("minion.{}.log", self.starts));
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin("drover-minion"));
                c
            }
            None => Command::new(bin("drover-minion")),
        };
        match &self.env {
            Some(vars) => {
                cmd.envs(vars.iter().map(|(k, v)| (k, v)));
            }
            None => {
                cmd.args(["--id", &self.id, "--master", &self.master, "--heartbeat", "1"])
                    .arg("--dir")
                    .arg(self.state_dir())
                    .args(&self.args)
                    .env("DROVER_LOG", "info,minion=debug");
            }
        }
        self.child = Some(spawn(&mut cmd, &log));
    }

    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("minion.{i}.log"))).unwrap_or_default()
            })
            .collect()
    }

    pub fn stop(&mut self) {
        stop(&mut self.child, "-TERM");
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Minion {
    fn drop(&mut self) {
        stop(&mut self.child, "-TERM");
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A CURVE DEALER connected to `master` with the key `me`, presenting `routing` as its
/// routing id if given (libzmq makes one up otherwise).
pub fn curve_client(
    ctx: &zmq::Context,
    master: &Master,
    routing: Option<&[u8]>,
    me: &KeyPair,
) -> zmq::Socket {
    let info = std::fs::read_to_string(master.state_dir().join("pki/master.pub")).unwrap();
    let server = PublicKey::parse(&info).unwrap();
    let s = ctx.socket(zmq::DEALER).unwrap();
    if let Some(routing) = routing {
        s.set_identity(routing).unwrap();
    }
    s.set_curve_serverkey(&server.raw()).unwrap();
    s.set_curve_publickey(&me.public.raw()).unwrap();
    s.set_curve_secretkey(&me.secret_raw()).unwrap();
    s.set_linger(0).unwrap();
    s.connect(&format!("tcp://{}", master.address())).unwrap();
    s
}

/// A minion reduced to its wire protocol: its own key, a routing id made for its id as
/// drover-minion makes it, and whatever messages a test sends.
pub struct RawMinion {
    pub id: MinionId,
    pub keys: KeyPair,
    pub socket: zmq::Socket,
    _ctx: zmq::Context,
}

impl RawMinion {
    /// Connects (no hello yet); `setup` may set socket options before the connection.
    pub fn connect_with(master: &Master, id: &str, setup: impl FnOnce(&zmq::Socket)) -> Self {
        Self::connect_as(master, id, KeyPair::generate().unwrap(), setup)
    }

    /// Connects with the key `keys` (a new socket, a new routing id), as drover-minion
    /// does when it redials.
    pub fn connect_as(master: &Master, id: &str, keys: KeyPair, setup: impl FnOnce(&zmq::Socket)) -> Self {
        let id = MinionId::new(id).unwrap();
        let ctx = zmq::Context::new();
        let info = std::fs::read_to_string(master.state_dir().join("pki/master.pub")).unwrap();
        let server = PublicKey::parse(&info).unwrap();
        let socket = ctx.socket(zmq::DEALER).unwrap();
        setup(&socket);
        socket.set_identity(&wire::routing_id(&id).unwrap()).unwrap();
        socket.set_curve_serverkey(&server.raw()).unwrap();
        socket.set_curve_publickey(&keys.public.raw()).unwrap();
        socket.set_curve_secretkey(&keys.secret_raw()).unwrap();
        socket.set_linger(0).unwrap();
        socket.connect(&format!("tcp://{}", master.address())).unwrap();
        RawMinion { id, keys, socket, _ctx: ctx }
    }

    /// Connects and says hello with `grains`; returns at once.
    pub fn hello(master: &Master, id: &str, grains: Value) -> Self {
        let m = Self::connect_with(master, id, |_| {});
        m.send_hello(grains);
        m
    }

    /// Connects, says hello and waits for the master's welcome (with `--auto-accept`).
    pub fn welcomed(master: &Master, id: &str) -> Self {
        let m = Self::hello(master, id, serde_json::json!({}));
        match m.recv_until(Duration::from_secs(20), |msg| matches!(msg, ToMinion::Welcome { .. })) {
            Some(_) => m,
            None => panic!("{id} was not welcomed"),
        }
    }

    pub fn send_hello(&self, grains: Value) {
        let grains = grains.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.send(&ToMaster::Hello(Hello {
            id: self.id.clone(),
            version: "test".into(),
            grains,
            generation: 0,
        }));
    }

    pub fn send(&self, msg: &ToMaster) {
        self.socket.send(wire::msg::encode(msg).unwrap(), 0).unwrap();
    }

    /// The next message from the master, or None when nothing came within `limit`.
    pub fn recv(&self, limit: Duration) -> Option<ToMinion> {
        self.socket.set_rcvtimeo(limit.as_millis() as i32).unwrap();
        let parts = self.socket.recv_multipart(0).ok()?;
        Some(wire::msg::decode(parts.last()?).expect("a message the minion can decode"))
    }

    /// Reads until a message `wanted` takes, for at most `limit`.
    pub fn recv_until(&self, limit: Duration, mut wanted: impl FnMut(&ToMinion) -> bool) -> Option<ToMinion> {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(msg) if wanted(&msg) => return Some(msg),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }
}

/// Starts `n` minions named `prefix-01`.. on `master`.
pub fn minions(master: &Master, prefix: &str, n: usize, extra: &[&str]) -> Vec<Minion> {
    (1..=n).map(|i| Minion::start(master, &format!("{prefix}-{i:02}"), extra)).collect()
}

/// Asserts that a run succeeded, showing its output when it did not.
pub fn ok(out: &Output) {
    assert!(out.status.success(), "{}", show(out));
}

/// stdout and stderr of a CLI run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config repository (git) in a temp dir, as the master's `--repo`.
pub struct ConfigRepo {
    pub dir: tempfile::TempDir,
}

impl Default for ConfigRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigRepo {
    pub fn new() -> Self {
        let repo = ConfigRepo { dir: tempfile::tempdir().expect("temp dir") };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(["-c", "user.name=drover-tests", "-c", "user.email=tests@drover.invalid"])
            .args(args)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `files` (path → contents; an empty contents removes the file) and commits
    /// them; returns the commit id.
    pub fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        for (path, contents) in files {
            let full = self.path().join(path);
            if contents.is_empty() {
                let _ = std::fs::remove_file(&full);
                continue;
            }
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, contents).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// Pids of the processes whose command line is exactly `argv`.
pub fn pids_of(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == want) && !is_zombie(pid) {
            pids.push(pid);
        }
    }
    pids.sort();
    pids
}

/// (state, parent pid) of a process, from /proc/PID/stat.
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

pub fn is_zombie(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(s, _)| s == 'Z')
}

/// Zombie processes whose parent is `parent`.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid) == Some(('Z', parent)))
        .collect()
}

/// Direct children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(_, pp)| pp == parent))
        .collect()
}
