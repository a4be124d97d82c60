//! `-b N`: a sliding window; never more than N minions busy at once, judged from the
//! minions' own start and finish timestamps.

use serde_json::Value;
use tests::{Master, minions, show};

/// The most jobs running at the same instant, from (start, finish) pairs.
fn max_overlap(spans: &[(u64, u64)]) -> usize {
    let mut events: Vec<(u64, i32)> = spans.iter().flat_map(|&(s, f)| [(s, 1), (f, -1)]).collect();
    // at equal times, a finish comes before a start
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[test]
fn batch_two_never_has_more_than_two_busy() {
    let master = Master::start(&["--auto-accept"]);
    let _m = minions(&master, "b", 6, &[]);
    master.wait_for_minions(6);

    for batch in ["2", "33%"] {
        let out = master.drover(&["-b", batch, "*", "test.sleep", "0.4"]);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let (_, jobs, _) = master.drover_json(&["jobs", "list"]);
        let jid = jobs.as_array().unwrap().last().unwrap()["jid"].as_str().unwrap().to_string();
        let (_, job, _) = master.drover_json(&["jobs", "show", &jid]);
        let returns = job["returns"].as_object().unwrap();
        assert_eq!(returns.len(), 6, "{job}");
        let spans: Vec<(u64, u64)> = returns
            .values()
            .map(|r: &Value| (r["started_ms"].as_u64().unwrap(), r["finished_ms"].as_u64().unwrap()))
            .collect();
        // at most 2 busy at once (under load the window may not always fill)
        assert!((1..=2).contains(&max_overlap(&spans)), "-b {batch}: {spans:?}");
    }
}

#[test]
fn overlap_counting() {
    assert_eq!(max_overlap(&[(0, 10), (10, 20), (20, 30)]), 1);
    assert_eq!(max_overlap(&[(0, 10), (5, 15), (6, 7), (20, 30)]), 3);
}
