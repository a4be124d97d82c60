//! The file states. Each runs on a blocking thread (file system calls block) and reports
//! an I/O error as a failed state naming the path and the OS error.
//!
//! - `managed`: a file with given contents, written atomically, with a unified diff
//! - `directory`: a directory (and its parents with `makedirs`)
//! - `absent`: no file, symlink or directory tree at a path
//! - `symlink`: a symbolic link to a target
//! - `attrs`: mode and owner, shared by `managed` and `directory`

mod absent;
mod attrs;
mod directory;
mod managed;
mod symlink;

use std::io;
use std::path::Path;

use render::{FileAbsent, FileDirectory, FileManaged, FileSymlink, TemplateEngine};

use super::{Outcome, SourceFiles};

pub(super) async fn managed(
    f: &FileManaged,
    sources: &SourceFiles,
    ctx: &render::Context,
    test: bool,
) -> Outcome {
    let contents = match contents(f, sources, ctx) {
        Ok(contents) => contents,
        Err(why) => return Outcome::fail(why),
    };
    let f = f.clone();
    blocking("file.managed", move || managed::apply(&f, &contents, test)).await
}

pub(super) async fn directory(f: &FileDirectory, test: bool) -> Outcome {
    let f = f.clone();
    blocking("file.directory", move || directory::apply(&f, test)).await
}

pub(super) async fn absent(f: &FileAbsent, test: bool) -> Outcome {
    let f = f.clone();
    blocking("file.absent", move || absent::apply(&f, test)).await
}

pub(super) async fn symlink(f: &FileSymlink, test: bool) -> Outcome {
    let f = f.clone();
    blocking("file.symlink", move || symlink::apply(&f, test)).await
}

/// The new contents of a `file.managed`: its `source` (rendered with `template: tera`),
/// its `contents`, or nothing.
fn contents(f: &FileManaged, sources: &SourceFiles, ctx: &render::Context) -> Result<String, String> {
    let Some(path) = &f.source else { return Ok(f.contents.clone().unwrap_or_default()) };
    let Some(text) = sources.get(path) else {
        return Err(format!(
            "source {path} is not among the files this minion was given; expected the master to send it"
        ));
    };
    match f.template {
        None => Ok(text.clone()),
        Some(TemplateEngine::Tera) => render::render_source(path, text, ctx).map_err(|diags| {
            let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
            format!("cannot render {path}: {}", shown.join("; "))
        }),
    }
}

/// Runs `work` on a blocking thread; a panic in it is a failed state.
async fn blocking(function: &str, work: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::fail(format!("{function} stopped unexpectedly: {e}")),
    }
}

/// "cannot <what> /path: <OS error>"
fn io_error(what: &str, path: &Path, e: &io::Error) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// What is at a path, without following a final symlink; `None` when nothing is.
fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("inspect", path, &e)),
    }
}

/// What kind of thing `meta` is, for comments.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// The parent directory of a new `path` exists, or `makedirs` (`None`: the function has no
/// such argument) allows creating it.
fn check_parent(path: &Path, makedirs: Option<bool>) -> Result<(), String> {
    let Some(parent) = path.parent() else { return Ok(()) };
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", parent.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match makedirs {
            Some(true) => Ok(()),
            Some(false) => Err(format!(
                "directory {} does not exist; expected it, or `makedirs: true` to create it",
                parent.display()
            )),
            None => Err(format!("directory {} does not exist; expected it", parent.display())),
        },
        Err(e) => Err(io_error("inspect", parent, &e)),
    }
}

/// Creates the missing parents of `path`.
fn make_parents(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) if !parent.is_dir() => {
            std::fs::create_dir_all(parent).map_err(|e| io_error("create directory", parent, &e))
        }
        _ => Ok(()),
    }
}

/// A name next to `path` for a file that is renamed over it: same directory, hidden.
fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.drover-{:016x}", fastrand::u64(..)))
}
