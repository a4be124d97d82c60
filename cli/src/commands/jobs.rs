//! `drover jobs list|show|running|kill`: the master's job store, and job control.

use anyhow::bail;
use api::{JobDetail, JobSummary, JobsQuery, KillResponse, RunningJob, TargetType};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

const EXAMPLES: &str = "\
A job's STATUS is running while some minion it was sent to has not returned (the
master's view: `drover '*' saltutil.running` asks the minions), killed once `jobs kill`
ended it, else done.

Examples:
  drover jobs list
  drover jobs list --function 'cmd.*' --target 'web-*' --since 1h --failed
  drover jobs show 20250101120000123456
  drover jobs show 20250101120000123456 --out json   # the whole job, with per-minion times
  drover jobs running
  drover jobs kill 20250101120000123456";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: JobsCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest last: function, target, returns, failures and status
    List(ListArgs),
    /// Jobs some minion has not returned yet, with the minions still busy (the master's
    /// view: it does not ask the minions)
    Running,
    /// End a job on the minions still busy with it: each kills the job's process group
    /// and returns it as killed (retcode 137); the minion itself goes on
    Kill {
        /// The job id, as `drover jobs running` prints it
        jid: String,
    },
    /// Show one job's returns (json and yaml: the whole job, with each minion's times;
    /// state.apply and state.highstate jobs print as highstate unless --out says otherwise)
    Show {
        /// The job id, as `drover --async` or `jobs list` print it
        jid: String,
    },
}

/// Which jobs `jobs list` shows; every filter given must hold.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs of functions matching this glob (`cmd.*`)
    #[arg(long, value_name = "GLOB")]
    pub function: Option<String>,
    /// Only jobs that targeted a minion whose id matches this glob (`web-*`)
    #[arg(long, value_name = "GLOB")]
    pub target: Option<String>,
    /// Only jobs created since: a time ago (`30m`, `2h`, `7d`), a date (`2025-01-01`, UTC)
    /// or a time (`2025-01-01T12:00:00Z`)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<u64>,
    /// Only jobs with at least one failed return
    #[arg(long)]
    pub failed: bool,
    /// At most this many jobs, the newest
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
}

pub fn run(args: JobsArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let client = ctx.client()?;
    match args.action {
        JobsCommand::List(list) => {
            let query = JobsQuery {
                limit: Some(list.limit),
                function: list.function,
                target: list.target,
                since_ms: list.since,
                failed: list.failed,
            };
            let mut jobs = client.jobs_where(&query).map_err(api_error)?;
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
                if let Some(ms) = job.summary.killed_ms {
                    ctx.note(&format!("killed at {}", super::events::time(ms)))?;
                }
                let missing = no_return(&job);
                if !missing.is_empty() {
                    ctx.note(&format!("no return: {}", missing.join(", ")))?;
                }
            }
        }
        JobsCommand::Running => {
            let jobs = client.running_jobs().map_err(api_error)?;
            let text = match ctx.out() {
                Out::Json => output::json(&jobs)?,
                Out::Yaml => output::yaml(&jobs)?,
                Out::Text | Out::Highstate => running_text(&jobs),
            };
            ctx.print(&text)?;
        }
        JobsCommand::Kill { jid } => {
            if !wire_jid(&jid) {
                bail!("bad jid {jid:?}: expected 20 digits, as 'drover jobs running' shows");
            }
            let killed = client.kill_job(&jid).map_err(api_error)?;
            let text = match ctx.out() {
                Out::Json => output::json(&killed)?,
                Out::Yaml => output::yaml(&killed)?,
                Out::Text | Out::Highstate => kill_text(&killed),
            };
            ctx.print(&text)?;
            if !killed.not_connected.is_empty() {
                ctx.note(&format!(
                    "not connected, so not killed: {} (the job goes on there; kill it again once connected)",
                    killed.not_connected.join(", ")
                ))?;
                return Ok(Exit::NoReturn);
            }
        }
    }
    Ok(Exit::Success)
}

/// Whether `jid` has a jid's shape (20 digits).
fn wire_jid(jid: &str) -> bool {
    jid.len() == 20 && jid.bytes().all(|b| b.is_ascii_digit())
}

