//! Mode and owner of a file or directory: what a state asks for, what differs, setting it.
//!
//! Owners are given by name (a number is taken as an id when no such name exists). Changing
//! the owner needs root; a name that does not exist fails the state.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Group, User};
use serde_json::{Map, Value, json};

use super::io_error;

/// What a state asks of a path's mode and owner; `None` leaves it as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Wanted {
    pub mode: Option<u32>,
    /// (name, uid)
    pub user: Option<(String, u32)>,
    /// (name, gid)
    pub group: Option<(String, u32)>,
}

impl Wanted {
    pub fn lookup(
        mode: Option<render::Mode>,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Wanted, String> {
        let user = match user {
            None => None,
            Some(name) => Some((name.to_string(), uid(name)?)),
        };
        let group = match group {
            None => None,
            Some(name) => Some((name.to_string(), gid(name)?)),
        };
        Ok(Wanted { mode: mode.map(|m| m.0), user, group })
    }

    pub fn uid(&self) -> Option<u32> {
        self.user.as_ref().map(|u| u.1)
    }

    pub fn gid(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.1)
    }

    /// Adds to `changes` what differs from `meta` (`None`: the path is new): `mode`,
    /// `user`, `group`.
    pub fn changes(&self, meta: Option<&Metadata>, changes: &mut Map<String, Value>) {
        if let Some(mode) = self.mode
            && meta.is_none_or(|m| m.mode() & 0o7777 != mode)
        {
            changes.insert("mode".into(), json!(render::Mode(mode).to_string()));
        }
        if let Some((name, uid)) = &self.user
            && meta.is_none_or(|m| m.uid() != *uid)
        {
            changes.insert("user".into(), json!(name));
        }
        if let Some((name, gid)) = &self.group
            && meta.is_none_or(|m| m.gid() != *gid)
        {
            changes.insert("group".into(), json!(name));
        }
    }

    /// Sets the owner, then the mode, of an existing `path` where they differ from `meta`
    /// (the owner first: a chown clears set-id bits).
    pub fn set(&self, path: &Path, meta: &Metadata) -> Result<(), String> {
        let uid = self.uid().filter(|&u| u != meta.uid());
        let gid = self.gid().filter(|&g| g != meta.gid());
        let chowned = uid.is_some() || gid.is_some();
        if chowned {
            std::os::unix::fs::chown(path, uid, gid)
                .map_err(|e| io_error("change the owner of", path, &e))?;
        }
        let mode = self.mode.unwrap_or(meta.mode() & 0o7777);
        if chowned || mode != meta.mode() & 0o7777 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_error("change the mode of", path, &e))?;
        }
        Ok(())
    }
}

fn uid(name: &str) -> Result<u32, String> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => name.parse().map_err(|_| format!("user `{name}` does not exist on this minion")),
        Err(e) => Err(format!("cannot look up user `{name}`: {e}")),
    }
}

fn gid(name: &str) -> Result<u32, String> {
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => name.parse().map_err(|_| format!("group `{name}` does not exist on this minion")),
        Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
    }
}
