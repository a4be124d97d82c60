//! `POST /roles/apply`, `GET /roles/diff?commit=REV`, `GET /roles/status`.
//!
//! Apply and diff read the commit (git, on a blocking thread), ask the hub for every
//! accepted minion and the current assignments, then validate every role and plan every
//! minion (blocking thread) before anything changes. Any problem refuses the commit whole:
//! HTTP 422 with `ApiError::diagnostics`, one `file:line:col: message` each.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use api::{RoleStatus, RolesApplyRequest, RolesApplyResponse, RolesDiff};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use render::Diagnostic;
use wire::MinionId;

use super::{ApiState, Failure, ask, bad, internal};
use crate::assign::{self, Applied, Planned};
use crate::hub::Command;
use crate::repo::{self, RepoError};
use crate::roles::RolesInput;

/// A commit validated and planned for every accepted minion.
struct Prepared {
    applied: Arc<Applied>,
    planned: BTreeMap<MinionId, Planned>,
    input: RolesInput,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| internal(format!("internal error: {e}")))
}

fn problems(n: usize) -> String {
    if n == 1 { "1 problem".into() } else { format!("{n} problems") }
}

/// 422: the commit is refused, with every problem.
fn refused(what: &str, found: Vec<(Diagnostic, Option<MinionId>)>) -> Failure {
    let (count, diagnostics) = assign::refusal_lines(found);
    Failure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: format!("{what} is refused: {}", problems(count)),
        diagnostics,
    }
}

fn repo_failure(rev: &str, e: RepoError) -> Failure {
    match e {
        RepoError::NotACommit { .. } => bad(e.to_string()),
        RepoError::BadFile { path, reason } => Failure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: format!("commit '{rev}' is refused: 1 problem"),
            diagnostics: vec![format!("{path}: {reason}")],
        },
        RepoError::NoGit(_) | RepoError::Git { .. } => internal(e),
    }
}

async fn prepare(state: &ApiState, rev: String) -> Result<Prepared, Failure> {
    let repo = state.repo.clone();
    let asked = rev.clone();
    let commit =
        blocking(move || repo::read_commit(&repo, &asked)).await?.map_err(|e| repo_failure(&rev, e))?;
    let input = ask(state, |reply| Command::RolesInput { reply }).await?;
    blocking(move || {
        let what = format!("commit {}", assign::short(&commit.id));
        let applied =
            Applied::load(commit).map_err(|d| refused(&what, d.into_iter().map(|d| (d, None)).collect()))?;
        let planned = assign::plan_all(&applied, &input.minions)
            .map_err(|found| refused(&what, found.into_iter().map(|(d, m)| (d, Some(m))).collect()))?;
        Ok(Prepared { applied: Arc::new(applied), planned, input })
    })
    .await?
}

#[tracing::instrument(skip_all, fields(commit = req.commit.as_deref().unwrap_or("HEAD")))]
pub async fn apply(
    State(state): State<ApiState>,
    Json(req): Json<RolesApplyRequest>,
) -> Result<Json<RolesApplyResponse>, Failure> {
    let _one_at_a_time = state.applying.lock().await;
    let p = prepare(&state, req.commit.unwrap_or_else(|| "HEAD".into())).await?;
    // The files go to disk before the hub records the commit, so a restart can serve it;
    // the previous commit's stay until the next apply.
    let (content, applied, previous) =
        (state.content.clone(), p.applied.clone(), p.input.current_tree.clone());
    blocking(move || {
        let mut keep: HashSet<&str> = applied.tree.values().map(String::as_str).collect();
        keep.extend(previous.iter().flat_map(|t| t.values().map(String::as_str)));
        if let Err(e) = content.keep_only(&keep) {
            tracing::warn!(error = %e, "cannot prune stored files");
        }
        content.put_files(&applied.files)
    })
    .await?
    .map_err(|e| internal(format!("cannot store the commit's files: {e}")))?;
    let (applied, planned) = (p.applied, p.planned);
    ask(&state, |reply| Command::RolesApply { applied, planned, reply }).await.map(Json)
}

#[derive(serde::Deserialize)]
pub struct DiffQuery {
    commit: Option<String>,
}

pub async fn diff(
    State(state): State<ApiState>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<RolesDiff>, Failure> {
    let p = prepare(&state, q.commit.unwrap_or_else(|| "HEAD".into())).await?;
    let minions = p
        .planned
        .iter()
        .filter_map(|(id, planned)| {
            let old = p.input.current.get(id).map(|(roles, files)| (roles.as_slice(), files));
            assign::diff(id.as_str(), old, (&planned.roles, &planned.files))
        })
        .collect();
    Ok(Json(RolesDiff { commit: p.applied.commit.clone(), current_commit: p.input.current_commit, minions }))
}

pub async fn status(State(state): State<ApiState>) -> Result<Json<Vec<RoleStatus>>, Failure> {
    ask(&state, |reply| Command::RolesStatus { reply }).await.map(Json)
}
