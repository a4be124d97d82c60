//! What each minion gets from one commit: its roles (the union over every role source), its
//! plan (rendered and checked by `render`), its manifest (the only files it may fetch) and
//! the peers it sees. No I/O: [`crate::repo`] reads the commit, [`crate::roles`] owns the
//! results.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use api::{MinionDiff, TargetType};
use render::{
    Context, Diagnostic, Files, FleetFile, NODEGROUPS_FILE, NodegroupsFile, Repo, TOP_FILE, TopFile,
    role_path,
};
use serde_json::{Map, Value};
use wire::MinionId;
use wire::msg::sha256_hex;

use crate::peers::{self, Member, PeerMap};
use crate::repo::Commit;
use targeting::{Candidate, Nodegroups, Target};

/// Where a minion's roles come from. A minion gets the union of what every source gives
/// it: `roles/top.yaml` for plain hosts ([`TopRoles`]), `fleet.yaml` for the fleet's
/// containers ([`FleetRoles`]).
pub trait RoleSource: Send + Sync {
    fn roles_for(&self, id: &str, grains: &Value) -> BTreeSet<String>;
}

/// `roles/top.yaml`, its targets parsed once (as compound targets; a bare glob is one).
pub struct TopRoles {
    top: TopFile,
    targets: HashMap<String, Target>,
}

impl TopRoles {
    /// Parses every target of `top` (`N@` from `groups`); a bad one is a diagnostic on its
    /// line of `text`. `I@` is refused: the pillar comes from the roles this file gives.
    pub fn new(top: TopFile, text: &str, groups: &Nodegroups) -> Result<TopRoles, Vec<Diagnostic>> {
        let mut targets = HashMap::new();
        let mut diags = Vec::new();
        for entry in &top.entries {
            match Target::parse_with(&entry.target, TargetType::Compound, groups) {
                Ok(t) if t.uses_pillar() => {
                    let (line, col) = locate(text, &entry.target);
                    diags.push(Diagnostic::new(
                        TOP_FILE,
                        line,
                        col,
                        format!(
                            "bad target `{}`: I@ cannot select roles, since a minion's pillar comes from \
                             its roles; target with grains (G@) or ids instead",
                            shown(&entry.target)
                        ),
                    ));
                }
                Ok(t) => {
                    targets.insert(entry.target.clone(), t);
                }
                Err(e) => {
                    let (line, col) = locate(text, &entry.target);
                    diags.push(Diagnostic::new(
                        TOP_FILE,
                        line,
                        col,
                        format!(
                            "bad target `{}`: {e}; expected a glob or a compound target such as \
                             'G@os_family:debian and db-*'",
                            shown(&entry.target)
                        ),
                    ));
                }
            }
        }
        if diags.is_empty() { Ok(TopRoles { top, targets }) } else { Err(diags) }
    }
}

/// A target as a message shows it: whole when short, else its first 60 characters.
fn shown(target: &str) -> String {
    match target.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &target[..end]),
        None => target.to_string(),
    }
}

/// The first line (1-based) and column where `needle` appears in `text`, else (0, 0).
fn locate(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, line)| line.find(needle).map(|at| (i + 1, line[..at].chars().count() + 1)))
        .unwrap_or((0, 0))
}

/// The nodegroups of `file`, each target parsed with the others (so a cycle, an unknown
/// group or a bad term is found now); a bad one is a diagnostic at its name.
pub fn nodegroups(file: &NodegroupsFile) -> Result<Nodegroups, Vec<Diagnostic>> {
    let groups = Nodegroups::new(file.entries.iter().map(|e| (e.name.clone(), e.target.clone())).collect());
    let diags: Vec<Diagnostic> = file
        .entries
        .iter()
        .filter_map(|e| {
            let err = Target::parse_with(&format!("N@{}", e.name), TargetType::Compound, &groups).err()?;
            // the error names the group's own target: drop the `N@name` wrapping
            let text = err.to_string();
            let inner = format!("in nodegroup '{}': ", e.name);
            let reason = text.split_once(&inner).map_or(text.as_str(), |(_, r)| r);
            Some(Diagnostic::new(NODEGROUPS_FILE, e.line, e.col, format!("nodegroup `{}`: {reason}", e.name)))
        })
        .collect();
    if diags.is_empty() { Ok(groups) } else { Err(diags) }
}

