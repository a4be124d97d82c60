//! `drover upgrade [ROLE...] --to VERSION`: a rolling change of image version.

use api::fleet::UpgradeRequest;
use clap::Args;

use crate::commands::Ctx;
use crate::commands::fleet::operate;
use crate::exit::Exit;

const HELP: &str = "\
Replaces the roles' containers by containers of the image version given, batch by batch,
in the same slots (same minion id, same volumes, same identity). A batch is done when its
new minions are connected, converged and healthy for the role's min_healthy; a batch that
is not within health_timeout counts as failed, and the role's update policy decides:
rollback (every slot changed goes back, the default), pause, or continue. --batch and
--order override the policy for this upgrade. One rollout runs at a time.

Exit status: 0 every slot at the new version and ready; 1 the rollout rolled back or
paused (the reason names the failing slot and its last output); 2 refused (no such role
or image version, another operation running).

Examples:
  drover upgrade worker --to 1.1
  drover upgrade --to 1.1 --batch 25% --order start-first     # every role
  drover rollout status";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct UpgradeArgs {
    /// Roles to upgrade [default: every role of the fleet]
    #[arg(value_name = "ROLE")]
    pub roles: Vec<String>,
    /// The image version to roll to (a tag built with `drover image build`)
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// Slots per batch: N or N% of the role's slots [default: the role's update.batch]
    #[arg(long, short = 'b', value_name = "N|N%")]
    pub batch: Option<String>,
    /// stop-first (old container stops, then the new one starts) or start-first
    #[arg(long, value_name = "ORDER", value_parser = ["stop-first", "start-first"])]
    pub order: Option<String>,
}

pub fn run(args: UpgradeArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let req = UpgradeRequest { roles: args.roles, to: args.to, batch: args.batch, order: args.order };
    operate(ctx, "upgrade", &req)
}
