//! App images: `images/<name>/` (a Dockerfile `FROM base` and its build context), uploaded
//! as a tar, built by the engine as `<name>:<version>` with the minion as entrypoint.
//!
//! [`Builder::prepare`] checks everything that can be checked at once (the tag, the
//! context, the Dockerfile, whether the tag exists) and [`Builder::build`] does the slow
//! part with progress: it makes sure the base exists, completes the Dockerfile
//! ([`complete_dockerfile`]), hashes the content ([`content`]) and builds. A tag is never
//! rebuilt: an existing tag with the same content is up to date, with other content it is
//! refused and nothing changes. The engine tags an image only when its build succeeded,
//! and builds of one tag hold its lock, so a failed build leaves no tag.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use api::short_commit;

use super::base::{Definition, LastLines};
use super::{
    BASE, BaseImage, Builder, ImageError, ImageRecord, Progress, ProgressTx, Result, lock, say, short,
};
use crate::engine::{
    BuildEvent, Engine, EngineError, ImageInfo, LABEL_COMMIT, LABEL_CONTENT, LABEL_IMAGE, LABEL_VERSION,
    Labels,
};

/// Where the minion goes in every app image.
pub const MINION_PATH: &str = "/usr/local/bin/drover-minion";
/// The minion's state folder in the image (keys, cache), private to root.
pub const MINION_DIR: &str = "/var/lib/drover/minion";
/// The folder of the build context drover puts its own files in (copied onto the image's
/// `/`); a context may not have it.
pub const RESERVED: &str = ".drover";
/// The image's health check: the minion says whether it is connected, converged and its
/// daemons healthy. The start period covers connecting and the first apply.
pub const HEALTHCHECK: &str = "HEALTHCHECK --interval=2s --timeout=3s --start-period=30s --retries=3 \
                               CMD [\"/usr/local/bin/drover-minion\", \"health\"]";
/// Bumped when drover builds differently from the same inputs.
const RECIPE: &str = "drover app image 1";
/// Every file of a context gets this modification time, so one content is one tar.
pub const MTIME: u64 = 1;
const MAX_ENTRIES: usize = 200_000;

/// `POST /images/build`: a context (a tar of `images/<name>/`) to build as `tag`.
#[derive(Clone, Debug)]
pub struct Request {
    /// `name:version`
    pub tag: String,
    /// The git commit of the context (`-dirty` when it has changes); none outside a repo.
    pub commit: Option<String>,
    /// The tar.
    pub context: Vec<u8>,
}

/// One entry of a build context. Modes are normalised as git keeps them: 0755 for
/// folders and executables, 0644 for other files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { path: String },
    File { path: String, executable: bool, data: Vec<u8> },
    Symlink { path: String, target: String },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// A build context, read and checked: paths relative and inside, only files, folders and
/// symbolic links that stay inside, a `Dockerfile` at the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// Sorted by path.
    pub entries: Vec<Entry>,
    pub dockerfile: String,
}

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::Invalid(msg.into())
}

/// A relative path with only normal parts (`./a/b` → `a/b`), or why not.
fn clean(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => {
                parts.push(p.to_str().ok_or_else(|| invalid(format!("{path:?}: the name is not UTF-8")))?)
            }
            Component::CurDir => {}
            _ => return Err(invalid(format!("{}: a path leaving the context", path.display()))),
        }
    }
    Ok(parts.join("/"))
}

