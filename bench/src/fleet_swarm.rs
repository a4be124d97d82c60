//! The fleet on Swarm beside the fleet on one engine, in the same run on the same machine:
//! `up` of 10 slots until every minion is connected, converged and healthy, one slot swap
//! stop-first (with its steps, from the master's events) and one start-first, and a rollout of the 10 slots to another
//! version (batch 2), start to every slot ready.
//!
//! The swarm is a one-node swarm this run makes (`docker swarm init --advertise-addr
//! 127.0.0.1`) and leaves at the end (`docker swarm leave --force`), under the same
//! machine-wide lock as the Swarm tests; an engine in a swarm already is refused, never
//! touched. The fleet (`benchswarm<pid>`) is the one of `drover-bench fleet`, then the same
//! with `engine: swarm`, then on Swarm with a registry the fleet runs (`registry:`, the
//! project's `roles/registry.yaml`: every version pushed once, services by digest);
//! everything it makes is removed at the end.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::fleet::{
    Master, Options, Row, clean, docker, events_since, fleet_yaml, git, last_event, secs, start,
};

const LOCK: &str = "/tmp/drover-swarm-test.lock";

/// A one-node swarm made by this run; left when dropped. (The Swarm tests' helper,
/// `tests::swarm::OneNodeSwarm`, does the same; the lock file holds the swarm's node id
/// while it exists, so either knows a swarm the other left when killed.)
struct OneNodeSwarm {
    lock: nix::fcntl::Flock<std::fs::File>,
    gwbridge_was_there: bool,
}

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

impl OneNodeSwarm {
    fn init() -> anyhow::Result<OneNodeSwarm> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK)?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("lock {LOCK}: {e}"))?;
        // `<node id> <1 if docker_gwbridge was there before>` while a swarm of ours exists
        let ours = std::fs::read_to_string(LOCK).unwrap_or_default();
        let (ours, bridge_before) = ours.trim().split_once(' ').unwrap_or((ours.trim(), "1"));
        let id = node_id();
        if !id.is_empty() && ours == id {
            eprintln!("a swarm made by a killed run is still there ({id}): leaving it");
            docker(&["swarm", "leave", "--force"]);
            mark(&lock, "");
            if bridge_before == "0" {
                docker(&["network", "rm", "docker_gwbridge"]);
            }
        }
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).trim().to_string();
        if state != "inactive" {
            bail!(
                "the Docker engine is in a swarm already (state {state:?}): this benchmark makes its own, leave that one first"
            );
        }
        let gwbridge_was_there =
            !docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).trim().is_empty();
        let out = Command::new("docker")
            .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
            .output()
            .context("docker swarm init")?;
        if !out.status.success() {
            bail!("docker swarm init: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        mark(&lock, &format!("{} {}", node_id(), u8::from(gwbridge_was_there)));
        Ok(OneNodeSwarm { lock, gwbridge_was_there })
    }
}

