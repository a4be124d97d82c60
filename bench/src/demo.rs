//! The demo cloud's figures (`drover-bench demo`), on the real Docker engine, side by side
//! with `docker-compose` in the same run:
//!
//! - `drover demo` from nothing of its own until every slot is connected, converged and
//!   healthy: a master, the app images `<name>:1.0` and `<name>:1.1` (built: their name is
//!   new), the fleet of `fleet.yaml`. With `--cold` the base image is not there either (see
//!   [`Options::cold`]);
//! - the warm wipe-and-restart: `drover down` (containers and network; the datastore's
//!   volume stays) then `drover up` until every slot is ready again, and until the webui
//!   answers through haproxy;
//! - the same nine containers from the same image with `docker-compose up -d`, each running
//!   its daemon as its command with the configuration drover would render (service names
//!   instead of peers): until compose returns (started) and until the webui answers through
//!   haproxy; then compose's `down` + `up -d`.
//!
//! Everything it makes is named `benchcoins<pid>` (fleet, images, compose project, state
//! folder) and removed at the end, on failure too.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::fleet::{Row, clean, docker, median, secs, until};

pub struct Options {
    pub bin_dir: PathBuf,
    /// The drover clone whose `fleet.yaml`, `roles/`, `states/` and `images/` make the demo
    /// (with `images/coins/bin/<version>/coins` built, as `scripts/demo.sh` does).
    pub repo_root: PathBuf,
    /// Remove every image drover made on this engine first (the base and every app image
    /// built on it), so that the demo builds the base from Debian packages too.
    pub cold: bool,
    /// Repetitions of the wipe-and-restart, each side.
    pub runs: usize,
}

pub fn run(opts: &Options) -> anyhow::Result<Vec<Row>> {
    let name = format!("benchcoins{}", std::process::id());
    let work = tempfile::tempdir()?;
    let result = measure(opts, &name, work.path());
    let _ = Command::new(opts.bin_dir.join("drover"))
        .args(["demo", "down", "--state"])
        .arg(work.path().join("state"))
        .output();
    let _ = compose(work.path(), &name, &["down", "-v"]);
    clean(&name);
    result
}

