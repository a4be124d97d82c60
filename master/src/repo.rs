//! Reading `roles/`, `states/` and `fleet.yaml` of the config repository at one commit.
//!
//! This runs the `git` CLI rather than linking a git library: libgit2 would add a C build
//! to every image and CI runner, gitoxide a large dependency tree, and the master already
//! needs `git` wherever the config repository lives (users commit to it there). Three
//! plumbing commands are all it takes: `rev-parse` (which commit), `ls-tree -r -l` (which
//! files, with their sizes, checked before any content is read), and one `cat-file --batch`
//! for every content. No command touches the worktree, the index or a hook.
//!
//! Paths are relative to `--repo` (which may be a folder inside a larger repository).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use render::Files;

/// The largest file the master reads: a file must fit, with room to spare, in one
/// `ToMinion::Files` message (`wire::msg::MAX_FRAME`).
pub const MAX_FILE: u64 = 4 << 20;

/// The most the files the master reads may hold together.
pub const MAX_TOTAL: u64 = 64 << 20;

/// What the master reads of the config repository: two folders and the fleet file (and its
/// misspelling, to be refused by name rather than ignored).
const READ: [&str; 4] = ["roles", "states", "fleet.yaml", "fleet.yml"];

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot run git (it must be installed where the config repository is): {0}")]
    NoGit(std::io::Error),
    #[error("'{rev}' is not a commit in {repo}: {detail}")]
    NotACommit { rev: String, repo: String, detail: String },
    #[error("git {what} in {repo} failed: {detail}")]
    Git { what: &'static str, repo: String, detail: String },
    /// A file the master refuses to serve; the commit is refused whole.
    #[error("{path}: {reason}")]
    BadFile { path: String, reason: String },
}

/// `roles/`, `states/` and `fleet.yaml` at one commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// The full commit id (hex).
    pub id: String,
    pub files: Files,
}

fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo);
    // Messages are matched below; variables set by a surrounding git (hooks) would point
    // these commands at another repository.
    cmd.env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_NAMESPACE");
    cmd
}

/// git's last complaint on stderr, without its `fatal: ` prefix.
fn complaint(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let line = line.strip_prefix("fatal: ").or_else(|| line.strip_prefix("error: ")).unwrap_or(line);
    if line.is_empty() { "git said nothing".to_string() } else { line.to_string() }
}

/// Reads `roles/`, `states/` and `fleet.yaml` of `repo` at `rev` (a commit, branch, tag,
/// `HEAD~1`...).
pub fn read_commit(repo: &Path, rev: &str) -> Result<Commit, RepoError> {
    let id = resolve(repo, rev)?;
    let entries = list(repo, &id)?;
    let files = contents(repo, &id, entries)?;
    Ok(Commit { id, files })
}

/// The full id of the commit `rev` names.
pub fn resolve(repo: &Path, rev: &str) -> Result<String, RepoError> {
    let not_a_commit = |detail: &str| RepoError::NotACommit {
        rev: rev.to_string(),
        repo: repo.display().to_string(),
        detail: detail.to_string(),
    };
    if rev.is_empty() {
        return Err(not_a_commit("empty revision"));
    }
    if rev.starts_with('-') || rev.len() > 256 || rev.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(not_a_commit("expected a commit id, branch, tag or an expression like HEAD~1"));
    }
    let out = git(repo)
        .args(["rev-parse", "--verify", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .stdin(Stdio::null())
        .output()
        .map_err(RepoError::NoGit)?;
    if !out.status.success() {
        let detail = complaint(&out.stderr);
        return Err(not_a_commit(if detail == "Needed a single revision" {
            "no such revision, or it does not name a commit"
        } else {
            &detail
        }));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if id.len() < 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_a_commit(&format!("git answered {id:?}, not a commit id")));
    }
    Ok(id)
}

/// One file of the tree: its path and blob id.
#[derive(Debug)]
struct Entry {
    path: String,
    oid: String,
}

