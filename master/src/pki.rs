//! The master's key store: its own keypair and one file per minion key.
//!
//! ```text
//! DIR/pki/master.pub, master.key          the master's CURVE keypair (key: mode 0600)
//! DIR/pki/{accepted,pending,rejected}/ID  a minion's public key (Z85), one file per id
//! ```
//! The files are the truth: every lookup reads them, so `ls` and `mv` by hand work too.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use api::KeyState;
use wire::keys::KeyError;
use wire::private::write_atomic;
use wire::{KeyPair, MinionId, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no key for minion '{0}' (see 'drover key list')")]
    UnknownId(String),
    #[error("the key of '{id}' is {state}, not {wanted}")]
    WrongState { id: String, state: &'static str, wanted: &'static str },
}

pub struct KeyStore {
    root: PathBuf,
    master: KeyPair,
}

const STATES: [KeyState; 3] = [KeyState::Accepted, KeyState::Pending, KeyState::Rejected];

/// The order a lookup tries the states in: the most restrictive first, so that a change
/// cut short between writing the new file and removing the old one (a crash, a full disk)
/// never leaves a key more trusted than either state.
const LOOKUP_ORDER: [KeyState; 3] = [KeyState::Rejected, KeyState::Pending, KeyState::Accepted];

pub fn state_dir(state: KeyState) -> &'static str {
    match state {
        KeyState::Accepted => "accepted",
        KeyState::Pending => "pending",
        KeyState::Rejected => "rejected",
    }
}

impl KeyStore {
    /// Opens `DIR/pki`, creating the folders and the master keypair on first start.
    pub fn open(pki: &Path) -> Result<Self, PkiError> {
        let (master, created) = KeyPair::load_or_create(pki, "master")?;
        for s in STATES {
            let dir = pki.join(state_dir(s));
            wire::private::create_dir(&dir).map_err(|source| PkiError::Io { path: dir, source })?;
        }
        if created {
            tracing::info!(fingerprint = %master.public.fingerprint(), "created the master keypair");
        }
        Ok(Self { root: pki.to_path_buf(), master })
    }

    pub fn master(&self) -> &KeyPair {
        &self.master
    }

    fn path(&self, state: KeyState, id: &MinionId) -> PathBuf {
        self.root.join(state_dir(state)).join(id.as_str())
    }

    /// Where the key for `id` is, and which key it is. An unreadable or malformed file
    /// counts as absent for its state, with a warning (see [`KeyStore::broken`]).
    pub fn lookup(&self, id: &MinionId) -> Option<(KeyState, PublicKey)> {
        self.files().lookup(id)
    }

    /// When each state folder last changed (a file added, removed or renamed in it), to
    /// notice keys moved by hand.
    pub fn stamp(&self) -> Vec<Option<std::time::SystemTime>> {
        STATES
            .into_iter()
            .map(|s| fs::metadata(self.root.join(state_dir(s))).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// A key file of `id` that exists but cannot be read as a key, if any: the hub refuses
    /// such a minion rather than letting a new key replace a file it cannot read.
    pub fn broken(&self, id: &MinionId) -> Option<PathBuf> {
        STATES.into_iter().map(|s| self.path(s, id)).find(|p| p.exists() && PublicKey::read(p).is_err())
    }

    /// Records a key in `state`, removing it from the other states.
    pub fn put(&self, state: KeyState, id: &MinionId, key: &PublicKey) -> Result<(), PkiError> {
        self.files().put(state, id, key)
    }

    /// The key files alone, to write from another thread (the hub writes a new key off its
    /// task: the write is synced to disk).
    pub fn files(&self) -> KeyFiles {
        KeyFiles { root: self.root.clone() }
    }

    fn remove_file(&self, state: KeyState, id: &MinionId) -> Result<(), PkiError> {
        self.files().remove_file(state, id)
    }

    /// Moves `id`'s key to `to`. Accepting takes a pending or rejected key; rejecting takes
    /// a pending or accepted one.
    pub fn transition(&self, id: &MinionId, to: KeyState) -> Result<bool, PkiError> {
        let (from, key) = self.lookup(id).ok_or_else(|| PkiError::UnknownId(id.to_string()))?;
        if from == to {
            return Ok(false);
        }
        self.put(to, id, &key)?;
        Ok(true)
    }

    /// Deletes every key file of `id`. Returns whether one existed.
    pub fn delete(&self, id: &MinionId) -> Result<bool, PkiError> {
        let existed = self.lookup(id).is_some();
        for s in STATES {
            self.remove_file(s, id)?;
        }
        Ok(existed)
    }

    /// The ids in `state`, sorted. Files whose names are not valid ids are skipped.
    pub fn ids(&self, state: KeyState) -> Vec<MinionId> {
        let dir = self.root.join(state_dir(state));
        let mut ids: Vec<MinionId> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| MinionId::new(n).ok())
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list keys");
                Vec::new()
            }
        };
        ids.sort();
        ids
    }

    /// Every key with its state and fingerprint, for `drover key list`.
    pub fn list(&self) -> Vec<api::KeyEntry> {
        let mut out = Vec::new();
        for s in STATES {
            for id in self.ids(s) {
                match PublicKey::read(&self.path(s, &id)) {
                    Ok(k) => {
                        out.push(api::KeyEntry { id: id.to_string(), fingerprint: k.fingerprint(), state: s })
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring unreadable key file"),
                }
            }
        }
        out
    }
}

