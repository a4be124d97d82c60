//! `drover down [--volumes]`: the fleet's containers and network removed.

use api::fleet::DownRequest;
use clap::Args;

use crate::commands::Ctx;
use crate::commands::fleet::operate;
use crate::exit::Exit;

const HELP: &str = "\
Stops and removes every container and network of the fleet (only objects carrying its
drover.fleet label: nothing else is touched) and revokes every slot's key, so no old
container can connect again. The slots' volumes stay, unless --volumes.

Examples:
  drover down
  drover down --volumes      # the data too";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct DownArgs {
    /// Remove the slots' volumes too (their data is lost)
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(args: DownArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    operate(ctx, "down", &DownRequest { volumes: args.volumes })
}
