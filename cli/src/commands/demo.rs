//! `drover demo` and `drover demo down`: the dockercoins cloud of this repository, in
//! containers, with a master of its own, in one command.
//!
//! `drover demo` (run from the root of a drover clone, after `scripts/demo.sh` or
//! `cargo build --release --bins` built the binaries):
//! 1. copies the clone's `fleet.yaml`, `roles/`, `states/` and `images/base/base.yaml` into
//!    a git repository of its own (`DIR/config`, committed when they changed), with the
//!    fleet's name and the load balancer's port as asked: that is the master's config repo;
//! 2. starts a master (`DIR/master`, its log in `DIR/master.log`) unless one answers there;
//! 3. builds the images that are missing: the base (Debian packages, once per machine) and
//!    `coins:1.0` and `coins:1.1`, from `images/coins/` with the binary of each version
//!    (`images/coins/bin/<version>/coins`, which `scripts/demo.sh` builds);
//! 4. brings the fleet up and waits until every slot is ready;
//! 5. prints the dashboard's and the webui's addresses, and what to try next.
//!
//! A second run reuses what exists. `drover demo down` removes what it made: the fleet's
//! containers, network and volumes, its master, and `DIR` (images stay: they are a cache).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use api::fleet::{DownRequest, UpRequest};
use clap::{Args, Subcommand};

use crate::commands::fleet::operate;
use crate::commands::image::{BuildArgs, build_image};
use crate::commands::{Ctx, api_error, dashboard};
use crate::exit::Exit;

/// The versions of the demo app the demo builds.
const VERSIONS: [&str; 2] = ["1.0", "1.1"];

const HELP: &str = "\
Run it from the root of a drover clone: `scripts/demo.sh` builds drover and the demo app
and then runs `drover demo`. It needs a Docker engine; images are made from Debian packages
(no registry): the first run takes a few minutes, the next ones seconds.

The demo's state (its master, its config repo) is under --state (.demo by default; --dir
is not used here); edit roles and states in STATE/config, commit, and
`drover --dir STATE/master roles apply`.

