//! Keys: what a hello is answered by the key files of `pki/` (welcome, pending, refused),
//! new keys (capped, rate-limited, autosigned by a grain), key actions from the API, and
//! sessions ended when their key file changes by hand.

use std::time::{Duration, Instant};

use api::{KeyAction, KeyActionRequest, KeyActionResponse, KeyState};
use serde_json::json;
use wire::{Hello, MinionId, PublicKey, ToMinion};

use tokio::sync::mpsc;

use super::Hub;
use crate::autosign::Signed;
use crate::limits::{KeyRefusal, Reason};
use crate::pki::KeyFiles;

/// A new key to record, with the hello that brought it.
pub(crate) struct KeyWrite {
    routing: Vec<u8>,
    key: PublicKey,
    hello: Hello,
    state: KeyState,
    /// The autosign file and grain that accepted it, if one did.
    signed: Option<Signed>,
    /// What the files held for its id when the hello came: the writer writes only if they
    /// still do (a key action or a hand edit meanwhile wins).
    known: Option<(KeyState, PublicKey)>,
}

/// A key the writer recorded, or not.
pub(crate) struct KeyWritten {
    write: KeyWrite,
    result: Written,
}

enum Written {
    Done,
    /// The files changed since the hello: nothing written.
    Changed,
    Failed(String),
}

/// The thread that writes new keys to `pki/`, one at a time (each write is synced to disk),
/// so that a storm of new minions never has the hub wait on the disk. Each key comes back
/// to the hub as a [`KeyWritten`]. It ends with the hub.
pub(crate) struct KeyWriter {
    tx: std::sync::mpsc::Sender<KeyWrite>,
}

impl KeyWriter {
    pub(crate) fn start(files: KeyFiles, done: mpsc::UnboundedSender<KeyWritten>) -> KeyWriter {
        let (tx, rx) = std::sync::mpsc::channel::<KeyWrite>();
        std::thread::Builder::new()
            .name("key-writer".into())
            .spawn(move || {
                for write in rx {
                    let result = if files.lookup(&write.hello.id) != write.known {
                        Written::Changed
                    } else {
                        match files.put(write.state, &write.hello.id, &write.key) {
                            Ok(()) => Written::Done,
                            Err(e) => Written::Failed(e.to_string()),
                        }
                    };
                    if done.send(KeyWritten { write, result }).is_err() {
                        break;
                    }
                }
            })
            .expect("a thread for the key writer");
        KeyWriter { tx }
    }

    fn write(&self, write: KeyWrite) {
        // the thread ends only with the hub, which owns this sender
        let _ = self.tx.send(write);
    }
}

