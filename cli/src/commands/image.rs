//! `drover image build DIR --tag NAME:VERSION` and `drover image list [NAME]`: app images
//! built by the master's engine, without a registry.
//!
//! `build` tars DIR (sorted, fixed times, owners and modes: one content is one tar;
//! `.dockerignore` honoured; a symbolic link leaving DIR refused), finds its git commit,
//! uploads it, and shows the master's progress: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use api::{ImageBuildLine, ImageBuilt, ImageSummary, short, short_commit};
use clap::{Args, Subcommand};
use globset::{GlobBuilder, GlobMatcher};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

/// How often the spinner turns (a step such as copying the minion in prints nothing for
/// seconds).
const TICK: std::time::Duration = std::time::Duration::from_millis(120);

const EXAMPLES: &str = "\
An image is a folder: images/<name>/ holds a Dockerfile that starts FROM base, and what it
copies. The master makes the base image from images/base/base.yaml of its config repo
(Debian packages, debootstrap) when it is missing, builds the image on it with drover-minion
as its entrypoint, and labels it with its version, git commit and content hash.

A tag is never rebuilt: building NAME:VERSION again from the same content says it is up to
date; from other content it is refused (build a new version).

Examples:
  drover image build images/coins --tag coins:1.0
  drover image build images/coins --tag coins:1.1 --out json
  drover image list
  drover image list coins --out json

Exit status: 0 built or up to date; 1 the build failed (its last output lines are shown);
2 usage or configuration error, a refused tag, or no Docker engine.";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image's folder as NAME:VERSION on the master's engine (a tag is never rebuilt)
    Build(BuildArgs),
    /// List the images drover built: name, version, commit, content, created, size
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The image's folder: a Dockerfile starting FROM base, and what it copies
    #[arg(value_name = "DIR")]
    pub folder: PathBuf,
    /// The image's name and version, like coins:1.0
    #[arg(long, value_name = "NAME:VERSION")]
    pub tag: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the versions of this image
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

pub fn run(args: ImageArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    match args.action {
        ImageCommand::Build(b) => build_image(&b, ctx),
        ImageCommand::List(l) => list(&l, ctx),
    }
}

/// Builds the image of `args.folder` as `args.tag` through the master, showing its progress.
pub fn build_image(args: &BuildArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let client = ctx.client()?;
    let context = pack(&args.folder)?;
    if context.len() > MAX_CONTEXT {
        bail!(
            "{}: the build context is {} MB, more than the {} MB the master takes (list what it need not copy in {}/.dockerignore)",
            args.folder.display(),
            context.len() >> 20,
            MAX_CONTEXT >> 20,
            args.folder.display()
        );
    }
    let commit = commit_of(&args.folder);
    let lines = client.image_build(&context, &args.tag, commit.as_deref()).map_err(api_error)?;
    let mut shown = Shown::new(std::io::stderr().is_terminal());
    let mut end = None;
    for line in lines {
        match line.map_err(api_error)? {
            ImageBuildLine::Done { image } => end = Some(Ok(image)),
            ImageBuildLine::Failed { error, last_lines } => end = Some(Err((error, last_lines))),
            progress => shown.show(progress, ctx)?,
        }
    }
    shown.finish();
    match end {
        Some(Ok(image)) => {
            let text = match ctx.out() {
                Out::Json => output::json(&image)?,
                Out::Yaml => output::yaml(&image)?,
                Out::Text | Out::Highstate => built_text(&image),
            };
            ctx.print(&text)?;
            Ok(Exit::Success)
        }
        Some(Err((error, last_lines))) => {
            for line in &last_lines {
                ctx.note(&format!("  | {line}"))?;
            }
            ctx.note(&format!("drover: {error}"))?;
            Ok(Exit::Failed)
        }
        None => bail!("the master ended the build of {} without a result (see its log)", args.tag),
    }
}

/// The largest context the master takes (its `MAX_CONTEXT`).
const MAX_CONTEXT: usize = 512 << 20;

fn built_text(b: &ImageBuilt) -> String {
    let i = &b.image;
    let what = format!(
        "image {}, content {}, {} MB, on {}",
        short(&i.id),
        short(i.content.as_deref().unwrap_or("-")),
        (i.size + 500_000) / 1_000_000,
        b.base
    );
    if b.up_to_date {
        format!("{} is up to date ({what})\n", i.tag)
    } else {
        format!("built {} ({what}) in {:.1} s\n", i.tag, b.seconds)
    }
}

