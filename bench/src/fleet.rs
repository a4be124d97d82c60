//! The container fleet's figures, on the real Docker engine, side by side with
//! `docker-compose` (Debian's 1.29) in the same run:
//!
//! - `up` of 10 containers until every minion is connected, converged and healthy, against
//!   `docker-compose up -d` of the same 10 containers (compose returns once they started);
//! - one slot swap (`upgrade` of a 1-slot role: the old container stopped, the new one
//!   ready), its daemon's own start included;
//! - heal: a container killed until its replacement is ready;
//! - a rollout of 10 slots, batch 2;
//! - a fleet wiped and started again (`down` then `up`), against compose's `down` + `up -d`.
//!
//! Everything it makes carries the fleet name `benchfleet<pid>` (images, containers, networks,
//! volumes) and is removed at the end. The base image is built (or found by its hash) from
//! the repository's `images/base/base.yaml`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub struct Options {
    pub bin_dir: PathBuf,
    /// The repository whose `images/base/base.yaml` makes the base image.
    pub repo_root: PathBuf,
    pub port: u16,
    /// Repetitions of the swap and heal timings.
    pub runs: usize,
}

/// One row of the table: a figure, drover's value, compose's (if any), the target.
pub struct Row {
    pub name: String,
    pub drover: String,
    pub compose: String,
    pub target: String,
}

const WEB: &str = "#!/bin/sh\nmkdir -p /tmp/www && echo \"web $DROVER_IMAGE_VERSION\" > /tmp/www/index.html\nexec busybox httpd -f -p 8080 -h /tmp/www\n";

pub(crate) fn fleet_yaml(fleet: &str) -> String {
    // min_healthy 0s: a swap is timed to the first moment the new slot is ready
    format!(
        "fleet: {fleet}\nimage: {fleet}-app\nversion: \"1\"\nroles:\n  \
         web: {{replicas: 9, update: {{batch: 2, min_healthy: 0s, health_timeout: 60s}}}}\n  \
         one: {{replicas: 1, update: {{min_healthy: 0s, health_timeout: 60s}}}}\n"
    )
}

const STATE: &str =
    "web:\n  daemon.running:\n    - cmd: [\"/app/web\"]\n    - health: {tcp: \"127.0.0.1:8080\"}\n";

fn compose_yaml(fleet: &str) -> String {
    let mut s = String::from("version: \"2.4\"\nservices:\n");
    for i in 1..=10 {
        s.push_str(&format!(
            "  web{i}:\n    image: {fleet}-app:1\n    entrypoint: [\"/app/web\"]\n    \
             labels: {{drover.fleet: \"{fleet}\"}}\n"
        ));
    }
    s.push_str(&format!("networks:\n  default:\n    labels: {{drover.fleet: \"{fleet}\"}}\n"));
    s
}

pub(crate) struct Master {
    child: Child,
    dir: PathBuf,
    bin: PathBuf,
    /// The config repository it serves.
    pub(crate) repo: PathBuf,
}

impl Master {
    pub(crate) fn drover(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(self.bin.join("drover"))
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .context("run drover")
    }

