//! `roles/nodegroups.yaml` → `NodegroupsFile`: a name → a compound target, for `N@name` and
//! `drover -N name`. Only the shape is checked here; the targets are parsed (and cycles
//! between groups found) by the caller, which has the matcher, at the positions kept here.
//!
//! ```yaml
//! webs: 'web-* or G@role:web'
//! debian_webs: 'N@webs and G@os:debian'
//! backends: [db-*, 'G@tier:backend']   # a list: its items joined with `or`, as Salt does
//! ```

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::diag::{Diagnostic, finish, guard};
use crate::locate::Text;
use crate::path::{NODEGROUPS_FILE, is_name};
use crate::state::describe;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupsFile {
    /// In file order.
    pub entries: Vec<NodegroupEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupEntry {
    pub name: String,
    /// A compound target, as written (a list's items joined with ` or `).
    pub target: String,
    /// Where the name is (1-based), for a diagnostic about its target.
    pub line: usize,
    pub col: usize,
}

impl NodegroupsFile {
    pub fn parse(text: &str) -> Result<NodegroupsFile, Vec<Diagnostic>> {
        let located = Text::plain(NODEGROUPS_FILE, text);
        let value = guard(NODEGROUPS_FILE, "parsing", || serde_yaml::from_str::<Value>(text))
            .map_err(|d| vec![d])?
            .map_err(|e| vec![located.yaml_error(&e)])?;
        let map = match value {
            Value::Null => return Ok(NodegroupsFile::default()),
            Value::Mapping(map) => map,
            other => {
                return Err(vec![located.start().diag(format!(
                    "expected a map of nodegroup name → compound target, such as `webs: 'web-* or G@role:web'`, got {}",
                    describe(&other)
                ))]);
            }
        };
        let mut file = NodegroupsFile::default();
        let mut diags = Vec::new();
        let mut cursor = 0;
        for (key, value) in map {
            let Value::String(name) = key else {
                diags.push(
                    located.start().diag(format!("expected a nodegroup name as key, got {}", describe(&key))),
                );
                continue;
            };
            let (line, col) = located.find_key(cursor, located.len(), &name).unwrap_or((cursor, 0));
            cursor = line;
            let at = located.at(line, col);
            if !is_name(&name) {
                diags.push(
                    at.diag(format!("bad nodegroup name `{name}`: expected letters, digits, `_` and `-`")),
                );
                continue;
            }
            let target = match value {
                Value::String(t) => t,
                Value::Sequence(items) => {
                    let texts: Option<Vec<String>> = items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    match texts {
                        Some(texts) if !texts.is_empty() => texts.join(" or "),
                        _ => {
                            diags.push(at.diag(format!(
                                "nodegroup `{name}`: expected a non-empty list of targets (strings)"
                            )));
                            continue;
                        }
                    }
                }
                other => {
                    diags.push(at.diag(format!(
                        "nodegroup `{name}`: expected a compound target (a string) or a list of them, got {}",
                        describe(&other)
                    )));
                    continue;
                }
            };
            if target.trim().is_empty() {
                diags.push(at.diag(format!("nodegroup `{name}`: empty target; expected a compound target")));
                continue;
            }
            file.entries.push(NodegroupEntry { name, target, line: line + 1, col: col + 1 });
        }
        finish(file, diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_their_target_and_position_and_bad_shapes_are_located() {
        let text = "webs: 'web-*'\n\nbackends: [db-*, 'G@tier:backend']\n";
        let file = NodegroupsFile::parse(text).unwrap();
        let got: Vec<(&str, &str, usize, usize)> =
            file.entries.iter().map(|e| (e.name.as_str(), e.target.as_str(), e.line, e.col)).collect();
        assert_eq!(got, [("webs", "web-*", 1, 1), ("backends", "db-* or G@tier:backend", 3, 1)]);
        assert_eq!(NodegroupsFile::parse("").unwrap(), NodegroupsFile::default());

        let cases = [
            ("webs: 3\n", "roles/nodegroups.yaml:1:1: nodegroup `webs`: expected a compound target"),
            ("ok: a\n'bad name': b\n", "roles/nodegroups.yaml:2:1: bad nodegroup name `bad name`"),
            ("e: ''\n", "nodegroup `e`: empty target"),
            ("l: [a, 1]\n", "expected a non-empty list of targets"),
            ("- a\n", "expected a map of nodegroup name"),
            ("a: [\n", "roles/nodegroups.yaml:"),
        ];
        for (text, want) in cases {
            let diags = NodegroupsFile::parse(text).unwrap_err();
            let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
            assert!(shown.iter().any(|d| d.contains(want)), "{text:?}: {shown:?} should contain {want:?}");
        }
    }
}
