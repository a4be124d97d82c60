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

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use wire::{Converged, Jid, JobReturn, MinionId};

use api::{JobDetail, JobSummary, JobsQuery, MinionReturn, RunningJob, TargetType};

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

/// A job as recorded when it is published.
#[derive(Clone, Debug)]
pub struct JobRecord {
    pub jid: Jid,
    pub fun: String,
    pub args: Vec<Value>,
    pub kwargs: BTreeMap<String, Value>,
    pub target: String,
    pub tgt_type: TargetType,
    pub minions: Vec<MinionId>,
    pub created_ms: u64,
}

/// A minion seen before: its last grains and when it said hello last.
#[derive(Clone, Debug)]
pub struct KnownMinion {
    pub id: MinionId,
    pub grains: Value,
    pub last_seen_ms: u64,
}

/// One minion's assignment as stored (see `roles::Assigned`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AssignmentRecord {
    pub commit: String,
    pub serial: u64,
    pub roles: Vec<String>,
    /// Repo path → sha256.
    pub files: BTreeMap<String, String>,
    /// Role → the serial it was first pushed with.
    pub role_since: BTreeMap<String, u64>,
    /// The roles whose peers it sees.
    pub view: Vec<String>,
    pub grains_digest: String,
}

/// The roles side as the store has it, read once at start.
#[derive(Clone, Debug, Default)]
pub struct RolesRecord {
    /// The applied commit and its tree (path → sha256 of each file of `roles/` and `states/`).
    pub applied: Option<(String, BTreeMap<String, String>)>,
    pub assignments: Vec<(MinionId, AssignmentRecord)>,
    /// Each minion's last report and when it came (ms since the epoch).
    pub converged: Vec<(MinionId, Converged, u64)>,
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

/// How many committed events a live stream may fall behind before it catches up from the
/// table (see `server::events`).
const EVENT_BACKLOG: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    jid TEXT PRIMARY KEY, fun TEXT NOT NULL, args TEXT NOT NULL, kwargs TEXT NOT NULL,
    target TEXT NOT NULL, tgt_type TEXT NOT NULL, minions TEXT NOT NULL, created_ms INTEGER NOT NULL,
    unsent TEXT NOT NULL DEFAULT '[]', killed_ms INTEGER);
CREATE TABLE IF NOT EXISTS returns (
    jid TEXT NOT NULL, minion TEXT NOT NULL, fun TEXT NOT NULL, success INTEGER NOT NULL,
    retcode INTEGER NOT NULL, ret TEXT NOT NULL, started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY (jid, minion));
