//! `POST /roles/apply`, `GET /roles/diff?commit=REV`, `GET /roles/status`: parse, call
//! [`crate::apply::Roles`], map the answer. A refused commit is HTTP 422 with
//! `ApiError::diagnostics`, one `file:line:col: message` each.

use api::{RoleStatus, RolesApplyRequest, RolesApplyResponse, RolesDiff};
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

#[tracing::instrument(skip_all, fields(commit = req.commit.as_deref().unwrap_or("HEAD")))]
pub async fn apply(
    State(state): State<ApiState>,
    Json(req): Json<RolesApplyRequest>,
) -> Result<Json<RolesApplyResponse>, Failure> {
    let (answer, _) = state.roles.apply(req.commit.as_deref().unwrap_or("HEAD")).await?;
    Ok(Json(answer))
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
