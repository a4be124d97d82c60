//! The local HTTP API (axum), the only way in for the `drover` CLI and the web dashboard.
//! Every `/api/v1` route needs `Authorization: Bearer <token>` from `DIR/api.json`; only the
//! dashboard's page (`/`, `/dashboard`: static, no data) is public, and it reads the token
//! from its URL fragment (`drover dashboard` prints that link).
//! Handlers validate, then ask the hub (state) or the store (history); they hold nothing.
//!
//! - jobs (`GET /jobs` with filters, `GET /jobs/running`, `POST /jobs/{jid}/kill`), keys,
//!   minions: here;
//! - `dashboard`: the page;
//! - `roles`: `POST /roles/apply`, `POST /roles/test`, `GET /roles/diff`, `GET /roles/status`;
//! - `events`: `GET /events` (newline-delimited JSON, optionally followed live);
//! - `fleet`: `POST /fleet/{up,scale,upgrade,undo,down,chaos}` (streamed progress),
//!   `GET /fleet/ps`, `GET /fleet/nodes`, `GET /fleet/rollouts`;
//! - `images`: `POST /images/build` (a build context in, progress lines out), `GET /images`;
//! - `GET /metrics` (outside `/api/v1`, where Prometheus looks): `crate::metrics`, as text.

mod dashboard;
mod events;
mod fleet;
pub mod images;
mod roles;

use std::sync::Arc;
use std::time::Duration;

use api::{ApiError, JobsQuery, KeyActionRequest, RunRequest, RunResponse};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::Jid;

use crate::hub::Command;
use crate::jobs::{self, KillError};
use crate::store::Store;

#[derive(Clone)]
pub struct ApiState {
    pub hub: mpsc::Sender<Command>,
    pub store: Store,
    pub token: String,
    /// Applying commits of the config repo.
    pub roles: crate::apply::Roles,
    /// The container fleet (Docker reached on first use).
    pub fleet: Arc<crate::fleet::FleetService>,
    /// Fires when the master stops: followed event streams end.
    pub shutdown: CancellationToken,
    /// Image builds: the engine (reached on first use) and where builds work.
    pub images: Arc<images::Images>,
    /// What the master counts, for `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// An error answer: status + `{"error": ..., "diagnostics": [...]}`.
pub struct Failure {
    status: StatusCode,
    error: String,
    diagnostics: Vec<String>,
}

impl Failure {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Failure { status, error: error.into(), diagnostics: Vec::new() }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(ApiError { error: self.error, diagnostics: self.diagnostics })).into_response()
    }
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, msg)
}

