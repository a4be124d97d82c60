//! The demo cloud end to end, as the README's first command runs it, on the real engine:
//! `drover demo` brings dockercoins up → coins accumulate in redis → `scale worker=4` →
//! `upgrade worker --to 1.1` while a client polls the webui through haproxy (no request
//! fails) → `chaos kill` → every slot healed and the coin count never went down (the
//! datastore's volume survives) → `drover demo down` leaves nothing.
//!
//! The demo runs under this test's own fleet name and webui port ([`Scope`]), from a copy
//! of the repository's cloud files, with the two releases of the demo app built here (debug,
//! in their own target folder, once per machine's target dir).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::docker::{Scope, required};
use tests::{bin, repo_root, show, wait_until};

/// The demo app's release `version` (`1.1`: with the fix), built once into its own folder.
fn coins_binary(version: &str) -> PathBuf {
    let root = repo_root();
    let target = root.join("target").join("coins-test");
    let out = target.join(version).join("coins");
    if out.exists() {
        return out;
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "-q", "-p", "coins", "--target-dir"])
        .arg(&target)
        .env("COINS_VERSION", version);
    if version == "1.1" {
        cmd.args(["--features", "fixed-seed"]);
    }
    let built = cmd.output().expect("run cargo");
    assert!(built.status.success(), "cargo build -p coins ({version}): {}", show(&built));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::copy(target.join("debug").join("coins"), &out).unwrap();
    out
}

/// A copy of the repository's cloud files and the two app binaries: what `drover demo`
/// reads from a clone.
fn clone_of_the_cloud(dir: &Path) {
    let root = repo_root();
    let copy = |rel: &str| {
        let (from, to) = (root.join(rel), dir.join(rel));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let status = Command::new("cp").arg("-r").arg(&from).arg(&to).status().unwrap();
        assert!(status.success(), "copy {rel}");
    };
    for rel in [
        "fleet.yaml",
        "roles",
        "states",
        "images/base/base.yaml",
        "images/coins/Dockerfile",
        "images/coins/.dockerignore",
    ] {
        copy(rel);
    }
    for version in ["1.0", "1.1"] {
        let to = dir.join("images/coins/bin").join(version);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(coins_binary(version), to.join("coins")).unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `path` on 127.0.0.1:`port`: the status and body, or why not.
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The webui's `/json`, through haproxy.
fn stats(port: u16) -> Option<Value> {
    match get(port, "/json") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn coins(v: &Value) -> u64 {
    v["coins"].as_u64().unwrap_or(0)
}

struct Demo {
    state: PathBuf,
}

impl Demo {
    fn drover(&self, args: &[&str]) -> Output {
        Command::new(bin("drover")).arg("--dir").arg(self.state.join("master")).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.drover(args);
        assert!(out.status.success(), "drover {args:?}: {}", show(&out));
        out
    }

    fn ps(&self) -> Vec<Value> {
        let out = self.drover(&["--out", "json", "ps"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn all_ready(&self) -> bool {
        let slots = self.ps();
        !slots.is_empty()
            && slots
                .iter()
                .all(|s| s["connected"] == true && s["converged"].is_string() && s["problem"].is_null())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // the demo's master, if the test ended before `demo down`
        if let Ok(pid) = std::fs::read_to_string(self.state.join("master.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn the_demo_cloud_mines_scales_upgrades_survives_chaos_and_goes_away() {
    if !required() {
        return;
    }
    let scope = Scope::new("demo");
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("clone");
    clone_of_the_cloud(&clone);
    let port = free_port();
    let demo = Demo { state: work.path().join("state") };

    // drover demo: images, master, fleet, the addresses
    let started = Instant::now();
    let out = Command::new(bin("drover"))
        .args(["demo", "--state"])
        .arg(&demo.state)
        .arg("--repo")
        .arg(&clone)
        .args(["--name", &scope.fleet, "--image", &format!("{}-coins", scope.fleet)])
        .args(["--port", &port.to_string(), "--timeout", "300"])
        .output()
        .unwrap();
    assert!(out.status.success(), "drover demo: {}", show(&out));
    eprintln!("drover demo took {:.0} s", started.elapsed().as_secs_f64());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("dashboard: http://127.0.0.1:"), "{text}");
    assert!(text.contains(&format!("webui:     http://127.0.0.1:{port}")), "{text}");
    assert_eq!(demo.ps().len(), 9, "{:?}", demo.ps());

    // the page answers through haproxy, and coins accumulate in redis
    let (status, page) = get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"), "{page}");
    wait_until(Duration::from_secs(180), "coins to be mined", || stats(port).is_some_and(|s| coins(&s) > 0));
    let before = stats(port).unwrap();
    eprintln!("with 2 workers: {before}");

    // more workers: every one of them mines
    demo.ok(&["scale", "worker=4"]);
    assert_eq!(demo.ps().iter().filter(|s| s["role"] == "worker").count(), 4);

    // the fix, rolled out while a client polls the webui through haproxy: no request fails
    let poll = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, port2) = (stop.clone(), port);
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failed, mut last) = (0u32, Vec::new(), 0u64);
            let mut went_down = Vec::new();
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                match get(port2, "/json") {
                    Ok((200, body)) => {
                        ok += 1;
                        let n = serde_json::from_str::<Value>(&body).map(|v| coins(&v)).unwrap_or(0);
                        if n < last {
                            went_down.push((last, n));
                        }
                        last = last.max(n);
                    }
                    other => failed.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed, went_down)
        });
        (stop, handle)
    };
    let out = demo.ok(&["upgrade", "worker", "--to", "1.1"]);
    poll.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, went_down) = poll.1.join().unwrap();
    assert!(ok > 0);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the upgrade: {failed:?}\n{}",
        failed.len(),
        ok as usize + failed.len(),
        show(&out)
    );
    assert!(went_down.is_empty(), "the coin count went down: {went_down:?}");
    assert!(
        demo.ps().iter().filter(|s| s["role"] == "worker").all(|s| s["version"] == "1.1"),
        "{:?}",
        demo.ps()
    );

    // chaos: every kill healed in its slot, the count never going down
    let mut last = coins(&stats(port).unwrap_or_default());
    let chaos = std::thread::spawn({
        let state = demo.state.clone();
        move || {
            Command::new(bin("drover"))
                .arg("--dir")
                .arg(state.join("master"))
                .args(["chaos", "kill", "--every", "5s", "--for", "30s"])
                .output()
                .unwrap()
        }
    });
    while !chaos.is_finished() {
        if let Some(s) = stats(port) {
            assert!(coins(&s) >= last, "the coin count went down during chaos: {last} then {}", coins(&s));
            last = coins(&s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = chaos.join().unwrap();
    assert!(out.status.success(), "chaos: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("killed 6 containers"), "{}", show(&out));
    wait_until(Duration::from_secs(180), "every slot healed and ready", || demo.all_ready());
    wait_until(Duration::from_secs(120), "the count to go on from where it was", || {
        stats(port).is_some_and(|s| coins(&s) >= last)
    });

    // demo down: nothing left
    let out =
        Command::new(bin("drover")).args(["demo", "down", "--state"]).arg(&demo.state).output().unwrap();
    assert!(out.status.success(), "demo down: {}", show(&out));
    assert!(scope.containers().is_empty(), "{:?}", scope.containers());
    assert!(scope.networks().is_empty());
    assert!(scope.volumes().is_empty());
    assert!(!demo.state.exists());
}
