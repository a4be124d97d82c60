//! The outbox: job returns not yet acknowledged by the master, spooled to disk.
//!
//! A return is written to `DIR/returns/<jid>.ret` (the very frame that carries it: a
//! `ToMaster::Return` in MessagePack, written atomically and fsynced) before it is first
//! sent, and deleted when the master acknowledges it; so a return survives a minion
//! restart, a master restart and a lost connection. On start the spool is loaded back.
//!
//! Writing a return is blocking (fsync), so it is done by a [`Spooler`] on a blocking
//! thread by the job's own task; the session only keeps the frame ([`Outbox::insert`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wire::{Jid, JobReturn, ToMaster};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("return for job {jid}: {source}")]
    Encode { jid: Jid, source: wire::WireError },
}

#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    /// The frame (a `ToMaster::Return`) of every unacknowledged return, by jid.
    entries: BTreeMap<Jid, Vec<u8>>,
}

impl Outbox {
    /// Opens the spool directory (creating it) and loads every spooled return. A spool file
    /// that cannot be read back is renamed to `<name>.bad` and reported, never fatal.
    pub fn load(dir: &Path) -> Result<Self, OutboxError> {
        let io_err = |source| OutboxError::Io { path: dir.to_path_buf(), source };
        wire::private::create_dir(dir).map_err(io_err)?;
        let mut outbox = Self { dir: dir.to_path_buf(), entries: BTreeMap::new() };
        for entry in fs::read_dir(dir).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if name.starts_with('.') || !name.ends_with(".ret") {
                continue;
            }
            match Self::read_spooled(&path) {
                Ok((jid, frame)) if Some(jid.as_str()) == name.strip_suffix(".ret") => {
                    outbox.entries.insert(jid, frame);
                }
                Ok(_) => outbox.set_aside(&path, "its job id does not match its file name"),
                Err(e) => outbox.set_aside(&path, &e),
            }
        }
        Ok(outbox)
    }

    fn read_spooled(path: &Path) -> Result<(Jid, Vec<u8>), String> {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        match wire::msg::decode::<ToMaster>(&bytes).map_err(|e| e.to_string())? {
            ToMaster::Return(ret) => Ok((ret.jid, bytes)),
            _ => Err("not a job return".into()),
        }
    }

    fn set_aside(&self, path: &Path, why: &str) {
        let bad = path.with_extension("ret.bad");
        tracing::warn!(file = %path.display(), moved_to = %bad.display(), "spooled return unreadable ({why}); set aside");
        if let Err(e) = fs::rename(path, &bad) {
            tracing::warn!(file = %path.display(), cause = %e, "cannot set aside spooled return");
        }
    }

    /// What writes returns into this outbox's spool; it can be moved to another thread.
    pub fn spooler(&self) -> Spooler {
        Spooler { dir: self.dir.clone() }
    }

    /// Keeps a spooled return until [`Outbox::ack`]. Returns the frame to send.
    pub fn insert(&mut self, Spooled { jid, frame }: Spooled) -> &[u8] {
        let slot = self.entries.entry(jid).or_default();
        *slot = frame;
        slot
    }

    /// Drops the return for `jid` and its spool file. Whether it was there.
    pub fn ack(&mut self, jid: &Jid) -> bool {
        let known = self.entries.remove(jid).is_some();
        let path = self.path_of(jid);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %path.display(), cause = %e, "cannot delete acknowledged return"),
        }
        known
    }

    pub fn contains(&self, jid: &Jid) -> bool {
        self.entries.contains_key(jid)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The frames of every unacknowledged return, oldest job first.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.values().map(Vec::as_slice)
    }

    /// The jids of every unacknowledged return, oldest first.
    pub fn jids(&self) -> impl Iterator<Item = &Jid> {
        self.entries.keys()
    }

    fn path_of(&self, jid: &Jid) -> PathBuf {
        path_of(&self.dir, jid)
    }
}

fn path_of(dir: &Path, jid: &Jid) -> PathBuf {
    // jids are checked to be 20 digits before a job runs, so this stays inside `dir`
    dir.join(format!("{jid}.ret"))
}

/// A failed return for the job of `ret` (all but its value copied), saying `why`.
pub fn failure(ret: &JobReturn, why: &str) -> JobReturn {
    JobReturn {
        jid: ret.jid.clone(),
        id: ret.id.clone(),
        fun: ret.fun.clone(),
        success: false,
        retcode: 1,
        ret: format!("{}: {why}", ret.fun).into(),
        started_ms: ret.started_ms,
        finished_ms: ret.finished_ms,
        killed: ret.killed,
    }
}

/// Writes returns to the spool. Blocking: call it off the async runtime's threads.
#[derive(Clone, Debug)]
pub struct Spooler {
    dir: PathBuf,
}

/// A return written to the spool: its jid and the frame that carries it.
#[derive(Debug)]
pub struct Spooled {
    pub jid: Jid,
    pub frame: Vec<u8>,
}

