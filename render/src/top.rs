//! `roles/top.yaml` → `TopFile`: target expression → role names, for minions that are not
//! fleet containers. Matching a target against a minion is the caller's (the master has the
//! matcher); a minion gets the union of the roles of every entry it matches.
//!
//! ```yaml
//! 'web-*': [webui]
//! 'G@os_family:debian and db-*': [datastore]
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::diag::{Diagnostic, finish, guard};
use crate::locate::Text;
use crate::path::TOP_FILE;
use crate::state::describe;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopFile {
    /// In file order.
    pub entries: Vec<TopEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    /// A target expression, as written (glob or compound).
    pub target: String,
    pub roles: Vec<String>,
}

impl TopFile {
    /// Parse the text of `roles/top.yaml`; `is_role` tells which role names exist.
    pub fn parse(text: &str, is_role: impl Fn(&str) -> bool) -> Result<TopFile, Vec<Diagnostic>> {
        let located = Text::plain(TOP_FILE, text);
        let value = guard(TOP_FILE, "parsing", || serde_yaml::from_str::<Value>(text))
            .map_err(|d| vec![d])?
            .map_err(|e| vec![located.yaml_error(&e)])?;
        let map = match value {
            Value::Null => return Ok(TopFile::default()),
            Value::Mapping(map) => map,
            other => {
                return Err(vec![located.start().diag(format!(
                    "expected a map of target → list of role names, such as `'web-*': [webui]`, got {}",
                    describe(&other)
                ))]);
            }
        };

        let mut top = TopFile::default();
        let mut diags = Vec::new();
        let mut cursor = 0;
        for (key, value) in map {
            let Value::String(target) = key else {
                diags.push(
                    located
                        .start()
                        .diag(format!("expected a target string as key, got {}; quote it", describe(&key))),
                );
                continue;
            };
            let (line, col) = located.find_key(cursor, located.len(), &target).unwrap_or((cursor, 0));
            cursor = line;
            let end = located.block_end(line);
            let at = located.at(line, col);
            if target.trim().is_empty() {
                diags.push(at.diag("empty target; expected a glob or compound target"));
                continue;
            }
            let names = match value {
                Value::Sequence(items) => items,
                other => {
                    diags.push(at.diag(format!(
                        "target `{target}`: expected a list of role names, such as [webui], got {}",
                        describe(&other)
                    )));
                    continue;
                }
            };
            let mut roles = Vec::new();
            for item in names {
                let Value::String(name) = item else {
                    diags.push(
                        at.diag(format!("target `{target}`: expected role names, got {}", describe(&item))),
                    );
                    continue;
                };
                if !is_role(&name) {
                    let (l, c) = located.find_text(line, end, &name).unwrap_or((line, col));
                    diags.push(located.at(l, c).diag(format!(
                        "target `{target}`: unknown role `{name}`; expected a file roles/{name}.yaml"
                    )));
                } else if !roles.contains(&name) {
                    roles.push(name);
                }
            }
            top.entries.push(TopEntry { target, roles });
        }
        finish(top, diags)
    }

    /// The union of the roles of every entry whose target `matches`.
    pub fn roles_for(&self, matches: impl Fn(&str) -> bool) -> BTreeSet<String> {
        self.entries.iter().filter(|e| matches(&e.target)).flat_map(|e| e.roles.iter().cloned()).collect()
    }
}
