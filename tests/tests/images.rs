//! Images without a registry, against the real engine: the base made from Debian packages
//! (or found by its hash: it is cached across runs and no test removes it), app images
//! built through the master's API by `drover image build`, their labels, the minion as
//! their entrypoint, a tag never rebuilt, a failed build leaving no tag, a full disk during
//! the base build leaving no image. Every other image a test makes is named for its
//! [`Scope`] (`<fleet>-app:1`) and removed with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use fleet::Engine;
use fleet::docker::Docker;
use fleet::engine::{LABEL_COMMIT, LABEL_CONTENT, LABEL_IMAGE, LABEL_VERSION};
use fleet::image::{Builder, Debootstrap, Definition, Paths, Progress};
use serde_json::Value;
use tests::docker::{Scope, docker, required};
use tests::{Master, bin, repo_root, show, write_files};

/// Building a base runs debootstrap, which needs root (CI has it). Without root the test
/// fails when Docker tests are required, else says it skipped.
fn root() -> bool {
    let uid =
        Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let ok = uid.is_ok_and(|u| u == "0");
    if !ok {
        assert!(
            std::env::var("DROVER_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "DROVER_REQUIRE_DOCKER=1 but this test is not root: building the base image needs root"
        );
        eprintln!("skipped: building the base image needs root");
    }
    ok
}

/// `docker image inspect --format FORMAT image`, or None when there is no such image.
fn inspect(image: &str, format: &str) -> Option<String> {
    let out = Command::new("docker").args(["image", "inspect", "--format", format, image]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker run --rm FLAGS IMAGE ARGS` in the scope (the container named and labelled for
/// it), returning (exit code, stdout).
fn run(scope: &Scope, flags: &[&str], image: &str, args: &[&str]) -> (i32, String) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{}-run-{}", scope.fleet, RUNS.fetch_add(1, Ordering::SeqCst));
    let out = Command::new("docker")
        .args(["run", "--rm", "--name", &name, "--label", &scope.label()])
        .args(flags)
        .arg(image)
        .args(args)
        .output()
        .expect("docker run");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=drover-tests", "-c", "user.email=tests@drover.invalid"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_is_made_from_debian_packages_once_then_found_by_its_hash() {
    if !required() || !root() {
        return;
    }
    let scope = Scope::new("base");
    let work = tempfile::tempdir().unwrap();
    let builder = Builder {
        engine: Docker::connect().await.unwrap(),
        bootstrap: Debootstrap,
        paths: Paths {
            base: repo_root().join("images/base"),
            work: work.path().to_path_buf(),
            locks: std::env::temp_dir().join("drover-locks"),
            minion: bin("drover-minion"),
        },
    };
    let def = Definition::load(&builder.paths.base).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    // built now, or by an earlier run (or test) on this engine
    let first = builder.ensure_base(&def, &tx).await.unwrap();
    assert_eq!(first.tag, def.tag());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let second = builder.ensure_base(&def, &tx).await.unwrap();
    assert!(!second.built, "a second build is a no-op");
    assert_eq!(second.id, first.id);
    match rx.try_recv() {
        Ok(Progress::Phase(said)) => {
            assert!(said.starts_with(&format!("{} is up to date", def.tag())), "{said}")
        }
        other => panic!("{other:?}"),
    }
    assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "the scratch folder is gone");

    let image = builder.engine.image(&def.tag()).await.unwrap().expect("base:<hash>");
    assert_eq!(image.id, first.id);
    assert_eq!(image.labels.get(LABEL_IMAGE).map(String::as_str), Some("base"));
    assert_eq!(image.labels.get(LABEL_CONTENT), Some(&def.content()));
    assert_eq!(image.labels.get(LABEL_VERSION).map(String::as_str), Some(&def.tag()["base:".len()..]));
    assert!(inspect("base:latest", "{{.Id}}").is_some());

    // Debian's packages are in it, apt's downloads and lists are not
    let (code, out) = run(
        &scope,
        &[],
        &def.tag(),
        &[
            "sh",
            "-c",
            "redis-server --version && haproxy -v | head -1 && busybox true && ps --version && \
             echo debs=$(ls /var/cache/apt/archives | grep -c deb) lists=$(ls /var/lib/apt/lists | grep -vc partial)",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Redis server v=") && out.contains("HAProxy version"), "{out}");
    assert!(out.contains("debs=0 lists=0"), "{out}");
}

#[test]
fn an_app_image_runs_the_minion_and_a_tag_is_never_rebuilt() {
    if !required() || !root() {
        return;
    }
    let scope = Scope::new("app");
    let master = Master::start(&[
        "--repo",
        repo_root().to_str().unwrap(),
        "--minion-bin",
        bin("drover-minion").to_str().unwrap(),
    ]);
    // a config repository with the image's folder in it, as images/<name>/
    let repo = tempfile::tempdir().unwrap();
    let ctx = repo.path().join("images/app");
    write_files(
        &ctx,
        &[("Dockerfile", "FROM base\nCOPY hello.txt /etc/hello.txt\n"), ("hello.txt", "hello\n")],
    );
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "app"]);
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    let name = format!("{}-app", scope.fleet);
    let tag = format!("{name}:1");
    let dir = ctx.to_str().unwrap();

    // built (the base on the way, if this engine has not got it yet)
    let out = master.drover(&["--out", "json", "image", "build", dir, "--tag", &tag]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["tag"], tag.as_str());
    assert_eq!(built["up_to_date"], false);
    assert!(built["base"].as_str().unwrap().starts_with("base:"), "{built}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Step 1/") && stderr.contains(&format!("built {tag}")), "{stderr}");

    // its labels
    let labels: Value = serde_json::from_str(&inspect(&tag, "{{json .Config.Labels}}").unwrap()).unwrap();
    assert_eq!(labels[LABEL_IMAGE], name.as_str());
    assert_eq!(labels[LABEL_VERSION], "1");
    assert_eq!(labels[LABEL_COMMIT], head.as_str());
    assert_eq!(labels[LABEL_CONTENT], built["content"]);
    assert_eq!(built["content"].as_str().unwrap().len(), 64);

    // the minion is its entrypoint, checked by its health check; the user's file is in it
    assert_eq!(inspect(&tag, "{{json .Config.Entrypoint}}").unwrap(), r#"["/usr/local/bin/drover-minion"]"#);
    let health = inspect(&tag, "{{json .Config.Healthcheck.Test}}").unwrap();
    assert_eq!(health, r#"["CMD","/usr/local/bin/drover-minion","health"]"#);
    let (code, version) = run(&scope, &[], &tag, &["--version"]);
    assert_eq!(code, 0, "{version}");
    assert!(version.starts_with("drover-minion "), "{version}");
    let (code, hello) = run(&scope, &["--entrypoint", "cat"], &tag, &["/etc/hello.txt"]);
    assert_eq!((code, hello.as_str()), (0, "hello\n"));
    let folders = ["/var/lib/drover/minion", "/var/lib", "/usr/local/bin", "/usr/local/bin/drover-minion"];
    let (code, modes) =
        run(&scope, &["--entrypoint", "stat"], &tag, &[&["-c", "%a %U"][..], &folders].concat());
    assert_eq!((code, modes.as_str()), (0, "700 root\n755 root\n755 root\n755 root\n"));

    // the same content again: up to date, nothing built
    let id = inspect(&tag, "{{.Id}}").unwrap();
    let out = master.drover(&["image", "build", dir, "--tag", &tag]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{tag} is up to date")),
        "{}",
        show(&out)
    );

    // other content under the same tag: refused, the image untouched
    write_files(&ctx, &[("hello.txt", "changed\n")]);
    let out = master.drover(&["image", "build", dir, "--tag", &tag]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want =
        format!("drover: {tag} exists with other content (built from commit {}, content ", &head[..12]);
    assert!(stderr.starts_with(&want), "{stderr}");
    assert!(stderr.trim_end().ends_with("a tag is never rebuilt: build a new version"), "{stderr}");
    assert_eq!(inspect(&tag, "{{.Id}}").unwrap(), id);

    // ... built as a new version, with the dirty commit
    let tag2 = format!("{name}:2");
    let out = master.drover(&["image", "build", dir, "--tag", &tag2]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        inspect(&tag2, &format!("{{{{index .Config.Labels \"{LABEL_COMMIT}\"}}}}")).unwrap(),
        format!("{head}-dirty")
    );

    // listed, oldest first
    let (code, list, err) = master.drover_json(&["image", "list", &name]);
    assert_eq!(code, 0, "{err}");
    let tags: Vec<&str> = list.as_array().unwrap().iter().map(|i| i["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, [tag.as_str(), tag2.as_str()]);
    let out = master.drover(&["image", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME") && text.contains(&tag2) && text.contains("base:"), "{text}");
}

#[test]
fn a_failed_build_leaves_no_tag_and_says_what_failed() {
    if !required() || !root() {
        return;
    }
    let scope = Scope::new("fail");
    let master = Master::start(&[
        "--repo",
        repo_root().to_str().unwrap(),
        "--minion-bin",
        bin("drover-minion").to_str().unwrap(),
    ]);
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM base\nRUN echo doomed-step-output && false\n")]);
    let tag = format!("{}-bad:1", scope.fleet);
    let out = master.drover(&["image", "build", ctx.path().to_str().unwrap(), "--tag", &tag]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("  | doomed-step-output"), "{stderr}");
    assert!(
        stderr.contains(&format!("drover: building {tag} failed at step 2/"))
            && stderr.contains("returned a non-zero code: 1"),
        "{stderr}"
    );
    assert_eq!(inspect(&tag, "{{.Id}}"), None);

    // a Dockerfile that cannot carry the minion is refused before anything is built
    write_files(ctx.path(), &[("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")]);
    let out = master.drover(&["image", "build", ctx.path().to_str().unwrap(), "--tag", &tag]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "drover: Dockerfile line 1: the last stage must build on the base image (FROM base)"
        ),
        "{}",
        show(&out)
    );
    assert_eq!(inspect(&tag, "{{.Id}}"), None);
}

/// A tmpfs mounted for the test, unmounted when it ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "mount a tmpfs at {}", path.display());
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_the_base_build_is_named_and_leaves_no_image() {
    if !required() || !root() {
        return;
    }
    let scope = Scope::new("full");
    // a base no run ever completes (so it is never cached), on a build disk too small for it
    let repo = tempfile::tempdir().unwrap();
    let base = "suite: bookworm\npackages: [busybox, hello]\n";
    write_files(repo.path(), &[("images/base/base.yaml", base)]);
    let def = Definition::parse(base, "base.yaml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    let _tmpfs = Tmpfs::mount(&build, "16m");
    let master = Master::start(&[
        "--repo",
        repo.path().to_str().unwrap(),
        "--build-dir",
        build.to_str().unwrap(),
        "--minion-bin",
        bin("drover-minion").to_str().unwrap(),
    ]);
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM base\n")]);
    let tag = format!("{}-app:1", scope.fleet);
    let out = master.drover(&["image", "build", ctx.path().to_str().unwrap(), "--tag", &tag]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("drover: no space left on device in {} while ", build.display());
    assert!(stderr.contains(&want), "{stderr}");
    assert!(stderr.contains(&format!("building {} from ", def.tag())), "{stderr}");

    let filter = format!("label={LABEL_CONTENT}={}", def.content());
    assert_eq!(docker(&["images", "-q", "--filter", &filter]).trim(), "", "no half-imported base");
    assert_eq!(inspect(&def.tag(), "{{.Id}}"), None);
    assert_eq!(inspect(&tag, "{{.Id}}"), None);
    let left: Vec<_> = std::fs::read_dir(&build).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the scratch folder is gone: {left:?}");
}

#[test]
fn without_an_engine_image_commands_say_so_in_one_line_and_plain_hosts_are_served() {
    // the master reaches the engine only for images: it starts, and serves keys, without one
    let master = Master::start_with_env(&[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let out = master.drover(&["key", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM base\n")]);
    for args in [&["image", "list"][..], &["image", "build", ctx.path().to_str().unwrap(), "--tag", "x:1"]] {
        let out = master.drover(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("drover: cannot reach the Docker engine at unix:///nonexistent/docker.sock: "),
            "{stderr}"
        );
    }
}
