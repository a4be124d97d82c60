//! When to replace a slot's dead container, computed without I/O (Brooklyn's
//! ServiceReplacer, on drover's terms).
//!
//! A fleet container that dies without the controller asking is replaced in its slot (same
//! version, same volumes). The first replacement is immediate; while a slot keeps dying its
//! replacements wait longer (1 s doubling to 30 s); after [`GIVE_UP_AFTER`] deaths within
//! [`WINDOW`] the slot is given up and reported, until an `up`, `scale` or `upgrade` touches
//! it again ([`Healer::forget`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Deaths within [`WINDOW`] after which a slot is given up.
pub const GIVE_UP_AFTER: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(300);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What to do about a death.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Replace it after this delay.
    Replace(Duration),
    /// Too many deaths: leave the slot empty and say so.
    GiveUp { deaths: usize },
    /// Already given up.
    Ignore,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlotHealth {
    /// Deaths within the window, as ms timestamps.
    pub deaths: Vec<u64>,
    pub given_up: bool,
}

/// The death history of every slot.
#[derive(Clone, Debug, Default)]
pub struct Healer {
    slots: BTreeMap<String, SlotHealth>,
}

impl Healer {
    /// A container of `slot` died at `now_ms`: what to do.
    pub fn died(&mut self, slot: &str, now_ms: u64) -> Verdict {
        let h = self.slots.entry(slot.to_string()).or_default();
        if h.given_up {
            return Verdict::Ignore;
        }
        let since = now_ms.saturating_sub(WINDOW.as_millis() as u64);
        h.deaths.retain(|t| *t > since);
        h.deaths.push(now_ms);
        let n = h.deaths.len();
        if n >= GIVE_UP_AFTER {
            h.given_up = true;
            return Verdict::GiveUp { deaths: n };
        }
        if n == 1 {
            return Verdict::Replace(Duration::ZERO);
        }
        let exp = (n - 2).min(16) as u32;
        Verdict::Replace((BACKOFF_MIN * 2u32.pow(exp)).min(BACKOFF_MAX))
    }

    /// Whether the healer gave up on `slot`.
    pub fn given_up(&self, slot: &str) -> bool {
        self.slots.get(slot).is_some_and(|h| h.given_up)
    }

    /// Slots given up on.
    pub fn given_up_slots(&self) -> Vec<String> {
        self.slots.iter().filter(|(_, h)| h.given_up).map(|(s, _)| s.clone()).collect()
    }

    /// Starts `slot`'s history afresh (it was recreated on purpose).
    pub fn forget(&mut self, slot: &str) {
        self.slots.remove(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_death_is_replaced_at_once_then_backoff_then_give_up() {
        let mut h = Healer::default();
        let s = 1_000_000;
        assert_eq!(h.died("a", s), Verdict::Replace(Duration::ZERO));
        assert_eq!(h.died("a", s + 1_000), Verdict::Replace(Duration::from_secs(1)));
        assert_eq!(h.died("a", s + 2_000), Verdict::Replace(Duration::from_secs(2)));
        assert_eq!(h.died("a", s + 3_000), Verdict::Replace(Duration::from_secs(4)));
        assert_eq!(h.died("a", s + 4_000), Verdict::GiveUp { deaths: 5 });
        assert!(h.given_up("a"));
        assert_eq!(h.died("a", s + 5_000), Verdict::Ignore);
        assert_eq!(h.given_up_slots(), ["a"]);
        // another slot is not affected
        assert_eq!(h.died("b", s + 5_000), Verdict::Replace(Duration::ZERO));
        // recreated on purpose: a fresh start
        h.forget("a");
        assert_eq!(h.died("a", s + 6_000), Verdict::Replace(Duration::ZERO));
    }

    #[test]
    fn deaths_older_than_the_window_do_not_count() {
        let mut h = Healer::default();
        let minute = 60_000;
        for i in 0..4 {
            h.died("a", i * 2 * minute);
        }
        // deaths at 0, 2, 4 and 6 minutes: at 8, only those at 4 and 6 are within 5 minutes
        assert_eq!(h.died("a", 8 * minute), Verdict::Replace(Duration::from_secs(2)));
        assert!(!h.given_up("a"));
    }
}
