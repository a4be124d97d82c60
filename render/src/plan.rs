//! The plan of one minion: every resource of its roles' state files, validated, in apply
//! order, with the requisite edges between them.
//!
//! Order: topological over requisites (a prerequisite first); ties go by role order (a role
//! after the roles it `requires`, otherwise as given), then the order of the role's
//! `states`, then declaration order in the file; a file's `include`s come before it. A
//! state file listed by two roles (or included twice) is applied once, where it first
//! appears. Every `extend:` is merged into the state it names before arguments are read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, finish};
use crate::function::{Function, TemplateEngine};
use crate::graph;
use crate::locate::{Loc, Text};
use crate::path::{Files, StateId, role_path};
use crate::role::{self, Role};
use crate::state::{self, Declared, Extension, Raw};
use crate::template::{self, Context};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequisiteKind {
    /// Apply after the prerequisite; skip if it failed.
    Require,
    /// `require`, and react (restart a daemon, rerun) when the prerequisite changed.
    Watch,
    /// Apply only when the prerequisite changed.
    Onchanges,
    /// Apply only when the prerequisite failed (its failure is then handled, not the run's).
    Onfail,
}

impl RequisiteKind {
    pub const ALL: [RequisiteKind; 4] =
        [RequisiteKind::Require, RequisiteKind::Watch, RequisiteKind::Onchanges, RequisiteKind::Onfail];

    pub fn as_str(self) -> &'static str {
        match self {
            RequisiteKind::Require => "require",
            RequisiteKind::Watch => "watch",
            RequisiteKind::Onchanges => "onchanges",
            RequisiteKind::Onfail => "onfail",
        }
    }
}

impl fmt::Display for RequisiteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource as a requisite names it: module and state id (`file: worker-config`).
/// Unique within a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub module: String,
    pub id: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.module, self.id)
    }
}

/// One state function under one state id, ready to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The state id (`worker-config`).
    pub id: String,
    /// The state file it comes from (`coins.worker`, i.e. `states/coins/worker.yaml`).
    pub state: StateId,
    /// The first of the minion's roles that lists that state file.
    pub role: String,
    pub function: Function,
}

impl Resource {
    pub fn reference(&self) -> ResourceRef {
        ResourceRef { module: self.function.module().to_string(), id: self.id.clone() }
    }
}

/// `dependent` has a `kind` requisite on `prerequisite`, which is applied first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Edge {
    pub dependent: ResourceRef,
    pub prerequisite: ResourceRef,
    pub kind: RequisiteKind,
}

/// What one minion applies, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub resources: Vec<Resource>,
    /// Sorted by the dependent's position, then the prerequisite's.
    pub edges: Vec<Edge>,
}

impl Plan {
    pub fn index_of(&self, reference: &ResourceRef) -> Option<usize> {
        self.resources.iter().position(|r| r.function.module() == reference.module && r.id == reference.id)
    }

    /// The prerequisites of resource `i`, as (kind, index); each comes before `i`.
    pub fn prerequisites(&self, i: usize) -> Vec<(RequisiteKind, usize)> {
        let Some(resource) = self.resources.get(i) else { return Vec::new() };
        let me = resource.reference();
        self.edges
            .iter()
            .filter(|e| e.dependent == me)
            .filter_map(|e| self.index_of(&e.prerequisite).map(|j| (e.kind, j)))
            .collect()
    }

    /// The `source` files (paths from the repository root) a minion must fetch to apply.
    pub fn sources(&self) -> BTreeSet<&str> {
        self.resources
            .iter()
            .filter_map(|r| match &r.function {
                Function::FileManaged(f) => f.source.as_deref(),
                _ => None,
            })
            .collect()
    }

    /// The names of the daemons this plan keeps running; a minion stops any other.
    pub fn daemons(&self) -> BTreeSet<&str> {
        self.resources
            .iter()
            .filter_map(|r| match &r.function {
                Function::DaemonRunning(d) => Some(d.name.as_str()),
                _ => None,
            })
            .collect()
    }
}

struct Node {
    declared: Declared,
    state: StateId,
    role: String,
}

impl Node {
    fn reference(&self) -> ResourceRef {
        ResourceRef { module: self.declared.function.module().to_string(), id: self.declared.id.clone() }
    }
}

/// Render every state file of `roles` against `ctx` and plan them. `files` needs the state
/// files (`states/…/*.yaml`), not the sources of `file.managed` (see `check_sources`).
pub fn plan(files: &Files, roles: &[Role], ctx: &Context) -> Result<Plan, Vec<Diagnostic>> {
    plan_with_files(files, roles, ctx).map(|(plan, _)| plan)
}

