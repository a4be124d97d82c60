//! `drover roles apply|diff|status`: the roles and states of a git commit, given to the
//! minions; what a commit would change; where each minion stands.

use api::client::ClientError;
use api::short;
use api::{
    MinionAssignment, MinionDiff, RoleStatus, RolesApplyRequest, RolesApplyResponse, RolesDiff,
    RolesTestResponse,
};
use clap::{Args, Subcommand};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out, Paint};

const EXAMPLES: &str = "\
The master reads roles/ and states/ from its config repo at a commit (default: HEAD).
`apply` validates every role and renders every state for every minion before it gives
anything to any minion: a commit with errors is refused whole, each error printed on stderr
as file:line:col: message (exit status 2), and the previous assignment stays. Then it waits
(up to -t, 60 s by default) until every connected minion reports how applying it went.

Examples:
  drover roles diff                    # what applying HEAD would change
  drover roles diff --commit v1.4
  drover roles apply                   # exit status 1 if a state failed on some minion
  drover roles apply --commit 3f2a1c9 -t 300
  drover roles apply --async           # send the assignments and return at once
  drover roles apply --test            # what each state would do on each minion it changes
  drover roles status                  # exit status 1 if some minion's last apply failed
  drover roles status --out json";

const STATUS_HELP: &str = "\
RESULT is ok when every state of the minion's last apply succeeded, failed when some failed
(DETAIL names them), never when it has not applied any assignment yet. COMMIT is the commit
it converged to.

Exit status: 0 no minion's last apply failed; 1 some minion's last apply failed; 2 usage or
configuration error.";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct RolesArgs {
    #[command(subcommand)]
    pub action: RolesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Validate the roles and states at a commit, give every minion its roles, and wait
    /// until the connected ones applied them (exit 1 if a state failed)
    #[command(after_long_help = APPLY_HELP)]
    Apply(ApplyArgs),
    /// Show, per minion, the roles and files that applying a commit would change
    Diff(CommitArg),
    /// Show each minion's roles, converged commit and last result (exit 1 if one failed)
    #[command(after_long_help = STATUS_HELP)]
    Status,
}

const APPLY_HELP: &str = "\
RESULT is ok when every state of the minion succeeded (with how many changed something),
failed when some failed (the first failure is printed below the table), no report when the
minion was still applying at the deadline, and not connected when it was not connected (its
assignment is sent when it connects; it is not waited for).

Exit status: 0 every connected minion applied the commit without a failed state; 1 a state
failed on some minion; 2 usage or configuration error, or the commit was refused (nothing
changed); 3 some connected minion did not report within the timeout. With --async: 0 once
the assignments are sent.

With --test: every connected minion the commit would change runs its states at that commit
with test=true and prints what each would do (highstate format); nothing is applied. Exit
status as a job's: 0, 1 a state would fail, 3 a minion did not answer within -t.";

/// The default of `roles apply -t`: applying may build config files and start daemons.
const DEFAULT_APPLY_TIMEOUT_SECS: f64 = 60.0;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub commit: CommitArg,
    /// How long to wait for the minions' reports, in seconds [default: 60]
    #[arg(short, long, value_name = "SECS", value_parser = crate::commands::run::parse_timeout)]
    pub timeout: Option<f64>,
    /// Return once the assignments are sent, without waiting for the minions
    #[arg(long = "async", conflicts_with_all = ["timeout", "test"])]
    pub no_wait: bool,
    /// Dry-run the commit on every minion it would change and print what each state would
    /// do (highstate format); no assignment changes
    #[arg(long)]
    pub test: bool,
}

#[derive(Debug, Args)]
pub struct CommitArg {
    /// The git revision of the config repo to read: a commit, tag or branch [default: HEAD]
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
}

