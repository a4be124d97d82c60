//! The base image: Debian made by debootstrap from `images/base/base.yaml`, imported into
//! the engine without a registry.
//!
//! Its name is its content: the sha256 of the definition ([`Definition::content`]) is the
//! label [`LABEL_CONTENT`] and the tag `base:<first 12>`, so [`Builder::ensure_base`] looks
//! the hash up first and builds only what no engine run made before (a second call is a
//! no-op and says so). A build takes the lock of its hash ([`super::lock`]), so two builds
//! of one base never both run debootstrap. It works in a scratch folder under
//! [`Paths::work`](super::Paths): the root file system, then an uncompressed tar of it
//! streamed to a file (never the whole tree in memory), imported by
//! [`Engine::import_rootfs`]; the folder goes, built or not. The engine imports a tar
//! whole or not at all, so a failed build leaves no image.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt;

use super::{BASE, Builder, ImageError, Progress, ProgressTx, Result, lock, megabytes, say, short};
use crate::engine::{Engine, ImageInfo, LABEL_CONTENT, LABEL_IMAGE, LABEL_VERSION, Labels};

/// The file a base is defined by, in its folder.
pub const FILE: &str = "base.yaml";
/// The mirror when neither base.yaml nor the host's apt sources name one.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Bumped when drover makes a base differently from the same definition, so that every
/// base is made again.
const RECIPE: &str = "drover base image 2";
/// How many lines of output a failure shows.
const LAST_LINES: usize = 20;
/// Free space below which a failed step is taken for a full disk.
const NEARLY_FULL: u64 = 4 << 20;

/// `images/base/base.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The Debian release: `bookworm`.
    pub suite: String,
    /// debootstrap's variant: `minbase` (the default) or `buildd`.
    #[serde(default = "minbase")]
    pub variant: String,
    /// Packages installed besides the variant's own.
    #[serde(default)]
    pub packages: Vec<String>,
    /// The Debian mirror; default: the host's apt sources, else [`DEFAULT_MIRROR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
}

fn minbase() -> String {
    "minbase".into()
}

impl Definition {
    /// Reads `dir/base.yaml`.
    pub fn load(dir: &Path) -> Result<Definition> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ImageError::Invalid(format!("cannot read the base image's definition {}: {e}", path.display()))
        })?;
        Definition::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a definition; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Definition> {
        let mut def: Definition = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            ImageError::Invalid(format!("{file}{at}: {e}"))
        })?;
        let bad = |what: String| ImageError::Invalid(format!("{file}: {what}"));
        let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !word(&def.suite) {
            return Err(bad(format!("suite {:?} is not a Debian release name (like bookworm)", def.suite)));
        }
        if !["minbase", "buildd"].contains(&def.variant.as_str()) {
            return Err(bad(format!("variant {:?}: expected minbase or buildd", def.variant)));
        }
        for p in &def.packages {
            let ok = p.len() >= 2
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
                && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(format!("{p:?} is not a Debian package name")));
            }
        }
        if let Some(m) = &def.mirror
            && (!(m.starts_with("http://") || m.starts_with("https://") || m.starts_with("file:///"))
                || m.contains(char::is_whitespace))
        {
            return Err(bad(format!("mirror {m:?}: expected an http(s):// or file:/// URL")));
        }
        def.packages.sort();
        def.packages.dedup();
        Ok(def)
    }

    /// The sha256 of what makes this base: suite, variant, packages (as a set), the mirror if
    /// the definition names one, and how drover makes it. Comments and order do not count.
    pub fn content(&self) -> String {
        let canonical = serde_json::to_string(self).expect("a definition serializes");
        hex::encode(Sha256::digest(format!("{RECIPE}\n{canonical}")))
    }

    /// `base:<first 12 of the content hash>`.
    pub fn tag(&self) -> String {
        format!("{BASE}:{}", short(&self.content()))
    }
}

/// A base image the engine has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImage {
    /// `base:<first 12 of content>`
    pub tag: String,
    pub id: String,
    pub content: String,
    /// Whether this call built it (else it was there).
    pub built: bool,
}

