//! Minion ids (`[A-Za-z0-9._-]{1,64}`), the routing ids minions present, and job ids
//! (sortable timestamp ids).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A validated minion id: 1 to 64 characters from `[A-Za-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MinionId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid minion id {0:?}: expected 1 to 64 characters from [A-Za-z0-9._-]")]
pub struct InvalidId(pub String);

impl MinionId {
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
        let s = s.into();
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && s != "."
            && s != "..";
        if ok { Ok(Self(s)) } else { Err(InvalidId(s)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MinionId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        Self::new(s)
    }
}

impl From<MinionId> for String {
    fn from(id: MinionId) -> String {
        id.0
    }
}

impl fmt::Display for MinionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MinionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The routing id a minion's socket presents to the master's ROUTER:
/// `<minion id>/<32 hex digits>`. The random part is new for every socket and travels only
/// inside CURVE, so the id names the minion in the master's traces while no other process
/// can present it and take the route over (the ROUTER refuses a duplicate id rather than
/// handing the route to it). The master still learns who a connection is from its `Hello`
/// and its key, and checks the id part with [`routing_id_names`].
pub fn routing_id(id: &MinionId) -> Result<Vec<u8>, getrandom::Error> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)?;
    Ok(format!("{id}/{}", hex::encode(nonce)).into_bytes())
}

/// A routing id as logs show it: the minion id part only (`web-1/…`), since the random
/// part is what keeps a route from being taken over; other ids in hex.
pub fn routing_label(routing: &[u8]) -> String {
    match std::str::from_utf8(routing).ok().and_then(|s| s.split_once('/')) {
        Some((id, _)) => format!("{id}/…"),
        None => hex::encode(routing),
    }
}

/// Whether `routing` is a routing id that [`routing_id`] could have made for `id`.
pub fn routing_id_names(routing: &[u8], id: &MinionId) -> bool {
    routing
        .strip_prefix(id.as_str().as_bytes())
        .and_then(|rest| rest.strip_prefix(b"/"))
        .is_some_and(|nonce| nonce.len() == 32 && nonce.iter().all(u8::is_ascii_hexdigit))
}

/// A job id: `YYYYMMDDhhmmssffffff` in UTC, like Salt's, made strictly increasing within
/// one process so that two jobs never share a jid and jids sort by creation time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Jid(pub String);

static LAST_JID_MICROS: AtomicU64 = AtomicU64::new(0);

impl Jid {
    /// A new jid, later than every jid this process made before.
    pub fn generate() -> Self {
        let now = chrono::Utc::now().timestamp_micros().max(0) as u64;
        let mut last = LAST_JID_MICROS.load(Ordering::Relaxed);
        let micros = loop {
            let next = now.max(last + 1);
            match LAST_JID_MICROS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(seen) => last = seen,
            }
        };
        let t = chrono::DateTime::from_timestamp_micros(micros as i64).unwrap_or_default();
        Self(t.format("%Y%m%d%H%M%S%6f").to_string())
    }

    /// Whether `s` has the shape of a jid (20 digits).
    pub fn is_valid(s: &str) -> bool {
        s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_ids_name_their_minion_and_differ_per_socket() {
        let web = MinionId::new("web-1").unwrap();
        let a = routing_id(&web).unwrap();
        let b = routing_id(&web).unwrap();
        assert_ne!(a, b, "every socket gets a fresh random part");
        assert!(a.starts_with(b"web-1/") && a.len() == "web-1/".len() + 32, "{a:?}");
        assert!(routing_id_names(&a, &web));
        assert_eq!(routing_label(&a), "web-1/…");
        assert_eq!(routing_label(&[0, 0, 0, 0, 7]), "0000000007");
        for other in ["web-10", "web", "eb-1"] {
            assert!(!routing_id_names(&a, &MinionId::new(other).unwrap()), "{other}");
        }
        // what libzmq makes when a peer sets no routing id, and near misses
        let libzmq_own = [0u8, 0, 0, 0, 7];
        for bad in [&libzmq_own[..], b"web-1", b"web-1/", b"web-1/xyz", &a[..a.len() - 1]] {
            assert!(!routing_id_names(bad, &web), "{bad:?}");
        }
    }

    #[test]
    fn ids_follow_the_design() {
        for good in ["a", "web-1", "m0001", "db.example.com", "A_b-C.9", &"x".repeat(64)] {
            assert!(MinionId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "..", ".", "é", &"x".repeat(65), "a#b", "*"] {
            assert_eq!(MinionId::new(bad), Err(InvalidId(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn jids_are_unique_sortable_and_shaped() {
        let jids: Vec<Jid> = (0..1000).map(|_| Jid::generate()).collect();
        for w in jids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        assert!(jids.iter().all(|j| Jid::is_valid(j.as_str())));
        assert!(!Jid::is_valid("2026"));
    }
}