pub fn run(args: RolesArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let client = ctx.client()?;
    let (text, exit) = match args.action {
        RolesCommand::Apply(ApplyArgs { commit: CommitArg { commit }, timeout, test: true, .. }) => {
            let req = RolesApplyRequest { commit, wait_secs: timeout };
            let resp = client.roles_test(&req).map_err(|e| refused(ctx, e))?;
            return print_test(ctx, &resp);
        }
        RolesCommand::Apply(ApplyArgs { commit: CommitArg { commit }, timeout, no_wait, test: false }) => {
            let wait_secs = (!no_wait).then(|| timeout.unwrap_or(DEFAULT_APPLY_TIMEOUT_SECS));
            let resp =
                client.roles_apply(&RolesApplyRequest { commit, wait_secs }).map_err(|e| refused(ctx, e))?;
            (format(ctx.out(), &resp, apply_text)?, apply_exit(&resp))
        }
        RolesCommand::Diff(CommitArg { commit }) => {
            let diff = client.roles_diff(commit.as_deref()).map_err(|e| refused(ctx, e))?;
            let color = ctx.color;
            (format(ctx.out(), &diff, |diff| diff_text(diff, color))?, Exit::Success)
        }
        RolesCommand::Status => {
            let status = client.roles_status().map_err(api_error)?;
            let failed = status.iter().any(|s| s.result == Some(false));
            (
                format(ctx.out(), &status, |s| status_text(s))?,
                if failed { Exit::Failed } else { Exit::Success },
            )
        }
    };
    ctx.print(&text)?;
    Ok(exit)
}

/// `value` as json or yaml (the API's structure), else as `text` makes it.
fn format<T: serde::Serialize + ?Sized>(
    out: Out,
    value: &T,
    text: impl Fn(&T) -> String,
) -> anyhow::Result<String> {
    match out {
        Out::Json => output::json(value),
        Out::Yaml => output::yaml(value),
        Out::Text | Out::Highstate => Ok(text(value)),
    }
}

/// A client error as one message; a commit with errors first has them printed on stderr.
fn refused(ctx: &mut Ctx, err: ClientError) -> anyhow::Error {
    if let ClientError::Invalid { diagnostics, .. } = &err
        && let Err(e) = ctx.stderr.write_all(diagnostics_text(diagnostics).as_bytes())
    {
        return anyhow::Error::new(e).context("cannot write to stderr");
    }
    api_error(err)
}

/// One `file:line:col: message` per line.
pub fn diagnostics_text(diagnostics: &[String]) -> String {
    diagnostics.iter().map(|d| format!("{}\n", d.trim_end())).collect()
}

/// `roles apply --test`: each tested minion's states as a job's (highstate), then what was
/// tested; the exit status of a job (1 if a state failed, 3 if a minion did not answer).
fn print_test(ctx: &mut Ctx, resp: &RolesTestResponse) -> anyhow::Result<Exit> {
    let commit = short(&resp.commit);
    let run = &resp.run;
    if matches!(ctx.out(), Out::Json | Out::Yaml) {
        let text = format(ctx.out(), resp, |_| String::new())?;
        ctx.print(&text)?;
    } else if run.targeted.is_empty() {
        ctx.print(&format!("{commit} would change no minion; nothing was tested\n"))?;
        return Ok(Exit::Success);
    } else {
        let mut text =
            output::returns(ctx.out_for("state.apply"), &run.returns, ctx.color, ctx.state_output)?;
        text.push_str(&format!(
            "tested {commit} on {} (job {}); {} unchanged; nothing was applied\n",
            plural(run.targeted.len(), "minion"),
            run.jid,
            resp.unchanged.len()
        ));
        ctx.print(&text)?;
    }
    let missing = crate::commands::run::Missing::of(run);
    if !missing.timed_out.is_empty() {
        ctx.note(&format!("timed out: {}", missing.timed_out.join(", ")))?;
    }
    if !missing.not_connected.is_empty() {
        ctx.note(&format!("not connected: {}", missing.not_connected.join(", ")))?;
    }
    Ok(if run.targeted.is_empty() { Exit::Success } else { crate::commands::run::status(run) })
}

/// How `roles apply` ends: a failed state is 1, a connected minion that did not report in
/// time is 3 (as a job's missing return); minions not connected do not count.
pub fn apply_exit(resp: &RolesApplyResponse) -> Exit {
    if !resp.waited {
        return Exit::Success;
    }
    let connected = resp.minions.iter().filter(|m| m.connected);
    if connected.clone().any(|m| m.outcome.as_ref().is_some_and(|o| !o.result)) {
        Exit::Failed
    } else if connected.clone().any(|m| m.outcome.is_none()) {
        Exit::NoReturn
    } else {
        Exit::Success
    }
}

