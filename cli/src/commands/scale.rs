//! `drover scale ROLE=N`: a role's number of slots.

use api::fleet::ScaleRequest;
use clap::Args;

use crate::commands::Ctx;
use crate::commands::fleet::{operate, parse_secs};
use crate::exit::Exit;

const HELP: &str = "\
Adds slots (new containers, each with its own identity and volumes) or removes the highest
numbered ones, and waits for the role's slots to be ready. The change stays until fleet.yaml
changes that role's replicas and `drover up` runs; `drover ps` shows the drift meanwhile.
Removed slots keep their volumes until `drover down --volumes`.

Examples:
  drover scale worker=4
  drover scale rng=1 --timeout 60";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct ScaleArgs {
    /// ROLE=N: the role and how many slots it should have
    #[arg(value_name = "ROLE=N", value_parser = parse_scale)]
    pub what: (String, u32),
    /// Seconds to wait for the role's slots to be ready [default: 180]
    #[arg(long, short = 't', value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<f64>,
}

fn parse_scale(s: &str) -> Result<(String, u32), String> {
    let (role, n) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ROLE=N, like worker=4"))?;
    let n = n.parse::<u32>().map_err(|_| format!("{s:?}: {n:?} is not a number of replicas"))?;
    if role.is_empty() {
        return Err(format!("{s:?}: expected ROLE=N, like worker=4"));
    }
    Ok((role.to_string(), n))
}

pub fn run(args: ScaleArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let (role, replicas) = args.what;
    operate(ctx, "scale", &ScaleRequest { role, replicas, timeout_secs: args.timeout })
}
