//! `file.directory`: a directory with the given mode and owner; `makedirs` creates its
//! parents. A symlink to a directory counts as the directory (and is not replaced).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use render::FileDirectory;
use serde_json::{Map, json};

use super::attrs::Wanted;
use super::{check_parent, io_error, kind, lstat};
use crate::state::Outcome;

const NEW_DIR_MODE: u32 = 0o755;

pub(super) fn apply(f: &FileDirectory, test: bool) -> Outcome {
    directory(f, test).unwrap_or_else(Outcome::fail)
}

fn directory(f: &FileDirectory, test: bool) -> Result<Outcome, String> {
    let wanted = Wanted::lookup(f.mode, f.user.as_deref(), f.group.as_deref())?;
    let path = Path::new(&f.name);
    let meta = match lstat(path)? {
        Some(link) if link.file_type().is_symlink() => match std::fs::metadata(path) {
            Ok(target) if target.is_dir() => Some(target),
            _ => return Err(format!("{} is a symlink, not to a directory; expected a directory", f.name)),
        },
        Some(meta) if meta.is_dir() => Some(meta),
        Some(meta) => return Err(format!("{} is {}; expected a directory", f.name, kind(&meta))),
        None => {
            check_parent(path, Some(f.makedirs))?;
            None
        }
    };
    let mut changes = Map::new();
    if meta.is_none() {
        changes.insert("created".into(), json!(true));
    }
    wanted.changes(meta.as_ref(), &mut changes);
    if changes.is_empty() {
        return Ok(Outcome::ok(format!("directory {} is in the correct state", f.name)));
    }
    let done = if meta.is_none() { "created" } else { "updated" };
    if test {
        return Ok(Outcome::changed(true, format!("directory {} would be {done}", f.name), changes));
    }
    let meta = match meta {
        Some(meta) => meta,
        None => {
            std::fs::DirBuilder::new()
                .recursive(f.makedirs)
                .mode(NEW_DIR_MODE)
                .create(path)
                .map_err(|e| io_error("create directory", path, &e))?;
            // the mode is exactly as asked, whatever the umask
            let mode = wanted.mode.unwrap_or(NEW_DIR_MODE);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_error("change the mode of", path, &e))?;
            std::fs::metadata(path).map_err(|e| io_error("inspect", path, &e))?
        }
    };
    wanted.set(path, &meta)?;
    Ok(Outcome::changed(false, format!("directory {} {done}", f.name), changes))
}
