//! `drover up [--commit REV]`: the fleet of fleet.yaml made real and waited for.

use api::fleet::UpRequest;
use clap::Args;

use crate::commands::Ctx;
use crate::commands::fleet::{operate, parse_secs};
use crate::exit::Exit;

const HELP: &str = "\
The master reads fleet.yaml, roles/ and states/ from its config repo at a commit (default:
HEAD), applies the roles (a commit with errors is refused whole, as `roles apply` does),
then makes the containers match: the fleet's network, each slot's volumes and container
(created if missing, replaced if dead, removed if no longer wanted, rolled to another
version batch by batch as each role's update policy says). It waits until every slot's
minion is connected, converged and healthy, and names those that are not.

`up` is idempotent: a fleet as wanted is left alone. Changes made with `scale` and
`upgrade` stay, unless fleet.yaml changed the same thing since the last `up`.

Exit status: 0 every slot ready; 1 some slot not ready, or a rollout rolled back; 2 refused
(a bad commit, a missing image, another operation running, no Docker engine).

Examples:
  drover up
  drover up --commit v2 --timeout 300
  drover up --out json | jq .not_ready";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct UpArgs {
    /// The config repo's revision to bring up [default: HEAD]
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
    /// Seconds to wait for every slot to be ready [default: 180]
    #[arg(long, short = 't', value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<f64>,
}

pub fn run(args: UpArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    operate(ctx, "up", &UpRequest { commit: args.commit, timeout_secs: args.timeout })
}
