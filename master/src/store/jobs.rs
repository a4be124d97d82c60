//! Jobs and their returns: recording a job, keeping a return (once), the minions still busy
//! with a job, kills, and the summaries `jobs list`, `jobs running` and `jobs show` read.
//! Half of the store's SQL, kept apart so the other concerns read without it.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use wire::{Jid, JobReturn, MinionId};

use api::{JobDetail, JobSummary, JobsQuery, MinionReturn, RunningJob, TargetType};

use super::{Op, Store, StoreError, json, parse};

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

impl Store {
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
}

pub(super) fn insert_job(tx: &rusqlite::Transaction, job: &JobRecord) -> rusqlite::Result<()> {
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
pub(super) fn targeted(tx: &rusqlite::Transaction, jid: &Jid, id: &MinionId) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM jobs, json_each(jobs.minions) WHERE jobs.jid = ?1 AND json_each.value = ?2)",
        params![jid.as_str(), id.as_str()],
        |row| row.get(0),
    )
}

/// Keeps a return; false if one for the same (jid, minion) was kept before. A killed
/// return marks its job killed (as `drover jobs kill` does), whoever killed it.
pub(super) fn insert_return(tx: &rusqlite::Transaction, r: &JobReturn) -> rusqlite::Result<bool> {
    // cached: a job to 10,000 minions is 10,000 of these, and parsing the SQL each time was
    // a third of the store thread's time
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO returns
             (jid, minion, fun, success, retcode, ret, started_ms, finished_ms, received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            r.jid.as_str(),
            r.id.as_str(),
            r.fun,
            r.success,
            r.retcode,
            r.ret.to_string(),
            r.started_ms as i64,
            r.finished_ms as i64,
            wire::msg::now_ms() as i64,
        ])?;
    if inserted == 1 && r.killed {
        kill(tx, &r.jid, wire::msg::now_ms())?;
    }
    Ok(inserted == 1)
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
pub(super) fn list_jobs(tx: &rusqlite::Transaction, query: &JobsQuery) -> rusqlite::Result<Vec<JobSummary>> {
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

pub(super) fn running_jobs(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<RunningJob>> {
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

pub(super) fn busy(tx: &rusqlite::Transaction, jid: &Jid) -> rusqlite::Result<Option<RunningJob>> {
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
pub(super) fn unsent(tx: &rusqlite::Transaction, jid: &Jid, ids: &[MinionId]) -> rusqlite::Result<()> {
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

pub(super) fn show_job(tx: &rusqlite::Transaction, jid: &Jid) -> rusqlite::Result<Option<JobDetail>> {
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

/// Marks job `jid` killed at `time_ms` unless it was before; whether the job is recorded.
pub(super) fn kill(tx: &rusqlite::Transaction, jid: &Jid, time_ms: u64) -> rusqlite::Result<bool> {
    tx.execute(
        "UPDATE jobs SET killed_ms = COALESCE(killed_ms, ?2) WHERE jid = ?1",
        params![jid.as_str(), time_ms as i64],
    )
    .map(|n| n == 1)
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;

    pub(in crate::store) fn ret(jid: &Jid, id: &str, success: bool) -> JobReturn {
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
}
