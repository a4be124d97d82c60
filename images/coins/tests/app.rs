//! The four services in one process on 127.0.0.1, with a fake redis: a worker mines
//! through rng and hasher, and the webui counts its coins.

mod support;

use std::time::Duration;

use axum::Router;
use coins::config::{WebuiConfig, WorkerConfig};
use coins::http::Client;
use coins::mining::Seeding;
use coins::{hasher, http, rng, store, webui, worker};
use serde_json::Value;
use support::fake_redis::FakeRedis;
use support::wait_for;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on a free port until `shutdown`; its base URL.
async fn serve(app: Router, shutdown: &CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http::serve(listener, app, shutdown.clone().cancelled_owned()));
    url
}

/// A worker on a free port; its `/health` URL and its task.
async fn start_worker(
    config: WorkerConfig,
    version: &str,
    seeding: Seeding,
    shutdown: &CancellationToken,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let health = format!("http://{}/health", listener.local_addr().unwrap());
    let version = version.to_string();
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move { worker::run(config, listener, &version, seeding, shutdown).await });
    (health, task)
}

async fn get_json(client: &Client, url: &str) -> Result<Value, String> {
    let body = client.get(url).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))
}

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_mines_through_rng_and_hasher_and_the_webui_counts_its_coins() {
    let redis = FakeRedis::start().await;
    let shutdown = CancellationToken::new();
    let rng = serve(rng::router(), &shutdown).await;
    let hasher = serve(hasher::router(), &shutdown).await;
    let mut config =
        WorkerConfig::new(local(), vec![redis.addr.to_string()], vec![rng.clone()], vec![hasher.clone()]);
    config.pause_ms = 1;
    let (worker_health, worker) = start_worker(config, "1.0", Seeding::FirstFourBytes, &shutdown).await;
    let webui =
        serve(webui::router(&WebuiConfig::new(local(), vec![redis.addr.to_string()]), "1.1"), &shutdown)
            .await;
    let client = Client::new(Duration::from_secs(10));

    let stats = wait_for(120, "the webui to count 5 coins", || async {
        let json = get_json(&client, &format!("{webui}/json")).await?;
        if json["coins"].as_u64() >= Some(5) { Ok(json) } else { Err(json.to_string()) }
    })
    .await;
    assert!(stats["hashes"].as_u64() >= stats["coins"].as_u64(), "{stats}");
    assert!(stats["hashes_per_second"].as_f64() > Some(0.0), "{stats}");
    assert_eq!(stats["versions"], serde_json::json!({"1.0": 1}), "{stats}");
    assert_eq!(stats["webui_version"], "1.1");
    for key in ["duplicates", "duplicate_rate", "coins_per_second", "now"] {
        assert!(stats.get(key).is_some(), "/json has {key}: {stats}");
    }

    let health = get_json(&client, &worker_health).await.unwrap();
    assert_eq!(health["version"], "1.0", "{health}");
    assert_eq!(health["seeding"], Seeding::FirstFourBytes.describe(), "{health}");
    assert!(health["hashes"].as_u64() > Some(0), "{health}");
    assert_eq!(health["problem"], Value::Null, "{health}");
    for base in [&rng, &hasher, &webui] {
        assert_eq!(client.get(&format!("{base}/health")).await.unwrap(), "ok\n");
    }
    let page = client.get(&webui).await.unwrap();
    assert!(String::from_utf8_lossy(&page).contains("duplicate rate"));

    assert_eq!(redis.keys(store::WORKER).len(), 1, "the worker says it mines");
    // stopped, the worker leaves no coin half counted, and takes itself off the webui
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(redis.keys(store::WORKER), Vec::<String>::new());
    let coins = redis.counter(store::COINS);
    assert!(coins >= 5);
    assert_eq!(coins, redis.members(store::SEEN) as i64 + redis.counter(store::DUPLICATES));
    assert!(redis.counter(store::HASHES) >= coins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_its_peers_keeps_going_and_says_what_it_waits_for() {
    let shutdown = CancellationToken::new();
    let client = Client::new(Duration::from_secs(10));
    let problem = |url: String| {
        let client = client.clone();
        async move { get_json(&client, &url).await.map(|h| h["problem"].as_str().unwrap_or_default().to_string()) }
    };

    // a fresh cloud: the config lists no peer yet
    let (health, worker) =
        start_worker(WorkerConfig::new(local(), vec![], vec![], vec![]), "1.1", Seeding::AllBytes, &shutdown)
            .await;
    let said = wait_for(30, "the worker to say it has no redis", || async {
        let p = problem(health.clone()).await?;
        if p.is_empty() { Err("no problem yet".to_string()) } else { Ok(p) }
    })
    .await;
    assert_eq!(said, "no redis in the config yet");
    assert!(!worker.is_finished());

    // rng is down (nothing listens where the config says)
    let redis = FakeRedis::start().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rng = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config =
        WorkerConfig::new(local(), vec![redis.addr.to_string()], vec![rng.clone()], vec![rng.clone()]);
    let (health, worker2) = start_worker(config, "1.1", Seeding::AllBytes, &shutdown).await;
    let said = wait_for(30, "the worker to say rng is down", || async {
        let p = problem(health.clone()).await?;
        if p.is_empty() { Err("no problem yet".to_string()) } else { Ok(p) }
    })
    .await;
    assert!(said.starts_with(&format!("rng: {rng}/32: cannot connect")), "{said}");
    assert!(!worker2.is_finished());
    assert_eq!(redis.counter(store::HASHES), 0);

    // and a webui whose redis is down answers 503 with the reason, and stays healthy
    let webui = serve(
        webui::router(&WebuiConfig::new(local(), vec![rng.trim_start_matches("http://").into()]), "1.1"),
        &shutdown,
    )
    .await;
    let err = client.get(&format!("{webui}/json")).await.unwrap_err().to_string();
    assert!(err.contains("answered 503") && err.contains("cannot connect"), "{err}");
    assert_eq!(client.get(&format!("{webui}/health")).await.unwrap(), "ok\n");

    shutdown.cancel();
    worker.await.unwrap().unwrap();
    worker2.await.unwrap().unwrap();
}