/// Every file under `roles/` and `states/`, and `fleet.yaml`, at `commit`; refuses links,
/// submodules, non-UTF-8 names and files over the size limits before any content is read.
fn list(repo: &Path, commit: &str) -> Result<Vec<Entry>, RepoError> {
    let out = git(repo)
        .args(["ls-tree", "-r", "-l", "-z", commit, "--"])
        .args(READ)
        .stdin(Stdio::null())
        .output()
        .map_err(RepoError::NoGit)?;
    if !out.status.success() {
        return Err(RepoError::Git {
            what: "ls-tree",
            repo: repo.display().to_string(),
            detail: complaint(&out.stderr),
        });
    }
    let mut entries = Vec::new();
    let mut total = 0u64;
    for record in out.stdout.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let bad = |path: &str, reason: &str| RepoError::BadFile { path: path.into(), reason: reason.into() };
        // "<mode> <type> <oid> <size>\t<path>"
        let tab =
            record.iter().position(|&b| b == b'\t').ok_or_else(|| bad("?", "unexpected ls-tree output"))?;
        let path = std::str::from_utf8(&record[tab + 1..])
            .map_err(|_| bad(&String::from_utf8_lossy(&record[tab + 1..]), "the file name is not UTF-8"))?;
        let meta = String::from_utf8_lossy(&record[..tab]);
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let [mode, kind, oid, size] = fields[..] else { return Err(bad(path, "unexpected ls-tree output")) };
        match (mode, kind) {
            ("100644" | "100755", "blob") => {}
            ("120000", _) => {
                return Err(bad(
                    path,
                    "is a symbolic link; expected a regular file (links are not followed)",
                ));
            }
            ("160000", _) => return Err(bad(path, "is a submodule; expected a regular file")),
            _ => return Err(bad(path, &format!("has git mode {mode} ({kind}); expected a regular file"))),
        }
        let size: u64 = size.parse().map_err(|_| bad(path, "unexpected ls-tree output"))?;
        if size > MAX_FILE {
            return Err(bad(
                path,
                &format!(
                    "is {size} bytes; expected at most {MAX_FILE} (keep large data out of the config files)"
                ),
            ));
        }
        total += size;
        if total > MAX_TOTAL {
            return Err(bad(
                path,
                &format!("roles/, states/ and fleet.yaml exceed {MAX_TOTAL} bytes together"),
            ));
        }
        entries.push(Entry { path: path.to_string(), oid: oid.to_string() });
    }
    Ok(entries)
}

/// The contents of `entries`, read with one `git cat-file --batch`.
fn contents(repo: &Path, commit: &str, entries: Vec<Entry>) -> Result<Files, RepoError> {
    let mut files = Files::new();
    if entries.is_empty() {
        return Ok(files);
    }
    let failed =
        |detail: String| RepoError::Git { what: "cat-file", repo: repo.display().to_string(), detail };
    let mut child = git(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RepoError::NoGit)?;
    // Write the ids from another thread: git answers while it reads, and both pipes are finite.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let request: Vec<u8> = entries.iter().flat_map(|e| format!("{}\n", e.oid).into_bytes()).collect();
    let writer = std::thread::spawn(move || stdin.write_all(&request));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut result = Ok(());
    for entry in &entries {
        match read_object(&mut stdout, &entry.oid) {
            Ok(data) => match String::from_utf8(data) {
                Ok(text) => {
                    files.insert(entry.path.clone(), text);
                }
                Err(_) => {
                    result = Err(RepoError::BadFile {
                        path: entry.path.clone(),
                        reason: format!("is not UTF-8 text at {}; expected a text file", api::short(commit)),
                    });
                    break;
                }
            },
            Err(detail) => {
                result = Err(failed(detail));
                break;
            }
        }
    }
    drop(stdout);
    let _ = writer.join();
    let out = child.wait_with_output().map_err(RepoError::NoGit)?;
    result?;
    if !out.status.success() {
        return Err(failed(complaint(&out.stderr)));
    }
    Ok(files)
}

