//! Helpers for the master's integration tests: a real master in-process (its own runtime,
//! ports picked by the kernel, a temp dir), a config repository made with the `git` CLI, a
//! blocking HTTP client, and a fake minion speaking the wire protocol over CURVE.

#![allow(dead_code)] // each test file uses its part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wire::msg::{decode, encode};
use wire::{Hello, KeyPair, MinionId, ToMaster, ToMinion};

/// How long any one step may take before the test fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(60);

pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let repo = Repo { dir: tempfile::tempdir().unwrap() };
        repo.git(&["init", "-q", "."]);
        repo
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Writes `files`, commits everything, returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)]) -> String {
        for (path, text) in files {
            let full = self.dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        self.git(&["add", "-A", "."]);
        self.git(&["commit", "-q", "--allow-empty", "-m", "change"]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A master running on its own runtime thread.
pub struct Master {
    pub dir: PathBuf,
    pub url: String,
    pub token: String,
    /// Where minions connect (`ADDR:PORT`).
    pub listen: String,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Master {
    pub fn start(dir: &Path, repo: &Path) -> Master {
        let _ = std::fs::remove_file(dir.join("api.json"));
        let cfg = master::Config {
            dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            api: "127.0.0.1:0".into(),
            repo: repo.to_path_buf(),
            auto_accept: false,
            heartbeat: Duration::from_secs(5),
            keep: Duration::from_secs(30 * 86_400),
            minion_bin: None,
            build_dir: None,
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(master::run(cfg, token)).unwrap();
        });
        let info = wait_for(|| {
            std::fs::read_to_string(dir.join("api.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        });
        Master {
            dir: dir.to_path_buf(),
            url: info["url"].as_str().unwrap().trim_start_matches("http://").to_string(),
            token: info["token"].as_str().unwrap().to_string(),
            listen: info["listen"].as_str().unwrap().to_string(),
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        self.stop.cancel();
        self.thread.take().unwrap().join().unwrap();
    }

    /// Sends one request; returns the connection, to read the answer from.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> TcpStream {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(&self.url).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.url,
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream
    }

    /// One request and its whole answer: status and body (de-chunked).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
        let mut raw = Vec::new();
        self.send(method, path, body).read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = head[9..12].parse().unwrap();
        let body = raw[split + 4..].to_vec();
        let body = if head.contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
        (status, body)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, body) = self.call(method, path, body);
        (
            status,
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&body))),
        )
    }

    /// Writes a minion key into `pki/accepted/`.
    pub fn accept(dir: &Path, id: &str) -> KeyPair {
        let accepted = dir.join("pki/accepted");
        std::fs::create_dir_all(&accepted).unwrap();
        let keys = KeyPair::generate().unwrap();
        std::fs::write(accepted.join(id), format!("{}\n", keys.public)).unwrap();
        keys
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
}

/// Polls `f` every 20 ms until it gives a value; panics after [`LIMIT`].
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minion reduced to its wire protocol: a CURVE DEALER that says hello and reads.
pub struct FakeMinion {
    pub id: MinionId,
    _ctx: zmq::Context,
    dealer: zmq::Socket,
}

impl FakeMinion {
    pub fn connect(master: &Master, id: &str, keys: &KeyPair, grains: Value) -> FakeMinion {
        let id = MinionId::new(id).unwrap();
        let master_key = wire::PublicKey::read(&master.dir.join("pki/master.pub")).unwrap();
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_identity(&wire::routing_id(&id).unwrap()).unwrap();
        dealer.set_rcvtimeo(LIMIT.as_millis() as i32).unwrap();
        dealer.set_curve_serverkey(&master_key.raw()).unwrap();
        dealer.set_curve_publickey(&keys.public.raw()).unwrap();
        dealer.set_curve_secretkey(&keys.secret_raw()).unwrap();
        dealer.connect(&format!("tcp://{}", master.listen)).unwrap();
        let minion = FakeMinion { id: id.clone(), _ctx: ctx, dealer };
        let grains = grains.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        minion.send(&ToMaster::Hello(Hello { id, version: "test".into(), grains, generation: 0 }));
        minion
    }

    pub fn send(&self, msg: &ToMaster) {
        self.dealer.send(encode(msg).unwrap(), 0).unwrap();
    }

    /// The next message from the master (heartbeat answers skipped).
    pub fn recv(&self) -> ToMinion {
        loop {
            let parts = self.dealer.recv_multipart(0).expect("a message from the master in time");
            let msg = decode::<ToMinion>(parts.last().unwrap()).unwrap();
            if !matches!(msg, ToMinion::HeartbeatAck { .. }) {
                return msg;
            }
        }
    }

    /// The next assignment, skipping anything else.
    pub fn assignment(&self) -> wire::Assignment {
        loop {
            if let ToMinion::Assign(a) = self.recv() {
                return a;
            }
        }
    }
}
