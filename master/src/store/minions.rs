//! Every minion seen before, with its last grains and when it said hello last, read once at
//! start so the master knows minions that have not connected since.

use rusqlite::params;
use serde_json::Value;
use wire::MinionId;

use super::{Op, Store, StoreError};

/// A minion seen before: its last grains and when it said hello last.
#[derive(Clone, Debug)]
pub struct KnownMinion {
    pub id: MinionId,
    pub grains: Value,
    pub last_seen_ms: u64,
}

impl Store {
    pub fn save_minion(&self, id: MinionId, grains: Value, seen_ms: u64) -> Result<(), StoreError> {
        self.send(Op::SaveMinion { id, grains, seen_ms })
    }

    /// Every minion seen before, with its last grains and when it was last seen.
    pub async fn minions(&self) -> Result<Vec<KnownMinion>, StoreError> {
        self.ask(Op::Minions).await
    }
}

pub(super) fn save_minion(
    tx: &rusqlite::Transaction,
    id: &MinionId,
    grains: &Value,
    seen_ms: u64,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO minions (id, grains, last_seen_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET grains = ?2, last_seen_ms = ?3",
        params![id.as_str(), grains.to_string(), seen_ms as i64],
    )
}

pub(super) fn minions(tx: &rusqlite::Transaction) -> rusqlite::Result<Vec<KnownMinion>> {
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
