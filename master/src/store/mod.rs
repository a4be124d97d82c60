//! The job store: SQLite (WAL, `synchronous=FULL`) owned by one thread, fed by messages.
//!
//! Writes are batched: the thread takes every operation waiting in its queue, runs them in
//! one transaction and commits once, then answers. A return is acknowledged to its minion
//! only after the commit that holds it ([`Store::insert_return`] reports back through the
//! `stored` channel), so a return the minion saw acknowledged survives `kill -9`.
//!
//! Besides jobs it keeps the roles side (the applied commit, each minion's assignment and
//! its last convergence report) and the events, which it broadcasts once committed, with
//! their sequence numbers, to live streams ([`Store::subscribe`]).
//!
//! The handle, the thread and its batching (and `prune`, which spans jobs and events) are
//! here; what each kind of record means and its SQL are in one file per concern, each
//! adding its own methods to [`Store`]:
//! - `schema`: the tables, and the columns a newer master adds to an older database.
//! - `jobs`: jobs and their returns, busy minions, kills, the `jobs list` filters.
//! - `events`: the event table and its live broadcast.
//! - `minions`: every minion seen before, with its last grains.
//! - `roles`: the applied commit, assignments and convergence reports.
//! - `fleet`: the fleet controller's record.

mod events;
mod fleet;
mod jobs;
mod minions;
mod roles;
mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use wire::{Converged, Jid, JobReturn, MinionId};

use api::{JobDetail, JobSummary, JobsQuery, RunningJob};

pub use jobs::JobRecord;
pub use minions::KnownMinion;
pub use roles::{AssignmentRecord, RolesRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job store: {0}")]
    Failed(String),
    #[error("job store: stopped")]
    Stopped,
    #[error("job store: cannot create {path}: {source}")]
    Create { path: std::path::PathBuf, source: std::io::Error },
}

/// A return the store handled, as reported on the `stored` channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub ret: JobReturn,
    /// False: refused, because no job recorded under its jid targeted its minion.
    pub kept: bool,
    /// Kept now for the first time (not a second return for the same jid and minion).
    pub fresh: bool,
}

enum Op {
    InsertJob(JobRecord, oneshot::Sender<Result<(), StoreError>>),
    /// A return; with `verify`, kept only if its job is recorded with its minion targeted.
    InsertReturn {
        ret: JobReturn,
        verify: bool,
    },
    SaveMinion {
        id: MinionId,
        grains: Value,
        seen_ms: u64,
    },
    Event {
        tag: String,
        minion: Option<String>,
        data: Value,
        time_ms: u64,
    },
    Events {
        since: u64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<api::Event>, StoreError>>,
    },
    LastEvent(oneshot::Sender<Result<u64, StoreError>>),
    ListJobs(JobsQuery, oneshot::Sender<Result<Vec<JobSummary>, StoreError>>),
    RunningJobs(oneshot::Sender<Result<Vec<RunningJob>, StoreError>>),
    /// The job and the minions still busy with it, if it is recorded.
    Busy(Jid, oneshot::Sender<Result<Option<RunningJob>, StoreError>>),
    /// Minions that will never get the job (not connected, or a killed batch's rest).
    Unsent(Jid, Vec<MinionId>),
    /// Marks the job killed (the first time counts); answers whether it is recorded.
    Kill {
        jid: Jid,
        time_ms: u64,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    ShowJob(Jid, oneshot::Sender<Result<Option<JobDetail>, StoreError>>),
    Minions(oneshot::Sender<Result<Vec<KnownMinion>, StoreError>>),
    SaveApplied {
        commit: String,
        tree: BTreeMap<String, String>,
    },
    SaveAssignment(MinionId, AssignmentRecord),
    DeleteRoles(MinionId),
    SaveConverged(MinionId, Converged, u64),
    LoadRoles(oneshot::Sender<Result<RolesRecord, StoreError>>),
    /// The fleet's record (JSON), answered once committed.
    SaveFleet(String, oneshot::Sender<Result<(), StoreError>>),
    LoadFleet(oneshot::Sender<Result<Option<String>, StoreError>>),
    /// Commit everything queued before, answer, and stop the thread.
    Close(oneshot::Sender<()>),
    /// Delete jobs (and their returns) created, and events recorded, before this time.
    Prune {
        before_ms: u64,
        reply: oneshot::Sender<Result<(usize, usize), StoreError>>,
    },
}

/// A handle on the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Op>,
    events: broadcast::Sender<api::Event>,
}

