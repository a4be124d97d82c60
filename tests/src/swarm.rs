//! A one-node Docker Swarm made by a test, and left by it: [`OneNodeSwarm::init`] runs
//! `docker swarm init --advertise-addr 127.0.0.1` only when the engine is in no swarm, holds
//! a machine-wide lock (`flock` on `/tmp/drover-swarm-test.lock`) while the swarm exists, and
//! `docker swarm leave --force` when dropped (test passed or panicked). A swarm the machine
//! was in already is never touched: the test then says it skipped.
//!
//! The lock file holds the node id of the swarm a test made while it exists (and whether
//! `docker_gwbridge` was there before), so a swarm left by a run that was killed (no
//! `Drop`) is known as one of ours and left by the next run; any other swarm is not ours.
//!
//! A swarm leaves `docker_gwbridge` behind; it is removed too when it did not exist before
//! and nothing uses it.

use std::process::Command;

use crate::docker::{docker, required};

/// The lock every swarm-making test takes, in every test binary of every checkout.
const LOCK: &str = "/tmp/drover-swarm-test.lock";

/// A swarm this test made; left when dropped.
pub struct OneNodeSwarm {
    gwbridge_was_there: bool,
    lock: nix::fcntl::Flock<std::fs::File>,
}

/// The engine's swarm node id (empty in no swarm).
fn node_id() -> String {
    docker(&["info", "--format", "{{.Swarm.NodeID}}"]).trim().to_string()
}

/// Writes `text` as the whole content of the lock file.
fn mark(file: &std::fs::File, text: &str) {
    use std::io::{Seek, Write};
    let mut file = file;
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(text.as_bytes());
}

/// The engine's swarm state: `inactive`, `active`, `pending`, `error`, `locked`.
fn swarm_state() -> String {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).trim().to_string()
}

fn gwbridge_exists() -> bool {
    !docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).trim().is_empty()
}

impl OneNodeSwarm {
    /// A one-node swarm, or `None` (after saying why) when there is no engine or the engine
    /// is in a swarm this test did not make. With `DROVER_REQUIRE_DOCKER=1`, an engine that
    /// cannot make a swarm for another reason is a failure.
    pub fn init() -> Option<OneNodeSwarm> {
        if !required() {
            return None;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .unwrap_or_else(|e| panic!("{LOCK}: {e}"));
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("lock {LOCK}: {e}"));
        // `<node id> <1 if docker_gwbridge was there before>` while a swarm of ours exists
        let ours = std::fs::read_to_string(LOCK).unwrap_or_default();
        let (ours, bridge_before) = ours.trim().split_once(' ').unwrap_or((ours.trim(), "1"));
        let id = node_id();
        let mut stale_bridge = false;
        if !id.is_empty() && ours == id {
            eprintln!("a swarm made by a run of this test that was killed is still there ({id}): leaving it");
            docker(&["swarm", "leave", "--force"]);
            mark(&lock, "");
            stale_bridge = bridge_before == "0";
        }
        let state = swarm_state();
        if state != "inactive" {
            eprintln!(
                "skipped: the Docker engine is in a swarm already (state {state:?}) that this test did not make; \
                 it never touches one (`docker swarm leave` it to run this test)"
            );
            return None;
        }
        if stale_bridge {
            docker(&["network", "rm", "docker_gwbridge"]);
        }
        let gwbridge_was_there = gwbridge_exists();
        let out = Command::new("docker")
            .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
            .output()
            .expect("run docker swarm init");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            assert!(
                std::env::var("DROVER_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "DROVER_REQUIRE_DOCKER=1 but `docker swarm init --advertise-addr 127.0.0.1` failed: {why}"
            );
            eprintln!("skipped: `docker swarm init` failed: {why}");
            return None;
        }
        mark(&lock, &format!("{} {}", node_id(), u8::from(gwbridge_was_there)));
        Some(OneNodeSwarm { gwbridge_was_there, lock })
    }

    /// The hostname of the swarm's one node, as `drover ps` shows it.
    pub fn node(&self) -> String {
        docker(&["node", "ls", "--format", "{{.Hostname}}"]).trim().to_string()
    }
}

impl Drop for OneNodeSwarm {
    fn drop(&mut self) {
        let out = Command::new("docker").args(["swarm", "leave", "--force"]).output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!("docker swarm leave --force: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            mark(&self.lock, "");
        }
        if !self.gwbridge_was_there {
            // in use (a container of another swarm-less test never is on it): left alone
            for _ in 0..20 {
                if !gwbridge_exists()
                    || Command::new("docker")
                        .args(["network", "rm", "docker_gwbridge"])
                        .output()
                        .is_ok_and(|o| o.status.success())
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    }
}