fn list(args: &ListArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let images = ctx.client()?.images(args.name.as_deref()).map_err(api_error)?;
    let text = match ctx.out() {
        Out::Json => output::json(&images)?,
        Out::Yaml => output::yaml(&images)?,
        Out::Text | Out::Highstate => list_text(&images),
    };
    ctx.print(&text)?;
    Ok(Exit::Success)
}

pub fn list_text(images: &[ImageSummary]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.version.clone(),
                i.tag.clone(),
                i.commit.as_deref().map_or("-".into(), short_commit),
                short(i.content.as_deref().unwrap_or("-")).to_string(),
                created(i.created_ms),
                format!("{} MB", (i.size + 500_000) / 1_000_000),
            ]
        })
        .collect();
    output::table(&["NAME", "VERSION", "TAG", "COMMIT", "CONTENT", "CREATED", "SIZE"], &rows)
}

/// `2025-01-01 12:00:00` (UTC).
fn created(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The build's progress on stderr: a bar on a terminal, else one plain line each.
struct Shown {
    bar: Option<indicatif::ProgressBar>,
}

impl Shown {
    fn new(terminal: bool) -> Shown {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(TICK);
            bar
        });
        Shown { bar }
    }

    fn show(&mut self, line: ImageBuildLine, ctx: &mut Ctx) -> anyhow::Result<()> {
        let Some(bar) = &self.bar else {
            return match plain(&line) {
                Some(text) => ctx.note(&text),
                None => Ok(()),
            };
        };
        match line {
            ImageBuildLine::Phase { text } => {
                bar.println(text);
                bar.set_style(indicatif::ProgressStyle::default_spinner());
                bar.set_message("");
            }
            ImageBuildLine::Step { step, of, text } => {
                let style =
                    indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {wide_msg}")
                        .expect("a valid template")
                        .progress_chars("=> ");
                bar.set_style(style);
                bar.set_length(of.into());
                bar.set_position(step.saturating_sub(1).into());
                bar.set_message(text);
            }
            ImageBuildLine::Output { line } => bar.set_message(line),
            ImageBuildLine::Done { .. } | ImageBuildLine::Failed { .. } => {}
        }
        Ok(())
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A progress line as plain text: phases as they are, steps as Docker prints them, output
/// indented.
fn plain(line: &ImageBuildLine) -> Option<String> {
    match line {
        ImageBuildLine::Phase { text } => Some(text.clone()),
        ImageBuildLine::Step { step, of, text } => Some(format!("Step {step}/{of} : {text}")),
        ImageBuildLine::Output { line } => Some(format!("  {line}")),
        ImageBuildLine::Done { .. } | ImageBuildLine::Failed { .. } => None,
    }
}

/// The git commit of `dir`'s repository (HEAD), `-dirty` when something under `dir` differs
/// from it; none outside a repository (or without git).
pub fn commit_of(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--verify", "-q", "HEAD"])?;
    let changes = git(&["status", "--porcelain", "--untracked-files=all", "--", "."])?;
    Some(if changes.is_empty() { head } else { format!("{head}-dirty") })
}

/// Every file of a build context gets this modification time.
const MTIME: u64 = 1;

/// A tar of `dir` as a build context: entries sorted by path, owned by root, time fixed,
/// modes as git keeps them (0755 folders and executables, 0644 other files), symbolic
/// links kept as links and refused when they lead out of `dir`, `.dockerignore` honoured
/// (the Dockerfile and .dockerignore are always sent, as Docker does).
pub fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a folder (expected an image's folder, like images/coins)", dir.display());
    }
    if !dir.join("Dockerfile").is_file() {
        bail!("{} has no Dockerfile", dir.display());
    }
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text).with_context(|| format!("{}/.dockerignore", dir.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}/.dockerignore", dir.display())),
    };
    let mut found = Vec::new();
    walk(dir, "", &ignore, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = tar::Builder::new(Vec::new());
    for (path, item) in found {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        match item {
            Item::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &path, std::io::empty())?;
            }
            Item::File { executable } => {
                let data = std::fs::read(dir.join(&path))
                    .with_context(|| format!("cannot read {}", dir.join(&path).display()))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if executable { 0o755 } else { 0o644 });
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, &path, data.as_slice())?;
            }
            Item::Link(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, &path, &target)?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

enum Item {
    Dir,
    File { executable: bool },
    Link(String),
}