/// The most operations one transaction takes.
const BATCH: usize = 4096;

impl Store {
    /// Opens (or creates) `path` and starts the store thread. Every return handled is
    /// reported on `stored` once committed, in commit order.
    pub fn open(path: &Path, stored: mpsc::UnboundedSender<Vec<Stored>>) -> Result<Self, StoreError> {
        // created private here: SQLite gives its -wal and -shm files the database's mode
        wire::private::create_file(path)
            .map_err(|source| StoreError::Create { path: path.to_path_buf(), source })?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // the page cache: 2 MiB at most (SQLite's default, set here because it is most of
        // the master's growth over its first 10,000 jobs, until it is full)
        conn.pragma_update(None, "cache_size", -2000)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(schema::SCHEMA)?;
        schema::migrate(&conn)?;
        let (tx, rx) = std_mpsc::channel();
        let (events, _) = broadcast::channel(events::EVENT_BACKLOG);
        let published = events.clone();
        thread::Builder::new()
            .name("drover-store".into())
            .spawn(move || run(conn, rx, stored, published))
            .expect("spawn store thread");
        Ok(Self { tx, events })
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.send(op).map_err(|_| StoreError::Stopped)
    }

    async fn ask<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(op(tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Commits everything queued so far and stops the store thread (at shutdown: events,
    /// grains and convergence reports queued last are kept).
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Op::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await;
        }
    }

    /// Deletes jobs (with their returns) and events older than `before_ms`; returns how
    /// many jobs and events went.
    pub async fn prune(&self, before_ms: u64) -> Result<(usize, usize), StoreError> {
        self.ask(|reply| Op::Prune { before_ms, reply }).await
    }
}

fn run(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Op>,
    stored: mpsc::UnboundedSender<Vec<Stored>>,
    published: broadcast::Sender<api::Event>,
) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut done_returns = Vec::new();
        let mut new_events = Vec::new();
        // job inserts answer after the commit: (this insert's own error, reply)
        let mut replies = Vec::new();
        let mut closing = None;
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for op in ops {
                match op {
                    Op::InsertJob(job, reply) => {
                        let err = jobs::insert_job(&tx, &job).err().map(|e| e.to_string());
                        replies.push((err, reply));
                    }
                    Op::InsertReturn { ret, verify } => {
                        let kept = match verify {
                            false => Ok(true),
                            true => jobs::targeted(&tx, &ret.jid, &ret.id),
                        }
                        .and_then(|kept| {
                            if kept {
                                jobs::insert_return(&tx, &ret).map(|fresh| (true, fresh))
                            } else {
                                Ok((false, false))
                            }
                        });
                        match kept {
                            Ok((kept, fresh)) => done_returns.push(Stored { ret, kept, fresh }),
                            Err(e) => {
                                tracing::error!(jid = %ret.jid, id = %ret.id, error = %e, "cannot store return")
                            }
                        }
                    }
                    Op::SaveMinion { id, grains, seen_ms } => {
                        if let Err(e) = minions::save_minion(&tx, &id, &grains, seen_ms) {
                            tracing::error!(%id, error = %e, "cannot store grains");
                        }
                    }
                    Op::Event { tag, minion, data, time_ms } => {
                        match events::insert_event(&tx, time_ms, &tag, &minion, &data) {
                            Ok(seq) => new_events.push(api::Event { seq, time_ms, tag, minion, data }),
                            Err(e) => tracing::error!(%tag, error = %e, "cannot store event"),
                        }
                    }
                    Op::Events { since, limit, reply } => {
                        let _ = reply.send(events::events(&tx, since, limit).map_err(StoreError::from));
                    }
                    Op::LastEvent(reply) => {
                        let _ = reply.send(events::last_event(&tx).map_err(StoreError::from));
                    }
                    Op::SaveApplied { commit, tree } => {
                        if let Err(e) = roles::save_applied(&tx, &commit, &tree) {
                            tracing::error!(%commit, error = %e, "cannot store the applied commit");
                        }
                    }
                    Op::SaveAssignment(id, a) => {
                        if let Err(e) = roles::save_assignment(&tx, &id, &a) {
                            tracing::error!(%id, error = %e, "cannot store an assignment");
                        }
                    }
                    Op::DeleteRoles(id) => {
                        if let Err(e) = roles::delete_roles(&tx, &id) {
                            tracing::error!(%id, error = %e, "cannot forget an assignment");
                        }
                    }
                    Op::SaveConverged(id, c, time_ms) => {
                        if let Err(e) = roles::save_converged(&tx, &id, &c, time_ms) {
                            tracing::error!(%id, error = %e, "cannot store a convergence report");
                        }
                    }
                    Op::LoadRoles(reply) => {
                        let _ = reply.send(roles::load_roles(&tx).map_err(StoreError::from));
                    }
                    Op::SaveFleet(record, reply) => {
                        let err = fleet::save_fleet(&tx, &record).err().map(|e| e.to_string());
                        replies.push((err, reply));
                    }
                    Op::LoadFleet(reply) => {
                        let _ = reply.send(fleet::load_fleet(&tx).map_err(StoreError::from));
                    }
                    Op::ListJobs(query, reply) => {
                        let _ = reply.send(jobs::list_jobs(&tx, &query).map_err(StoreError::from));
                    }
                    Op::RunningJobs(reply) => {
                        let _ = reply.send(jobs::running_jobs(&tx).map_err(StoreError::from));
                    }
                    Op::Busy(jid, reply) => {
                        let _ = reply.send(jobs::busy(&tx, &jid).map_err(StoreError::from));
                    }
                    Op::Unsent(jid, ids) => {
                        if let Err(e) = jobs::unsent(&tx, &jid, &ids) {
                            tracing::error!(%jid, error = %e, "cannot note the minions a job never reached");
                        }
                    }
                    Op::Kill { jid, time_ms, reply } => {
                        let _ = reply.send(jobs::kill(&tx, &jid, time_ms).map_err(StoreError::from));
                    }
                    Op::ShowJob(jid, reply) => {
                        let _ = reply.send(jobs::show_job(&tx, &jid).map_err(StoreError::from));
                    }
                    Op::Minions(reply) => {
                        let _ = reply.send(minions::minions(&tx).map_err(StoreError::from));
                    }
                    Op::Close(reply) => closing = Some(reply),
                    Op::Prune { before_ms, reply } => {
                        let _ = reply.send(prune(&tx, before_ms).map_err(StoreError::from));
                    }
                }
            }
            tx.commit()
        })();
        let commit = result.map_err(|e| e.to_string());
        match &commit {
            Ok(()) => {
                for event in new_events {
                    // no live stream is no error
                    let _ = published.send(event);
                }
                if !done_returns.is_empty() && stored.send(done_returns).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "job store commit failed; returns will be resent by minions")
            }
        }
        for (err, reply) in replies {
            let _ = reply.send(match (err, &commit) {
                (Some(e), _) => Err(StoreError::Failed(e)),
                (None, Err(e)) => Err(StoreError::Failed(e.clone())),
                (None, Ok(())) => Ok(()),
            });
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
            return;
        }
    }
}