/// What makes a root file system from a definition: [`Debootstrap`]; a fake in tests.
pub trait Bootstrap: Send + Sync + 'static {
    /// Whether this machine can make one (a clear [`ImageError::Setup`] when not).
    fn check(&self) -> Result<()>;
    /// Makes the root file system of `def` in the empty folder `root`, its output on `progress`.
    fn run(
        &self,
        def: &Definition,
        root: &Path,
        progress: &ProgressTx,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// `debootstrap --variant=V --include=P,… SUITE ROOT MIRROR`, as root.
#[derive(Clone, Debug, Default)]
pub struct Debootstrap;

impl Debootstrap {
    fn program() -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join("debootstrap"))
            .find(|p| p.is_file())
    }
}

impl Bootstrap for Debootstrap {
    fn check(&self) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            return Err(ImageError::Setup(
                "building the base image needs root (debootstrap makes device files and runs dpkg in a \
                 chroot): run drover-master as root, at least once to build the base"
                    .into(),
            ));
        }
        if Self::program().is_none() {
            return Err(ImageError::Setup(
                "debootstrap is not installed: apt-get install debootstrap (scripts/deps.sh does)".into(),
            ));
        }
        Ok(())
    }

    async fn run(&self, def: &Definition, root: &Path, progress: &ProgressTx) -> Result<()> {
        self.check()?;
        let program = Self::program().expect("checked");
        let mirror = def.mirror.clone().unwrap_or_else(|| host_mirror(&def.suite));
        say(
            progress,
            format!(
                "debootstrap {} ({}, {} packages) from {mirror}",
                def.suite,
                def.variant,
                def.packages.len()
            ),
        );
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg(format!("--variant={}", def.variant));
        if !def.packages.is_empty() {
            cmd.arg(format!("--include={}", def.packages.join(",")));
        }
        cmd.arg(&def.suite)
            .arg(root)
            .arg(&mirror)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(ImageError::io("run debootstrap"))?;
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        for out in [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = lines_tx.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        drop(lines_tx);
        let mut last = LastLines::default();
        while let Some(line) = lines.recv().await {
            last.push(&line);
            let _ = progress.send(Progress::Output(line));
        }
        let status = child.wait().await.map_err(ImageError::io("wait for debootstrap"))?;
        if status.success() {
            return Ok(());
        }
        // debootstrap's own log says what failed in the chroot; the folder is removed next
        let log = root.join("debootstrap/debootstrap.log");
        if let Ok(f) = std::fs::File::open(&log) {
            let mut tail = LastLines::default();
            BufReader::new(f).lines().map_while(std::result::Result::ok).for_each(|l| tail.push(&l));
            last.push("(the end of debootstrap.log:)");
            tail.0.iter().for_each(|l| last.push(l));
        }
        Err(ImageError::Failed {
            reason: format!("debootstrap failed ({status})"),
            last_lines: last.into_vec(),
        })
    }
}

/// The last [`LAST_LINES`] lines seen.
#[derive(Default)]
pub(crate) struct LastLines(std::collections::VecDeque<String>);

impl LastLines {
    pub(crate) fn push(&mut self, line: &str) {
        if self.0.len() == LAST_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_string());
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.0.into()
    }
}