    pub(crate) fn ok(&self, args: &[&str]) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let out = self.drover(args)?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "drover {}: {}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

pub(crate) fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Removes every object of `fleet` (containers, networks, volumes, images named for it).
pub(crate) fn clean(fleet: &str) {
    let filter = format!("label=drover.fleet={fleet}");
    // Swarm services (and with them their tasks' containers) and secrets, when in a swarm
    for id in docker(&["service", "ls", "-q", "--filter", &filter]).split_whitespace() {
        docker(&["service", "rm", id]);
    }
    for _ in 0..120 {
        if docker(&["ps", "-aq", "--filter", &filter]).trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for id in docker(&["secret", "ls", "-q", "--filter", &filter]).split_whitespace() {
        docker(&["secret", "rm", id]);
    }
    for id in docker(&["ps", "-aq", "--filter", &filter]).split_whitespace() {
        docker(&["rm", "-f", "-v", id]);
    }
    for id in docker(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
        docker(&["network", "rm", id]);
    }
    for v in docker(&["volume", "ls", "-q", "--filter", &filter]).split_whitespace() {
        docker(&["volume", "rm", "-f", v]);
    }
    for image in docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
        if image.starts_with(&format!("{fleet}-")) {
            docker(&["rmi", "-f", image]);
        }
    }
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("git {}", args.join(" "));
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The master's events after `since`.
pub(crate) fn events_since(master: &Master, since: u64) -> anyhow::Result<Vec<Value>> {
    let out = master.drover(&["--out", "json", "events", "--no-follow", "--since", &since.to_string()])?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// The sequence number of the master's last event.
pub(crate) fn last_event(master: &Master) -> anyhow::Result<u64> {
    Ok(events_since(master, 0)?.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0))
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Polls `cond` every 20 ms for up to `limit`; how long it took.
pub(crate) fn until(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !cond()? {
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed())
}

pub fn run(opts: &Options) -> anyhow::Result<Vec<Row>> {
    let fleet = format!("benchfleet{}", std::process::id());
    let result = measure(opts, &fleet);
    clean(&fleet);
    result
}

/// A config repo with `fleet_yaml`, a master on it (listening on every address) and the
/// images `<fleet>-app:1` and `:2`; the temp dir holds them all.
pub(crate) fn start(
    opts: &Options,
    fleet: &str,
    fleet_yaml: &str,
) -> anyhow::Result<(tempfile::TempDir, Master)> {
    let work = tempfile::tempdir()?;
    let repo = work.path().join("repo");
    for (path, text) in [
        ("fleet.yaml", fleet_yaml.to_string()),
        ("roles/web.yaml", "states: [app.web]\n".into()),
        ("roles/one.yaml", "states: [app.web]\n".into()),
        ("states/app/web.yaml", STATE.into()),
        ("images/base/base.yaml", std::fs::read_to_string(opts.repo_root.join("images/base/base.yaml"))?),
    ] {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().expect("a folder"))?;
        std::fs::write(p, text)?;
    }
    git(&repo, &["init", "-q"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-qm", "bench fleet"])?;

    let dir = work.path().join("master");
    let log = std::fs::File::create(work.path().join("master.log"))?;
    let child = Command::new(opts.bin_dir.join("drover-master"))
        .arg("--dir")
        .arg(&dir)
        .args(["--listen", &format!("0.0.0.0:{}", opts.port), "--api", "127.0.0.1:0", "--repo"])
        .arg(&repo)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let master = Master { child, dir: dir.clone(), bin: opts.bin_dir.clone(), repo };
    until(Duration::from_secs(30), "the master's API", || Ok(dir.join("api.json").exists()))?;

    eprintln!("building the images (the base once per machine)...");
    for version in ["1", "2"] {
        let ctx = work.path().join(format!("app-{version}"));
        std::fs::create_dir_all(&ctx)?;
        std::fs::write(ctx.join("Dockerfile"), "FROM base\nCOPY web /app/web\nRUN chmod 755 /app/web\n")?;
        std::fs::write(ctx.join("web"), WEB.replace("web $", &format!("web{version} $")))?;
        master.ok(&[
            "image",
            "build",
            ctx.to_str().expect("utf-8"),
            "--tag",
            &format!("{fleet}-app:{version}"),
        ])?;
    }
    Ok((work, master))
}

fn measure(opts: &Options, fleet: &str) -> anyhow::Result<Vec<Row>> {
    let (work, master) = start(opts, fleet, &fleet_yaml(fleet))?;
    let mut rows = Vec::new();

    // compose first: the same 10 containers, started
    let compose_dir = work.path().join("compose");
    std::fs::create_dir_all(&compose_dir)?;
    std::fs::write(compose_dir.join("docker-compose.yml"), compose_yaml(fleet))?;
    let compose = |args: &[&str]| -> anyhow::Result<Duration> {
        let start = Instant::now();
        let out = Command::new("docker-compose")
            .current_dir(&compose_dir)
            .args(["-p", &format!("{fleet}c")])
            .args(args)
            .output()
            .context("run docker-compose (Debian package docker-compose)")?;
        if !out.status.success() {
            bail!("docker-compose {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(start.elapsed())
    };
    eprintln!("docker-compose up -d...");
    let compose_up = compose(&["up", "-d"])?;
    let compose_down = compose(&["down"])?;
    let compose_up2 = compose(&["up", "-d"])?;
    compose(&["down"])?;

    eprintln!("drover up...");
    let up = master.ok(&["up", "--timeout", "300"])?;
    rows.push(Row {
        name: "up of 10 containers (drover: all connected, converged, healthy; compose: started)".into(),
        drover: secs(up),
        compose: secs(compose_up),
        target: format!("≤ compose + 1 s = {}", secs(compose_up + Duration::from_secs(1))),
    });

    // one slot swap, timed from the CLI (the rollout of a 1-slot role) and its parts from
    // the events
    eprintln!("slot swaps...");
    let mut swaps = Vec::new();
    for i in 0..opts.runs.max(1) {
        let to = if i % 2 == 0 { "2" } else { "1" };
        swaps.push(master.ok(&["upgrade", "one", "--to", to])?);
    }
    if opts.runs.max(1) % 2 == 1 {
        // back at 1, so the rollout below moves 10 slots
        master.ok(&["upgrade", "one", "--to", "1"])?;
    }
    // the daemon (busybox httpd) is started when its health check first passes, 50–150 ms
    // after it was spawned, so its own start is inside this figure
    rows.push(Row {
        name: "one slot swap (old stopped → new ready, the daemon's start included), median".into(),
        drover: secs(median(swaps)),
        compose: "–".into(),
        target: "< 1 s (without the daemon's start)".into(),
    });

    // heal: a container killed until its replacement is ready, by the master's own account
    // (its `healed` event), so that this loop's polling does not load the machine
    eprintln!("heals...");
    let mut heals = Vec::new();
    // a different slot each time: the healer gives a slot up after 5 deaths in 5 minutes
    for i in 0..opts.runs.clamp(1, 9) {
        let slot = format!("{fleet}-web-{}", i + 1);
        let since = last_event(&master)?;
        let killed = now_ms();
        docker(&["kill", &slot]);
        let tag = format!("drover/fleet/{fleet}/slot/{slot}/healed");
        let mut healed = None;
        until(Duration::from_secs(60), "the killed slot healed", || {
            healed = events_since(&master, since)?.into_iter().find(|e| e["tag"] == tag.as_str());
            Ok(healed.is_some())
        })?;
        let at = healed.and_then(|e| e["time_ms"].as_u64()).unwrap_or(killed);
        heals.push(Duration::from_millis(at.saturating_sub(killed)));
    }
    rows.push(Row {
        name: format!(
            "heal: container killed → replacement ready (the master's `healed` event), median of {}",
            heals.len()
        ),
        drover: secs(median(heals)),
        compose: "–".into(),
        target: "< 3 s".into(),
    });

    eprintln!("a rollout of 10 slots, batch 2...");
    let rollout = master.ok(&["upgrade", "web", "one", "--to", "2", "--batch", "2"])?;
    rows.push(Row {
        name: "rollout of 10 slots, batch 2 (start to every slot ready)".into(),
        drover: secs(rollout),
        compose: "–".into(),
        target: "–".into(),
    });

    eprintln!("wipe and restart...");
    let start = Instant::now();
    master.ok(&["down"])?;
    master.ok(&["up", "--timeout", "300"])?;
    let wipe = start.elapsed();
    rows.push(Row {
        name: "fleet wipe-and-restart (down + up until ready; compose: down + up -d)".into(),
        drover: secs(wipe),
        compose: secs(compose_down + compose_up2),
        target: "(the seed system: ~30 s)".into(),
    });
    master.ok(&["down", "--volumes"])?;
    Ok(rows)
}

pub fn print(rows: &[Row]) {
    println!("| figure | drover | docker-compose | target |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.name, r.drover, r.compose, r.target);
    }
}