/// Deletes what is older than `before_ms`; returns (jobs, events) deleted.
fn prune(tx: &rusqlite::Transaction, before_ms: u64) -> rusqlite::Result<(usize, usize)> {
    let before = before_ms as i64;
    tx.execute("DELETE FROM returns WHERE jid IN (SELECT jid FROM jobs WHERE created_ms < ?1)", [before])?;
    let jobs = tx.execute("DELETE FROM jobs WHERE created_ms < ?1", [before])?;
    let events = tx.execute("DELETE FROM events WHERE time_ms < ?1", [before])?;
    Ok((jobs, events))
}

fn parse<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::jobs::tests::ret;
    use super::*;
    use api::TargetType;

    #[tokio::test]
    async fn old_jobs_and_their_returns_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut stored) = mpsc::unbounded_channel();
        let store = Store::open(&dir.path().join("drover.db"), tx).unwrap();
        let (old, new) = (Jid::generate(), Jid::generate());
        for (jid, created_ms) in [(&old, 1_000), (&new, 5_000)] {
            let job = JobRecord {
                jid: jid.clone(),
                fun: "test.ping".into(),
                args: vec![],
                kwargs: BTreeMap::new(),
                target: "a".into(),
                tgt_type: TargetType::List,
                minions: vec![MinionId::new("a").unwrap()],
                created_ms,
            };
            store.insert_job(job).await.unwrap();
            store.insert_return(ret(jid, "a", true)).unwrap();
            stored.recv().await.unwrap();
        }
        let (jobs, _events) = store.prune(2_000).await.unwrap();
        assert_eq!(jobs, 1);
        assert!(store.show_job(old).await.unwrap().is_none());
        assert_eq!(store.show_job(new).await.unwrap().unwrap().returns.len(), 1);
    }
}
