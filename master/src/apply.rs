//! Applying a commit of the config repo: read it (git, on a blocking thread), ask the hub for
//! every accepted minion and the current assignments, validate every role, state and
//! fleet.yaml and plan every minion (blocking thread) before anything changes; then store
//! the files by sha256 and have the hub record and push the assignments. Any problem
//! refuses the commit whole, with every problem as `file:line:col: message`.
//!
//! The API's `roles apply` (and its `--test`) and `roles diff` and the fleet's `up` call
//! these; none of it knows HTTP.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{ApplyOutcome, RolesApplyResponse, RolesDiff, RolesTestResponse, RunResponse, TargetType};
use render::Diagnostic;
use tokio::sync::{mpsc, oneshot};
use wire::{Assignment, Jid, Job, MinionId};

use crate::assign::{self, Applied, Planned};
use crate::content::ContentStore;
use crate::hub::Command;
use crate::repo::{self, RepoError};
use crate::roles::{RoleState, RolesInput};
use crate::store::{JobRecord, Store};

/// How often [`Roles::wait`] asks the hub for reports: a few lookups per minion, cheap.
const WAIT_POLL: Duration = Duration::from_millis(50);

fn outcome(r: wire::Converged) -> ApplyOutcome {
    ApplyOutcome {
        result: r.result,
        failing: r.failed,
        changed: r.changed,
        waiting: r.waiting,
        comment: r.comment,
    }
}

/// Why a commit was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The revision does not name a commit.
    #[error("{0}")]
    BadRevision(String),
    /// The commit has problems: nothing changed.
    #[error("{error}")]
    Refused { error: String, diagnostics: Vec<String> },
    #[error("{0}")]
    Internal(String),
}

/// What applying needs of the master.
#[derive(Clone)]
pub struct Roles {
    pub hub: mpsc::Sender<Command>,
    /// The config repository (`--repo`).
    pub repo: PathBuf,
    /// Where applied files are kept (`DIR/files`).
    pub content: Arc<ContentStore>,
    /// Held through an apply, so that two applies do not interleave.
    pub applying: Arc<tokio::sync::Mutex<()>>,
}

/// What `roles apply --test` sends: see [`Roles::trial`].
pub struct Trial {
    pub applied: Arc<Applied>,
    pub assignments: BTreeMap<MinionId, Assignment>,
    /// The minions the commit would not change, sorted.
    pub unchanged: Vec<String>,
}

/// A commit validated and planned for every accepted minion.
pub struct Prepared {
    pub applied: Arc<Applied>,
    pub planned: BTreeMap<MinionId, Planned>,
    pub input: RolesInput,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApplyError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApplyError::Internal(format!("internal error: {e}")))
}

fn problems(n: usize) -> String {
    if n == 1 { "1 problem".into() } else { format!("{n} problems") }
}

fn refused(what: &str, found: Vec<(Diagnostic, Option<MinionId>)>) -> ApplyError {
    let (count, diagnostics) = assign::refusal_lines(found);
    ApplyError::Refused { error: format!("{what} is refused: {}", problems(count)), diagnostics }
}

fn repo_failure(rev: &str, e: RepoError) -> ApplyError {
    match e {
        RepoError::NotACommit { .. } => ApplyError::BadRevision(e.to_string()),
        RepoError::BadFile { path, reason } => ApplyError::Refused {
            error: format!("commit '{rev}' is refused: 1 problem"),
            diagnostics: vec![format!("{path}: {reason}")],
        },
        RepoError::NoGit(_) | RepoError::Git { .. } => ApplyError::Internal(e.to_string()),
    }
}