/// The Debian mirror this host's apt uses for `suite` (or any Debian suite), from
/// `/etc/apt/sources.list.d/debian.sources` or `/etc/apt/sources.list`.
pub fn host_mirror(suite: &str) -> String {
    let deb822 = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    mirror_from_sources(&deb822, &list, suite).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The first `deb` source whose suites hold `suite`, else the first one that is not the
/// security archive; deb822 stanzas first, then one-line entries.
pub fn mirror_from_sources(deb822: &str, list: &str, suite: &str) -> Option<String> {
    // (uri, suites)
    let mut sources: Vec<(String, Vec<String>)> = Vec::new();
    for stanza in deb822.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some((k, v)) = line.split_once(':').filter(|_| !line.starts_with(char::is_whitespace)) {
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        if fields.get("enabled").is_some_and(|e| e.eq_ignore_ascii_case("no"))
            || !fields.get("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
        {
            continue;
        }
        let suites: Vec<String> = fields
            .get("suites")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        for uri in fields.get("uris").map(|u| u.split_whitespace()).into_iter().flatten() {
            sources.push((uri.to_string(), suites.clone()));
        }
    }
    for line in list.lines().map(str::trim) {
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            // options: `[arch=amd64 signed-by=…]`
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(s)) = (words.next(), words.next()) {
            sources.push((uri.to_string(), vec![s.to_string()]));
        }
    }
    let is_security = |(uri, suites): &&(String, Vec<String>)| {
        uri.contains("security") || suites.iter().any(|s| s.ends_with("-security") || s.contains('/'))
    };
    let usable =
        |u: &String| u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file:/");
    let exact = sources.iter().filter(|s| usable(&s.0)).find(|(_, suites)| suites.iter().any(|s| s == suite));
    let any = || sources.iter().filter(|s| usable(&s.0)).find(|s| !is_security(s));
    exact.or_else(any).map(|(uri, _)| uri.trim_end_matches('/').to_string())
}

impl<E: Engine, B: Bootstrap> Builder<E, B> {
    /// The base image of `def` if the engine has it (found by its content label).
    pub async fn find_base(&self, def: &Definition) -> Result<Option<ImageInfo>> {
        let (image, content) =
            (format!("{LABEL_IMAGE}={BASE}"), format!("{LABEL_CONTENT}={}", def.content()));
        let mut found = self.engine.images(&[&image, &content]).await?;
        let tag = def.tag();
        found.sort_by_key(|i| !i.tags.contains(&tag));
        Ok(found.into_iter().next())
    }

    /// Makes sure the engine has the base of `def`, tagged `base:<hash>` and `base:latest`:
    /// found by its hash, else built (once, however many ask at the same time).
    pub async fn ensure_base(&self, def: &Definition, progress: &ProgressTx) -> Result<BaseImage> {
        let tag = def.tag();
        if let Some(found) = self.find_base(def).await? {
            say(progress, format!("{tag} is up to date (built {})", age(found.created)));
            return self.tagged(def, found, false).await;
        }
        let _lock = lock::take(&self.paths.locks, "base", &def.content(), &tag, progress).await?;
        if let Some(found) = self.find_base(def).await? {
            say(progress, format!("{tag} was built meanwhile"));
            return self.tagged(def, found, false).await;
        }
        self.bootstrap.check()?;
        say(progress, format!("building {tag} from {}", self.paths.base.join(FILE).display()));
        let started = std::time::Instant::now();
        let scratch = Scratch::create(&self.paths.work, &tag)?;
        let built = self.build_base(def, &scratch, progress).await;
        scratch.remove().await;
        let image = built?;
        say(progress, format!("built {tag} ({}) in {:.0?}", megabytes(image.size), started.elapsed()));
        self.tagged(def, image, true).await
    }

    async fn build_base(
        &self,
        def: &Definition,
        scratch: &Scratch,
        progress: &ProgressTx,
    ) -> Result<ImageInfo> {
        let (root, tar) = (scratch.dir.join("rootfs"), scratch.dir.join("rootfs.tar"));
        std::fs::create_dir(&root).map_err(ImageError::io(format!("create {}", root.display())))?;
        let work = self.paths.work.clone();
        let full = move |e: ImageError, doing: &str| out_of_space(e, &work, doing);
        self.bootstrap.run(def, &root, progress).await.map_err(|e| full(e, "making the root file system"))?;
        say(
            progress,
            "packing the root file system (without apt's package cache and lists, nor /dev's files)",
        );
        let (r, t) = (root.clone(), tar.clone());
        let size = tokio::task::spawn_blocking(move || -> Result<u64> {
            trim_apt(&r).map_err(ImageError::io(format!("clean {}", r.display())))?;
            empty_dev(&r).map_err(ImageError::io(format!("clean {}", r.join("dev").display())))?;
            pack(&r, &t).map_err(ImageError::io(format!("write {}", t.display())))
        })
        .await
        .map_err(|e| ImageError::io("pack the root file system")(std::io::Error::other(e)))?
        .map_err(|e| full(e, "packing the root file system"))?;
        say(progress, format!("importing {} as {}", megabytes(size), def.tag()));
        let labels: Labels = [
            (LABEL_IMAGE, BASE.to_string()),
            (LABEL_CONTENT, def.content()),
            (LABEL_VERSION, short(&def.content()).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(self.engine.import_rootfs(&tar, &def.tag(), &labels).await?)
    }

    /// Points `base:<hash>` and `base:latest` at `image` where they do not already.
    async fn tagged(&self, def: &Definition, image: ImageInfo, built: bool) -> Result<BaseImage> {
        let version = short(&def.content()).to_string();
        for tag in [version.as_str(), "latest"] {
            let current = self.engine.image(&format!("{BASE}:{tag}")).await?;
            if current.is_none_or(|c| c.id != image.id) {
                self.engine.tag(&image.id, BASE, tag).await?;
            }
        }
        Ok(BaseImage { tag: def.tag(), id: image.id, content: def.content(), built })
    }
}

/// `2 hours ago`, for people.
fn age(created: i64) -> String {
    let secs = (chrono::Utc::now().timestamp() - created).max(0);
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A failure taken for a full disk when it says so or the work folder is (nearly) full:
/// a clear error, with what was running.
fn out_of_space(e: ImageError, work: &Path, doing: &str) -> ImageError {
    let says_so = e.to_string().contains("No space left on device")
        || e.last_lines().iter().any(|l| l.contains("No space left on device"))
        || matches!(&e, ImageError::Io { source, .. } if source.raw_os_error() == Some(libc_enospc()));
    let free = free_space(work);
    if !says_so && free.is_none_or(|f| f >= NEARLY_FULL) {
        return e;
    }
    let mut last_lines = e.last_lines().to_vec();
    if !matches!(e, ImageError::Failed { .. }) {
        last_lines.push(e.to_string());
    }
    let free = free.map_or("unknown".into(), |f| format!("{} MiB", f >> 20));
    ImageError::Failed {
        reason: format!(
            "no space left on device in {} while {doing} ({free} free); the base image needs about \
             600 MB there while it builds: free some, or give drover-master --build-dir on a larger disk",
            work.display()
        ),
        last_lines,
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

fn free_space(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Deletes downloaded packages and package lists: an image never runs apt-get install
/// (what it needs is in base.yaml), and they are a third of its size.
fn trim_apt(root: &Path) -> std::io::Result<()> {
    let archives = root.join("var/cache/apt/archives");
    for entry in std::fs::read_dir(&archives).into_iter().flatten() {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name().to_string_lossy().ends_with(".deb") {
            std::fs::remove_file(entry.path())?;
        }
    }
    let lists = root.join("var/lib/apt/lists");
    for entry in std::fs::read_dir(&lists).into_iter().flatten() {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            // `partial/` stays, empty, as apt expects it
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                if inner.file_type()?.is_dir() {
                    std::fs::remove_dir_all(inner.path())?;
                } else {
                    std::fs::remove_file(inner.path())?;
                }
            }
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Empties `dev/` (the folder stays). debootstrap makes device files there, which no
/// container sees (the engine mounts a /dev of its own on every container and build step),
/// and which break builds on the base on some storage drivers: fuse-overlayfs opens a device
/// file to remove or replace it, so `COPY --from=<an image with /dev/ptmx> / /` onto a base
/// that has one fails (`unlinkat /dev/ptmx: no such device`), as do `RUN rm` and `mv` of
/// one. An image whose own layers hold device files copies onto an empty `/dev`.
fn empty_dev(root: &Path) -> std::io::Result<()> {
    let dev = root.join("dev");
    for entry in std::fs::read_dir(&dev).into_iter().flatten() {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// An uncompressed tar of everything under `root` (owners, modes, links and device files
/// kept), streamed to `out`; returns its size.
fn pack(root: &Path, out: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::create(out)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    tar.append_dir_all("", root)?;
    let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// A scratch folder, removed when done (or dropped). Whatever debootstrap left mounted in
/// it is unmounted first; if something stays mounted the folder is left, with a warning,
/// rather than deleting through a mount.
pub(crate) struct Scratch {
    dir: PathBuf,
    removed: bool,
}

impl Scratch {
    fn create(work: &Path, tag: &str) -> Result<Scratch> {
        std::fs::create_dir_all(work).map_err(ImageError::io(format!("create {}", work.display())))?;
        let name = format!("{}-{}-{:08x}", tag.replace(':', "-"), std::process::id(), fastrand::u32(..));
        let dir = work.join(name);
        std::fs::create_dir(&dir).map_err(ImageError::io(format!("create {}", dir.display())))?;
        Ok(Scratch { dir, removed: false })
    }

    async fn remove(mut self) {
        self.removed = true;
        let dir = self.dir.clone();
        let _ = tokio::task::spawn_blocking(move || remove_scratch(&dir)).await;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.removed {
            remove_scratch(&self.dir);
        }
    }
}

fn remove_scratch(dir: &Path) {
    let mounted = |dir: &Path| -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut below: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mount)
            .filter(|m| m.starts_with(dir))
            .collect();
        // deepest first
        below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        below
    };
    for m in mounted(dir) {
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m.display(), error = %e, "cannot unmount what debootstrap left mounted");
        }
    }
    if !mounted(dir).is_empty() {
        tracing::warn!(dir = %dir.display(), "something is still mounted below it: left in place");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the scratch folder");
    }
}

/// A mount point as /proc/self/mountinfo writes it (`\040` for a space).
fn unescape_mount(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let octal =
            b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(((d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32) as u8);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = "suite: bookworm\nvariant: minbase\npackages: [redis-server, haproxy]\n";

    #[test]
    fn the_content_hash_is_the_definition_not_its_spelling() {
        let def = Definition::parse(DEF, "base.yaml").unwrap();
        let hash = def.content();
        assert_eq!(hash.len(), 64);
        assert_eq!(def.tag(), format!("base:{}", &hash[..12]));
        // stable: comments, order, repeats and the default variant do not count
        let same =
            "# the demo's base\nsuite: bookworm\npackages:\n  - haproxy\n  - redis-server\n  - haproxy\n";
        assert_eq!(Definition::parse(same, "base.yaml").unwrap().content(), hash);
        // sensitive to each part
        for other in [
            "suite: trixie\npackages: [redis-server, haproxy]\n",
            "suite: bookworm\nvariant: buildd\npackages: [redis-server, haproxy]\n",
            "suite: bookworm\npackages: [redis-server]\n",
            "suite: bookworm\npackages: [redis-server, haproxy, procps]\n",
            "suite: bookworm\npackages: [redis-server, haproxy]\nmirror: http://ftp.de.debian.org/debian\n",
        ] {
            assert_ne!(Definition::parse(other, "base.yaml").unwrap().content(), hash, "{other}");
        }
    }

    #[test]
    fn bad_definitions_say_where_and_what() {
        let table = [
            ("suite: bookworm\npackage: [x]\n", "base.yaml:2:1: unknown field `package`"),
            ("packages: [x]\n", "missing field `suite`"),
            ("suite: Bookworm\n", "suite \"Bookworm\" is not a Debian release name"),
            ("suite: bookworm\nvariant: fat\n", "variant \"fat\": expected minbase or buildd"),
            (
                "suite: bookworm\npackages: [\"redis server\"]\n",
                "\"redis server\" is not a Debian package name",
            ),
            ("suite: bookworm\npackages: [--force]\n", "is not a Debian package name"),
            ("suite: bookworm\nmirror: ftp://x\n", "expected an http(s):// or file:/// URL"),
            ("suite: [bookworm\n", "base.yaml:"),
        ];
        for (text, want) in table {
            let err = Definition::parse(text, "base.yaml").unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_mirror_comes_from_the_hosts_apt_sources() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        let table = [
            (deb822, "", "bookworm", Some("http://deb.debian.org/debian")),
            // another release: the host's Debian mirror serves it too, not the security archive
            (deb822, "", "trixie", Some("http://deb.debian.org/debian")),
            ("Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n", "", "bookworm", None),
            (
                "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n",
                "",
                "bookworm",
                None,
            ),
            (
                "",
                "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n",
                "bookworm",
                Some("http://mirror.example/debian"),
            ),
            ("", "deb http://security.debian.org/debian-security bookworm-security main\n", "bookworm", None),
            ("", "", "bookworm", None),
        ];
        for (deb822, list, suite, want) in table {
            assert_eq!(
                mirror_from_sources(deb822, list, suite).as_deref(),
                want,
                "{deb822:?} {list:?} {suite}"
            );
        }
    }

    #[test]
    fn apt_caches_and_dev_files_go_and_the_rest_is_tarred_as_it_is() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["usr/bin", "var/cache/apt/archives/partial", "var/lib/apt/lists/partial", "etc", "dev/pts"]
        {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (f, data) in [
            ("usr/bin/tool", "#!/bin/sh\n"),
            ("etc/motd", "hi\n"),
            ("var/cache/apt/archives/redis_7_amd64.deb", "deb"),
            ("var/cache/apt/archives/lock", ""),
            ("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", "x"),
            ("var/lib/apt/lists/partial/half", "x"),
            // debootstrap's device files, as plain files here (mknod needs root)
            ("dev/null", ""),
            ("dev/ptmx", ""),
        ] {
            std::fs::write(root.join(f), data).unwrap();
        }
        std::fs::set_permissions(root.join("usr/bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/etc/motd", root.join("etc/motd.link")).unwrap();
        symlink("/proc/self/fd", root.join("dev/fd")).unwrap();

        trim_apt(&root).unwrap();
        empty_dev(&root).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let size = pack(&root, &tar).unwrap();
        assert_eq!(size, std::fs::metadata(&tar).unwrap().len());
        let mut archive = tar::Archive::new(std::fs::File::open(&tar).unwrap());
        let mut seen = std::collections::BTreeMap::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            seen.insert(e.path().unwrap().display().to_string(), (e.header().mode().unwrap() & 0o7777, link));
        }
        let names: Vec<&str> = seen.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "etc",
                "etc/motd",
                "etc/motd.link",
                "usr",
                "usr/bin",
                "usr/bin/tool",
                "var",
                "var/cache",
                "var/cache/apt",
                "var/cache/apt/archives",
                "var/cache/apt/archives/lock",
                "var/cache/apt/archives/partial",
                "var/lib",
                "var/lib/apt",
                "var/lib/apt/lists",
                "var/lib/apt/lists/partial",
            ]
        );
        assert_eq!(seen["usr/bin/tool"].0, 0o755);
        assert_eq!(seen["bin"].1.as_deref(), Some("usr/bin"));
        assert_eq!(seen["etc/motd.link"].1.as_deref(), Some("/etc/motd"));
    }

    #[test]
    fn mount_points_are_read_as_the_kernel_escapes_them() {
        assert_eq!(unescape_mount("/tmp/a\\040b/proc"), PathBuf::from("/tmp/a b/proc"));
        assert_eq!(unescape_mount("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mount("/odd\\"), PathBuf::from("/odd\\"));
    }

    #[test]
    fn a_full_disk_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let enospc = ImageError::Io {
            what: "write rootfs.tar".into(),
            source: std::io::Error::from_raw_os_error(libc_enospc()),
        };
        let e = out_of_space(enospc, dir.path(), "packing the root file system");
        let text = e.to_string();
        assert!(text.starts_with("no space left on device in "), "{text}");
        assert!(text.contains("while packing the root file system"), "{text}");
        assert_eq!(
            e.last_lines().last().map(String::as_str),
            Some("write rootfs.tar: No space left on device (os error 28)")
        );
        let said = ImageError::Failed {
            reason: "debootstrap failed".into(),
            last_lines: vec!["tar: No space left on device".into()],
        };
        assert!(out_of_space(said, dir.path(), "x").to_string().starts_with("no space left"));
        // other failures stay what they are (the temp dir has room)
        let other = ImageError::Failed {
            reason: "debootstrap failed (exit status: 1)".into(),
            last_lines: vec!["E: no such package".into()],
        };
        assert_eq!(out_of_space(other, dir.path(), "x").to_string(), "debootstrap failed (exit status: 1)");
    }
}
