//! The `drover-minion` binary: flags, logs, signals, then [`minion::run`]; or
//! `drover-minion health`, a quick question to the running minion and nothing else.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    let cli = minion::Cli::parse();
    if let Some(minion::config::Command::Health) = cli.command {
        return health(&cli.dir);
    }
    if let Some(minion::config::Command::Local(args)) = &cli.command {
        return local(&cli, args);
    }
    // `Targets` (level, or target=level list) rather than EnvFilter: same syntax for what a
    // minion needs, without a regex engine in the binary
    let filter = match cli.log_level.parse::<Targets>() {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "drover-minion: invalid --log-level {:?}: {e} (expected error, warn, info, debug or trace)",
                cli.log_level
            );
            return ExitCode::from(2);
        }
    };
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    tracing_subscriber::registry().with(fmt).with(filter).init();

    // before any child exists: PID 1 reaps the container's orphans; elsewhere the minion
    // becomes a child subreaper so its daemons' orphans come back to it (see `reaper`)
    match minion::reaper::install() {
        Ok(role) => minion::reaper::log_role(role),
        Err(e) => tracing::warn!(cause = %e, "orphans of daemons will not be reaped by the minion"),
    }

    match serve(cli.into_config()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover-minion: {e:#}");
            let config_error = e.downcast_ref::<minion::Error>().is_some_and(minion::Error::is_config);
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// `drover-minion local`: one apply from a working tree, no master. Warnings (and
/// `--log-level`) go to stderr; the results to stdout.
fn local(cli: &minion::Cli, args: &minion::local::LocalArgs) -> ExitCode {
    if let Ok(filter) = cli.log_level.parse::<Targets>() {
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        // info is the default of a served minion; a one-shot apply says only what went wrong
        let filter =
            if cli.log_level == "info" { "warn".parse::<Targets>().unwrap_or(filter) } else { filter };
        tracing_subscriber::registry().with(fmt).with(filter).init();
    }
    if let Err(e) = minion::reaper::install() {
        tracing::warn!(cause = %e, "orphans of commands will not be reaped");
    }
    let id = match &cli.id {
        Some(id) => id.clone(),
        None => match hostname::get().ok().and_then(|h| h.into_string().ok()).map(wire::MinionId::new) {
            Some(Ok(id)) => id,
            _ => {
                eprintln!(
                    "drover-minion: the host name is not a valid minion id; give one with --id ID (before `local`)"
                );
                return ExitCode::from(2);
            }
        },
    };
    let mut flags = cli.grain_map.clone().map(|m| m.0).unwrap_or_default();
    flags.extend(cli.grains.iter().cloned());
    let grains = match minion::grains::collect(&id, &cli.dir.join("grains.yaml"), &flags) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("drover-minion: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("drover-minion: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(minion::local::apply(args, &id, &grains)) {
        minion::local::Ended::Applied { success, output } => {
            print!("{output}");
            ExitCode::from(if success { 0 } else { 1 })
        }
        minion::local::Ended::Refused(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            ExitCode::from(2)
        }
    }
}

/// `drover-minion health`: no logs, no runtime, no zmq; one question on the health socket.
fn health(dir: &std::path::Path) -> ExitCode {
    match minion::health::check(dir, minion::health::CHECK_TIMEOUT) {
        minion::health::Checked::Answer { line, healthy } => {
            println!("{line}");
            ExitCode::from(if healthy { 0 } else { 1 })
        }
        minion::health::Checked::NoAnswer(why) => {
            eprintln!("drover-minion: {why}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: minion::Config) -> anyhow::Result<()> {
    // one thread: an idle minion should cost little memory
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        minion::run(config, shutdown).await
    });
    // a key-port request may still wait on a blocking thread: do not wait for it
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(result?)
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the minion with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