fn measure(opts: &Options, name: &str, work: &Path) -> anyhow::Result<Vec<Row>> {
    let coins = |v: &str| opts.repo_root.join(format!("images/coins/bin/{v}/coins"));
    if !coins("1.0").exists() || !coins("1.1").exists() {
        bail!(
            "{} is missing: run scripts/demo.sh once (it builds both releases of the demo app)",
            coins("1.1").display()
        );
    }
    if opts.cold {
        eprintln!("removing every image drover made on this engine (--cold)...");
        let ids = docker(&["images", "-q", "--filter", "label=drover.image"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            docker(&[&["rmi", "-f"], ids.as_slice()].concat());
        }
        if !docker(&["images", "-q", "--filter", "label=drover.image"]).trim().is_empty() {
            bail!(
                "--cold: some drover images could not be removed (containers use them?): docker images --filter label=drover.image"
            );
        }
    }
    let state = work.join("state");
    let port = free_port()?;
    let drover = |args: &[&str]| -> anyhow::Result<Duration> {
        let start = Instant::now();
        let out = Command::new(opts.bin_dir.join("drover"))
            .arg("--dir")
            .arg(state.join("master"))
            .args(args)
            .output()
            .context("run drover")?;
        ok(&format!("drover {}", args.join(" ")), &out)?;
        Ok(start.elapsed())
    };

    eprintln!("drover demo{}...", if opts.cold { " (cold)" } else { "" });
    let start = Instant::now();
    let out = Command::new(opts.bin_dir.join("drover"))
        .arg("demo")
        .arg("--state")
        .arg(&state)
        .arg("--repo")
        .arg(&opts.repo_root)
        .args(["--name", name, "--image", name, "--port", &port.to_string(), "--timeout", "600"])
        .output()
        .context("run drover demo")?;
    ok("drover demo", &out)?;
    let demo = start.elapsed();
    let demo_serving =
        demo + until(Duration::from_secs(120), "the webui through haproxy", || Ok(serving(port)))?;

    let mut wipes = Vec::new();
    let mut wipes_serving = Vec::new();
    for run in 1..=opts.runs {
        eprintln!("drover down + up ({run}/{})...", opts.runs);
        let start = Instant::now();
        drover(&["down"])?;
        drover(&["up", "--timeout", "300"])?;
        wipes.push(start.elapsed());
        until(Duration::from_secs(120), "the webui through haproxy", || Ok(serving(port)))?;
        wipes_serving.push(start.elapsed());
    }
    drover(&["down", "--volumes"])?;

    write_compose_project(work, name, port)?;
    eprintln!("docker-compose up -d...");
    let start = Instant::now();
    compose(work, name, &["up", "-d"])?;
    let compose_up = start.elapsed();
    let compose_serving = compose_up
        + until(Duration::from_secs(120), "compose's webui through haproxy", || Ok(serving(port)))?;
    let mut compose_wipes = Vec::new();
    let mut compose_wipes_serving = Vec::new();
    for run in 1..=opts.runs {
        eprintln!("docker-compose down + up -d ({run}/{})...", opts.runs);
        let start = Instant::now();
        compose(work, name, &["down"])?;
        compose(work, name, &["up", "-d"])?;
        compose_wipes.push(start.elapsed());
        until(Duration::from_secs(120), "compose's webui through haproxy", || Ok(serving(port)))?;
        compose_wipes_serving.push(start.elapsed());
    }
    compose(work, name, &["down", "-v"])?;

    let cold =
        if opts.cold { "cold: base and app images built" } else { "base image cached, app images built" };
    Ok(vec![
        Row {
            name: format!("`drover demo` to every slot ready ({cold}; compose: up -d of the built images)"),
            drover: secs(demo),
            compose: secs(compose_up),
            target: if opts.cold { "< 180 s".into() } else { "–".into() },
        },
        Row {
            name: "… until the webui answers through haproxy".into(),
            drover: secs(demo_serving),
            compose: secs(compose_serving),
            target: "–".into(),
        },
        Row {
            name: format!("warm wipe-and-restart: down + up until ready (median of {})", opts.runs),
            drover: secs(median(wipes)),
            compose: secs(median(compose_wipes)),
            target: "< 15 s".into(),
        },
        Row {
            name: "… until the webui answers through haproxy".into(),
            drover: secs(median(wipes_serving)),
            compose: secs(median(compose_wipes_serving)),
            target: "–".into(),
        },
    ])
}

fn ok(what: &str, out: &Output) -> anyhow::Result<()> {
    if !out.status.success() {
        bail!("{what}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the webui's `/json` answers 200 through haproxy on `port`.
fn serving(port: u16) -> bool {
    let answer = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(s, "GET /json HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    answer().is_ok_and(|t| t.starts_with("HTTP/1.0 200") || t.starts_with("HTTP/1.1 200"))
}

fn compose(work: &Path, project: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("docker-compose")
        .current_dir(work.join("compose"))
        .arg("-p")
        .arg(project)
        .args(args)
        .output()
        .context("run docker-compose (Debian package docker-compose)")?;
    ok(&format!("docker-compose {}", args.join(" ")), &out)
}

/// The demo's nine containers as a compose project: each runs its daemon as its command,
/// with the configuration drover renders for it (service names where drover has peers).
fn write_compose_project(work: &Path, name: &str, port: u16) -> anyhow::Result<()> {
    let dir = work.join("compose");
    let cfg = dir.join("cfg");
    std::fs::create_dir_all(&cfg)?;
    std::fs::write(
        cfg.join("redis.conf"),
        "bind 0.0.0.0\nport 6379\nprotected-mode no\ndir /data\nappendonly yes\nappendfsync always\nsave 300 1\n",
    )?;
    std::fs::write(
        cfg.join("worker.toml"),
        "listen = \"127.0.0.1:8003\"\nredis = [\"datastore:6379\"]\nrng = [\"http://lb:8001\"]\n\
         hasher = [\"http://lb:8002\"]\npause_ms = 50\n",
    )?;
    std::fs::write(cfg.join("webui.toml"), "listen = \"0.0.0.0:8080\"\nredis = [\"datastore:6379\"]\n")?;
    let backend = |name: &str, servers: &[&str], port: u16| {
        let mut s = format!(
            "frontend {name}\n    bind *:{}\n    default_backend {name}\nbackend {name}\n",
            if name == "webui" { 80 } else { port }
        );
        for server in servers {
            s.push_str(&format!("    server {server} {server}:{port}\n"));
        }
        s
    };
    std::fs::write(
        cfg.join("haproxy.cfg"),
        format!(
            "global\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 500ms\n    timeout client 30s\n    \
             timeout server 30s\n    retries 3\n    option redispatch 1\n    option httpchk GET /health\n    \
             default-server check inter 500ms fall 2 rise 1\n{}{}{}",
            backend("webui", &["webui"], 8080),
            backend("rng", &["rng1", "rng2"], 8001),
            backend("hasher", &["hasher1", "hasher2"], 8002)
        ),
    )?;
    let service = |service: &str, command: &str, extra: &str| {
        format!(
            "  {service}:\n    image: {name}:1.0\n    entrypoint: {command}\n    healthcheck: {{disable: true}}\n    \
             labels: {{drover.fleet: \"{name}\"}}\n    volumes: [\"./cfg:/cfg:ro\"{}]\n{extra}",
            if service == "datastore" { ", \"data:/data\"" } else { "" }
        )
    };
    let mut yaml = String::from("version: \"2.4\"\nservices:\n");
    yaml.push_str(&service("datastore", r#"["/usr/bin/redis-server", "/cfg/redis.conf"]"#, ""));
    for n in 1..=2 {
        yaml.push_str(&service(
            &format!("rng{n}"),
            r#"["/usr/local/bin/coins", "rng", "--listen", "0.0.0.0:8001"]"#,
            "",
        ));
        yaml.push_str(&service(
            &format!("hasher{n}"),
            r#"["/usr/local/bin/coins", "hasher", "--listen", "0.0.0.0:8002"]"#,
            "",
        ));
        yaml.push_str(&service(
            &format!("worker{n}"),
            r#"["/usr/local/bin/coins", "worker", "--config", "/cfg/worker.toml"]"#,
            "    depends_on: [datastore, lb]\n",
        ));
    }
    yaml.push_str(&service(
        "webui",
        r#"["/usr/local/bin/coins", "webui", "--config", "/cfg/webui.toml"]"#,
        "    depends_on: [datastore]\n",
    ));
    // haproxy resolves its servers' names when it starts: after them
    yaml.push_str(&service(
        "lb",
        r#"["/usr/sbin/haproxy", "-W", "-db", "-f", "/cfg/haproxy.cfg"]"#,
        &format!(
            "    depends_on: [webui, rng1, rng2, hasher1, hasher2]\n    ports: [\"127.0.0.1:{port}:80\"]\n"
        ),
    ));
    yaml.push_str(&format!(
        "volumes:\n  data:\n    labels: {{drover.fleet: \"{name}\"}}\nnetworks:\n  default:\n    labels: {{drover.fleet: \"{name}\"}}\n"
    ));
    std::fs::write(dir.join("docker-compose.yml"), yaml)?;
    Ok(())
}