Examples:
  drover demo
  drover demo --port 8080 --name mycoins --image mycoins
  drover --dir .demo/master ps
  drover demo down";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_long_help = HELP)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub action: Option<DemoCommand>,
    #[command(flatten)]
    pub up: DemoUp,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Remove everything the demo made: containers, network, volumes, its master, its folder
    Down {
        /// The demo's folder
        #[arg(long = "state", value_name = "DIR", default_value = ".demo")]
        state: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DemoUp {
    /// The demo's folder (its master and config repo)
    #[arg(long = "state", value_name = "DIR", default_value = ".demo")]
    pub state: PathBuf,
    /// The drover clone to take the cloud from
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// The fleet's name (its containers are <name>-<role>-<n>)
    #[arg(long, default_value = "coins")]
    pub name: String,
    /// The name its app image is tagged with (<image>:1.0, <image>:1.1)
    #[arg(long, default_value = "coins")]
    pub image: String,
    /// The port on 127.0.0.1 where the webui answers (through haproxy)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Seconds to wait for the fleet to be ready
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
}

pub fn run(args: DemoArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    match args.action {
        Some(DemoCommand::Down { state }) => down(&state, ctx),
        None => up(&args.up, ctx),
    }
}

fn say(ctx: &mut Ctx, line: &str) -> anyhow::Result<()> {
    ctx.note(&format!("demo: {line}"))
}

fn up(args: &DemoUp, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let root = args.repo.canonicalize().with_context(|| format!("{}", args.repo.display()))?;
    for needed in ["fleet.yaml", "roles", "states", "images/base/base.yaml", "images/coins/Dockerfile"] {
        if !root.join(needed).exists() {
            bail!(
                "{} has no {needed}: run drover demo from the root of a drover clone (or give --repo)",
                root.display()
            );
        }
    }
    std::fs::create_dir_all(&args.state).with_context(|| format!("create {}", args.state.display()))?;
    let state = args.state.canonicalize()?;
    let config = state.join("config");
    let changed = write_config(&root, &config, &args.name, &args.image, args.port)?;
    if changed {
        say(
            ctx,
            &format!("config repo {} (fleet {}, webui on port {})", config.display(), args.name, args.port),
        )?;
    }

    let master_dir = state.join("master");
    ctx.dir = master_dir.clone();
    if !master_answers(ctx) {
        start_master(&state, &config, ctx)?;
    } else {
        say(ctx, &format!("the master in {} is running", master_dir.display()))?;
    }

    // images: what is missing is built (the base with the first)
    let client = ctx.client()?;
    let have: Vec<String> =
        client.images(Some(&args.image)).map_err(api_error)?.into_iter().map(|i| i.tag).collect();
    for version in VERSIONS {
        let tag = format!("{}:{version}", args.image);
        if have.contains(&tag) {
            continue;
        }
        let binary = root.join("images/coins/bin").join(version).join("coins");
        if !binary.exists() {
            bail!(
                "{} is missing: scripts/demo.sh builds the demo app's two releases (see images/coins/README.md: \
                 1.1 is built with COINS_VERSION=1.1 and --features fixed-seed)",
                binary.display()
            );
        }
        let context = stage(&root, &state, version, &binary)?;
        say(ctx, &format!("building {tag} (the base image first, if this machine has none: a few minutes)"))?;
        let exit = build_image(&BuildArgs { folder: context, tag: tag.clone() }, ctx)?;
        if exit != Exit::Success {
            return Ok(exit);
        }
    }

    say(ctx, "bringing the fleet up")?;
    let mut exit = operate(ctx, "up", &UpRequest { commit: None, timeout_secs: Some(args.timeout) })?;
    if exit == Exit::Success {
        // every slot is ready; haproxy may not have checked its servers yet
        if let Err(why) = webui_answers(args.port, Duration::from_secs(60)) {
            ctx.note(&format!("the webui does not answer through haproxy on port {}: {why}", args.port))?;
            exit = Exit::Failed;
        }
    }
    let info = api::client::read_api_info(&master_dir).map_err(api_error)?;
    let dir = master_dir.display();
    ctx.print(&format!(
        "\ndashboard: {}\nwebui:     http://127.0.0.1:{}\n\nTry:\n  \
         drover --dir {dir} ps\n  \
         drover --dir {dir} scale worker=4\n  \
         drover --dir {dir} upgrade worker --to 1.1     # the seeding bug fixed: watch the duplicate rate\n  \
         drover --dir {dir} chaos kill --every 5s --for 30s\n  \
         drover --dir {dir} -R worker cmd.run 'ps aux'\n  \
         drover demo down\n",
        dashboard::link(&info),
        args.port
    ))?;
    Ok(exit)
}

/// Waits until the webui answers 200 through haproxy on `port`, for at most `limit`; the
/// last error if it did not.
fn webui_answers(port: u16, limit: Duration) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/");
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    let start = Instant::now();
    loop {
        let why = match agent.get(&url).call() {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= limit {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a master answers at `ctx.dir`.
fn master_answers(ctx: &Ctx) -> bool {
    ctx.client().is_ok_and(|c| c.keys().is_ok())
}

/// Starts `drover-master` (beside this binary) in its own process group, so it outlives
/// this command; waits for its API.
fn start_master(state: &Path, config: &Path, ctx: &mut Ctx) -> anyhow::Result<()> {
    let bin =
        std::env::current_exe()?.parent().map(|d| d.join("drover-master")).context("drover's folder")?;
    if !bin.exists() {
        bail!("{} is missing: build drover (cargo build --release --bins)", bin.display());
    }
    let master_dir = state.join("master");
    let _ = std::fs::remove_file(master_dir.join(api::API_FILE));
    let log = std::fs::File::create(state.join("master.log"))?;
    use std::os::unix::process::CommandExt;
    let child = Command::new(&bin)
        .arg("--dir")
        .arg(&master_dir)
        .arg("--repo")
        .arg(config)
        // every address, so the fleet's containers reach it through their network's gateway
        .args(["--listen", "0.0.0.0:0", "--api", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    std::fs::write(state.join("master.pid"), child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !master_answers(ctx) {
        if Instant::now() > deadline {
            bail!("the master did not start: see {}", state.join("master.log").display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    say(ctx, &format!("started a master (pid {}, log {})", child.id(), state.join("master.log").display()))
}

/// Copies the cloud's files into the demo's config repo, with its fleet name and port;
/// commits when something changed. Returns whether it did.
fn write_config(root: &Path, config: &Path, name: &str, image: &str, port: u16) -> anyhow::Result<bool> {
    std::fs::create_dir_all(config)?;
    if !config.join(".git").exists() {
        git(config, &["init", "-q"])?;
    }
    for dir in ["roles", "states"] {
        let _ = std::fs::remove_dir_all(config.join(dir));
        copy_tree(&root.join(dir), &config.join(dir))?;
    }
    std::fs::create_dir_all(config.join("images/base"))?;
    std::fs::copy(root.join("images/base/base.yaml"), config.join("images/base/base.yaml"))?;
    let fleet = std::fs::read_to_string(root.join("fleet.yaml"))?;
    std::fs::write(config.join("fleet.yaml"), demo_fleet(&fleet, name, image, port)?)?;
    git(config, &["add", "-A"])?;
    let clean =
        Command::new("git").arg("-C").arg(config).args(["diff", "--cached", "--quiet"]).status()?.success();
    let has_head = Command::new("git")
        .arg("-C")
        .arg(config)
        .args(["rev-parse", "-q", "--verify", "HEAD"])
        .stdout(Stdio::null())
        .status()?
        .success();
    if clean && has_head {
        return Ok(false);
    }
    git(config, &["commit", "-qm", "the demo cloud, from the drover clone"])?;
    Ok(true)
}

/// The clone's fleet.yaml with the demo's fleet name, image name and webui port.
fn demo_fleet(text: &str, name: &str, image: &str, port: u16) -> anyhow::Result<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).context("fleet.yaml")?;
    let map = doc.as_mapping_mut().context("fleet.yaml is not a map")?;
    map.insert("fleet".into(), name.into());
    map.insert("image".into(), image.into());
    if map.get("network").is_some() {
        map.insert("network".into(), name.into());
    }
    // the one published port: 127.0.0.1:<port>:<container port>
    if let Some(roles) = map.get_mut("roles").and_then(|r| r.as_mapping_mut()) {
        for (_, role) in roles.iter_mut() {
            if let Some(ports) = role.get_mut("ports").and_then(|p| p.as_sequence_mut()) {
                for p in ports.iter_mut() {
                    if let Some(s) = p.as_str()
                        && let Some(inner) = s.rsplit(':').next()
                        && s.matches(':').count() == 2
                    {
                        *p = format!("127.0.0.1:{port}:{inner}").into();
                    }
                }
            }
        }
    }
    Ok(format!("# written by `drover demo` from the clone's fleet.yaml\n{}", serde_yaml::to_string(&doc)?))
}

/// `images/coins/` with the binary of `version` as `bin/coins`, under the demo's folder.
fn stage(root: &Path, state: &Path, version: &str, binary: &Path) -> anyhow::Result<PathBuf> {
    let dir = state.join("build").join(format!("coins-{version}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin"))?;
    for entry in std::fs::read_dir(root.join("images/coins"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
        }
    }
    std::fs::copy(binary, dir.join("bin/coins"))?;
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copy {}", src.display()))?;
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=drover demo", "-c", "user.email=demo@localhost"])
        .args(args)
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!("git {} in {}: {}", args.join(" "), dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn down(state: &Path, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    if !state.exists() {
        say(ctx, &format!("nothing to remove: {} does not exist", state.display()))?;
        return Ok(Exit::Success);
    }
    ctx.dir = state.join("master");
    let mut exit = Exit::Success;
    if master_answers(ctx) {
        say(ctx, "removing the fleet (containers, network, volumes)")?;
        exit = operate(ctx, "down", &DownRequest { volumes: true })?;
    }
    if let Ok(pid) = std::fs::read_to_string(state.join("master.pid")) {
        let pid = pid.trim().to_string();
        let _ = Command::new("kill").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        say(ctx, &format!("stopped the master (pid {pid})"))?;
    }
    std::fs::remove_dir_all(state).with_context(|| format!("remove {}", state.display()))?;
    say(
        ctx,
        &format!("removed {} (the images stay: `drover image list` on the next master)", state.display()),
    )?;
    let _ = std::io::stdout().flush();
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_fleet_takes_its_name_and_port() {
        let text = "fleet: coins\nimage: coins\nversion: \"1.0\"\nroles:\n  lb: {ports: [\"127.0.0.1:8000:80\"]}\n  web: {}\n";
        let out = demo_fleet(text, "dtcoins", "dtcoins-app", 18000).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["fleet"].as_str(), Some("dtcoins"));
        assert_eq!(v["image"].as_str(), Some("dtcoins-app"));
        assert_eq!(v["roles"]["lb"]["ports"][0].as_str(), Some("127.0.0.1:18000:80"));
        assert_eq!(v["version"].as_str(), Some("1.0"));
    }
}
