//! `roles/<name>.yaml` → `Role`.
//!
//! ```yaml
//! description: mines coins
//! states: [coins.worker]
//! pillar: {hasher_url: "http://hasher:8002"}
//! requires: [datastore]
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diag::{Diagnostic, finish, guard};
use crate::graph;
use crate::locate::{Loc, Text};
use crate::path::{StateId, is_name, role_path};

/// A role: the state files a minion with it applies, and the pillar they see.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// From the file name: `roles/worker.yaml` is `worker`.
    pub name: String,
    pub description: String,
    /// Applied in this order (ties of the plan's order).
    pub states: Vec<StateId>,
    pub pillar: Map<String, Value>,
    /// Roles that must have a converged member before this role's daemons start.
    pub requires: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    description: Option<String>,
    states: Option<Vec<StateId>>,
    pillar: Option<Map<String, Value>>,
    requires: Option<Vec<String>>,
}

impl Role {
    /// Parse the text of `roles/<name>.yaml`. Checks what the file alone can tell; whether
    /// its states have files and its `requires` name roles is `Repo::load`'s job.
    pub fn parse(name: &str, text: &str) -> Result<Role, Vec<Diagnostic>> {
        let file = role_path(name);
        if !is_name(name) || name == "top" {
            return Err(vec![Diagnostic::whole_file(
                &file,
                format!(
                    "`{name}` cannot be a role name: expected letters, digits, `_` and `-` (and not `top`)"
                ),
            )]);
        }
        let located = Text::plain(&file, text);
        let parsed = guard(&file, "parsing", || serde_yaml::from_str::<Option<RoleFile>>(text))
            .map_err(|d| vec![d])?
            .map_err(|e| vec![located.yaml_error(&e)])?;
        let parsed =
            parsed.unwrap_or(RoleFile { description: None, states: None, pillar: None, requires: None });
        let role = Role {
            name: name.to_string(),
            description: parsed.description.unwrap_or_default(),
            states: parsed.states.unwrap_or_default(),
            pillar: parsed.pillar.unwrap_or_default(),
            requires: parsed.requires.unwrap_or_default(),
        };

        let mut diags = Vec::new();
        for (i, state) in role.states.iter().enumerate() {
            if role.states[..i].contains(state) {
                diags.push(
                    entry_loc(&located, "states", state.as_str(), 2)
                        .diag(format!("state `{state}` is listed twice; expected each state once")),
                );
            }
        }
        for (i, required) in role.requires.iter().enumerate() {
            let loc = || entry_loc(&located, "requires", required, 1);
            if !is_name(required) {
                diags.push(
                    loc().diag(format!("`{required}` cannot be a role name; expected a role to require")),
                );
            } else if required == name {
                diags.push(loc().diag(format!("role `{name}` requires itself; expected other roles")));
            } else if role.requires[..i].contains(required) {
                diags.push(
                    loc().diag(format!("role `{required}` is required twice; expected each role once")),
                );
            }
        }
        finish(role, diags)
    }
}

/// Where `value` appears in the list under top-level `key` (its `nth` occurrence, so a
/// duplicate points at the second one).
pub(crate) fn entry_loc(text: &Text, key: &str, value: &str, nth: usize) -> Loc {
    let Some(start) = text.top_key(key) else { return text.start() };
    let end = text.block_end(start);
    let mut from = start;
    let mut found = None;
    for _ in 0..nth.max(1) {
        match text.find_text(from, end, value) {
            Some((line, col)) => {
                found = Some((line, col));
                from = line + 1;
            }
            None => break,
        }
    }
    match found {
        Some((line, col)) => text.at(line, col),
        None => text.at(start, 0),
    }
}

/// The roles in plan order: a role after the roles it `requires` (among these), otherwise
/// as given. Roles that require each other in a cycle keep the order given.
pub(crate) fn plan_order(roles: &[Role]) -> Vec<&Role> {
    match graph::order(roles.len(), &requires_edges(roles)) {
        Ok(order) => order.into_iter().map(|i| &roles[i]).collect(),
        Err(_) => roles.iter().collect(),
    }
}

/// `(required, requiring)` index pairs among `roles`.
pub(crate) fn requires_edges(roles: &[Role]) -> Vec<(usize, usize)> {
    let mut edges = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        for required in &role.requires {
            if let Some(j) = roles.iter().position(|r| &r.name == required) {
                edges.push((j, i));
            }
        }
    }
    edges
}