/// The key files of `pki/`, without the master's keypair: what a thread that writes a key
/// needs ([`KeyStore::files`]).
#[derive(Clone, Debug)]
pub struct KeyFiles {
    root: PathBuf,
}

impl KeyFiles {
    /// Where the key for `id` is, and which key it is ([`KeyStore::lookup`]).
    pub fn lookup(&self, id: &MinionId) -> Option<(KeyState, PublicKey)> {
        LOOKUP_ORDER.into_iter().find_map(|s| {
            let path = self.root.join(state_dir(s)).join(id.as_str());
            if !path.exists() {
                return None;
            }
            match PublicKey::read(&path) {
                Ok(k) => Some((s, k)),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable key file");
                    None
                }
            }
        })
    }

    /// Records a key in `state` (written to a temporary file, synced, renamed), removing it
    /// from the other states.
    pub fn put(&self, state: KeyState, id: &MinionId, key: &PublicKey) -> Result<(), PkiError> {
        let path = self.root.join(state_dir(state)).join(id.as_str());
        write_atomic(&path, format!("{key}\n").as_bytes())
            .map_err(|source| PkiError::Io { path: path.clone(), source })?;
        for other in STATES.into_iter().filter(|s| *s != state) {
            self.remove_file(other, id)?;
        }
        Ok(())
    }

    fn remove_file(&self, state: KeyState, id: &MinionId) -> Result<(), PkiError> {
        let path = self.root.join(state_dir(state)).join(id.as_str());
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PkiError::Io { path, source: e }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_between_states_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let id = MinionId::new("m1").unwrap();
        let key = KeyPair::generate().unwrap().public;
        assert_eq!(store.lookup(&id), None);
        store.put(KeyState::Pending, &id, &key).unwrap();
        assert_eq!(store.lookup(&id), Some((KeyState::Pending, key.clone())));
        assert!(store.transition(&id, KeyState::Accepted).unwrap());
        assert!(!store.transition(&id, KeyState::Accepted).unwrap());
        assert!(dir.path().join("accepted/m1").exists());
        assert!(!dir.path().join("pending/m1").exists());
        assert_eq!(store.ids(KeyState::Accepted), vec![id.clone()]);
        assert!(store.delete(&id).unwrap());
        assert!(!store.delete(&id).unwrap());
        assert!(matches!(store.transition(&id, KeyState::Accepted), Err(PkiError::UnknownId(_))));
    }

    #[test]
    fn garbage_key_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("accepted/bad"), "not a key").unwrap();
        fs::write(dir.path().join("accepted/not an id"), "x").unwrap();
        assert_eq!(store.lookup(&MinionId::new("bad").unwrap()), None);
        assert!(store.list().is_empty());
    }
}
