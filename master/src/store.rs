//! The job store: SQLite (WAL, `synchronous=FULL`) owned by one thread, fed by messages.
//!
//! Writes are batched: the thread takes every operation waiting in its queue, runs them in
//! one transaction and commits once, then answers. A return is acknowledged to its minion
//! only after the commit that holds it ([`Store::insert_return`] reports back through the
//! `stored` channel), so a return the minion saw acknowledged survives `kill -9`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use wire::{Jid, JobReturn, MinionId};

use api::{JobDetail, JobSummary, MinionReturn, TargetType};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job store: {0}")]
    Failed(String),
    #[error("job store: stopped")]
    Stopped,
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

enum Op {
    InsertJob(JobRecord, oneshot::Sender<Result<(), StoreError>>),
    InsertReturn(JobReturn),
    SaveMinion { id: MinionId, grains: Value, seen_ms: u64 },
    Event { tag: String, data: Value },
    ListJobs(usize, oneshot::Sender<Result<Vec<JobSummary>, StoreError>>),
    ShowJob(Jid, oneshot::Sender<Result<Option<JobDetail>, StoreError>>),
    Minions(oneshot::Sender<Result<Vec<KnownMinion>, StoreError>>),
}

/// A handle on the store thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Op>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    jid TEXT PRIMARY KEY, fun TEXT NOT NULL, args TEXT NOT NULL, kwargs TEXT NOT NULL,
    target TEXT NOT NULL, tgt_type TEXT NOT NULL, minions TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS returns (
    jid TEXT NOT NULL, minion TEXT NOT NULL, fun TEXT NOT NULL, success INTEGER NOT NULL,
    retcode INTEGER NOT NULL, ret TEXT NOT NULL, started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY (jid, minion));
CREATE TABLE IF NOT EXISTS minions (
    id TEXT PRIMARY KEY, grains TEXT NOT NULL, last_seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, tag TEXT NOT NULL, data TEXT NOT NULL);
";

/// The most operations one transaction takes.
const BATCH: usize = 4096;

impl Store {
    /// Opens (or creates) `path` and starts the store thread. Every return committed is
    /// sent on `stored`, in commit order.
    pub fn open(path: &Path, stored: mpsc::UnboundedSender<Vec<JobReturn>>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let (tx, rx) = std_mpsc::channel();
        thread::Builder::new()
            .name("drover-store".into())
            .spawn(move || run(conn, rx, stored))
            .expect("spawn store thread");
        Ok(Self { tx })
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

    /// Records a job; returns once it is committed.
    pub async fn insert_job(&self, job: JobRecord) -> Result<(), StoreError> {
        self.ask(|tx| Op::InsertJob(job, tx)).await
    }

    /// Queues a return; it is reported on the `stored` channel once committed. A second
    /// return for the same (jid, minion) is ignored, but reported again so that the minion
    /// gets its acknowledgement.
    pub fn insert_return(&self, ret: JobReturn) -> Result<(), StoreError> {
        self.send(Op::InsertReturn(ret))
    }

    pub fn save_minion(&self, id: MinionId, grains: Value, seen_ms: u64) -> Result<(), StoreError> {
        self.send(Op::SaveMinion { id, grains, seen_ms })
    }

    pub fn event(&self, tag: &str, data: Value) -> Result<(), StoreError> {
        self.send(Op::Event { tag: tag.to_string(), data })
    }

    pub async fn list_jobs(&self, limit: usize) -> Result<Vec<JobSummary>, StoreError> {
        self.ask(|tx| Op::ListJobs(limit, tx)).await
    }

    pub async fn show_job(&self, jid: Jid) -> Result<Option<JobDetail>, StoreError> {
        self.ask(|tx| Op::ShowJob(jid, tx)).await
    }

    /// Every minion seen before, with its last grains and when it was last seen.
    pub async fn minions(&self) -> Result<Vec<KnownMinion>, StoreError> {
        self.ask(Op::Minions).await
    }
}

fn run(mut conn: Connection, rx: std_mpsc::Receiver<Op>, stored: mpsc::UnboundedSender<Vec<JobReturn>>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut done_returns = Vec::new();
        // job inserts answer after the commit: (this insert's own error, reply)
        let mut replies = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for op in ops {
                match op {
                    Op::InsertJob(job, reply) => {
                        let err = insert_job(&tx, &job).err().map(|e| e.to_string());
                        replies.push((err, reply));
                    }
                    Op::InsertReturn(ret) => match insert_return(&tx, &ret) {
                        Ok(()) => done_returns.push(ret),
                        Err(e) => {
                            tracing::error!(jid = %ret.jid, id = %ret.id, error = %e, "cannot store return")
                        }
                    },
                    Op::SaveMinion { id, grains, seen_ms } => {
                        if let Err(e) = tx.execute(
                            "INSERT INTO minions (id, grains, last_seen_ms) VALUES (?1, ?2, ?3)
                             ON CONFLICT(id) DO UPDATE SET grains = ?2, last_seen_ms = ?3",
                            params![id.as_str(), grains.to_string(), seen_ms as i64],
                        ) {
                            tracing::error!(%id, error = %e, "cannot store grains");
                        }
                    }
                    Op::Event { tag, data } => {
                        if let Err(e) = tx.execute(
                            "INSERT INTO events (time_ms, tag, data) VALUES (?1, ?2, ?3)",
                            params![wire::msg::now_ms() as i64, tag, data.to_string()],
                        ) {
                            tracing::error!(%tag, error = %e, "cannot store event");
                        }
                    }
                    Op::ListJobs(limit, reply) => {
                        let _ = reply.send(list_jobs(&tx, limit).map_err(StoreError::from));
                    }
                    Op::ShowJob(jid, reply) => {
                        let _ = reply.send(show_job(&tx, &jid).map_err(StoreError::from));
                    }
                    Op::Minions(reply) => {
                        let _ = reply.send(minions(&tx).map_err(StoreError::from));
                    }
                }
            }
            tx.commit()
        })();
        let commit = result.map_err(|e| e.to_string());
        match &commit {
            Ok(()) => {
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
    }
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

fn insert_return(tx: &rusqlite::Transaction, r: &JobReturn) -> rusqlite::Result<()> {
    tx.execute(
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
    Ok(())
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
        },
        minions,
    ))
}

const SUMMARY_SQL: &str =
    "SELECT j.jid, j.fun, j.args, j.kwargs, j.target, j.tgt_type, j.minions, j.created_ms,
    (SELECT COUNT(*) FROM returns r WHERE r.jid = j.jid),
    (SELECT COUNT(*) FROM returns r WHERE r.jid = j.jid AND r.success = 0)
    FROM jobs j";

fn list_jobs(tx: &rusqlite::Transaction, limit: usize) -> rusqlite::Result<Vec<JobSummary>> {
    let mut stmt = tx.prepare(&format!("{SUMMARY_SQL} ORDER BY j.jid DESC LIMIT ?1"))?;
    let mut rows: Vec<JobSummary> =
        stmt.query_map([limit as i64], summary)?.map(|r| r.map(|(s, _)| s)).collect::<Result<_, _>>()?;
    rows.reverse();
    Ok(rows)
}

fn show_job(tx: &rusqlite::Transaction, jid: &Jid) -> rusqlite::Result<Option<JobDetail>> {
    let Some((summary, minions)) =
        tx.query_row(&format!("{SUMMARY_SQL} WHERE j.jid = ?1"), [jid.as_str()], summary).optional()?
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
        }
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
        let list = store.list_jobs(10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].jid, jid.as_str());
        assert!(store.show_job(Jid::generate()).await.unwrap().is_none());
    }
}