/// Collects `dir/rel`'s entries (not ignored) as (path, item).
fn walk(dir: &Path, rel: &str, ignore: &Ignore, found: &mut Vec<(String, Item)>) -> anyhow::Result<()> {
    let here = dir.join(rel);
    let entries = std::fs::read_dir(&here).with_context(|| format!("cannot read {}", here.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", here.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{}: the name is not UTF-8", entry.path().display());
        };
        let path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
        let always = rel.is_empty() && (name == "Dockerfile" || name == ".dockerignore");
        let ignored = !always && ignore.ignores(&path);
        let kind = entry.file_type().with_context(|| format!("cannot read {}", entry.path().display()))?;
        if kind.is_dir() {
            if !ignored {
                found.push((path.clone(), Item::Dir));
            }
            // a folder left out may still hold what a `!pattern` brings back
            if !ignored || ignore.has_exceptions() {
                walk(dir, &path, ignore, found)?;
            }
        } else if ignored {
            continue;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let target = target
                .to_str()
                .with_context(|| format!("{}: the target is not UTF-8", entry.path().display()))?;
            if !link_stays_inside(&path, target) {
                bail!(
                    "{}: a symbolic link to {target}, outside {}: the build context cannot hold it (copy the file in instead)",
                    entry.path().display(),
                    dir.display()
                );
            }
            found.push((path, Item::Link(target.to_string())));
        } else if kind.is_file() {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &entry
                    .metadata()
                    .with_context(|| format!("cannot read {}", entry.path().display()))?
                    .permissions(),
            );
            found.push((path, Item::File { executable: mode & 0o111 != 0 }));
        } else {
            bail!(
                "{}: only files, folders and symbolic links can be in a build context",
                entry.path().display()
            );
        }
    }
    Ok(())
}

/// Whether a symbolic link at `path` (relative to the context) to `target` stays inside it.
fn link_stays_inside(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth: usize = path.matches('/').count();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if depth == 0 => return false,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    true
}

