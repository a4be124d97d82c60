//! Paths in the config repository: `Files`, state ids, role names, template sources.
//!
//! Every path here is relative to the repository root and uses `/`. Nothing is read from
//! disk: the caller hands in the contents.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The files of the config repository the caller has: path relative to the repository root
/// (`roles/worker.yaml`, `states/coins/worker.yaml`, `states/coins/worker.toml`) → contents.
pub type Files = BTreeMap<String, String>;

pub const STATES_DIR: &str = "states/";
pub const ROLES_DIR: &str = "roles/";
pub const TOP_FILE: &str = "roles/top.yaml";
/// Named compound targets (`N@name`); read and checked by the master, not a role.
pub const NODEGROUPS_FILE: &str = "roles/nodegroups.yaml";
/// Salt's prefix of a file of the state tree: `salt://a/b` is `states/a/b`.
const SALT_SCHEME: &str = "salt://";

/// The id of a state file: `coins.worker` is `states/coins/worker.yaml`, or, when there is
/// no such file, `states/coins/worker/init.yaml` (Salt's `init.sls`: a folder is a state).
///
/// Segments are `[A-Za-z0-9_-]+`, so an id can never name a path outside `states/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StateId(String);

impl StateId {
    pub fn parse(id: &str) -> Result<StateId, String> {
        if id.is_empty() {
            return Err("expected a state id such as `coins.worker`, got an empty string".into());
        }
        for segment in id.split('.') {
            if !is_name(segment) {
                return Err(format!(
                    "invalid state id `{id}`: expected dot-separated names made of letters, digits, \
                     `_` and `-`, such as `coins.worker`"
                ));
            }
        }
        Ok(StateId(id.to_string()))
    }

    /// `states/a/b.yaml` → `a.b`, `states/a/b/init.yaml` → `a.b` too. Paths outside `states/`, with `..`, `.`, empty segments
    /// or a segment that is not a name are refused.
    pub fn from_path(path: &str) -> Result<StateId, String> {
        let rest = path
            .strip_prefix(STATES_DIR)
            .and_then(|p| p.strip_suffix(".yaml"))
            .ok_or_else(|| format!("expected a state file `states/<a>/<b>.yaml`, got `{path}`"))?;
        if rest.split('/').any(|segment| !is_name(segment)) {
            return Err(format!(
                "`{path}` cannot be a state file: every folder and the file name must be made of \
                 letters, digits, `_` and `-`"
            ));
        }
        let rest = rest.strip_suffix("/init").unwrap_or(rest);
        StateId::parse(&rest.replace('/', "."))
    }

    /// The file that holds this state when it is not a folder: `a.b` → `states/a/b.yaml`.
    pub fn path(&self) -> String {
        format!("{STATES_DIR}{}.yaml", self.0.replace('.', "/"))
    }

    /// The file of this state as a folder: `a.b` → `states/a/b/init.yaml`.
    pub fn init_path(&self) -> String {
        format!("{STATES_DIR}{}/init.yaml", self.0.replace('.', "/"))
    }

    /// The file in `files` that holds this state, and its text: [`StateId::path`] first,
    /// else [`StateId::init_path`] (Salt's order).
    pub fn find<'f>(&self, files: &'f Files) -> Option<(String, &'f String)> {
        [self.path(), self.init_path()].into_iter().find_map(|path| {
            let text = files.get(&path)?;
            Some((path, text))
        })
    }

    /// "has no file states/a/b.yaml (nor states/a/b/init.yaml)", for a missing state file.
    pub fn missing(&self) -> String {
        format!("has no file {} (nor {})", self.path(), self.init_path())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StateId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StateId::parse(s)
    }
}

impl TryFrom<String> for StateId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        StateId::parse(&s)
    }
}

impl From<StateId> for String {
    fn from(id: StateId) -> String {
        id.0
    }
}

/// `[A-Za-z0-9_-]+`: a role name, or one segment of a state id.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The file of a role: `worker` → `roles/worker.yaml`.
pub fn role_path(name: &str) -> String {
    format!("{ROLES_DIR}{name}.yaml")
}

/// Resolve a template source written relative to `states/` (`coins/worker.toml`, or Salt's
/// `salt://coins/worker.toml`, which means the same) to its path relative to the repository
/// root (`states/coins/worker.toml`). `.` and `..` are resolved; an absolute path or one
/// that leaves `states/` is refused.
pub fn source_path(written: &str) -> Result<String, String> {
    let source = written.strip_prefix(SALT_SCHEME).unwrap_or(written);
    if source.contains("://") {
        return Err(format!(
            "source `{written}` is a URL; expected a path relative to states/ (or `salt://` and one)"
        ));
    }
    if source.starts_with('/') {
        return Err(format!("source `{written}` is absolute; expected a path relative to states/"));
    }
    if source.contains('\0') || source.contains('\\') {
        return Err(format!(
            "source `{written}` contains `\\0` or `\\`; expected a path relative to states/"
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("source `{written}` leaves states/; expected a path inside it"));
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("source `{written}` names no file; expected a path relative to states/"));
    }
    Ok(format!("{STATES_DIR}{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_ids_map_to_paths_and_back() {
        let id = StateId::parse("coins.worker").unwrap();
        assert_eq!(id.path(), "states/coins/worker.yaml");
        assert_eq!(StateId::from_path("states/coins/worker.yaml").unwrap(), id);
        assert_eq!(StateId::from_path("states/a/b/c.yaml").unwrap().as_str(), "a.b.c");
        assert_eq!(StateId::from_path("states/top.yaml").unwrap().as_str(), "top");
        assert_eq!(StateId::from_path("states/web/init.yaml").unwrap().as_str(), "web");
    }

    #[test]
    fn a_folder_with_init_is_a_state() {
        let web = StateId::parse("web").unwrap();
        let mut files = Files::new();
        files.insert("states/web/init.yaml".into(), "folder".into());
        assert_eq!(web.find(&files), Some(("states/web/init.yaml".to_string(), &"folder".to_string())));
        files.insert("states/web.yaml".into(), "file".into());
        assert_eq!(web.find(&files).unwrap().0, "states/web.yaml", "the file wins, as in Salt");
        assert_eq!(StateId::parse("db").unwrap().find(&files), None);
        assert_eq!(
            StateId::parse("db").unwrap().missing(),
            "has no file states/db.yaml (nor states/db/init.yaml)"
        );
    }

    #[test]
    fn state_ids_cannot_leave_states() {
        for bad in ["", ".", "a..b", "../x", "a/b", "/etc", "a.", ".a", "a b"] {
            assert!(StateId::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "states/../x.yaml",
            "states//x.yaml",
            "/states/x.yaml",
            "states/a.b/c.yaml",
            "states/x.yml",
            "roles/x.yaml",
            "states/./x.yaml",
        ] {
            assert!(StateId::from_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sources_stay_inside_states() {
        assert_eq!(source_path("coins/worker.toml").unwrap(), "states/coins/worker.toml");
        assert_eq!(source_path("./coins/../coins/w.toml").unwrap(), "states/coins/w.toml");
        assert_eq!(source_path("salt://coins/worker.toml").unwrap(), "states/coins/worker.toml");
        for bad in [
            "../roles/worker.yaml",
            "/etc/passwd",
            "a/../../x",
            "",
            ".",
            "a/..",
            "salt://../roles/x.yaml",
            "salt:///etc/passwd",
            "http://example.com/x",
            "salt://",
        ] {
            assert!(source_path(bad).is_err(), "{bad:?}");
        }
    }
}