/// [`plan()`], and the state files it read (paths from the repository root, the included
/// ones too) in the order read: what a minion must be sent besides the sources.
pub fn plan_with_files(
    files: &Files,
    roles: &[Role],
    ctx: &Context,
) -> Result<(Plan, Vec<String>), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    if let Err(cycles) = graph::order(roles.len(), &role::requires_edges(roles)) {
        for cycle in cycles {
            let names: Vec<&str> = cycle.iter().chain(&cycle[..1]).map(|&i| roles[i].name.as_str()).collect();
            diags.push(Diagnostic::whole_file(
                role_path(&roles[cycle[0]].name),
                format!("roles require each other in a cycle: {}; expected no cycle", names.join(" -> ")),
            ));
        }
    }

    let mut reader = Reader {
        files,
        ctx,
        applied: Vec::new(),
        paths: Vec::new(),
        raws: Vec::new(),
        extensions: Vec::new(),
        diags,
    };
    for role in role::plan_order(roles) {
        for state in &role.states {
            let missing = || {
                Diagnostic::whole_file(
                    role_path(&role.name),
                    format!("state `{state}` {}; expected that file", state.missing()),
                )
            };
            reader.read(state, &role.name, &mut Vec::new(), &missing);
        }
    }
    let Reader { applied, paths, mut raws, extensions, mut diags, .. } = reader;
    // a file that failed declares nothing: every extension of its states would look unknown
    let complete = diags.is_empty();
    extend(&mut raws, extensions, complete, &mut diags);
    let mut nodes: Vec<Node> = Vec::new();
    for (raw, state, role) in raws {
        if let Some(declared) = raw.read(&mut diags) {
            nodes.push(Node { declared, state, role });
        }
    }
    // in the order the files were read, each file's problems by line
    let rank = |file: &str| paths.iter().position(|p| p == file).unwrap_or(usize::MAX);
    diags.sort_by_key(|d| (rank(&d.file), d.line, d.col));

    check_duplicate_ids(&nodes, &mut diags);
    check_conflicts(&nodes, &mut diags);
    if !diags.is_empty() {
        // a state file that failed has no resources: its requisites would all look missing
        return Err(diags);
    }
    let edges = resolve_requisites(&nodes, &applied, &mut diags);
    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        return Err(diags);
    }

    let pairs: Vec<(usize, usize)> = edges.iter().map(|&(before, after, _)| (before, after)).collect();
    let order = match graph::order(nodes.len(), &pairs) {
        Ok(order) => order,
        Err(cycles) => {
            return Err(cycles
                .into_iter()
                .map(|cycle| {
                    let names: Vec<String> = cycle
                        .iter()
                        .chain(&cycle[..1])
                        .map(|&i| format!("`{}`", nodes[i].reference()))
                        .collect();
                    nodes[cycle[0]].declared.at.diag(format!(
                        "requisite cycle: {} (each requires the next); expected no cycle",
                        names.join(" -> ")
                    ))
                })
                .collect());
        }
    };

    let mut edges: Vec<(usize, usize, RequisiteKind)> = edges;
    let mut position = vec![0; nodes.len()];
    for (at, &node) in order.iter().enumerate() {
        position[node] = at;
    }
    edges.sort_by_key(|&(before, after, kind)| (position[after], position[before], kind));
    edges.dedup();
    let edges = edges
        .into_iter()
        .map(|(before, after, kind)| Edge {
            dependent: nodes[after].reference(),
            prerequisite: nodes[before].reference(),
            kind,
        })
        .collect();
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let resources = order
        .into_iter()
        .filter_map(|i| slots[i].take())
        .map(|node| Resource {
            id: node.declared.id,
            state: node.state,
            role: node.role,
            function: node.declared.function,
        })
        .collect();
    Ok((Plan { resources, edges }, paths))
}

/// Reads state files and the files they include, each once, an included file before the
/// file that includes it.
struct Reader<'f> {
    files: &'f Files,
    ctx: &'f Context,
    /// The state files read or being read.
    applied: Vec<StateId>,
    /// Their paths, in the same order.
    paths: Vec<String>,
    /// Every function declared, with its state file and role, in apply order (ties).
    raws: Vec<(Raw, StateId, String)>,
    extensions: Vec<Extension>,
    diags: Vec<Diagnostic>,
}