fn internal(msg: impl ToString) -> Failure {
    Failure::new(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/jobs", get(list_jobs).post(run))
        .route("/api/v1/jobs/running", get(running_jobs))
        .route("/api/v1/jobs/{jid}", get(show_job))
        .route("/api/v1/jobs/{jid}/kill", post(kill_job))
        .route("/api/v1/keys", get(keys).post(key_action))
        .route("/api/v1/minions", get(minions))
        .route("/api/v1/roles/apply", post(roles::apply))
        .route("/api/v1/roles/test", post(roles::test))
        .route("/api/v1/roles/diff", get(roles::diff))
        .route("/api/v1/roles/status", get(roles::status))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/fleet/up", post(fleet::up))
        .route("/api/v1/fleet/scale", post(fleet::scale))
        .route("/api/v1/fleet/upgrade", post(fleet::upgrade))
        .route("/api/v1/fleet/undo", post(fleet::undo))
        .route("/api/v1/fleet/down", post(fleet::down))
        .route("/api/v1/fleet/chaos", post(fleet::chaos))
        .route("/api/v1/fleet/ps", get(fleet::ps))
        .route("/api/v1/fleet/nodes", get(fleet::nodes))
        .route("/api/v1/fleet/rollouts", get(fleet::rollouts))
        .route("/api/v1/images", get(images::list))
        .route("/api/v1/images/build", images::build_route())
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .merge(dashboard::router()) // after the auth layer: the page holds no data
        .with_state(state)
}

async fn auth(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        Failure::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (see api.json)").into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ask<T>(state: &ApiState, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Failure> {
    let (tx, rx) = oneshot::channel();
    state.hub.send(cmd(tx)).await.map_err(|_| internal("the master is shutting down"))?;
    rx.await.map_err(|_| internal("the master is shutting down"))
}

/// The longest a job may wait for its returns.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

#[tracing::instrument(skip_all, fields(target = %req.target, fun = %req.fun))]
async fn run(
    State(state): State<ApiState>,
    Json(mut req): Json<RunRequest>,
) -> Result<Json<RunResponse>, Failure> {
    if !req.words.is_empty() {
        if !req.args.is_empty() || !req.kwargs.is_empty() {
            return Err(bad("give the function's words, or its args and kwargs, not both"));
        }
        (req.args, req.kwargs) = api::words::split(&std::mem::take(&mut req.words));
    }
    if !(req.timeout_secs > 0.0 && req.timeout_secs <= MAX_TIMEOUT_SECS) {
        return Err(bad(format!(
            "timeout must be between 0 and {MAX_TIMEOUT_SECS} seconds, got {}",
            req.timeout_secs
        )));
    }
    if !valid_function_name(&req.fun) {
        return Err(bad(format!(
            "bad function name {:?}: expected module.function, like test.ping",
            req.fun
        )));
    }
    let (target, tgt_type) = (req.target.clone(), req.tgt_type);
    let targeted = ask(&state, |reply| Command::Resolve { target, tgt_type, reply }).await?.map_err(bad)?;
    if targeted.is_empty() {
        return Ok(Json(RunResponse::default()));
    }
    let timeout = Duration::from_secs_f64(req.timeout_secs);
    let names = targeted.iter().map(ToString::to_string).collect();
    let job = jobs::NewJob {
        fun: req.fun,
        args: req.args,
        kwargs: req.kwargs,
        target: req.target,
        tgt_type: req.tgt_type,
        targeted,
        timeout,
        batch: req.batch,
    };
    let (jid, rx) = jobs::start(&state.store, &state.hub, job).await.map_err(internal)?;
    if !req.wait {
        return Ok(Json(RunResponse { jid: jid.to_string(), targeted: names, ..Default::default() }));
    }
    rx.await.map(Json).map_err(|_| internal("the master is shutting down"))
}

fn valid_function_name(f: &str) -> bool {
    let mut parts = f.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// `GET /jobs?limit=N&function=GLOB&target=GLOB&since_ms=MS&failed=true`.
async fn list_jobs(
    State(state): State<ApiState>,
    Query(mut q): Query<JobsQuery>,
) -> Result<Json<Vec<api::JobSummary>>, Failure> {
    q.limit = Some(q.limit.unwrap_or(100).min(10_000));
    for (name, glob) in [("function", &q.function), ("target", &q.target)] {
        if glob.as_ref().is_some_and(|g| g.is_empty()) {
            return Err(bad(format!("{name} is an empty glob: give a pattern like 'cmd.*' or leave it out")));
        }
    }
    state.store.list_jobs(q).await.map(Json).map_err(internal)
}

/// `GET /jobs/running`: every job some minion it was sent to has not returned, with those
/// minions. This is the master's view, from the store (sent, not returned); it does not
/// ask the minions, as Salt's `jobs.active` does with `saltutil.running`: an answer must
/// not wait on minions that are gone, and the store already knows which minion did not
/// return whatever the minion can still say. When the two may differ (a minion restarted
/// while it ran a job), `drover <target> saltutil.running` asks the minions, and
/// `drover jobs kill` settles it: a minion that does not run the job says so in a return.
async fn running_jobs(State(state): State<ApiState>) -> Result<Json<Vec<api::RunningJob>>, Failure> {
    state.store.running_jobs().await.map(Json).map_err(internal)
}

/// `POST /jobs/{jid}/kill`: [`jobs::kill`].
async fn kill_job(
    State(state): State<ApiState>,
    Path(jid): Path<String>,
) -> Result<Json<api::KillResponse>, Failure> {
    if !Jid::is_valid(&jid) {
        return Err(bad(format!("bad jid {jid:?}: expected 20 digits, as 'drover jobs running' shows")));
    }
    jobs::kill(&state.store, &state.hub, Jid(jid)).await.map(Json).map_err(|e| {
        let status = match e {
            KillError::NotFound(_) => StatusCode::NOT_FOUND,
            KillError::NotRunning(_) => StatusCode::CONFLICT,
            KillError::Store(_) | KillError::Stopped => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, e.to_string())
    })
}

async fn show_job(
    State(state): State<ApiState>,
    Path(jid): Path<String>,
) -> Result<Json<api::JobDetail>, Failure> {
    if !Jid::is_valid(&jid) {
        return Err(bad(format!("bad jid {jid:?}: expected 20 digits, as 'drover jobs list' shows")));
    }
    match state.store.show_job(Jid(jid.clone())).await.map_err(internal)? {
        Some(d) => Ok(Json(d)),
        None => Err(Failure::new(StatusCode::NOT_FOUND, format!("no job {jid} (see 'drover jobs list')"))),
    }
}

async fn keys(State(state): State<ApiState>) -> Result<Json<api::KeyList>, Failure> {
    ask(&state, |reply| Command::Keys { reply }).await.map(Json)
}

async fn key_action(
    State(state): State<ApiState>,
    Json(req): Json<KeyActionRequest>,
) -> Result<Json<api::KeyActionResponse>, Failure> {
    ask(&state, |reply| Command::KeyAction { req, reply }).await?.map(Json).map_err(bad)
}

/// `GET /metrics`: the master's metrics in the Prometheus text format (behind the token,
/// like every route with data: a scrape config gives it as `authorization: credentials`).
async fn metrics(State(state): State<ApiState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], state.metrics.encode())
        .into_response()
}

async fn minions(State(state): State<ApiState>) -> Result<Json<Vec<api::MinionStatus>>, Failure> {
    ask(&state, |reply| Command::Minions { reply }).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for good in ["test.ping", "cmd.run", "grains.get", "sys.list_functions"] {
            assert!(valid_function_name(good), "{good}");
        }
        for bad in ["", "test", "test.", ".ping", "a.b.c", "te st.ping", "x.y;z"] {
            assert!(!valid_function_name(bad), "{bad}");
        }
    }
}
