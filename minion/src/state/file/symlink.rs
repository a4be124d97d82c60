//! `file.symlink`: a symbolic link at `name` pointing to `target`. A link to another target
//! is replaced atomically; anything else in the way is replaced only with `force`.

use std::path::{Path, PathBuf};

use render::FileSymlink;
use serde_json::{Map, json};

use super::{check_parent, io_error, kind, lstat, temp_path};
use crate::state::Outcome;

pub(super) fn apply(f: &FileSymlink, test: bool) -> Outcome {
    symlink(f, test).unwrap_or_else(Outcome::fail)
}

fn symlink(f: &FileSymlink, test: bool) -> Result<Outcome, String> {
    let path = Path::new(&f.name);
    let target = PathBuf::from(&f.target);
    let mut changes = Map::new();
    let (done, remove_dir) = match lstat(path)? {
        Some(meta) if meta.file_type().is_symlink() => {
            let old = std::fs::read_link(path).map_err(|e| io_error("read the symlink", path, &e))?;
            if old == target {
                return Ok(Outcome::ok(format!("symlink {} is in the correct state", f.name)));
            }
            changes.insert("old".into(), json!(old.to_string_lossy()));
            ("changed", false)
        }
        Some(meta) if f.force => {
            changes.insert("replaced".into(), json!(kind(&meta)));
            ("created", meta.is_dir())
        }
        Some(meta) => {
            return Err(format!(
                "{} is {}, not a symlink; expected `force: true` to replace it",
                f.name,
                kind(&meta)
            ));
        }
        None => {
            check_parent(path, None)?;
            ("created", false)
        }
    };
    changes.insert("new".into(), json!(f.target));
    if test {
        return Ok(Outcome::changed(
            true,
            format!("symlink {} -> {} would be {done}", f.name, f.target),
            changes,
        ));
    }
    if remove_dir {
        // a directory cannot be renamed over
        std::fs::remove_dir_all(path).map_err(|e| io_error("remove", path, &e))?;
    }
    let tmp = temp_path(path);
    std::os::unix::fs::symlink(&target, &tmp).map_err(|e| io_error("create the symlink", path, &e))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("create the symlink", path, &e));
    }
    Ok(Outcome::changed(false, format!("symlink {} -> {} {done}", f.name, f.target), changes))
}