impl Roles {
    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApplyError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ApplyError::Internal("the master is shutting down".into());
        self.hub.send(cmd(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Reads, validates and plans `rev` for every accepted minion; changes nothing.
    pub async fn prepare(&self, rev: &str) -> Result<Prepared, ApplyError> {
        let repo = self.repo.clone();
        let asked = rev.to_string();
        let commit =
            blocking(move || repo::read_commit(&repo, &asked)).await?.map_err(|e| repo_failure(rev, e))?;
        let input = self.ask(|reply| Command::RolesInput { reply }).await?;
        blocking(move || {
            let what = format!("commit {}", api::short(&commit.id));
            let applied = Applied::load(commit)
                .map_err(|d| refused(&what, d.into_iter().map(|d| (d, None)).collect()))?;
            let planned = assign::plan_all(&applied, &input.minions)
                .map_err(|found| refused(&what, found.into_iter().map(|(d, m)| (d, Some(m))).collect()))?;
            Ok(Prepared { applied: Arc::new(applied), planned, input })
        })
        .await?
    }

    /// Applies `rev`: every minion gets its assignment; returns the applied commit too.
    pub async fn apply(&self, rev: &str) -> Result<(RolesApplyResponse, Arc<Applied>), ApplyError> {
        let _one_at_a_time = self.applying.lock().await;
        let p = self.prepare(rev).await?;
        // The files go to disk before the hub records the commit, so a restart can serve it;
        // the previous commit's stay until the next apply.
        let (content, applied, previous) =
            (self.content.clone(), p.applied.clone(), p.input.current_tree.clone());
        blocking(move || {
            let mut keep: HashSet<&str> = applied.tree.values().map(String::as_str).collect();
            keep.extend(previous.iter().flat_map(|t| t.values().map(String::as_str)));
            if let Err(e) = content.keep_only(&keep) {
                tracing::warn!(error = %e, "cannot prune stored files");
            }
            content.put_files(&applied.files)
        })
        .await?
        .map_err(|e| ApplyError::Internal(format!("cannot store the commit's files: {e}")))?;
        let applied = p.applied.clone();
        let (for_hub, planned) = (p.applied, p.planned);
        let answer = self.ask(|reply| Command::RolesApply { applied: for_hub, planned, reply }).await?;
        Ok((answer, applied))
    }

    /// `rev` planned for every accepted minion, and the assignment each minion it would
    /// change would get, to dry-run (`roles apply --test`); the others' ids. Changes nothing.
    pub async fn trial(&self, rev: &str) -> Result<Trial, ApplyError> {
        let p = self.prepare(rev).await?;
        let (mut assignments, mut unchanged) = (BTreeMap::new(), Vec::new());
        for (id, planned) in &p.planned {
            let old = p.input.current.get(id).map(|(roles, files)| (roles.as_slice(), files));
            if assign::diff(id.as_str(), old, (&planned.roles, &planned.files)).is_some() {
                assignments.insert(id.clone(), RoleState::trial_assignment(&p.applied, planned));
            } else {
                unchanged.push(id.to_string());
            }
        }
        Ok(Trial { applied: p.applied, assignments, unchanged })
    }

    /// `roles apply --test`: a job (recorded like any: `drover jobs show`) in which every
    /// minion `rev` would change runs `state.apply test=true` on its assignment at `rev`,
    /// waiting up to `timeout` for them. No assignment changes.
    pub async fn test(
        &self,
        rev: &str,
        timeout: Duration,
        store: &Store,
    ) -> Result<RolesTestResponse, ApplyError> {
        let trial = self.trial(rev).await?;
        let commit = trial.applied.commit.clone();
        if trial.assignments.is_empty() {
            return Ok(RolesTestResponse { commit, run: RunResponse::default(), unchanged: trial.unchanged });
        }
        let jid = Jid::generate();
        let targeted: Vec<MinionId> = trial.assignments.keys().cloned().collect();
        let kwargs: BTreeMap<String, serde_json::Value> =
            [("test".to_string(), serde_json::json!(true))].into();
        store
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
            .map_err(|e| ApplyError::Internal(format!("cannot record the test job: {e}")))?;
        let job = Job {
            jid,
            fun: "state.apply".into(),
            args: Vec::new(),
            kwargs,
            timeout_ms: Some(timeout.as_millis() as u64),
        };
        let (applied, assignments) = (trial.applied, trial.assignments);
        let run = self.ask(|reply| Command::Trial { job, applied, assignments, timeout, reply }).await?;
        Ok(RolesTestResponse { commit, run, unchanged: trial.unchanged })
    }

    /// Waits until every connected minion of `resp` reported on the assignment it was sent,
    /// or `timeout` passed, and fills in their outcomes. Minions not connected are not
    /// waited for: theirs is sent when they connect.
    pub async fn wait(&self, mut resp: RolesApplyResponse, timeout: Duration) -> RolesApplyResponse {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<usize> =
            (0..resp.minions.len()).filter(|&i| resp.minions[i].connected).collect();
        while !pending.is_empty() {
            let serials = pending
                .iter()
                .filter_map(|&i| {
                    let m = &resp.minions[i];
                    MinionId::new(m.id.as_str()).ok().map(|id| (id, m.serial))
                })
                .collect();
            let Ok(reports) = self.ask(|reply| Command::Reports { serials, reply }).await else { break };
            let mut still = Vec::new();
            for (i, report) in pending.into_iter().zip(reports) {
                match report {
                    Some(r) => resp.minions[i].outcome = Some(outcome(r)),
                    None => still.push(i),
                }
            }
            pending = still;
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(WAIT_POLL.min(deadline - Instant::now())).await;
        }
        resp.waited = true;
        resp
    }

    /// fleet.yaml at `rev`, checked with the commit's roles (none if the commit has none).
    pub async fn prepare_fleet(&self, rev: &str) -> Result<Option<render::FleetFile>, ApplyError> {
        let repo = self.repo.clone();
        let asked = rev.to_string();
        let commit =
            blocking(move || repo::read_commit(&repo, &asked)).await?.map_err(|e| repo_failure(rev, e))?;
        blocking(move || {
            let what = format!("commit {}", api::short(&commit.id));
            let applied = Applied::load(commit)
                .map_err(|d| refused(&what, d.into_iter().map(|d| (d, None)).collect()))?;
            Ok(applied.repo.fleet.clone())
        })
        .await?
    }

    /// Which minions `rev` would change, and how.
    pub async fn diff(&self, rev: &str) -> Result<RolesDiff, ApplyError> {
        let p = self.prepare(rev).await?;
        let minions = p
            .planned
            .iter()
            .filter_map(|(id, planned)| {
                let old = p.input.current.get(id).map(|(roles, files)| (roles.as_slice(), files));
                assign::diff(id.as_str(), old, (&planned.roles, &planned.files))
            })
            .collect();
        Ok(RolesDiff { commit: p.applied.commit.clone(), current_commit: p.input.current_commit, minions })
    }
}
