//! Keys: what a hello is answered by the key files of `pki/` (welcome, pending, refused),
//! new keys (capped, rate-limited, autosigned by a grain), key actions from the API, and
//! sessions ended when their key file changes by hand.
//!
//! The hub reads no key file itself: it answers from a [`KeyIndex`], and every read and
//! write of `pki/` is made by the key-files thread ([`KeyFilesThread`]), one at a time, in
//! the order asked. What the thread did comes back to the hub as [`KeyNews`], in that same
//! order, each with what the files of the ids it touched hold now; so the index never
//! says less than what the hub itself asked for. A hand edit is in it within a second of
//! its folder changing, ten at most (a file rewritten in place changes no folder).

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use api::{KeyAction, KeyActionRequest, KeyActionResponse, KeyState};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use wire::{Hello, MinionId, PublicKey, ToMinion};

use super::Hub;
use crate::autosign::Signed;
use crate::limits::{KeyRefusal, Reason};
use crate::pki::{KeyFiles, KeyIndex, Known, PkiError};

/// How often the key-files thread looks whether a folder of `pki/` changed.
const RECHECK: Duration = Duration::from_secs(1);

/// How often it reads `pki/` again whatever the folders' times say: a key file rewritten in
/// place changes no folder, and two changes within a folder's time resolution look like one.
const REREAD: Duration = Duration::from_secs(10);

/// A new key to record, with the hello that brought it.
pub(crate) struct KeyWrite {
    routing: Vec<u8>,
    key: PublicKey,
    hello: Hello,
    /// The state to record the key in; none: only look whether the files hold what the
    /// index does for the id ([`Written::Same`] if they do), and write nothing.
    state: Option<KeyState>,
    /// The autosign file and grain that accepted it, if one did.
    signed: Option<Signed>,
    /// What the index held for its id when the hello came: the thread writes only if the
    /// files still do (a key action, a hand edit or a key the index did not know yet wins).
    indexed: Known,
}

/// A key action for the thread, with the API's answer to give once it is made.
pub(crate) struct KeyActionWork {
    action: KeyAction,
    ids: Targets,
    reply: oneshot::Sender<Result<KeyActionResponse, String>>,
}

enum Targets {
    One(MinionId),
    /// `--all`: pending keys to accept or reject; every key to delete.
    All,
}

enum KeyWork {
    Write(Box<KeyWrite>),
    Act(KeyActionWork),
    /// Read the files of one id again: another part of the master changed them (the
    /// fleet enrolling or revoking a slot's key).
    Reread(MinionId),
}

/// What the key-files thread did, for the hub ([`Hub::on_key_news`]).
pub(crate) enum KeyNews {
    /// A new key recorded, or not; with what its id's files hold now.
    Written { write: Box<KeyWrite>, result: Written, now: Known },
    /// A key action made: the ids it changed, with what their files hold now, then the
    /// error that stopped it, if one did.
    Acted { work: KeyActionWork, changed: Vec<(MinionId, Known)>, error: Option<String> },
    /// A folder of `pki/` changed (or [`REREAD`] passed): every key file, read again.
    Read(KeyIndex),
    /// What the files of one id hold now ([`KeyWork::Reread`]).
    Reread { id: MinionId, now: Known },
}

pub(crate) enum Written {
    Done,
    /// Looked (no [`KeyWrite::state`]): the files hold what the index did.
    Same,
    /// The files changed since the hello: nothing written.
    Changed,
    Failed(String),
}

/// The thread that reads and writes `pki/` for the hub (each write synced to disk), so
/// that no hello, storm of new minions or `drover key` waits on the disk on the hub's
/// task. It ends with the hub.
pub(crate) struct KeyFilesThread {
    tx: std::sync::mpsc::Sender<KeyWork>,
}