impl Reader<'_> {
    /// Read `state` for `role`, unless it was read already. `including` holds the files
    /// whose `include` led here (to tell a cycle); `missing` is the problem when `state`
    /// has no file.
    fn read(
        &mut self,
        state: &StateId,
        role: &str,
        including: &mut Vec<StateId>,
        missing: &dyn Fn() -> Diagnostic,
    ) {
        if self.applied.contains(state) {
            return;
        }
        let Some((path, template)) = state.find(self.files) else {
            self.diags.push(missing());
            return;
        };
        self.applied.push(state.clone());
        self.paths.push(path.clone());
        let parsed = template::render(&path, template, self.ctx)
            .and_then(|rendered| state::declarations(&path, template, &rendered));
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(found) => {
                self.diags.extend(found);
                return;
            }
        };
        including.push(state.clone());
        for include in parsed.includes {
            if let Some(at) = including.iter().position(|s| s == &include.state) {
                let names: Vec<String> =
                    including[at..].iter().chain([&include.state]).map(|s| format!("`{s}`")).collect();
                self.diags.push(include.at.diag(format!(
                    "include cycle: {}; expected state files that do not include each other",
                    names.join(" -> ")
                )));
                continue;
            }
            let missing = || {
                include.at.diag(format!(
                    "`include`: state `{}` {}; expected that file",
                    include.state,
                    include.state.missing()
                ))
            };
            self.read(&include.state, role, including, &missing);
        }
        including.pop();
        self.raws.extend(parsed.raws.into_iter().map(|raw| (raw, state.clone(), role.to_string())));
        self.extensions.extend(parsed.extensions);
    }
}

/// Merge each `extend:` into the state it names (Salt's): an id and module that no state
/// of the plan has (reported when every file was `complete`), or another function of that
/// module, is a problem at the extension.
fn extend(
    raws: &mut [(Raw, StateId, String)],
    extensions: Vec<Extension>,
    complete: bool,
    diags: &mut Vec<Diagnostic>,
) {
    for extension in extensions {
        let id = extension.id.as_str();
        let module = extension.module.as_str();
        let with_id: Vec<&'static str> =
            raws.iter().filter(|(raw, ..)| raw.id == id).map(|(raw, ..)| raw.spec.name).collect();
        let Some((raw, ..)) =
            raws.iter_mut().find(|(raw, ..)| raw.id == id && raw.spec.name.split('.').next() == Some(module))
        else {
            let message = if with_id.is_empty() {
                format!(
                    "`extend`: no state applied to this minion has the id `{id}`; expected the id of a \
                     state in this file or one it includes"
                )
            } else {
                format!(
                    "`extend`: state `{id}` has no `{module}` function; expected one of its functions: {}",
                    with_id.join(", ")
                )
            };
            let at = if with_id.is_empty() { &extension.at } else { &extension.function_at };
            if complete {
                diags.push(at.diag(message));
            }
            continue;
        };
        if let Some(function) = &extension.function
            && raw.spec.name != format!("{module}.{function}")
        {
            diags.push(extension.function_at.diag(format!(
                "`extend`: state `{id}` is `{}`, not `{module}.{function}`; expected its function or \
                 the module alone (`{module}:`)",
                raw.spec.name
            )));
            continue;
        }
        raw.extend(extension);
    }
}

fn check_duplicate_ids(nodes: &[Node], diags: &mut Vec<Diagnostic>) {
    let mut first: HashMap<&str, &Node> = HashMap::new();
    let mut reported: BTreeSet<(&str, &StateId)> = BTreeSet::new();
    for node in nodes {
        let id = node.declared.id.as_str();
        match first.get(id) {
            None => {
                first.insert(id, node);
            }
            Some(other) if other.state != node.state && reported.insert((id, &node.state)) => {
                diags.push(node.declared.at.diag(format!(
                    "state id `{id}` is also declared in {}; expected ids unique across the state \
                     files of a minion",
                    other.declared.at.short()
                )));
            }
            Some(_) => {}
        }
    }
}

