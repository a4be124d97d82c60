//! The converger: the one owner of this minion's role assignment. It fetches the files an
//! assignment names (by sha256, cached under `DIR/cache/`), renders them with the pure
//! `render` crate, applies the plan with the state engine against the supervisor, and
//! reports the outcome to the master.
//!
//! It is fed by messages and handles them one at a time, so applies never overlap: an
//! assignment pushed while one is applied waits for it, and `state.apply` from a job
//! queues behind both. Messages for the master go out through the session's channel.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use api::short;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use wire::msg::{Grains, sha256_hex};
use wire::{Assignment, Blob, Converged, ToMaster};

use crate::daemons::Daemons;
use crate::health::Convergence;
use crate::outcome::Outcome;
use crate::state::{self, ApplyOptions};

/// What a job asks of the converger.
#[derive(Clone, Debug, Default)]
pub struct ApplyRequest {
    /// State files (`a.b`) or state ids to apply; empty: everything the roles ask for.
    pub only: Vec<String>,
    pub test: bool,
    /// Dry-run this assignment instead of the current one (`drover roles apply --test`: a
    /// commit not applied yet). Its files are fetched like an assignment's; the current
    /// assignment, the cache's pruning and the report to the master are left alone.
    pub trial: Option<Box<Assignment>>,
}

/// A trial waiting for files from the master.
struct PendingTrial {
    req: ApplyRequest,
    reply: oneshot::Sender<Outcome>,
}

enum Msg {
    Assign(Assignment),
    Files { blobs: Vec<Blob>, missing: Vec<String> },
    Apply(ApplyRequest, oneshot::Sender<Outcome>),
    Roles(oneshot::Sender<Value>),
    Cached(String, oneshot::Sender<Result<PathBuf, String>>),
}

/// A handle on the converger task. Cheap to clone.
#[derive(Clone)]
pub struct Converger {
    tx: mpsc::UnboundedSender<Msg>,
    convergence: watch::Receiver<Convergence>,
}

impl Converger {
    /// Starts the converger. `to_master` carries `Fetch` and `Converged` messages.
    pub fn start<D: Daemons + Send + Sync + 'static>(
        id: String,
        grains: Arc<Grains>,
        cache_dir: PathBuf,
        daemons: D,
        to_master: mpsc::UnboundedSender<ToMaster>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (status, convergence) = watch::channel(Convergence::default());
        let owner = Owner {
            id,
            grains,
            cache_dir,
            daemons,
            to_master,
            status,
            current: None,
            fetching: None,
            trial: None,
        };
        tokio::spawn(owner.run(rx));
        Self { tx, convergence }
    }

    /// Where convergence stands, for the minion's health (see `crate::health`).
    pub fn convergence(&self) -> watch::Receiver<Convergence> {
        self.convergence.clone()
    }

    pub fn assign(&self, a: Assignment) {
        let _ = self.tx.send(Msg::Assign(a));
    }

    pub fn files(&self, blobs: Vec<Blob>, missing: Vec<String>) {
        let _ = self.tx.send(Msg::Files { blobs, missing });
    }

    /// `state.apply` / `state.highstate`.
    pub async fn apply(&self, req: ApplyRequest) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Apply(req, tx)).is_err() {
            return Outcome::fail("the minion is stopping");
        }
        rx.await.unwrap_or_else(|_| Outcome::fail("the minion is stopping"))
    }

    /// `cp.get_file`: the cached copy of `path` (from the repository root, `states/a/b`), a
    /// file of the current assignment (the minion's manifest), or why there is none.
    pub async fn cached_file(&self, path: String) -> Result<PathBuf, String> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Cached(path, tx)).is_err() {
            return Err("the minion is stopping".into());
        }
        rx.await.unwrap_or_else(|_| Err("the minion is stopping".into()))
    }

    /// `role.list`: the roles, commit and serial of the current assignment.
    pub async fn roles(&self) -> Value {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Roles(tx)).is_err() {
            return Value::Null;
        }
        rx.await.unwrap_or(Value::Null)
    }
}

struct Owner<D> {
    id: String,
    grains: Arc<Grains>,
    cache_dir: PathBuf,
    daemons: D,
    to_master: mpsc::UnboundedSender<ToMaster>,
    /// Where convergence stands, for the minion's health.
    status: watch::Sender<Convergence>,
    /// The assignment last applied (or being fetched for).
    current: Option<Assignment>,
    /// An assignment waiting for files from the master.
    fetching: Option<Assignment>,
    /// A trial (`ApplyRequest::trial`) waiting for files from the master.
    trial: Option<PendingTrial>,
}

