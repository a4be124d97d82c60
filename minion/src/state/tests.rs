//! The state engine on small state files in temp dirs, with a recording fake supervisor.
//!
//! Each test writes a state file as a user would (`$DIR` stands for the test's temp dir),
//! applies it, and compares every result, shown as
//! `<id> <function> <result>: <comment>` and its changes as YAML, with what is expected.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use render::{Context, Files, Minion, Plan, Role, StateId};
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::daemons::{DaemonOutcome, Daemons};

/// Records every call; "runs" daemons in a set. Names in `broken` fail to start.
#[derive(Default)]
struct FakeDaemons {
    calls: Mutex<Vec<String>>,
    running: Mutex<BTreeSet<String>>,
    broken: BTreeSet<String>,
}

impl FakeDaemons {
    fn running(names: &[&str]) -> Self {
        let fake = FakeDaemons::default();
        fake.running.lock().unwrap().extend(names.iter().map(|n| n.to_string()));
        fake
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Daemons for FakeDaemons {
    async fn ensure_running(&self, spec: &render::DaemonRunning, restart: bool, test: bool) -> DaemonOutcome {
        self.record(format!("ensure_running {} restart={restart} test={test}", spec.name));
        let name = &spec.name;
        if self.broken.contains(name) {
            return DaemonOutcome {
                result: false,
                changed: false,
                comment: format!("{name} exited at once with status 1"),
                changes: json!({}),
            };
        }
        let mut running = self.running.lock().unwrap();
        let (comment, changes) = match (running.contains(name), restart) {
            (true, false) => {
                return DaemonOutcome {
                    result: true,
                    changed: false,
                    comment: format!("{name} is already running"),
                    changes: json!({}),
                };
            }
            (true, true) => (format!("restarted {name}"), json!({"restarted": true})),
            (false, _) => (format!("started {name}"), json!({"pid": 42})),
        };
        if !test {
            running.insert(name.clone());
        }
        DaemonOutcome { result: true, changed: true, comment, changes }
    }

    async fn ensure_stopped(&self, name: &str, test: bool) -> DaemonOutcome {
        self.record(format!("ensure_stopped {name} test={test}"));
        let mut running = self.running.lock().unwrap();
        if !running.contains(name) {
            return DaemonOutcome {
                result: true,
                changed: false,
                comment: format!("{name} is not running"),
                changes: json!({}),
            };
        }
        if !test {
            running.remove(name);
        }
        DaemonOutcome {
            result: true,
            changed: true,
            comment: format!("stopped {name}"),
            changes: json!({"stopped": true}),
        }
    }

    async fn retain(&self, keep: &BTreeSet<String>) -> Vec<String> {
        self.record(format!("retain {}", keep.iter().cloned().collect::<Vec<_>>().join(",")));
        let mut running = self.running.lock().unwrap();
        let stopped: Vec<String> = running.iter().filter(|n| !keep.contains(*n)).cloned().collect();
        running.retain(|n| keep.contains(n));
        stopped
    }
}

/// A temp dir, the files of a one-role repository and what an apply needs.
struct Case {
    dir: TempDir,
    plan: Plan,
    ctx: Context,
    sources: Files,
}

impl Case {
    /// `state` is `states/t/init.yaml` with `$DIR` replaced; `sources` are files next to it.
    fn new(state: &str, sources: &[(&str, &str)]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new();
        files.insert("states/t/init.yaml".into(), dedent(state).replace("$DIR", &path_of(dir.path())));
        let role =
            Role { name: "r".into(), states: vec![StateId::parse("t.init").unwrap()], ..Role::default() };
        let minion = Minion {
            id: "m1".into(),
            pillar: json!({"greeting": "hello"}).as_object().unwrap().clone(),
            ..Minion::default()
        };
        let ctx = Context::new(&minion, std::slice::from_ref(&role));
        let plan =
            render::plan(&files, &[role], &ctx).unwrap_or_else(|d| panic!("bad test state file: {d:?}"));
        let sources = sources.iter().map(|(p, c)| (format!("states/t/{p}"), dedent(c))).collect();
        Case { dir, plan, ctx, sources }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    async fn apply(&self, opts: &ApplyOptions, daemons: &FakeDaemons) -> Applied {
        apply(&self.plan, &self.sources, &self.ctx, opts, daemons).await
    }

    /// Applies and shows the results.
    async fn run(&self, opts: &ApplyOptions, daemons: &FakeDaemons) -> String {
        let applied = self.apply(opts, daemons).await;
        self.show(&applied)
    }

    async fn check(&self, opts: &ApplyOptions, daemons: &FakeDaemons, expected: &str) {
        let shown = self.run(opts, daemons).await;
        assert_eq!(shown, dedent(expected), "\n--- got:\n{shown}");
    }

    fn show(&self, applied: &Applied) -> String {
        let mut out = String::new();
        for (i, r) in applied.results.iter().enumerate() {
            assert_eq!(r.run_num, i);
            assert!(r.duration >= 0.0);
            let result = match r.result {
                Some(b) => b.to_string(),
                None => "null".into(),
            };
            out.push_str(&format!("{} {} {result}: {}\n", r.id, r.function, r.comment));
            let mut changes = r.changes.clone();
            if let Some(pid) = changes.get_mut("pid") {
                *pid = json!("$PID");
            }
            if changes != json!({}) {
                let yaml = serde_yaml::to_string(&changes).unwrap();
                for line in yaml.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        out.replace(&path_of(self.dir.path()), "$DIR")
    }
}

fn path_of(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Removes the indentation of the first non-empty line from every line, and the first line
/// break, so expected text can be indented like the code around it.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text.lines().find(|l| !l.trim().is_empty()).map_or(0, |l| l.len() - l.trim_start().len());
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line.get(indent..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

fn opts() -> ApplyOptions {
    ApplyOptions::default()
}

fn test_opts() -> ApplyOptions {
    ApplyOptions { test: true, ..ApplyOptions::default() }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Everything under `dir`: kind, mode, mtime and contents or link target of each entry.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else {
            format!("file {:?}", std::fs::read(&path).unwrap())
        };
        let mtime = meta.modified().ok();
        found.insert(path_of(&path), format!("{what} mode {:o} mtime {mtime:?}", meta.permissions().mode()));
    }
    found
}

#[tokio::test]
async fn managed_creates_then_is_idempotent() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: $DIR/a.conf
            - contents: |
                port = 1
                host = "x"
            - mode: '0640'
        "#,
        &[],
    );
    let daemons = FakeDaemons::default();
    case.check(
        &opts(),
        &daemons,
        r#"
        conf file.managed true: file $DIR/a.conf created
          diff: |
            --- /dev/null
            +++ $DIR/a.conf
            @@ -0,0 +1,2 @@
            +port = 1
            +host = "x"
          mode: '0640'
        "#,
    )
    .await;
    assert_eq!(std::fs::read_to_string(case.path("a.conf")).unwrap(), "port = 1\nhost = \"x\"\n");
    assert_eq!(mode_of(&case.path("a.conf")), 0o640);
    let again = case.apply(&opts(), &daemons).await;
    assert_eq!(case.show(&again), "conf file.managed true: file $DIR/a.conf is in the correct state\n");
    assert_eq!((again.changed, again.failed.len()), (0, 0));
    // no temporary file is left behind
    let names: Vec<_> = std::fs::read_dir(case.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["a.conf"]);
}

#[tokio::test]
async fn managed_updates_with_a_diff_and_keeps_the_mode() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: $DIR/a.conf
            - contents: "a\nb = 2\nc\n"
        "#,
        &[],
    );
    std::fs::write(case.path("a.conf"), "a\nb = 1\nc\n").unwrap();
    std::fs::set_permissions(case.path("a.conf"), std::fs::Permissions::from_mode(0o600)).unwrap();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        conf file.managed true: file $DIR/a.conf updated
          diff: |
            --- $DIR/a.conf
            +++ $DIR/a.conf
            @@ -1,3 +1,3 @@
             a
            -b = 1
            +b = 2
             c
        "#,
    )
    .await;
    assert_eq!(std::fs::read_to_string(case.path("a.conf")).unwrap(), "a\nb = 2\nc\n");
    assert_eq!(mode_of(&case.path("a.conf")), 0o600);
}

#[tokio::test]
async fn a_large_change_is_written_without_computing_its_diff() {
    let lines = |word: &str| (0..60_000).map(|i| format!("{word} line {i}\n")).collect::<String>();
    let case = Case::new(
        r#"
        big:
          file.managed:
            - name: $DIR/big.conf
            - source: t/big.conf
        "#,
        &[("big.conf", &lines("new"))],
    );
    std::fs::write(case.path("big.conf"), lines("old")).unwrap();
    let bytes = lines("old").len() + lines("new").len();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        &format!(
            "big file.managed true: file $DIR/big.conf updated\n  diff: '<too large to show: {bytes} bytes in 120000 lines \
             differ; diffs are shown up to 262144 bytes and 10000 lines>'\n"
        ),
    )
    .await;
    assert!(std::fs::read_to_string(case.path("big.conf")).unwrap() == lines("new"), "the file was written");