impl RoleSource for TopRoles {
    fn roles_for(&self, id: &str, grains: &Value) -> BTreeSet<String> {
        let candidate = Candidate { id, grains, pillar: None };
        self.top.roles_for(|target| self.targets.get(target).is_some_and(|t| t.matches(&candidate)))
    }
}

/// `fleet.yaml`: the minion whose id is a slot name of the fleet (`<fleet>-<role>-<n>`,
/// [`FleetFile::slot_of`]) gets that slot's role.
pub struct FleetRoles {
    fleet: FleetFile,
}

impl FleetRoles {
    pub fn new(fleet: FleetFile) -> FleetRoles {
        FleetRoles { fleet }
    }
}

impl RoleSource for FleetRoles {
    fn roles_for(&self, id: &str, _grains: &Value) -> BTreeSet<String> {
        self.fleet.slot_of(id).map(|(role, _)| role.to_string()).into_iter().collect()
    }
}

/// One commit, validated as a whole, ready to plan minions with and to serve files from.
pub struct Applied {
    /// The full commit id.
    pub commit: String,
    pub files: Files,
    /// Path → sha256 of every file in `files`.
    pub tree: BTreeMap<String, String>,
    /// sha256 → a path with that content.
    by_sha: HashMap<String, String>,
    pub repo: Repo,
    /// `roles/nodegroups.yaml`, checked: what `N@` names at this commit.
    pub nodegroups: Nodegroups,
    sources: Vec<Box<dyn RoleSource>>,
}

impl Applied {
    /// Parses and cross-checks every role, the top file and the fleet file of `commit`.
    pub fn load(commit: Commit) -> Result<Applied, Vec<Diagnostic>> {
        let top_text = commit.files.get(TOP_FILE).map(String::as_str).unwrap_or("");
        let repo = match Repo::load(&commit.files) {
            Ok(repo) => repo,
            Err(mut diags) => {
                // report bad targets too, in the same answer
                let groups = match commit.files.get(NODEGROUPS_FILE).map(|t| NodegroupsFile::parse(t)) {
                    None => Some(Nodegroups::default()),
                    Some(Err(_)) => None, // told by Repo::load
                    Some(Ok(file)) => nodegroups(&file).map_err(|more| diags.extend(more)).ok(),
                };
                if let Some(groups) = groups
                    && let Ok(top) = TopFile::parse(top_text, |_| true)
                    && let Err(more) = TopRoles::new(top, top_text, &groups)
                {
                    diags.extend(more);
                }
                return Err(diags);
            }
        };
        let groups = nodegroups(&repo.nodegroups)?;
        let top = TopRoles::new(repo.top.clone(), top_text, &groups)?;
        let mut sources: Vec<Box<dyn RoleSource>> = vec![Box::new(top)];
        if let Some(fleet) = &repo.fleet {
            sources.push(Box::new(FleetRoles::new(fleet.clone())));
        }
        let tree: BTreeMap<String, String> =
            commit.files.iter().map(|(path, text)| (path.clone(), sha256_hex(text.as_bytes()))).collect();
        let by_sha = tree.iter().map(|(path, sha)| (sha.clone(), path.clone())).collect();
        Ok(Applied {
            commit: commit.id,
            files: commit.files,
            tree,
            by_sha,
            repo,
            nodegroups: groups,
            sources,
        })
    }

    /// The commit id as people read it ([`api::short`]).
    pub fn short(&self) -> &str {
        api::short(&self.commit)
    }

    /// The content named `sha`, if this commit has it.
    pub fn blob(&self, sha: &str) -> Option<&[u8]> {
        self.by_sha.get(sha).and_then(|path| self.files.get(path)).map(String::as_bytes)
    }

    /// The roles of a minion: the union over every role source, sorted.
    pub fn roles_for(&self, id: &str, grains: &Value) -> Vec<String> {
        let mut roles = BTreeSet::new();
        for source in &self.sources {
            roles.extend(source.roles_for(id, grains));
        }
        roles.into_iter().collect()
    }

    /// The pillar a minion with `roles` sees at this commit: their `pillar:` maps merged in
    /// that order, as its templates get them (roles not in the commit are skipped).
    pub fn pillar_of(&self, roles: &[String]) -> Value {
        let defs: Vec<render::Role> = roles.iter().filter_map(|r| self.repo.roles.get(r)).cloned().collect();
        Value::Object(Context::new(&render::Minion::default(), &defs).pillar)
    }