/// Whether a symbolic link at `path` to `target` stays inside the context.
pub fn link_stays_inside(path: &str, target: &str) -> bool {
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

impl Context {
    /// Reads the uploaded tar.
    pub fn read(tar: &[u8]) -> Result<Context> {
        let bad_tar = |e: std::io::Error| invalid(format!("the build context is not a readable tar: {e}"));
        let mut archive = tar::Archive::new(tar);
        let mut entries = Vec::new();
        let mut seen = BTreeSet::new();
        for entry in archive.entries().map_err(bad_tar)? {
            let mut entry = entry.map_err(bad_tar)?;
            let path = clean(&entry.path().map_err(bad_tar)?)?;
            if path.is_empty() {
                continue;
            }
            if path == RESERVED || path.starts_with(&format!("{RESERVED}/")) {
                return Err(invalid(format!(
                    "{path}: {RESERVED}/ is where drover puts the minion; rename it in the context"
                )));
            }
            if !seen.insert(path.clone()) {
                return Err(invalid(format!("{path}: twice in the build context")));
            }
            let header = entry.header();
            let kind = header.entry_type();
            let item = if kind.is_dir() {
                Entry::Dir { path }
            } else if kind.is_file() {
                let executable = header.mode().map_err(bad_tar)? & 0o111 != 0;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data).map_err(bad_tar)?;
                Entry::File { path, executable, data }
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(bad_tar)?
                    .and_then(|t| t.to_str().map(String::from))
                    .ok_or_else(|| {
                    invalid(format!("{path}: a symbolic link without a readable target"))
                })?;
                if !link_stays_inside(&path, &target) {
                    return Err(invalid(format!(
                        "{path}: a symbolic link to {target}, outside the build context"
                    )));
                }
                Entry::Symlink { path, target }
            } else {
                return Err(invalid(format!(
                    "{path}: only files, folders and symbolic links can be in a build context"
                )));
            };
            entries.push(item);
            if entries.len() > MAX_ENTRIES {
                return Err(invalid(format!("the build context has more than {MAX_ENTRIES} entries")));
            }
        }
        entries.sort_by(|a, b| a.path().cmp(b.path()));
        let dockerfile = match entries.iter().find(|e| e.path() == "Dockerfile") {
            Some(Entry::File { data, .. }) => {
                String::from_utf8(data.clone()).map_err(|_| invalid("the Dockerfile is not UTF-8 text"))?
            }
            Some(_) => return Err(invalid("Dockerfile is not a file")),
            None => return Err(invalid("the build context has no Dockerfile at its top")),
        };
        Ok(Context { entries, dockerfile })
    }

    /// The tar the engine builds from: every entry, the completed Dockerfile in place of
    /// the user's, and `.drover/`, copied onto the image's `/`: the minion at
    /// [`MINION_PATH`] and its folder [`MINION_DIR`] (mode 0700); owners and times fixed.
    pub fn engine_tar(&self, dockerfile: &str, minion: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::with_capacity(minion.len() + (1 << 20)));
        for entry in &self.entries {
            match entry {
                Entry::Dir { path } => append(&mut tar, path, tar::EntryType::Directory, 0o755, &[], None)?,
                Entry::File { path, .. } if path == "Dockerfile" => {
                    append(&mut tar, path, tar::EntryType::Regular, 0o644, dockerfile.as_bytes(), None)?
                }
                Entry::File { path, executable, data } => {
                    let mode = if *executable { 0o755 } else { 0o644 };
                    append(&mut tar, path, tar::EntryType::Regular, mode, data, None)?
                }
                Entry::Symlink { path, target } => {
                    append(&mut tar, path, tar::EntryType::Symlink, 0o777, &[], Some(target))?
                }
            }
        }
        // `.drover/` is copied onto `/`: the folders on the way keep Debian's modes
        let minion_dir = MINION_DIR.trim_start_matches('/');
        let minion_bin = MINION_PATH.trim_start_matches('/');
        let mut folders = BTreeSet::new();
        for path in [minion_dir, minion_bin] {
            let mut at = Path::new(path).parent();
            while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
                folders.insert(p.to_string_lossy().into_owned());
                at = p.parent();
            }
        }
        append(&mut tar, RESERVED, tar::EntryType::Directory, 0o755, &[], None)?;
        for folder in folders {
            append(&mut tar, &format!("{RESERVED}/{folder}"), tar::EntryType::Directory, 0o755, &[], None)?;
        }
        append(&mut tar, &format!("{RESERVED}/{minion_dir}"), tar::EntryType::Directory, 0o700, &[], None)?;
        append(&mut tar, &format!("{RESERVED}/{minion_bin}"), tar::EntryType::Regular, 0o755, minion, None)?;
        tar.into_inner()
    }
}

/// Appends one entry with fixed owner (root) and time ([`MTIME`]).
pub fn append<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_size(data.len() as u64);
    match link {
        Some(target) => tar.append_link(&mut header, path, target),
        None => tar.append_data(&mut header, path, data),
    }
}

/// The sha256 of everything an app image is built from: each context entry (path, kind,
/// mode, contents or link target), the completed Dockerfile, the base image's id and the
/// minion's sha256. Equal inputs give equal hashes; any change of one changes it.
pub fn content(entries: &[Entry], dockerfile: &str, base_id: &str, minion_sha256: &str) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(RECIPE.as_bytes());
    for entry in entries {
        match entry {
            Entry::Dir { path } => [b"dir".as_slice(), path.as_bytes()].into_iter().for_each(&mut field),
            Entry::File { path, executable, data } => {
                let mode: &[u8] = if *executable { b"755" } else { b"644" };
                [b"file".as_slice(), path.as_bytes(), mode, data].into_iter().for_each(&mut field)
            }
            Entry::Symlink { path, target } => {
                [b"symlink".as_slice(), path.as_bytes(), target.as_bytes()].into_iter().for_each(&mut field)
            }
        }
    }
    for part in [b"dockerfile".as_slice(), dockerfile.as_bytes(), b"base", base_id.as_bytes()] {
        field(part);
    }
    field(b"minion");
    field(minion_sha256.as_bytes());
    hex::encode(h.finalize())
}