impl Hub {
    pub(super) fn on_hello(&mut self, routing: Vec<u8>, key: PublicKey, hello: Hello) {
        let id = hello.id.clone();
        if self.stalled.contains_key(&id) {
            let reason =
                "the master still holds what it sent this minion on a connection that did not read it; \
                          it takes this minion back once that connection read it or closed"
                    .to_string();
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        if let Some(path) = self.keys.broken(&id) {
            tracing::error!(%id, path = %path.display(), "refused a minion whose key file is unreadable");
            let reason = format!("the master cannot read {}: fix or delete that file", path.display());
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        let known = self.keys.lookup(&id);
        match known {
            Some((KeyState::Accepted, k)) if k == key => self.welcome(routing, key, hello),
            Some((state, k)) if k != key && state != KeyState::Rejected => {
                tracing::warn!(
                    %id, presented = %key.fingerprint(), expected = %k.fingerprint(),
                    "refused a connection: another key is registered for this id"
                );
                self.event(
                    &id,
                    "drover/key/mismatch",
                    json!({"id": id, "presented": key.fingerprint(), "registered": k.fingerprint(), "state": state}),
                );
                self.send(
                    &routing,
                    &ToMinion::Refused {
                        reason: format!(
                            "another key is registered for '{id}'; if this minion's key really changed, \
                             run 'drover key delete {id}' on the master"
                        ),
                    },
                );
            }
            Some((KeyState::Rejected, _)) => {
                let reason = format!(
                    "the key of '{id}' is rejected; 'drover key delete {id}' on the master lets it register again"
                );
                self.send(&routing, &ToMinion::Refused { reason });
            }
            Some((KeyState::Pending, _)) | None => {
                match self.writing.get(&id) {
                    // its key is being written: the hello it sends again finds the file
                    Some(k) if *k == key => return,
                    Some(_) => {
                        let reason = format!("another key is being registered for '{id}'");
                        self.send(&routing, &ToMinion::Refused { reason });
                        return;
                    }
                    None => {}
                }
                let signed = match &mut self.autosign {
                    Some(a) if !self.auto_accept => a.check(&hello.grains),
                    _ => None,
                };
                let state =
                    if self.auto_accept || signed.is_some() { KeyState::Accepted } else { KeyState::Pending };
                // a key never seen waits in pending/ only if the cap and the rate allow
                if known.is_none() && state == KeyState::Pending {
                    // the keys being written count as pending already
                    let (keys, writing) = (&self.keys, self.writing.len());
                    if let Err(refusal) =
                        self.new_keys.admit(Instant::now(), || keys.ids(KeyState::Pending).len() + writing)
                    {
                        let reason = match refusal {
                            KeyRefusal::Full { .. } => Reason::PendingFull,
                            KeyRefusal::Rate => Reason::NewKeyRate,
                        };
                        self.drops.note(id.as_str(), reason);
                        self.send(&routing, &ToMinion::Refused { reason: refusal.to_string() });
                        return;
                    }
                }
                // a pending minion says hello every interval: write only what changes
                if known.is_some() && state == KeyState::Pending {
                    self.send(&routing, &ToMinion::Pending);
                    self.pending_routes.insert(id, routing);
                    return;
                }
                // written off the hub's task (synced to disk); the hello goes on once it is
                self.writing.insert(id, key.clone());
                self.key_writer.write(KeyWrite { routing, key, hello, state, signed, known });
            }
            Some((KeyState::Accepted, _)) => unreachable!("matched above"),
        }
    }

    /// A key the writer thread recorded (or could not): the events of a new key, then the
    /// hello that brought it goes on as if it came now, from the files (the truth, which
    /// may have changed meanwhile by hand or by `drover key`).
    pub(super) fn on_key_written(&mut self, done: KeyWritten) {
        let KeyWritten { write: KeyWrite { routing, key, hello, state, signed, known }, result } = done;
        let id = hello.id.clone();
        self.writing.remove(&id);
        match result {
            Written::Done => {}
            // a key action or a hand edit came first: the hello goes by the files as they are
            Written::Changed => return self.on_hello(routing, key, hello),
            Written::Failed(e) => {
                tracing::error!(%id, error = %e, "cannot record a minion key");
                let reason = format!("the master cannot record this minion's key: {e}");
                self.send(&routing, &ToMinion::Refused { reason });
                return;
            }
        }
        if known.is_none() {
            tracing::info!(%id, fingerprint = %key.fingerprint(), ?state, "new minion key");
            self.event(
                &id,
                "drover/key/new",
                json!({"id": id, "fingerprint": key.fingerprint(), "state": state}),
            );
        }
        if let Some(s) = signed {
            tracing::info!(
                %id, fingerprint = %key.fingerprint(), grain = %s.grain, value = %s.value,
                file = %s.file.display(), "key accepted by a grain (autosign)"
            );
            self.event(
                &id,
                "drover/key/autosign",
                json!({"id": id, "fingerprint": key.fingerprint(), "grain": s.grain, "value": s.value,
                       "file": s.file.display().to_string(),
                       "reason": format!("grain {} is {:?}, listed in {}", s.grain, s.value, s.file.display())}),
            );
        }
        self.on_hello(routing, key, hello);
    }

    /// Key files are the truth: when a folder of `pki/` changed (a key moved or removed by
    /// hand), every session is checked against the files again, at most once a second.
    pub(super) fn recheck_keys(&mut self, now: Instant) {
        if now.duration_since(self.pki_checked.0) < Duration::from_secs(1) {
            return;
        }
        let stamp = self.keys.stamp();
        let changed = stamp != self.pki_checked.1;
        self.pki_checked = (now, stamp);
        if !changed {
            return;
        }
        let revoked: Vec<MinionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                self.keys.lookup(id).is_none_or(|(state, key)| state != KeyState::Accepted || key != s.key)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in revoked {
            if let Some(s) = self.sessions.remove(&id) {
                tracing::warn!(%id, "the accepted key file changed by hand: the session ends");
                self.roles.disconnected(&id);
                self.event(
                    &id,
                    "drover/minion/disconnected",
                    json!({"id": id, "reason": "key no longer accepted"}),
                );
                // it says hello again, and is treated as its key files now say
                self.send(&s.routing, &ToMinion::Rehello);
            }
        }
    }

    pub(super) fn key_action(&mut self, req: KeyActionRequest) -> Result<KeyActionResponse, String> {
        let ids: Vec<MinionId> = match (&req.id, req.all) {
            (Some(_), true) => return Err("give an id or --all, not both".into()),
            (None, false) => return Err("give a minion id or --all".into()),
            (Some(id), false) => {
                let id = MinionId::new(id.as_str()).map_err(|e| e.to_string())?;
                if self.writing.contains_key(&id) {
                    return Err(format!(
                        "the key of '{id}' is being recorded (its minion just said hello): try again in a moment"
                    ));
                }
                if self.keys.lookup(&id).is_none() {
                    return Err(format!("no key for minion '{id}' (see 'drover key list')"));
                }
                vec![id]
            }
            (None, true) => match req.action {
                KeyAction::Accept | KeyAction::Reject => self.keys.ids(KeyState::Pending),
                KeyAction::Delete => [KeyState::Accepted, KeyState::Pending, KeyState::Rejected]
                    .into_iter()
                    .flat_map(|s| self.keys.ids(s))
                    .collect(),
            },
        };
        let mut changed = Vec::new();
        // a key being recorded is left to its write (its next hello shows it)
        for id in ids.into_iter().filter(|id| !self.writing.contains_key(id)) {
            let done = match req.action {
                KeyAction::Accept => self.keys.transition(&id, KeyState::Accepted),
                KeyAction::Reject => self.keys.transition(&id, KeyState::Rejected),
                KeyAction::Delete => self.keys.delete(&id),
            }
            .map_err(|e| e.to_string())?;
            if !done {
                continue;
            }
            let tag = match req.action {
                KeyAction::Accept => "accept",
                KeyAction::Reject => "reject",
                KeyAction::Delete => "delete",
            };
            tracing::info!(%id, action = tag, "key changed");
            self.event(&id, &format!("drover/key/{tag}"), json!({"id": id}));
            match req.action {
                // A waiting minion says hello again and is welcomed at once.
                KeyAction::Accept => {
                    if let Some(routing) = self.pending_routes.remove(&id) {
                        self.send(&routing, &ToMinion::Rehello);
                    }
                }
                KeyAction::Reject => {
                    self.roles.disconnected(&id);
                    if let Some(s) = self.sessions.remove(&id) {
                        self.send(
                            &s.routing,
                            &ToMinion::Refused { reason: format!("the key of '{id}' was rejected") },
                        );
                    }
                }
                // A deleted minion comes back as pending when it says hello again.
                KeyAction::Delete => {
                    self.roles.forget(&id);
                    if let Some(s) = self.sessions.remove(&id) {
                        self.send(&s.routing, &ToMinion::Rehello);
                    }
                    self.pending_routes.remove(&id);
                }
            }
            changed.push(id.to_string());
        }
        Ok(KeyActionResponse { changed })
    }
}