/// `--since`: a time ago (`90s`, `30m`, `2h`, `7d`), a date (UTC midnight) or an RFC 3339
/// time, as ms since the Unix epoch.
pub fn parse_since(s: &str) -> Result<u64, String> {
    since_at(s, Utc::now())
}

fn since_at(s: &str, now: DateTime<Utc>) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a time: expected a time ago (30m, 2h, 7d), a date (2025-01-01) or 2025-01-01T12:00:00Z"
        )
    };
    let ago = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)].iter().find_map(|(unit, secs)| {
        s.strip_suffix(unit).and_then(|n| n.parse::<u32>().ok()).map(|n| i64::from(n) * secs)
    });
    let at = match ago {
        Some(secs) => now - chrono::Duration::seconds(secs),
        None => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| bad())?
                .and_hms_opt(0, 0, 0)
                .ok_or_else(bad)?
                .and_utc(),
        },
    };
    u64::try_from(at.timestamp_millis()).map_err(|_| bad())
}

/// One row per running job: its jid, function, target, age and the minions still busy.
pub fn running_text(jobs: &[RunningJob]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                job.summary.jid.clone(),
                job.summary.fun.clone(),
                target_text(&job.summary),
                job.summary.status().to_string(),
                job.busy_minions.join(","),
            ]
        })
        .collect();
    output::table(&["JID", "FUNCTION", "TARGET", "STATUS", "BUSY"], &rows)
}

/// Which minions the kill went to, and which the job will never reach.
fn kill_text(killed: &KillResponse) -> String {
    let mut text = String::new();
    if !killed.sent.is_empty() {
        text.push_str(&format!("kill sent to: {}\n", killed.sent.join(", ")));
    }
    if !killed.not_run.is_empty() {
        text.push_str(&format!("not run (the batch had not reached them): {}\n", killed.not_run.join(", ")));
    }
    text
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
                job.status().to_string(),
            ]
        })
        .collect();
    output::table(&["JID", "FUNCTION", "TARGET", "RETURNED", "FAILED", "STATUS"], &rows)
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
            busy: targeted - returned,
            killed_ms: None,
        }
    }

    #[test]
    fn jobs_list_text() {
        let mut killed = job("20250101120000000003", "test.ping", "a,b", TargetType::List, (2, 0, 0));
        killed.killed_ms = Some(5);
        let jobs = [
            job("20250101120000000001", "test.ping", "*", TargetType::Glob, (3, 3, 0)),
            job("20250101120000000002", "cmd.run", "os:debian", TargetType::Grain, (12, 10, 1)),
            killed,
        ];
        let want = "\
JID                   FUNCTION   TARGET       RETURNED  FAILED  STATUS
20250101120000000001  test.ping  *            3/3       0       done
20250101120000000002  cmd.run    G@os:debian  10/12     1       running
20250101120000000003  test.ping  L@a,b        0/2       0       killed
";
        assert_eq!(list_text(&jobs), want);
        assert_eq!(list_text(&[]), "JID  FUNCTION  TARGET  RETURNED  FAILED  STATUS\n");
    }

    #[test]
    fn running_jobs_name_the_busy_minions() {
        let jobs = [RunningJob {
            summary: job("20250101120000000002", "cmd.run", "web-*", TargetType::Glob, (3, 1, 0)),
            busy_minions: vec!["web-2".into(), "web-3".into()],
        }];
        let want = "\
JID                   FUNCTION  TARGET  STATUS   BUSY
20250101120000000002  cmd.run   web-*   running  web-2,web-3
";
        assert_eq!(running_text(&jobs), want);
    }

    #[test]
    fn since_takes_a_time_ago_a_date_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2025-01-02T00:00:00Z").unwrap().with_timezone(&Utc);
        let day = 86_400_000;
        let midnight = 1_735_776_000_000; // 2025-01-02T00:00:00Z
        assert_eq!(since_at("1d", now), Ok(midnight - day));
        assert_eq!(since_at("30m", now), Ok(midnight - 30 * 60_000));
        assert_eq!(since_at("2025-01-01", now), Ok(midnight - day));
        assert_eq!(since_at("2025-01-01T12:00:00Z", now), Ok(midnight - day / 2));
        for bad in ["yesterday", "5w", "-1h", ""] {
            let err = since_at(bad, now).unwrap_err();
            assert!(err.contains("is not a time"), "{bad}: {err}");
        }
    }
}