/// The user's Dockerfile made drover's: every `FROM base` (and `base:latest`) names the base
/// of images/base/base.yaml by its content tag (`base_tag`), and after the last stage, which
/// must build on the base, come the minion and its folder (one `COPY` of the context's
/// `.drover/`, see [`Context::engine_tar`]), the health check and the entrypoint (with
/// `USER root` and `CMD []` when the stage set a user or a command). Returns it with notes
/// on what the additions override. The labels come last, at build time ([`label_line`]).
pub fn complete_dockerfile(original: &str, base_tag: &str) -> Result<(String, Vec<String>)> {
    let escape = escape_char(original);
    let mut out = String::with_capacity(original.len() + 512);
    let mut notes = Vec::new();
    // per stage: (name, builds on the base)
    let mut stages: Vec<(Option<String>, bool)> = Vec::new();
    let mut last_from = (0, String::new());
    // whether the stage so far sets USER and CMD, which the additions must then undo
    let (mut user_set, mut cmd_set) = (false, false);
    let mut continued = false;
    for (i, line) in original.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        let comment = t.starts_with('#');
        let instruction = if continued || comment { None } else { t.split_whitespace().next() };
        match instruction.map(str::to_ascii_uppercase).as_deref() {
            Some("FROM") => {
                let (rewritten, stage) = from_line(t, n, base_tag, &stages)?;
                stages.push(stage);
                last_from = (n, t.to_string());
                (user_set, cmd_set) = (false, false);
                out.push_str(&rewritten);
            }
            Some(word @ ("ENTRYPOINT" | "CMD" | "HEALTHCHECK")) if !stages.is_empty() => {
                notes.push(format!("Dockerfile line {n}: drover's {word} replaces this one: {t}"));
                cmd_set |= word == "CMD";
                out.push_str(line);
            }
            Some("USER") => {
                user_set = true;
                out.push_str(line);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
        if !comment {
            continued = t.ends_with(escape);
        }
    }
    if continued {
        return Err(invalid(format!(
            "the Dockerfile ends inside a continued line (its last line ends with {escape})"
        )));
    }
    match stages.last() {
        None => return Err(invalid("the Dockerfile has no FROM line: an app image starts with FROM base")),
        Some((_, false)) => {
            return Err(invalid(format!(
                "Dockerfile line {}: the last stage must build on the base image (FROM base), not `{}`: \
                 the minion runs on it",
                last_from.0, last_from.1
            )));
        }
        Some(_) => {}
    }
    // as few instructions as will do: each one is a step of the engine's build, a
    // container made and committed (seconds each on some storage drivers)
    out.push_str("\n# added by drover: the minion is the entrypoint (see docs/images.md)\n");
    if user_set {
        out.push_str("USER root\n");
    }
    out.push_str(&format!("COPY {RESERVED}/ /\n{HEALTHCHECK}\nENTRYPOINT [\"{MINION_PATH}\"]\n"));
    if cmd_set {
        out.push_str("CMD []\n");
    }
    Ok((out, notes))
}

/// The image's labels as one `LABEL` instruction (one build step: the engine makes a step
/// of each label given to it apart), appended to the completed Dockerfile. The content hash
/// is of the Dockerfile without it, since the line holds the hash.
pub fn label_line(labels: &Labels) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect();
    format!("LABEL {}\n", pairs.join(" "))
}

/// The line continuation character: `\`, or what an `# escape=` parser directive says.
fn escape_char(dockerfile: &str) -> char {
    for line in dockerfile.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else { break };
        let Some((key, value)) = directive.split_once('=') else { break };
        if key.trim().eq_ignore_ascii_case("escape") {
            return value.trim().chars().next().unwrap_or('\\');
        }
    }
    '\\'
}