CREATE TABLE IF NOT EXISTS minions (
    id TEXT PRIMARY KEY, grains TEXT NOT NULL, last_seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, tag TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    id INTEGER PRIMARY KEY CHECK (id = 1), commit_id TEXT NOT NULL, tree TEXT NOT NULL,
    applied_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    minion TEXT PRIMARY KEY, commit_id TEXT NOT NULL, serial INTEGER NOT NULL, roles TEXT NOT NULL,
    files TEXT NOT NULL, role_since TEXT NOT NULL, view TEXT NOT NULL, grains_digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet (
    id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL, saved_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS converged (
    minion TEXT PRIMARY KEY, commit_id TEXT NOT NULL, serial INTEGER NOT NULL, result INTEGER NOT NULL,
    failed TEXT NOT NULL, changed INTEGER NOT NULL, waiting TEXT NOT NULL, comment TEXT NOT NULL,
    time_ms INTEGER NOT NULL);
";

/// Adds the columns later versions added to tables an older master created.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names = stmt.query_map([], |row| row.get::<_, String>(1))?.collect::<Result<Vec<_>, _>>()?;
        Ok(names.iter().any(|n| n == column))
    };
    if !has_column("events", "minion")? {
        conn.execute_batch("ALTER TABLE events ADD COLUMN minion TEXT")?;
    }
    // which targeted minions never got a job, and when it was killed (job control)
    if !has_column("jobs", "unsent")? {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN unsent TEXT NOT NULL DEFAULT '[]'")?;
    }
    if !has_column("jobs", "killed_ms")? {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN killed_ms INTEGER")?;
    }
    Ok(())
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
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        let (tx, rx) = std_mpsc::channel();
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
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

    /// Records a job; returns once it is committed.
    pub async fn insert_job(&self, job: JobRecord) -> Result<(), StoreError> {
        self.ask(|tx| Op::InsertJob(job, tx)).await
    }

    /// Queues a return the hub knows it asked for; it is reported on the `stored` channel
    /// once committed. A second return for the same (jid, minion) is ignored, but reported
    /// again so that the minion gets its acknowledgement.
    pub fn insert_return(&self, ret: JobReturn) -> Result<(), StoreError> {
        self.send(Op::InsertReturn { ret, verify: false })
    }

    /// Queues a return the hub knows nothing of (its job started before the master's last
    /// start, or finished): kept only if a job recorded under its jid targeted its minion,
    /// and reported on `stored` either way (`kept` says which).
    pub fn insert_return_if_targeted(&self, ret: JobReturn) -> Result<(), StoreError> {
        self.send(Op::InsertReturn { ret, verify: true })
    }

    pub fn save_minion(&self, id: MinionId, grains: Value, seen_ms: u64) -> Result<(), StoreError> {
        self.send(Op::SaveMinion { id, grains, seen_ms })
    }

    /// Records an event of the master's, about `minion` if given.
    pub fn event(&self, minion: Option<&MinionId>, tag: &str, data: Value) -> Result<(), StoreError> {
        self.send(Op::Event {
            tag: tag.to_string(),
            minion: minion.map(ToString::to_string),
            data,
            time_ms: wire::msg::now_ms(),
        })
    }

    /// Records an event a minion sent, with the time it gives.
    pub fn minion_event(&self, minion: &MinionId, event: wire::Event) -> Result<(), StoreError> {
        let time_ms = if event.time_ms == 0 { wire::msg::now_ms() } else { event.time_ms };
        self.send(Op::Event { tag: event.tag, minion: Some(minion.to_string()), data: event.data, time_ms })
    }

    /// Events committed from now on, in order, with their sequence numbers.
    pub fn subscribe(&self) -> broadcast::Receiver<api::Event> {
        self.events.subscribe()
    }

    /// Up to `limit` events after `since`, oldest first.
    pub async fn events(&self, since: u64, limit: usize) -> Result<Vec<api::Event>, StoreError> {
        self.ask(|reply| Op::Events { since, limit, reply }).await
    }

    /// The sequence number of the last event (0: none).
    pub async fn last_event(&self) -> Result<u64, StoreError> {
        self.ask(Op::LastEvent).await
    }

    pub fn save_applied(&self, commit: String, tree: BTreeMap<String, String>) -> Result<(), StoreError> {
        self.send(Op::SaveApplied { commit, tree })
    }

    pub fn save_assignment(&self, id: MinionId, record: AssignmentRecord) -> Result<(), StoreError> {
        self.send(Op::SaveAssignment(id, record))
    }

    /// Forgets a minion's assignment and report (its key was deleted).
    pub fn delete_roles(&self, id: MinionId) -> Result<(), StoreError> {
        self.send(Op::DeleteRoles(id))
    }

    pub fn save_converged(&self, id: MinionId, report: Converged, time_ms: u64) -> Result<(), StoreError> {
        self.send(Op::SaveConverged(id, report, time_ms))
    }

    /// The applied commit, every assignment and every last report.
    pub async fn load_roles(&self) -> Result<RolesRecord, StoreError> {
        self.ask(Op::LoadRoles).await
    }

    /// Keeps the fleet's record (JSON); answers once it is committed.
    pub async fn save_fleet(&self, record: String) -> Result<(), StoreError> {
        self.ask(|tx| Op::SaveFleet(record, tx)).await
    }

    /// The fleet's record, if one was kept.
    pub async fn load_fleet(&self) -> Result<Option<String>, StoreError> {
        self.ask(Op::LoadFleet).await
    }

    /// The newest jobs `query` selects (100 without a limit), oldest first.
    pub async fn list_jobs(&self, query: JobsQuery) -> Result<Vec<JobSummary>, StoreError> {
        self.ask(|tx| Op::ListJobs(query, tx)).await
    }

    /// Every job some minion it was sent to has not returned, oldest first, with those
    /// minions: the master's view of what runs (see `server::running_jobs`).
    pub async fn running_jobs(&self) -> Result<Vec<RunningJob>, StoreError> {
        self.ask(Op::RunningJobs).await
    }

    /// Job `jid` and the minions still busy with it; `None` if no such job is recorded.
    pub async fn busy(&self, jid: Jid) -> Result<Option<RunningJob>, StoreError> {
        self.ask(|tx| Op::Busy(jid, tx)).await
    }

    /// Notes that these targeted minions never got job `jid`, so are not busy with it.
    pub fn unsent(&self, jid: Jid, ids: Vec<MinionId>) -> Result<(), StoreError> {
        self.send(Op::Unsent(jid, ids))
    }

    /// Marks job `jid` killed at `time_ms` (a second kill keeps the first time); answers
    /// once committed, whether the job is recorded.
    pub async fn kill(&self, jid: Jid, time_ms: u64) -> Result<bool, StoreError> {
        self.ask(|reply| Op::Kill { jid, time_ms, reply }).await
    }

    pub async fn show_job(&self, jid: Jid) -> Result<Option<JobDetail>, StoreError> {
        self.ask(|tx| Op::ShowJob(jid, tx)).await
    }

    /// Every minion seen before, with its last grains and when it was last seen.
    pub async fn minions(&self) -> Result<Vec<KnownMinion>, StoreError> {
        self.ask(Op::Minions).await
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
                        let err = insert_job(&tx, &job).err().map(|e| e.to_string());
                        replies.push((err, reply));
                    }
                    Op::InsertReturn { ret, verify } => {
                        let kept = match verify {
                            false => Ok(true),
                            true => targeted(&tx, &ret.jid, &ret.id),
                        }
                        .and_then(|kept| {
                            if kept {
                                insert_return(&tx, &ret).map(|fresh| (true, fresh))
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
                        if let Err(e) = tx.execute(
                            "INSERT INTO minions (id, grains, last_seen_ms) VALUES (?1, ?2, ?3)
                             ON CONFLICT(id) DO UPDATE SET grains = ?2, last_seen_ms = ?3",
                            params![id.as_str(), grains.to_string(), seen_ms as i64],
                        ) {
                            tracing::error!(%id, error = %e, "cannot store grains");
                        }
                    }
                    Op::Event { tag, minion, data, time_ms } => match tx.execute(
                        "INSERT INTO events (time_ms, tag, minion, data) VALUES (?1, ?2, ?3, ?4)",
                        params![time_ms as i64, tag, minion, data.to_string()],
                    ) {
                        Ok(_) => {
                            let seq = tx.last_insert_rowid() as u64;
                            new_events.push(api::Event { seq, time_ms, tag, minion, data });
                        }
                        Err(e) => tracing::error!(%tag, error = %e, "cannot store event"),
                    },
                    Op::Events { since, limit, reply } => {
                        let _ = reply.send(events(&tx, since, limit).map_err(StoreError::from));
                    }
                    Op::LastEvent(reply) => {
                        let last = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
                            r.get::<_, i64>(0)
                        });
                        let _ = reply.send(last.map(|n| n as u64).map_err(StoreError::from));
                    }
                    Op::SaveApplied { commit, tree } => {
                        if let Err(e) = tx.execute(
                            "INSERT INTO applied (id, commit_id, tree, applied_ms) VALUES (1, ?1, ?2, ?3)
                             ON CONFLICT(id) DO UPDATE SET commit_id = ?1, tree = ?2, applied_ms = ?3",
                            params![commit, json(&tree), wire::msg::now_ms() as i64],
                        ) {
                            tracing::error!(%commit, error = %e, "cannot store the applied commit");
                        }
                    }
                    Op::SaveAssignment(id, a) => {
                        if let Err(e) = save_assignment(&tx, &id, &a) {
                            tracing::error!(%id, error = %e, "cannot store an assignment");
                        }
                    }
                    Op::DeleteRoles(id) => {
                        let deleted =
                            tx.execute("DELETE FROM assignments WHERE minion = ?1", [id.as_str()]).and_then(
                                |_| tx.execute("DELETE FROM converged WHERE minion = ?1", [id.as_str()]),
                            );
                        if let Err(e) = deleted {
                            tracing::error!(%id, error = %e, "cannot forget an assignment");
                        }
                    }
                    Op::SaveConverged(id, c, time_ms) => {
                        if let Err(e) = save_converged(&tx, &id, &c, time_ms) {
                            tracing::error!(%id, error = %e, "cannot store a convergence report");
                        }
                    }
                    Op::LoadRoles(reply) => {
                        let _ = reply.send(load_roles(&tx).map_err(StoreError::from));
                    }
                    Op::SaveFleet(record, reply) => {
                        let err = tx
                            .execute(
                                "INSERT OR REPLACE INTO fleet (id, record, saved_ms) VALUES (1, ?1, ?2)",
                                rusqlite::params![record, wire::msg::now_ms() as i64],
                            )
                            .err()
                            .map(|e| e.to_string());
                        replies.push((err, reply));
                    }
                    Op::LoadFleet(reply) => {
                        let row = tx
                            .query_row("SELECT record FROM fleet WHERE id = 1", [], |row| {
                                row.get::<_, String>(0)
                            })
                            .optional();
                        let _ = reply.send(row.map_err(StoreError::from));
                    }
                    Op::ListJobs(query, reply) => {
                        let _ = reply.send(list_jobs(&tx, &query).map_err(StoreError::from));
                    }
                    Op::RunningJobs(reply) => {
                        let _ = reply.send(running_jobs(&tx).map_err(StoreError::from));
                    }
                    Op::Busy(jid, reply) => {
                        let _ = reply.send(busy(&tx, &jid).map_err(StoreError::from));
                    }
                    Op::Unsent(jid, ids) => {
                        if let Err(e) = unsent(&tx, &jid, &ids) {
                            tracing::error!(%jid, error = %e, "cannot note the minions a job never reached");
                        }
                    }
                    Op::Kill { jid, time_ms, reply } => {
                        let killed = tx
                            .execute(
                                "UPDATE jobs SET killed_ms = COALESCE(killed_ms, ?2) WHERE jid = ?1",
                                params![jid.as_str(), time_ms as i64],
                            )
                            .map(|n| n == 1);
                        let _ = reply.send(killed.map_err(StoreError::from));
                    }
                    Op::ShowJob(jid, reply) => {
                        let _ = reply.send(show_job(&tx, &jid).map_err(StoreError::from));
                    }
                    Op::Minions(reply) => {
                        let _ = reply.send(minions(&tx).map_err(StoreError::from));
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

fn insert_job(tx: &rusqlite::Transaction, job: &JobRecord) -> rusqlite::Result<()> {
    let minions: Vec<&str> = job.minions.iter().map(MinionId::as_str).collect();
    tx.execute(
        "INSERT INTO jobs (jid, fun, args, kwargs, target, tgt_type, minions, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            job.jid.as_str(),
            job.fun,
            serde_json::to_string(&job.args).unwrap_or_default(),
            serde_json::to_string(&job.kwargs).unwrap_or_default(),
            job.target,
            serde_json::to_value(job.tgt_type)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            serde_json::to_string(&minions).unwrap_or_default(),
            job.created_ms as i64,
        ],
    )?;
    Ok(())
}

/// Whether the job recorded under `jid` targeted `id`.
fn targeted(tx: &rusqlite::Transaction, jid: &Jid, id: &MinionId) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM jobs, json_each(jobs.minions) WHERE jobs.jid = ?1 AND json_each.value = ?2)",
        params![jid.as_str(), id.as_str()],
        |row| row.get(0),
    )
}