    // one line changed in the same large file: that is diffed
    std::fs::write(case.path("big.conf"), lines("new").replace("new line 30000\n", "edited\n")).unwrap();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        big file.managed true: file $DIR/big.conf updated
          diff: |
            --- $DIR/big.conf
            +++ $DIR/big.conf
            @@ -29998,7 +29998,7 @@
             new line 29997
             new line 29998
             new line 29999
            -edited
            +new line 30000
             new line 30001
             new line 30002
             new line 30003
        "#,
    )
    .await;
}

#[tokio::test]
async fn managed_changes_only_the_mode_when_the_contents_are_right() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: $DIR/a.conf
            - contents: same
            - mode: 600
        "#,
        &[],
    );
    std::fs::write(case.path("a.conf"), "same").unwrap();
    std::fs::set_permissions(case.path("a.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        conf file.managed true: file $DIR/a.conf updated
          mode: '0600'
        "#,
    )
    .await;
    assert_eq!(mode_of(&case.path("a.conf")), 0o600);
}

#[tokio::test]
async fn managed_makes_parent_directories_only_when_asked() {
    let case = Case::new(
        r#"
        without:
          file.managed:
            - name: $DIR/x/y/a
            - contents: a
        with:
          file.managed:
            - name: $DIR/p/q/b
            - contents: b
            - makedirs: true
        "#,
        &[],
    );
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        without file.managed false: directory $DIR/x/y does not exist; expected it, or `makedirs: true` to create it
        with file.managed true: file $DIR/p/q/b created
          diff: |
            --- /dev/null
            +++ $DIR/p/q/b
            @@ -0,0 +1 @@
            +b
            \ No newline at end of file
        "#,
    )
    .await;
    assert!(!case.path("x").exists());
    assert_eq!(std::fs::read_to_string(case.path("p/q/b")).unwrap(), "b");
}

