//! What one minion (or one unknown connection) may cost the master, and the tally of what
//! was dropped for going over it. No I/O: time is given, so every decision is tested on
//! plain values.
//!
//! - [`Bucket`]: a token bucket (a rate and a burst).
//! - [`MinionLimits`]: one minion's buckets (returns, events, file-server bytes) and its
//!   deferred fetch.
//! - [`NewKeys`]: whether a new key may wait in `pending/` (a cap and a rate).
//! - [`Drops`]: counters per minion and [`Reason`], reported at most once per interval.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// A token bucket: `burst` tokens at most, refilled at `rate` a second.
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self { rate, burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `cost` tokens if there are that many.
    pub fn take(&mut self, now: Instant, cost: f64) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Whether at least one token is left.
    pub fn available(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Takes `cost` tokens if any is left, going into debt for the rest: one request larger
    /// than the burst still passes, and the next waits until the debt is paid.
    pub fn take_debt(&mut self, now: Instant, cost: f64) -> bool {
        self.refill(now);
        if self.tokens > 0.0 {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (nothing is owed to it).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Returns a minion may send: this many a second, after a burst of [`RETURN_BURST`] (a
/// minion that ran many jobs at once resends the rest later).
pub const RETURN_RATE: f64 = 200.0;
pub const RETURN_BURST: f64 = 1000.0;
/// Bytes of returns a minion may send a second, after a burst.
pub const RETURN_BYTES_RATE: f64 = (16 << 20) as f64;
pub const RETURN_BYTES_BURST: f64 = (64 << 20) as f64;
/// Events a minion may send a second, after a burst.
pub const EVENT_RATE: f64 = 50.0;
pub const EVENT_BURST: f64 = 500.0;
/// Bytes the file server sends one minion a second, after a burst; a fetch asked beyond
/// it is answered later (see [`MinionLimits::fetch`]).
pub const FETCH_BYTES_RATE: f64 = (16 << 20) as f64;
pub const FETCH_BYTES_BURST: f64 = (32 << 20) as f64;
/// The most hashes a deferred fetch keeps (more than any manifest holds).
const DEFERRED_HASHES: usize = 8192;

/// One minion's buckets, and the fetch it asked for while its file-server budget was spent.
#[derive(Clone, Debug)]
pub struct MinionLimits {
    returns: Bucket,
    return_bytes: Bucket,
    events: Bucket,
    fetch_bytes: Bucket,
    /// Hashes asked for and not served yet (several fetches are merged into one answer).
    deferred: BTreeSet<String>,
}

impl MinionLimits {
    pub fn new(now: Instant) -> Self {
        Self {
            returns: Bucket::new(RETURN_RATE, RETURN_BURST, now),
            return_bytes: Bucket::new(RETURN_BYTES_RATE, RETURN_BYTES_BURST, now),
            events: Bucket::new(EVENT_RATE, EVENT_BURST, now),
            fetch_bytes: Bucket::new(FETCH_BYTES_RATE, FETCH_BYTES_BURST, now),
            deferred: BTreeSet::new(),
        }
    }

    /// Whether a return of `bytes` may be taken now.
    pub fn take_return(&mut self, now: Instant, bytes: usize) -> bool {
        // a return refused for its bytes does not spend a count token
        if !self.returns.available(now) || !self.return_bytes.take_debt(now, bytes as f64) {
            return false;
        }
        self.returns.tokens -= 1.0;
        true
    }

    /// Whether an event may be taken now.
    pub fn take_event(&mut self, now: Instant) -> bool {
        self.events.take(now, 1.0)
    }

    /// A fetch of `wanted`: the hashes to answer now, if the budget allows (merged with
    /// what waited); otherwise they wait for [`MinionLimits::due_fetch`].
    pub fn fetch(&mut self, now: Instant, wanted: Vec<String>) -> Option<Vec<String>> {
        self.defer(wanted);
        self.due_fetch(now)
    }

    /// Adds `wanted` to the fetch that waits (each hash once, at most [`DEFERRED_HASHES`]).
    pub fn defer(&mut self, wanted: Vec<String>) {
        for sha in wanted {
            if self.deferred.len() >= DEFERRED_HASHES {
                break;
            }
            self.deferred.insert(sha);
        }
    }

    /// Whether a fetch waits for the budget.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The deferred fetch, once the budget allows answering it.
    pub fn due_fetch(&mut self, now: Instant) -> Option<Vec<String>> {
        if self.deferred.is_empty() || !self.fetch_bytes.available(now) {
            return None;
        }
        Some(std::mem::take(&mut self.deferred).into_iter().collect())
    }

    /// Drops the deferred fetch (its connection is gone).
    pub fn forget_fetch(&mut self) {
        self.deferred.clear();
    }

    /// Charges the bytes of a fetch answer.
    pub fn served(&mut self, now: Instant, bytes: usize) {
        self.fetch_bytes.take_debt(now, bytes as f64);
    }

    /// Whether these limits are back at rest (full buckets, nothing deferred): forgetting
    /// them then changes nothing.
    pub fn at_rest(&mut self, now: Instant) -> bool {
        self.deferred.is_empty()
            && self.returns.is_full(now)
            && self.return_bytes.is_full(now)
            && self.events.is_full(now)
            && self.fetch_bytes.is_full(now)
    }
}

/// The most keys that may wait in `pending/` for `drover key accept`.
pub const MAX_PENDING: usize = 1000;
/// New pending keys the master records a second, after a burst.
pub const NEW_KEY_RATE: f64 = 20.0;
pub const NEW_KEY_BURST: f64 = 100.0;

/// Whether a key never seen may be recorded as pending.
#[derive(Clone, Debug)]
pub struct NewKeys {
    bucket: Bucket,
    max_pending: usize,
}

/// Why a new key was not recorded; the text is what the minion is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    Full { pending: usize, max: usize },
    Rate,
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRefusal::Full { pending, max } => write!(
                f,
                "the master already has {pending} keys waiting for acceptance (its limit is {max}): \
                 its operator must accept or delete pending keys ('drover key list') before this \
                 minion can register"
            ),
            KeyRefusal::Rate => write!(
                f,
                "the master is registering more than {NEW_KEY_RATE} new minion keys a second: \
                 this minion tries again later"
            ),
        }
    }
}

impl NewKeys {
    pub fn new(max_pending: usize, now: Instant) -> Self {
        Self { bucket: Bucket::new(NEW_KEY_RATE, NEW_KEY_BURST, now), max_pending }
    }

    /// Whether one more key may be recorded as pending, given how many wait already
    /// (`pending` is only asked for when the rate allows one more).
    pub fn admit(&mut self, now: Instant, pending: impl FnOnce() -> usize) -> Result<(), KeyRefusal> {
        if !self.bucket.available(now) {
            return Err(KeyRefusal::Rate);
        }
        let pending = pending();
        if pending >= self.max_pending {
            return Err(KeyRefusal::Full { pending, max: self.max_pending });
        }
        self.bucket.tokens -= 1.0;
        Ok(())
    }
}

/// Why something a peer sent was dropped (or, for `ReturnTooLarge`, replaced).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// A return for a job the master never sent to that minion.
    ReturnNotSent,
    /// A return for another minion's id.
    ReturnOtherId,
    /// More returns than [`RETURN_RATE`] (not acknowledged: the minion sends it again).
    ReturnRate,
    /// A return over the size limit (stored as a failure saying so).
    ReturnTooLarge,
    /// More events than [`EVENT_RATE`].
    EventRate,
    /// An event with a bad tag or too much data.
    EventBad,
    /// It did not read what the master sent it: its queue was dropped.
    NotReading,
    /// A frame over the limit for a connection without a session.
    LargeUnauthenticated,
    /// A new key refused: too many pending.
    PendingFull,
    /// A new key refused: too many new keys a second.
    NewKeyRate,
    /// A message to a minion dropped: the queue to the zmq thread was full.
    OutgoingFull,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReturnNotSent => "return for a job not sent to it",
            Reason::ReturnOtherId => "return for another minion",
            Reason::ReturnRate => "returns over the rate limit",
            Reason::ReturnTooLarge => "return over the size limit",
            Reason::EventRate => "events over the rate limit",
            Reason::EventBad => "malformed event",
            Reason::NotReading => "did not read what the master sent",
            Reason::LargeUnauthenticated => {
                "frame over 256 KiB before a session (a hello with too many grains?)"
            }
            Reason::PendingFull => "new key refused: pending keys at their limit",
            Reason::NewKeyRate => "new key refused: too many new keys a second",
            Reason::OutgoingFull => "message to it dropped: the queue to the zmq thread was full",
        }
    }
}