/// Everything needed to apply an assignment, made from the cached files.
struct Prepared {
    plan: render::Plan,
    files: render::Files,
    ctx: render::Context,
    /// Roles named in `requires` with no converged member yet.
    waiting: Vec<String>,
}

impl<D: Daemons + Send + Sync + 'static> Owner<D> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Assign(a) => self.on_assign(a).await,
                Msg::Files { blobs, missing } => self.on_files(blobs, missing).await,
                Msg::Apply(req, reply) => self.on_apply_msg(req, reply).await,
                Msg::Cached(path, reply) => {
                    let _ = reply.send(self.on_cached(&path));
                }
                Msg::Roles(reply) => {
                    let _ = reply.send(match &self.current {
                        Some(a) => json!({"roles": a.roles, "commit": a.commit, "serial": a.serial}),
                        None => json!({"roles": [], "commit": null, "serial": 0}),
                    });
                }
            }
        }
    }

    /// Only the files of the assignment: the master serves a minion its manifest and
    /// nothing else (see `master::roles`), and `cp.get_file` keeps to what it was served.
    fn on_cached(&self, path: &str) -> Result<PathBuf, String> {
        let a = self
            .current
            .as_ref()
            .ok_or("no roles are assigned to this minion yet (run 'drover roles apply' on the master)")?;
        let sha = a.files.get(path).ok_or_else(|| {
            format!(
                "{path} is not a file of this minion's assignment (commit {}): a minion gets only \
                 its roles' state files and the sources their states name",
                short(&a.commit)
            )
        })?;
        let cached = self.cached(sha);
        if cached.exists() {
            Ok(cached)
        } else {
            Err("the files of the current assignment are still being fetched; try again".into())
        }
    }

    fn cached(&self, sha: &str) -> PathBuf {
        self.cache_dir.join(sha)
    }

    fn missing(&self, a: &Assignment) -> Vec<String> {
        let set: BTreeSet<&String> = a.files.values().filter(|sha| !self.cached(sha).exists()).collect();
        set.into_iter().cloned().collect()
    }

    async fn on_assign(&mut self, a: Assignment) {
        info!(commit = %short(&a.commit), serial = a.serial, roles = ?a.roles, "assignment received");
        // another commit is not converged until it is applied; the same one pushed again
        // (its peers changed) keeps the verdict of its last apply until the next one ends
        if self.status.borrow().commit.as_deref() != Some(a.commit.as_str()) {
            self.publish(&a, false, Some(format!("applying commit {}", short(&a.commit))));
        }
        let missing = self.missing(&a);
        if missing.is_empty() {
            self.fetching = None;
            self.converge(a).await;
        } else {
            debug!(count = missing.len(), "fetching files from the master");
            let _ = self.to_master.send(ToMaster::Fetch { sha256: missing });
            self.fetching = Some(a);
        }
    }

    /// A job's apply: at once, unless it is a trial whose files must be fetched first.
    async fn on_apply_msg(&mut self, req: ApplyRequest, reply: oneshot::Sender<Outcome>) {
        let missing = req.trial.as_deref().map(|a| self.missing(a)).unwrap_or_default();
        if missing.is_empty() {
            let _ = reply.send(self.on_apply(req).await);
            return;
        }
        if let Some(old) = self.trial.take() {
            let _ =
                old.reply.send(Outcome::fail("replaced by a newer test of a commit before its files came"));
        }
        debug!(count = missing.len(), "fetching the files of a commit to test");
        let _ = self.to_master.send(ToMaster::Fetch { sha256: missing });
        self.trial = Some(PendingTrial { req, reply });
    }

    /// Files came: a pending trial runs once it has them all, or fails if the master
    /// refused one of them (it serves a trial's files only while that job runs).
    async fn trial_files(&mut self, refused: &[String]) {
        let Some(pending) = self.trial.take() else { return };
        let Some(a) = pending.req.trial.as_deref() else { return };
        let wanted: BTreeSet<&String> = a.files.values().collect();
        let refused = refused.iter().filter(|h| wanted.contains(h)).count();
        if refused > 0 {
            let msg =
                format!("the master did not serve {refused} file(s) of commit {} to test", short(&a.commit));
            let _ = pending.reply.send(Outcome::fail(msg));
        } else if self.missing(a).is_empty() {
            let _ = pending.reply.send(self.on_apply(pending.req).await);
        } else {
            self.trial = Some(pending);
        }
    }

    async fn on_files(&mut self, blobs: Vec<Blob>, refused: Vec<String>) {
        if let Err(e) = wire::private::create_dir(&self.cache_dir) {
            warn!(dir = %self.cache_dir.display(), cause = %e, "cannot create the file cache");
        }
        for blob in blobs {
            if sha256_hex(&blob.data) != blob.sha256 {
                warn!(sha256 = %blob.sha256, "dropped a file whose content does not match its hash");
                continue;
            }
            let path = self.cached(&blob.sha256);
            if let Err(e) = wire::private::write_atomic(&path, &blob.data) {
                warn!(path = %path.display(), cause = %e, "cannot cache a file");
            }
        }
        self.trial_files(&refused).await;
        let Some(a) = self.fetching.take() else { return };
        // an answer to the fetch of an assignment since replaced may refuse hashes this one
        // does not need: only refusals of this assignment's files count
        let wanted: BTreeSet<&String> = a.files.values().collect();
        let refused: Vec<String> = refused.into_iter().filter(|h| wanted.contains(h)).collect();
        if !refused.is_empty() {
            let comment =
                format!("the master did not serve {} file(s) of commit {}", refused.len(), short(&a.commit));
            self.publish(&a, false, Some(comment.clone()));
            self.report(&a, false, Vec::new(), 0, Vec::new(), comment);
            self.current = Some(a);
            return;
        }
        if self.missing(&a).is_empty() {
            self.converge(a).await;
        } else {
            self.fetching = Some(a);
        }
    }

    /// Reads the cached files of `a` and plans them, on a blocking thread: file reads and
    /// Tera rendering must not hold up the session's heartbeats on the minion's one thread.
    async fn prepare(&self, a: &Assignment) -> Result<Prepared, String> {
        let (cache, id, grains, a) =
            (self.cache_dir.clone(), self.id.clone(), self.grains.clone(), a.clone());
        tokio::task::spawn_blocking(move || prepare(&cache, &id, &grains, &a))
            .await
            .unwrap_or_else(|e| Err(format!("planning the assignment failed: {e}")))
    }

    /// Applies an assignment in full and reports to the master.
    async fn converge(&mut self, a: Assignment) {
        let outcome = match self.prepare(&a).await {
            Ok(p) => {
                let opts = ApplyOptions {
                    test: false,
                    only: None,
                    hold_daemons: !p.waiting.is_empty(),
                    hold_reason: p.waiting.iter().map(|r| format!("role {r}")).collect::<Vec<_>>().join(", "),
                };
                let applied = state::apply(&p.plan, &p.files, &p.ctx, &opts, &self.daemons).await;
                // the first failure that is the run's (one its `onfail` states handled is not)
                let failure = applied
                    .results
                    .iter()
                    .find(|r| r.result == Some(false) && applied.failed.contains(&r.id));
                let comment = if let Some(first) = failure {
                    format!("{}: {}", first.id, first.comment)
                } else if !p.waiting.is_empty() {
                    format!("daemons wait for {}", opts.hold_reason)
                } else {
                    String::new()
                };
                if !applied.stopped.is_empty() {
                    info!(stopped = ?applied.stopped, "stopped daemons no state asks for");
                }
                let problem = if let Some(first) = failure {
                    let file =
                        p.plan.resources.iter().find(|r| r.id == first.id).map(|r| r.state.to_string());
                    Some(format!(
                        "state {} failed: {}: {}",
                        file.as_deref().unwrap_or("?"),
                        first.id,
                        first.comment
                    ))
                } else if !p.waiting.is_empty() {
                    Some(format!("its daemons wait for a converged member of {}", opts.hold_reason))
                } else {
                    None
                };
                self.publish(&a, problem.is_none(), problem);
                Some((applied.failed.is_empty(), applied.failed, applied.changed, p.waiting, comment))
            }
            Err(e) => {
                warn!(commit = %short(&a.commit), error = %e, "cannot plan the assignment");
                self.publish(&a, false, Some(format!("cannot apply commit {}: {e}", short(&a.commit))));
                Some((false, Vec::new(), 0, Vec::new(), e))
            }
        };
        if let Some((ok, failed, changed, waiting, comment)) = outcome {
            info!(commit = %short(&a.commit), ok, changed, failed = ?failed, waiting = ?waiting, "converged");
            self.report(&a, ok, failed, changed, waiting, comment);
        }
        self.prune_cache(&a);
        self.current = Some(a);
    }

    /// Drops cached files the assignment no longer names, so the cache holds one commit's
    /// files and not every commit ever applied.
    fn prune_cache(&self, a: &Assignment) {
        let trial = self.trial.as_ref().and_then(|t| t.req.trial.as_deref());
        let keep: BTreeSet<&str> =
            a.files.values().chain(trial.iter().flat_map(|t| t.files.values())).map(String::as_str).collect();
        let Ok(entries) = fs::read_dir(&self.cache_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !keep.contains(name)
                && let Err(e) = fs::remove_file(entry.path())
            {
                debug!(file = name, cause = %e, "cannot remove a cached file");
            }
        }
    }

    /// Publishes where the convergence of `a` stands.
    fn publish(&self, a: &Assignment, converged: bool, problem: Option<String>) {
        self.status.send_replace(Convergence { commit: Some(a.commit.clone()), converged, problem });
    }

    fn report(
        &self,
        a: &Assignment,
        result: bool,
        failed: Vec<String>,
        changed: usize,
        waiting: Vec<String>,
        comment: String,
    ) {
        let _ = self.to_master.send(ToMaster::Converged(Converged {
            commit: a.commit.clone(),
            serial: a.serial,
            result,
            failed,
            changed,
            waiting,
            comment,
        }));
    }

    /// `state.apply [ids] [test=true]` on the current assignment, or on the trial's.
    async fn on_apply(&mut self, req: ApplyRequest) -> Outcome {
        let Some(a) = req.trial.as_deref().cloned().or_else(|| self.current.clone()) else {
            return Outcome::fail(
                "no roles are assigned to this minion yet (run 'drover roles apply' on the master)",
            );
        };
        if !self.missing(&a).is_empty() {
            return Outcome::fail("the files of the current assignment are still being fetched; try again");
        }
        let p = match self.prepare(&a).await {
            Ok(p) => p,
            Err(e) => return Outcome::fail(e),
        };
        let only = state::only_ids(&p.plan, &req.only);
        let opts = ApplyOptions {
            test: req.test,
            only,
            hold_daemons: !p.waiting.is_empty(),
            hold_reason: p.waiting.iter().map(|r| format!("role {r}")).collect::<Vec<_>>().join(", "),
        };
        let applied = state::apply(&p.plan, &p.files, &p.ctx, &opts, &self.daemons).await;
        if !applied.unknown.is_empty() {
            return Outcome::fail(format!(
                "no state file or state named {} in this minion's roles ({})",
                applied.unknown.join(", "),
                a.roles.join(", ")
            ));
        }
        let success = applied.success();
        let ret = applied.to_return();
        if success { Outcome::ok(ret) } else { Outcome { success: false, retcode: 1, ret } }
    }
}