#[tokio::test]
async fn managed_sources_plain_and_rendered() {
    let case = Case::new(
        r#"
        rendered:
          file.managed:
            - name: $DIR/rendered.toml
            - source: t/worker.toml
            - template: tera
        plain:
          file.managed:
            - name: $DIR/plain.txt
            - source: t/plain.txt
        missing:
          file.managed:
            - name: $DIR/missing.txt
            - source: t/missing.txt
        broken:
          file.managed:
            - name: $DIR/broken.txt
            - source: t/broken.txt
            - template: tera
        empty:
          file.managed:
            - name: $DIR/empty
        "#,
        &[
            ("worker.toml", "id = \"{{ id }}\"\ngreeting = \"{{ pillar.greeting }}\"\n"),
            ("plain.txt", "{{ kept as written }}\n"),
            ("broken.txt", "a\n{{ pillar.nope }}\n"),
        ],
    );
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        rendered file.managed true: file $DIR/rendered.toml created
          diff: |
            --- /dev/null
            +++ $DIR/rendered.toml
            @@ -0,0 +1,2 @@
            +id = "m1"
            +greeting = "hello"
        plain file.managed true: file $DIR/plain.txt created
          diff: |
            --- /dev/null
            +++ $DIR/plain.txt
            @@ -0,0 +1 @@
            +{{ kept as written }}
        missing file.managed false: source states/t/missing.txt is not among the files this minion was given; expected the master to send it
        broken file.managed false: cannot render states/t/broken.txt: states/t/broken.txt:2:11: field `nope` is not defined. Available fields: greeting
        empty file.managed true: file $DIR/empty created
          diff: new empty file
        "#,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(case.path("rendered.toml")).unwrap(),
        "id = \"m1\"\ngreeting = \"hello\"\n"
    );
    assert_eq!(std::fs::read_to_string(case.path("empty")).unwrap(), "");
    assert!(!case.path("missing.txt").exists() && !case.path("broken.txt").exists());
}

#[tokio::test]
async fn managed_refuses_directories_and_reports_os_errors() {
    let case = Case::new(
        r#"
        over-a-directory:
          file.managed:
            - name: $DIR/d
            - contents: x
        under-a-file:
          file.managed:
            - name: $DIR/f/x
            - contents: x
        "#,
        &[],
    );
    std::fs::create_dir(case.path("d")).unwrap();
    std::fs::write(case.path("f"), "a file").unwrap();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        over-a-directory file.managed false: $DIR/d is a directory; refusing to replace it with a file
        under-a-file file.managed false: cannot inspect $DIR/f/x: Not a directory (os error 20)
        "#,
    )
    .await;
}

#[tokio::test]
async fn managed_follows_a_symlink() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: $DIR/link
            - contents: new
        "#,
        &[],
    );
    std::fs::write(case.path("real"), "old").unwrap();
    std::os::unix::fs::symlink(case.path("real"), case.path("link")).unwrap();
    let applied = case.apply(&opts(), &FakeDaemons::default()).await;
    assert_eq!(applied.results[0].comment, format!("file {} updated", path_of(&case.path("link"))));
    assert!(std::fs::symlink_metadata(case.path("link")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(case.path("real")).unwrap(), "new");
}

#[tokio::test]
async fn owners_are_looked_up_by_name() {
    let case = Case::new(
        r#"
        unknown-user:
          file.managed:
            - name: $DIR/u
            - user: no-such-user-drover
        unknown-group:
          file.directory:
            - name: $DIR/g
            - group: no-such-group-drover
        nobody:
          file.managed:
            - name: $DIR/n
            - user: nobody
        "#,
        &[],
    );
    let shown = case.run(&opts(), &FakeDaemons::default()).await;
    let nobody = if nix::unistd::geteuid().is_root() {
        "nobody file.managed true: file $DIR/n created\n  diff: new empty file\n  user: nobody\n".to_string()
    } else {
        "nobody file.managed false: cannot change the owner of $DIR/n: Operation not permitted (os error 1)\n"
            .to_string()
    };
    let expected = dedent(
        r#"
        unknown-user file.managed false: user `no-such-user-drover` does not exist on this minion
        unknown-group file.directory false: group `no-such-group-drover` does not exist on this minion
        "#,
    ) + &nobody;
    assert_eq!(shown, expected);
    assert!(!case.path("u").exists() && !case.path("g").exists());
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(std::fs::metadata(case.path("n")).unwrap().uid(), nobody.uid.as_raw());
        let again = case.apply(&opts(), &FakeDaemons::default()).await;
        assert_eq!(
            again.results[2].comment,
            format!("file {} is in the correct state", path_of(&case.path("n")))
        );
    }
}

