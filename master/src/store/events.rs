//! The event table and its live side: an event goes to the streams of [`Store::subscribe`]
//! only once the transaction holding it is committed, with the sequence number it got there.
//! The one concern with a live side, apart so that side stays in view.

use rusqlite::params;
use serde_json::Value;
use tokio::sync::broadcast;
use wire::MinionId;

use super::{Op, Store, StoreError};

/// How many committed events a live stream may fall behind before it catches up from the
/// table (see `server::events`).
pub(super) const EVENT_BACKLOG: usize = 4096;

impl Store {
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
}

/// Keeps an event; returns its sequence number.
pub(super) fn insert_event(
    tx: &rusqlite::Transaction,
    time_ms: u64,
    tag: &str,
    minion: &Option<String>,
    data: &Value,
) -> rusqlite::Result<u64> {
    tx.prepare_cached("INSERT INTO events (time_ms, tag, minion, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![time_ms as i64, tag, minion, data.to_string()])?;
    Ok(tx.last_insert_rowid() as u64)
}

/// The sequence number of the last event (0: none).
pub(super) fn last_event(tx: &rusqlite::Transaction) -> rusqlite::Result<u64> {
    tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

pub(super) fn events(
    tx: &rusqlite::Transaction,
    since: u64,
    limit: usize,
) -> rusqlite::Result<Vec<api::Event>> {
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

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;

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
}
