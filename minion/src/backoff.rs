//! Exponential backoff with full jitter, for reconnecting without a thundering herd.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Waits drawn from `[0, min]`, then `[0, 2·min]`, ... up to `[0, max]`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, ceiling: min }
    }

    /// The next wait: uniform between zero and the current ceiling, which then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// Back to the shortest waits (after a successful connection).
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

impl Default for Backoff {
    /// 100 ms doubling to a 10 s cap.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_under_a_doubling_capped_ceiling() {
        let mut b = Backoff::default();
        let ceilings = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
        for ceiling in ceilings {
            assert!(b.next_delay() <= Duration::from_millis(ceiling));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
