//! `POST /roles/apply`, `POST /roles/test`, `GET /roles/diff?commit=REV`, `GET /roles/status`: parse, call
//! [`crate::apply::Roles`], map the answer. A refused commit is HTTP 422 with
//! `ApiError::diagnostics`, one `file:line:col: message` each.

use std::collections::BTreeMap;

use api::{
    RoleStatus, RolesApplyRequest, RolesApplyResponse, RolesDiff, RolesTestResponse, RunResponse, TargetType,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::json;
use std::time::Duration;
use wire::{Jid, Job, MinionId};

use super::{ApiState, Failure, ask, bad, internal};
use crate::apply::ApplyError;
use crate::hub::Command;
use crate::store::JobRecord;

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

/// `roles apply --test`: a job (recorded like any, `drover jobs show`) in which every minion
/// the commit would change runs `state.apply test=true` on its assignment at that commit.
#[tracing::instrument(skip_all, fields(commit = req.commit.as_deref().unwrap_or("HEAD")))]
pub async fn test(
    State(state): State<ApiState>,
    Json(req): Json<RolesApplyRequest>,
) -> Result<Json<RolesTestResponse>, Failure> {
    let secs = req.wait_secs.unwrap_or(DEFAULT_TEST_SECS);
    if !(secs > 0.0 && secs <= MAX_WAIT_SECS) {
        return Err(bad(format!("wait_secs must be between 0 and {MAX_WAIT_SECS} seconds, got {secs}")));
    }
    let trial = state.roles.trial(req.commit.as_deref().unwrap_or("HEAD")).await?;
    let commit = trial.applied.commit.clone();
    if trial.assignments.is_empty() {
        return Ok(Json(RolesTestResponse {
            commit,
            run: RunResponse::default(),
            unchanged: trial.unchanged,
        }));
    }
    let jid = Jid::generate();
    let timeout = Duration::from_secs_f64(secs);
    let targeted: Vec<MinionId> = trial.assignments.keys().cloned().collect();
    let kwargs: BTreeMap<String, serde_json::Value> = [("test".to_string(), json!(true))].into();
    state
        .store
        .insert_job(JobRecord {
            jid: jid.clone(),
            fun: "state.apply".into(),
            args: Vec::new(),
            kwargs: kwargs.clone(),
            target: targeted.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            tgt_type: TargetType::List,
            minions: targeted,
            created_ms: wire::msg::now_ms(),
        })
        .await
        .map_err(internal)?;
    let job = Job {
        jid,
        fun: "state.apply".into(),
        args: Vec::new(),
        kwargs,
        timeout_ms: Some(timeout.as_millis() as u64),
    };
    let (applied, assignments) = (trial.applied, trial.assignments);
    let run = ask(&state, |reply| Command::Trial { job, applied, assignments, timeout, reply }).await?;
    Ok(Json(RolesTestResponse { commit, run, unchanged: trial.unchanged }))
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