/// `FROM [--platform=…] IMAGE [AS NAME]`, with `base` resolved; and its stage.
fn from_line(
    line: &str,
    n: usize,
    base_tag: &str,
    stages: &[(Option<String>, bool)],
) -> Result<(String, (Option<String>, bool))> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let flags: Vec<&str> = words[1..].iter().copied().take_while(|w| w.starts_with("--")).collect();
    let rest = &words[1 + flags.len()..];
    let (image, name) = match rest {
        [image] => (*image, None),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => (*image, Some(name.to_ascii_lowercase())),
        _ => {
            return Err(invalid(format!("Dockerfile line {n}: expected FROM IMAGE [AS NAME], got `{line}`")));
        }
    };
    let on_stage = stages.iter().find(|(s, _)| s.as_deref() == Some(&image.to_ascii_lowercase()));
    let (image, on_base) = if image == BASE || image == "base:latest" {
        (base_tag, true)
    } else if let Some(rest) = image.strip_prefix("base:") {
        return Err(invalid(format!(
            "Dockerfile line {n}: FROM base:{rest}: write FROM base, and drover uses the base of \
             images/base/base.yaml ({base_tag})"
        )));
    } else {
        (image, on_stage.is_some_and(|(_, b)| *b))
    };
    let mut rewritten = vec![words[0]];
    rewritten.extend(&flags);
    rewritten.push(image);
    if let Some(name) = &name {
        rewritten.extend(["AS", name]);
    }
    Ok((rewritten.join(" "), (name, on_base)))
}

/// A commit as the CLI sends it: hex, maybe `-dirty`.
fn check_commit(commit: &str) -> Result<()> {
    let hex = commit.strip_suffix("-dirty").unwrap_or(commit);
    if (7..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid(format!("bad commit {commit:?}: expected a git commit id, maybe ending in -dirty")))
    }
}

/// What [`Builder::prepare`] found.
#[derive(Debug)]
pub enum Prepared {
    /// The tag exists with this very content: nothing to do.
    UpToDate(Built),
    /// It is to be built.
    Build(Plan),
}

/// An app image to build, checked.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub version: String,
    pub commit: Option<String>,
    pub context: Context,
    pub base: Definition,
    /// The completed Dockerfile (without its labels: see [`label_line`]).
    pub dockerfile: String,
    /// What the completed Dockerfile overrides of the user's.
    pub notes: Vec<String>,
}

impl Plan {
    pub fn tag(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    pub fn content(&self, base_id: &str, minion_sha256: &str) -> String {
        content(&self.context.entries, &self.dockerfile, base_id, minion_sha256)
    }

    fn labels(&self, content: &str) -> Labels {
        let mut labels: Labels = [
            (LABEL_IMAGE, self.name.clone()),
            (LABEL_VERSION, self.version.clone()),
            (LABEL_CONTENT, content.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(commit) = &self.commit {
            labels.insert(LABEL_COMMIT.into(), commit.clone());
        }
        labels
    }
}

/// A build's result.
#[derive(Clone, Debug)]
pub struct Built {
    pub image: ImageRecord,
    pub base: BaseImage,
    /// Whether the tag existed with this content already (nothing was built).
    pub up_to_date: bool,
}

/// The tag exists: fine when it is drover's with `content`, else refused.
fn judge(existing: &ImageInfo, plan: &Plan, content: Option<&str>) -> Result<ImageRecord> {
    let tag = plan.tag();
    let ours = ImageRecord::from_info(existing).filter(|r| r.tag == tag);
    match ours {
        Some(r) if content.is_some() && r.content.as_deref() == content => Ok(r),
        Some(r) if r.content.is_some() => {
            let from = match &r.commit {
                Some(c) => format!("from commit {}", short_commit(c)),
                None => "outside a git repository".into(),
            };
            let why = if content.is_none() { ", on another base" } else { "" };
            Err(ImageError::Refused(format!(
                "{tag} exists with other content{why} (built {from}, content {}, image {}); a tag is \
                 never rebuilt: build a new version",
                short(r.content.as_deref().unwrap_or_default()),
                short(&r.id)
            )))
        }
        _ => Err(ImageError::Refused(format!(
            "{tag} exists and drover did not build it as that (it has no {LABEL_CONTENT} label for it); a tag is \
             never rebuilt: build a new version"
        ))),
    }
}

/// The minion binary and its sha256.
async fn read_minion(path: &Path) -> Result<(Vec<u8>, String)> {
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let data = std::fs::read(&path).map_err(ImageError::io(format!("read {}", path.display())))?;
        let sha = hex::encode(Sha256::digest(&data));
        Ok((data, sha))
    })
    .await
    .map_err(|e| ImageError::io("read the minion binary")(std::io::Error::other(e)))?
}

impl<E: Engine, B: super::Bootstrap> Builder<E, B> {
    /// Checks a request: the tag, the context, the Dockerfile, the base definition, and
    /// whether the tag exists already (up to date, or refused). Fast: builds nothing.
    pub async fn prepare(&self, req: Request) -> Result<Prepared> {
        let (name, version) = super::parse_tag(&req.tag)?;
        if let Some(c) = &req.commit {
            check_commit(c)?;
        }
        let context = tokio::task::spawn_blocking(move || Context::read(&req.context))
            .await
            .map_err(|e| ImageError::io("read the build context")(std::io::Error::other(e)))??;
        let base = Definition::load(&self.paths.base)?;
        let (dockerfile, notes) = complete_dockerfile(&context.dockerfile, &base.tag())?;
        if !self.paths.minion.is_file() {
            return Err(ImageError::Setup(format!(
                "no drover-minion at {} to put into the image: give drover-master --minion-bin PATH \
                 (or DROVER_MINION_BIN)",
                self.paths.minion.display()
            )));
        }
        let plan = Plan { name, version, commit: req.commit, context, base, dockerfile, notes };
        let existing = self.engine.image(&plan.tag()).await?;
        let base_image = self.find_base(&plan.base).await?;
        match (existing, base_image) {
            (None, Some(_)) => Ok(Prepared::Build(plan)),
            (None, None) => {
                self.bootstrap.check()?;
                Ok(Prepared::Build(plan))
            }
            // its base is not there: it was built on another one, so its content differs
            (Some(existing), None) => {
                Err(judge(&existing, &plan, None).expect_err("no content matches none"))
            }
            (Some(existing), Some(base)) => {
                let content = plan.content(&base.id, &read_minion(&self.paths.minion).await?.1);
                let image = judge(&existing, &plan, Some(&content))?;
                let base = BaseImage {
                    tag: plan.base.tag(),
                    id: base.id,
                    content: plan.base.content(),
                    built: false,
                };
                Ok(Prepared::UpToDate(Built { image, base, up_to_date: true }))
            }
        }
    }

