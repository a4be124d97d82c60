//! `drover completions <shell>`: a completion script, generated from the parser itself.

use anyhow::Context as _;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::commands::Ctx;
use crate::exit::Exit;

const EXAMPLES: &str = "\
Examples:
  drover completions bash > /etc/bash_completion.d/drover
  drover completions zsh > \"${fpath[1]}/_drover\"
  drover completions fish > ~/.config/fish/completions/drover.fish";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "drover", &mut script);
    ctx.stdout.write_all(&script).context("cannot write to stdout")?;
    Ok(Exit::Success)
}
