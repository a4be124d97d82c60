//! `coins`: the dockercoins services, one per subcommand. Thin: parse the arguments, set up
//! the log, turn SIGINT and SIGTERM into a cancellation, run the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use coins::config::{ConfigError, WebuiConfig, WorkerConfig};
use coins::mining::Seeding;
use coins::{VERSION, hasher, http, rng, webui, worker};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

const ABOUT: &str = "dockercoins, the demo cloud's app: rng serves random bytes, hasher hashes them, \
                     workers mine coins into redis, webui shows them";

#[derive(Parser)]
#[command(name = "coins", version = VERSION, about = ABOUT)]
enum Cli {
    /// GET /<n>: n random bytes (at most 1 MiB); GET /health
    Rng {
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// POST /: the hex sha256 of the body; GET /health
    Hasher {
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Mines coins: random bytes from rng, hashed by hasher, counted in redis
    Worker {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// The page of counts and rates, and GET /json
    Webui {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = std::env::var("COINS_LOG").ok().and_then(|l| l.parse().ok());
    tracing_subscriber::fmt()
        .with_max_level(level.unwrap_or(tracing::Level::INFO))
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("coins: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coins: {e:#}");
            // a broken config is a usage error, told apart from failing at run time
            ExitCode::from(if e.downcast_ref::<ConfigError>().is_some() { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let stopped = shutdown.clone().cancelled_owned();
    match cli {
        Cli::Rng { listen } => {
            let listener = bind(listen, "rng").await?;
            http::serve(listener, rng::router(), stopped).await?;
        }
        Cli::Hasher { listen } => {
            let listener = bind(listen, "hasher").await?;
            http::serve(listener, hasher::router(), stopped).await?;
        }
        Cli::Worker { config } => {
            let config = WorkerConfig::load(&config)?;
            config.warnings().iter().for_each(|w| warn!("{w}"));
            let listener = bind(config.listen, "worker").await?;
            worker::run(config, listener, VERSION, Seeding::BUILT, shutdown).await?;
        }
        Cli::Webui { config } => {
            let config = WebuiConfig::load(&config)?;
            config.warnings().iter().for_each(|w| warn!("{w}"));
            let listener = bind(config.listen, "webui").await?;
            http::serve(listener, webui::router(&config, VERSION), stopped).await?;
        }
    }
    info!("stopped");
    Ok(())
}

async fn bind(addr: SocketAddr, service: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    info!(version = VERSION, addr = %listener.local_addr()?, "{service} serves");
    Ok(listener)
}

/// Cancels `shutdown` at the first SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        warn!("cannot catch SIGTERM and SIGINT; they stop the process at once");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!("{name}: stopping once the requests in flight are answered");
    shutdown.cancel();
}