    /// Builds what [`Builder::prepare`] planned: the base if it is missing, then the image,
    /// reporting on `progress`. Holds the tag's lock throughout.
    pub async fn build(&self, plan: &Plan, progress: &ProgressTx) -> Result<Built> {
        let tag = plan.tag();
        let started = Instant::now();
        let _lock = lock::take(&self.paths.locks, "tag", &tag, &tag, progress).await?;
        let base = self.ensure_base(&plan.base, progress).await?;
        let (minion, minion_sha) = read_minion(&self.paths.minion).await?;
        let content = plan.content(&base.id, &minion_sha);
        if let Some(existing) = self.engine.image(&tag).await? {
            // built meanwhile
            let image = judge(&existing, plan, Some(&content))?;
            say(progress, format!("{tag} is up to date"));
            return Ok(Built { image, base, up_to_date: true });
        }
        for note in &plan.notes {
            say(progress, note.clone());
        }
        say(progress, format!("building {tag} on {} (content {})", base.tag, short(&content)));
        let context = plan.context.clone();
        let dockerfile = format!("{}{}", plan.dockerfile, label_line(&plan.labels(&content)));
        let tar = tokio::task::spawn_blocking(move || context.engine_tar(&dockerfile, &minion))
            .await
            .map_err(|e| ImageError::io("pack the build context")(std::io::Error::other(e)))?
            .map_err(ImageError::io("pack the build context"))?;
        let built = self.engine_build(tar, &tag, &Labels::new(), progress).await?;
        let image = ImageRecord::from_info(&built)
            .filter(|r| r.tag == tag && r.content.as_deref() == Some(content.as_str()))
            .ok_or_else(|| ImageError::Failed {
                reason: format!("the engine built {tag} without drover's labels"),
                last_lines: vec![],
            })?;
        say(progress, format!("built {tag} in {:.1?}", started.elapsed()));
        Ok(Built { image, base, up_to_date: false })
    }