impl Reason {
    /// The reason as a metric label (`drover_dropped_total{reason=...}`).
    pub fn label(self) -> &'static str {
        match self {
            Reason::ReturnNotSent => "return_not_sent",
            Reason::ReturnOtherId => "return_other_id",
            Reason::ReturnRate => "return_rate",
            Reason::ReturnTooLarge => "return_too_large",
            Reason::EventRate => "event_rate",
            Reason::EventBad => "event_bad",
            Reason::NotReading => "not_reading",
            Reason::LargeUnauthenticated => "large_unauthenticated",
            Reason::PendingFull => "pending_full",
            Reason::NewKeyRate => "new_key_rate",
            Reason::OutgoingFull => "outgoing_full",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often, at most, drops are logged.
pub const DROPS_INTERVAL: Duration = Duration::from_secs(10);
/// The most (who, reason) pairs counted one by one; past it they count under `(others)`.
const DROPS_KEYS: usize = 4096;

/// One line of a drop report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropLine {
    pub who: String,
    pub reason: Reason,
    /// Since the last report.
    pub new: u64,
    /// Since the master started.
    pub total: u64,
}

/// What was dropped, per minion (or connection label) and reason; also counted, per reason
/// alone, in the master's metrics.
pub struct Drops {
    counts: BTreeMap<(String, Reason), (u64, u64)>,
    last_report: Option<Instant>,
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl Drops {
    pub fn new(interval: Duration, metrics: Arc<Metrics>) -> Self {
        Self { counts: BTreeMap::new(), last_report: None, interval, metrics }
    }

    pub fn note(&mut self, who: &str, reason: Reason) {
        self.note_n(who, reason, 1);
    }

    /// Counts `n` drops at once (none: nothing changes).
    pub fn note_n(&mut self, who: &str, reason: Reason, n: u64) {
        if n == 0 {
            return;
        }
        self.metrics.dropped(reason.label(), n);
        let mut key = (who.to_string(), reason);
        if !self.counts.contains_key(&key) && self.counts.len() >= DROPS_KEYS {
            key.0 = "(others)".to_string();
        }
        let c = self.counts.entry(key).or_default();
        c.0 += n;
        c.1 += n;
    }

    /// The total dropped for `who` and `reason` since the master started.
    pub fn total(&self, who: &str, reason: Reason) -> u64 {
        self.counts.get(&(who.to_string(), reason)).map_or(0, |c| c.1)
    }

    /// What was dropped since the last report, if one is due (at most once per interval);
    /// the first drop is reported at once.
    pub fn report(&mut self, now: Instant) -> Vec<DropLine> {
        if self.last_report.is_some_and(|t| now.saturating_duration_since(t) < self.interval) {
            return Vec::new();
        }
        let lines: Vec<DropLine> = self
            .counts
            .iter_mut()
            .filter(|(_, c)| c.0 > 0)
            .map(|((who, reason), c)| {
                let line = DropLine { who: who.clone(), reason: *reason, new: c.0, total: c.1 };
                c.0 = 0;
                line
            })
            .collect();
        if !lines.is_empty() {
            self.last_report = Some(now);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 5.0, t0);
        assert_eq!((0..8).filter(|_| b.take(t0, 1.0)).count(), 5);
        assert!(!b.take(t0 + secs(0.05), 1.0));
        assert!(b.take(t0 + secs(0.1), 1.0));
        assert!(!b.take(t0 + secs(0.1), 1.0));
        // never more than the burst, however long it rested
        let later = t0 + secs(100.0);
        assert_eq!((0..8).filter(|_| b.take(later, 1.0)).count(), 5);
    }

    #[test]
    fn debt_lets_one_large_request_through_and_holds_the_next() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 10.0, t0);
        assert!(b.take_debt(t0, 25.0), "larger than the burst, but the bucket was not empty");
        assert!(!b.take_debt(t0 + secs(1.0), 1.0), "15 owed, 10 paid back");
        assert!(b.take_debt(t0 + secs(1.6), 1.0));
        assert!(!b.is_full(t0 + secs(1.6)));
        assert!(b.is_full(t0 + secs(10.0)));
    }

