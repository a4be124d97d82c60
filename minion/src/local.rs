//! `drover-minion local`: apply states with no master, as `salt-call --local` does. It
//! reads `roles/`, `states/` and `fleet.yaml` from a working tree as they are on disk
//! (committed or not, so a state can be tried before it is committed), works out this
//! host's roles from `roles/top.yaml` (or `--roles`), renders with its own grains, and
//! applies once with the same state engine as a connected minion, then exits.
//!
//! There is no master, so no peers (`peers.<role>` is empty) and no pillar but the roles'
//! own. And no daemon outlives the process: `daemon.*` states say what they would do with
//! `test=true` and fail otherwise, naming the way to run them (a minion connected to a
//! master supervises them). Everything else (files, commands, packages, services,
//! accounts, requisites) applies as it would under a master.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use api::TargetType;
use serde_json::{Value, json};
use targeting::{Candidate, Nodegroups, Target};
use wire::MinionId;
use wire::msg::Grains;

use crate::daemons::{DaemonOutcome, Daemons};
use crate::state::{self, ApplyOptions};

/// The largest file read from the working tree, and all of them together: the master's
/// limits for a commit, so what applies here also applies from the master.
const MAX_FILE: u64 = 4 << 20;
const MAX_TOTAL: u64 = 64 << 20;

#[derive(Debug, clap::Args)]
#[command(after_long_help = LOCAL_HELP)]
pub struct LocalArgs {
    /// The config repository's working tree (with roles/ and states/), read as it is on
    /// disk, committed or not
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,
    /// Apply these roles instead of those roles/top.yaml gives this host
    #[arg(long, value_name = "ROLE,...", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Print the states' results as text (one line each, then a summary) or as the
    /// `state.apply` return in JSON
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub out: String,
    /// state.apply [STATE-FILE-OR-ID...] [test=true], or state.highstate [test=true]
    #[arg(value_name = "FUNCTION [ARG...]", required = true, trailing_var_arg = true)]
    pub words: Vec<String>,
}

const LOCAL_HELP: &str = "\
The id is --id (before `local`), else the host name; grains are the system's, DIR/grains.yaml
and --grain/--grains, as for a connected minion.

Examples:
  drover-minion local --repo ~/config state.apply test=true
  drover-minion local --repo ~/config state.apply web.app
  drover-minion --id web-1 local --repo . --roles web state.highstate

Exit status: 0 every state succeeded (or, with test=true, would); 1 a state failed; 2 a
usage error or a problem in the files (printed as file:line:col: message).";

/// How a local apply ended.
#[derive(Debug)]
pub enum Ended {
    /// The apply ran: `success` when no state failed. `output` is what to print.
    Applied { success: bool, output: String },
    /// Nothing ran: usage or configuration problems, one per line.
    Refused(Vec<String>),
}

/// Reads the working tree, plans this host and applies (or, with `test=true`, dry-runs).
pub async fn apply(args: &LocalArgs, id: &MinionId, grains: &Grains) -> Ended {
    match prepare(args, id, grains) {
        Ok((prepared, request)) => run(prepared, request, args.out == "json").await,
        Err(problems) => Ended::Refused(problems),
    }
}

/// What the words ask: the states named (empty: all) and `test`.
struct Request {
    only: Vec<String>,
    test: bool,
}

struct Prepared {
    plan: render::Plan,
    files: render::Files,
    ctx: render::Context,
}

fn prepare(args: &LocalArgs, id: &MinionId, grains: &Grains) -> Result<(Prepared, Request), Vec<String>> {
    let request = request(&args.words).map_err(|e| vec![e])?;
    let files = read_tree(&args.repo).map_err(|e| vec![e])?;
    let lines = |d: Vec<render::Diagnostic>| d.iter().map(ToString::to_string).collect::<Vec<_>>();
    let repo = render::Repo::load(&files).map_err(lines)?;
    let grains_value = Value::Object(grains.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let names = if args.roles.is_empty() { roles_of(&repo, id, &grains_value)? } else { args.roles.clone() };
    if names.is_empty() {
        return Err(vec![format!(
            "no entry of roles/top.yaml gives this host a role (id {id}); give some with --roles"
        )]);
    }
    let roles = repo.roles_named(&names).map_err(lines)?;
    let minion = render::Minion {
        id: id.to_string(),
        grains: grains.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        pillar: serde_json::Map::new(),
        peers: Default::default(),
    };
    let ctx = render::Context::new(&minion, &roles);
    let plan = render::plan(&files, &roles, &ctx).map_err(lines)?;
    Ok((Prepared { plan, files, ctx }, request))
}

/// `state.apply [ids] [test=true]` or `state.highstate [test=true]`, as a job's words.
fn request(words: &[String]) -> Result<Request, String> {
    let usage = "usage: drover-minion local [--repo DIR] state.apply [STATE-FILE-OR-ID...] [test=true]";
    let Some((fun, rest)) = words.split_first() else { return Err(usage.into()) };
    if fun != "state.apply" && fun != "state.highstate" {
        return Err(format!("local runs state.apply or state.highstate, not {fun}; {usage}"));
    }
    let (args, kwargs) = api::words::split(rest);
    let mut test = false;
    for (key, value) in &kwargs {
        match (key.as_str(), value) {
            ("test", Value::Bool(b)) => test = *b,
            ("test", Value::String(s)) if s == "true" || s == "false" => test = s == "true",
            ("test", other) => return Err(format!("test= takes true or false, got {other}; {usage}")),
            (other, _) => return Err(format!("{fun} does not take {other}=; {usage}")),
        }
    }
    if fun == "state.highstate" && !args.is_empty() {
        return Err(format!("state.highstate names no states; {usage}"));
    }
    let mut only = Vec::new();
    for a in args {
        match a {
            Value::String(s) => {
                only.extend(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from))
            }
            other => only.push(other.to_string()),
        }
    }
    Ok(Request { only, test })
}