/// Reads the cached files of `a` (under `cache`) and plans them for minion `id`.
fn prepare(cache: &std::path::Path, id: &str, grains: &Grains, a: &Assignment) -> Result<Prepared, String> {
    let mut files = render::Files::new();
    for (path, sha) in &a.files {
        let bytes =
            fs::read(cache.join(sha)).map_err(|e| format!("{path}: cannot read the cached copy: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{path}: not UTF-8"))?;
        files.insert(path.clone(), text);
    }
    let mut roles = Vec::new();
    for name in &a.roles {
        let path = render::role_path(name);
        let text = files.get(&path).ok_or_else(|| format!("{path} is not in the assignment"))?;
        roles.push(render::Role::parse(name, text).map_err(diagnostics)?);
    }
    let minion = render::Minion {
        id: id.to_string(),
        grains: grains.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        pillar: a.pillar.clone(),
        peers: a
            .peers
            .iter()
            .map(|(role, peers)| {
                let peers = peers
                    .iter()
                    .map(|p| render::Peer {
                        id: p.id.clone(),
                        address: p.address.clone(),
                        grains: p.grains.clone(),
                    })
                    .collect();
                (role.clone(), peers)
            })
            .collect(),
    };
    let ctx = render::Context::new(&minion, &roles);
    let plan = render::plan(&files, &roles, &ctx).map_err(diagnostics)?;
    let mut waiting: Vec<String> = roles
        .iter()
        .flat_map(|r| r.requires.iter())
        .filter(|req| a.peers.get(*req).is_none_or(Vec::is_empty))
        .cloned()
        .collect();
    waiting.sort();
    waiting.dedup();
    Ok(Prepared { plan, files, ctx, waiting })
}

fn diagnostics(d: Vec<render::Diagnostic>) -> String {
    d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
