//! The fleet's routes. Operations (`up`, `scale`, `upgrade`, `undo`, `down`, `chaos`) answer
//! with newline-delimited JSON `api::fleet::FleetLine`s: events as they happen, then the
//! outcome or the error. The operation runs in a task of its own, so it finishes (and is
//! recorded) even when the client goes away. `GET /fleet/ps`, `GET /fleet/nodes` and
//! `GET /fleet/rollouts` are plain JSON.

use std::future::Future;
use std::time::Duration;

use api::fleet::{
    ChaosRequest, DownRequest, FleetFailure, FleetLine, FleetOutcome, NodesReport, RolloutSummary,
    ScaleRequest, SlotStatus, UpRequest, UpgradeRequest,
};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleet::controller::PolicyOverride;
use fleet::{EngineError, FleetError, Progress};
use futures_util::StreamExt;
use render::fleet::{BatchSize, Order};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{ApiState, Failure, bad, internal};
use crate::apply::ApplyError;
use crate::fleet::{FleetController, FleetServiceError};

/// How long `up` and `scale` wait for slots unless told.
const DEFAULT_WAIT: Duration = Duration::from_secs(180);

impl From<FleetServiceError> for Failure {
    fn from(e: FleetServiceError) -> Self {
        match e {
            FleetServiceError::Engine(e) => Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            FleetServiceError::Store(e) => internal(e),
        }
    }
}

fn error_line(e: FleetError) -> FleetFailure {
    let refused = match &e {
        FleetError::Refused(_) | FleetError::Busy(_) => true,
        FleetError::Engine(e) => matches!(e, EngineError::Unreachable { .. }),
        FleetError::Host(_) => false,
    };
    FleetFailure { error: e.to_string(), refused }
}

fn wait(secs: Option<f64>) -> Result<Duration, Failure> {
    match secs {
        None => Ok(DEFAULT_WAIT),
        Some(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(bad(format!("timeout must be between 0 and 86400 seconds, got {s}"))),
    }
}

/// Runs `op` in a task of its own and streams its events, then its outcome.
fn stream<F, Fut>(controller: FleetController, op: F) -> Response
where
    F: FnOnce(FleetController, Progress) -> Fut + Send + 'static,
    Fut: Future<Output = Result<FleetOutcome, FleetError>> + Send + 'static,
{
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let outcome = op(controller, Progress::new(events_tx)).await;
        let _ = done_tx.send(outcome);
    });
    let events = UnboundedReceiverStream::new(events_rx).map(FleetLine::Event);
    let done = futures_util::stream::once(async move {
        match done_rx.await {
            Ok(Ok(outcome)) => FleetLine::Done(outcome),
            Ok(Err(e)) => FleetLine::Error(error_line(e)),
            Err(_) => FleetLine::Error(FleetFailure {
                error: "the operation stopped with the master".into(),
                refused: false,
            }),
        }
    });
    let lines = events.chain(done).map(|line| {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes)
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
}

#[tracing::instrument(skip_all, fields(commit = req.commit.as_deref().unwrap_or("HEAD")))]
pub async fn up(State(state): State<ApiState>, Json(req): Json<UpRequest>) -> Result<Response, Failure> {
    let timeout = wait(req.timeout_secs)?;
    let controller = state.fleet.controller().await?.clone();
    // roles and states first: the fleet's containers converge to this commit
    let (_, applied) = state.roles.apply(req.commit.as_deref().unwrap_or("HEAD")).await?;
    let Some(file) = applied.repo.fleet.clone() else {
        return Err(bad(format!(
            "commit {} has no fleet.yaml: write one beside roles/ (see docs/fleet.md)",
            api::short(&applied.commit)
        )));
    };
    let commit = applied.commit.clone();
    Ok(stream(controller, move |c, progress| async move {
        c.up(file, commit, timeout, &progress).await.map(|o| o.to_api())
    }))
}

pub async fn scale(
    State(state): State<ApiState>,
    Json(req): Json<ScaleRequest>,
) -> Result<Response, Failure> {
    let timeout = wait(req.timeout_secs)?;
    let controller = state.fleet.controller().await?.clone();
    Ok(stream(controller, move |c, progress| async move {
        c.scale(&req.role, req.replicas, timeout, &progress).await.map(|o| o.to_api())
    }))
}

