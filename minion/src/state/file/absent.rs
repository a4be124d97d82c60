//! `file.absent`: nothing at a path. A symlink is removed, not what it points to; a
//! directory is removed with everything in it.

use std::path::Path;

use render::FileAbsent;
use serde_json::{Map, json};

use super::{io_error, kind, lstat};
use crate::state::Outcome;

pub(super) fn apply(f: &FileAbsent, test: bool) -> Outcome {
    absent(f, test).unwrap_or_else(Outcome::fail)
}

fn absent(f: &FileAbsent, test: bool) -> Result<Outcome, String> {
    let path = Path::new(&f.name);
    if path.parent().is_none() {
        return Err(format!("refusing to remove {}", f.name));
    }
    let Some(meta) = lstat(path)? else {
        return Ok(Outcome::ok(format!("file {} is already absent", f.name)));
    };
    let what = kind(&meta);
    let changes = Map::from_iter([("removed".to_string(), json!(f.name))]);
    if test {
        return Ok(Outcome::changed(true, format!("{} ({what}) would be removed", f.name), changes));
    }
    let removed = if meta.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    removed.map_err(|e| io_error("remove", path, &e))?;
    Ok(Outcome::changed(false, format!("removed {} ({what})", f.name), changes))
}
