//! The image builder's decisions against [`FakeEngine`] and a fake debootstrap: a base is
//! built once and then found by its hash, concurrent builds bootstrap once, a full disk
//! leaves nothing, a tag is never rebuilt with other content, a failed build leaves no tag.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex as AsyncMutex, mpsc};

use super::*;
use crate::engine::Labels;
use crate::fake::FakeEngine;

const BASE_YAML: &str = "suite: bookworm\npackages: [busybox]\n";

/// A debootstrap stand-in: writes a few files (apt's caches among them), counts its runs,
/// and can be held until the test lets it go, or fail as a full disk does.
#[derive(Clone, Default)]
struct FakeBootstrap {
    runs: Arc<AtomicUsize>,
    /// Held by the test: a run waits for it.
    gate: Arc<AsyncMutex<()>>,
    started: Option<mpsc::UnboundedSender<()>>,
    disk_full: bool,
    no_root: bool,
}

impl Bootstrap for FakeBootstrap {
    fn check(&self) -> Result<()> {
        if self.no_root {
            return Err(ImageError::Setup("building the base image needs root".into()));
        }
        Ok(())
    }

    async fn run(&self, _def: &Definition, root: &std::path::Path, progress: &ProgressTx) -> Result<()> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if let Some(started) = &self.started {
            let _ = started.send(());
        }
        let _held = self.gate.lock().await;
        std::fs::create_dir_all(root.join("var/cache/apt/archives")).unwrap();
        std::fs::write(root.join("var/cache/apt/archives/busybox.deb"), "deb").unwrap();
        std::fs::write(root.join("hello"), "hi").unwrap();
        let _ = progress.send(Progress::Output("I: Base system installed successfully.".into()));
        if self.disk_full {
            return Err(ImageError::Failed {
                reason: "debootstrap failed (exit status: 1)".into(),
                last_lines: vec!["xz: (stdout): Write error: No space left on device".into()],
            });
        }
        Ok(())
    }
}

