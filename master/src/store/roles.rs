//! The roles side: the applied commit, each minion's assignment and its last convergence
//! report, written as they change and read back once at start (`RolesRecord`): the roles
//! controller's memory across restarts, apart because only `master::roles` writes it.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use wire::{Converged, MinionId};

use super::{Op, Store, StoreError, json, parse};

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

impl Store {
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
}

pub(super) fn save_applied(
    tx: &rusqlite::Transaction,
    commit: &str,
    tree: &BTreeMap<String, String>,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO applied (id, commit_id, tree, applied_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET commit_id = ?1, tree = ?2, applied_ms = ?3",
        params![commit, json(tree), wire::msg::now_ms() as i64],
    )
}

/// Forgets `id`'s assignment and last report.
pub(super) fn delete_roles(tx: &rusqlite::Transaction, id: &MinionId) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM assignments WHERE minion = ?1", [id.as_str()])
        .and_then(|_| tx.execute("DELETE FROM converged WHERE minion = ?1", [id.as_str()]))
}

pub(super) fn save_assignment(
    tx: &rusqlite::Transaction,
    id: &MinionId,
    a: &AssignmentRecord,
) -> rusqlite::Result<()> {
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

pub(super) fn save_converged(
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

pub(super) fn load_roles(tx: &rusqlite::Transaction) -> rusqlite::Result<RolesRecord> {
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
    use tokio::sync::mpsc;

    use super::*;

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