impl KeyFilesThread {
    /// `told` is the index the hub starts with, `stamp` the folders' times from before it
    /// was read.
    pub(crate) fn start(
        files: KeyFiles,
        mut stamp: Vec<Option<std::time::SystemTime>>,
        mut told: KeyIndex,
        news: mpsc::UnboundedSender<KeyNews>,
    ) -> KeyFilesThread {
        let (tx, rx) = std::sync::mpsc::channel::<KeyWork>();
        std::thread::Builder::new()
            .name("key-files".into())
            .spawn(move || {
                let (mut checked, mut read) = (Instant::now(), Instant::now());
                // `told` follows what the hub's index holds (all of it comes from here), so
                // that a reading which finds nothing new is not sent
                loop {
                    let said = match rx.recv_timeout(RECHECK.saturating_sub(checked.elapsed())) {
                        Ok(work) => {
                            let done = do_work(&files, work);
                            match &done {
                                KeyNews::Written { write, now, .. } => {
                                    told.set(write.hello.id.clone(), now.clone())
                                }
                                KeyNews::Acted { changed, .. } => {
                                    changed.iter().for_each(|(id, now)| told.set(id.clone(), now.clone()))
                                }
                                KeyNews::Reread { id, now } => told.set(id.clone(), now.clone()),
                                KeyNews::Read(_) => {}
                            }
                            news.send(done)
                        }
                        Err(RecvTimeoutError::Timeout) => Ok(()),
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    if checked.elapsed() >= RECHECK {
                        checked = Instant::now();
                        let now = files.stamp();
                        if now != stamp || read.elapsed() >= REREAD {
                            (stamp, read) = (now, Instant::now());
                            let index = files.index();
                            if index != told {
                                told = index.clone();
                                if news.send(KeyNews::Read(index)).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    if said.is_err() {
                        break;
                    }
                }
            })
            .expect("a thread for the key files");
        KeyFilesThread { tx }
    }

    fn send(&self, work: KeyWork) {
        // the thread ends only with the hub, which owns this sender
        let _ = self.tx.send(work);
    }
}

fn do_work(files: &KeyFiles, work: KeyWork) -> KeyNews {
    match work {
        KeyWork::Write(write) => {
            let id = write.hello.id.clone();
            let result = match write.state {
                _ if files.known(&id) != write.indexed => Written::Changed,
                None => Written::Same,
                Some(state) => match files.put(state, &id, &write.key) {
                    Ok(()) => Written::Done,
                    Err(e) => Written::Failed(e.to_string()),
                },
            };
            KeyNews::Written { write, result, now: files.known(&id) }
        }
        KeyWork::Act(work) => {
            let ids = match &work.ids {
                Targets::One(id) if files.lookup(id).is_none() => {
                    let error = Some(PkiError::UnknownId(id.to_string()).to_string());
                    return KeyNews::Acted { work, changed: Vec::new(), error };
                }
                Targets::One(id) => vec![id.clone()],
                Targets::All => match work.action {
                    KeyAction::Accept | KeyAction::Reject => files.ids(KeyState::Pending),
                    KeyAction::Delete => files.all_ids(),
                },
            };
            let (mut changed, mut error) = (Vec::new(), None);
            for id in ids {
                let done = match work.action {
                    KeyAction::Accept => files.transition(&id, KeyState::Accepted),
                    KeyAction::Reject => files.transition(&id, KeyState::Rejected),
                    KeyAction::Delete => files.delete(&id),
                };
                match done {
                    Ok(true) => changed.push((id.clone(), files.known(&id))),
                    Ok(false) => {}
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            KeyNews::Acted { work, changed, error }
        }
        KeyWork::Reread(id) => KeyNews::Reread { now: files.known(&id), id },
    }
}

impl Hub {
    pub(super) fn on_hello(&mut self, routing: Vec<u8>, key: PublicKey, hello: Hello) {
        let id = hello.id.clone();
        // the key-files thread just found the files as the index says ([`Written::Same`])
        let verified = self.looked.take().is_some_and(|(i, k)| i == id && k == key);
        if self.stalled.contains_key(&id) {
            let reason =
                "the master still holds what it sent this minion on a connection that did not read it; \
                          it takes this minion back once that connection read it or closed"
                    .to_string();
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        if let Some(path) = self.keys.broken(&id) {
            // (fixed in place since the index read it? the thread looks first)
            if !verified {
                return self.look(routing, key, hello);
            }
            tracing::error!(%id, path = %path.display(), "refused a minion whose key file is unreadable");
            let path = path.to_path_buf();
            let reason = format!("the master cannot read {}: fix or delete that file", path.display());
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        let known = self.keys.lookup(&id);
        // a refusal goes by the files: the index may not have read a change yet (a fleet
        // slot enrolled again with a new key a moment ago)
        let refused = known.as_ref().is_some_and(|(s, k)| *k != key || *s == KeyState::Rejected);
        if refused && !verified {
            return self.look(routing, key, hello);
        }
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
                match self.writing.get(&id).or_else(|| self.looking.get(&id)) {
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
                    // the files may hold a key the index has not read yet (a fleet slot's,
                    // one put by hand): the thread looks before it counts as new
                    if !verified {
                        self.looking.insert(id, key.clone());
                        return self.look(routing, key, hello);
                    }
                    // the keys being written count as pending already
                    let (keys, writing) = (&self.keys, self.writing.len());
                    if let Err(refusal) =
                        self.new_keys.admit(Instant::now(), || keys.count(KeyState::Pending) + writing)
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
                let indexed = self.keys.known(&id);
                self.writing.insert(id, key.clone());
                let write = KeyWrite { routing, key, hello, state: Some(state), signed, indexed };
                self.key_files.send(KeyWork::Write(Box::new(write)));
            }
            Some((KeyState::Accepted, _)) => unreachable!("matched above"),
        }
    }

    /// Asks the key-files thread whether the files hold what the index does for the id,
    /// before a hello is refused or counted as a new key by the index; the hello goes on
    /// when it answers ([`Hub::on_key_written`]).
    fn look(&mut self, routing: Vec<u8>, key: PublicKey, hello: Hello) {
        let indexed = self.keys.known(&hello.id);
        let look = KeyWrite { routing, key, hello, state: None, signed: None, indexed };
        self.key_files.send(KeyWork::Write(Box::new(look)));
    }

    /// What the key-files thread did, in the order it did it.
    pub(super) fn on_key_news(&mut self, news: KeyNews) {
        match news {
            KeyNews::Written { write, result, now } => {
                self.keys.set(write.hello.id.clone(), now);
                self.on_key_written(*write, result);
            }
            KeyNews::Acted { work, changed, error } => self.on_key_acted(work, changed, error),
            KeyNews::Read(index) => {
                self.keys = index;
                self.recheck_sessions();
            }
            KeyNews::Reread { id, now } => {
                self.keys.set(id, now);
                self.recheck_sessions();
            }
        }
    }

    /// A new key the thread recorded (or could not): the events of a new key, then the
    /// hello that brought it goes on as if it came now, by the files (which may have
    /// changed meanwhile by hand or by `drover key`).
    fn on_key_written(&mut self, write: KeyWrite, result: Written) {
        let KeyWrite { routing, key, hello, state, signed, indexed } = write;
        let id = hello.id.clone();
        // (a look for a refusal marked nothing: another key's write or look may have)
        let marks = if state.is_none() { &mut self.looking } else { &mut self.writing };
        if marks.get(&id) == Some(&key) {
            marks.remove(&id);
        }
        match result {
            Written::Done => {}
            // the index was right: the hello goes on by it (to its refusal, or to the cap
            // and the rate of new keys, then the write)
            Written::Same => {
                self.looked = Some((id, key.clone()));
                self.on_hello(routing, key, hello);
                self.looked = None;
                return;
            }
            // a key action, a hand edit or a file the index did not know yet came first:
            // the hello goes by the files as they are
            Written::Changed => return self.on_hello(routing, key, hello),
            Written::Failed(e) => {
                tracing::error!(%id, error = %e, "cannot record a minion key");
                let reason = format!("the master cannot record this minion's key: {e}");
                self.send(&routing, &ToMinion::Refused { reason });
                return;
            }
        }
        // (written: the state is there)
        if let (None, Some(state)) = (&indexed.key, state) {
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

    /// Key files are the truth: when the thread read `pki/` again (a folder changed, a key
    /// moved or removed by hand), every session is checked against them.
    fn recheck_sessions(&mut self) {
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

    /// Another part of the master changed the key files of `id` ([`super::Command::KeyFilesChanged`]).
    pub(super) fn key_files_changed(&mut self, id: MinionId) {
        self.key_files.send(KeyWork::Reread(id));
    }

    /// `drover key accept|reject|delete`: checked here, made by the key-files thread, its
    /// effects on sessions applied when it is done ([`Hub::on_key_acted`]), which answers.
    pub(super) fn key_action(
        &mut self,
        req: KeyActionRequest,
        reply: oneshot::Sender<Result<KeyActionResponse, String>>,
    ) {
        let ids = match (&req.id, req.all) {
            (Some(_), true) => Err("give an id or --all, not both".to_string()),
            (None, false) => Err("give a minion id or --all".to_string()),
            (Some(id), false) => MinionId::new(id.as_str()).map(Targets::One).map_err(|e| e.to_string()),
            (None, true) => Ok(Targets::All),
        };
        match ids {
            Ok(ids) => self.key_files.send(KeyWork::Act(KeyActionWork { action: req.action, ids, reply })),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn on_key_acted(&mut self, work: KeyActionWork, changed: Vec<(MinionId, Known)>, error: Option<String>) {
        let tag = match work.action {
            KeyAction::Accept => "accept",
            KeyAction::Reject => "reject",
            KeyAction::Delete => "delete",
        };
        let mut ids = Vec::with_capacity(changed.len());
        for (id, now) in changed {
            self.keys.set(id.clone(), now);
            tracing::info!(%id, action = tag, "key changed");
            self.event(&id, &format!("drover/key/{tag}"), json!({"id": id}));
            match work.action {
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
            ids.push(id.to_string());
        }
        let _ = work.reply.send(match error {
            None => Ok(KeyActionResponse { changed: ids }),
            Some(e) if ids.is_empty() => Err(e),
            Some(e) => Err(format!("{e} (changed before it: {})", ids.join(", "))),
        });
    }
}