/// A table of every minion's roles and whether they changed (and, when the apply waited,
/// how applying went), then a summary line, then the first failure of each failed minion.
pub fn apply_text(resp: &RolesApplyResponse) -> String {
    let mut minions: Vec<_> = resp.minions.iter().collect();
    minions.sort_by(|a, b| a.id.cmp(&b.id));
    let commit = short(&resp.commit);
    if minions.is_empty() {
        return format!("applied {commit} to no minion\n");
    }
    let rows: Vec<Vec<String>> = minions
        .iter()
        .map(|m| {
            let mut row = vec![m.id.clone(), roles_cell(&m.roles), yes_no(m.changed), yes_no(m.connected)];
            if resp.waited {
                row.push(result_cell(m));
            }
            row
        })
        .collect();
    let changed = minions.iter().filter(|m| m.changed).count();
    let absent = minions.iter().filter(|m| !m.connected).count();
    let headers: &[&str] = if resp.waited {
        &["ID", "ROLES", "CHANGED", "CONNECTED", "RESULT"]
    } else {
        &["ID", "ROLES", "CHANGED", "CONNECTED"]
    };
    let mut out = output::table(headers, &rows);
    out.push_str(&format!(
        "applied {commit} to {}: {changed} changed, {} unchanged",
        plural(minions.len(), "minion"),
        minions.len() - changed
    ));
    if absent > 0 {
        out.push_str(&format!(", {absent} not connected (sent when it connects)"));
    }
    if resp.waited {
        let of = |f: fn(&MinionAssignment) -> bool| minions.iter().filter(|m| m.connected && f(m)).count();
        let ok = of(|m| m.outcome.as_ref().is_some_and(|o| o.result));
        let failed = of(|m| m.outcome.as_ref().is_some_and(|o| !o.result));
        let silent = of(|m| m.outcome.is_none());
        out.push_str(&format!("; {ok} ok, {failed} failed"));
        if silent > 0 {
            out.push_str(&format!(", {silent} did not report in time (see 'drover roles status')"));
        }
    }
    out.push('\n');
    for m in &minions {
        if let Some(o) = m.outcome.as_ref().filter(|o| !o.result) {
            let first = o.comment.lines().next().unwrap_or("").trim();
            out.push_str(&format!(
                "{}: failed: {}\n",
                m.id,
                if first.is_empty() { "a state failed" } else { first }
            ));
        }
    }
    out
}

/// `ok (2 changed)`, `failed (1 state)`, `ok, waiting for datastore`, `no report`, `not connected`.
fn result_cell(m: &MinionAssignment) -> String {
    match (&m.outcome, m.connected) {
        (_, false) => "not connected".to_string(),
        (None, true) => "no report".to_string(),
        (Some(o), true) => {
            let mut cell = if o.result {
                match o.changed {
                    0 => "ok".to_string(),
                    n => format!("ok ({n} changed)"),
                }
            } else {
                format!("failed ({})", plural(o.failing.len().max(1), "state"))
            };
            if !o.waiting.is_empty() {
                cell.push_str(&format!(", waiting for {}", o.waiting.join(",")));
            }
            cell
        }
    }
}

/// Per minion that would change: `+`/`-` roles, `~` changed, `+` added, `-` removed files.
pub fn diff_text(diff: &RolesDiff, color: bool) -> String {
    let current = diff
        .current_commit
        .as_deref()
        .map_or("nothing applied".to_string(), |c| format!("{} (applied)", short(c)));
    let mut out = format!("from {current} to {}\n", short(&diff.commit));
    let mut minions: Vec<&MinionDiff> = diff.minions.iter().collect();
    minions.sort_by(|a, b| a.id.cmp(&b.id));
    for m in &minions {
        out.push_str(&format!("{}:\n", m.id));
        let lines = [
            (&m.roles_added, "+ role ", Paint::Green),
            (&m.roles_removed, "- role ", Paint::Red),
            (&m.files_changed, "~ ", Paint::Yellow),
            (&m.files_added, "+ ", Paint::Green),
            (&m.files_removed, "- ", Paint::Red),
        ];
        for (items, mark, paint) in lines {
            for item in items {
                out.push_str(&paint.apply(&format!("    {mark}{item}"), color));
                out.push('\n');
            }
        }
    }
    out.push_str(&match minions.len() {
        0 => "no minion would change\n".to_string(),
        n => format!("{} would change\n", plural(n, "minion")),
    });
    out
}

/// A table, one minion per row, sorted by id.
pub fn status_text(status: &[RoleStatus]) -> String {
    let mut status: Vec<&RoleStatus> = status.iter().collect();
    status.sort_by(|a, b| a.id.cmp(&b.id));
    let rows: Vec<Vec<String>> = status
        .iter()
        .map(|s| {
            let result = match s.result {
                Some(true) => "ok",
                Some(false) => "failed",
                None => "never",
            };
            vec![
                s.id.clone(),
                yes_no(s.connected),
                roles_cell(&s.roles),
                s.converged_commit.as_deref().map_or("-", short).to_string(),
                result.to_string(),
                detail(s),
            ]
        })
        .collect();
    output::table(&["ID", "CONNECTED", "ROLES", "COMMIT", "RESULT", "DETAIL"], &rows)
}

