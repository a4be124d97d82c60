//! `drover chaos kill [--role R] [--every 10s] [--for 60s]`: the chaos monkey.

use api::fleet::ChaosRequest;
use clap::{Args, Subcommand};

use crate::commands::Ctx;
use crate::commands::fleet::{operate, parse_duration};
use crate::exit::Exit;

const HELP: &str = "\
Kills (SIGKILL) one running container of the fleet (of --role, if given) every --every,
for --for, at most 1000 times; the fleet replaces each in its slot with the same version,
volumes and identity. Watch it with `drover ps` or `drover events`.

On Swarm (`engine: swarm`) the slot may run on any node, where the master's engine cannot
reach its container: the kill is the slot's minion ending itself (`minion.kill`, a job of
its own in `drover jobs`), which takes its container with it; Swarm replaces the task.

Examples:
  drover chaos kill                          # one kill every 10 s for 60 s
  drover chaos kill --role worker --every 5s --for 30s";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub action: ChaosCommand,
}

#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// Kill fleet containers at random, bounded in count and time
    Kill {
        /// Only containers of this role
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// Time between two kills
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        every: f64,
        /// How long to go on
        #[arg(long = "for", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        length: f64,
    },
}

pub fn run(args: ChaosArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let ChaosCommand::Kill { role, every, length } = args.action;
    operate(ctx, "chaos", &ChaosRequest { role, every_secs: every, for_secs: length })
}