#[tokio::test]
async fn directories() {
    let case = Case::new(
        r#"
        nested:
          file.directory:
            - name: $DIR/a/b/c
            - makedirs: true
            - mode: '0700'
        no-parent:
          file.directory:
            - name: $DIR/x/y
        existing:
          file.directory:
            - name: $DIR/e
            - mode: '0750'
        a-file:
          file.directory:
            - name: $DIR/f
        "#,
        &[],
    );
    std::fs::create_dir(case.path("e")).unwrap();
    std::fs::set_permissions(case.path("e"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(case.path("f"), "").unwrap();
    let daemons = FakeDaemons::default();
    case.check(
        &opts(),
        &daemons,
        r#"
        nested file.directory true: directory $DIR/a/b/c created
          created: true
          mode: '0700'
        no-parent file.directory false: directory $DIR/x does not exist; expected it, or `makedirs: true` to create it
        existing file.directory true: directory $DIR/e updated
          mode: '0750'
        a-file file.directory false: $DIR/f is a file; expected a directory
        "#,
    )
    .await;
    assert_eq!((mode_of(&case.path("a/b/c")), mode_of(&case.path("e"))), (0o700, 0o750));
    let again = case.apply(&opts(), &daemons).await;
    assert_eq!(
        again.results[0].comment,
        format!("directory {} is in the correct state", path_of(&case.path("a/b/c")))
    );
    assert_eq!(
        again.results[2].comment,
        format!("directory {} is in the correct state", path_of(&case.path("e")))
    );
}

#[tokio::test]
async fn absent_removes_files_links_and_trees() {
    let case = Case::new(
        r#"
        a-file:
          file.absent:
            - name: $DIR/f
        a-link:
          file.absent:
            - name: $DIR/link
        a-tree:
          file.absent:
            - name: $DIR/tree
        nothing:
          file.absent:
            - name: $DIR/none
        "#,
        &[],
    );
    std::fs::write(case.path("f"), "x").unwrap();
    std::fs::write(case.path("target"), "kept").unwrap();
    std::os::unix::fs::symlink(case.path("target"), case.path("link")).unwrap();
    std::fs::create_dir_all(case.path("tree/sub")).unwrap();
    std::fs::write(case.path("tree/sub/x"), "x").unwrap();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        a-file file.absent true: removed $DIR/f (a file)
          removed: $DIR/f
        a-link file.absent true: removed $DIR/link (a symlink)
          removed: $DIR/link
        a-tree file.absent true: removed $DIR/tree (a directory)
          removed: $DIR/tree
        nothing file.absent true: file $DIR/none is already absent
        "#,
    )
    .await;
    let left: Vec<_> = std::fs::read_dir(case.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["target"]);
}

#[tokio::test]
async fn symlinks() {
    let case = Case::new(
        r#"
        new:
          file.symlink:
            - name: $DIR/new
            - target: /etc/hostname
        retarget:
          file.symlink:
            - name: $DIR/retarget
            - target: b
        in-the-way:
          file.symlink:
            - name: $DIR/file
            - target: b
        forced-file:
          file.symlink:
            - name: $DIR/forced-file
            - target: b
            - force: true
        forced-dir:
          file.symlink:
            - name: $DIR/forced-dir
            - target: b
            - force: true
        "#,
        &[],
    );
    std::os::unix::fs::symlink("a", case.path("retarget")).unwrap();
    std::fs::write(case.path("file"), "x").unwrap();
    std::fs::write(case.path("forced-file"), "x").unwrap();
    std::fs::create_dir_all(case.path("forced-dir/sub")).unwrap();
    let daemons = FakeDaemons::default();
    case.check(
        &opts(),
        &daemons,
        r#"
        new file.symlink true: symlink $DIR/new -> /etc/hostname created
          new: /etc/hostname
        retarget file.symlink true: symlink $DIR/retarget -> b changed
          new: b
          old: a
        in-the-way file.symlink false: $DIR/file is a file, not a symlink; expected `force: true` to replace it
        forced-file file.symlink true: symlink $DIR/forced-file -> b created
          new: b
          replaced: a file
        forced-dir file.symlink true: symlink $DIR/forced-dir -> b created
          new: b
          replaced: a directory
        "#,
    )
    .await;
    for (link, target) in
        [("new", "/etc/hostname"), ("retarget", "b"), ("forced-file", "b"), ("forced-dir", "b")]
    {
        assert_eq!(std::fs::read_link(case.path(link)).unwrap(), Path::new(target), "{link}");
    }
    let again = case.apply(&opts(), &daemons).await;
    let comments: Vec<_> =
        again.results.iter().map(|r| r.comment.replace(&path_of(case.dir.path()), "$DIR")).collect();
    assert_eq!(
        comments,
        [
            "symlink $DIR/new is in the correct state",
            "symlink $DIR/retarget is in the correct state",
            "$DIR/file is a file, not a symlink; expected `force: true` to replace it",
            "symlink $DIR/forced-file is in the correct state",
            "symlink $DIR/forced-dir is in the correct state",
        ]
    );
}

#[tokio::test]
async fn cmd_run_guards() {
    let case = Case::new(
        r#"
        created:
          cmd.run:
            - name: touch $DIR/never
            - creates: [$DIR/exists]
        one-missing:
          cmd.run:
            - name: touch $DIR/ran-1
            - creates: [$DIR/exists, $DIR/ran-1]
        onlyif-false:
          cmd.run:
            - name: touch $DIR/never
            - onlyif: test -e $DIR/nope
        onlyif-true:
          cmd.run:
            - name: touch $DIR/ran-2
            - onlyif: ["true", test -e $DIR/exists]
        unless-true:
          cmd.run:
            - name: touch $DIR/never
            - unless: test -e $DIR/exists
        unless-not-all:
          cmd.run:
            - name: touch $DIR/ran-3
            - unless: ["true", "false"]
        onlyif-cannot-run:
          cmd.run:
            - name: touch $DIR/never
            - onlyif: [[/no/such/program]]
        onlyif-in-a-shell:
          cmd.run:
            - name: touch $DIR/ran-4
            - onlyif: test -e $DIR/exists && ! test -e $DIR/nope
        "#,
        &[],
    );
    std::fs::write(case.path("exists"), "").unwrap();
    case.check(
        &opts(),
        &FakeDaemons::default(),
        r#"
        created cmd.run true: all files in creates exist: $DIR/exists
        one-missing cmd.run true: command `touch $DIR/ran-1` run
          pid: $PID
          retcode: 0
          stderr: ''
          stdout: ''
        onlyif-false cmd.run true: onlyif condition is false: `test -e $DIR/nope` exited 1
        onlyif-true cmd.run true: command `touch $DIR/ran-2` run
          pid: $PID
          retcode: 0
          stderr: ''
          stdout: ''
        unless-true cmd.run true: unless condition is true: `test -e $DIR/exists` exited 0
        unless-not-all cmd.run true: command `touch $DIR/ran-3` run
          pid: $PID
          retcode: 0
          stderr: ''
          stdout: ''
        onlyif-cannot-run cmd.run false: onlyif command `/no/such/program` could not run: cannot run '/no/such/program': no such file
        onlyif-in-a-shell cmd.run true: command `touch $DIR/ran-4` run
          pid: $PID
          retcode: 0
          stderr: ''
          stdout: ''
        "#,
    )
    .await;
    assert!(!case.path("never").exists());
    for ran in ["ran-1", "ran-2", "ran-3", "ran-4"] {
        assert!(case.path(ran).exists(), "{ran}");
    }
}

#[tokio::test]
async fn cmd_run_output_failure_cwd_and_env() {
    let case = Case::new(
        r#"
        greet:
          cmd.run:
            - name: echo "$GREETING from $(pwd)"; echo oops >&2
            - cwd: $DIR
            - env: {GREETING: hi}
        redirect:
          cmd.run:
            - name: echo yes > $DIR/f
        no-shell:
          cmd.run:
            - name: echo yes > $DIR/g
            - shell: false
        words:
          cmd.run:
            - name: ["printf", "%s|", "a b", "c"]
        fails:
          cmd.run:
            - name: exit 3
        missing:
          cmd.run:
            - name: /no/such/program --flag
            - shell: false
        "#,
        &[],
    );
    let real = std::fs::canonicalize(case.dir.path()).unwrap();
    let shown = case.run(&opts(), &FakeDaemons::default()).await.replace(&path_of(&real), "$DIR");
    assert_eq!(
        shown,
        dedent(
            r#"
            greet cmd.run true: command `echo "$GREETING from $(pwd)"; echo oops >&2` run
              pid: $PID
              retcode: 0
              stderr: oops
              stdout: hi from $DIR
            redirect cmd.run true: command `echo yes > $DIR/f` run
              pid: $PID
              retcode: 0
              stderr: ''
              stdout: ''
            no-shell cmd.run true: command `echo yes > $DIR/g` run
              pid: $PID
              retcode: 0
              stderr: ''
              stdout: yes > $DIR/g
            words cmd.run true: command `printf %s| a b c` run
              pid: $PID
              retcode: 0
              stderr: ''
              stdout: a b|c|
            fails cmd.run false: command `exit 3` run; it exited 3
              pid: $PID
              retcode: 3
              stderr: ''
              stdout: ''
            missing cmd.run false: cannot run '/no/such/program': no such file
            "#
        )
    );
    // the shell did the redirection; without one, `>` was an argument of echo
    assert_eq!(std::fs::read_to_string(case.path("f")).unwrap(), "yes\n");
    assert!(!case.path("g").exists());
}

#[tokio::test]
async fn a_hung_command_is_killed_after_its_timeout_and_fails() {
    let case = Case::new(
        r#"
        hangs:
          cmd.run:
            - name: ["/bin/sleep", "30"]
            - timeout: 300ms
        "#,
        &[],
    );
    let shown = case.run(&opts(), &FakeDaemons::default()).await;
    assert!(shown.starts_with("hangs cmd.run false"), "{shown}");
    assert!(shown.contains("timed out"), "{shown}");
}

#[tokio::test]
async fn a_failed_requisite_stops_its_dependents_and_theirs() {
    let case = Case::new(
        r#"
        broken:
          cmd.run:
            - name: "false"
        after:
          file.managed:
            - name: $DIR/after
            - require:
              - cmd: broken
        last:
          cmd.run:
            - name: touch $DIR/last
            - watch:
              - file: after
        reload:
          cmd.run:
            - name: touch $DIR/reload
            - onchanges:
              - cmd: broken
        independent:
          file.directory:
            - name: $DIR/independent
        "#,
        &[],
    );
    let applied = case.apply(&opts(), &FakeDaemons::default()).await;
    assert_eq!(
        case.show(&applied),
        dedent(
            r#"
            broken cmd.run false: command `false` run; it exited 1
              pid: $PID
              retcode: 1
              stderr: ''
              stdout: ''
            after file.managed false: one or more requisite failed: cmd: broken
            last cmd.run false: one or more requisite failed: file: after
            reload cmd.run false: one or more requisite failed: cmd: broken
            independent file.directory true: directory $DIR/independent created
              created: true
            "#
        )
    );
    assert_eq!(applied.failed, ["broken", "after", "last", "reload"]);
    assert!(!applied.success());
    assert!(!case.path("after").exists() && !case.path("last").exists() && !case.path("reload").exists());
}

#[tokio::test]
async fn onchanges_runs_only_when_a_prerequisite_changed() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: $DIR/conf
            - contents: v1
        reload:
          cmd.run:
            - name: touch $DIR/reloaded
            - onchanges:
              - file: conf
        "#,
        &[],
    );
    let daemons = FakeDaemons::default();
    let first = case.apply(&opts(), &daemons).await;
    assert_eq!(first.results[1].result, Some(true));
    assert_eq!(first.changed, 2);
    assert!(case.path("reloaded").exists());
    std::fs::remove_file(case.path("reloaded")).unwrap();
    case.check(
        &opts(),
        &daemons,
        r#"
        conf file.managed true: file $DIR/conf is in the correct state
        reload cmd.run true: state was not run because none of the onchanges reqs changed
        "#,
    )
    .await;
    assert!(!case.path("reloaded").exists());
}

