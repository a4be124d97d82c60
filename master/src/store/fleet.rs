//! The fleet controller's record: one row of JSON, which the store keeps and does not read
//! (its shape belongs to `fleet::record`), saved and answered once committed.

use rusqlite::OptionalExtension;

use super::{Op, Store, StoreError};

impl Store {
    /// Keeps the fleet's record (JSON); answers once it is committed.
    pub async fn save_fleet(&self, record: String) -> Result<(), StoreError> {
        self.ask(|tx| Op::SaveFleet(record, tx)).await
    }

    /// The fleet's record, if one was kept.
    pub async fn load_fleet(&self) -> Result<Option<String>, StoreError> {
        self.ask(Op::LoadFleet).await
    }
}

pub(super) fn save_fleet(tx: &rusqlite::Transaction, record: &str) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT OR REPLACE INTO fleet (id, record, saved_ms) VALUES (1, ?1, ?2)",
        rusqlite::params![record, wire::msg::now_ms() as i64],
    )
}

pub(super) fn load_fleet(tx: &rusqlite::Transaction) -> rusqlite::Result<Option<String>> {
    tx.query_row("SELECT record FROM fleet WHERE id = 1", [], |row| row.get::<_, String>(0)).optional()
}
