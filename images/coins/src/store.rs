//! The keys in redis: what the workers write and the webui reads, both here so they cannot
//! drift apart.
//!
//! | key | type | what |
//! |---|---|---|
//! | `coins:hashes` | counter | hashes made |
//! | `coins:coins` | counter | coins found, found before or not |
//! | `coins:duplicates` | counter | coins that had been found before |
//! | `coins:seen` | set | every coin (its hash) ever found |
//! | `coins:recent:hashes` | list | the times (ms) of the latest hashes, newest first |
//! | `coins:recent:coins` | list | `<ms> <0 or 1>` for the latest coins, 1: found before |
//! | `coins:worker:<id>` | string | a worker's version, expiring [`WORKER_TTL_MS`] after its last hash |

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mining;
use crate::rate::{self, WINDOW_MS};
use crate::redis::{Cmd, Redis, RedisError};
use crate::resp::Value;

pub const HASHES: &str = "coins:hashes";
pub const COINS: &str = "coins:coins";
pub const DUPLICATES: &str = "coins:duplicates";
pub const SEEN: &str = "coins:seen";
pub const RECENT_HASHES: &str = "coins:recent:hashes";
pub const RECENT_COINS: &str = "coins:recent:coins";
pub const WORKER: &str = "coins:worker:";

/// The times of this many latest hashes are kept: enough for 100 hashes a second over the
/// rate's window.
pub const RECENT_HASHES_CAP: usize = 1000;
/// The duplicate rate is over this many latest coins, so it follows an upgrade within a
/// minute or so.
pub const RECENT_COINS_CAP: usize = 100;
/// A worker counts as mining for this long after its last hash.
pub const WORKER_TTL_MS: u64 = 10_000;

/// What one hash turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mined {
    pub coin: bool,
    /// A coin that had been found before.
    pub found_before: bool,
}

/// Counts a hash that the worker `worker` of `version` made at `now_ms`.
pub async fn record(
    redis: &mut Redis,
    worker: &str,
    version: &str,
    hash: &str,
    now_ms: u64,
) -> Result<Mined, RedisError> {
    let coin = mining::is_coin(hash);
    let mut cmds = vec![
        Cmd::new("INCR").arg(HASHES),
        Cmd::new("LPUSH").arg(RECENT_HASHES).arg(now_ms),
        Cmd::new("LTRIM").arg(RECENT_HASHES).arg(0).arg(RECENT_HASHES_CAP - 1),
        Cmd::new("SET").arg(format!("{WORKER}{worker}")).arg(version).arg("PX").arg(WORKER_TTL_MS),
    ];
    if coin {
        cmds.push(Cmd::new("SADD").arg(SEEN).arg(hash));
    }
    let replies = redis.pipeline(&cmds).await?;
    if !coin {
        return Ok(Mined { coin, found_before: false });
    }
    // SADD answers how many members were new
    let found_before = replies[4].int() == Some(0);
    let mut cmds = vec![
        Cmd::new("INCR").arg(COINS),
        Cmd::new("LPUSH").arg(RECENT_COINS).arg(format!("{now_ms} {}", u8::from(found_before))),
        Cmd::new("LTRIM").arg(RECENT_COINS).arg(0).arg(RECENT_COINS_CAP - 1),
    ];
    if found_before {
        cmds.push(Cmd::new("INCR").arg(DUPLICATES));
    }
    redis.pipeline(&cmds).await?;
    Ok(Mined { coin, found_before })
}

/// Forgets the worker `worker` (when it stops cleanly): the webui stops counting it at
/// once rather than when its key expires.
pub async fn forget(redis: &mut Redis, worker: &str) -> Result<(), RedisError> {
    redis.query(Cmd::new("DEL").arg(format!("{WORKER}{worker}"))).await.map(drop)
}

/// What the webui shows, as `/json` answers it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Coins found, found before or not.
    pub coins: u64,
    pub hashes: u64,
    /// Over the last 10 s.
    pub hashes_per_second: f64,
    pub coins_per_second: f64,
    /// Coins that had been found before, of all time.
    pub duplicates: u64,
    /// The share of the latest coins (at most [`RECENT_COINS_CAP`]) that had been found
    /// before, 0 to 1.
    pub duplicate_rate: f64,
    /// Version → how many workers of it mined in the last [`WORKER_TTL_MS`].
    pub versions: BTreeMap<String, u64>,
}