#[tokio::test]
async fn onfail_runs_only_when_a_prerequisite_failed_and_handles_that_failure() {
    let case = Case::new(
        r#"
        deploy:
          cmd.run:
            - name: test -e $DIR/go
        rollback:
          cmd.run:
            - name: touch $DIR/rolled-back
            - onfail:
              - cmd: deploy
        notify:
          cmd.run:
            - name: touch $DIR/notified
        "#,
        &[],
    );
    // deploy fails: rollback runs, and the failure it handled is not the run's
    let daemons = FakeDaemons::default();
    let failed = case.apply(&opts(), &daemons).await;
    let shown = case.show(&failed);
    assert!(shown.starts_with("deploy cmd.run false: "), "{shown}");
    assert!(shown.contains("rollback cmd.run true: command `touch $DIR/rolled-back` run"), "{shown}");
    assert!(case.path("rolled-back").exists());
    assert_eq!(failed.failed, Vec::<String>::new());
    assert!(failed.success());

    // deploy succeeds: rollback is not run
    std::fs::remove_file(case.path("rolled-back")).unwrap();
    std::fs::write(case.path("go"), "").unwrap();
    let done = case.apply(&opts(), &daemons).await;
    assert_eq!(done.results[1].comment, "state was not run because none of the onfail reqs failed");
    assert_eq!(done.results[1].result, Some(true));
    assert!(!case.path("rolled-back").exists());
    assert!(done.success());
}

