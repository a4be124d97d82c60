//! The master's key store: its own keypair and one file per minion key.
//!
//! ```text
//! DIR/pki/master.pub, master.key          the master's CURVE keypair (key: mode 0600)
//! DIR/pki/{accepted,pending,rejected}/ID  a minion's public key (Z85), one file per id
//! ```
//! The files are the truth: `ls` and `mv` by hand work too. The hub answers from a
//! [`KeyIndex`] of them that a thread of its own reads again whenever a folder changes.

use std::collections::{BTreeSet, HashMap};
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

    /// Where the key for `id` is, and which key it is. An unreadable or malformed file
    /// counts as absent for its state, with a warning (see [`KeyFiles::known`]).
    pub fn lookup(&self, id: &MinionId) -> Option<(KeyState, PublicKey)> {
        self.files().lookup(id)
    }

    /// Records a key in `state`, removing it from the other states.
    pub fn put(&self, state: KeyState, id: &MinionId, key: &PublicKey) -> Result<(), PkiError> {
        self.files().put(state, id, key)
    }

    /// Deletes every key file of `id`. Returns whether one existed.
    pub fn delete(&self, id: &MinionId) -> Result<bool, PkiError> {
        self.files().delete(id)
    }

    /// The key files alone, for the thread that reads and writes them for the hub
    /// (`hub::keys::KeyFilesThread`).
    pub fn files(&self) -> KeyFiles {
        KeyFiles { root: self.root.clone() }
    }
}

/// The key files of `pki/`, without the master's keypair ([`KeyStore::files`]).
#[derive(Clone, Debug)]
pub struct KeyFiles {
    root: PathBuf,
}

impl KeyFiles {
    fn path(&self, state: KeyState, id: &MinionId) -> PathBuf {
        self.root.join(state_dir(state)).join(id.as_str())
    }

    /// Where the key for `id` is, and which key it is ([`KeyStore::lookup`]).
    pub fn lookup(&self, id: &MinionId) -> Option<(KeyState, PublicKey)> {
        let known = self.known(id);
        if let Some(path) = &known.broken {
            tracing::warn!(path = %path.display(), "ignoring unreadable key file");
        }
        known.key
    }

    /// What the files of `id` hold: its key, taken in [`LOOKUP_ORDER`] (a file that cannot
    /// be read as a key counts as absent), and such a file, if one exists.
    pub fn known(&self, id: &MinionId) -> Known {
        let mut known = Known::default();
        for s in LOOKUP_ORDER {
            let path = self.path(s, id);
            if !path.exists() {
                continue;
            }
            match PublicKey::read(&path) {
                Ok(k) if known.key.is_none() => known.key = Some((s, k)),
                Ok(_) => {}
                Err(_) if known.broken.is_none() => known.broken = Some(path),
                Err(_) => {}
            }
        }
        known
    }

    /// Every key file of `pki/`, read ([`KeyIndex`]). Files whose names are not valid ids
    /// are skipped.
    pub fn index(&self) -> KeyIndex {
        let mut index = KeyIndex::default();
        for id in self.all_ids() {
            let known = self.known(&id);
            index.set(id, known);
        }
        index
    }

    /// When each state folder last changed (a file added, removed or renamed in it), to
    /// notice keys moved by hand.
    pub fn stamp(&self) -> Vec<Option<std::time::SystemTime>> {
        STATES
            .into_iter()
            .map(|s| fs::metadata(self.root.join(state_dir(s))).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Records a key in `state` (written to a temporary file, synced, renamed), removing it
    /// from the other states.
    pub fn put(&self, state: KeyState, id: &MinionId, key: &PublicKey) -> Result<(), PkiError> {
        let path = self.path(state, id);
        write_atomic(&path, format!("{key}\n").as_bytes())
            .map_err(|source| PkiError::Io { path: path.clone(), source })?;
        for other in STATES.into_iter().filter(|s| *s != state) {
            self.remove_file(other, id)?;
        }
        Ok(())
    }

    fn remove_file(&self, state: KeyState, id: &MinionId) -> Result<(), PkiError> {
        let path = self.path(state, id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PkiError::Io { path, source: e }),
            _ => Ok(()),
        }
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

    /// The ids with a file in any state, sorted, each once.
    pub fn all_ids(&self) -> Vec<MinionId> {
        let ids: BTreeSet<MinionId> = STATES.into_iter().flat_map(|s| self.ids(s)).collect();
        ids.into_iter().collect()
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
}

/// What the key files of one id hold ([`KeyFiles::known`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Known {
    /// Its key and the state it is in.
    pub key: Option<(KeyState, PublicKey)>,
    /// A file of it that exists but cannot be read as a key: the hub refuses such a minion
    /// rather than letting a new key replace a file it cannot read.
    pub broken: Option<PathBuf>,
}

/// Every minion key of `pki/`, in memory: what the hub answers hellos, targets and
/// `drover key list` from, so that none of them waits on the disk. The key-files thread
/// reads it whole at start and whenever a folder of `pki/` changed (by hand too), and
/// hands the hub what each write and key action it makes leaves in the files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyIndex {
    ids: HashMap<MinionId, Known>,
}

impl KeyIndex {
    pub fn lookup(&self, id: &MinionId) -> Option<(KeyState, PublicKey)> {
        self.ids.get(id).and_then(|k| k.key.clone())
    }