    /// The engine's build, its steps and output passed on; a failure names the step and
    /// keeps the last lines.
    async fn engine_build(
        &self,
        tar: Vec<u8>,
        tag: &str,
        labels: &Labels,
        progress: &ProgressTx,
    ) -> Result<ImageInfo> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut last = LastLines::default();
        let mut step: Option<(u32, u32, String)> = None;
        let pass = |event: BuildEvent, last: &mut LastLines, step: &mut Option<(u32, u32, String)>| {
            let p = match event {
                BuildEvent::Step { step: n, of, text } => {
                    *step = Some((n, of, text.clone()));
                    Progress::Step { step: n, of, text }
                }
                BuildEvent::Output(line) => {
                    last.push(&line);
                    Progress::Output(line)
                }
            };
            let _ = progress.send(p);
        };
        let result = {
            let build = self.engine.build(tar, tag, labels, &tx);
            tokio::pin!(build);
            loop {
                tokio::select! {
                    result = &mut build => break result,
                    Some(event) = rx.recv() => pass(event, &mut last, &mut step),
                }
            }
        };
        while let Ok(event) = rx.try_recv() {
            pass(event, &mut last, &mut step);
        }
        result.map_err(|e| match e {
            EngineError::Failed { reason, .. } => {
                let at = step.map(|(n, of, text)| format!(" at step {n}/{of} ({text})")).unwrap_or_default();
                ImageError::Failed {
                    reason: format!("building {tag} failed{at}: {reason}"),
                    last_lines: last.into_vec(),
                }
            }
            other => ImageError::Engine(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(path, kind, mode, data or link target)`
    type Spec<'a> = (&'a str, tar::EntryType, u32, &'a str);

    /// A context tar of these entries.
    fn tar_of(entries: &[Spec]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, kind, mode, data) in entries {
            let link = (*kind == tar::EntryType::Symlink).then_some(*data);
            let data = if link.is_some() { "" } else { *data };
            append(&mut tar, path, *kind, *mode, data.as_bytes(), link).unwrap();
        }
        tar.into_inner().unwrap()
    }

    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};

    #[test]
    fn contexts_are_read_sorted_with_modes_as_git_keeps_them() {
        let tar = tar_of(&[
            ("./src/", D, 0o700, ""),
            ("src/run.sh", F, 0o700, "#!/bin/sh\n"),
            ("Dockerfile", F, 0o600, "FROM base\n"),
            ("src/a.txt", F, 0o664, "a"),
            ("latest", L, 0o777, "src/a.txt"),
        ]);
        let ctx = Context::read(&tar).unwrap();
        assert_eq!(ctx.dockerfile, "FROM base\n");
        assert_eq!(
            ctx.entries,
            [
                Entry::File { path: "Dockerfile".into(), executable: false, data: b"FROM base\n".to_vec() },
                Entry::Symlink { path: "latest".into(), target: "src/a.txt".into() },
                Entry::Dir { path: "src".into() },
                Entry::File { path: "src/a.txt".into(), executable: false, data: b"a".to_vec() },
                Entry::File { path: "src/run.sh".into(), executable: true, data: b"#!/bin/sh\n".to_vec() },
            ]
        );
    }

    #[test]
    fn bad_contexts_are_refused() {
        let df = ("Dockerfile", F, 0o644, "FROM base\n");
        let table: Vec<(Vec<Spec>, &str)> = vec![
            (vec![("a", F, 0o644, "x")], "no Dockerfile at its top"),
            (vec![("Dockerfile", D, 0o755, "")], "Dockerfile is not a file"),
            (
                vec![df, ("up", L, 0o777, "../../etc/passwd")],
                "up: a symbolic link to ../../etc/passwd, outside",
            ),
            (vec![df, ("abs", L, 0o777, "/etc/passwd")], "abs: a symbolic link to /etc/passwd, outside"),
            (vec![df, (".drover/x", F, 0o644, "")], ".drover/x: .drover/ is where drover puts the minion"),
            (
                vec![df, ("fifo", tar::EntryType::Fifo, 0o644, "")],
                "fifo: only files, folders and symbolic links",
            ),
            (
                vec![df, ("hard", tar::EntryType::Link, 0o644, "")],
                "hard: only files, folders and symbolic links",
            ),
            (vec![df, df], "Dockerfile: twice in the build context"),
        ];
        for (entries, want) in table {
            let err = Context::read(&tar_of(&entries)).unwrap_err().to_string();
            assert!(err.contains(want), "{entries:?}: {err}");
        }
        // a path with `..`, which tar::Builder will not write: made by hand
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        header.set_size(0);
        header.set_cksum();
        let mut raw = header.as_bytes().to_vec();
        raw.extend([0u8; 1024]);
        let err = Context::read(&raw).unwrap_err().to_string();
        assert!(err.contains("../escape: a path leaving the context"), "{err}");
        let err = Context::read(b"not a tar at all, but long enough to be read as a header").unwrap_err();
        assert!(err.to_string().contains("not a readable tar"), "{err}");
    }

    #[test]
    fn links_inside_and_outside() {
        for (path, target, inside) in [
            ("a", "b", true),
            ("d/a", "../b", true),
            ("d/e/a", "../../b", true),
            ("d/a", "../../b", false),
            ("a", "..", false),
            ("d/a", "./x/../y", true),
            ("a", "/abs", false),
            ("d/a", "x/../../b", true),
            ("d/a", "x/../../../b", false),
        ] {
            assert_eq!(link_stays_inside(path, target), inside, "{path} -> {target}");
        }
    }

    #[test]
    fn dockerfiles_are_completed() {
        let tag = "base:0123456789ab";
        let (out, notes) = complete_dockerfile("FROM base\nCOPY a /a\n", tag).unwrap();
        assert!(notes.is_empty());
        assert_eq!(
            out,
            format!(
                "FROM base:0123456789ab\nCOPY a /a\n\n# added by drover: the minion is the entrypoint (see docs/images.md)\n\
                 COPY .drover/ /\n{HEALTHCHECK}\nENTRYPOINT [\"/usr/local/bin/drover-minion\"]\n"
            )
        );
        // a user and a command set by the last stage are undone; an earlier stage's are not
        let (out, _) = complete_dockerfile("FROM base\nUSER app\nCMD [\"x\"]\n", tag).unwrap();
        assert!(out.contains("USER root\nCOPY .drover/ /\n"), "{out}");
        assert!(out.ends_with("ENTRYPOINT [\"/usr/local/bin/drover-minion\"]\nCMD []\n"), "{out}");
        let (out, _) = complete_dockerfile("FROM base AS b\nUSER app\nCMD [\"x\"]\nFROM b\n", tag).unwrap();
        assert!(!out.contains("USER root") && !out.contains("CMD []"), "{out}");
        // only FROM lines change, whatever the case and spacing; the rest is kept as written
        let table = [
            ("from base:latest\nRUN true", "from base:0123456789ab\nRUN true\n"),
            (
                "FROM   --platform=linux/amd64 base  as  Build\n",
                "FROM --platform=linux/amd64 base:0123456789ab AS build\n",
            ),
            (
                "FROM base AS b\nRUN x \\\n  FROM other\nFROM b\n",
                "FROM base:0123456789ab AS b\nRUN x \\\n  FROM other\nFROM b\n",
            ),
            (
                "FROM scratch AS s\nFROM base\nCOPY --from=s / /\n",
                "FROM scratch AS s\nFROM base:0123456789ab\nCOPY --from=s / /\n",
            ),
            ("# escape=`\nFROM base\nRUN a `\n  b\n", "# escape=`\nFROM base:0123456789ab\nRUN a `\n  b\n"),
            (
                "FROM base\nRUN a \\\n# a comment inside\n  b\n",
                "FROM base:0123456789ab\nRUN a \\\n# a comment inside\n  b\n",
            ),
        ];
        for (input, want) in table {
            let (out, _) = complete_dockerfile(input, tag).unwrap();
            assert!(out.starts_with(want), "{input:?}:\n{out}");
            assert!(out.ends_with("ENTRYPOINT [\"/usr/local/bin/drover-minion\"]\n"), "{out}");
        }
        let (_, notes) = complete_dockerfile("FROM base\nENTRYPOINT [\"/app\"]\ncmd run\n", tag).unwrap();
        assert_eq!(
            notes,
            [
                "Dockerfile line 2: drover's ENTRYPOINT replaces this one: ENTRYPOINT [\"/app\"]",
                "Dockerfile line 3: drover's CMD replaces this one: cmd run"
            ]
        );
    }

    #[test]
    fn dockerfiles_that_cannot_carry_the_minion_are_refused() {
        let table = [
            ("RUN true\n", "no FROM line"),
            ("# just a comment\n", "no FROM line"),
            (
                "FROM debian:bookworm\n",
                "line 1: the last stage must build on the base image (FROM base), not `FROM debian:bookworm`",
            ),
            ("FROM base AS b\nFROM scratch\n", "line 2: the last stage must build on the base image"),
            ("ARG B=base\nFROM $B\n", "line 2: the last stage must build on the base image"),
            ("FROM base:0123\n", "line 1: FROM base:0123: write FROM base"),
            ("FROM base AS\n", "line 1: expected FROM IMAGE [AS NAME]"),
            ("FROM base\nRUN a \\\n", "ends inside a continued line"),
        ];
        for (input, want) in table {
            let err = complete_dockerfile(input, "base:0123456789ab").unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn the_content_hash_is_stable_and_sensitive_to_every_input() {
        let entries = vec![
            Entry::Dir { path: "src".into() },
            Entry::File { path: "src/app".into(), executable: true, data: b"bin".to_vec() },
            Entry::Symlink { path: "app".into(), target: "src/app".into() },
        ];
        let hash = content(&entries, "FROM base:x\n", "sha256:1", "m1");
        assert_eq!(hash, content(&entries.clone(), "FROM base:x\n", "sha256:1", "m1"));
        assert_eq!(hash.len(), 64);
        let changed = |f: &dyn Fn(&mut Vec<Entry>)| {
            let mut e = entries.clone();
            f(&mut e);
            content(&e, "FROM base:x\n", "sha256:1", "m1")
        };
        let others = [
            changed(&|e| {
                e[1] = Entry::File { path: "src/app".into(), executable: false, data: b"bin".to_vec() }
            }),
            changed(&|e| {
                e[1] = Entry::File { path: "src/app".into(), executable: true, data: b"bin2".to_vec() }
            }),
            changed(&|e| {
                e[1] = Entry::File { path: "src/app2".into(), executable: true, data: b"bin".to_vec() }
            }),
            changed(&|e| e[2] = Entry::Symlink { path: "app".into(), target: "src/other".into() }),
            changed(&|e| e[0] = Entry::Dir { path: "lib".into() }),
            changed(&|e| e.push(Entry::Dir { path: "empty".into() })),
            changed(&|e| {
                e.remove(0);
            }),
            // a file's bytes cannot pose as a path or a mode
            changed(&|e| {
                e[1] = Entry::File { path: "src/ap".into(), executable: true, data: b"pbin".to_vec() }
            }),
            content(&entries, "FROM base:x\nRUN true\n", "sha256:1", "m1"),
            content(&entries, "FROM base:x\n", "sha256:2", "m1"),
            content(&entries, "FROM base:x\n", "sha256:1", "m2"),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(other, &hash, "change {i}");
        }
        let distinct: BTreeSet<&String> = others.iter().collect();
        assert_eq!(distinct.len(), others.len());
    }

    #[test]
    fn the_engine_gets_the_completed_dockerfile_and_the_minion() {
        let ctx = Context::read(&tar_of(&[("Dockerfile", F, 0o644, "FROM base\n"), ("app", F, 0o755, "x")]))
            .unwrap();
        let tar = ctx.engine_tar("FROM base:0123456789ab\n", b"\x7fELF").unwrap();
        assert_eq!(tar, ctx.engine_tar("FROM base:0123456789ab\n", b"\x7fELF").unwrap(), "deterministic");
        let mut archive = tar::Archive::new(tar.as_slice());
        let got: Vec<(String, u32, u64, String)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = String::new();
                let _ = e.read_to_string(&mut data);
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.mtime().unwrap(), data)
            })
            .collect();
        let dir = |p: &str, m| (p.to_string(), m, MTIME, String::new());
        assert_eq!(
            got,
            [
                ("Dockerfile".to_string(), 0o644, MTIME, "FROM base:0123456789ab\n".to_string()),
                ("app".into(), 0o755, MTIME, "x".into()),
                dir(".drover", 0o755),
                dir(".drover/usr", 0o755),
                dir(".drover/usr/local", 0o755),
                dir(".drover/usr/local/bin", 0o755),
                dir(".drover/var", 0o755),
                dir(".drover/var/lib", 0o755),
                dir(".drover/var/lib/drover", 0o755),
                dir(".drover/var/lib/drover/minion", 0o700),
                (".drover/usr/local/bin/drover-minion".into(), 0o755, MTIME, "\u{7f}ELF".into()),
            ]
        );
    }

    #[test]
    fn labels_are_one_instruction() {
        let labels: Labels = [("drover.image", "coins"), ("drover.version", "1.0"), ("odd", "a \"b\" \\c")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            label_line(&labels),
            "LABEL \"drover.image\"=\"coins\" \"drover.version\"=\"1.0\" \"odd\"=\"a \\\"b\\\" \\\\c\"\n"
        );
    }

    #[test]
    fn commits_look_like_commits() {
        for good in ["0123456", "0123456789abcdef0123456789abcdef01234567", "abcdef0-dirty"] {
            assert!(check_commit(good).is_ok(), "{good}");
        }
        for bad in ["", "abc", "main", "0123456 ", "0123456-clean", "-dirty", "../0123456"] {
            assert!(check_commit(bad).is_err(), "{bad}");
        }
    }
}
