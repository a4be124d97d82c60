//! The state benchmark (issue 3): an idempotent `state.apply` of a 50-resource state (48
//! `file.managed` rendered from a Tera template + 2 daemons) on one minion, and a role
//! apply to N minions through the master, with the real binaries and a config repo (git)
//! made for the run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use api::client::Client;
use api::{RolesApplyRequest, TargetType};

use crate::measure::{job, spawn, timed, wait_for};
use crate::table::Figures;

pub struct Options {
    pub bin_dir: std::path::PathBuf,
    pub minions: usize,
    pub runs: usize,
    pub port: u16,
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@drover.invalid"])
        .args(args)
        .output()
        .context("run git")?;
    ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The config repo: role `fifty` (48 files + 2 daemons) for minion `one`, role `two` (a
/// templated file + a command run on its change, the shape of Salt's baseline) for `n*`.
fn make_repo(repo: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo.join("roles"))?;
    std::fs::create_dir_all(repo.join("states/bench"))?;
    let out = out.display();
    std::fs::write(repo.join("roles/fifty.yaml"), "description: 50 resources\nstates: [bench.fifty]\n")?;
    std::fs::write(repo.join("roles/two.yaml"), "description: 2 resources\nstates: [bench.two]\n")?;
    std::fs::write(repo.join("roles/top.yaml"), "'one': [fifty]\n'n*': [two]\n'local': [fiftylocal]\n")?;
    std::fs::write(
        repo.join("roles/fiftylocal.yaml"),
        "description: 50 resources, masterless\nstates: [bench.fiftylocal]\n",
    )?;
    let mut fifty = String::new();
    for i in 1..=48 {
        fifty += &format!(
            "file-{i:02}:\n  file.managed:\n    - name: {out}/{{{{ id }}}}/f{i:02}.conf\n    - source: bench/f.conf\n    - template: tera\n    - makedirs: true\n"
        );
    }
    for d in 1..=2 {
        fifty += &format!("daemon-{d}:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"4100{d}\"]\n");
    }
    // masterless, the shape of Salt's salt-call --local baseline exactly: no supervisor
    // outlives the command, so the 2 long-running processes are started by cmd.run with
    // `unless`, as Salt's are
    let mut local = fifty.split("daemon-1:").next().unwrap_or_default().to_string();
    for d in 1..=2 {
        local += &format!(
            "daemon-{d}:\n  cmd.run:\n    - name: nohup sleep 4200{d} >/dev/null 2>&1 & echo $! > {out}/local-daemon-{d}.pid\n    - unless: test -e {out}/local-daemon-{d}.pid && kill -0 $(cat {out}/local-daemon-{d}.pid)\n"
        );
    }
    std::fs::write(repo.join("states/bench/fiftylocal.yaml"), local)?;
    std::fs::write(repo.join("states/bench/fifty.yaml"), fifty)?;
    std::fs::write(
        repo.join("states/bench/f.conf"),
        "# managed by drover\nid = {{ id }}\nos = {{ grains.os }}\n{% for i in range(end=3) %}\nitem{{ i }} = {{ i * 10 }}\n{% endfor %}\n",
    )?;
    std::fs::write(
        repo.join("states/bench/two.yaml"),
        format!(
            "bench-file:\n  file.managed:\n    - name: {out}/{{{{ id }}}}/bench.conf\n    - source: bench/two.conf\n    - template: tera\n    - makedirs: true\n\
             bench-cmd:\n  cmd.run:\n    - name: [\"/bin/sh\", \"-c\", \"echo applied > {out}/{{{{ id }}}}/cmd.marker\"]\n    - onchanges:\n      - file: bench-file\n"
        ),
    )?;
    write_two(repo, 1)?;
    git(repo, &["init", "-q"])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "bench"])?;
    Ok(())
}

/// The template of role `two`, version `v` (a new version changes every minion's file).
fn write_two(repo: &Path, v: u32) -> anyhow::Result<()> {
    let text = format!("# managed by drover, version {v}\nid = {{{{ id }}}}\nos = {{{{ grains.os }}}}\n");
    Ok(std::fs::write(repo.join("states/bench/two.conf"), text)?)
}

/// Waits until every minion named in `ids` reports a successful apply of `commit`.
fn converged(client: &Client, ids: &[String], commit: &str, limit: Duration) -> anyhow::Result<()> {
    wait_for(limit, "the minions to converge", || {
        client.roles_status().is_ok_and(|rows| {
            ids.iter().all(|id| {
                rows.iter().any(|r| {
                    &r.id == id && r.converged_commit.as_deref() == Some(commit) && r.result == Some(true)
                })
            })
        })
    })
}

pub fn run(opts: &Options, figures: &mut Figures) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("drover-bench-states-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = run_in(opts, &work, figures);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `drover-minion local` of the 50 resources, a cold process each time (what
/// `salt-call --local state.apply` is): its first apply, then idempotent ones.
fn masterless(opts: &Options, work: &Path, repo: &Path, figures: &mut Figures) -> anyhow::Result<()> {
    let bin = opts.bin_dir.join("drover-minion");
    let apply_checked = |idempotent: bool| -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let out = Command::new(&bin)
            .args(["--id", "local", "--dir"])
            .arg(work.join("local"))
            .args(["local", "--repo"])
            .arg(repo)
            .args(["state.apply"])
            .output()
            .context("run drover-minion local")?;
        let took = t0.elapsed();
        ensure!(out.status.success(), "drover-minion local: {}", String::from_utf8_lossy(&out.stdout));
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(text.contains("50 states:"), "not 50 states: {text}");
        ensure!(!idempotent || text.contains(" 0 changed,"), "an idempotent run changed something: {text}");
        Ok(took)
    };
    figures.add("state50_local_first", apply_checked(false)?.as_secs_f64() * 1000.0, "ms");
    let (p50, _, _) = timed(opts.runs, || apply_checked(true))?;
    figures.add("state50_local_idempotent_p50", p50, "ms");
    Ok(())
}

