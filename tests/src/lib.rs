//! A harness for end-to-end tests: real `drover-master`, `drover-minion` and `drover`
//! binaries, each daemon in its own temp dir, on 127.0.0.1 ports picked per test.
//!
//! - [`Master`], [`Minion`]: start, kill (`kill -9` too), restart; logs kept in the temp dir.
//! - [`Master::drover`]: run the CLI against that master, the way a user does.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping.
//!
//! The binaries are found next to the test executable's `deps/` folder; `scripts/test.sh`
//! builds them first (`cargo build --workspace --bins`).

pub mod docker;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

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
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            starts: 0,
        };
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
            .args(["--listen", &self.address(), "--api", "127.0.0.1:0", "--heartbeat", "1"])
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
            child: None,
            starts: 0,
        };
        m.restart();
        m
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
        cmd.args(["--id", &self.id, "--master", &self.master, "--heartbeat", "1"])
            .arg("--dir")
            .arg(self.state_dir())
            .args(&self.args)
            .env("DROVER_LOG", "info,minion=debug");
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

/// Starts `n` minions named `prefix-01`.. on `master`.
pub fn minions(master: &Master, prefix: &str, n: usize, extra: &[&str]) -> Vec<Minion> {
    (1..=n).map(|i| Minion::start(master, &format!("{prefix}-{i:02}"), extra)).collect()
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
