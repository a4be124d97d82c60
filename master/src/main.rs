//! `drover-master`: parse flags, install tracing, wire signals, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The drover master: keeps minion keys, pushes jobs over CURVE-encrypted ZeroMQ, stores
/// every return, and serves the local API the `drover` CLI uses.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, after_help = "\
Examples:
  drover-master --dir /tmp/m --auto-accept          # development: accept every minion
  drover-master --listen 10.0.0.1:4506 --repo /srv/config

The master writes DIR/api.json (mode 0600) once it serves; `drover --dir DIR` reads it.
Minions fetch the master's public key from the key port (listen port - 1) on first use.")]
struct Args {
    /// State directory (keys, job store, api.json) [default: $DROVER_DIR, else /var/lib/drover/master]
    #[arg(long, env = "DROVER_DIR", default_value = "/var/lib/drover/master")]
    dir: PathBuf,
    /// Address minions connect to (ZeroMQ, CURVE); the key port is PORT - 1
    #[arg(long, default_value = "0.0.0.0:4506", value_name = "ADDR:PORT")]
    listen: String,
    /// The address fleet containers (and remote minions) dial to reach this master, when it
    /// is not the fleet network's gateway (a master listening on 0.0.0.0 needs none)
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// Address of the local HTTP API
    #[arg(long, default_value = "127.0.0.1:4507", value_name = "ADDR:PORT")]
    api: String,
    /// Config repository (git) with roles/, states/ and fleet.yaml
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Accept every new minion key without `drover key accept` (development only)
    #[arg(long)]
    auto_accept: bool,
    /// Seconds between minion heartbeats; three missed ones mark a minion disconnected
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    heartbeat: f64,
    /// Days to keep jobs, their returns and events; older ones are deleted every hour
    #[arg(long, default_value_t = 30.0, value_name = "DAYS")]
    keep_days: f64,
    /// The drover-minion binary put into app images [default: the one beside drover-master]
    #[arg(long, env = "DROVER_MINION_BIN", value_name = "PATH")]
    minion_bin: Option<PathBuf>,
    /// Scratch space for building the base image: its root file system and tar, ~500 MB
    /// while it builds [default: DIR/build]
    #[arg(long, env = "DROVER_BUILD_DIR", value_name = "DIR")]
    build_dir: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive)
    #[arg(long, env = "DROVER_LOG", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !(args.keep_days > 0.0 && args.keep_days <= 36_500.0) {
        eprintln!("drover-master: --keep-days must be more than 0 (and at most 36500)");
        return ExitCode::from(2);
    }
    if !(args.heartbeat > 0.0 && args.heartbeat <= 3600.0) {
        eprintln!("drover-master: --heartbeat must be between 0 and 3600 seconds");
        return ExitCode::from(2);
    }
    raise_open_files_limit();
    let cfg = master::Config {
        dir: args.dir,
        listen: args.listen,
        advertise: args.advertise,
        api: args.api,
        repo: args.repo,
        auto_accept: args.auto_accept,
        heartbeat: Duration::from_secs_f64(args.heartbeat),
        keep: Duration::from_secs_f64(args.keep_days * 86_400.0),
        minion_bin: args.minion_bin,
        build_dir: args.build_dir,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover-master: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = CancellationToken::new();
    let result = runtime.block_on(async {
        let t = token.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping");
            t.cancel();
        });
        master::run(cfg, token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-master: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Each connected minion holds one file descriptor of the master, so a soft limit of 1,024
/// (the usual default) would end connections past a thousand minions with "too many open
/// files". The soft limit is raised to the hard one, as servers do; the log says when the
/// hard limit itself is low.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
    }
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s);
    if limit < 65_536 {
        tracing::info!(
            limit,
            "open files: at most about {} minions can connect (raise the hard limit, `ulimit -Hn`, for more)",
            limit.saturating_sub(100)
        );
    }
}
