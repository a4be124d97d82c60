//! The drover side of the benchmark: the real `drover-master`, `drover-minion` and
//! `drover` binaries (release build), plus the swarm for N simulated minions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use api::client::Client;
use api::{RunRequest, TargetType};

use crate::swarm::{Swarm, SwarmConfig};
use crate::table::Figures;

pub struct Options {
    pub bin_dir: PathBuf,
    pub swarm_sizes: Vec<usize>,
    /// How many real `drover-minion` processes to measure with (Salt's baseline runs 50).
    pub real_minions: usize,
    pub runs: usize,
    pub port: u16,
    /// Jobs to run one after the other on one real minion, with the master's RSS after
    /// 1,000, 10,000 and 20,000 of them (those the count reaches), and at the end.
    pub jobs: usize,
}

/// Where the master's RSS is read while `jobs` run.
const JOB_CHECKPOINTS: [usize; 3] = [1_000, 10_000, 20_000];

pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// (p50, p99, max) of durations, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = samples.len();
    let at = |q: f64| ms(samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1]);
    (at(0.50), at(0.99), ms(samples[n - 1]))
}

pub(crate) fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn ping(client: &Client, target: &str, tgt_type: TargetType, expect: usize) -> anyhow::Result<Duration> {
    job(client, target, tgt_type, "test.ping", &[], None, expect)
}

/// Runs one job and waits for it; checks every targeted minion returned success.
pub(crate) fn job(
    client: &Client,
    target: &str,
    tgt_type: TargetType,
    fun: &str,
    args: &[&str],
    batch: Option<api::Batch>,
    expect: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let resp = client.run(&RunRequest {
        target: target.into(),
        tgt_type,
        fun: fun.into(),
        args: args.iter().map(|a| serde_json::json!(a)).collect(),
        kwargs: Default::default(),
        timeout_secs: 60.0,
        batch,
        wait: true,
        words: Vec::new(),
    })?;
    let took = t0.elapsed();
    let ok = resp.returns.values().filter(|r| r.success).count();
    ensure!(ok == expect, "{fun} on {target}: {ok} of {expect} returned success");
    Ok(took)
}

pub(crate) fn timed(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut walls = Vec::with_capacity(runs);
    for _ in 0..runs {
        walls.push(f()?);
    }
    Ok(percentiles(&mut walls))
}

pub fn run(opts: &Options, figures: &mut Figures) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("drover-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = run_in(opts, &work, figures);
    let _ = std::fs::remove_dir_all(&work);
    result
}

