//! Every role, the top file and the fleet file of one commit, cross-checked: what the
//! master validates before it pushes anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, finish};
use crate::fleet::{FLEET_FILE, FleetFile};
use crate::graph;
use crate::locate::Text;
use crate::nodegroups::NodegroupsFile;
use crate::path::{Files, NODEGROUPS_FILE, ROLES_DIR, TOP_FILE, role_path};
use crate::plan::{Plan, check_sources, plan};
use crate::role::{self, Role, entry_loc};
use crate::template::{Context, Minion};
use crate::top::TopFile;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Repo {
    /// Role name → role, for every `roles/<name>.yaml`.
    pub roles: BTreeMap<String, Role>,
    /// `roles/top.yaml`, empty when there is none.
    pub top: TopFile,
    /// `fleet.yaml`, if the commit has one (no file, no fleet).
    pub fleet: Option<FleetFile>,
    /// `roles/nodegroups.yaml`, empty when there is none; its targets are the master's to
    /// check.
    #[serde(default)]
    pub nodegroups: NodegroupsFile,
}

impl Repo {
    /// Parse every role file, the top file and the fleet file in `files`, and check what ties
    /// them together: each listed state has a file, each `requires` names a role and forms no
    /// cycle, each role in the top file and the fleet file exists. State files are rendered
    /// per minion, by `Repo::plan`.
    pub fn load(files: &Files) -> Result<Repo, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut repo = Repo::default();
        let role_files: Vec<(&String, &String)> = files
            .iter()
            .filter(|(path, _)| {
                path.starts_with(ROLES_DIR) && path.as_str() != TOP_FILE && path.as_str() != NODEGROUPS_FILE
            })
            .collect();
        let mut texts = BTreeMap::new();
        for (path, text) in role_files {
            let rest = &path[ROLES_DIR.len()..];
            if rest.ends_with(".yml") {
                diags.push(Diagnostic::whole_file(path, "role files end in `.yaml`; rename this file"));
                continue;
            }
            let Some(name) = rest.strip_suffix(".yaml") else { continue }; // READMEs and such
            if name.contains('/') {
                diags.push(Diagnostic::whole_file(
                    path,
                    "role files live directly in roles/, not in a folder",
                ));
                continue;
            }
            match Role::parse(name, text) {
                Ok(role) => {
                    texts.insert(name.to_string(), text.as_str());
                    repo.roles.insert(name.to_string(), role);
                }
                Err(found) => diags.extend(found),
            }
        }

        // A role whose file is broken still exists: no second diagnostic for naming it.
        let exists = |name: &str| role_path(name) != NODEGROUPS_FILE && files.contains_key(&role_path(name));
        for (name, role) in &repo.roles {
            let file = role_path(name);
            let text = Text::plain(&file, texts[name]);
            for state in &role.states {
                if state.find(files).is_none() {
                    diags.push(
                        entry_loc(&text, "states", state.as_str(), 1)
                            .diag(format!("state `{state}` {}; expected that file", state.missing())),
                    );
                }
            }
            for required in &role.requires {
                if !exists(required) {
                    diags.push(entry_loc(&text, "requires", required, 1).diag(format!(
                        "role `{name}` requires `{required}`, which is not a role; expected a file roles/{required}.yaml"
                    )));
                }
            }
        }
        let roles: Vec<Role> = repo.roles.values().cloned().collect();
        if let Err(cycles) = graph::order(roles.len(), &role::requires_edges(&roles)) {
            for cycle in cycles {
                let names: Vec<&str> =
                    cycle.iter().chain(&cycle[..1]).map(|&i| roles[i].name.as_str()).collect();
                let first = &roles[cycle[0]].name;
                let file = role_path(first);
                let text = Text::plain(&file, texts[first.as_str()]);
                let next = &roles[cycle[1 % cycle.len()]].name;
                diags.push(entry_loc(&text, "requires", next, 1).diag(format!(
                    "roles require each other in a cycle: {}; expected no cycle",
                    names.join(" -> ")
                )));
            }
        }

        if let Some(text) = files.get(TOP_FILE) {
            match TopFile::parse(text, exists) {
                Ok(top) => repo.top = top,
                Err(found) => diags.extend(found),
            }
        }
        if let Some(text) = files.get(NODEGROUPS_FILE) {
            match NodegroupsFile::parse(text) {
                Ok(groups) => repo.nodegroups = groups,
                Err(found) => diags.extend(found),
            }
        }
        if let Some(text) = files.get(FLEET_FILE) {
            match FleetFile::parse(text, exists) {
                Ok(fleet) => repo.fleet = Some(fleet),
                Err(found) => diags.extend(found),
            }
        }
        if files.contains_key("fleet.yml") {
            diags.push(Diagnostic::whole_file(
                "fleet.yml",
                "the fleet file is `fleet.yaml`; rename this file",
            ));
        }
        finish(repo, diags)
    }

    /// The roles named, in the order given; an unknown name is a diagnostic.
    pub fn roles_named<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<Role>, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut roles = Vec::new();
        for name in names.iter().map(AsRef::as_ref) {
            match self.roles.get(name) {
                Some(role) => roles.push(role.clone()),
                None => diags.push(Diagnostic::whole_file(role_path(name), format!("no role `{name}`"))),
            }
        }
        finish(roles, diags)
    }

    /// Everything the master checks for one minion before pushing: its roles exist, its
    /// state files render and plan, its template sources exist and render.
    pub fn plan<S: AsRef<str>>(
        &self,
        files: &Files,
        minion: &Minion,
        role_names: &[S],
    ) -> Result<Plan, Vec<Diagnostic>> {
        let roles = self.roles_named(role_names)?;
        let ctx = Context::new(minion, &roles);
        let plan = plan(files, &roles, &ctx)?;
        check_sources(&plan, files, &ctx)?;
        Ok(plan)
    }
}