    #[test]
    fn returns_are_limited_by_count_and_by_bytes() {
        let t0 = Instant::now();
        let mut l = MinionLimits::new(t0);
        let taken = (0..2000).filter(|_| l.take_return(t0, 100)).count();
        assert_eq!(taken, RETURN_BURST as usize);
        let mut l = MinionLimits::new(t0);
        // 4 MiB returns: the 64 MiB burst lets 16 through (and one into debt)
        let taken = (0..100).filter(|_| l.take_return(t0, 4 << 20)).count();
        assert_eq!(taken, 16);
        // refused for bytes, it did not spend a count token
        assert_eq!(l.returns.tokens, RETURN_BURST - 16.0);
        assert!(l.take_return(t0 + secs(1.0), 100), "16 MiB paid back in a second");
    }

    #[test]
    fn fetches_beyond_the_budget_wait_and_are_merged() {
        let t0 = Instant::now();
        let mut l = MinionLimits::new(t0);
        let big = (40 << 20) as usize;
        assert_eq!(l.fetch(t0, vec!["a".into()]), Some(vec!["a".to_string()]));
        l.served(t0, big);
        // spent (8 MiB owed): the next ones wait, merged, duplicates once
        for sha in ["a", "b", "a", "c"] {
            assert_eq!(l.fetch(t0, vec![sha.into()]), None);
        }
        assert_eq!(l.due_fetch(t0 + secs(0.4)), None);
        assert_eq!(l.due_fetch(t0 + secs(0.6)), Some(vec!["a".to_string(), "b".into(), "c".into()]));
        assert_eq!(l.due_fetch(t0 + secs(0.7)), None, "nothing left to answer");
        assert!(!l.at_rest(t0 + secs(0.7)));
        assert!(l.at_rest(t0 + secs(60.0)));
    }

