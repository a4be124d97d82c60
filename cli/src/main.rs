//! `drover`: parse the command line, run the command, print an error once, exit with its
//! status (see `cli::exit::Exit`).

use std::fs::File;
use std::io::{self, IsTerminal, Write};

use anyhow::Context as _;
use std::process::ExitCode;

use cli::cli::LogLevel;
use cli::commands::{self, Ctx};
use cli::{Cli, Exit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    let cli = Cli::parse_args().unwrap_or_else(|e| e.exit());
    install_logging(cli.log_level, !cli.no_color && io::stderr().is_terminal());
    // stdout, or the --out-file (never colored)
    let mut stdout: Box<dyn Write> = match &cli.out_file {
        None => Box::new(io::stdout().lock()),
        Some(path) => match File::create(path) {
            Ok(file) => Box::new(io::BufWriter::new(file)),
            Err(e) => {
                eprintln!("drover: --out-file {}: {e}", path.display());
                return Exit::Usage.into();
            }
        },
    };
    let color = cli.out_file.is_none()
        && !cli.no_color
        && io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // stderr unlocked: a progress bar's drawing thread writes to it while a command runs
    let mut stderr = io::stderr();
    let mut ctx = Ctx {
        dir: cli.dir(),
        out: cli.out,
        color,
        state_output: cli.state_output,
        stdout: &mut *stdout,
        stderr: &mut stderr,
    };
    let result = commands::dispatch(cli, &mut ctx).and_then(|exit| {
        stdout.flush().context("cannot write the output")?;
        Ok(exit)
    });
    match result {
        Ok(exit) => exit.into(),
        // A reader that went away (`drover ... | head`) is not an error worth a message.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("drover: {err:#}");
            Exit::Usage.into()
        }
    }
}

/// `-l LEVEL`: log lines on stderr (`DEBUG POST http://…`), without time or module; none
/// with `quiet`. Only drover's own crates are heard: the HTTP library logs each request's
/// headers at debug, the API token among them.
fn install_logging(level: LogLevel, ansi: bool) {
    let Some(max) = level.max() else { return };
    let ours = Targets::new().with_target("api", max).with_target("cli", max).with_target("drover", max);
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(ansi && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
        .with_writer(io::stderr);
    tracing_subscriber::registry().with(fmt).with(ours).init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}