    /// Every role name of the commit.
    pub fn role_names(&self) -> impl Iterator<Item = &String> {
        self.repo.roles.keys()
    }
}

/// What one minion gets from a commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub roles: Vec<String>,
    /// Repo path → sha256: its role files, their state files, the sources its plan names.
    pub files: BTreeMap<String, String>,
    /// The roles whose peers it sees: the roles its roles `require`, and those its files
    /// read from `peers` (see [`render::peer_reads`]).
    pub view: BTreeSet<String>,
    /// The peers it was rendered with (the roles of `view`).
    pub peers: PeerMap,
    /// The grains it was planned with (`grains_digest`).
    pub grains_digest: String,
}

/// A digest of grains, to tell whether a minion's grains changed since it was planned.
pub fn grains_digest(grains: &Value) -> String {
    let sorted: BTreeMap<&String, &Value> =
        grains.as_object().map(|m| m.iter().collect()).unwrap_or_default();
    sha256_hex(serde_json::to_string(&sorted).unwrap_or_default().as_bytes())
}

fn render_peers(peers: &PeerMap) -> BTreeMap<String, Vec<render::Peer>> {
    peers
        .iter()
        .map(|(role, list)| {
            let list = list
                .iter()
                .map(|p| render::Peer {
                    id: p.id.clone(),
                    address: p.address.clone(),
                    grains: p.grains.clone(),
                })
                .collect();
            (role.clone(), list)
        })
        .collect()
}

/// Plans one minion with the roles its role sources give it.
pub fn plan_minion(
    applied: &Applied,
    id: &str,
    grains: &Value,
    table: &PeerMap,
) -> Result<Planned, Vec<Diagnostic>> {
    plan_roles(applied, id, grains, applied.roles_for(id, grains), table)
}

