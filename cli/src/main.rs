//! `drover`: parse the command line, run the command, print an error once, exit with its
//! status (see `cli::exit::Exit`).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use cli::commands::{self, Ctx};
use cli::{Cli, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse_args().unwrap_or_else(|e| e.exit());
    let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // stderr unlocked: a progress bar's drawing thread writes to it while a command runs
    let (mut stdout, mut stderr) = (io::stdout().lock(), io::stderr());
    let mut ctx = Ctx { dir: cli.dir(), out: cli.out, color, stdout: &mut stdout, stderr: &mut stderr };
    match commands::dispatch(cli, &mut ctx) {
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