pub(crate) fn spawn(bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<Daemon> {
    let out = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .env("DROVER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    Ok(Daemon(child))
}

fn run_in(opts: &Options, work: &Path, figures: &mut Figures) -> anyhow::Result<()> {
    let bin = |n: &str| opts.bin_dir.join(n);
    let mdir = work.join("master");
    let listen = format!("127.0.0.1:{}", opts.port);
    let t0 = Instant::now();
    let master = spawn(
        &bin("drover-master"),
        &["--dir", mdir.to_str().unwrap(), "--listen", &listen, "--api", "127.0.0.1:0", "--auto-accept"],
        &work.join("master.log"),
    )?;
    let api_file = mdir.join("api.json");
    wait_for(Duration::from_secs(30), "the master's api.json", || api_file.exists())?;
    figures.add("master_start_to_serving", t0.elapsed().as_secs_f64() * 1000.0, "ms");
    let client = Client::from_dir(&mdir)?;
    let master_pid = master.0.id();
    std::thread::sleep(Duration::from_millis(300));
    let rss_base = rss_kib(master_pid)?;
    figures.add("master_rss_no_minions", rss_base as f64 / 1024.0, "MiB");

    // one real minion: CLI round trip and idle memory
    let t0 = Instant::now();
    let minion = spawn(
        &bin("drover-minion"),
        &["--id", "real-1", "--master", &listen, "--dir", work.join("minion").to_str().unwrap()],
        &work.join("minion.log"),
    )?;
    wait_for(Duration::from_secs(30), "the real minion", || {
        client.minions().map(|m| m.iter().any(|s| s.id == "real-1" && s.connected)).unwrap_or(false)
    })?;
    figures.add("minion_start_to_connected", t0.elapsed().as_secs_f64() * 1000.0, "ms");
    let mut cli = Vec::new();
    for _ in 0..opts.runs {
        let t0 = Instant::now();
        let out = Command::new(bin("drover"))
            .args(["--dir", mdir.to_str().unwrap(), "-L", "real-1", "test.ping"])
            .output()?;
        cli.push(t0.elapsed());
        ensure!(
            out.status.success(),
            "drover -L real-1 test.ping failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (p50, p99, _) = percentiles(&mut cli);
    figures.add("cli_round_trip_one_minion_p50", p50, "ms");
    figures.add("cli_round_trip_one_minion_p99", p99, "ms");
    let mut cli_version = Vec::new();
    for _ in 0..opts.runs {
        let t0 = Instant::now();
        Command::new(bin("drover")).arg("--version").output()?;
        cli_version.push(t0.elapsed());
    }
    figures.add("cli_version_p50", percentiles(&mut cli_version).0, "ms");
    std::thread::sleep(Duration::from_secs(2));
    figures.add("minion_idle_rss", rss_kib(minion.0.id())? as f64 / 1024.0, "MiB");

    // many jobs one after the other: the master's memory must level off
    for done in 1..=opts.jobs {
        job(&client, "real-1", TargetType::Glob, "test.ping", &[], None, 1)?;
        if JOB_CHECKPOINTS.contains(&done) || done == opts.jobs {
            let rss = rss_kib(master_pid)? as f64 / 1024.0;
            figures.add(&format!("master_rss_after_{done}_jobs"), rss, "MiB");
        }
    }

    // N real minions, as Salt's baseline runs them
    let n = opts.real_minions;
    if n > 0 {
        let t0 = Instant::now();
        let mut real = Vec::new();
        for i in 1..=n {
            let id = format!("real-n{i:03}");
            let dir = work.join(&id);
            real.push(spawn(
                &bin("drover-minion"),
                &["--id", &id, "--master", &listen, "--dir", dir.to_str().unwrap()],
                &work.join(format!("{id}.log")),
            )?);
        }
        wait_for(Duration::from_secs(120), "the real minions", || {
            client
                .minions()
                .map(|m| m.iter().filter(|s| s.id.starts_with("real-n") && s.connected).count() == n)
                .unwrap_or(false)
        })?;
        figures.add(&format!("real_{n}_start_to_all_connected"), t0.elapsed().as_secs_f64() * 1000.0, "ms");
        let (p50, p99, _) = timed(opts.runs, || ping(&client, "real-n*", TargetType::Glob, n))?;
        figures.add(&format!("real_{n}_test_ping_p50"), p50, "ms");
        figures.add(&format!("real_{n}_test_ping_p99"), p99, "ms");
        let (p50, p99, _) = timed(opts.runs, || {
            job(&client, "real-n*", TargetType::Glob, "cmd.run", &["/bin/true"], None, n)
        })?;
        figures.add(&format!("real_{n}_cmd_run_p50"), p50, "ms");
        figures.add(&format!("real_{n}_cmd_run_p99"), p99, "ms");
        // a pipeline: one string is a command line for /bin/sh, as Salt's cmd.run from the CLI
        let (p50, _, _) = timed(opts.runs, || {
            job(&client, "real-n*", TargetType::Glob, "cmd.run", &["echo a b c | wc -w"], None, n)
        })?;
        figures.add(&format!("real_{n}_cmd_run_pipeline_p50"), p50, "ms");
        let (p50, _, _) = timed(opts.runs.min(5), || {
            job(
                &client,
                "real-n*",
                TargetType::Glob,
                "cmd.run",
                &["/bin/true"],
                Some(api::Batch::Percent(10)),
                n,
            )
        })?;
        figures.add(&format!("real_{n}_cmd_run_batch_10pct_p50"), p50, "ms");
        let total: u64 = real.iter().map(|d| rss_kib(d.0.id()).unwrap_or(0)).sum();
        figures.add(&format!("real_{n}_minion_rss_mean"), total as f64 / n as f64 / 1024.0, "MiB");
        drop(real);
    }

    let master_key = wire::PublicKey::read(&mdir.join("pki/master.pub"))?;
    for (i, &n) in opts.swarm_sizes.iter().enumerate() {
        let prefix = format!("s{i}x");
        let swarm = Swarm::start(&SwarmConfig {
            master: listen.clone(),
            master_key: master_key.clone(),
            count: n,
            prefix: prefix.clone(),
            first: 1,
            heartbeat: Duration::from_secs(5),
        })?;
        let took = swarm.wait_connected(n, Duration::from_secs(300))?;
        figures.add(&format!("swarm_{n}_connect_all"), took.as_secs_f64() * 1000.0, "ms");
        let target = format!("{prefix}*");
        ping(&client, &target, TargetType::Glob, n)?; // warm-up
        let (p50, p99, _) = timed(opts.runs, || ping(&client, &target, TargetType::Glob, n))?;
        figures.add(&format!("test_ping_{n}_p50"), p50, "ms");
        figures.add(&format!("test_ping_{n}_p99"), p99, "ms");
        figures.add(&format!("test_ping_{n}_returns_per_s"), n as f64 / (p50 / 1000.0), "ret/s");
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_kib(master_pid)?;
        figures.add(&format!("master_rss_{n}_connected"), rss as f64 / 1024.0, "MiB");
        figures.add(
            &format!("master_rss_per_minion_{n}"),
            rss.saturating_sub(rss_base) as f64 / n as f64,
            "KiB",
        );
        drop(swarm);
    }
    drop(minion);
    drop(master);
    Ok(())
}