impl Spooler {
    /// Encodes `ret` and writes it to the spool. A return too large to send is replaced by
    /// a failed one that says so; a return that cannot be written to disk is still
    /// returned (to be sent) and the write error logged, since it is lost only if the
    /// minion stops before the master acknowledges it.
    pub fn spool(&self, ret: JobReturn) -> Result<Spooled, OutboxError> {
        let jid = ret.jid.clone();
        let msg = ToMaster::Return(ret);
        let frame = match wire::msg::encode(&msg) {
            Ok(frame) => frame,
            Err(source) => {
                let ToMaster::Return(ret) = msg else { unreachable!("made a return above") };
                let e = OutboxError::Encode { jid: jid.clone(), source };
                tracing::warn!(%jid, cause = %e, "return too large to send; sending an error instead");
                let stand_in = failure(&ret, &format!("the return is too large to send ({e})"));
                wire::msg::encode(&ToMaster::Return(stand_in))
                    .map_err(|source| OutboxError::Encode { jid: jid.clone(), source })?
            }
        };
        let path = path_of(&self.dir, &jid);
        if let Err(e) = wire::private::write_atomic(&path, &frame) {
            tracing::error!(file = %path.display(), cause = %e, "cannot spool a return; it is lost if the minion stops");
        }
        Ok(Spooled { jid, frame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wire::MinionId;

    fn ret(jid: &Jid) -> JobReturn {
        JobReturn {
            jid: jid.clone(),
            id: MinionId::new("m1").unwrap(),
            fun: "test.echo".into(),
            success: true,
            retcode: 0,
            ret: json!("hi"),
            started_ms: 1,
            finished_ms: 2,
            killed: false,
        }
    }

    #[test]
    fn spool_survives_a_reload_and_acks_delete() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("returns");
        let (a, b) = (Jid::generate(), Jid::generate());
        {
            let mut outbox = Outbox::load(&spool).unwrap();
            assert!(outbox.is_empty());
            let spooler = outbox.spooler();
            let frame = outbox.insert(spooler.spool(ret(&a)).unwrap()).to_vec();
            assert_eq!(wire::msg::decode::<ToMaster>(&frame).unwrap(), ToMaster::Return(ret(&a)));
            // spooled but never inserted (the minion stopped first): still loaded back
            spooler.spool(ret(&b)).unwrap();
            assert!(spool.join(format!("{a}.ret")).exists());
        }
        let mut outbox = Outbox::load(&spool).unwrap();
        assert_eq!(outbox.len(), 2);
        assert!(outbox.contains(&a) && outbox.contains(&b));
        let first = outbox.frames().next().unwrap();
        assert_eq!(wire::msg::decode::<ToMaster>(first).unwrap(), ToMaster::Return(ret(&a)));
        assert_eq!(outbox.frames().count(), 2);

        assert!(outbox.ack(&a));
        assert!(!outbox.ack(&a));
        assert!(!spool.join(format!("{a}.ret")).exists());
        let outbox = Outbox::load(&spool).unwrap();
        assert_eq!(outbox.jids().cloned().collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn a_return_too_large_to_send_is_replaced_by_a_failure_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::load(dir.path()).unwrap();
        let jid = Jid::generate();
        let big = JobReturn { ret: json!("x".repeat(wire::msg::MAX_FRAME + 1)), ..ret(&jid) };
        let spooled = outbox.spooler().spool(big).unwrap();
        let ToMaster::Return(sent) = wire::msg::decode::<ToMaster>(&spooled.frame).unwrap() else {
            panic!("not a return")
        };
        assert!(!sent.success && sent.retcode == 1, "{sent:?}");
        assert!(sent.ret.as_str().unwrap().contains("too large to send"), "{sent:?}");
        assert_eq!(fs::read(dir.path().join(format!("{jid}.ret"))).unwrap(), spooled.frame);
    }

    #[test]
    fn unreadable_spool_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let good = Jid::generate();
        {
            let outbox = Outbox::load(dir.path()).unwrap();
            outbox.spooler().spool(ret(&good)).unwrap();
        }
        fs::write(dir.path().join("20260101000000000000.ret"), b"garbage").unwrap();
        // a valid return under another jid's name, and another message than a return
        fs::write(
            dir.path().join("20260101000000000002.ret"),
            wire::msg::encode(&ToMaster::Heartbeat { seq: 1 }).unwrap(),
        )
        .unwrap();
        fs::copy(dir.path().join(format!("{good}.ret")), dir.path().join("20260101000000000001.ret"))
            .unwrap();
        fs::write(dir.path().join(".x.ret.tmp"), b"half").unwrap();
        let outbox = Outbox::load(dir.path()).unwrap();
        assert_eq!(outbox.len(), 1);
        assert!(dir.path().join("20260101000000000000.ret.bad").exists());
        assert!(dir.path().join("20260101000000000001.ret.bad").exists());
        assert!(dir.path().join("20260101000000000002.ret.bad").exists());
    }
}
