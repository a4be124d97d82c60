//! `file.managed`: a file with exactly the given contents, mode and owner.
//!
//! The file is written to a temporary file in the same directory, which gets its owner and
//! mode, is synced, and is renamed over the old one: a reader sees the old file or the new
//! one, never a part. A symlink at `name` is followed (the file it points to is managed).
//! Without `mode`, a replaced file keeps its mode and owner and a new one gets `0644`.
//! The changes hold a unified `diff`, unless the change is too large to show: that is
//! decided before diffing, and the `diff` says so instead.

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
/// Files differing in more lines (old and new together) are not diffed: diffing 5,000
/// changed lines against 5,000 takes about half a second.
const MAX_DIFF_LINES: usize = 10_000;
/// Past this, the diff is cut short (still a correct diff, not the smallest).
const DIFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
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

/// A unified diff from `old` (`None`: no file) to `new`, headed with the file's name; or a
/// note saying why there is none. What differs is measured before diffing (the lines between
/// the common first and last lines): past [`MAX_DIFF_LINES`] lines or [`MAX_DIFF`] bytes it
/// is not diffed, since the time to diff grows with the square of its lines.
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
    let (bytes, lines) = changed_part(old, new);
    if bytes > MAX_DIFF || lines > MAX_DIFF_LINES {
        return json!(format!(
            "<too large to show: {bytes} bytes in {lines} lines differ; diffs are shown up to {MAX_DIFF} bytes and {MAX_DIFF_LINES} lines>"
        ));
    }
    let text = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(from, name)
        .to_string();
    if text.len() > MAX_DIFF {
        json!(format!(
            "<too large to show: the diff is {} bytes; diffs are shown up to {MAX_DIFF} bytes>",
            text.len()
        ))
    } else {
        json!(text)
    }
}

/// The bytes and lines of `old` and `new` between their common first lines and their
/// common last lines: an upper bound of what a diff shows, found in linear time.
fn changed_part(old: &str, new: &str) -> (usize, usize) {
    let old: Vec<&str> = old.split_inclusive('\n').collect();
    let new: Vec<&str> = new.split_inclusive('\n').collect();
    let head = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let tail = old[head..].iter().rev().zip(new[head..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (old, new) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    let bytes = old.iter().chain(new).map(|l| l.len()).sum();
    (bytes, old.len() + new.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_part_is_between_the_common_first_and_last_lines() {
        assert_eq!(changed_part("a\nb\nc\n", "a\nB\nc\n"), (4, 2));
        assert_eq!(changed_part("a\nb\nc", "a\nb\nc"), (0, 0));
        assert_eq!(changed_part("a\nb", "a\nb\n"), (3, 2), "the last line gained its newline");
        assert_eq!(changed_part("a\na\n", "a\n"), (2, 1), "common lines are counted once");
        assert_eq!(changed_part("", "x\ny\n"), (4, 2));
    }
}
