//! `POST /roles/apply`, `POST /roles/test`, `GET /roles/diff?commit=REV`, `GET /roles/status`: parse, call
//! [`crate::apply::Roles`], map the answer. A refused commit is HTTP 422 with
//! `ApiError::diagnostics`, one `file:line:col: message` each.

use std::time::Duration;

use api::{RoleStatus, RolesApplyRequest, RolesApplyResponse, RolesDiff, RolesTestResponse};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;

use super::{ApiState, Failure, ask, bad, internal};
use crate::apply::ApplyError;
use crate::hub::Command;

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::BadRevision(msg) => bad(msg),
            ApplyError::Refused { error, diagnostics } => {
                Failure { status: StatusCode::UNPROCESSABLE_ENTITY, error, diagnostics }
            }
            ApplyError::Internal(msg) => internal(msg),
        }
    }
}

/// The longest `roles apply` may wait for the minions' reports.
const MAX_WAIT_SECS: f64 = 86_400.0;

#[tracing::instrument(skip_all, fields(commit = req.commit.as_deref().unwrap_or("HEAD")))]
pub async fn apply(
    State(state): State<ApiState>,
    Json(req): Json<RolesApplyRequest>,
) -> Result<Json<RolesApplyResponse>, Failure> {
    let wait = match req.wait_secs {
        None => None,
        Some(secs) if secs > 0.0 && secs <= MAX_WAIT_SECS => Some(Duration::from_secs_f64(secs)),
        Some(secs) => {
            return Err(bad(format!("wait_secs must be between 0 and {MAX_WAIT_SECS} seconds, got {secs}")));
        }
    };
    let (answer, _) = state.roles.apply(req.commit.as_deref().unwrap_or("HEAD")).await?;
    Ok(Json(match wait {
        Some(timeout) => state.roles.wait(answer, timeout).await,
        None => answer,
    }))
}

/// How long `roles apply --test` waits for the dry runs when the request does not say.
const DEFAULT_TEST_SECS: f64 = 60.0;

/// `roles apply --test`: see [`crate::apply::Roles::test`].
#[tracing::instrument(skip_all, fields(commit = req.commit.as_deref().unwrap_or("HEAD")))]
pub async fn test(
    State(state): State<ApiState>,
    Json(req): Json<RolesApplyRequest>,
) -> Result<Json<RolesTestResponse>, Failure> {
    let secs = req.wait_secs.unwrap_or(DEFAULT_TEST_SECS);
    if !(secs > 0.0 && secs <= MAX_WAIT_SECS) {
        return Err(bad(format!("wait_secs must be between 0 and {MAX_WAIT_SECS} seconds, got {secs}")));
    }
    let rev = req.commit.as_deref().unwrap_or("HEAD");
    Ok(Json(state.roles.test(rev, Duration::from_secs_f64(secs), &state.store).await?))
}

#[derive(serde::Deserialize)]
pub struct DiffQuery {
    commit: Option<String>,
}

pub async fn diff(
    State(state): State<ApiState>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<RolesDiff>, Failure> {
    Ok(Json(state.roles.diff(q.commit.as_deref().unwrap_or("HEAD")).await?))
}

pub async fn status(State(state): State<ApiState>) -> Result<Json<Vec<RoleStatus>>, Failure> {
    ask(&state, |reply| Command::RolesStatus { reply }).await.map(Json)
}
