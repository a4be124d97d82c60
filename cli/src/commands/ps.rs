//! `drover ps`: every slot of the fleet, with its container and minion.

use clap::Args;

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

const HELP: &str = "\
One row per slot (<fleet>-<role>-<n>, also its container name and minion id): its role,
image and version, the container's state, whether its minion is connected, the commit it
converged to, the image HEALTHCHECK's verdict, and what is off: how it drifts from
fleet.yaml at HEAD (after `scale` or `upgrade`), or why it is not ready.

`--out json` prints a list of objects with slot, role, image, version, state, connected,
converged, health (and node on Swarm): a stable contract for scripts.

Exit status: 0 every slot ready; 1 some slot not ready.

Examples:
  drover ps
  drover ps --out json | jq -r '.[] | select(.health != \"healthy\") | .slot'";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct PsArgs {}

pub fn run(_args: PsArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let slots = ctx.client()?.fleet_ps().map_err(api_error)?;
    let text = match ctx.out() {
        Out::Json => output::json(&slots)?,
        Out::Yaml => output::yaml(&slots)?,
        Out::Text | Out::Highstate if slots.is_empty() => {
            "no fleet is up (`drover up` brings fleet.yaml up)\n".into()
        }
        Out::Text | Out::Highstate => {
            let short = |c: &Option<String>| c.as_deref().map_or("-", api::short).to_string();
            let rows: Vec<Vec<String>> = slots
                .iter()
                .map(|s| {
                    vec![
                        s.slot.clone(),
                        s.role.clone(),
                        s.image.clone(),
                        s.state.clone(),
                        s.node.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "-".into()),
                        if s.connected { "yes" } else { "no" }.into(),
                        short(&s.converged),
                        s.health.clone(),
                        [s.problem.as_deref(), s.drift.as_deref()]
                            .into_iter()
                            .flatten()
                            .map(|t| t.lines().next().unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ]
                })
                .collect();
            output::table(
                &["SLOT", "ROLE", "IMAGE", "STATE", "NODE", "CONNECTED", "CONVERGED", "HEALTH", "NOTES"],
                &rows,
            )
        }
    };
    ctx.print(&text)?;
    Ok(if slots.iter().all(|s| s.problem.is_none()) { Exit::Success } else { Exit::Failed })
}