/// The requisite edges as (prerequisite, dependent, kind) node indices.
fn resolve_requisites(
    nodes: &[Node],
    applied: &[StateId],
    diags: &mut Vec<Diagnostic>,
) -> Vec<(usize, usize, RequisiteKind)> {
    let mut by_ref: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        by_ref.entry((node.declared.function.module(), node.declared.id.as_str())).or_insert(i);
    }
    let mut edges = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for written in &node.declared.requisites {
            let (kind, target) = (written.kind, written.target.as_str());
            let key = written.key();
            let found: Vec<usize> = match written.module.as_deref() {
                Some("sls") => {
                    let state = StateId::parse(target).ok();
                    if !state.as_ref().is_some_and(|s| applied.contains(s)) {
                        diags.push(written.at.diag(format!(
                            "state `{}`: `{key}` names state file `{target}`, which is not applied to this \
                             minion; expected one of its roles' states",
                            node.declared.id
                        )));
                        continue;
                    }
                    (0..nodes.len()).filter(|&j| Some(&nodes[j].state) == state.as_ref()).collect()
                }
                // by id, else by `name` (Salt matches either)
                Some(module) => match by_ref.get(&(module, target)) {
                    Some(&j) => vec![j],
                    None => (0..nodes.len())
                        .filter(|&j| {
                            let f = &nodes[j].declared.function;
                            f.module() == module && f.name() == target
                        })
                        .collect(),
                },
                None => (0..nodes.len()).filter(|&j| nodes[j].declared.id == target).collect(),
            };
            if found.is_empty() {
                let written_as = match &written.module {
                    Some(module) => format!("{module}: {target}"),
                    None => target.to_string(),
                };
                let hint = nodes
                    .iter()
                    .find(|n| n.declared.id == target)
                    .map(|n| format!(" (there is `{}`)", n.reference()))
                    .unwrap_or_default();
                diags.push(written.at.diag(format!(
                    "state `{}`: `{key}` names `{written_as}`, which no state applied to this minion \
                     declares{hint}; expected a state id of one of its roles' state files",
                    node.declared.id
                )));
            }
            // `require_in: [b]` on `a` is `require: [a]` on `b`
            edges.extend(
                found.into_iter().map(|j| if written.incoming { (i, j, kind) } else { (j, i, kind) }),
            );
        }
    }
    edges
}

/// Two resources that would fight: the same daemon name, the same file path.
fn check_conflicts(nodes: &[Node], diags: &mut Vec<Diagnostic>) {
    let mut daemons: BTreeMap<&str, &Node> = BTreeMap::new();
    let mut paths: BTreeMap<&str, &Node> = BTreeMap::new();
    for node in nodes {
        let function = &node.declared.function;
        let (seen, what) = match function {
            Function::DaemonRunning(_) | Function::DaemonDead(_) => (&mut daemons, "daemon"),
            Function::FileManaged(_)
            | Function::FileDirectory(_)
            | Function::FileAbsent(_)
            | Function::FileSymlink(_) => (&mut paths, "path"),
            Function::CmdRun(_)
            | Function::PkgInstalled(_)
            | Function::PkgRemoved(_)
            | Function::ServiceRunning(_)
            | Function::ServiceDead(_)
            | Function::UserPresent(_)
            | Function::GroupPresent(_) => continue,
        };
        if let Some(other) = seen.insert(function.name(), node) {
            diags.push(node.declared.at.diag(format!(
                "{what} `{}` is claimed by both `{}` ({}) and `{}`; expected one state per {what}",
                function.name(),
                other.reference(),
                other.declared.at.short(),
                node.reference()
            )));
        }
    }
}

/// Check the `source` of every `file.managed` in `plan`: it must be in `files`, and a Tera
/// template must render against `ctx`. The master runs this before pushing; a minion renders
/// each source it fetched with `render_source` instead.
pub fn check_sources(plan: &Plan, files: &Files, ctx: &Context) -> Result<(), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut rendered: BTreeSet<&str> = BTreeSet::new();
    for resource in &plan.resources {
        let Function::FileManaged(managed) = &resource.function else { continue };
        let Some(source) = managed.source.as_deref() else { continue };
        match files.get(source) {
            None => diags.push(source_loc(files, resource).diag(format!(
                "state `{}`: source {source} does not exist; expected a file under states/",
                resource.id
            ))),
            Some(contents) if managed.template == Some(TemplateEngine::Tera) && rendered.insert(source) => {
                if let Err(found) = template::render(source, contents, ctx) {
                    diags.extend(found);
                }
            }
            Some(_) => {}
        }
    }
    finish((), diags)
}

/// The `source:` line of a resource, found in its state file's template.
fn source_loc(files: &Files, resource: &Resource) -> Loc {
    let Some((path, template)) = resource.state.find(files) else {
        return Loc::whole_file(&resource.state.path());
    };
    let text = Text::plain(&path, template);
    let Some(start) = text.top_key(&resource.id) else { return Loc::whole_file(&path) };
    match text.find_key(start, text.block_end(start), "source") {
        Some((line, col)) => text.at(line, col),
        None => text.at(start, 0),
    }
}
