//! The content store on disk: every file of an applied commit under `DIR/files/<sha256>`,
//! so that a restarted master serves the commit it applied without asking git (the config
//! repository may have moved on, or be rewritten).
//!
//! Files are written once (temp file, then rename) and never change: a name is its
//! content's hash, checked again on every read. [`restore_applied`] rebuilds the applied
//! commit at start from these files (or, if some are missing, from the config repository).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wire::msg::sha256_hex;

use crate::assign::Applied;
use crate::repo::{Commit, read_commit};

pub struct ContentStore {
    dir: PathBuf,
}

/// `[0-9a-f]{64}`: how the store (and `ToMaster::Fetch`) names contents.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ContentStore {
    /// Opens `dir`, creating it (private: the files hold pillar).
    pub fn open(dir: &Path) -> io::Result<Self> {
        wire::private::create_dir(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// Stores `data` unless it is there already; returns its sha256.
    pub fn put(&self, data: &[u8]) -> io::Result<String> {
        let sha = sha256_hex(data);
        let path = self.dir.join(&sha);
        if !path.exists() {
            wire::private::write_atomic(&path, data)?;
        }
        Ok(sha)
    }

    /// The content named `sha`, checked against its name.
    pub fn get(&self, sha: &str) -> io::Result<Vec<u8>> {
        if !is_sha256(sha) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{sha:?} is not a sha256")));
        }
        let data = fs::read(self.dir.join(sha))?;
        if sha256_hex(&data) != sha {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold the content its name says", self.dir.join(sha).display()),
            ));
        }
        Ok(data)
    }

    /// Stores every file of a commit; returns its tree (path → sha256).
    pub fn put_files(&self, files: &render::Files) -> io::Result<BTreeMap<String, String>> {
        files.iter().map(|(path, text)| Ok((path.clone(), self.put(text.as_bytes())?))).collect()
    }

    /// The files of a tree stored before, or the first error.
    pub fn get_files(&self, tree: &BTreeMap<String, String>) -> io::Result<render::Files> {
        tree.iter()
            .map(|(path, sha)| {
                let data = self.get(sha)?;
                let text = String::from_utf8(data).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{path} is not UTF-8"))
                })?;
                Ok((path.clone(), text))
            })
            .collect()
    }

    /// Removes every stored content not in `keep`; returns how many were removed.
    pub fn keep_only(&self, keep: &HashSet<&str>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // temp files of an interrupted write go too
            if !keep.contains(name) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The commit applied before the restart, from `DIR/files` (or, failing that, from the
/// config repository). `None`, logged, if neither has it: the next `roles apply` sets one.
pub fn restore_applied(
    content: &ContentStore,
    repo: &Path,
    commit: String,
    tree: &BTreeMap<String, String>,
) -> Option<Applied> {
    let files = match content.get_files(tree) {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(%commit, error = %e, "stored files incomplete; reading the commit from git");
            match read_commit(repo, &commit) {
                Ok(read) => read.files,
                Err(e) => {
                    tracing::error!(%commit, error = %e, "cannot restore the applied commit; run 'drover roles apply'");
                    return None;
                }
            }
        }
    };
    match Applied::load(Commit { id: commit.clone(), files }) {
        Ok(applied) => {
            tracing::info!(%commit, "restored the applied commit");
            Some(applied)
        }
        Err(diags) => {
            tracing::error!(
                %commit, problems = diags.len(), first = %diags[0],
                "the applied commit no longer validates; run 'drover roles apply'"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign::tests::{CLOUD, commit};
    use crate::repo::tests::TestRepo;

    #[test]
    fn contents_are_named_by_hash_checked_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("files")).unwrap();
        let files: render::Files =
            [("roles/a.yaml".to_string(), "a".to_string()), ("roles/b.yaml".to_string(), "b".to_string())]
                .into();
        let tree = store.put_files(&files).unwrap();
        assert_eq!(tree["roles/a.yaml"], sha256_hex(b"a"));
        assert_eq!(store.get_files(&tree).unwrap(), files);

        fs::write(dir.path().join("files").join(&tree["roles/b.yaml"]), "tampered").unwrap();
        assert_eq!(store.get(&tree["roles/b.yaml"]).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(store.get("../../etc/passwd").unwrap_err().kind(), io::ErrorKind::InvalidInput);

        let keep: HashSet<&str> = [tree["roles/a.yaml"].as_str()].into();
        assert_eq!(store.keep_only(&keep).unwrap(), 1);
        assert_eq!(store.get(&tree["roles/a.yaml"]).unwrap(), b"a");
        assert!(store.get(&tree["roles/b.yaml"]).is_err());
    }

    #[test]
    fn the_applied_commit_is_restored_from_stored_files_else_from_git() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&dir.path().join("files")).unwrap();
        let stored = commit(CLOUD);
        let tree = content.put_files(&stored.files).unwrap();
        let nowhere = Path::new("/nonexistent/repo");
        let applied = restore_applied(&content, nowhere, stored.id.clone(), &tree).unwrap();
        assert_eq!((applied.commit.as_str(), &applied.files), (stored.id.as_str(), &stored.files));

        // a file lost from DIR/files: read from the config repository instead
        let repo = TestRepo::new();
        let id = repo.commit(CLOUD);
        let tree = content.put_files(&stored.files).unwrap();
        content.keep_only(&Default::default()).unwrap();
        let applied = restore_applied(&content, &repo.path(), id.clone(), &tree).unwrap();
        assert_eq!(applied.files, stored.files);
        // neither: nothing restored
        assert!(restore_applied(&content, nowhere, id, &tree).is_none());
    }
}