/// The roles `roles/top.yaml` (its `N@` groups from `roles/nodegroups.yaml`) and
/// `fleet.yaml` give `id`, as the master works them out.
fn roles_of(repo: &render::Repo, id: &MinionId, grains: &Value) -> Result<Vec<String>, Vec<String>> {
    let mut bad = Vec::new();
    let groups =
        Nodegroups::new(repo.nodegroups.entries.iter().map(|e| (e.name.clone(), e.target.clone())).collect());
    let mut targets = std::collections::HashMap::new();
    for entry in &repo.top.entries {
        match Target::parse_with(&entry.target, TargetType::Compound, &groups) {
            Ok(t) => {
                targets.insert(entry.target.clone(), t);
            }
            Err(e) => bad.push(format!("{}: bad target `{}`: {e}", render::TOP_FILE, entry.target)),
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    // top.yaml hands out the roles whose pillar an `I@` term would read: none is used here
    let candidate = Candidate { id: id.as_str(), grains, pillar: None };
    let mut roles: BTreeSet<String> =
        repo.top.roles_for(|target| targets.get(target).is_some_and(|t| t.matches(&candidate)));
    if let Some((role, _)) = repo.fleet.as_ref().and_then(|f| f.slot_of(id.as_str())) {
        roles.insert(role.to_string());
    }
    Ok(roles.into_iter().collect())
}

/// `roles/`, `states/` and `fleet.yaml` under `root`, as the master reads them from a
/// commit: regular files only, UTF-8, within the size limits.
fn read_tree(root: &Path) -> Result<render::Files, String> {
    if !root.join("roles").is_dir() {
        return Err(format!(
            "{}: no roles/ folder here; give the config repository's working tree with --repo DIR",
            root.display()
        ));
    }
    let mut files = render::Files::new();
    let mut total = 0;
    for top in ["roles", "states"] {
        let dir = root.join(top);
        if dir.is_dir() {
            walk(root, &dir, &mut files, &mut total)?;
        }
    }
    if root.join("fleet.yaml").is_file() {
        read_one(root, &root.join("fleet.yaml"), &mut files, &mut total)?;
    }
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut render::Files, total: &mut u64) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(root, &path, files, total)?;
        } else if meta.file_type().is_symlink() {
            return Err(format!(
                "{}: a symbolic link; the master refuses a commit with one, so this does too",
                path.display()
            ));
        } else if meta.is_file() {
            read_one(root, &path, files, total)?;
        }
    }
    Ok(())
}

fn read_one(root: &Path, path: &Path, files: &mut render::Files, total: &mut u64) -> Result<(), String> {
    let rel = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
    let len = fs::metadata(path).map_err(|e| format!("{rel}: {e}"))?.len();
    if len > MAX_FILE {
        return Err(format!("{rel}: {len} bytes; files are at most {MAX_FILE} bytes, as in a commit"));
    }
    *total += len;
    if *total > MAX_TOTAL {
        return Err(format!("roles/ and states/ hold more than {MAX_TOTAL} bytes, the most a commit may"));
    }
    let bytes = fs::read(path).map_err(|e| format!("{rel}: cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{rel}: not UTF-8 text"))?;
    files.insert(rel, text);
    Ok(())
}

async fn run(p: Prepared, req: Request, json_out: bool) -> Ended {
    let only = state::only_ids(&p.plan, &req.only);
    let opts = ApplyOptions { test: req.test, only, hold_daemons: false, hold_reason: String::new() };
    let applied = state::apply(&p.plan, &p.files, &p.ctx, &opts, &Unsupervised).await;
    if !applied.unknown.is_empty() {
        return Ended::Refused(vec![format!("no state file or state named {}", applied.unknown.join(", "))]);
    }
    let output =
        if json_out { format!("{:#}\n", applied.to_return()) } else { text(&applied.results, req.test) };
    Ended::Applied { success: applied.success(), output }
}