/// What is worth knowing beyond the columns: failing states, roles waited for, an
/// assignment not converged to yet, the minion's own comment.
fn detail(s: &RoleStatus) -> String {
    let mut parts = Vec::new();
    if !s.failing.is_empty() {
        parts.push(format!("failing: {}", s.failing.join(", ")));
    }
    if !s.waiting.is_empty() {
        parts.push(format!("waiting for: {}", s.waiting.join(", ")));
    }
    if let Some(assigned) = &s.assigned_commit
        && s.converged_commit.as_ref() != Some(assigned)
    {
        parts.push(format!("converging to {}", short(assigned)));
    }
    let comment = s.comment.lines().next().unwrap_or("").trim();
    if !comment.is_empty() {
        parts.push(comment.to_string());
    }
    parts.join("; ")
}

/// Roles comma-separated (one word, for `awk`), `-` for none.
fn roles_cell(roles: &[String]) -> String {
    if roles.is_empty() { "-".to_string() } else { roles.join(",") }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

#[cfg(test)]
mod tests {
    use api::ApplyOutcome;

    use super::*;

    const C1: &str = "3f2a1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";
    const C0: &str = "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn assignment(id: &str, roles: &[&str], changed: bool, connected: bool) -> MinionAssignment {
        MinionAssignment {
            id: id.to_string(),
            roles: strings(roles),
            changed,
            connected,
            serial: 1,
            outcome: None,
        }
    }

    #[test]
    fn apply_prints_a_table_and_a_summary() {
        let table = [
            (
                RolesApplyResponse {
                    commit: C1.to_string(),
                    minions: vec![
                        assignment("web-1", &["webui", "worker"], true, false),
                        assignment("db-1", &["datastore"], false, true),
                        assignment("host-9", &[], true, true),
                    ],
                    waited: false,
                },
                "\
ID      ROLES         CHANGED  CONNECTED
db-1    datastore     no       yes
host-9  -             yes      yes
web-1   webui,worker  yes      no
applied 3f2a1c9d8e7f to 3 minions: 2 changed, 1 unchanged, 1 not connected (sent when it connects)
",
            ),
            (
                RolesApplyResponse {
                    commit: C1.to_string(),
                    minions: vec![assignment("a", &["x"], false, true)],
                    waited: false,
                },
                "ID  ROLES  CHANGED  CONNECTED\na   x      no       yes\napplied 3f2a1c9d8e7f to 1 minion: 0 changed, 1 unchanged\n",
            ),
            (
                RolesApplyResponse { commit: "main".to_string(), minions: vec![], waited: false },
                "applied main to no minion\n",
            ),
        ];
        for (resp, want) in table {
            assert_eq!(apply_text(&resp), want, "{resp:?}");
        }
    }

    #[test]
    fn a_waited_apply_shows_each_result_and_exits_by_the_worst() {
        let outcome = |result: bool, changed: usize, failing: &[&str], comment: &str| ApplyOutcome {
            result,
            changed,
            failing: strings(failing),
            comment: comment.to_string(),
            ..ApplyOutcome::default()
        };
        let with = |m: MinionAssignment, o: Option<ApplyOutcome>| MinionAssignment { outcome: o, ..m };
        let mut resp = RolesApplyResponse {
            commit: C1.to_string(),
            minions: vec![
                with(assignment("web-1", &["webui"], true, true), Some(outcome(true, 2, &[], ""))),
                with(
                    assignment("db-1", &["datastore"], true, true),
                    Some(outcome(false, 0, &["pg-conf"], "pg-conf: template error\nmore")),
                ),
                with(assignment("host-9", &[], false, false), None),
                with(assignment("rng-1", &["rng"], false, true), None),
            ],
            waited: true,
        };
        let want = "\
ID      ROLES      CHANGED  CONNECTED  RESULT
db-1    datastore  yes      yes        failed (1 state)
host-9  -          no       no         not connected
rng-1   rng        no       yes        no report
web-1   webui      yes      yes        ok (2 changed)
applied 3f2a1c9d8e7f to 4 minions: 2 changed, 2 unchanged, 1 not connected (sent when it connects); \
1 ok, 1 failed, 1 did not report in time (see 'drover roles status')
db-1: failed: pg-conf: template error
";
        assert_eq!(apply_text(&resp), want);
        assert_eq!(apply_exit(&resp), Exit::Failed);
        resp.minions[1].outcome = Some(outcome(true, 0, &[], ""));
        assert_eq!(apply_exit(&resp), Exit::NoReturn, "a connected minion did not report");
        resp.minions[3].outcome = Some(outcome(true, 0, &[], ""));
        assert_eq!(apply_exit(&resp), Exit::Success, "the one not connected does not count");
        resp.minions[1].outcome = Some(outcome(false, 0, &[], ""));
        resp.waited = false;
        assert_eq!(apply_exit(&resp), Exit::Success, "--async: sent is success");
    }

    #[test]
    fn diagnostics_print_one_per_line() {
        let diags = strings(&[
            "roles/worker.yaml:3:9: unknown state coins.wrker",
            "states/coins/worker.yaml:12:5: expected a list of requisites, got a map\n",
        ]);
        assert_eq!(
            diagnostics_text(&diags),
            "roles/worker.yaml:3:9: unknown state coins.wrker\n\
             states/coins/worker.yaml:12:5: expected a list of requisites, got a map\n"
        );
        assert_eq!(diagnostics_text(&[]), "");
    }

    #[test]
    fn diff_lists_what_would_change_per_minion() {
        let diff = RolesDiff {
            commit: C1.to_string(),
            current_commit: Some(C0.to_string()),
            minions: vec![
                MinionDiff {
                    id: "web-1".to_string(),
                    roles_added: strings(&["worker"]),
                    roles_removed: strings(&["webui"]),
                    files_changed: strings(&["states/coins/worker.yaml"]),
                    files_added: strings(&["states/coins/worker.toml"]),
                    files_removed: strings(&["states/webui/site.yaml", "states/webui/site.conf"]),
                },
                MinionDiff {
                    id: "db-1".to_string(),
                    files_changed: strings(&["states/db/pg.yaml"]),
                    ..MinionDiff::default()
                },
            ],
        };
        let want = "\
from 1b2c3d4e5f60 (applied) to 3f2a1c9d8e7f
db-1:
    ~ states/db/pg.yaml
web-1:
    + role worker
    - role webui
    ~ states/coins/worker.yaml
    + states/coins/worker.toml
    - states/webui/site.yaml
    - states/webui/site.conf
2 minions would change
";
        assert_eq!(diff_text(&diff, false), want);
        let colored = diff_text(&diff, true);
        assert!(colored.contains("\x1b[32m    + role worker\x1b[0m\n"), "{colored}");
        assert!(colored.contains("\x1b[31m    - role webui\x1b[0m\n"), "{colored}");

        let none = RolesDiff { commit: C1.to_string(), current_commit: None, minions: vec![] };
        assert_eq!(diff_text(&none, false), "from nothing applied to 3f2a1c9d8e7f\nno minion would change\n");
    }

    #[test]
    fn status_prints_a_table() {
        let status = vec![
            RoleStatus {
                id: "web-1".to_string(),
                connected: true,
                roles: strings(&["webui", "worker"]),
                assigned_commit: Some(C1.to_string()),
                converged_commit: Some(C0.to_string()),
                result: Some(false),
                failing: strings(&["worker-config", "worker"]),
                waiting: vec![],
                comment: "worker-config: template error\nmore".to_string(),
            },
            RoleStatus {
                id: "db-1".to_string(),
                connected: true,
                roles: strings(&["datastore"]),
                assigned_commit: Some(C1.to_string()),
                converged_commit: Some(C1.to_string()),
                result: Some(true),
                ..RoleStatus::default()
            },
            RoleStatus {
                id: "worker-2".to_string(),
                roles: strings(&["worker"]),
                waiting: strings(&["datastore"]),
                ..RoleStatus::default()
            },
        ];
        let want = "\
ID        CONNECTED  ROLES         COMMIT        RESULT  DETAIL
db-1      yes        datastore     3f2a1c9d8e7f  ok
web-1     yes        webui,worker  1b2c3d4e5f60  failed  failing: worker-config, worker; converging to 3f2a1c9d8e7f; worker-config: template error
worker-2  no         worker        -             never   waiting for: datastore
";
        assert_eq!(status_text(&status), want);
        assert_eq!(status_text(&[]), "ID  CONNECTED  ROLES  COMMIT  RESULT  DETAIL\n");
    }
}
