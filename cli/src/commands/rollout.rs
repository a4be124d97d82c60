//! `drover rollout status | undo`: the fleet's rollouts.

use api::fleet::RolloutSummary;
use clap::{Args, Subcommand};

use crate::commands::fleet::operate;
use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

const HELP: &str = "\
`status` lists the rollouts, newest first, with each slot's part in the newest (exit 1
if it rolled back or paused). `undo` rolls the slots the last finished rollout changed
back to their previous version (batch by batch, with the same policy); undoing again
undoes the undo.

Examples:
  drover rollout status
  drover rollout status --out json | jq '.[0].state'
  drover rollout undo";

#[derive(Debug, Args)]
#[command(after_long_help = HELP)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// The rollouts, newest first, and where the newest stands
    Status,
    /// Put the slots the last finished rollout changed back to their previous version
    Undo,
}

pub fn run(args: RolloutArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    match args.action {
        RolloutCommand::Undo => operate(ctx, "undo", &serde_json::json!({})),
        RolloutCommand::Status => {
            let rollouts = ctx.client()?.fleet_rollouts().map_err(api_error)?;
            let text = match ctx.out() {
                Out::Json => output::json(&rollouts)?,
                Out::Yaml => output::yaml(&rollouts)?,
                Out::Text | Out::Highstate => status_text(&rollouts),
            };
            ctx.print(&text)?;
            let failed =
                rollouts.first().is_some_and(|r| matches!(r.state.as_str(), "rolled-back" | "paused"));
            Ok(if failed { Exit::Failed } else { Exit::Success })
        }
    }
}

fn when(ms: Option<u64>) -> String {
    ms.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn status_text(rollouts: &[RolloutSummary]) -> String {
    let Some(newest) = rollouts.first() else { return "no rollout yet\n".into() };
    let rows: Vec<Vec<String>> = rollouts
        .iter()
        .map(|r| {
            let done = r.slots.iter().filter(|s| s.state == "done").count();
            let versions: Vec<String> = {
                let mut v: Vec<String> = r.slots.iter().map(|s| format!("{}→{}", s.from, s.to)).collect();
                v.dedup();
                v
            };
            vec![
                r.id.to_string(),
                r.state.clone(),
                when(Some(r.started_ms)),
                when(r.finished_ms),
                format!("{done}/{}", r.slots.len()),
                versions.join(","),
                r.undoes.map(|u| format!("undoes {u}")).unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = output::table(&["ID", "STATE", "STARTED", "ENDED", "DONE", "VERSIONS", ""], &rows);
    out.push_str(&format!("\nrollout {}:\n", newest.id));
    let rows: Vec<Vec<String>> = newest
        .slots
        .iter()
        .map(|s| {
            vec![
                s.slot.clone(),
                s.role.clone(),
                format!("{}→{}", s.from, s.to),
                s.state.clone(),
                s.reason.as_deref().and_then(|r| r.lines().next()).unwrap_or("").to_string(),
            ]
        })
        .collect();
    out.push_str(&output::table(&["SLOT", "ROLE", "VERSION", "STATE", "REASON"], &rows));
    if let Some(reason) = &newest.reason {
        out.push_str(&format!("\n{reason}\n"));
    }
    out
}