/// One answer of `cat-file --batch`: `<oid> <type> <size>\n<data>\n`.
fn read_object(out: &mut impl BufRead, oid: &str) -> Result<Vec<u8>, String> {
    let mut header = String::new();
    out.read_line(&mut header).map_err(|e| format!("reading {oid}: {e}"))?;
    let fields: Vec<&str> = header.split_whitespace().collect();
    let size = match fields[..] {
        [got, "blob", size] if got == oid => {
            size.parse::<u64>().map_err(|_| format!("bad header {header:?}"))?
        }
        _ => return Err(format!("expected blob {oid}, got {:?}", header.trim())),
    };
    if size > MAX_FILE {
        return Err(format!("blob {oid} is {size} bytes, over the limit"));
    }
    let mut data = vec![0; size as usize];
    out.read_exact(&mut data).map_err(|e| format!("reading {oid}: {e}"))?;
    let mut newline = [0u8; 1];
    out.read_exact(&mut newline).map_err(|e| format!("reading {oid}: {e}"))?;
    Ok(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A config repository made in a temp dir, committed with the `git` CLI.
    pub struct TestRepo {
        pub dir: tempfile::TempDir,
    }

    impl TestRepo {
        pub fn new() -> Self {
            let repo = TestRepo { dir: tempfile::tempdir().unwrap() };
            repo.git(&["init", "-q", "."]);
            repo
        }

        pub fn path(&self) -> PathBuf {
            self.dir.path().to_path_buf()
        }

        pub fn git(&self, args: &[&str]) -> String {
            let out = git(self.dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }

        pub fn write(&self, path: &str, text: &str) {
            let full = self.dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }

        pub fn remove(&self, path: &str) {
            std::fs::remove_file(self.dir.path().join(path)).unwrap();
        }

        /// Writes `files`, commits everything, returns the commit id.
        pub fn commit(&self, files: &[(&str, &str)]) -> String {
            for (path, text) in files {
                self.write(path, text);
            }
            self.git(&["add", "-A", "."]);
            self.git(&["commit", "-q", "--allow-empty", "-m", "change"]);
            self.git(&["rev-parse", "HEAD"])
        }
    }

    #[test]
    fn reads_roles_and_states_at_head_and_at_an_older_commit() {
        let repo = TestRepo::new();
        let first = repo.commit(&[
            ("roles/web.yaml", "states: [web.site]\n"),
            ("states/web/site.yaml", "site: {}\n"),
            ("README.md", "not read\n"),
            ("images/x/Dockerfile", "not read\n"),
        ]);
        let second = repo.commit(&[("roles/web.yaml", "states: [web.site]\npillar: {a: 1}\n")]);
        let head = read_commit(&repo.path(), "HEAD").unwrap();
        assert_eq!(head.id, second);
        assert_eq!(
            head.files.keys().collect::<Vec<_>>(),
            ["roles/web.yaml", "states/web/site.yaml"],
            "only roles/, states/ and fleet.yaml"
        );
        assert!(!head.files.contains_key("fleet.yaml"), "no fleet file, no fleet");
        assert!(head.files["roles/web.yaml"].contains("pillar"));
        let old = read_commit(&repo.path(), "HEAD~1").unwrap();
        assert_eq!(old.id, first);
        assert_eq!(old.files["roles/web.yaml"], "states: [web.site]\n");
        assert_eq!(read_commit(&repo.path(), &first[..10]).unwrap().id, first);
    }

    #[test]
    fn reads_the_fleet_file_at_the_root_and_no_other() {
        let repo = TestRepo::new();
        repo.commit(&[
            ("fleet.yaml", "fleet: coins\n"),
            ("fleet.yaml.orig", "not read\n"),
            ("images/fleet.yaml", "not read\n"),
            ("roles/a.yaml", ""),
        ]);
        let head = read_commit(&repo.path(), "HEAD").unwrap();
        assert_eq!(head.files.keys().collect::<Vec<_>>(), ["fleet.yaml", "roles/a.yaml"]);
        assert_eq!(head.files["fleet.yaml"], "fleet: coins\n");

        // a config repository in a folder of a larger one: its own fleet file
        let outer = TestRepo::new();
        outer.commit(&[("fleet.yaml", "fleet: outer\n"), ("config/fleet.yaml", "fleet: inner\n")]);
        let inner = read_commit(&outer.path().join("config"), "HEAD").unwrap();
        assert_eq!(inner.files.keys().collect::<Vec<_>>(), ["fleet.yaml"]);
        assert_eq!(inner.files["fleet.yaml"], "fleet: inner\n");
    }

    #[test]
    fn unknown_revisions_and_missing_repositories_are_clear_errors() {
        let repo = TestRepo::new();
        let err = read_commit(&repo.path(), "HEAD").unwrap_err().to_string();
        assert!(err.starts_with("'HEAD' is not a commit in "), "{err}");
        repo.commit(&[("roles/a.yaml", "")]);
        let err = read_commit(&repo.path(), "nope").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "'nope' is not a commit in {}: no such revision, or it does not name a commit",
                repo.path().display()
            )
        );
        let err = read_commit(&repo.path(), "HEAD:roles").unwrap_err().to_string();
        assert!(err.contains("is not a commit"), "{err}");
        let err = read_commit(&repo.path(), "--output=/tmp/x").unwrap_err().to_string();
        assert!(err.contains("expected a commit id"), "{err}");
        let nowhere = tempfile::tempdir().unwrap();
        let err = read_commit(nowhere.path(), "HEAD").unwrap_err().to_string();
        assert!(err.contains("not a git repository"), "{err}");
        let err = read_commit(Path::new("/nonexistent/drover"), "HEAD").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/drover"), "{err}");
    }

    #[test]
    fn refuses_binary_large_and_linked_files_naming_them() {
        let repo = TestRepo::new();
        repo.commit(&[("roles/a.yaml", "")]);
        std::fs::create_dir_all(repo.dir.path().join("states")).unwrap();
        std::fs::write(repo.dir.path().join("states/bin.dat"), b"\xff\xfe").unwrap();
        repo.commit(&[]);
        let err = read_commit(&repo.path(), "HEAD").unwrap_err().to_string();
        assert!(err.starts_with("states/bin.dat: is not UTF-8"), "{err}");

        repo.remove("states/bin.dat");
        repo.commit(&[("states/big.txt", &"x".repeat(MAX_FILE as usize + 1))]);
        let err = read_commit(&repo.path(), "HEAD").unwrap_err().to_string();
        assert!(err.starts_with("states/big.txt: is 4194305 bytes"), "{err}");

        repo.remove("states/big.txt");
        std::os::unix::fs::symlink("/etc/passwd", repo.dir.path().join("states/passwd")).unwrap();
        repo.commit(&[]);
        let err = read_commit(&repo.path(), "HEAD").unwrap_err().to_string();
        assert!(err.starts_with("states/passwd: is a symbolic link"), "{err}");
    }

    #[test]
    fn many_files_stream_through_one_cat_file() {
        let repo = TestRepo::new();
        let body = "x: 1\n".repeat(2000);
        let files: Vec<(String, String)> =
            (0..300).map(|i| (format!("states/many/f{i}.yaml"), format!("{body}# {i}\n"))).collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        repo.commit(&refs);
        let read = read_commit(&repo.path(), "HEAD").unwrap();
        assert_eq!(read.files.len(), 300);
        assert_eq!(read.files["states/many/f299.yaml"], format!("{body}# 299\n"));
    }
}
