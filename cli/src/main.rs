//! `drover`: parse the command line, run the command, print an error once, exit with its
//! status (see `cli::exit::Exit`).

use std::fs::File;
use std::io::{self, IsTerminal, Write};

use anyhow::Context as _;
use std::process::ExitCode;

use cli::commands::{self, Ctx};
use cli::{Cli, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse_args().unwrap_or_else(|e| e.exit());
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

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}