#[tokio::test]
async fn a_failed_onfail_handler_leaves_the_failure_the_runs() {
    let case = Case::new(
        r#"
        deploy:
          cmd.run:
            - name: "false"
        rollback:
          cmd.run:
            - name: "false"
            - onfail:
              - cmd: deploy
        "#,
        &[],
    );
    let applied = case.apply(&opts(), &FakeDaemons::default()).await;
    assert_eq!(applied.failed, ["deploy", "rollback"]);
    assert!(!applied.success());
}

#[tokio::test]
async fn requisites_written_in_are_those_of_the_state_they_name() {
    // `onchanges_in` on conf is `onchanges: [file: conf]` on reload; `require_in` and
    // `onfail_in` likewise
    let case = Case::new(
        r#"
        reload:
          cmd.run:
            - name: touch $DIR/reloaded
        conf:
          file.managed:
            - name: $DIR/conf
            - contents: v1
            - onchanges_in:
              - cmd: reload
        broken:
          cmd.run:
            - name: "false"
            - require_in:
              - cmd: after
            - onfail_in:
              - cmd: rescue
        after:
          cmd.run:
            - name: touch $DIR/after
        rescue:
          cmd.run:
            - name: touch $DIR/rescued
        "#,
        &[],
    );
    let daemons = FakeDaemons::default();
    let first = case.apply(&opts(), &daemons).await;
    let order: Vec<&str> = first.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(order, ["conf", "reload", "broken", "after", "rescue"]);
    assert!(case.path("reloaded").exists() && case.path("rescued").exists());
    assert_eq!(first.results[3].comment, "one or more requisite failed: cmd: broken");
    assert_eq!(first.failed, ["after"], "broken was handled by rescue; after was not");

    std::fs::remove_file(case.path("reloaded")).unwrap();
    let second = case.apply(&opts(), &daemons).await;
    assert_eq!(second.results[1].comment, "state was not run because none of the onchanges reqs changed");
    assert!(!case.path("reloaded").exists());
}

#[tokio::test]
async fn watch_in_restarts_the_daemon_it_names() {
    let case = Case::new(
        r#"
        worker-config:
          file.managed:
            - name: $DIR/worker.toml
            - contents: "port = 1\n"
            - watch_in:
              - daemon: worker
        worker:
          daemon.running:
            - cmd: [coins, worker]
        "#,
        &[],
    );
    let daemons = FakeDaemons::running(&["worker"]);
    case.apply(&opts(), &daemons).await;
    assert_eq!(daemons.calls(), ["ensure_running worker restart=true test=false", "retain worker"]);
    case.apply(&opts(), &daemons).await;
    assert_eq!(daemons.calls(), ["ensure_running worker restart=false test=false", "retain worker"]);
}