    #[test]
    fn new_keys_are_capped_and_rate_limited() {
        let t0 = Instant::now();
        let mut k = NewKeys::new(3, t0);
        let mut pending = 0;
        for _ in 0..3 {
            assert_eq!(k.admit(t0, || pending), Ok(()));
            pending += 1;
        }
        assert_eq!(k.admit(t0, || pending), Err(KeyRefusal::Full { pending: 3, max: 3 }));
        assert!(KeyRefusal::Full { pending: 3, max: 3 }.to_string().contains("drover key list"));

        let mut k = NewKeys::new(MAX_PENDING, t0);
        let admitted = (0..500).filter(|_| k.admit(t0, || 0).is_ok()).count();
        assert_eq!(admitted, NEW_KEY_BURST as usize);
        assert_eq!(k.admit(t0, || panic!("not counted when the rate refuses")), Err(KeyRefusal::Rate));
        assert_eq!(k.admit(t0 + secs(1.0 / NEW_KEY_RATE), || 0), Ok(()));
    }

    #[test]
    fn drops_are_counted_per_minion_and_reason_and_reported_once_per_interval() {
        let t0 = Instant::now();
        let mut d = Drops::new(secs(10.0), Arc::default());
        assert!(d.report(t0).is_empty());
        d.note("m1", Reason::ReturnNotSent);
        d.note("m1", Reason::ReturnNotSent);
        d.note("m2", Reason::EventRate);
        let first = d.report(t0);
        assert_eq!(
            first,
            vec![
                DropLine { who: "m1".into(), reason: Reason::ReturnNotSent, new: 2, total: 2 },
                DropLine { who: "m2".into(), reason: Reason::EventRate, new: 1, total: 1 },
            ]
        );
        d.note("m1", Reason::ReturnNotSent);
        assert!(d.report(t0 + secs(5.0)).is_empty(), "at most once per interval");
        let second = d.report(t0 + secs(10.0));
        assert_eq!(
            second,
            vec![DropLine { who: "m1".into(), reason: Reason::ReturnNotSent, new: 1, total: 3 }]
        );
        assert_eq!(d.total("m1", Reason::ReturnNotSent), 3);
        // the tally stays bounded however many names it sees
        for i in 0..2 * DROPS_KEYS {
            d.note(&format!("x{i}"), Reason::LargeUnauthenticated);
        }
        assert!(d.counts.len() <= DROPS_KEYS + 1);
        assert!(d.total("(others)", Reason::LargeUnauthenticated) > 0);
    }
}
