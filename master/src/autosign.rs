//! Accepting a new minion's key by a grain it reports, as Salt's `autosign_grains_dir`:
//! `DIR/autosign_grains/<grain>` lists accepted values of grain `<grain>`, one a line
//! (blank lines and lines starting with `#` are skipped). A pending minion whose hello
//! carries one of those values is accepted at once.
//!
//! Whoever can write these files can let any minion in, so a file (or the folder) that is
//! writable by everyone or not owned by the master's user is never used: the master warns
//! about it, once per file and change, and skips it. A grain is matched by its text,
//! exactly: a string as it is, a number or boolean as written, a list when an element is.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wire::msg::Grains;

/// The folder under the master's DIR.
pub const AUTOSIGN_DIR: &str = "autosign_grains";

/// The most bytes of one file read: a list of accepted values, not a data set.
const MAX_FILE: u64 = 1 << 20;

/// Why a key was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub grain: String,
    pub value: String,
    pub file: PathBuf,
}

pub struct Autosign {
    dir: PathBuf,
    /// The master's effective user: the owner a file must have.
    uid: u32,
    /// Warnings given (a text each), so a pending minion's hello every few seconds does
    /// not repeat them.
    warned: HashSet<String>,
}

impl Autosign {
    /// The files of `dir` (`DIR/autosign_grains`), owned by `uid`.
    pub fn new(dir: PathBuf, uid: u32) -> Autosign {
        Autosign { dir, uid, warned: HashSet::new() }
    }

    /// Of the master's own user.
    pub fn for_master(master_dir: &Path) -> Autosign {
        Autosign::new(master_dir.join(AUTOSIGN_DIR), nix::unistd::geteuid().as_raw())
    }

    /// The grain of `grains` (in file-name order) that a file of the folder accepts, if any.
    pub fn check(&mut self, grains: &Grains) -> Option<Signed> {
        let listing = match fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.warn(format!("cannot read {}: {e}; no key is accepted by a grain", self.dir.display()));
                return None;
            }
        };
        if let Err(why) = fs::metadata(&self.dir).map_err(|e| e.to_string()).and_then(|m| self.trusted(&m)) {
            self.warn(format!(
                "{} {why}: no key is accepted by a grain until that is fixed",
                self.dir.display()
            ));
            return None;
        }
        let mut names: Vec<String> =
            listing.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        for grain in names {
            let Some(have) = grains.get(&grain) else { continue };
            let file = self.dir.join(&grain);
            let values = match self.read(&file) {
                Ok(values) => values,
                Err(why) => {
                    self.warn(format!("{} {why}: it accepts no key", file.display()));
                    continue;
                }
            };
            if let Some(value) = texts(have).into_iter().find(|t| values.iter().any(|v| v == t)) {
                return Some(Signed { grain, value, file });
            }
        }
        None
    }

    /// The values `file` lists, if it may be trusted.
    fn read(&self, file: &Path) -> Result<Vec<String>, String> {
        let opened = fs::File::open(file).map_err(|e| format!("cannot be read ({e})"))?;
        let meta = opened.metadata().map_err(|e| format!("cannot be read ({e})"))?;
        if !meta.is_file() {
            return Err("is not a file".into());
        }
        self.trusted(&meta)?;
        let mut text = String::new();
        opened.take(MAX_FILE).read_to_string(&mut text).map_err(|e| format!("cannot be read ({e})"))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    fn trusted(&self, meta: &fs::Metadata) -> Result<(), String> {
        if meta.uid() != self.uid {
            return Err(format!(
                "is owned by uid {}, not by the master's user (uid {}); chown it to that user",
                meta.uid(),
                self.uid
            ));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(format!("is writable by everyone (mode {:o}); chmod o-w it", meta.mode() & 0o7777));
        }
        Ok(())
    }

    fn warn(&mut self, text: String) {
        if self.warned.insert(text.clone()) {
            tracing::warn!("autosign: {text}");
        }
    }
}

/// The texts a grain value matches as: a list's elements, a scalar as written.
fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::Null | Value::Object(_) => Vec::new(),
        Value::Array(items) => items.iter().flat_map(texts).collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn grains(v: Value) -> Grains {
        serde_json::from_value(v).unwrap()
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_listed_grain_value_signs_and_nothing_else_does() {
        let master = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let mut a = Autosign::new(master.path().join(AUTOSIGN_DIR), me);
        let g = grains(json!({"tier": "front", "roles": ["x", "web"], "num_cpus": 4, "os": "Debian"}));
        assert_eq!(a.check(&g), None, "no folder: nothing signs");

        let dir = master.path().join(AUTOSIGN_DIR);
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        fs::write(dir.join("os"), "# comments and blank lines are skipped\n\ndebian\n").unwrap();
        fs::write(dir.join("tier"), "back\n  front  \n").unwrap();
        let signed = a.check(&g).unwrap();
        assert_eq!((signed.grain.as_str(), signed.value.as_str()), ("tier", "front"));
        assert_eq!(signed.file, dir.join("tier"));
        // matched exactly (case too), by list element, by number
        for (file, text, want) in [("roles", "web\n", Some("web")), ("num_cpus", "4\n", Some("4"))] {
            let _ = fs::remove_file(dir.join("tier"));
            fs::write(dir.join(file), text).unwrap();
            assert_eq!(a.check(&g).map(|s| s.value).as_deref(), want, "{file}");
            fs::remove_file(dir.join(file)).unwrap();
        }
        assert_eq!(a.check(&g), None, "`debian` is not `Debian`");
        assert_eq!(a.check(&grains(json!({"tier": "front"}))), None);

        // a file everyone may write is not used, nor a folder everyone may write
        fs::write(dir.join("tier"), "front\n").unwrap();
        chmod(&dir.join("tier"), 0o666);
        assert_eq!(a.check(&g), None, "a world-writable file signed");
        assert!(a.warned.iter().any(|w| w.contains("is writable by everyone (mode 666)")), "{:?}", a.warned);
        chmod(&dir.join("tier"), 0o644);
        assert!(a.check(&g).is_some());
        chmod(&dir, 0o777);
        assert_eq!(a.check(&g), None, "a world-writable folder signed");
        chmod(&dir, 0o755);

        // owned by another user than the master's: as if the master ran as uid + 1
        let mut other = Autosign::new(dir.clone(), me + 1);
        assert_eq!(other.check(&g), None, "a file of another user signed");
        assert!(other.warned.iter().any(|w| w.contains("not by the master's user")), "{:?}", other.warned);
    }
}
