//! `drover roles apply|diff|status`: the roles and states of a git commit, given to the
//! minions; what a commit would change; where each minion stands.

use api::client::ClientError;
use api::{MinionDiff, RoleStatus, RolesApplyRequest, RolesApplyResponse, RolesDiff};
use clap::{Args, Subcommand};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out, Paint};

const EXAMPLES: &str = "\
The master reads roles/ and states/ from its config repo at a commit (default: HEAD).
`apply` validates every role and renders every state for every minion before it gives
anything to any minion: a commit with errors is refused whole, each error printed on stderr
as file:line:col: message (exit status 2), and the previous assignment stays.

Examples:
  drover roles diff                    # what applying HEAD would change
  drover roles diff --commit v1.4
  drover roles apply
  drover roles apply --commit 3f2a1c9
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
    /// Validate the roles and states at a commit and give every minion its roles
    Apply(CommitArg),
    /// Show, per minion, the roles and files that applying a commit would change
    Diff(CommitArg),
    /// Show each minion's roles, converged commit and last result (exit 1 if one failed)
    #[command(after_long_help = STATUS_HELP)]
    Status,
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
        RolesCommand::Apply(CommitArg { commit }) => {
            let resp = client.roles_apply(&RolesApplyRequest { commit }).map_err(|e| refused(ctx, e))?;
            (format(ctx.out(), &resp, apply_text)?, Exit::Success)
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

/// A table of every minion's roles and whether they changed, then a summary line.
pub fn apply_text(resp: &RolesApplyResponse) -> String {
    let mut minions: Vec<_> = resp.minions.iter().collect();
    minions.sort_by(|a, b| a.id.cmp(&b.id));
    let commit = short(&resp.commit);
    if minions.is_empty() {
        return format!("applied {commit} to no minion\n");
    }
    let rows: Vec<Vec<String>> = minions
        .iter()
        .map(|m| vec![m.id.clone(), roles_cell(&m.roles), yes_no(m.changed), yes_no(m.connected)])
        .collect();
    let changed = minions.iter().filter(|m| m.changed).count();
    let absent = minions.iter().filter(|m| !m.connected).count();
    let mut out = output::table(&["ID", "ROLES", "CHANGED", "CONNECTED"], &rows);
    out.push_str(&format!(
        "applied {commit} to {}: {changed} changed, {} unchanged",
        plural(minions.len(), "minion"),
        minions.len() - changed
    ));
    if absent > 0 {
        out.push_str(&format!(", {absent} not connected (sent when it connects)"));
    }
    out.push('\n');
    out
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
                s.converged_commit.as_deref().map_or("-".to_string(), short),
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

/// A full commit id cut to git's short form; anything else as it is.
pub fn short(commit: &str) -> String {
    if commit.len() >= 12 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        commit[..7].to_string()
    } else {
        commit.to_string()
    }
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
    use api::MinionAssignment;

    use super::*;

    const C1: &str = "3f2a1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";
    const C0: &str = "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn assignment(id: &str, roles: &[&str], changed: bool, connected: bool) -> MinionAssignment {
        MinionAssignment { id: id.to_string(), roles: strings(roles), changed, connected }
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
                },
                "\
ID      ROLES         CHANGED  CONNECTED
db-1    datastore     no       yes
host-9  -             yes      yes
web-1   webui,worker  yes      no
applied 3f2a1c9 to 3 minions: 2 changed, 1 unchanged, 1 not connected (sent when it connects)
",
            ),
            (
                RolesApplyResponse {
                    commit: C1.to_string(),
                    minions: vec![assignment("a", &["x"], false, true)],
                },
                "ID  ROLES  CHANGED  CONNECTED\na   x      no       yes\napplied 3f2a1c9 to 1 minion: 0 changed, 1 unchanged\n",
            ),
            (
                RolesApplyResponse { commit: "main".to_string(), minions: vec![] },
                "applied main to no minion\n",
            ),
        ];
        for (resp, want) in table {
            assert_eq!(apply_text(&resp), want, "{resp:?}");
        }
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
from 1b2c3d4 (applied) to 3f2a1c9
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
        assert_eq!(diff_text(&none, false), "from nothing applied to 3f2a1c9\nno minion would change\n");
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
ID        CONNECTED  ROLES         COMMIT   RESULT  DETAIL
db-1      yes        datastore     3f2a1c9  ok
web-1     yes        webui,worker  1b2c3d4  failed  failing: worker-config, worker; converging to 3f2a1c9; worker-config: template error
worker-2  no         worker        -        never   waiting for: datastore
";
        assert_eq!(status_text(&status), want);
        assert_eq!(status_text(&[]), "ID  CONNECTED  ROLES  COMMIT  RESULT  DETAIL\n");
    }

    #[test]
    fn commits_are_shortened_only_when_full() {
        assert_eq!(short(C1), "3f2a1c9");
        assert_eq!(short("3f2a1c9"), "3f2a1c9");
        assert_eq!(short("v1.4"), "v1.4");
        assert_eq!(short("deadbeefcafe"), "deadbee");
    }
}
