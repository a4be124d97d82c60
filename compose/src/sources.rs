//! What a translation may read, behind one trait so that it stays pure: the project's files
//! (paths relative to the compose file's folder), the environment, and the configuration
//! of images (entrypoint, command, user...). The CLI reads the disk and asks Docker; tests
//! use [`Memory`].

use std::collections::BTreeMap;

use crate::image::ImageConfig;

/// What a path of the project is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    Missing,
    /// Any other reason, as a message (`permission denied`).
    Other(String),
}

pub trait Sources {
    /// The contents of the file at `path`, relative to the compose file's folder
    /// (`web/Dockerfile`, `../common.env`), in `/` form without `.` parts.
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError>;
    /// What `path` is, or `None` when nothing is there.
    fn kind(&self, path: &str) -> Option<Kind>;
    /// A variable of the environment `drover import compose` runs in.
    fn var(&self, name: &str) -> Option<String>;
    /// The configuration of the image `reference` (`redis:7`), when it can be known (the
    /// CLI asks the local Docker engine).
    fn image(&self, reference: &str) -> Option<ImageConfig>;
}

/// Sources held in memory: files by path (folders are the prefixes of their paths), the
/// environment, and image configurations by reference.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, String>,
    pub images: BTreeMap<String, ImageConfig>,
}

impl Sources for Memory {
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.files.get(path).cloned().ok_or(ReadError::Missing)
    }

    fn kind(&self, path: &str) -> Option<Kind> {
        if self.files.contains_key(path) {
            return Some(Kind::File);
        }
        let prefix = if path.is_empty() || path == "." { String::new() } else { format!("{path}/") };
        self.files.keys().any(|p| p.starts_with(&prefix)).then_some(Kind::Dir)
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn image(&self, reference: &str) -> Option<ImageConfig> {
        self.images.get(reference).cloned()
    }
}

/// `path` relative to the compose file's folder, in `/` form without `.` parts and with
/// `..` resolved where it can be (`./a/../b` → `b`, `../x` stays). `None` for an absolute
/// path or one starting with `~`.
pub fn relative(path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('~') || path.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// Whether a path made by [`relative`] stays in the project's folder.
pub fn inside(relative: &str) -> bool {
    relative != ".." && !relative.starts_with("../")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("./a/../b").as_deref(), Some("b"));
        assert_eq!(relative("a//b/.").as_deref(), Some("a/b"));
        assert_eq!(relative(".").as_deref(), Some(""));
        assert_eq!(relative("../x").as_deref(), Some("../x"));
        assert_eq!(relative("a/../../x").as_deref(), Some("../x"));
        assert_eq!(relative("/etc"), None);
        assert_eq!(relative("~/x"), None);
        assert!(inside("a/b") && inside("") && !inside("../x") && !inside(".."));
    }

    #[test]
    fn memory_folders_are_prefixes() {
        let mut m = Memory::default();
        m.files.insert("web/app/main.py".into(), b"x".to_vec());
        assert_eq!(m.kind("web"), Some(Kind::Dir));
        assert_eq!(m.kind("web/app"), Some(Kind::Dir));
        assert_eq!(m.kind("web/app/main.py"), Some(Kind::File));
        assert_eq!(m.kind("we"), None);
        assert_eq!(m.kind(""), Some(Kind::Dir));
    }
}