/// `.dockerignore` as Docker reads it: one pattern a line (`#` comments), `*` and `?`
/// within a path part, `**` across parts, `!` bringing back what an earlier pattern left
/// out; a pattern that matches a folder leaves out what is in it; the last match decides.
#[derive(Default)]
struct Ignore {
    /// (pattern, is an exception)
    patterns: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    fn parse(text: &str) -> anyhow::Result<Ignore> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
            if pattern.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .with_context(|| format!("line {}: bad pattern {line:?}", n + 1))?;
            patterns.push((glob.compile_matcher(), exception));
        }
        Ok(Ignore { patterns })
    }

    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(_, e)| *e)
    }

    /// Whether `path` (or a folder it is in) is left out.
    fn ignores(&self, path: &str) -> bool {
        let mut ignored = false;
        for (glob, exception) in &self.patterns {
            let mut prefixes = path.match_indices('/').map(|(i, _)| &path[..i]).chain([path]);
            if prefixes.any(|p| glob.is_match(p)) {
                ignored = !exception;
            }
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn write(dir: &Path, path: &str, data: &str, mode: u32) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, data).unwrap();
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// (path, mode, mtime, uid, link or data) of each entry.
    fn entries(tar: &[u8]) -> Vec<(String, u32, u64, u64, String)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = String::new();
                std::io::Read::read_to_string(&mut e, &mut data).unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                let path = e.path().unwrap().display().to_string();
                (path, h.mode().unwrap(), h.mtime().unwrap(), h.uid().unwrap(), link.unwrap_or(data))
            })
            .collect()
    }

    #[test]
    fn one_content_is_one_tar() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // the same files, made in another order, with other modes and times
        write(a.path(), "Dockerfile", "FROM base\n", 0o644);
        write(a.path(), "src/run.sh", "#!/bin/sh\n", 0o755);
        write(a.path(), "src/a.txt", "a", 0o600);
        write(a.path(), "z.txt", "z", 0o664);
        symlink("src/a.txt", a.path().join("latest")).unwrap();
        write(b.path(), "z.txt", "z", 0o644);
        write(b.path(), "src/a.txt", "a", 0o644);
        symlink("src/a.txt", b.path().join("latest")).unwrap();
        write(b.path(), "src/run.sh", "#!/bin/sh\n", 0o700);
        write(b.path(), "Dockerfile", "FROM base\n", 0o600);
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(b.path().join("Dockerfile"))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();

        let tar = pack(a.path()).unwrap();
        assert_eq!(tar, pack(b.path()).unwrap());
        assert_eq!(tar, pack(a.path()).unwrap());
        let e = |p: &str, m: u32, d: &str| (p.to_string(), m, MTIME, 0, d.to_string());
        assert_eq!(
            entries(&tar),
            [
                e("Dockerfile", 0o644, "FROM base\n"),
                e("latest", 0o777, "src/a.txt"),
                e("src", 0o755, ""),
                e("src/a.txt", 0o644, "a"),
                e("src/run.sh", 0o755, "#!/bin/sh\n"),
                e("z.txt", 0o644, "z"),
            ]
        );
    }

    #[test]
    fn links_leaving_the_folder_are_refused() {
        for target in ["../outside", "/etc/passwd", "sub/../../x"] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "Dockerfile", "FROM base\n", 0o644);
            symlink(target, dir.path().join("link")).unwrap();
            let err = format!("{:#}", pack(dir.path()).unwrap_err());
            assert!(err.contains(&format!("link: a symbolic link to {target}, outside")), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM base\n", 0o644);
        write(dir.path(), "sub/x", "x", 0o644);
        symlink("../Dockerfile", dir.path().join("sub/up")).unwrap();
        assert!(pack(dir.path()).is_ok());
    }

    #[test]
    fn folders_without_a_dockerfile_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", pack(dir.path()).unwrap_err());
        assert!(err.ends_with("has no Dockerfile"), "{err}");
        let err = format!("{:#}", pack(&dir.path().join("nope")).unwrap_err());
        assert!(err.starts_with("cannot read "), "{err}");
    }

    #[test]
    fn dockerignore_leaves_out_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "Dockerfile",
            "app.py",
            "notes.md",
            "docs/keep.md",
            "target/debug/big",
            "src/x.pyc",
            "src/deep/y.pyc",
            "logs/a.log",
            "logs/keep.log",
        ] {
            write(dir.path(), f, "x", 0o644);
        }
        write(
            dir.path(),
            ".dockerignore",
            "# build output\n/target\n*.md\n!docs/keep.md\n**/*.pyc\nlogs\n!logs/keep.log\nDockerfile\n",
            0o644,
        );
        let names: Vec<String> = entries(&pack(dir.path()).unwrap()).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "app.py",
                "docs",
                "docs/keep.md",
                "logs/keep.log",
                "src",
                "src/deep"
            ]
        );
        let bad = Ignore::parse("ok\n[z-a\n").err().map(|e| format!("{e:#}"));
        assert!(bad.is_some_and(|e| e.starts_with("line 2: bad pattern \"[z-a\"")));
    }

    #[test]
    fn a_commit_is_found_and_changes_make_it_dirty() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@drover.invalid"])
                .args(args)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{args:?}");
            String::from_utf8_lossy(&ok.stdout).trim().to_string()
        };
        let image = repo.path().join("images/coins");
        write(&image, "Dockerfile", "FROM base\n", 0o644);
        assert_eq!(commit_of(&image), None, "not a repository yet");
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "coins"]);
        let head = git(&["rev-parse", "HEAD"]);
        assert_eq!(commit_of(&image), Some(head.clone()));
        // a change elsewhere in the repository does not make this folder dirty
        write(repo.path(), "README", "x", 0o644);
        assert_eq!(commit_of(&image), Some(head.clone()));
        write(&image, "new.txt", "x", 0o644);
        assert_eq!(commit_of(&image), Some(format!("{head}-dirty")));
    }

    #[test]
    fn results_print_for_people() {
        let image = ImageSummary {
            name: "coins".into(),
            version: "1.0".into(),
            tag: "coins:1.0".into(),
            id: "sha256:0123456789abcdef".into(),
            commit: Some("abcdef0123456789abcdef-dirty".into()),
            content: Some("fedcba9876543210".into()),
            created_ms: 1_735_732_800_000,
            size: 152_400_000,
        };
        let built = ImageBuilt {
            image: image.clone(),
            base: "base:aaaaaaaaaaaa".into(),
            up_to_date: false,
            seconds: 12.34,
        };
        assert_eq!(
            built_text(&built),
            "built coins:1.0 (image 0123456789ab, content fedcba987654, 152 MB, on base:aaaaaaaaaaaa) in 12.3 s\n"
        );
        let same = ImageBuilt { up_to_date: true, ..built };
        assert!(built_text(&same).starts_with("coins:1.0 is up to date (image 0123456789ab"));
        assert_eq!(
            list_text(&[image]),
            "NAME   VERSION  TAG        COMMIT              CONTENT       CREATED              SIZE\n\
             coins  1.0      coins:1.0  abcdef012345-dirty  fedcba987654  2025-01-01 12:00:00  152 MB\n"
        );
        let step = ImageBuildLine::Step { step: 2, of: 7, text: "RUN make".into() };
        assert_eq!(plain(&step).as_deref(), Some("Step 2/7 : RUN make"));
        assert_eq!(plain(&ImageBuildLine::Output { line: "ok".into() }).as_deref(), Some("  ok"));
    }
}
