//! The master's and a minion's state directories are private: 0700 directories, 0600 files,
//! whether fresh or found looser at start (then warned about and fixed).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::stat::{Mode, umask};
use serde_json::json;
use tests::{ConfigRepo, Master, Minion, pids_of, show, wait_until};

/// Every path under `dir` (itself included, symlinks skipped) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        found.push((path, meta.permissions().mode() & 0o7777));
    }
    found.sort();
    found
}

/// The paths of `dir` that others than the owner may use.
fn open_to_others(dir: &Path) -> Vec<String> {
    modes(dir)
        .into_iter()
        .filter(|(_, m)| m & 0o077 != 0)
        .map(|(p, m)| format!("{} {m:04o}", p.display()))
        .collect()
}

/// Gives every directory under `dir` 0755 and every file 0644, as a careless umask would.
fn loosen(dir: &Path) {
    for (path, _) in modes(dir) {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    modes(dir).into_iter().map(|(p, _)| p.strip_prefix(dir).unwrap().display().to_string()).collect()
}

#[test]
fn state_is_private_fresh_and_made_private_again_at_start() {
    // a umask that lets others read: the modes must not depend on it
    umask(Mode::from_bits_truncate(0o022));
    let daemon = ["/bin/sleep", "3061"];
    let repo = ConfigRepo::new();
    repo.commit(
        "a file with pillar and a daemon",
        &[
            ("roles/p.yaml", "description: private\nstates: [t.p]\npillar: {secret: s3cret}\n"),
            (
                "states/t/p.yaml",
                "secret:\n  file.managed:\n    - name: /dev/null/never\n    - source: t/secret.conf\n    - template: tera\n    - makedirs: true\n\
                 sleeper:\n  daemon.running:\n    - cmd: [\"/bin/sleep\", \"3061\"]\n",
            ),
            ("states/t/secret.conf", "secret = {{ pillar.secret }}\n"),
            ("roles/top.yaml", "'*': [p]\n"),
        ],
    );
    let mut master = Master::start(&["--auto-accept", "--repo", repo.path().to_str().unwrap()]);
    let mut minion = Minion::start(&master, "m1", &[]);
    master.wait_for_minions(1);
    let (code, _, stderr) = master.drover_json(&["m1", "cmd.run", "echo hi"]);
    assert_eq!(code, 0, "{stderr}");
    // `secret` fails on purpose (its file can never be written): roles apply says so
    let out = master.drover(&["roles", "apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    wait_until(Duration::from_secs(30), "the daemon to run", || pids_of(&daemon).len() == 1);

    // fresh state: the job store with its WAL, the stored files (pillar), keys, the file
    // cache, daemon logs: all private
    let (mdir, ndir) = (master.state_dir(), minion.state_dir());
    let m = names(&mdir);
    for want in
        ["drover.db", "drover.db-wal", "drover.db-shm", "api.json", "pki/master.key", "pki/accepted/m1"]
    {
        assert!(m.contains(&want.to_string()), "{want} not in {m:?}");
    }
    assert!(m.iter().any(|p| p.starts_with("files/") && p.len() == "files/".len() + 64), "{m:?}");
    let n = names(&ndir);
    for want in ["pki/minion.key", "pki/master.pub", "returns", "daemons/sleeper.log"] {
        assert!(n.contains(&want.to_string()), "{want} not in {n:?}");
    }
    assert!(n.iter().any(|p| p.starts_with("cache/") && p.len() == "cache/".len() + 64), "{n:?}");
    assert_eq!(open_to_others(&mdir), Vec::<String>::new(), "fresh master state");
    assert_eq!(open_to_others(&ndir), Vec::<String>::new(), "fresh minion state");

    // a tree left 0755/0644 (by an older version, a backup restored by hand...): each daemon
    // warns about every path, naming its mode, and makes it private before it serves
    master.kill9(); // leaves drover.db-wal and -shm behind, as a crash does
    minion.stop();
    loosen(&mdir);
    loosen(&ndir);
    assert!(names(&mdir).contains(&"drover.db-wal".to_string()));
    master.restart();
    minion.restart();
    master.wait_for_minions(1);
    assert_eq!(open_to_others(&mdir), Vec::<String>::new(), "master state after a restart");
    assert_eq!(open_to_others(&ndir), Vec::<String>::new(), "minion state after a restart");
    let (mlog, nlog) = (master.log(), minion.log());
    for (log, path) in [
        (&mlog, mdir.clone()),
        (&mlog, mdir.join("drover.db-wal")),
        (&mlog, mdir.join("pki/master.key")),
        (&nlog, ndir.join("cache")),
        (&nlog, ndir.join("pki/minion.key")),
    ] {
        let mode = if path.is_dir() { "0755" } else { "0644" };
        let want =
            format!("private state {} had mode {mode}, open to other users; changed it to", path.display());
        assert!(log.contains(&want), "{want:?} not logged:\n{log}");
    }
    // and it still works
    let (code, v, stderr) = master.drover_json(&["m1", "test.ping"]);
    assert_eq!((code, v), (0, json!({"m1": true})), "{stderr}");
}
