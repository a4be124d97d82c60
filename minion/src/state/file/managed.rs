//! `file.managed`: a file with exactly the given contents, mode and owner.
//!
//! The file is written to a temporary file in the same directory, which gets its owner and
//! mode, is synced, and is renamed over the old one: a reader sees the old file or the new
//! one, never a part. A symlink at `name` is followed (the file it points to is managed).
//! Without `mode`, a replaced file keeps its mode and owner and a new one gets `0644`.

use std::fs::{Metadata, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use render::FileManaged;
use serde_json::{Map, Value, json};
use similar::TextDiff;

use super::attrs::Wanted;
use super::{check_parent, io_error, kind, lstat, make_parents, temp_path};
use crate::state::Outcome;

/// A longer diff is replaced by a note saying how long it was.
const MAX_DIFF: usize = 256 * 1024;
const NEW_FILE_MODE: u32 = 0o644;

pub(super) fn apply(f: &FileManaged, new: &str, test: bool) -> Outcome {
    managed(f, new, test).unwrap_or_else(Outcome::fail)
}

fn managed(f: &FileManaged, new: &str, test: bool) -> Result<Outcome, String> {
    let wanted = Wanted::lookup(f.mode, f.user.as_deref(), f.group.as_deref())?;
    let name = Path::new(&f.name);
    let path = match lstat(name)? {
        Some(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(name).map_err(|e| io_error("follow the symlink", name, &e))?
        }
        _ => name.to_path_buf(),
    };
    let meta = lstat(&path)?;
    match &meta {
        Some(meta) if !meta.is_file() => {
            return Err(format!("{} is {}; refusing to replace it with a file", path.display(), kind(meta)));
        }
        Some(_) => {}
        None => check_parent(&path, Some(f.makedirs))?,
    }
    let old = match &meta {
        Some(_) => Some(std::fs::read(&path).map_err(|e| io_error("read", &path, &e))?),
        None => None,
    };

    let rewrite = old.as_deref() != Some(new.as_bytes());
    let mut changes = Map::new();
    if rewrite {
        changes.insert("diff".into(), diff(&f.name, old.as_deref(), new));
    }
    wanted.changes(meta.as_ref(), &mut changes);
    if changes.is_empty() {
        return Ok(Outcome::ok(format!("file {} is in the correct state", f.name)));
    }
    let done = if meta.is_none() { "created" } else { "updated" };
    if test {
        return Ok(Outcome::changed(true, format!("file {} would be {done}", f.name), changes));
    }
    match &meta {
        Some(meta) if !rewrite => wanted.set(&path, meta)?,
        _ => {
            if f.makedirs {
                make_parents(&path)?;
            }
            write(&path, new.as_bytes(), &wanted, meta.as_ref())?;
        }
    }
    Ok(Outcome::changed(false, format!("file {} {done}", f.name), changes))
}

/// Replaces `path` with `data` atomically; owner and mode as wanted, else as `old` had them.
fn write(path: &Path, data: &[u8], wanted: &Wanted, old: Option<&Metadata>) -> Result<(), String> {
    let tmp = temp_path(path);
    let written = write_temp(path, &tmp, data, wanted, old)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_error("write", path, &e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // the rename is durable once the directory is synced; it is in place either way
    if let Some(dir) = path.parent().and_then(|dir| std::fs::File::open(dir).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_temp(
    path: &Path,
    tmp: &Path,
    data: &[u8],
    wanted: &Wanted,
    old: Option<&Metadata>,
) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_error("write", path, &e))?;
    file.write_all(data).map_err(|e| io_error("write", path, &e))?;
    let mine = file.metadata().map_err(|e| io_error("write", path, &e))?;
    let uid = wanted.uid().or(old.map(MetadataExt::uid)).filter(|&u| u != mine.uid());
    let gid = wanted.gid().or(old.map(MetadataExt::gid)).filter(|&g| g != mine.gid());
    if uid.is_some() || gid.is_some() {
        match std::os::unix::fs::fchown(&file, uid, gid) {
            Ok(()) => {}
            Err(e) if wanted.user.is_some() || wanted.group.is_some() => {
                return Err(io_error("change the owner of", path, &e));
            }
            // keeping the old owner is what we can do, not what was asked
            Err(e) => {
                tracing::debug!(path = %path.display(), cause = %e, "cannot keep the owner of a replaced file")
            }
        }
    }
    let mode = wanted.mode.or(old.map(|m| m.mode() & 0o7777)).unwrap_or(NEW_FILE_MODE);
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_error("change the mode of", path, &e))?;
    file.sync_all().map_err(|e| io_error("write", path, &e))
}

/// A unified diff from `old` (`None`: no file) to `new`, headed with the file's name.
fn diff(name: &str, old: Option<&[u8]>, new: &str) -> Value {
    let (from, old) = match old {
        None => ("/dev/null", ""),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (name, text),
            Err(_) => return json!("replaces a binary file"),
        },
    };
    if old.is_empty() && new.is_empty() {
        return json!("new empty file");
    }
    let text = TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(from, name).to_string();
    if text.len() > MAX_DIFF {
        json!(format!("diff not shown: {} bytes, more than {MAX_DIFF}", text.len()))
    } else {
        json!(text)
    }
}
