//! Private state on disk. What the master and a minion keep under their `DIR` (keys, the job
//! store with every return, pillar in the stored files, cached files, spooled returns,
//! daemon logs) is for their own user only: directories 0700, files 0600.
//!
//! New state is created that way ([`create_dir`], [`create_file`], [`write_atomic`]), whatever
//! the umask; [`secure`] checks a whole tree at start and takes from others what a looser
//! mode (an older version, a restored backup, a `chmod` by hand) gave them.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a private directory.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a private file.
pub const FILE_MODE: u32 = 0o600;
/// The bits that let others than the owner in.
const OTHERS: u32 = 0o077;

/// Creates `dir` and its missing parents, each with mode 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates `path` empty with mode 0600, unless it exists (then it is left as it is), for a
/// library that creates it otherwise with its own mode (SQLite creates its `-wal` and `-shm`
/// files with the mode of the database file).
pub fn create_file(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).create(true).truncate(false).mode(FILE_MODE).open(path).map(drop)
}

/// Writes `path` with mode 0600 through a temporary file and a rename, so readers never see
/// half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(&tmp)?;
    // a temporary file left by a crash keeps its mode when opened again
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// A path whose mode let others in.
#[derive(Debug)]
pub struct Loosened {
    pub path: PathBuf,
    /// Its mode as found (permission bits).
    pub mode: u32,
    /// Its mode now, or why it could not be changed.
    pub fixed: io::Result<u32>,
}

impl fmt::Display for Loosened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, mode) = (self.path.display(), self.mode);
        match &self.fixed {
            Ok(now) => write!(
                f,
                "private state {path} had mode {mode:04o}, open to other users; changed it to {now:04o}"
            ),
            Err(e) => write!(
                f,
                "private state {path} has mode {mode:04o}, open to other users, and cannot be changed ({e}); \
                 run chmod go-rwx {path}"
            ),
        }
    }
}

/// Takes the group and other permission bits from `dir` and everything under it (symlinks
/// are not followed; `dir` itself may be one). Returns each path that had any, in the order
/// found; a path that vanishes meanwhile is skipped.
pub fn secure(dir: &Path) -> Vec<Loosened> {
    let mut found = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), true)];
    while let Some((path, root)) = todo.pop() {
        let meta = if root { fs::metadata(&path) } else { fs::symlink_metadata(&path) };
        let Ok(meta) = meta else { continue };
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&path)
        {
            let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            children.sort_by(|a, b| b.cmp(a));
            todo.extend(children.into_iter().map(|p| (p, false)));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & OTHERS != 0 {
            let private = mode & !OTHERS;
            let fixed = fs::set_permissions(&path, Permissions::from_mode(private)).map(|()| private);
            found.push(Loosened { path, mode, fixed });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_loose_tree_is_made_private_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        fs::write(dir.join("db"), "x").unwrap();
        fs::write(dir.join("sub/key"), "x").unwrap();
        fs::write(dir.join("sub/deeper/own"), "x").unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        for (p, m) in [
            (dir.clone(), 0o755),
            (dir.join("sub"), 0o750),
            (dir.join("sub/deeper"), 0o700),
            (dir.join("db"), 0o644),
            (dir.join("sub/key"), 0o640),
            (dir.join("sub/deeper/own"), 0o600),
            (outside.clone(), 0o644),
        ] {
            fs::set_permissions(&p, Permissions::from_mode(m)).unwrap();
        }

        let found: Vec<(PathBuf, u32, u32)> =
            secure(&dir).into_iter().map(|l| (l.path, l.mode, l.fixed.unwrap())).collect();
        assert_eq!(
            found,
            [
                (dir.clone(), 0o755, 0o700),
                (dir.join("db"), 0o644, 0o600),
                (dir.join("sub"), 0o750, 0o700),
                (dir.join("sub/key"), 0o640, 0o600),
            ]
        );
        assert_eq!(mode(&outside), 0o644, "a symlink's target outside is not touched");
        let shown = Loosened { path: "/d/db".into(), mode: 0o644, fixed: Ok(0o600) }.to_string();
        assert_eq!(shown, "private state /d/db had mode 0644, open to other users; changed it to 0600");
        assert!(secure(&dir).is_empty(), "nothing left to fix");
    }

    #[test]
    fn new_state_is_private_whatever_the_umask() {
        // the umask only takes bits away: a permissive one shows the modes are explicit
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        create_file(&dir.join("db")).unwrap();
        write_atomic(&dir.join("key"), b"k").unwrap();
        // a temporary file left behind with a loose mode does not leak into the new one
        fs::write(dir.join(".again.tmp"), "old").unwrap();
        fs::set_permissions(dir.join(".again.tmp"), Permissions::from_mode(0o666)).unwrap();
        write_atomic(&dir.join("again"), b"k").unwrap();
        nix::sys::stat::umask(old);
        assert_eq!(
            [tmp.path().join("a"), dir.clone()].map(|d| mode(&d)),
            [DIR_MODE, DIR_MODE],
            "parents too"
        );
        assert_eq!(["db", "key", "again"].map(|f| mode(&dir.join(f))), [FILE_MODE; 3]);
        // an existing file is left as it is
        fs::write(dir.join("db"), "data").unwrap();
        create_file(&dir.join("db")).unwrap();
        assert_eq!(fs::read_to_string(dir.join("db")).unwrap(), "data");
    }
}
