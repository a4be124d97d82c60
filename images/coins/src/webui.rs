//! `coins webui`: the page (`GET /`, plain HTML and JavaScript that asks `/json` every
//! second and draws the last two minutes), `GET /json` (the counts and rates of
//! [`store::Stats`], plus this webui's own version and the time) and `GET /health`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::config::WebuiConfig;
use crate::http;
use crate::redis::Redis;
use crate::store::{self, Stats};

/// The page: no build step, no outside resource.
pub const PAGE: &str = include_str!("webui.html");

/// What `/json` answers.
#[derive(Debug, Serialize)]
pub struct Answer {
    #[serde(flatten)]
    pub stats: Stats,
    /// This webui's version.
    pub webui_version: String,
    /// When, in ms since the epoch.
    pub now: u64,
}

struct Shared {
    redis: Mutex<Redis>,
    version: String,
}

/// The routes, reading the redis of `config`; `version` is the build's
/// ([`crate::VERSION`]) but for tests.
pub fn router(config: &WebuiConfig, version: &str) -> Router {
    let shared =
        Arc::new(Shared { redis: Mutex::new(Redis::new(config.redis.clone())), version: version.into() });
    Router::new()
        .route("/", get(|| async { ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)) }))
        .route("/json", get(json))
        .route("/health", get(http::health))
        .with_state(shared)
}

async fn json(State(shared): State<Arc<Shared>>) -> Response {
    let now = crate::now_ms();
    let read = store::stats(&mut *shared.redis.lock().await, now).await;
    match read {
        Ok(stats) => Json(Answer { stats, webui_version: shared.version.clone(), now }).into_response(),
        Err(e) => {
            let body =
                serde_json::json!({"error": e.to_string(), "webui_version": shared.version, "now": now});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