/// Reads the counts and rates at `now_ms`.
pub async fn stats(redis: &mut Redis, now_ms: u64) -> Result<Stats, RedisError> {
    let replies = redis
        .pipeline(&[
            Cmd::new("GET").arg(HASHES),
            Cmd::new("GET").arg(COINS),
            Cmd::new("GET").arg(DUPLICATES),
            Cmd::new("LRANGE").arg(RECENT_HASHES).arg(0).arg(-1),
            Cmd::new("LRANGE").arg(RECENT_COINS).arg(0).arg(-1),
            // the keyspace is a handful of keys, so KEYS costs nothing here
            Cmd::new("KEYS").arg(format!("{WORKER}*")),
        ])
        .await?;
    let workers: Vec<String> =
        replies[5].items().unwrap_or_default().iter().filter_map(Value::text).collect();
    let versions = if workers.is_empty() {
        Vec::new()
    } else {
        let mut mget = Cmd::new("MGET");
        for key in &workers {
            mget = mget.arg(key);
        }
        redis.query(mget).await?.items().unwrap_or_default().to_vec()
    };
    Ok(Stats::from_replies(&replies, &versions, now_ms))
}

impl Stats {
    /// From the replies of [`stats`]'s pipeline and the versions of the workers; anything
    /// unreadable counts as nothing.
    fn from_replies(replies: &[Value], versions: &[Value], now_ms: u64) -> Stats {
        let count = |v: &Value| v.int().unwrap_or(0).max(0) as u64;
        let texts = |v: &Value| -> Vec<String> {
            v.items().unwrap_or_default().iter().filter_map(Value::text).collect()
        };
        let hash_times: Vec<u64> = texts(&replies[3]).iter().filter_map(|t| t.parse().ok()).collect();
        let coins: Vec<(u64, bool)> = texts(&replies[4])
            .iter()
            .filter_map(|t| {
                let (ms, again) = t.split_once(' ')?;
                Some((ms.parse().ok()?, again == "1"))
            })
            .collect();
        let coin_times: Vec<u64> = coins.iter().map(|&(t, _)| t).collect();
        let found_before: Vec<bool> = coins.iter().map(|&(_, again)| again).collect();
        let mut by_version = BTreeMap::new();
        for version in versions.iter().filter_map(Value::text) {
            *by_version.entry(version).or_insert(0) += 1;
        }
        Stats {
            hashes: count(&replies[0]),
            coins: count(&replies[1]),
            duplicates: count(&replies[2]),
            hashes_per_second: rate::per_second(&hash_times, now_ms, WINDOW_MS, RECENT_HASHES_CAP),
            coins_per_second: rate::per_second(&coin_times, now_ms, WINDOW_MS, RECENT_COINS_CAP),
            duplicate_rate: rate::duplicate_rate(&found_before),
            versions: by_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    fn list(items: &[String]) -> Value {
        Value::Array(items.iter().map(|s| bulk(s)).collect())
    }

    #[test]
    fn stats_from_what_redis_answers() {
        let now = 1_000_000;
        let hash_times: Vec<String> = (0..50).map(|i| (now - i * 100).to_string()).collect();
        let coins = vec![
            format!("{} 1", now - 100),
            format!("{} 0", now - 2_000),
            format!("{} 1", now - 30_000),
            "junk".into(),
        ];
        let replies = [bulk("50"), bulk("3"), bulk("2"), list(&hash_times), list(&coins), Value::Nil];
        let versions = [bulk("1.0"), bulk("1.1"), bulk("1.0"), Value::Nil];
        let stats = Stats::from_replies(&replies, &versions, now);
        assert_eq!(
            stats,
            Stats {
                coins: 3,
                hashes: 50,
                hashes_per_second: 5.0,
                coins_per_second: 0.2,
                duplicates: 2,
                duplicate_rate: 2.0 / 3.0,
                versions: BTreeMap::from([("1.0".into(), 2), ("1.1".into(), 1)]),
            }
        );
    }

    #[test]
    fn an_empty_redis_is_all_zeros() {
        let replies = [
            Value::Nil,
            Value::Nil,
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ];
        let stats = Stats::from_replies(&replies, &[], 5);
        assert_eq!((stats.coins, stats.hashes, stats.duplicates), (0, 0, 0));
        assert_eq!((stats.hashes_per_second, stats.duplicate_rate), (0.0, 0.0));
        assert!(stats.versions.is_empty());
        let json = serde_json::to_value(&stats).unwrap();
        for key in ["coins", "hashes", "hashes_per_second", "duplicates", "duplicate_rate", "versions"] {
            assert!(json.get(key).is_some(), "/json has {key}: {json}");
        }
    }
}