/// Ends what the masterless runs started in the background (`local-daemon-N.pid`).
fn stop_local_daemons(out: &Path) {
    for d in 1..=2 {
        if let Ok(pid) = std::fs::read_to_string(out.join(format!("local-daemon-{d}.pid")))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn run_in(opts: &Options, work: &Path, figures: &mut Figures) -> anyhow::Result<()> {
    let bin = |n: &str| opts.bin_dir.join(n);
    let repo = work.join("repo");
    make_repo(&repo, &work.join("out"))?;
    let local = masterless(opts, work, &repo, figures);
    stop_local_daemons(&work.join("out"));
    local?;
    let mdir = work.join("master");
    let listen = format!("127.0.0.1:{}", opts.port);
    let _master = spawn(
        &bin("drover-master"),
        &[
            "--dir",
            mdir.to_str().unwrap(),
            "--listen",
            &listen,
            "--api",
            "127.0.0.1:0",
            "--auto-accept",
            "--repo",
            repo.to_str().unwrap(),
        ],
        &work.join("master.log"),
    )?;
    wait_for(Duration::from_secs(30), "the master's api.json", || mdir.join("api.json").exists())?;
    let client = Client::from_dir(&mdir)?;

    // one minion, 50 resources
    let minion_args = |id: &str| {
        vec![
            "--id".to_string(),
            id.to_string(),
            "--master".into(),
            listen.clone(),
            "--dir".into(),
            work.join(id).display().to_string(),
        ]
    };
    let one_args = minion_args("one");
    let _one = spawn(
        &bin("drover-minion"),
        &one_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &work.join("one.log"),
    )?;
    wait_for(Duration::from_secs(30), "minion one", || {
        client.minions().is_ok_and(|m| m.iter().any(|s| s.id == "one" && s.connected))
    })?;
    let t0 = Instant::now();
    let applied = client.roles_apply(&RolesApplyRequest { commit: None, wait_secs: None })?;
    converged(&client, &["one".into()], &applied.commit, Duration::from_secs(60))?;
    figures.add("state50_roles_apply_to_converged_first", t0.elapsed().as_secs_f64() * 1000.0, "ms");
    let (p50, p99, _) =
        timed(opts.runs, || job(&client, "one", TargetType::List, "state.apply", &[], None, 1))?;
    figures.add("state50_apply_idempotent_p50", p50, "ms");
    figures.add("state50_apply_idempotent_p99", p99, "ms");
    let (p50, _, _) =
        timed(opts.runs, || job_kw(&client, "one", "state.apply", &[("test", serde_json::json!(true))], 1))?;
    figures.add("state50_apply_test_true_p50", p50, "ms");

    // N minions, a 2-state role, through the master
    let n = opts.minions;
    let ids: Vec<String> = (1..=n).map(|i| format!("n{i:03}")).collect();
    let mut fleet = Vec::new();
    for id in &ids {
        let args = minion_args(id);
        fleet.push(spawn(
            &bin("drover-minion"),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &work.join(format!("{id}.log")),
        )?);
    }
    wait_for(Duration::from_secs(120), "the minions", || {
        client.minions().is_ok_and(|m| m.iter().filter(|s| s.id.starts_with('n') && s.connected).count() == n)
    })?;
    // they got role `two` when they connected; now a change to its template, applied to all
    let first = client.roles_apply(&RolesApplyRequest { commit: None, wait_secs: None })?;
    converged(&client, &ids, &first.commit, Duration::from_secs(120))?;
    write_two(&repo, 2)?;
    git(&repo, &["commit", "-q", "-am", "two, version 2"])?;
    let t0 = Instant::now();
    let applied = client.roles_apply(&RolesApplyRequest { commit: None, wait_secs: None })?;
    converged(&client, &ids, &applied.commit, Duration::from_secs(120))?;
    figures.add(
        &format!("roles_apply_change_{n}_minions_to_converged"),
        t0.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    let (p50, p99, _) =
        timed(opts.runs, || job(&client, "n*", TargetType::Glob, "state.apply", &[], None, n))?;
    figures.add(&format!("state_apply_{n}_minions_idempotent_p50"), p50, "ms");
    figures.add(&format!("state_apply_{n}_minions_idempotent_p99"), p99, "ms");
    drop(fleet);
    Ok(())
}

fn job_kw(
    client: &Client,
    id: &str,
    fun: &str,
    kwargs: &[(&str, serde_json::Value)],
    expect: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let resp = client.run(&api::RunRequest {
        target: id.into(),
        tgt_type: TargetType::List,
        fun: fun.into(),
        args: vec![],
        kwargs: kwargs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        timeout_secs: 60.0,
        batch: None,
        wait: true,
        words: Vec::new(),
    })?;
    let took = t0.elapsed();
    ensure!(resp.returns.len() == expect, "{fun}: {} of {expect} returned", resp.returns.len());
    Ok(took)
}
