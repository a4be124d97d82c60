//! `GET /metrics` on a real master with two minions: behind the token, in the Prometheus
//! text format, and counting what happened (connections, jobs, returns and their latency).
//! The fleet's counts are checked by tests/tests/dashboard.rs, daemon restarts by
//! tests/tests/roles.rs. Also `POST /jobs` with the function's words as typed (the
//! dashboard's command box): the master splits them as the CLI does.

use std::time::Duration;

use serde_json::json;
use tests::{Master, Minion, wait_until};

#[test]
fn metrics_count_connections_jobs_and_returns_behind_the_token() {
    let master = Master::start(&["--auto-accept"]);
    let _a = Minion::start(&master, "m-1", &[]);
    let _b = Minion::start(&master, "m-2", &[]);
    master.wait_for_minions(2);

    // no token, no metrics
    let (status, body) = master.http("GET", "/metrics", None, false);
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("drover_"), "{body}");

    // the text format: HELP and TYPE lines, then samples
    let (status, text) = master.http("GET", "/metrics", None, true);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("# TYPE drover_minions_connected gauge\n"), "{text}");
    assert!(text.contains("# TYPE drover_return_latency_seconds histogram\n"), "{text}");
    wait_until(Duration::from_secs(10), "drover_minions_connected 2", || {
        master.metrics().get("drover_minions_connected") == Some(&2.0)
    });

    // wait_for_minions pinged: count from here
    let before = master.metrics();
    let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let (code, v, err) = master.drover_json(&["*", "test.ping"]);
    assert_eq!(code, 0, "{err} {v}");
    let (code, _, _) = master.drover_json(&["m-1", "cmd.run", "exit 3"]);
    assert_eq!(code, 1);
    let after = master.metrics();
    let delta = |k: &str| get(&after, k) - get(&before, k);
    assert_eq!(delta("drover_jobs_published_total"), 2.0, "{after:?}");
    assert_eq!(delta("drover_returns_received_total{result=\"success\"}"), 2.0, "{after:?}");
    assert_eq!(delta("drover_returns_received_total{result=\"failure\"}"), 1.0, "{after:?}");
    // every return of a job the master sent is timed, in cumulative buckets
    assert_eq!(delta("drover_return_latency_seconds_count"), 3.0, "{after:?}");
    assert_eq!(delta("drover_return_latency_seconds_bucket{le=\"+Inf\"}"), 3.0, "{after:?}");
    assert!(delta("drover_return_latency_seconds_sum") > 0.0, "{after:?}");
    assert_eq!(get(&after, "drover_job_timeouts_total"), 0.0);

    // the words of a command box: split as the CLI splits them, key=value read as YAML
    let run = json!({
        "target": "m-*", "tgt_type": "compound", "fun": "cmd.run",
        "words": ["echo $((2+3)) '<b>'", "timeout=5"], "timeout_secs": 20,
    });
    let (status, body) = master.http("POST", "/api/v1/jobs", Some(&run), true);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    for id in ["m-1", "m-2"] {
        assert_eq!(answer["returns"][id]["ret"], json!("5 <b>"), "{answer}");
    }
    let job = master.api(&format!("jobs/{}", answer["jid"].as_str().unwrap()));
    assert_eq!(job["args"], json!(["echo $((2+3)) '<b>'"]), "{job}");
    assert_eq!(job["kwargs"], json!({"timeout": 5}), "{job}");
    // words and args together are refused, naming why
    let both = json!({"target": "*", "fun": "test.ping", "words": ["a"], "args": ["b"], "timeout_secs": 5});
    let (status, body) = master.http("POST", "/api/v1/jobs", Some(&both), true);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not both"), "{body}");
}