/// One line per state (`ok`, `changed`, `would change`, `FAILED`), a file's diff under it,
/// then Salt's summary counts.
fn text(results: &[wire::StateResult], test: bool) -> String {
    let mut out = String::new();
    let (mut ok, mut changed, mut failed) = (0, 0, 0);
    for r in results {
        let has_changes = r.changes.as_object().is_some_and(|c| !c.is_empty());
        let status = match r.result {
            Some(false) => {
                failed += 1;
                "FAILED"
            }
            None => {
                changed += 1;
                "would change"
            }
            Some(true) if has_changes => {
                changed += 1;
                "changed"
            }
            Some(true) => {
                ok += 1;
                "ok"
            }
        };
        out.push_str(&format!("{status:<12} {} ({} {}): {}\n", r.id, r.function, r.name, r.comment));
        if let Some(diff) = r.changes.get("diff").and_then(Value::as_str) {
            for line in diff.lines() {
                out.push_str(&format!("             {line}\n"));
            }
        }
    }
    let changed_word = if test { "would change" } else { "changed" };
    out.push_str(&format!(
        "{} state{}: {ok} ok, {changed} {changed_word}, {failed} failed{}\n",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        if test { " (test=true: nothing was changed)" } else { "" }
    ));
    out
}

/// The daemons of a local apply: none is started, since none would outlive the process.
struct Unsupervised;

const NO_SUPERVISOR: &str = "drover-minion local does not start daemons: they would end with it. \
     A minion connected to a master (drover-minion --id ID --master HOST) supervises them";

impl Daemons for Unsupervised {
    async fn ensure_running(
        &self,
        spec: &render::DaemonRunning,
        _restart: bool,
        test: bool,
    ) -> DaemonOutcome {
        if test {
            DaemonOutcome {
                result: true,
                changed: true,
                comment: format!("{} would be started under a connected minion", spec.name),
                changes: json!({}),
            }
        } else {
            DaemonOutcome {
                result: false,
                changed: false,
                comment: format!("{}: {NO_SUPERVISOR}", spec.name),
                changes: json!({}),
            }
        }
    }

    async fn ensure_stopped(&self, name: &str, _test: bool) -> DaemonOutcome {
        DaemonOutcome {
            result: true,
            changed: false,
            comment: format!("{name} is not running here (a local apply supervises no daemon)"),
            changes: json!({}),
        }
    }

    async fn retain(&self, _keep: &BTreeSet<String>) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_words_are_those_of_state_apply() {
        let r = request(&words(&["state.apply", "web.app,db", "conf", "test=true"])).unwrap();
        assert_eq!((r.only, r.test), (words(&["web.app", "db", "conf"]), true));
        let r = request(&words(&["state.highstate"])).unwrap();
        assert_eq!((r.only.len(), r.test), (0, false));
        for (bad, want) in [
            (&["cmd.run", "ls"][..], "not cmd.run"),
            (&["state.apply", "test=maybe"], "test= takes true or false"),
            (&["state.apply", "saltenv=base"], "does not take saltenv="),
            (&["state.highstate", "web"], "names no states"),
            (&[], "usage"),
        ] {
            let e = request(&words(bad)).err().unwrap_or_default();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_tree_is_read_as_a_commit_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(read_tree(root).unwrap_err().contains("no roles/ folder"));
        fs::create_dir_all(root.join("roles")).unwrap();
        fs::create_dir_all(root.join("states/web")).unwrap();
        fs::create_dir_all(root.join("other")).unwrap();
        fs::write(root.join("roles/web.yaml"), "states: [web]\n").unwrap();
        fs::write(root.join("states/web/init.yaml"), "a:\n  cmd.run: []\n").unwrap();
        fs::write(root.join("other/x"), "not read").unwrap();
        let files = read_tree(root).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["roles/web.yaml", "states/web/init.yaml"]);
        fs::write(root.join("states/web/bin"), [0xff, 0xfe]).unwrap();
        assert_eq!(read_tree(root).unwrap_err(), "states/web/bin: not UTF-8 text");
        fs::remove_file(root.join("states/web/bin")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("states/web/link")).unwrap();
        assert!(read_tree(root).unwrap_err().contains("a symbolic link"));
    }

    #[test]
    fn the_text_counts_like_salts_summary() {
        let result = |id: &str, result: Option<bool>, changes: Value| wire::StateResult {
            id: id.into(),
            function: "file.managed".into(),
            name: format!("/tmp/{id}"),
            result,
            comment: "c".into(),
            changes,
            ..Default::default()
        };
        let results = [
            result("a", Some(true), json!({})),
            result("b", None, json!({"diff": "-x\n+y\n"})),
            result("c", Some(false), json!({})),
        ];
        let out = text(&results, true);
        assert!(out.starts_with("ok           a (file.managed /tmp/a): c\n"), "{out}");
        assert!(
            out.contains("would change b (file.managed /tmp/b): c\n             -x\n             +y\n"),
            "{out}"
        );
        assert!(out.contains("FAILED       c"), "{out}");
        assert!(
            out.ends_with("3 states: 1 ok, 1 would change, 1 failed (test=true: nothing was changed)\n"),
            "{out}"
        );
    }
}