    /// What the index holds for `id` (nothing: the default).
    pub fn known(&self, id: &MinionId) -> Known {
        self.ids.get(id).cloned().unwrap_or_default()
    }

    pub fn broken(&self, id: &MinionId) -> Option<&Path> {
        self.ids.get(id).and_then(|k| k.broken.as_deref())
    }

    /// What the files of `id` hold now.
    pub fn set(&mut self, id: MinionId, known: Known) {
        if known == Known::default() {
            self.ids.remove(&id);
        } else {
            self.ids.insert(id, known);
        }
    }

    /// The ids whose key is in `state`, sorted.
    pub fn ids(&self, state: KeyState) -> Vec<MinionId> {
        let mut ids: Vec<MinionId> = self
            .ids
            .iter()
            .filter(|(_, k)| k.key.as_ref().is_some_and(|(s, _)| *s == state))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn count(&self, state: KeyState) -> usize {
        self.ids.values().filter(|k| k.key.as_ref().is_some_and(|(s, _)| *s == state)).count()
    }

    /// Every key with its state and fingerprint, for `drover key list`: by state, then id.
    pub fn list(&self) -> Vec<api::KeyEntry> {
        STATES
            .into_iter()
            .flat_map(|state| {
                self.ids(state).into_iter().map(move |id| {
                    let key = self.lookup(&id).map(|(_, k)| k.fingerprint()).unwrap_or_default();
                    api::KeyEntry { id: id.to_string(), fingerprint: key, state }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_between_states_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap().files();
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
        let store = KeyStore::open(dir.path()).unwrap().files();
        fs::write(dir.path().join("accepted/bad"), "not a key").unwrap();
        fs::write(dir.path().join("accepted/not an id"), "x").unwrap();
        let bad = MinionId::new("bad").unwrap();
        assert_eq!(store.lookup(&bad), None);
        let index = store.index();
        assert!(index.list().is_empty());
        assert_eq!(index.broken(&bad), Some(dir.path().join("accepted/bad").as_path()));
    }

    #[test]
    fn the_index_holds_what_the_files_do() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyStore::open(dir.path()).unwrap().files();
        let (a, b) = (MinionId::new("a").unwrap(), MinionId::new("b").unwrap());
        let (ka, kb) = (KeyPair::generate().unwrap().public, KeyPair::generate().unwrap().public);
        files.put(KeyState::Accepted, &a, &ka).unwrap();
        files.put(KeyState::Pending, &b, &kb).unwrap();
        // a change cut short: the most restrictive state wins, as for a lookup
        fs::write(dir.path().join("rejected/a"), format!("{ka}\n")).unwrap();
        let mut index = files.index();
        assert_eq!(index.lookup(&a), Some((KeyState::Rejected, ka.clone())));
        assert_eq!(index.lookup(&b), Some((KeyState::Pending, kb.clone())));
        assert_eq!((index.count(KeyState::Pending), index.count(KeyState::Accepted)), (1, 0));
        let listed: Vec<(String, KeyState)> = index.list().into_iter().map(|e| (e.id, e.state)).collect();
        assert_eq!(listed, [("b".to_string(), KeyState::Pending), ("a".to_string(), KeyState::Rejected)]);
        files.delete(&b).unwrap();
        index.set(b.clone(), files.known(&b));
        assert_eq!(index.lookup(&b), None);
        assert_eq!(index, files.index());
    }
}