impl Drop for OneNodeSwarm {
    fn drop(&mut self) {
        docker(&["swarm", "leave", "--force"]);
        mark(&self.lock, "");
        if !self.gwbridge_was_there {
            for _ in 0..20 {
                if docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).trim().is_empty() {
                    break;
                }
                docker(&["network", "rm", "docker_gwbridge"]);
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// What one engine took.
struct Figures {
    up: Duration,
    swap: Duration,
    /// The swap's steps: `step (detail)` at its offset from the first.
    steps: Vec<String>,
    /// The swap back, start-first.
    swap_start_first: Duration,
    rollout: Duration,
}

/// The figures of the fleet as fleet.yaml is now.
fn up_and_rollout(master: &Master, fleet: &str) -> anyhow::Result<Figures> {
    let up = master.ok(&["up", "--timeout", "300"])?;
    let since = last_event(master)?;
    let swap = master.ok(&["upgrade", "one", "--to", "2"])?;
    let slot = format!("drover/fleet/{fleet}/slot/{fleet}-one-1/");
    let events: Vec<_> = events_since(master, since)?
        .into_iter()
        .filter(|e| e["tag"].as_str().is_some_and(|t| t.starts_with(&slot)))
        .collect();
    let first = events.first().and_then(|e| e["time_ms"].as_u64()).unwrap_or(0);
    let steps = events
        .iter()
        .map(|e| {
            let at = e["time_ms"].as_u64().unwrap_or(first).saturating_sub(first);
            let step = e["data"]["step"].as_str().unwrap_or("?");
            let detail =
                e["data"]["detail"].as_str().map(|d| format!(" ({})", d.lines().next().unwrap_or("")));
            format!("{:.2} s {step}{}", at as f64 / 1000.0, detail.unwrap_or_default())
        })
        .collect();
    let swap_start_first = master.ok(&["upgrade", "one", "--to", "1", "--order", "start-first"])?;
    let rollout = master.ok(&["upgrade", "web", "one", "--to", "2", "--batch", "2"])?;
    master.ok(&["down", "--volumes"])?;
    Ok(Figures { up, swap, steps, swap_start_first, rollout })
}

pub fn run(opts: &Options) -> anyhow::Result<Vec<Row>> {
    let fleet = format!("benchswarm{}", std::process::id());
    let swarm = OneNodeSwarm::init()?;
    let result = measure(opts, &fleet);
    clean(&fleet);
    drop(swarm);
    result
}

fn measure(opts: &Options, fleet: &str) -> anyhow::Result<Vec<Row>> {
    let (_work, master) = start(opts, fleet, &fleet_yaml(fleet))?;
    eprintln!("the local engine: up, a swap, a rollout...");
    let local = up_and_rollout(&master, fleet)?;
    let swarm_yaml = fleet_yaml(fleet).replacen('\n', "\nengine: swarm\n", 1);
    std::fs::write(master.repo.join("fleet.yaml"), swarm_yaml)?;
    git(&master.repo, &["commit", "-qam", "engine: swarm"])?;
    eprintln!("Swarm: up, a swap, a rollout...");
    let swarm = up_and_rollout(&master, fleet)?;
    // the same on Swarm with a registry the fleet runs (the project's roles/registry.yaml):
    // each version pushed once, every service running its image by digest
    let port = std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
    let registry_yaml = fleet_yaml(fleet).replacen(
        '\n',
        &format!("\nengine: swarm\nregistry: {{address: \"127.0.0.1:{port}\", role: registry}}\n"),
        1,
    ) + &format!(
        "  registry: {{replicas: 1, ports: [\"{port}:5000\"], volumes: [/var/lib/docker-registry], \
         update: {{min_healthy: 0s, health_timeout: 60s}}}}\n"
    );
    for path in ["roles/registry.yaml", "states/registry/registry.yaml", "states/registry/config.yml"] {
        let to = master.repo.join(path);
        std::fs::create_dir_all(to.parent().expect("a folder"))?;
        std::fs::copy(opts.repo_root.join(path), to)?;
    }
    std::fs::write(master.repo.join("fleet.yaml"), registry_yaml)?;
    git(&master.repo, &["add", "-A"])?;
    git(&master.repo, &["commit", "-qm", "engine: swarm, with a registry"])?;
    eprintln!("Swarm with a registry: up, a swap, a rollout...");
    let registry = up_and_rollout(&master, fleet)?;
    for (engine, figures) in
        [("the local engine", &local), ("Swarm", &swarm), ("Swarm with a registry", &registry)]
    {
        eprintln!("one slot swap on {engine}, step by step:");
        for step in &figures.steps {
            eprintln!("  {step}");
        }
    }
    Ok(vec![
        Row {
            name: "up of 10 slots (all connected, converged, healthy)".into(),
            drover: secs(swarm.up),
            compose: secs(local.up),
            target: secs(registry.up),
        },
        Row {
            name: "one slot swap, stop-first (the CLI's `upgrade` of a 1-slot role)".into(),
            drover: secs(swarm.swap),
            compose: secs(local.swap),
            target: secs(registry.swap),
        },
        Row {
            name: "one slot swap, start-first (`upgrade --order start-first`)".into(),
            drover: secs(swarm.swap_start_first),
            compose: secs(local.swap_start_first),
            target: secs(registry.swap_start_first),
        },
        Row {
            name: "rollout of 10 slots to another version, batch 2 (start to every slot ready)".into(),
            drover: secs(swarm.rollout),
            compose: secs(local.rollout),
            target: secs(registry.rollout),
        },
    ])
}

/// The table: `drover` is Swarm's figure, `compose` the local engine's, `target` Swarm's
/// with a registry.
pub fn print(rows: &[Row]) {
    println!("| figure | on Swarm (one node) | on Swarm with a registry (by digest) | on the local engine |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.name, r.drover, r.target, r.compose);
    }
}
