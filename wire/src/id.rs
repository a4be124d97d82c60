//! Minion ids (`[A-Za-z0-9._-]{1,64}`) and job ids (sortable timestamp ids).

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