/// Keeps a return; false if one for the same (jid, minion) was kept before. A killed
/// return marks its job killed (as `drover jobs kill` does), whoever killed it.
fn insert_return(tx: &rusqlite::Transaction, r: &JobReturn) -> rusqlite::Result<bool> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO returns
         (jid, minion, fun, success, retcode, ret, started_ms, finished_ms, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            r.jid.as_str(),
            r.id.as_str(),
            r.fun,
            r.success,
            r.retcode,
            r.ret.to_string(),
            r.started_ms as i64,
            r.finished_ms as i64,
            wire::msg::now_ms() as i64,
        ],
    )?;
    if inserted == 1 && r.killed {
        tx.execute(
            "UPDATE jobs SET killed_ms = COALESCE(killed_ms, ?2) WHERE jid = ?1",
            params![r.jid.as_str(), wire::msg::now_ms() as i64],
        )?;
    }
    Ok(inserted == 1)
}

fn parse<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

fn summary(row: &rusqlite::Row) -> rusqlite::Result<(JobSummary, Vec<String>)> {
    let tgt_type: String = row.get(5)?;
    let minions: Vec<String> = parse(row.get(6)?);
    Ok((
        JobSummary {
            jid: row.get(0)?,
            fun: row.get(1)?,
            args: parse(row.get(2)?),
            kwargs: parse(row.get(3)?),
            target: row.get(4)?,
            tgt_type: serde_json::from_value(Value::String(tgt_type)).unwrap_or_default(),
            created_ms: row.get::<_, i64>(7)? as u64,
            targeted: minions.len(),
            returned: row.get::<_, i64>(8)? as usize,
            failed: row.get::<_, i64>(9)? as usize,
            busy: row.get::<_, i64>(10)? as usize,
            killed_ms: row.get::<_, Option<i64>>(11)?.map(|ms| ms as u64),
        },
        minions,
    ))
}