#[tokio::test]
async fn watch_restarts_a_daemon_only_when_the_watched_file_changed() {
    let case = Case::new(
        r#"
        worker:
          daemon.running:
            - cmd: ["/usr/local/bin/coins", "worker", "--config", "$DIR/worker.toml"]
            - watch:
              - file: worker-config
        worker-config:
          file.managed:
            - name: $DIR/worker.toml
            - contents: "port = 1\n"
        "#,
        &[],
    );
    let daemons = FakeDaemons::running(&["worker"]);
    let first = case.apply(&opts(), &daemons).await;
    assert_eq!(daemons.calls(), ["ensure_running worker restart=true test=false", "retain worker"]);
    assert_eq!(first.results[1].comment, "restarted worker");
    assert_eq!(first.results[1].changes, json!({"restarted": true}));
    assert_eq!(first.changed, 2);

    let second = case.apply(&opts(), &daemons).await;
    assert_eq!(daemons.calls(), ["ensure_running worker restart=false test=false", "retain worker"]);
    assert_eq!(second.results[1].comment, "worker is already running");
    assert_eq!(second.changed, 0);

    std::fs::write(case.path("worker.toml"), "edited by hand\n").unwrap();
    case.apply(&opts(), &daemons).await;
    assert_eq!(daemons.calls(), ["ensure_running worker restart=true test=false", "retain worker"]);
}

#[tokio::test]
async fn daemon_states_map_the_supervisors_outcome() {
    let case = Case::new(
        r#"
        old:
          daemon.dead: []
        gone:
          daemon.dead:
            - name: never-ran
        bad:
          daemon.running:
            - cmd: /bin/bad
        needs-bad:
          cmd.run:
            - name: touch $DIR/never
            - require:
              - daemon: bad
        good:
          daemon.running:
            - cmd: /bin/good
        "#,
        &[],
    );
    let daemons =
        FakeDaemons { broken: BTreeSet::from(["bad".to_string()]), ..FakeDaemons::running(&["old"]) };
    case.check(
        &opts(),
        &daemons,
        r#"
        old daemon.dead true: stopped old
          stopped: true
        gone daemon.dead true: never-ran is not running
        bad daemon.running false: bad exited at once with status 1
        needs-bad cmd.run false: one or more requisite failed: daemon: bad
        good daemon.running true: started good
          pid: $PID
        "#,
    )
    .await;
    assert_eq!(
        daemons.calls(),
        [
            "ensure_stopped old test=false",
            "ensure_stopped never-ran test=false",
            "ensure_running bad restart=false test=false",
            "ensure_running good restart=false test=false",
            "retain bad,good",
        ]
    );
}

#[tokio::test]
async fn only_the_plans_daemons_are_kept() {
    let case = Case::new(
        r#"
        web:
          daemon.running:
            - cmd: /bin/web
        db:
          daemon.running:
            - cmd: /bin/db
        "#,
        &[],
    );
    let daemons = FakeDaemons::running(&["web", "stray-a", "stray-b"]);
    let applied = case.apply(&opts(), &daemons).await;
    assert_eq!(
        case.show(&applied),
        dedent(
            r#"
            web daemon.running true: web is already running
            db daemon.running true: started db
              pid: $PID
            __retain__ daemon.dead true: stopped daemons that no applied state asks for: stray-a, stray-b
              stopped:
              - stray-a
              - stray-b
            "#
        )
    );
    assert_eq!(applied.stopped, ["stray-a", "stray-b"]);
    assert_eq!(applied.changed, 2);
    assert_eq!(daemons.calls().last().unwrap(), "retain db,web");

    // nothing more to stop: no retain result
    let again = case.apply(&opts(), &daemons).await;
    assert_eq!(again.results.len(), 2);
    assert!(again.stopped.is_empty());
    daemons.calls();

    // neither `test` nor `only` stops anything
    *daemons.running.lock().unwrap() = BTreeSet::from(["stray".to_string()]);
    case.apply(&test_opts(), &daemons).await;
    case.apply(&ApplyOptions { only: Some(vec!["web".into()]), ..opts() }, &daemons).await;
    assert!(daemons.calls().iter().all(|c| !c.starts_with("retain")));
    assert!(daemons.running.lock().unwrap().contains("stray"));
}

#[tokio::test]
async fn test_mode_changes_nothing_and_says_what_would_change() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: $DIR/conf
            - contents: "new\n"
            - mode: '0600'
        fresh:
          file.managed:
            - name: $DIR/sub/fresh
            - contents: "x\n"
            - makedirs: true
        same:
          file.managed:
            - name: $DIR/same
            - contents: same
        dir:
          file.directory:
            - name: $DIR/d
        gone:
          file.absent:
            - name: $DIR/old
        link:
          file.symlink:
            - name: $DIR/link
            - target: conf
        touch:
          cmd.run:
            - name: touch $DIR/touched
            - unless: test -e $DIR/nope
        reload:
          cmd.run:
            - name: touch $DIR/reloaded
            - onchanges:
              - file: conf
        skipped:
          cmd.run:
            - name: touch $DIR/skipped
            - onchanges:
              - file: same
        worker:
          daemon.running:
            - cmd: /bin/worker
            - watch:
              - file: conf
        old-daemon:
          daemon.dead: []
        "#,
        &[],
    );
    std::fs::write(case.path("conf"), "old\n").unwrap();
    std::fs::write(case.path("same"), "same").unwrap();
    std::fs::write(case.path("old"), "").unwrap();
    let before = snapshot(case.dir.path());
    let daemons = FakeDaemons::running(&["worker", "old-daemon"]);
    let applied = case.apply(&test_opts(), &daemons).await;
    assert_eq!(snapshot(case.dir.path()), before);
    assert_eq!(
        case.show(&applied),
        dedent(
            r#"
            conf file.managed null: file $DIR/conf would be updated
              diff: |
                --- $DIR/conf
                +++ $DIR/conf
                @@ -1 +1 @@
                -old
                +new
              mode: '0600'
            fresh file.managed null: file $DIR/sub/fresh would be created
              diff: |
                --- /dev/null
                +++ $DIR/sub/fresh
                @@ -0,0 +1 @@
                +x
            same file.managed true: file $DIR/same is in the correct state
            dir file.directory null: directory $DIR/d would be created
              created: true
            gone file.absent null: $DIR/old (a file) would be removed
              removed: $DIR/old
            link file.symlink null: symlink $DIR/link -> conf would be created
              new: conf
            touch cmd.run null: command `touch $DIR/touched` would run
            reload cmd.run null: command `touch $DIR/reloaded` would run
            skipped cmd.run true: state was not run because none of the onchanges reqs changed
            worker daemon.running null: restarted worker
              restarted: true
            old-daemon daemon.dead null: stopped old-daemon
              stopped: true
            "#
        )
    );
    assert_eq!(
        daemons.calls(),
        ["ensure_running worker restart=true test=true", "ensure_stopped old-daemon test=true"]
    );
    assert_eq!(applied.changed, 9);
    assert!(applied.failed.is_empty());
    assert_eq!(*daemons.running.lock().unwrap(), BTreeSet::from(["old-daemon".into(), "worker".into()]));
}

