//! `cp.get_file salt://<path> <dest>`: copies a file of the states tree, at the commit of
//! the minion's assignment, to a path on the minion, as Salt's copies from the master's
//! file server.
//!
//! The file comes from the minion's own cache of its assignment, which the master filled
//! with the minion's manifest and nothing else: its roles' state files and the sources
//! their states name. A file of another role (whose pillar or templates may be secret) is
//! never served to this minion, by `cp.get_file` as by anything else.

use std::io;
use std::path::{Path, PathBuf};

use super::{BoxFuture, Call, Outcome, arity, boolean, known_kwargs, scalar_string};

const USAGE: &str = "cp.get_file salt://<path under states/> <dest> [makedirs=true]";

pub fn get_file(call: Call) -> BoxFuture {
    Box::pin(async move {
        let (source, dest, makedirs) = match parse(&call) {
            Ok(parsed) => parsed,
            Err(o) => return o,
        };
        let cached = match super::state::converger(&call) {
            Ok(c) => c.cached_file(source).await,
            Err(o) => return o,
        };
        match cached {
            Ok(cached) => match tokio::task::spawn_blocking(move || copy(&cached, &dest, makedirs)).await {
                Ok(Ok(dest)) => Outcome::ok(dest.display().to_string()),
                Ok(Err(e)) => Outcome::fail(format!("cp.get_file: {e}")),
                Err(e) => Outcome::fail(format!("cp.get_file stopped unexpectedly: {e}")),
            },
            Err(e) => Outcome::fail(format!("cp.get_file: {e}")),
        }
    })
}

/// The source (its path from the repository root: `states/a/b`), the destination and
/// `makedirs`.
fn parse(call: &Call) -> Result<(String, PathBuf, bool), Outcome> {
    arity(call, 2..=2, USAGE)?;
    known_kwargs(call, &["makedirs"], USAGE)?;
    let fail = |what: String| Outcome::fail(format!("cp.get_file: {what}; usage: {USAGE}"));
    let (Some(source), Some(dest)) = (scalar_string(&call.args[0]), scalar_string(&call.args[1])) else {
        return Err(fail("the source and the destination are paths".into()));
    };
    let relative = source.strip_prefix("salt://").unwrap_or(&source);
    let source = render::source_path(relative).map_err(fail)?;
    if !dest.starts_with('/') {
        return Err(fail(format!("the destination must be an absolute path, got '{dest}'")));
    }
    let makedirs = match call.kwargs.get("makedirs") {
        None => false,
        Some(v) => boolean(v).ok_or_else(|| fail(format!("makedirs= takes true or false, got {v}")))?,
    };
    Ok((source, PathBuf::from(dest), makedirs))
}

/// Copies `cached` to the file `dest` (not a directory), creating missing parents with
/// `makedirs`: where it went.
fn copy(cached: &Path, dest: &Path, makedirs: bool) -> Result<PathBuf, String> {
    let dest = dest.to_path_buf();
    if dest.is_dir() {
        return Err(format!("{} is a directory; give the file's path", dest.display()));
    }
    if let Some(parent) = dest.parent().filter(|p| !p.is_dir()) {
        if !makedirs {
            return Err(format!(
                "directory {} does not exist; create it, or pass makedirs=true",
                parent.display()
            ));
        }
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let io_err = |e: io::Error| format!("cannot write {}: {e}", dest.display());
    let data = std::fs::read(cached).map_err(|e| format!("cannot read the cached copy: {e}"))?;
    std::fs::write(&dest, data).map_err(io_err)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::tests::call_of;
    use super::*;

    #[test]
    fn sources_are_under_states_and_destinations_absolute() {
        let parsed = |args: Vec<Value>| parse(&call_of("cp.get_file", args, &[]));
        let (source, dest, makedirs) =
            parsed(vec![json!("salt://coins/worker.toml"), json!("/tmp/w")]).unwrap();
        assert_eq!(
            (source.as_str(), dest, makedirs),
            ("states/coins/worker.toml", PathBuf::from("/tmp/w"), false)
        );
        assert_eq!(parsed(vec![json!("coins/./a"), json!("/x")]).unwrap().0, "states/coins/a");
        let cases = [
            (vec![json!("salt://../roles/db.yaml"), json!("/x")], "leaves states/"),
            (vec![json!("salt:///etc/passwd"), json!("/x")], "is absolute"),
            (vec![json!("salt://a"), json!("x")], "the destination must be an absolute path"),
            (vec![json!("salt://a")], "cp.get_file takes 2 arguments, got 1"),
        ];
        for (args, want) in cases {
            let o = parsed(args.clone()).unwrap_err();
            assert!(o.ret.as_str().unwrap().contains(want), "{args:?}: {}", o.ret);
        }
    }

    #[test]
    fn copies_into_existing_or_made_directories() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("0123abcd");
        std::fs::write(&cached, "port = 1\n").unwrap();
        let dest = dir.path().join("etc/app.conf");
        let e = copy(&cached, &dest, false).unwrap_err();
        assert!(e.contains("does not exist; create it, or pass makedirs=true"), "{e}");
        assert_eq!(copy(&cached, &dest, true).unwrap(), dest);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "port = 1\n");
        assert!(copy(&cached, dir.path(), false).unwrap_err().contains("is a directory"));
    }
}
