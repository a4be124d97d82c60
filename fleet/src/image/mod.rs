//! Images without a registry: the base OS image made from Debian packages, and app images
//! built on it with the minion as entrypoint. See docs/images.md for what a user sees.
//!
//! - [`base`]: `images/base/base.yaml`, its content hash, debootstrap (behind [`Bootstrap`]),
//!   the rootfs tarred to a file and imported; found again by its hash, never rebuilt.
//! - [`app`]: an uploaded build context checked, its Dockerfile completed (`FROM base`
//!   resolved, the minion added), its content hashed, built; a tag is never rebuilt.
//! - [`lock`]: a lock file per base or tag, so two builds of one thing never run at once.
//!
//! What the fleet controller calls: [`find`] (does `name:version` exist, and is it drover's),
//! [`versions`] (every built version of a name), [`list`] (every drover image).

pub mod app;
pub mod base;
pub mod lock;

use std::path::PathBuf;

use crate::engine::{
    Engine, EngineError, ImageInfo, LABEL_COMMIT, LABEL_CONTENT, LABEL_IMAGE, LABEL_VERSION,
};

pub use app::{Built, Plan, Prepared, Request};
pub use base::{BaseImage, Bootstrap, Debootstrap, Definition};

/// The name the base image goes by: `base:<first 12 of its content hash>` and `base:latest`.
pub const BASE: &str = "base";

/// What a build reports while it runs, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// What happens next, or what was found (`base:0123456789ab is up to date`).
    Phase(String),
    /// `Step 3/7 : COPY …` of the engine's build.
    Step { step: u32, of: u32, text: String },
    /// A line of output of what runs (debootstrap, a `RUN`).
    Output(String),
}

pub type ProgressTx = tokio::sync::mpsc::UnboundedSender<Progress>;

pub(crate) fn say(progress: &ProgressTx, text: impl Into<String>) {
    let _ = progress.send(Progress::Phase(text.into()));
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// What the user gave is wrong: the tag, the context, the Dockerfile, base.yaml.
    #[error("{0}")]
    Invalid(String),
    /// The tag exists with other content; a tag is never rebuilt.
    #[error("{0}")]
    Refused(String),
    /// This master cannot build: not root, no debootstrap, no drover-minion to put in.
    #[error("{0}")]
    Setup(String),
    /// The build ran and failed; `last_lines` is the end of its output.
    #[error("{reason}")]
    Failed { reason: String, last_lines: Vec<String> },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl ImageError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let what = what.into();
        move |source| ImageError::Io { what, source }
    }

    /// The output lines that explain a failed build (empty for other errors).
    pub fn last_lines(&self) -> &[String] {
        match self {
            ImageError::Failed { last_lines, .. } => last_lines,
            _ => &[],
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Where a build works.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The base image's definition: the folder holding `base.yaml` (`<repo>/images/base`).
    pub base: PathBuf,
    /// Scratch space for the base's root file system and its tar (~500 MB while it builds).
    pub work: PathBuf,
    /// Lock files, shared by every build on this machine (`drover-locks` in the system's
    /// temp dir).
    pub locks: PathBuf,
    /// The `drover-minion` binary put into every app image.
    pub minion: PathBuf,
}

/// Builds images on an engine: the base through `bootstrap`, apps through the engine's build.
pub struct Builder<E, B = Debootstrap> {
    pub engine: E,
    pub bootstrap: B,
    pub paths: Paths,
}

/// A drover image as the engine has it: one with a [`LABEL_IMAGE`] and a `name:version` tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    pub version: String,
    /// `name:version`
    pub tag: String,
    /// `sha256:…`
    pub id: String,
    /// The sha256 of what it was built from ([`LABEL_CONTENT`]).
    pub content: Option<String>,
    /// The git commit of its definition, `-dirty` when the tree had changes ([`LABEL_COMMIT`]).
    pub commit: Option<String>,
    /// Seconds since the epoch.
    pub created: i64,
    pub size: u64,
}

impl ImageRecord {
    /// The record of an image carrying drover's labels and tagged `name:version`.
    pub fn from_info(info: &ImageInfo) -> Option<ImageRecord> {
        let name = info.labels.get(LABEL_IMAGE)?;
        let version = info.labels.get(LABEL_VERSION)?;
        let tag = format!("{name}:{version}");
        if !info.tags.contains(&tag) {
            return None;
        }
        Some(ImageRecord {
            name: name.clone(),
            version: version.clone(),
            tag,
            id: info.id.clone(),
            content: info.labels.get(LABEL_CONTENT).cloned(),
            commit: info.labels.get(LABEL_COMMIT).cloned(),
            created: info.created,
            size: info.size,
        })
    }
}

/// Every drover image (app images and bases), by name, then oldest first.
pub async fn list(engine: &impl Engine) -> Result<Vec<ImageRecord>, EngineError> {
    let mut all: Vec<ImageRecord> =
        engine.images(&[LABEL_IMAGE]).await?.iter().filter_map(ImageRecord::from_info).collect();
    all.sort_by(|a, b| (&a.name, a.created, &a.version).cmp(&(&b.name, b.created, &b.version)));
    Ok(all)
}

/// Every built version of `name`, oldest first.
pub async fn versions(engine: &impl Engine, name: &str) -> Result<Vec<ImageRecord>, EngineError> {
    let filter = format!("{LABEL_IMAGE}={name}");
    let mut all: Vec<ImageRecord> =
        engine.images(&[&filter]).await?.iter().filter_map(ImageRecord::from_info).collect();
    all.sort_by(|a, b| (a.created, &a.version).cmp(&(b.created, &b.version)));
    Ok(all)
}

/// The image `name:version`, if it exists and drover built it as that.
pub async fn find(
    engine: &impl Engine,
    name: &str,
    version: &str,
) -> Result<Option<ImageRecord>, EngineError> {
    let tag = format!("{name}:{version}");
    Ok(engine.image(&tag).await?.as_ref().and_then(ImageRecord::from_info).filter(|r| r.tag == tag))
}

/// `name:version`, checked: a name of lowercase letters, digits and `._-` (not `base`, which
/// drover makes), a version as Docker allows in a tag (not `latest`: a version names one
/// content for good).
pub fn parse_tag(tag: &str) -> Result<(String, String)> {
    let bad = |why: &str| ImageError::Invalid(format!("bad tag {tag:?}: {why}"));
    let (name, version) = tag.split_once(':').ok_or_else(|| bad("expected NAME:VERSION, like coins:1.0"))?;
    let name_ok = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if !name_ok(name) {
        return Err(bad(
            "the name must be 1-64 lowercase letters, digits and . _ -, starting and ending with a letter or digit",
        ));
    }
    if name == BASE {
        return Err(bad("`base` is the base image, which drover makes from images/base/base.yaml"));
    }
    let version_ok = (1..=128).contains(&version.len())
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !version.starts_with(['.', '-']);
    if !version_ok {
        return Err(bad("the version must be 1-128 letters, digits and . _ -, not starting with . or -"));
    }
    if version == "latest" {
        return Err(bad("`latest` is not a version: a tag names one content for good (1.0, 2024.06.01...)"));
    }
    Ok((name.to_string(), version.to_string()))
}

/// A hash or commit as people read it (and the base image's tag): 12 hex digits.
pub use api::short;

/// `123456789` → `118 MB`.
pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{} MB", (bytes + 500_000) / 1_000_000)
}

#[cfg(test)]
mod tests;