/// The targeted minions of job `j` that are busy with it: sent it (not in `unsent`) and
/// not returned.
const BUSY_FROM: &str = "json_each(j.minions) m WHERE m.value NOT IN (SELECT value FROM json_each(j.unsent))
    AND NOT EXISTS (SELECT 1 FROM returns r WHERE r.jid = j.jid AND r.minion = m.value)";

/// The summaries ([`summary`]'s columns) of the jobs `filter` selects (a `WHERE` on
/// `jobs j`, or nothing), then `outer` on the summaries' own columns (`jid`, `busy`).
fn summary_sql(filter: &str, outer: &str) -> String {
    format!(
        "SELECT * FROM (SELECT j.jid, j.fun, j.args, j.kwargs, j.target, j.tgt_type, j.minions, j.created_ms,
        (SELECT COUNT(*) FROM returns r WHERE r.jid = j.jid),
        (SELECT COUNT(*) FROM returns r WHERE r.jid = j.jid AND r.success = 0),
        (SELECT COUNT(*) FROM {BUSY_FROM}) AS busy,
        j.killed_ms
        FROM jobs j {filter}) {outer}"
    )
}

/// The newest `query.limit` jobs passing every filter of `query`, oldest first. Globs are
/// SQLite's `GLOB`: `*`, `?` and `[abc]`, case-sensitive, `*` matching `/` and `.` too.
fn list_jobs(tx: &rusqlite::Transaction, query: &JobsQuery) -> rusqlite::Result<Vec<JobSummary>> {
    let mut stmt = tx.prepare(&summary_sql(
        "WHERE (?2 IS NULL OR j.fun GLOB ?2)
            AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(j.minions) m WHERE m.value GLOB ?3))
            AND (?4 IS NULL OR j.created_ms >= ?4)
            AND (?5 = 0 OR EXISTS (SELECT 1 FROM returns r WHERE r.jid = j.jid AND r.success = 0))",
        "ORDER BY jid DESC LIMIT ?1",
    ))?;
    let limit = query.limit.unwrap_or(100) as i64;
    let since = query.since_ms.map(|ms| ms.min(i64::MAX as u64) as i64);
    let mut rows: Vec<JobSummary> = stmt
        .query_map(params![limit, query.function, query.target, since, query.failed], summary)?
        .map(|r| r.map(|(s, _)| s))
        .collect::<Result<_, _>>()?;
    rows.reverse();
    Ok(rows)
}

