//! `coins worker`: mines until stopped. Each round asks rng for random bytes, makes the
//! nonce of them ([`mining::nonce`]), asks hasher for its sha256 and counts the hash in
//! redis ([`store::record`]). A missing or failing peer (none in the config yet, rng down,
//! redis restarting) stops nothing: the worker says so in its log once, retries every
//! second, and says when it mines again. `GET /health` answers its status as JSON, 200
//! while the process runs: a worker waiting for a peer is not broken, and restarting it
//! would not bring the peer.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::WorkerConfig;
use crate::http::{self, Client, HttpError};
use crate::mining::{self, RANDOM_BYTES, Seeding};
use crate::redis::{Redis, RedisError};
use crate::store;

/// How long one request to rng or hasher may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a failed round.
pub const RETRY: Duration = Duration::from_secs(1);
/// How long a stopping worker tries to take itself off the webui.
pub const FORGET_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the log says how mining went.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// What `/health` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Status {
    pub id: String,
    pub version: String,
    pub seeding: String,
    /// Since the worker started.
    pub hashes: u64,
    pub coins: u64,
    pub found_before: u64,
    /// Why the last round failed; none when it mined.
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MineError {
    #[error("no {0} in the config yet")]
    NoPeer(&'static str),
    #[error("{what}: {source}")]
    Http { what: &'static str, source: HttpError },
    #[error("{what}: {detail}")]
    BadAnswer { what: &'static str, detail: String },
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Serves `/health` on `listener` and mines, both until `shutdown`; `version` and `seeding`
/// are the build's ([`crate::VERSION`], [`Seeding::BUILT`]) but for tests.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    version: &str,
    seeding: Seeding,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let id = worker_id();
    let status = Status {
        id: id.clone(),
        version: version.to_string(),
        seeding: seeding.describe().to_string(),
        ..Status::default()
    };
    let (tx, rx) = watch::channel(status);
    let app = Router::new().route("/health", get(move || std::future::ready(Json(rx.borrow().clone()))));
    let miner = Miner::new(&config, id, version, seeding);
    let mining = tokio::spawn(miner.run(Duration::from_millis(config.pause_ms), tx, shutdown.clone()));
    let served = http::serve(listener, app, shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();
    let _ = mining.await;
    served
}

/// `<hostname>-<pid>`: a container's hostname is its own, and the pid tells two workers of
/// one host apart.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}-{}", if host.is_empty() { "worker" } else { host }, std::process::id())
}

/// A role's peers, asked in turn.
struct Peers {
    what: &'static str,
    urls: Vec<String>,
    next: usize,
}

impl Peers {
    /// Asks the next peer, then each other one in turn until one answers; the last error
    /// when none does.
    async fn ask(&mut self, client: &Client, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, MineError> {
        let mut last = MineError::NoPeer(self.what);
        for _ in 0..self.urls.len() {
            let url = http::join(&self.urls[self.next % self.urls.len()], path);
            self.next = (self.next + 1) % self.urls.len();
            let answer = match body {
                Some(body) => client.post(&url, body.to_vec()).await,
                None => client.get(&url).await,
            };
            match answer {
                Ok(bytes) => return Ok(bytes.to_vec()),
                Err(source) => last = MineError::Http { what: self.what, source },
            }
        }
        Err(last)
    }
}

struct Miner {
    client: Client,
    rng: Peers,
    hasher: Peers,
    redis: Redis,
    id: String,
    version: String,
    seeding: Seeding,
}

impl Miner {
    fn new(config: &WorkerConfig, id: String, version: &str, seeding: Seeding) -> Miner {
        Miner {
            client: Client::new(HTTP_TIMEOUT),
            rng: Peers { what: "rng", urls: config.rng.clone(), next: 0 },
            hasher: Peers { what: "hasher", urls: config.hasher.clone(), next: 0 },
            redis: Redis::new(config.redis.clone()),
            id,
            version: version.to_string(),
            seeding,
        }
    }

    /// The first half of a round: random bytes, their nonce, its hash.
    async fn hash(&mut self) -> Result<String, MineError> {
        if self.redis.addresses().is_empty() {
            // said before asking rng and hasher for nothing
            return Err(MineError::NoPeer("redis"));
        }
        let random = self.rng.ask(&self.client, &format!("/{RANDOM_BYTES}"), None).await?;
        if random.len() != RANDOM_BYTES {
            let detail = format!("answered {} bytes, expected {RANDOM_BYTES}", random.len());
            return Err(MineError::BadAnswer { what: "rng", detail });
        }
        let nonce = mining::nonce(&random, self.seeding);
        let answer = self.hasher.ask(&self.client, "/", Some(&nonce)).await?;
        let hash = String::from_utf8_lossy(&answer).trim().to_string();
        if !mining::is_sha256_hex(&hash) {
            let shown: String = hash.chars().take(80).collect();
            return Err(MineError::BadAnswer {
                what: "hasher",
                detail: format!("expected a hex sha256, got {shown:?}"),
            });
        }
        Ok(hash)
    }

    /// The second half: the hash counted.
    async fn record(&mut self, hash: &str) -> Result<store::Mined, MineError> {
        Ok(store::record(&mut self.redis, &self.id, &self.version, hash, crate::now_ms()).await?)
    }

    async fn run(mut self, pause: Duration, status: watch::Sender<Status>, shutdown: CancellationToken) {
        info!(
            id = %self.id,
            version = %self.version,
            seeding = self.seeding.describe(),
            rng = ?self.rng.urls,
            hasher = ?self.hasher.urls,
            redis = ?self.redis.addresses(),
            "worker starts mining"
        );
        let mut problem: Option<String> = None;
        let (mut tally, mut since) = (Tally::default(), Instant::now());
        loop {
            // a stop waits for a hash being counted (its writes are bounded by the redis
            // timeout), so that no coin is half counted
            let hashed = tokio::select! {
                _ = shutdown.cancelled() => break,
                hashed = self.hash() => hashed,
            };
            let round = match hashed {
                Ok(hash) => self.record(&hash).await,
                Err(e) => Err(e),
            };
            let wait = match round {
                Ok(mined) => {
                    if let Some(was) = problem.take() {
                        info!(after = %was, "mining again");
                    }
                    tally.count(mined);
                    status.send_modify(|s| {
                        s.hashes += 1;
                        s.coins += u64::from(mined.coin);
                        s.found_before += u64::from(mined.found_before);
                        s.problem = None;
                    });
                    pause
                }
                Err(e) => {
                    let text = e.to_string();
                    if problem.as_deref() != Some(text.as_str()) {
                        warn!(problem = %text, "cannot mine; trying again every second");
                    }
                    status.send_modify(|s| s.problem = Some(text.clone()));
                    problem = Some(text);
                    RETRY
                }
            };
            if since.elapsed() >= REPORT_EVERY {
                info!(
                    hashes = tally.hashes,
                    coins = tally.coins,
                    found_before = tally.found_before,
                    waiting = problem.as_deref().unwrap_or("no"),
                    "mined in the last minute"
                );
                (tally, since) = (Tally::default(), Instant::now());
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // a restarted worker (a new config) or a replaced one (a rollout) is not counted
        // twice on the webui for the 10 s its key would live
        if !self.redis.addresses().is_empty() {
            let forgotten =
                tokio::time::timeout(FORGET_TIMEOUT, store::forget(&mut self.redis, &self.id)).await;
            if let Ok(Err(e)) = forgotten {
                info!(cause = %e, "cannot take this worker off the webui; it drops off within 10 s");
            }
        }
        info!(id = %self.id, "worker stops");
    }
}

#[derive(Default)]
struct Tally {
    hashes: u64,
    coins: u64,
    found_before: u64,
}

impl Tally {
    fn count(&mut self, mined: store::Mined) {
        self.hashes += 1;
        self.coins += u64::from(mined.coin);
        self.found_before += u64::from(mined.found_before);
    }
}
