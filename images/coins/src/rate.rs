//! Rates from what redis keeps: the times of the latest hashes and coins (capped lists,
//! newest first) and, for each recent coin, whether it had been found before.

/// The span rates are measured over.
pub const WINDOW_MS: u64 = 10_000;

/// Events per second over the `window_ms` before `now_ms`, from the times (ms) of the
/// latest events, of which at most `cap` are kept. When the list is full and its oldest
/// event is inside the window, older events of the window were dropped: the rate is then
/// over the span the list covers. Times after `now_ms` (another machine's clock) count as
/// now.
pub fn per_second(stamps: &[u64], now_ms: u64, window_ms: u64, cap: usize) -> f64 {
    let since = now_ms.saturating_sub(window_ms);
    let recent = stamps.iter().filter(|&&t| t > since).count();
    if recent == 0 || window_ms == 0 {
        return 0.0;
    }
    let span = match stamps.iter().min() {
        Some(&oldest) if stamps.len() >= cap && oldest > since => now_ms.saturating_sub(oldest).max(1),
        _ => window_ms,
    };
    recent as f64 * 1000.0 / span as f64
}

/// The share of recent coins that had been found before, 0 to 1; 0 with no coins.
pub fn duplicate_rate(found_before: &[bool]) -> f64 {
    if found_before.is_empty() {
        return 0.0;
    }
    found_before.iter().filter(|&&d| d).count() as f64 / found_before.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_per_second_over_the_window() {
        let now = 100_000;
        // (stamps, cap, expected per second)
        let cases: &[(&[u64], usize, f64)] = &[
            (&[], 1000, 0.0),
            // 20 events in the last 10 s
            (&(0..20).map(|i| now - i * 500).collect::<Vec<_>>(), 1000, 2.0),
            // older events do not count
            (&[now - 1_000, now - 20_000, now - 30_000], 1000, 0.1),
            // every event too old: no rate
            (&[now - 10_000, now - 50_000], 1000, 0.0),
            // the list is full and covers 2 s of the window: 4 events in 2 s
            (&[now, now - 500, now - 1_000, now - 2_000], 4, 2.0),
            // full, but its oldest is outside the window: the window decides
            (&[now, now - 500, now - 1_000, now - 20_000], 4, 0.3),
            // a clock ahead of ours counts as now
            (&[now + 5_000], 1000, 0.1),
        ];
        for (stamps, cap, want) in cases {
            let got = per_second(stamps, now, WINDOW_MS, *cap);
            assert!((got - want).abs() < 1e-9, "{stamps:?} cap {cap}: {got}, expected {want}");
        }
    }

    #[test]
    fn a_full_list_of_events_at_this_very_millisecond_is_not_infinite() {
        assert_eq!(per_second(&[7, 7, 7], 7, WINDOW_MS, 3), 3000.0);
    }

    #[test]
    fn duplicate_rate_is_the_share_of_coins_found_before() {
        assert_eq!(duplicate_rate(&[]), 0.0);
        assert_eq!(duplicate_rate(&[false, false]), 0.0);
        assert_eq!(duplicate_rate(&[true, false, false, true]), 0.5);
        assert_eq!(duplicate_rate(&[true]), 1.0);
    }
}