fn running_jobs(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<RunningJob>> {
    // the counts first (an index range per job), so that only a job with a minion short
    // of a return has its minions looked at one by one: a minion never reached cannot
    // have returned, so the two counts do not overlap
    let mut stmt = tx.prepare(&summary_sql(
        "WHERE (SELECT COUNT(*) FROM returns r WHERE r.jid = j.jid) + json_array_length(j.unsent)
            < json_array_length(j.minions)",
        "WHERE busy > 0 ORDER BY jid",
    ))?;
    let jobs: Vec<JobSummary> =
        stmt.query_map([], summary)?.map(|r| r.map(|(s, _)| s)).collect::<Result<_, _>>()?;
    jobs.into_iter()
        .map(|summary| {
            let busy_minions = busy_minions(tx, &summary.jid)?;
            Ok(RunningJob { summary, busy_minions })
        })
        .collect()
}

fn busy(tx: &rusqlite::Transaction, jid: &Jid) -> rusqlite::Result<Option<RunningJob>> {
    let found = tx.query_row(&summary_sql("WHERE j.jid = ?1", ""), [jid.as_str()], summary).optional()?;
    let Some((summary, _)) = found else { return Ok(None) };
    let busy_minions = busy_minions(tx, jid.as_str())?;
    Ok(Some(RunningJob { summary, busy_minions }))
}

fn busy_minions(tx: &rusqlite::Transaction, jid: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        tx.prepare(&format!("SELECT m.value FROM jobs j, {BUSY_FROM} AND j.jid = ?1 ORDER BY m.value"))?;
    stmt.query_map([jid], |row| row.get(0))?.collect()
}

/// Adds `ids` to the minions job `jid` never reached.
fn unsent(tx: &rusqlite::Transaction, jid: &Jid, ids: &[MinionId]) -> rusqlite::Result<()> {
    let Some(before) = tx
        .query_row("SELECT unsent FROM jobs WHERE jid = ?1", [jid.as_str()], |row| row.get::<_, String>(0))
        .optional()?
    else {
        return Ok(());
    };
    let mut all: Vec<String> = parse(before);
    all.extend(ids.iter().map(ToString::to_string));
    all.sort();
    all.dedup();
    tx.execute("UPDATE jobs SET unsent = ?2 WHERE jid = ?1", params![jid.as_str(), json(&all)])?;
    Ok(())
}

fn show_job(tx: &rusqlite::Transaction, jid: &Jid) -> rusqlite::Result<Option<JobDetail>> {
    let Some((summary, minions)) =
        tx.query_row(&summary_sql("WHERE j.jid = ?1", ""), [jid.as_str()], summary).optional()?
    else {
        return Ok(None);
    };
    let mut stmt = tx.prepare(
        "SELECT minion, success, retcode, ret, started_ms, finished_ms FROM returns WHERE jid = ?1 ORDER BY minion",
    )?;
    let returns = stmt
        .query_map([jid.as_str()], |row| {
            let ret: String = row.get(3)?;
            Ok((
                row.get::<_, String>(0)?,
                MinionReturn {
                    success: row.get(1)?,
                    retcode: row.get(2)?,
                    ret: serde_json::from_str(&ret).unwrap_or(Value::String(ret)),
                    started_ms: row.get::<_, i64>(4)? as u64,
                    finished_ms: row.get::<_, i64>(5)? as u64,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(JobDetail { summary, minions, returns }))
}

fn minions(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<KnownMinion>> {
    let mut stmt = tx.prepare("SELECT id, grains, last_seen_ms FROM minions")?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)? as u64))
        })?
        .filter_map(|r| r.ok())
        .filter_map(|(id, grains, seen)| {
            let grains = serde_json::from_str(&grains).unwrap_or(Value::Null);
            Some(KnownMinion { id: MinionId::new(id).ok()?, grains, last_seen_ms: seen })
        })
        .collect();
    Ok(rows)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn events(tx: &rusqlite::Transaction, since: u64, limit: usize) -> rusqlite::Result<Vec<api::Event>> {
    let mut stmt = tx
        .prepare("SELECT seq, time_ms, tag, minion, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    stmt.query_map(params![since as i64, limit as i64], |row| {
        let data: String = row.get(4)?;
        Ok(api::Event {
            seq: row.get::<_, i64>(0)? as u64,
            time_ms: row.get::<_, i64>(1)? as u64,
            tag: row.get(2)?,
            minion: row.get(3)?,
            data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
        })
    })?
    .collect()
}

fn save_assignment(tx: &rusqlite::Transaction, id: &MinionId, a: &AssignmentRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO assignments (minion, commit_id, serial, roles, files, role_since, view, grains_digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(minion) DO UPDATE SET commit_id = ?2, serial = ?3, roles = ?4, files = ?5,
         role_since = ?6, view = ?7, grains_digest = ?8",
        params![
            id.as_str(),
            a.commit,
            a.serial as i64,
            json(&a.roles),
            json(&a.files),
            json(&a.role_since),
            json(&a.view),
            a.grains_digest,
        ],
    )?;
    Ok(())
}

fn save_converged(
    tx: &rusqlite::Transaction,
    id: &MinionId,
    c: &Converged,
    time_ms: u64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO converged (minion, commit_id, serial, result, failed, changed, waiting, comment, time_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(minion) DO UPDATE SET commit_id = ?2, serial = ?3, result = ?4, failed = ?5,
         changed = ?6, waiting = ?7, comment = ?8, time_ms = ?9",
        params![
            id.as_str(),
            c.commit,
            c.serial as i64,
            c.result,
            json(&c.failed),
            c.changed as i64,
            json(&c.waiting),
            c.comment,
            time_ms as i64,
        ],
    )?;
    Ok(())
}

fn load_roles(tx: &rusqlite::Transaction) -> rusqlite::Result<RolesRecord> {
    let applied = tx
        .query_row("SELECT commit_id, tree FROM applied WHERE id = 1", [], |row| {
            Ok((row.get::<_, String>(0)?, parse(row.get(1)?)))
        })
        .optional()?;
    let mut stmt = tx.prepare(
        "SELECT minion, commit_id, serial, roles, files, role_since, view, grains_digest FROM assignments",
    )?;
    let assignments = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                AssignmentRecord {
                    commit: row.get(1)?,
                    serial: row.get::<_, i64>(2)? as u64,
                    roles: parse(row.get(3)?),
                    files: parse(row.get(4)?),
                    role_since: parse(row.get(5)?),
                    view: parse(row.get(6)?),
                    grains_digest: row.get(7)?,
                },
            ))
        })?
        .filter_map(|r| r.ok())
        .filter_map(|(id, a)| Some((MinionId::new(id).ok()?, a)))
        .collect();
    let mut stmt = tx.prepare(
        "SELECT minion, commit_id, serial, result, failed, changed, waiting, comment, time_ms FROM converged",
    )?;
    let converged = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Converged {
                    commit: row.get(1)?,
                    serial: row.get::<_, i64>(2)? as u64,
                    result: row.get(3)?,
                    failed: parse(row.get(4)?),
                    changed: row.get::<_, i64>(5)? as usize,
                    waiting: parse(row.get(6)?),
                    comment: row.get(7)?,
                },
                row.get::<_, i64>(8)? as u64,
            ))
        })?
        .filter_map(|r| r.ok())
        .filter_map(|(id, c, t)| Some((MinionId::new(id).ok()?, c, t)))
        .collect();
    Ok(RolesRecord { applied, assignments, converged })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ret(jid: &Jid, id: &str, success: bool) -> JobReturn {
        JobReturn {
            jid: jid.clone(),
            id: MinionId::new(id).unwrap(),
            fun: "test.ping".into(),
            success,
            retcode: if success { 0 } else { 1 },
            ret: json!(success),
            started_ms: 10,
            finished_ms: 20,
            killed: false,
        }
    }

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

    #[tokio::test]
    async fn a_return_the_hub_does_not_know_is_kept_only_for_a_targeted_minion_of_a_recorded_job() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut stored) = mpsc::unbounded_channel();
        let store = Store::open(&dir.path().join("drover.db"), tx).unwrap();
        let jid = Jid::generate();
        store
            .insert_job(JobRecord {
                jid: jid.clone(),
                fun: "test.ping".into(),
                args: vec![],
                kwargs: BTreeMap::new(),
                target: "a,b".into(),
                tgt_type: TargetType::List,
                minions: vec![MinionId::new("a").unwrap(), MinionId::new("b").unwrap()],
                created_ms: 1,
            })
            .await
            .unwrap();
        // a targeted minion (as after a master restart), one not targeted, a made-up jid
        store.insert_return_if_targeted(ret(&jid, "a", true)).unwrap();
        store.insert_return_if_targeted(ret(&jid, "c", true)).unwrap();
        store.insert_return_if_targeted(ret(&Jid::generate(), "a", true)).unwrap();
        let mut kept = Vec::new();
        while kept.len() < 3 {
            kept.extend(stored.recv().await.unwrap().into_iter().map(|s| (s.ret.id.to_string(), s.kept)));
        }
        assert_eq!(kept, [("a".to_string(), true), ("c".into(), false), ("a".into(), false)]);
        let detail = store.show_job(jid).await.unwrap().unwrap();
        assert_eq!(detail.returns.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            store.list_jobs(JobsQuery::default()).await.unwrap().len(),
            1,
            "no job made up by a return"
        );
    }

    fn record(fun: &str, minions: &[&str], created_ms: u64) -> JobRecord {
        JobRecord {
            jid: Jid::generate(),
            fun: fun.into(),
            args: vec![],
            kwargs: BTreeMap::new(),
            target: minions.join(","),
            tgt_type: TargetType::List,
            minions: minions.iter().map(|m| MinionId::new(*m).unwrap()).collect(),
            created_ms,
        }
    }

    #[tokio::test]
    async fn busy_minions_are_those_sent_the_job_without_a_return_and_a_kill_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut stored) = mpsc::unbounded_channel();
        let store = Store::open(&dir.path().join("drover.db"), tx).unwrap();
        let job = record("cmd.run", &["a", "b", "c"], 1);
        let jid = job.jid.clone();
        store.insert_job(job).await.unwrap();
        store.unsent(jid.clone(), vec![MinionId::new("c").unwrap()]).unwrap();
        store.insert_return(ret(&jid, "a", true)).unwrap();
        let first = stored.recv().await.unwrap();
        assert!(first[0].fresh);
        store.insert_return(ret(&jid, "a", true)).unwrap();
        assert!(!stored.recv().await.unwrap()[0].fresh, "a resent return is not new");

        let running = store.running_jobs().await.unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].busy_minions, ["b"]);
        assert_eq!((running[0].summary.busy, running[0].summary.status()), (1, "running"));
        assert!(store.kill(jid.clone(), 7).await.unwrap());
        assert!(store.kill(jid.clone(), 9).await.unwrap());
        assert!(!store.kill(Jid::generate(), 9).await.unwrap(), "no such job");
        let busy = store.busy(jid.clone()).await.unwrap().unwrap();
        assert_eq!((busy.summary.killed_ms, busy.summary.status()), (Some(7), "killed"));

        store.insert_return(ret(&jid, "b", false)).unwrap();
        stored.recv().await.unwrap();
        assert!(store.running_jobs().await.unwrap().is_empty());
        assert!(store.busy(jid).await.unwrap().unwrap().busy_minions.is_empty());

        // a return killed on the minion (saltutil.kill_job) marks its job killed too
        let job = record("test.sleep", &["a"], 2);
        let other = job.jid.clone();
        store.insert_job(job).await.unwrap();
        store.insert_return(JobReturn { killed: true, ..ret(&other, "a", false) }).unwrap();
        stored.recv().await.unwrap();
        let shown = store.show_job(other).await.unwrap().unwrap();
        assert_eq!((shown.summary.status(), shown.summary.busy), ("killed", 0));
    }

    #[tokio::test]
    async fn jobs_are_listed_by_function_target_time_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut stored) = mpsc::unbounded_channel();
        let store = Store::open(&dir.path().join("drover.db"), tx).unwrap();
        let jobs = [
            record("test.ping", &["web-1", "db-1"], 1_000),
            record("cmd.run", &["web-2"], 2_000),
            record("cmd.run_all", &["db-1"], 3_000),
        ];
        for job in &jobs {
            store.insert_job(job.clone()).await.unwrap();
        }
        store.insert_return(ret(&jobs[1].jid, "web-2", false)).unwrap();
        store.insert_return(ret(&jobs[2].jid, "db-1", true)).unwrap();
        let mut n = 0;
        while n < 2 {
            n += stored.recv().await.unwrap().len();
        }
        let list = |query: JobsQuery| {
            let store = store.clone();
            async move {
                let found = store.list_jobs(query).await.unwrap();
                found.into_iter().map(|j| j.fun).collect::<Vec<_>>()
            }
        };
        let q = JobsQuery::default;
        assert_eq!(list(q()).await, ["test.ping", "cmd.run", "cmd.run_all"]);
        assert_eq!(
            list(JobsQuery { function: Some("cmd.*".into()), ..q() }).await,
            ["cmd.run", "cmd.run_all"]
        );
        assert_eq!(list(JobsQuery { function: Some("cmd.run".into()), ..q() }).await, ["cmd.run"]);
        assert_eq!(list(JobsQuery { target: Some("web-*".into()), ..q() }).await, ["test.ping", "cmd.run"]);
        assert_eq!(list(JobsQuery { since_ms: Some(2_000), ..q() }).await, ["cmd.run", "cmd.run_all"]);
        assert_eq!(list(JobsQuery { failed: true, ..q() }).await, ["cmd.run"]);
        let both = JobsQuery { target: Some("db-1".into()), since_ms: Some(1_500), ..q() };
        assert_eq!(list(both).await, ["cmd.run_all"]);
        assert_eq!(list(JobsQuery { limit: Some(1), ..q() }).await, ["cmd.run_all"], "the newest");
    }

    #[tokio::test]
    async fn jobs_and_returns_survive_reopening_and_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        let jid = Jid::generate();
        {
            let (tx, mut stored) = mpsc::unbounded_channel();
            let store = Store::open(&path, tx).unwrap();
            store
                .insert_job(JobRecord {
                    jid: jid.clone(),
                    fun: "test.ping".into(),
                    args: vec![],
                    kwargs: BTreeMap::new(),
                    target: "*".into(),
                    tgt_type: TargetType::Glob,
                    minions: vec![MinionId::new("a").unwrap(), MinionId::new("b").unwrap()],
                    created_ms: 1,
                })
                .await
                .unwrap();
            store.insert_return(ret(&jid, "a", true)).unwrap();
            store.insert_return(ret(&jid, "a", false)).unwrap(); // duplicate: ignored, acked again
            store.insert_return(ret(&jid, "b", false)).unwrap();
            let mut seen = 0;
            while seen < 3 {
                seen += stored.recv().await.unwrap().len();
            }
        }
        let (tx, _stored) = mpsc::unbounded_channel();
        let store = Store::open(&path, tx).unwrap();
        let detail = store.show_job(jid.clone()).await.unwrap().unwrap();
        assert_eq!(detail.minions, vec!["a", "b"]);
        assert_eq!(detail.returns.len(), 2);
        assert!(detail.returns["a"].success, "the first return wins");
        assert!(!detail.returns["b"].success);
        assert_eq!((detail.summary.returned, detail.summary.failed), (2, 1));
        let list = store.list_jobs(JobsQuery::default()).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].jid, jid.as_str());
        assert!(store.show_job(Jid::generate()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn jobs_of_an_older_master_get_the_job_control_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        {
            // a job table made before jobs could be killed, with a job not returned by b
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE jobs (jid TEXT PRIMARY KEY, fun TEXT NOT NULL, args TEXT NOT NULL,
                 kwargs TEXT NOT NULL, target TEXT NOT NULL, tgt_type TEXT NOT NULL, minions TEXT NOT NULL,
                 created_ms INTEGER NOT NULL);
                 INSERT INTO jobs VALUES ('20250101120000000001', 'cmd.run', '[]', '{}', 'a,b', 'list',
                 '[\"a\",\"b\"]', 5);",
            )
            .unwrap();
        }
        let (tx, _stored) = mpsc::unbounded_channel();
        let store = Store::open(&path, tx).unwrap();
        let running = store.running_jobs().await.unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(
            (running[0].busy_minions.clone(), running[0].summary.killed_ms),
            (vec!["a".into(), "b".into()], None)
        );
        let jid = Jid("20250101120000000001".into());
        assert!(store.kill(jid.clone(), 9).await.unwrap());
        assert_eq!(store.show_job(jid).await.unwrap().unwrap().summary.killed_ms, Some(9));
    }

    #[tokio::test]
    async fn events_get_a_minion_column_on_old_databases_and_are_broadcast_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        {
            // a database made by a master before events had a minion
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
                 tag TEXT NOT NULL, data TEXT NOT NULL);
                 INSERT INTO events (time_ms, tag, data) VALUES (5, 'drover/old', '{\"a\":1}');",
            )
            .unwrap();
        }
        let (tx, _stored) = mpsc::unbounded_channel();
        let store = Store::open(&path, tx).unwrap();
        let mut live = store.subscribe();
        let m1 = MinionId::new("m1").unwrap();
        store.event(Some(&m1), "drover/minion/connected", json!({"id": "m1"})).unwrap();
        store
            .minion_event(
                &m1,
                wire::Event { tag: "drover/daemon/w/crashed".into(), data: json!(1), time_ms: 77 },
            )
            .unwrap();
        let first = live.recv().await.unwrap();
        assert_eq!(
            (first.seq, first.tag.as_str(), first.minion.as_deref()),
            (2, "drover/minion/connected", Some("m1"))
        );
        let second = live.recv().await.unwrap();
        assert_eq!((second.seq, second.time_ms), (3, 77));
        let all = store.events(0, 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            (all[0].tag.as_str(), all[0].minion.as_deref(), &all[0].data),
            ("drover/old", None, &json!({"a": 1}))
        );
        assert_eq!(all[2], second);
        assert_eq!(store.events(1, 1).await.unwrap(), vec![first]);
        assert_eq!(store.last_event().await.unwrap(), 3);
        drop(store);
        // opening again migrates nothing twice
        let (tx, _stored) = mpsc::unbounded_channel();
        let store = Store::open(&path, tx).unwrap();
        assert_eq!(store.events(0, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn roles_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.db");
        let id = MinionId::new("m1").unwrap();
        let record = AssignmentRecord {
            commit: "c".repeat(40),
            serial: 7,
            roles: vec!["web".into()],
            files: [("roles/web.yaml".to_string(), "ab".repeat(32))].into(),
            role_since: [("web".to_string(), 3)].into(),
            view: vec!["db".into()],
            grains_digest: "d".into(),
        };
        let report = Converged {
            commit: "c".repeat(40),
            serial: 7,
            result: false,
            failed: vec!["x".into()],
            changed: 2,
            waiting: vec!["db".into()],
            comment: "waits for db".into(),
        };
        {
            let (tx, _stored) = mpsc::unbounded_channel();
            let store = Store::open(&path, tx).unwrap();
            store
                .save_applied("c".repeat(40), [("roles/web.yaml".to_string(), "ab".repeat(32))].into())
                .unwrap();
            store.save_assignment(id.clone(), record.clone()).unwrap();
            store.save_converged(id.clone(), report.clone(), 99).unwrap();
            let other = MinionId::new("gone").unwrap();
            store.save_assignment(other.clone(), record.clone()).unwrap();
            store.delete_roles(other).unwrap();
            // reads answer inside their batch: the second comes after the first's commit
            store.load_roles().await.unwrap();
            store.load_roles().await.unwrap();
        }
        let (tx, _stored) = mpsc::unbounded_channel();
        let store = Store::open(&path, tx).unwrap();
        let roles = store.load_roles().await.unwrap();
        assert_eq!(roles.applied.unwrap().0, "c".repeat(40));
        assert_eq!(roles.assignments, vec![(id.clone(), record)]);
        assert_eq!(roles.converged, vec![(id, report, 99)]);
    }
}