/// The request's `--batch` and `--order`, over each role's update policy.
fn policy_override(req: &UpgradeRequest) -> Result<PolicyOverride, Failure> {
    let bad_batch = |b: &str| bad(format!("bad --batch {b:?}: expected N or N% (1 to 100%)"));
    let batch = match req.batch.as_deref() {
        None => None,
        Some(b) => Some(match b.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => BatchSize::Percent(p),
                _ => return Err(bad_batch(b)),
            },
            None => match b.parse::<u32>() {
                Ok(n) if n >= 1 => BatchSize::Count(n),
                _ => return Err(bad_batch(b)),
            },
        }),
    };
    let order = match req.order.as_deref() {
        None => None,
        Some("stop-first") => Some(Order::StopFirst),
        Some("start-first") => Some(Order::StartFirst),
        Some(o) => return Err(bad(format!("bad --order {o:?}: expected stop-first or start-first"))),
    };
    Ok(PolicyOverride { batch, order })
}

pub async fn upgrade(
    State(state): State<ApiState>,
    Json(req): Json<UpgradeRequest>,
) -> Result<Response, Failure> {
    let over = policy_override(&req)?;
    let controller = state.fleet.controller().await?.clone();
    Ok(stream(controller, move |c, progress| async move {
        c.upgrade(&req.roles, &req.to, over, &progress).await.map(|o| o.to_api())
    }))
}

pub async fn undo(State(state): State<ApiState>) -> Result<Response, Failure> {
    let controller = state.fleet.controller().await?.clone();
    Ok(stream(controller, |c, progress| async move { c.undo(&progress).await.map(|o| o.to_api()) }))
}

pub async fn down(State(state): State<ApiState>, Json(req): Json<DownRequest>) -> Result<Response, Failure> {
    let controller = state.fleet.controller().await?.clone();
    Ok(stream(controller, move |c, progress| async move {
        c.down(req.volumes, &progress).await.map(|o| o.to_api())
    }))
}

pub async fn chaos(
    State(state): State<ApiState>,
    Json(req): Json<ChaosRequest>,
) -> Result<Response, Failure> {
    let ok = |s: f64| s > 0.0 && s <= 86_400.0;
    if !ok(req.every_secs) || !ok(req.for_secs) {
        return Err(bad("--every and --for must be between 0 and 86400 seconds"));
    }
    let controller = state.fleet.controller().await?.clone();
    Ok(stream(controller, move |c, progress| async move {
        let killed = c
            .chaos(
                req.role.as_deref(),
                Duration::from_secs_f64(req.every_secs),
                Duration::from_secs_f64(req.for_secs),
                &progress,
            )
            .await?;
        Ok(FleetOutcome { killed, ..FleetOutcome::default() })
    }))
}

pub async fn ps(State(state): State<ApiState>) -> Result<Json<Vec<SlotStatus>>, Failure> {
    let controller = state.fleet.controller().await?;
    // drift is shown against fleet.yaml at HEAD, when it reads
    let head = match state.roles.prepare_fleet("HEAD").await {
        Ok(file) => file,
        Err(ApplyError::Internal(e)) => return Err(internal(e)),
        Err(_) => None,
    };
    controller.ps(head.as_ref()).await.map(Json).map_err(|e| internal(e.to_string()))
}

/// The nodes, the fleet's reservations on each, its headroom. An engine that cannot be
/// reached (or a swarm that lists no nodes: this engine is no manager) is a 503.
pub async fn nodes(State(state): State<ApiState>) -> Result<Json<NodesReport>, Failure> {
    let controller = state.fleet.controller().await?;
    match controller.nodes().await {
        Ok(report) => Ok(Json(report)),
        Err(FleetError::Engine(e)) => Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e) => Err(internal(e.to_string())),
    }
}

pub async fn rollouts(State(state): State<ApiState>) -> Result<Json<Vec<RolloutSummary>>, Failure> {
    let controller = state.fleet.controller().await?;
    Ok(Json(controller.record().rollouts.iter().rev().map(|r| r.summary()).collect()))
}