struct Setup {
    dir: tempfile::TempDir,
    engine: FakeEngine,
    bootstrap: FakeBootstrap,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("base")).unwrap();
        std::fs::write(dir.path().join("base/base.yaml"), BASE_YAML).unwrap();
        std::fs::write(dir.path().join("drover-minion"), "\x7fELF minion").unwrap();
        Setup { dir, engine: FakeEngine::new(), bootstrap: FakeBootstrap::default() }
    }

    fn builder(&self) -> Builder<FakeEngine, FakeBootstrap> {
        let p = self.dir.path();
        Builder {
            engine: self.engine.clone(),
            bootstrap: self.bootstrap.clone(),
            paths: Paths {
                base: p.join("base"),
                work: p.join("work"),
                locks: p.join("locks"),
                minion: p.join("drover-minion"),
            },
        }
    }

    fn def(&self) -> Definition {
        Definition::load(&self.dir.path().join("base")).unwrap()
    }

    /// What is left in the work folder (nothing, after any build).
    fn scratch(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("work"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn channel() -> (ProgressTx, mpsc::UnboundedReceiver<Progress>) {
    mpsc::unbounded_channel()
}

fn phases(rx: &mut mpsc::UnboundedReceiver<Progress>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(p) = rx.try_recv() {
        if let Progress::Phase(text) = p {
            out.push(text);
        }
    }
    out
}

#[tokio::test]
async fn a_base_is_built_once_then_found_by_its_hash() {
    let s = Setup::new();
    let (b, def) = (s.builder(), s.def());
    let (tx, mut rx) = channel();
    let first = b.ensure_base(&def, &tx).await.unwrap();
    assert!(first.built);
    assert_eq!(first.tag, def.tag());
    assert_eq!(first.content, def.content());
    let tag = def.tag();
    let calls = s.engine.calls();
    assert_eq!(calls, [format!("import {tag}"), "tag base:latest".to_string()]);
    let image = s.engine.image(&tag).await.unwrap().unwrap();
    assert_eq!(image.labels.get(LABEL_IMAGE).map(String::as_str), Some("base"));
    assert_eq!(image.labels.get(LABEL_CONTENT), Some(&def.content()));
    assert_eq!(image.labels.get(LABEL_VERSION).map(String::as_str), Some(short(&def.content())));
    let said = phases(&mut rx);
    assert!(said.iter().any(|p| p.starts_with(&format!("built {tag}"))), "{said:?}");
    assert!(s.scratch().is_empty(), "{:?}", s.scratch());

    s.engine.clear_calls();
    let second = b.ensure_base(&def, &tx).await.unwrap();
    assert!(!second.built);
    assert_eq!(second.id, first.id);
    assert_eq!(s.bootstrap.runs.load(Ordering::SeqCst), 1);
    assert!(s.engine.calls().is_empty(), "{:?}", s.engine.calls());
    let said = phases(&mut rx);
    assert!(said[0].starts_with(&format!("{tag} is up to date")), "{said:?}");
}

#[tokio::test]
async fn concurrent_builds_of_one_base_bootstrap_once() {
    let mut s = Setup::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    s.bootstrap.started = Some(started_tx);
    let gate = s.bootstrap.gate.clone().lock_owned().await;
    let b = Arc::new(s.builder());
    let def = s.def();

    let (b1, d1) = (b.clone(), def.clone());
    let first = tokio::spawn(async move { b1.ensure_base(&d1, &channel().0).await });
    started.recv().await.unwrap();
    let (tx2, mut rx2) = channel();
    let (b2, d2) = (b.clone(), def.clone());
    let second = tokio::spawn(async move { b2.ensure_base(&d2, &tx2).await });
    // the second waits for the first's lock, then finds its image
    let waiting = rx2.recv().await.unwrap();
    assert_eq!(waiting, Progress::Phase(format!("waiting for another build of {} to finish", def.tag())));
    drop(gate);
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert!(first.built && !second.built);
    assert_eq!(first.id, second.id);
    assert_eq!(s.bootstrap.runs.load(Ordering::SeqCst), 1);
    assert_eq!(phases(&mut rx2), [format!("{} was built meanwhile", def.tag())]);
}

#[tokio::test]
async fn a_full_disk_leaves_no_image_and_no_scratch() {
    let mut s = Setup::new();
    s.bootstrap.disk_full = true;
    let (b, def) = (s.builder(), s.def());
    let err = b.ensure_base(&def, &channel().0).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("no space left on device in "), "{text}");
    assert!(text.contains("while making the root file system"), "{text}");
    assert_eq!(err.last_lines(), ["xz: (stdout): Write error: No space left on device"]);
    assert!(s.engine.images(&[]).await.unwrap().is_empty());
    assert!(s.engine.calls().is_empty(), "{:?}", s.engine.calls());
    assert!(s.scratch().is_empty(), "{:?}", s.scratch());
}

/// A context of a Dockerfile and one file.
fn context(file: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [("Dockerfile", "FROM base\nCOPY hello /hello\n"), ("hello", file)] {
        app::append(&mut tar, path, tar::EntryType::Regular, 0o644, data.as_bytes(), None).unwrap();
    }
    tar.into_inner().unwrap()
}

fn request(tag: &str, file: &str) -> Request {
    Request { tag: tag.into(), commit: Some("0123456789abcdef-dirty".into()), context: context(file) }
}

async fn plan(b: &Builder<FakeEngine, FakeBootstrap>, req: Request) -> Plan {
    match b.prepare(req).await.unwrap() {
        Prepared::Build(plan) => plan,
        Prepared::UpToDate(r) => panic!("up to date: {r:?}"),
    }
}

#[tokio::test]
async fn an_app_image_is_built_once_and_never_rebuilt_with_other_content() {
    let s = Setup::new();
    let b = s.builder();
    let (tx, mut rx) = channel();
    let p = plan(&b, request("coins:1.0", "hello\n")).await;
    assert!(p.dockerfile.starts_with(&format!("FROM {}\n", s.def().tag())), "{}", p.dockerfile);
    let built = b.build(&p, &tx).await.unwrap();
    assert!(!built.up_to_date && built.base.built);
    let image = &built.image;
    assert_eq!(
        (image.name.as_str(), image.version.as_str(), image.tag.as_str()),
        ("coins", "1.0", "coins:1.0")
    );
    assert_eq!(image.commit.as_deref(), Some("0123456789abcdef-dirty"));
    let said = phases(&mut rx);
    assert!(said.iter().any(|p| p.starts_with("building coins:1.0 on base:")), "{said:?}");

    // the same content: up to date, nothing built
    s.engine.clear_calls();
    match b.prepare(request("coins:1.0", "hello\n")).await.unwrap() {
        Prepared::UpToDate(b) => {
            assert_eq!((&b.image, b.up_to_date, b.base.id), (image, true, built.base.id.clone()))
        }
        Prepared::Build(_) => panic!("rebuilt"),
    }
    // other content: refused, and nothing changes
    let err = b.prepare(request("coins:1.0", "changed\n")).await.unwrap_err();
    assert!(matches!(err, ImageError::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "coins:1.0 exists with other content (built from commit 0123456789ab-dirty, content "
        ),
        "{text}"
    );
    assert!(text.ends_with("a tag is never rebuilt: build a new version"), "{text}");
    // ... even when it was planned before the tag existed (a build that lost the race)
    let late = plan(&b, request("coins:1.1", "changed\n")).await;
    b.build(&plan(&b, request("coins:1.1", "other\n")).await, &tx).await.unwrap();
    let err = b.build(&late, &tx).await.unwrap_err();
    assert!(err.to_string().starts_with("coins:1.1 exists with other content"), "{err}");
    assert_eq!(s.engine.calls(), ["build coins:1.1"]);
    assert_eq!(find(&s.engine, "coins", "1.0").await.unwrap().as_ref(), Some(image));

    // a new version of other content builds
    let built2 = b.build(&plan(&b, request("coins:2.0", "changed\n")).await, &tx).await.unwrap();
    assert_ne!(built2.image.content, image.content);
    assert!(!built2.base.built, "the base is built once");
    assert_eq!(s.bootstrap.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_content_covers_the_minion_and_the_base() {
    let s = Setup::new();
    let b = s.builder();
    let (tx, _rx) = channel();
    let built = b.build(&plan(&b, request("coins:1.0", "hello\n")).await, &tx).await.unwrap();
    // another minion binary: other content
    std::fs::write(s.dir.path().join("drover-minion"), "\x7fELF minion 2").unwrap();
    let err = b.prepare(request("coins:1.0", "hello\n")).await.unwrap_err();
    assert!(err.to_string().starts_with("coins:1.0 exists with other content ("), "{err}");
    std::fs::write(s.dir.path().join("drover-minion"), "\x7fELF minion").unwrap();
    assert!(matches!(b.prepare(request("coins:1.0", "hello\n")).await.unwrap(), Prepared::UpToDate(_)));
    // another base definition: its base does not exist yet, so the content is other
    std::fs::write(s.dir.path().join("base/base.yaml"), "suite: bookworm\npackages: [busybox, procps]\n")
        .unwrap();
    let err = b.prepare(request("coins:1.0", "hello\n")).await.unwrap_err();
    assert!(err.to_string().starts_with("coins:1.0 exists with other content, on another base ("), "{err}");
    let built2 = b.build(&plan(&b, request("coins:1.1", "hello\n")).await, &tx).await.unwrap();
    assert_ne!(built2.base.id, built.base.id);
    assert_ne!(built2.image.content, built.image.content);
}

#[tokio::test]
async fn a_failed_build_leaves_no_tag_and_says_where() {
    let s = Setup::new();
    let b = s.builder();
    let p = plan(&b, request("coins:1.0", "hello\n")).await;
    s.engine.fail("build", 1);
    let err = b.build(&p, &channel().0).await.unwrap_err();
    assert!(matches!(err, ImageError::Failed { .. }), "{err:?}");
    assert!(err.to_string().starts_with("building coins:1.0 failed: "), "{err}");
    assert!(s.engine.image("coins:1.0").await.unwrap().is_none());
    // and the next try builds
    b.build(&p, &channel().0).await.unwrap();
}

#[tokio::test]
async fn foreign_tags_and_setup_problems_are_refused_before_building() {
    let mut s = Setup::new();
    s.engine.add_image("coins:1.0", Labels::new());
    let b = s.builder();
    let err = b.prepare(request("coins:1.0", "hello\n")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "coins:1.0 exists and drover did not build it as that (it has no drover.content label for it); a tag is \
         never rebuilt: build a new version"
    );
    s.bootstrap.no_root = true;
    let b = s.builder();
    let err = b.prepare(request("coins:2.0", "hello\n")).await.unwrap_err();
    assert!(matches!(err, ImageError::Setup(_)), "{err:?}");
    std::fs::remove_file(s.dir.path().join("drover-minion")).unwrap();
    let err = b.prepare(request("coins:2.0", "hello\n")).await.unwrap_err();
    assert!(err.to_string().starts_with("no drover-minion at "), "{err}");
    let err = b.prepare(request("coins", "hello\n")).await.unwrap_err();
    assert!(matches!(err, ImageError::Invalid(_)), "{err:?}");
    std::fs::remove_file(s.dir.path().join("base/base.yaml")).unwrap();
    let err = b.prepare(request("coins:2.0", "hello\n")).await.unwrap_err();
    assert!(err.to_string().starts_with("cannot read the base image's definition "), "{err}");
    assert!(s.engine.calls().is_empty(), "{:?}", s.engine.calls());
}

// --- records

#[test]
fn tags_are_checked() {
    assert_eq!(parse_tag("coins:1.0").unwrap(), ("coins".into(), "1.0".into()));
    assert_eq!(parse_tag("dt-x1.y_z:2024.06.01-rc_1").unwrap().1, "2024.06.01-rc_1");
    for bad in [
        "coins",
        "Coins:1",
        "coins:",
        ":1",
        "-coins:1",
        "coins-:1",
        "co ins:1",
        "coins:1:2",
        "coins:-1",
        "coins:latest",
        "base:1",
        "a/b:1",
        "coins:1/2",
    ] {
        assert!(parse_tag(bad).is_err(), "{bad}");
    }
    let long = format!("coins:{}", "1".repeat(129));
    assert!(parse_tag(&long).is_err());
}

#[tokio::test]
async fn records_are_drovers_tagged_images() {
    let engine = FakeEngine::new();
    let labels = |name: &str, version: &str| {
        [(LABEL_IMAGE, name), (LABEL_VERSION, version), (LABEL_CONTENT, "c")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    engine.add_image("coins:1.0", labels("coins", "1.0"));
    engine.add_image("coins:1.1", labels("coins", "1.1"));
    engine.add_image("other:1", labels("other", "1"));
    // labelled as another version than its tag: not drover's coins:2
    engine.add_image("coins:2", labels("coins", "1.0"));
    engine.add_image("plain:1", Default::default());

    let versions: Vec<String> =
        versions(&engine, "coins").await.unwrap().into_iter().map(|r| r.version).collect();
    assert_eq!(versions, ["1.0", "1.1"]);
    let found = find(&engine, "coins", "1.1").await.unwrap().unwrap();
    assert_eq!((found.tag.as_str(), found.content.as_deref()), ("coins:1.1", Some("c")));
    assert!(find(&engine, "coins", "2").await.unwrap().is_none());
    assert!(find(&engine, "plain", "1").await.unwrap().is_none());
    assert!(find(&engine, "coins", "9").await.unwrap().is_none());
    let names: Vec<String> = list(&engine).await.unwrap().into_iter().map(|r| r.tag).collect();
    assert_eq!(names, ["coins:1.0", "coins:1.1", "other:1"]);
}