/// Plans one minion with `roles`: renders every state file and template source it would
/// apply, with the peers of its view taken from `table`.
///
/// Its files decide its view (the roles whose members it is given, and whose changes re-plan
/// and re-push it): the roles they read from `peers`, or every role if one uses `peers` in
/// a way that names none (see [`render::peer_reads`]); a minion whose files never mention `peers`
/// cannot render differently when they change. The roles its roles `require` are in every
/// view, so the minion can tell when they have a member to wait for. A name that is no role
/// is left out, so `peers.typo` fails to render here, with its file and line.
pub fn plan_roles(
    applied: &Applied,
    id: &str,
    grains: &Value,
    roles: Vec<String>,
    table: &PeerMap,
) -> Result<Planned, Vec<Diagnostic>> {
    let files = &applied.files;
    let role_defs = applied.repo.roles_named(&roles)?;
    let mut manifest = BTreeSet::new();
    for role in &role_defs {
        manifest.insert(role_path(&role.name));
        manifest.extend(role.states.iter().filter_map(|s| s.find(files)).map(|(path, _)| path));
    }
    // and what they include, as far as it can be told before rendering (see below)
    let roots: Vec<String> = manifest.iter().cloned().collect();
    manifest.extend(render::includes_written(files, &roots));
    let mut view: BTreeSet<String> = role_defs.iter().flat_map(|r| r.requires.iter().cloned()).collect();
    let widen = |view: &mut BTreeSet<String>, paths: &mut dyn Iterator<Item = &String>| {
        let mut named = BTreeSet::new();
        // once one file reads every role, the names read by the others do not matter
        let every = paths.filter_map(|p| files.get(p)).any(|text| !render::peer_reads(text, &mut named));
        let before = view.len();
        if every {
            view.extend(applied.role_names().cloned());
        } else {
            view.extend(named.into_iter().filter(|n| applied.repo.roles.contains_key(n)));
        }
        view.len() != before
    };
    widen(&mut view, &mut manifest.iter());
    let grains_map: Map<String, Value> = grains.as_object().cloned().unwrap_or_default();
    let context = |view: &BTreeSet<String>| {
        let minion = render::Minion {
            id: id.to_string(),
            grains: grains_map.clone(),
            pillar: Map::new(),
            peers: render_peers(&peers::view_of(table, view)),
        };
        Context::new(&minion, &role_defs)
    };
    let mut ctx = context(&view);
    // An include made by Tera is known only once rendered: plan again if its file reads
    // more peers. Rendered without them it may fail (`peers.db` is not defined): its files
    // are then found by rendering with every role's members.
    let mut planned = render::plan_with_files(files, &role_defs, &ctx);
    let read = match &planned {
        Ok((_, read)) => read.clone(),
        Err(diags) if !diags.iter().any(Diagnostic::over_budget) => {
            let every: BTreeSet<String> = applied.role_names().cloned().collect();
            render::plan_with_files(files, &role_defs, &context(&every))
                .map(|(_, read)| read)
                .unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    let included: Vec<String> = read.into_iter().filter(|p| !manifest.contains(p)).collect();
    manifest.extend(included.iter().cloned());
    if widen(&mut view, &mut included.iter()) {
        ctx = context(&view);
        planned = render::plan_with_files(files, &role_defs, &ctx);
    }
    let (plan, read) = planned?;
    manifest.extend(read);
    let sources: Vec<String> = plan.sources().into_iter().map(String::from).collect();
    // the state files did not read these peers (or the plan would differ): only the sources do
    if widen(&mut view, &mut sources.iter()) {
        ctx = context(&view);
    }
    render::check_sources(&plan, files, &ctx)?;
    manifest.extend(sources);
    let files = manifest
        .into_iter()
        .map(|path| {
            let sha = applied.tree.get(&path).cloned().unwrap_or_default();
            (path, sha)
        })
        .collect();
    Ok(Planned {
        roles,
        files,
        peers: peers::view_of(table, &view),
        view,
        grains_digest: grains_digest(grains),
    })
}

/// One accepted minion, as a `roles apply` or `roles diff` sees it.
#[derive(Clone, Debug)]
pub struct MinionInput {
    pub id: MinionId,
    /// Its last grains (`{}` if it never connected).
    pub grains: Value,
    /// The roles it serves now (see [`crate::peers`]); only those it keeps count as peers.
    pub serving: BTreeSet<String>,
}

/// Plans every minion for `applied`, peers included: a role's members are the minions that
/// serve it now and keep it. Every problem of every minion, or every plan; after a render
/// stopped by its budget ([`Diagnostic::over_budget`]), the minions left are not planned.
pub fn plan_all(
    applied: &Applied,
    minions: &[MinionInput],
) -> Result<BTreeMap<MinionId, Planned>, Vec<(Diagnostic, MinionId)>> {
    let roles: Vec<Vec<String>> =
        minions.iter().map(|m| applied.roles_for(m.id.as_str(), &m.grains)).collect();
    let members: Vec<Member> = minions
        .iter()
        .zip(&roles)
        .map(|(m, roles)| Member {
            id: m.id.as_str(),
            grains: &m.grains,
            roles,
            serving: roles.iter().filter(|r| m.serving.contains(*r)).map(String::as_str).collect(),
        })
        .collect();
    let table = peers::table(applied.role_names(), &members);
    let mut planned = BTreeMap::new();
    let mut problems = Vec::new();
    for (m, roles) in minions.iter().zip(roles) {
        match plan_roles(applied, m.id.as_str(), &m.grains, roles, &table) {
            Ok(p) => {
                planned.insert(m.id.clone(), p);
            }
            Err(diags) => {
                let over_budget = diags.iter().any(Diagnostic::over_budget);
                problems.extend(diags.into_iter().map(|d| (d, m.id.clone())));
                if over_budget {
                    // the commit is refused: the others would each spend the render budget again
                    break;
                }
            }
        }
    }
    if problems.is_empty() { Ok(planned) } else { Err(problems) }
}

/// The most diagnostics one refusal lists.
const MAX_LISTED: usize = 200;

/// The lines of a refusal: each distinct problem once, in file order, naming the minion it
/// was found rendering for (and how many more). Also returns how many distinct problems.
pub fn refusal_lines(problems: Vec<(Diagnostic, Option<MinionId>)>) -> (usize, Vec<String>) {
    let mut grouped: BTreeMap<Diagnostic, Vec<MinionId>> = BTreeMap::new();
    for (diag, minion) in problems {
        let ids = grouped.entry(diag).or_default();
        ids.extend(minion);
    }
    let count = grouped.len();
    let mut lines: Vec<String> = grouped
        .into_iter()
        .take(MAX_LISTED)
        .map(|(diag, mut ids)| {
            ids.sort();
            ids.dedup();
            match ids.as_slice() {
                [] => diag.to_string(),
                [one] => format!("{diag} (rendering for {one})"),
                [first, rest @ ..] => format!("{diag} (rendering for {first} and {} more)", rest.len()),
            }
        })
        .collect();
    if count > MAX_LISTED {
        lines.push(format!("... and {} more", count - MAX_LISTED));
    }
    (count, lines)
}

/// What changes for one minion from `old` (roles, manifest) to `new`; `None` if nothing.
pub fn diff(
    id: &str,
    old: Option<(&[String], &BTreeMap<String, String>)>,
    new: (&[String], &BTreeMap<String, String>),
) -> Option<MinionDiff> {
    let empty = BTreeMap::new();
    let (old_roles, old_files) = old.unwrap_or((&[], &empty));
    let (new_roles, new_files) = new;
    let d = MinionDiff {
        id: id.to_string(),
        roles_added: new_roles.iter().filter(|r| !old_roles.contains(r)).cloned().collect(),
        roles_removed: old_roles.iter().filter(|r| !new_roles.contains(r)).cloned().collect(),
        files_changed: new_files
            .iter()
            .filter(|(path, sha)| old_files.get(*path).is_some_and(|old| old != *sha))
            .map(|(path, _)| path.clone())
            .collect(),
        files_added: new_files.keys().filter(|path| !old_files.contains_key(*path)).cloned().collect(),
        files_removed: old_files.keys().filter(|path| !new_files.contains_key(*path)).cloned().collect(),
    };
    let same = d.roles_added.is_empty()
        && d.roles_removed.is_empty()
        && d.files_changed.is_empty()
        && d.files_added.is_empty()
        && d.files_removed.is_empty();
    (!same).then_some(d)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn commit(files: &[(&str, &str)]) -> Commit {
        Commit {
            id: "c0ffee".repeat(7)[..40].to_string(),
            files: files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect(),
        }
    }

    pub fn input(id: &str, grains: Value) -> MinionInput {
        MinionInput { id: MinionId::new(id).unwrap(), grains, serving: BTreeSet::new() }
    }

    /// A small cloud: a datastore, workers that find it through peers, a web UI.
    pub const CLOUD: &[(&str, &str)] = &[
        (
            "roles/top.yaml",
            "'web-*': [webui]\n'G@os_family:debian and db-*': [datastore]\n'L@w1,w2': [worker]\n",
        ),
        ("roles/webui.yaml", "states: [web.ui]\n"),
        ("roles/datastore.yaml", "states: [db.server]\npillar: {password: s3cret}\n"),
        ("roles/worker.yaml", "states: [coins.worker]\nrequires: [datastore]\n"),
        ("roles/unused.yaml", "states: [web.ui]\n"),
        (
            "states/web/ui.yaml",
            "ui:\n  file.managed:\n    - name: /etc/ui.conf\n    - source: web/ui.conf\n    - template: tera\n",
        ),
        ("states/web/ui.conf", "listen = {{ grains.ipv4 | first }}\n"),
        ("states/web/unused.conf", "not named by any plan\n"),
        (
            "states/db/server.yaml",
            "db:\n  file.managed:\n    - name: /etc/db.conf\n    - contents: \"{{ pillar.password }}\"\n",
        ),
        (
            "states/coins/worker.yaml",
            "cfg:\n  file.managed:\n    - name: /etc/worker.toml\n    - source: coins/worker.toml\n    - template: tera\n",
        ),
        ("states/coins/worker.toml", "{% for p in peers.datastore %}db = \"{{ p.address }}\"\n{% endfor %}"),
    ];

    fn minions() -> Vec<MinionInput> {
        vec![
            input("web-1", json!({"ipv4": ["10.0.0.1"], "os_family": "Debian"})),
            input("db-1", json!({"ipv4": ["10.0.0.2"], "os_family": "Debian"})),
            input("db-2", json!({"ipv4": ["10.0.0.3"], "os_family": "RedHat"})),
            input("w1", json!({})),
            input("other", json!({})),
        ]
    }

    #[test]
    fn top_file_targets_give_roles_glob_and_compound_with_grains() {
        let applied = Applied::load(commit(CLOUD)).unwrap();
        let roles = |id: &str, grains: Value| applied.roles_for(id, &grains);
        assert_eq!(roles("web-1", json!({})), ["webui"]);
        assert_eq!(roles("db-1", json!({"os_family": "Debian"})), ["datastore"]);
        assert!(roles("db-2", json!({"os_family": "RedHat"})).is_empty(), "grain does not match");
        assert!(roles("db-3", json!({})).is_empty(), "no grains, no grain match");
        assert_eq!(roles("w1", json!({})), ["worker"]);
        assert!(roles("other", json!({})).is_empty());
        let both = Applied::load(commit(&[
            ("roles/top.yaml", "'*': [a]\n'x*': [b, a]\n"),
            ("roles/a.yaml", ""),
            ("roles/b.yaml", ""),
        ]))
        .unwrap();
        assert_eq!(both.roles_for("x1", &json!({})), ["a", "b"], "union of every matching entry");
    }

    #[test]
    fn a_fleet_slot_gets_its_role_from_the_fleet_file() {
        let fleet =
            "fleet: coins\nimage: coins\nversion: \"1.0\"\nroles:\n  worker: {replicas: 2}\n  webui: {}\n";
        let mut files: Vec<(&str, &str)> = CLOUD.to_vec();
        files.push(("fleet.yaml", fleet));
        let applied = Applied::load(commit(&files)).unwrap();
        let roles = |id: &str| applied.roles_for(id, &json!({}));
        assert_eq!(roles("coins-worker-1"), ["worker"]);
        assert_eq!(roles("coins-worker-2"), ["worker"]);
        assert_eq!(roles("coins-webui-1"), ["webui"]);
        for not_a_slot in
            ["coins-worker-0", "coins-worker-01", "coins-datastore-1", "other-worker-1", "coins-worker"]
        {
            assert!(roles(not_a_slot).is_empty(), "{not_a_slot}");
        }
        assert_eq!(roles("w1"), ["worker"], "roles/top.yaml still gives plain hosts theirs");
        assert_eq!(roles("web-1"), ["webui"]);

        // planned like any minion: its role's files, peers from the other members
        let mut ms = minions();
        ms.push(input("coins-worker-2", json!({"ipv4": ["10.0.0.9"]})));
        ms[1].serving = ["datastore".to_string()].into(); // db-1
        let planned = plan_all(&applied, &ms).unwrap();
        let slot = &planned[&MinionId::new("coins-worker-2").unwrap()];
        assert_eq!(slot.roles, ["worker"]);
        assert!(slot.files.contains_key("states/coins/worker.toml"), "{:?}", slot.files);
        assert_eq!(slot.peers["datastore"][0].id, "db-1");

        // no fleet.yaml, no fleet roles
        let applied = Applied::load(commit(CLOUD)).unwrap();
        assert!(applied.roles_for("coins-worker-1", &json!({})).is_empty());
    }

    #[test]
    fn a_bad_fleet_file_refuses_the_commit_with_its_lines() {
        let mut files: Vec<(&str, &str)> = CLOUD.to_vec();
        files.push(("fleet.yaml", "fleet: coins\nimage: coins\nversion: 1.0\nroles:\n  ghost: {}\n"));
        let err = Applied::load(commit(&files)).err().unwrap();
        let lines: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("fleet.yaml:3:10: version: expected a version string"), "{lines:?}");
        assert!(lines[1].starts_with("fleet.yaml:5:3: roles.ghost: no file roles/ghost.yaml"), "{lines:?}");
    }

    #[test]
    fn a_bad_target_is_a_diagnostic_on_its_line() {
        let err = Applied::load(commit(&[
            ("roles/top.yaml", "'web-*': [a]\n'G@os and (x': [a]\n"),
            ("roles/a.yaml", ""),
        ]))
        .err()
        .unwrap();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].to_string().starts_with("roles/top.yaml:2:2: bad target `G@os and (x`"), "{}", err[0]);
    }

    #[test]
    fn a_target_too_deep_or_too_long_is_a_diagnostic_not_a_crash() {
        let deep = format!("{}web-1{}", "(".repeat(1200), ")".repeat(1200));
        let nots = "not ".repeat(10_000) + "web-1";
        let ors = "x or ".repeat(20_000) + "web-1";
        // YAML takes keys this long only as explicit keys (`? key`)
        let top = format!("'web-*': [a]\n? '{deep}'\n: [a]\n? '{nots}'\n: [a]\n? {ors}\n: [a]\n");
        let err = Applied::load(commit(&[("roles/top.yaml", &top), ("roles/a.yaml", "")])).err().unwrap();
        let lines: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        let want = [
            ("roles/top.yaml:2:4: bad target `((((", "nests 1200 levels deep (at most 32"),
            ("roles/top.yaml:4:4: bad target `not not", "is 40005 bytes long (at most 4096)"),
            ("roles/top.yaml:6:3: bad target `x or x", "is 100005 bytes long (at most 4096)"),
        ];
        for (line, (start, reason)) in lines.iter().zip(want) {
            assert!(line.starts_with(start) && line.contains(reason), "{line:.300}");
            assert!(line.len() < 400, "the target is shortened in the message: {line:.300}");
        }
    }

    #[test]
    fn manifest_is_role_files_state_files_and_named_sources_only() {
        let applied = Applied::load(commit(CLOUD)).unwrap();
        let planned = plan_all(&applied, &minions()).unwrap();
        let paths = |id: &str| planned[&MinionId::new(id).unwrap()].files.keys().cloned().collect::<Vec<_>>();
        assert_eq!(paths("web-1"), ["roles/webui.yaml", "states/web/ui.conf", "states/web/ui.yaml"]);
        assert_eq!(paths("db-1"), ["roles/datastore.yaml", "states/db/server.yaml"]);
        assert_eq!(
            paths("w1"),
            ["roles/worker.yaml", "states/coins/worker.toml", "states/coins/worker.yaml"]
        );
        assert!(paths("db-2").is_empty() && paths("other").is_empty());
        let web = &planned[&MinionId::new("web-1").unwrap()];
        assert_eq!(web.files["states/web/ui.conf"], sha256_hex(b"listen = {{ grains.ipv4 | first }}\n"));
        assert!(web.view.is_empty(), "no peers in its files, no requires");
        let worker = &planned[&MinionId::new("w1").unwrap()];
        assert_eq!(worker.view.iter().collect::<Vec<_>>(), ["datastore"], "what it requires and reads");
        assert!(worker.peers["datastore"].is_empty(), "no member serves yet");
    }

    #[test]
    fn peers_at_apply_are_the_members_that_serve_and_keep_their_role() {
        let applied = Applied::load(commit(CLOUD)).unwrap();
        let mut ms = minions();
        ms[1].serving = ["datastore".to_string()].into(); // db-1 serves
        ms[2].serving = ["datastore".to_string()].into(); // db-2 did, but loses the role
        let planned = plan_all(&applied, &ms).unwrap();
        let worker = &planned[&MinionId::new("w1").unwrap()];
        let ids: Vec<&str> = worker.peers["datastore"].iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["db-1"]);
        assert_eq!(worker.peers["datastore"][0].address, "10.0.0.2");
    }

    #[test]
    fn broken_files_give_diagnostics_with_file_and_line() {
        let mut files: Vec<(&str, &str)> = CLOUD.to_vec();
        files.push(("states/db/server.yaml", "db:\n  file.managed:\n    - name: {{ pillar.nope }}\n"));
        let applied = Applied::load(commit(&files)).unwrap();
        let problems = plan_all(&applied, &minions()).unwrap_err();
        let (count, lines) = refusal_lines(problems.into_iter().map(|(d, m)| (d, Some(m))).collect());
        assert_eq!(count, 1);
        assert!(lines[0].starts_with("states/db/server.yaml:3:"), "{lines:?}");
        assert!(lines[0].ends_with("(rendering for db-1)"), "{lines:?}");

        let bad_yaml = Applied::load(commit(&[("roles/a.yaml", "states: [x\n")])).err().unwrap();
        assert!(bad_yaml[0].to_string().starts_with("roles/a.yaml:"), "{bad_yaml:?}");
        assert!(bad_yaml[0].line > 0, "{bad_yaml:?}");
    }

    #[test]
    fn a_runaway_loop_is_rendered_for_one_minion_only() {
        let mut files: Vec<(&str, &str)> = CLOUD.to_vec();
        files.push(("roles/top.yaml", "'*': [webui]\n"));
        files.push((
            "states/web/ui.conf",
            "{% for a in range(end=100000) %}{% for b in range(end=100000) %}{% endfor %}{% endfor %}",
        ));
        let applied = Applied::load(commit(&files)).unwrap();
        let problems = plan_all(&applied, &minions()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (diag, minion) = &problems[0];
        assert!(diag.over_budget(), "{diag}");
        assert!(
            diag.to_string().starts_with("states/web/ui.conf:1:36: rendering stopped in this loop"),
            "{diag}"
        );
        assert_eq!(minion.as_str(), "web-1");
    }

    #[test]
    fn included_state_files_are_in_the_manifest_and_their_peers_in_the_view() {
        let mut files: Vec<(&str, &str)> = CLOUD.to_vec();
        // web.ui is a folder state that includes a file reading the datastore's members,
        // once as written (found before rendering) and once through Tera (found by
        // rendering, at first without those members)
        files.retain(|(p, _)| *p != "states/web/ui.yaml");
        files.push(("states/web/ui/init.yaml", "include: [web.db]\n"));
        files.push(("states/web/db.yaml", "db-list:\n  file.managed:\n    - name: /etc/dbs\n    - contents: \"{{ peers.datastore | length }}\"\n"));
        let applied = Applied::load(commit(&files)).unwrap();
        let planned = plan_all(&applied, &minions()).unwrap();
        let web = &planned[&MinionId::new("web-1").unwrap()];
        assert_eq!(
            web.files.keys().collect::<Vec<_>>(),
            ["roles/webui.yaml", "states/web/db.yaml", "states/web/ui/init.yaml"]
        );
        assert_eq!(web.view.iter().collect::<Vec<_>>(), ["datastore"]);

        files.pop();
        files.pop();
        files.push(("states/web/ui/init.yaml", "include: [{{ \"web.db\" }}]\n"));
        files.push((
            "states/web/db.yaml",
            "db-list:\n  file.managed:\n    - name: /etc/dbs\n    - contents: \"{{ peers.datastore | length }}\"\n",
        ));
        let applied = Applied::load(commit(&files)).unwrap();
        let planned = plan_all(&applied, &minions()).unwrap();
        let web = &planned[&MinionId::new("web-1").unwrap()];
        assert!(web.files.contains_key("states/web/db.yaml"), "{:?}", web.files);
        assert_eq!(web.view.iter().collect::<Vec<_>>(), ["datastore"], "read by a file only rendering names");
    }

    #[test]
    fn a_source_reading_every_peer_widens_the_view_to_every_role() {
        let mut files: Vec<(&str, &str)> = CLOUD.to_vec();
        files.push(("states/coins/worker.toml", "{% for role, members in peers %}{{ role }}\n{% endfor %}"));
        let applied = Applied::load(commit(&files)).unwrap();
        let planned = plan_all(&applied, &minions()).unwrap();
        let worker = &planned[&MinionId::new("w1").unwrap()];
        assert_eq!(worker.view.iter().collect::<Vec<_>>(), ["datastore", "unused", "webui", "worker"]);
        let mut typo: Vec<(&str, &str)> = CLOUD.to_vec();
        typo.push(("states/coins/worker.toml", "{{ peers.datastor }}"));
        let applied = Applied::load(commit(&typo)).unwrap();
        let problems = plan_all(&applied, &minions()).unwrap_err();
        assert!(problems[0].0.to_string().starts_with("states/coins/worker.toml:1:"), "{problems:?}");
    }

    #[test]
    fn diffs_name_roles_and_files() {
        let old_files: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into()), ("c".into(), "3".into())].into();
        let new_files: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "9".into()), ("d".into(), "4".into())].into();
        let old_roles = vec!["x".to_string(), "y".to_string()];
        let new_roles = vec!["y".to_string(), "z".to_string()];
        let d = diff("m", Some((&old_roles, &old_files)), (&new_roles, &new_files)).unwrap();
        assert_eq!(
            d,
            MinionDiff {
                id: "m".into(),
                roles_added: vec!["z".into()],
                roles_removed: vec!["x".into()],
                files_changed: vec!["b".into()],
                files_added: vec!["d".into()],
                files_removed: vec!["c".into()],
            }
        );
        assert_eq!(diff("m", Some((&new_roles, &new_files)), (&new_roles, &new_files)), None);
        assert_eq!(diff("m", None, (&[], &BTreeMap::new())), None, "nothing to nothing");
    }
}
