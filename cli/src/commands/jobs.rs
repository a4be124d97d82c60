//! `drover jobs list|show`: the master's job store.

use api::{JobDetail, JobSummary, TargetType};
use clap::{Args, Subcommand};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

const EXAMPLES: &str = "\
Examples:
  drover jobs list
  drover jobs show 20250101120000123456
  drover jobs show 20250101120000123456 --out json   # the whole job, with per-minion times";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: JobsCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest last: function, target, returns and failures
    List,
    /// Show one job's returns (json and yaml: the whole job, with each minion's times;
    /// state.apply and state.highstate jobs print as highstate unless --out says otherwise)
    Show {
        /// The job id, as `drover --async` or `jobs list` print it
        jid: String,
    },
}

pub fn run(args: JobsArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let client = ctx.client()?;
    match args.action {
        JobsCommand::List => {
            let mut jobs = client.jobs().map_err(api_error)?;
            jobs.sort_by(|a, b| (a.created_ms, &a.jid).cmp(&(b.created_ms, &b.jid)));
            let text = match ctx.out() {
                Out::Json => output::json(&jobs)?,
                Out::Yaml => output::yaml(&jobs)?,
                Out::Text | Out::Highstate => list_text(&jobs),
            };
            ctx.print(&text)?;
        }
        JobsCommand::Show { jid } => {
            let job = client.job(&jid).map_err(api_error)?;
            let out = ctx.out_for(&job.summary.fun);
            let text = match out {
                Out::Json => output::json(&job)?,
                Out::Yaml => output::yaml(&job)?,
                Out::Text => output::returns_text(&job.returns, ctx.color),
                Out::Highstate => output::highstate::returns(&job.returns, ctx.color, ctx.state_output),
            };
            ctx.print(&text)?;
            if matches!(out, Out::Text | Out::Highstate) {
                let missing = no_return(&job);
                if !missing.is_empty() {
                    ctx.note(&format!("no return: {}", missing.join(", ")))?;
                }
            }
        }
    }
    Ok(Exit::Success)
}

/// Targeted minions without a return (yet).
fn no_return(job: &JobDetail) -> Vec<&str> {
    job.minions.iter().filter(|id| !job.returns.contains_key(*id)).map(String::as_str).collect()
}

/// A table, one job per row, in the order given.
pub fn list_text(jobs: &[JobSummary]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                job.jid.clone(),
                job.fun.clone(),
                target_text(job),
                format!("{}/{}", job.returned, job.targeted),
                job.failed.to_string(),
            ]
        })
        .collect();
    output::table(&["JID", "FUNCTION", "TARGET", "RETURNED", "FAILED"], &rows)
}

/// The target as a compound term would write it, so its type shows.
fn target_text(job: &JobSummary) -> String {
    let prefix = match job.tgt_type {
        TargetType::Glob | TargetType::Compound => "",
        TargetType::Pcre => "E@",
        TargetType::List => "L@",
        TargetType::Grain => "G@",
        TargetType::GrainPcre => "P@",
        TargetType::Ipcidr => "S@",
    };
    format!("{prefix}{}", job.target)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn job(
        jid: &str,
        fun: &str,
        target: &str,
        tgt_type: TargetType,
        counts: (usize, usize, usize),
    ) -> JobSummary {
        let (targeted, returned, failed) = counts;
        JobSummary {
            jid: jid.to_string(),
            fun: fun.to_string(),
            args: vec![],
            kwargs: BTreeMap::new(),
            target: target.to_string(),
            tgt_type,
            created_ms: 0,
            targeted,
            returned,
            failed,
        }
    }

    #[test]
    fn jobs_list_text() {
        let jobs = [
            job("20250101120000000001", "test.ping", "*", TargetType::Glob, (3, 3, 0)),
            job("20250101120000000002", "cmd.run", "os:debian", TargetType::Grain, (12, 10, 1)),
            job("20250101120000000003", "test.ping", "a,b", TargetType::List, (2, 0, 0)),
        ];
        let want = "\
JID                   FUNCTION   TARGET       RETURNED  FAILED
20250101120000000001  test.ping  *            3/3       0
20250101120000000002  cmd.run    G@os:debian  10/12     1
20250101120000000003  test.ping  L@a,b        0/2       0
";
        assert_eq!(list_text(&jobs), want);
        assert_eq!(list_text(&[]), "JID  FUNCTION  TARGET  RETURNED  FAILED\n");
    }
}
