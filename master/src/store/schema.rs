//! The tables, and what [`migrate`] adds to a database an older master made: apart from the
//! thread and the records, because every concern's tables meet here and an upgrade reads
//! best as one list.

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
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
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use wire::Jid;

    use super::*;
    use crate::store::Store;

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
}