#[tokio::test]
async fn only_applies_the_states_asked_for() {
    let case = Case::new(
        r#"
        a:
          file.managed:
            - name: $DIR/a
        b:
          file.managed:
            - name: $DIR/b
            - require:
              - file: a
        c:
          cmd.run:
            - name: touch $DIR/c
            - onchanges:
              - file: a
        "#,
        &[],
    );
    let only = ApplyOptions { only: Some(vec!["b".into(), "c".into(), "zz".into()]), ..opts() };
    let applied = case.apply(&only, &FakeDaemons::default()).await;
    assert_eq!(
        case.show(&applied),
        dedent(
            r#"
            b file.managed true: file $DIR/b created
              diff: new empty file
            c cmd.run true: state was not run because none of the onchanges reqs changed
            "#
        )
    );
    assert_eq!(applied.unknown, ["zz"]);
    assert!(applied.failed.is_empty() && !applied.success());
    assert!(!case.path("a").exists() && !case.path("c").exists());
}

#[tokio::test]
async fn held_daemons_wait_without_failing() {
    let case = Case::new(
        r#"
        worker:
          daemon.running:
            - cmd: /bin/worker
        after:
          cmd.run:
            - name: touch $DIR/after
            - require:
              - daemon: worker
        stale:
          daemon.dead: []
        "#,
        &[],
    );
    let hold = ApplyOptions { hold_daemons: true, hold_reason: "role datastore".into(), ..opts() };
    let daemons = FakeDaemons::running(&["stale", "stray"]);
    let applied = case.apply(&hold, &daemons).await;
    assert_eq!(
        case.show(&applied),
        dedent(
            r#"
            worker daemon.running true: waiting for role datastore: worker is not started
            after cmd.run true: command `touch $DIR/after` run
              pid: $PID
              retcode: 0
              stderr: ''
              stdout: ''
            stale daemon.dead true: stopped stale
              stopped: true
            __retain__ daemon.dead true: stopped daemons that no applied state asks for: stray
              stopped:
              - stray
            "#
        )
    );
    assert_eq!(daemons.calls(), ["ensure_stopped stale test=false", "retain worker"]);
    assert!(applied.success());
}

#[tokio::test]
async fn the_return_is_salts_map() {
    let case = Case::new(
        r#"
        conf:
          file.managed:
            - name: /nonexistent-drover/x
        "#,
        &[],
    );
    let applied = case.apply(&test_opts(), &FakeDaemons::default()).await;
    let ret = applied.to_return();
    let map = ret.as_object().unwrap();
    assert_eq!(map.keys().collect::<Vec<_>>(), ["file_|-conf_|-/nonexistent-drover/x_|-managed"]);
    let r = &map["file_|-conf_|-/nonexistent-drover/x_|-managed"];
    assert_eq!(r["__id__"], json!("conf"));
    assert_eq!(r["__run_num__"], json!(0));
    assert_eq!(r["result"], json!(false));
    assert_eq!(
        r["comment"],
        json!("directory /nonexistent-drover does not exist; expected it, or `makedirs: true` to create it")
    );
    assert_eq!(r["changes"], json!({}));
    assert!(r["duration"].as_f64().is_some());
}

#[test]
fn apply_can_run_on_a_spawned_task() {
    fn send<T: Send>(_: &T) {}
    let case = Case::new("a:\n  file.absent:\n    - name: /nonexistent-drover/a\n", &[]);
    let (daemons, opts) = (FakeDaemons::default(), opts());
    let future = apply(&case.plan, &case.sources, &case.ctx, &opts, &daemons);
    send(&future);
}

#[test]
fn a_requisite_outside_the_plan_order_is_never_indexed() {
    // prerequisites come first; a status list that is too short is read as "not run"
    let case = Case::new(
        r#"
        a:
          file.absent:
            - name: /nonexistent-drover/a
        b:
          file.absent:
            - name: /nonexistent-drover/b
            - require:
              - file: a
        "#,
        &[],
    );
    assert_eq!(requisite::gate(&case.plan, 1, &[]), requisite::Gate::Run { watched_changed: false });
}
