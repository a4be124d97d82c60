//! The roles side of the hub: the applied commit, each minion's assignment and last report,
//! the peer table, and the file server. The hub owns one [`RoleState`] like everything else
//! it holds; its methods return the messages to send ([`Out`]) and the hub sends them.
//!
//! Every assignment pushed was planned by `render` with exactly the peers it carries: by the
//! API for a `roles apply` (every accepted minion, before anything changes), or here, on a
//! blocking thread, for a minion that connects with other grains than it was planned with
//! (or that was accepted since), and for the minions whose peers changed. Peer changes are
//! coalesced: the table is recomputed at most every [`PEER_INTERVAL`], and one planning
//! batch runs at a time.
//!
//! Serials are `max(previous + 1, now in ms)`: they increase with every push, also across a
//! master restart that lost the last write before a crash.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{MinionAssignment, RoleStatus, RolesApplyResponse};
use render::Diagnostic;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wire::msg::{MAX_FRAME, now_ms};
use wire::{Assignment, Blob, Converged, Jid, MinionId, ToMinion};

use crate::assign::{self, Applied, MinionInput, Planned, grains_digest};
use crate::peers::{self, Member, PeerMap};
use crate::store::{AssignmentRecord, RolesRecord, Store};

/// How often, at most, the peer table is recomputed after something changed.
pub const PEER_INTERVAL: Duration = Duration::from_millis(200);

/// The most minions one planning batch takes, so pushes start while many minions connect.
const PLAN_BATCH: usize = 256;

/// Bytes of file data one `ToMinion::Files` carries at most (room left for the envelope
/// and the `missing` list).
const FILES_BUDGET: usize = MAX_FRAME - (1 << 20);

/// The most hashes one `Fetch` is answered for (far more than any manifest holds); so the
/// `missing` list echoed back stays well inside the room `FILES_BUDGET` leaves.
const MAX_FETCH: usize = 8192;

/// A message for one minion; sent if it is connected.
pub type Out = (MinionId, ToMinion);

/// A minion's current assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Assigned {
    pub commit: String,
    /// Of the last push (or of the install, if it was not connected).
    pub serial: u64,
    pub roles: Vec<String>,
    /// Its manifest: repo path → sha256. The file server serves these and nothing else.
    pub files: BTreeMap<String, String>,
    /// Role → the serial it was first given with; a report from before does not count.
    pub role_since: BTreeMap<String, u64>,
    /// The roles whose peers it sees.
    pub view: BTreeSet<String>,
    pub grains_digest: String,
    /// The peers it was planned with; unknown after a restart (planned again on connect).
    pub peers: Option<PeerMap>,
}

impl Assigned {
    fn record(&self) -> AssignmentRecord {
        AssignmentRecord {
            commit: self.commit.clone(),
            serial: self.serial,
            roles: self.roles.clone(),
            files: self.files.clone(),
            role_since: self.role_since.clone(),
            view: self.view.iter().cloned().collect(),
            grains_digest: self.grains_digest.clone(),
        }
    }

    fn message(&self) -> ToMinion {
        let peers = self.peers.as_ref().map(|p| peers::view_of(p, &self.view)).unwrap_or_default();
        ToMinion::Assign(Assignment {
            commit: self.commit.clone(),
            serial: self.serial,
            roles: self.roles.clone(),
            files: self.files.clone(),
            pillar: serde_json::Map::new(),
            peers: peers.into_iter().map(|(role, list)| (role, list.to_vec())).collect(),
        })
    }
}

#[derive(Default)]
struct Standing {
    connected: bool,
    grains: Value,
    assigned: Option<Assigned>,
    /// The last `Converged` and when it came.
    report: Option<(Converged, u64)>,
    /// Why the master could not plan it at the applied commit (the last attempt).
    problem: Option<String>,
}

impl Standing {
    /// The roles it serves as a peer (see `peers`).
    fn serving(&self) -> BTreeSet<&str> {
        let (true, Some(a), Some((report, _))) = (self.connected, &self.assigned, &self.report) else {
            return BTreeSet::new();
        };
        if !report.result {
            return BTreeSet::new();
        }
        a.roles
            .iter()
            .filter(|r| a.role_since.get(*r).is_some_and(|since| report.serial >= *since))
            .map(String::as_str)
            .collect()
    }
}

/// Plans made on a blocking thread, for the hub.
pub struct PlanDone {
    generation: u64,
    results: Vec<(MinionId, Result<Planned, Vec<Diagnostic>>)>,
}

/// What `roles apply` and `roles diff` need from the hub.
#[derive(Clone, Debug, Default)]
pub struct RolesInput {
    /// Every accepted minion.
    pub minions: Vec<MinionInput>,
    /// Their current roles and manifests.
    pub current: BTreeMap<MinionId, (Vec<String>, BTreeMap<String, String>)>,
    pub current_commit: Option<String>,
    /// The tree of the applied commit (to keep its files on disk).
    pub current_tree: Option<BTreeMap<String, String>>,
}

pub struct RoleState {
    store: Store,
    applied: Option<Arc<Applied>>,
    /// Bumped by every apply: plans made for an older commit are dropped.
    generation: u64,
    minions: HashMap<MinionId, Standing>,
    table: PeerMap,
    peers_dirty: bool,
    /// Check every assignment against the table at the next refresh (after an apply).
    check_all: bool,
    last_refresh: Option<Instant>,
    to_plan: BTreeSet<MinionId>,
    planning: bool,
    done_tx: mpsc::UnboundedSender<PlanDone>,
    /// Minions dry-running a commit not applied (`roles apply --test`): while that job
    /// runs, they may fetch the files of their assignment at that commit too.
    trials: HashMap<MinionId, Trial>,
}

/// A minion's grant to fetch the files of a commit it tests.
struct Trial {
    jid: Jid,
    applied: Arc<Applied>,
    manifest: HashSet<String>,
}

fn next_serial(previous: u64) -> u64 {
    (previous + 1).max(now_ms())
}

impl RoleState {
    /// The roles side as the store had it; `applied` is the applied commit, if it could be
    /// restored. Finished plans arrive on the returned receiver, for [`RoleState::planned`].
    pub fn new(
        store: Store,
        saved: RolesRecord,
        applied: Option<Applied>,
    ) -> (Self, mpsc::UnboundedReceiver<PlanDone>) {
        let mut minions: HashMap<MinionId, Standing> = HashMap::new();
        for (id, r) in saved.assignments {
            minions.entry(id).or_default().assigned = Some(Assigned {
                commit: r.commit,
                serial: r.serial,
                roles: r.roles,
                files: r.files,
                role_since: r.role_since,
                view: r.view.into_iter().collect(),
                grains_digest: r.grains_digest,
                peers: None,
            });
        }
        for (id, report, time_ms) in saved.converged {
            minions.entry(id).or_default().report = Some((report, time_ms));
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let state = RoleState {
            store,
            applied: applied.map(Arc::new),
            generation: 0,
            minions,
            table: PeerMap::new(),
            peers_dirty: true,
            check_all: false,
            last_refresh: None,
            to_plan: BTreeSet::new(),
            planning: false,
            done_tx,
            trials: HashMap::new(),
        };
        (state, done_rx)
    }

    fn event(&self, minion: Option<&MinionId>, tag: &str, data: Value) {
        if let Err(e) = self.store.event(minion, tag, data) {
            tracing::error!(error = %e, "cannot record event");
        }
    }

    /// The applied commit, if there is one.
    pub fn applied(&self) -> Option<&Arc<Applied>> {
        self.applied.as_ref()
    }

    /// The roles assigned to `id`, if any.
    pub fn roles_of(&self, id: &MinionId) -> Option<&[String]> {
        self.minions.get(id).and_then(|s| s.assigned.as_ref()).map(|a| a.roles.as_slice())
    }

    /// What a `roles apply` or `roles diff` plans from: every accepted minion (with the
    /// grains the hub knows) and the current assignments.
    pub fn input(&self, accepted: Vec<(MinionId, Value)>) -> RolesInput {
        let mut input = RolesInput {
            current_commit: self.applied.as_ref().map(|a| a.commit.clone()),
            current_tree: self.applied.as_ref().map(|a| a.tree.clone()),
            ..RolesInput::default()
        };
        for (id, grains) in accepted {
            let standing = self.minions.get(&id);
            let serving =
                standing.map(|s| s.serving().into_iter().map(String::from).collect()).unwrap_or_default();
            if let Some(a) = standing.and_then(|s| s.assigned.as_ref()) {
                input.current.insert(id.clone(), (a.roles.clone(), a.files.clone()));
            }
            input.minions.push(MinionInput { id, grains, serving });
        }
        input
    }

    /// Records the assignments of a `roles apply` (planned for every minion of `accepted`
    /// the API knew of) and pushes them to the connected minions.
    pub fn apply(
        &mut self,
        applied: Arc<Applied>,
        mut planned: BTreeMap<MinionId, Planned>,
        accepted: &[MinionId],
    ) -> (RolesApplyResponse, Vec<Out>) {
        self.generation += 1;
        if let Err(e) = self.store.save_applied(applied.commit.clone(), applied.tree.clone()) {
            tracing::error!(error = %e, "cannot record the applied commit");
        }
        let commit = applied.commit.clone();
        self.applied = Some(applied);
        let mut out = Vec::new();
        let mut minions = Vec::new();
        for id in accepted {
            let Some(p) = planned.remove(id) else {
                // accepted after the API asked: planned when it connects (or now, if it is)
                if self.minions.get(id).is_some_and(|s| s.connected) {
                    self.to_plan.insert(id.clone());
                }
                continue;
            };
            let standing = self.minions.entry(id.clone()).or_default();
            let changed = standing.assigned.as_ref().is_none_or(|a| a.roles != p.roles || a.files != p.files);
            let connected = standing.connected;
            // grains changed while the API planned: plan it again (and push again)
            let stale = connected && grains_digest(&standing.grains) != p.grains_digest;
            let roles = p.roles.clone();
            let msg = self.install(id, p);
            let serial = match &msg {
                ToMinion::Assign(a) => a.serial,
                _ => 0,
            };
            if connected {
                out.push((id.clone(), msg));
            }
            if stale {
                self.to_plan.insert(id.clone());
            } else {
                self.to_plan.remove(id);
            }
            minions.push(MinionAssignment {
                id: id.to_string(),
                roles,
                changed,
                connected,
                serial,
                outcome: None,
            });
        }
        self.peers_dirty = true;
        self.check_all = true;
        let changed = minions.iter().filter(|m| m.changed).count();
        tracing::info!(%commit, minions = minions.len(), changed, "roles applied");
        self.event(
            None,
            "drover/roles/apply",
            json!({"commit": commit, "minions": minions.len(), "changed": changed}),
        );
        (RolesApplyResponse { commit, minions, waited: false }, out)
    }

    /// Makes `p` the assignment of `id` (new serial, persisted); returns the message to push.
    fn install(&mut self, id: &MinionId, p: Planned) -> ToMinion {
        let commit = self.applied.as_ref().map(|a| a.commit.clone()).unwrap_or_default();
        let standing = self.minions.entry(id.clone()).or_default();
        let previous = standing.assigned.take();
        let serial = next_serial(previous.as_ref().map_or(0, |a| a.serial));
        let role_since = p
            .roles
            .iter()
            .map(|role| {
                let since = previous
                    .as_ref()
                    .filter(|a| a.roles.contains(role))
                    .and_then(|a| a.role_since.get(role).copied())
                    .unwrap_or(serial);
                (role.clone(), since)
            })
            .collect();
        let assigned = Assigned {
            commit,
            serial,
            roles: p.roles,
            files: p.files,
            role_since,
            view: p.view,
            grains_digest: p.grains_digest,
            peers: Some(p.peers),
        };
        if let Err(e) = self.store.save_assignment(id.clone(), assigned.record()) {
            tracing::error!(%id, error = %e, "cannot record an assignment");
        }
        let msg = assigned.message();
        standing.assigned = Some(assigned);
        standing.problem = None;
        msg
    }

    /// Pushes the current assignment of `id` again, with a new serial.
    fn push(&mut self, id: &MinionId) -> Option<ToMinion> {
        let assigned = self.minions.get_mut(id)?.assigned.as_mut()?;
        assigned.serial = next_serial(assigned.serial);
        if let Err(e) = self.store.save_assignment(id.clone(), assigned.record()) {
            tracing::error!(%id, error = %e, "cannot record an assignment");
        }
        Some(assigned.message())
    }

    /// `id` was welcomed with `grains`: its assignment goes right after the welcome, or once
    /// it is planned (if its grains or its peers changed since it was planned).
    pub fn connected(&mut self, id: &MinionId, grains: Value) -> Vec<Out> {
        let digest = grains_digest(&grains);
        let standing = self.minions.entry(id.clone()).or_default();
        standing.connected = true;
        standing.grains = grains;
        self.peers_dirty = true;
        let Some(applied) = &self.applied else { return Vec::new() };
        let ready = standing.assigned.as_ref().is_some_and(|a| {
            a.commit == applied.commit
                && a.grains_digest == digest
                && a.peers.as_ref().is_some_and(|p| peers::current(p, &a.view, &self.table))
        });
        if ready {
            self.push(id).map(|msg| vec![(id.clone(), msg)]).unwrap_or_default()
        } else {
            self.to_plan.insert(id.clone());
            Vec::new()
        }
    }

    /// `id` is no longer connected.
    pub fn disconnected(&mut self, id: &MinionId) {
        if let Some(s) = self.minions.get_mut(id) {
            s.connected = false;
        }
        self.to_plan.remove(id);
        self.peers_dirty = true;
    }

    /// Another container of `id`'s slot took its session (a newer generation, or an older
    /// one back after a rollback): the last report was the other container's, so `id`
    /// serves no role as a peer until this one reports.
    pub fn superseded(&mut self, id: &MinionId) {
        if let Some(s) = self.minions.get_mut(id)
            && s.report.take().is_some()
        {
            self.peers_dirty = true;
        }
    }

    /// `id`'s key was deleted: its assignment and report go too.
    pub fn forget(&mut self, id: &MinionId) {
        if self.minions.remove(id).is_some()
            && let Err(e) = self.store.delete_roles(id.clone())
        {
            tracing::error!(%id, error = %e, "cannot forget an assignment");
        }
        self.to_plan.remove(id);
        self.peers_dirty = true;
    }

    /// A minion's report on an assignment it applied; whether it was recorded.
    pub fn converged(&mut self, id: &MinionId, mut report: Converged) -> bool {
        let Some(standing) = self.minions.get_mut(id) else {
            tracing::warn!(%id, "dropped a convergence report from a minion without an assignment");
            return false;
        };
        let Some(assigned) = &standing.assigned else {
            tracing::warn!(%id, "dropped a convergence report from a minion without an assignment");
            return false;
        };
        if report.serial > assigned.serial {
            tracing::warn!(%id, serial = report.serial, sent = assigned.serial, "dropped a report for a serial never sent");
            return false;
        }
        report.comment = report.comment.chars().take(2000).collect();
        report.failed.truncate(1000);
        report.waiting.truncate(1000);
        let now = now_ms();
        if let Err(e) = self.store.save_converged(id.clone(), report.clone(), now) {
            tracing::error!(%id, error = %e, "cannot record a convergence report");
        }
        tracing::debug!(%id, commit = %report.commit, serial = report.serial, result = report.result, "converged");
        let data = json!({
            "commit": report.commit, "serial": report.serial, "result": report.result,
            "failed": report.failed, "changed": report.changed, "waiting": report.waiting,
            "comment": report.comment,
        });
        standing.report = Some((report, now));
        self.peers_dirty = true;
        self.event(Some(id), "drover/roles/converged", data);
        true
    }

    /// `id`'s last report, and the commit of its current assignment.
    pub fn report_of(&self, id: &MinionId) -> Option<(&Converged, Option<&str>)> {
        let standing = self.minions.get(id)?;
        let (report, _) = standing.report.as_ref()?;
        Some((report, standing.assigned.as_ref().map(|a| a.commit.as_str())))
    }

    /// Lets `id` fetch the files of `a` (at `applied`'s commit) while job `jid` runs.
    pub fn begin_trial(&mut self, jid: &Jid, id: &MinionId, applied: Arc<Applied>, a: &Assignment) {
        let manifest = a.files.values().cloned().collect();
        self.trials.insert(id.clone(), Trial { jid: jid.clone(), applied, manifest });
    }

    /// Job `jid` ended: the grants it gave end with it.
    pub fn end_trials(&mut self, jid: &Jid) {
        self.trials.retain(|_, t| t.jid != *jid);
    }

    /// The assignment `p` would be at `applied`'s commit, for a minion to dry-run: what
    /// [`RoleState::apply`] would send, with no serial (it is never installed).
    pub fn trial_assignment(applied: &Applied, p: &Planned) -> Assignment {
        Assignment {
            commit: applied.commit.clone(),
            serial: 0,
            roles: p.roles.clone(),
            files: p.files.clone(),
            pillar: serde_json::Map::new(),
            peers: p.peers.iter().map(|(role, list)| (role.clone(), list.to_vec())).collect(),
        }
    }

    /// The answer to `Fetch`: the contents asked for that are in `id`'s manifest, in as many
    /// `Files` messages as their size needs; every other hash is `missing` (logged), so a
    /// minion gets no file of a role it does not have (their pillar may be secret), nor any
    /// file its plan does not name. A minion testing a commit (`begin_trial`) may fetch the
    /// files of its assignment at that commit as well, until that job ends.
    pub fn fetch(&self, id: &MinionId, wanted: Vec<String>) -> Vec<ToMinion> {
        let applied = self.applied.as_deref();
        let manifest: HashSet<&str> = match (self.minions.get(id).and_then(|s| s.assigned.as_ref()), applied)
        {
            (Some(a), Some(applied)) if a.commit == applied.commit => {
                a.files.values().map(String::as_str).collect()
            }
            _ => HashSet::new(),
        };
        let trial = self.trials.get(id);
        let blob = |sha: &str| {
            applied
                .filter(|_| manifest.contains(sha))
                .and_then(|a| a.blob(sha))
                .or_else(|| trial.filter(|t| t.manifest.contains(sha)).and_then(|t| t.applied.blob(sha)))
        };
        let mut answers = Vec::new();
        let (mut blobs, mut size, mut missing) = (Vec::new(), 0usize, Vec::new());
        let mut seen = HashSet::new();
        if wanted.len() > MAX_FETCH {
            tracing::warn!(%id, asked = wanted.len(), "answering only the first {MAX_FETCH} hashes of a fetch");
        }
        for sha in wanted.into_iter().take(MAX_FETCH) {
            let sha: String = sha.chars().take(64).collect();
            if !seen.insert(sha.clone()) {
                continue;
            }
            let Some(data) = blob(&sha) else {
                missing.push(sha);
                continue;
            };
            let cost = data.len() + sha.len() + 64;
            if size + cost > FILES_BUDGET && !blobs.is_empty() {
                answers.push(ToMinion::Files { blobs: std::mem::take(&mut blobs), missing: Vec::new() });
                size = 0;
            }
            size += cost;
            blobs.push(Blob { sha256: sha, data: data.to_vec() });
        }
        if !missing.is_empty() {
            tracing::warn!(
                %id, count = missing.len(), first = %missing[0].chars().take(64).collect::<String>(),
                "refused to serve files outside the minion's assignment"
            );
        }
        answers.push(ToMinion::Files { blobs, missing });
        answers
    }

    /// Called on the hub's tick: recomputes the peer table when due, and starts a planning
    /// batch when one is wanted and none runs.
    pub fn tick(&mut self, now: Instant) {
        if self.peers_dirty && self.last_refresh.is_none_or(|t| now.duration_since(t) >= PEER_INTERVAL) {
            self.last_refresh = Some(now);
            self.refresh();
        }
        if !self.planning && !self.to_plan.is_empty() {
            self.launch();
        }
    }

    /// Recomputes the peer table; minions whose view of it changed are planned again.
    fn refresh(&mut self) {
        self.peers_dirty = false;
        let Some(applied) = self.applied.clone() else { return };
        let members: Vec<Member> = self
            .minions
            .iter()
            .filter_map(|(id, s)| {
                let a = s.assigned.as_ref()?;
                Some(Member { id: id.as_str(), grains: &s.grains, roles: &a.roles, serving: s.serving() })
            })
            .collect();
        let (table, changed) = peers::refresh(&self.table, peers::table(applied.role_names(), &members));
        self.table = table;
        if !changed && !std::mem::take(&mut self.check_all) {
            return;
        }
        self.check_all = false;
        for (id, s) in &mut self.minions {
            let (true, Some(a)) = (s.connected, s.assigned.as_mut()) else { continue };
            let Some(planned) = &mut a.peers else { continue };
            if a.commit != applied.commit || a.view.is_empty() {
                continue;
            }
            if peers::current(planned, &a.view, &self.table) {
                // same contents: share the table's lists, so the next check is a pointer compare
                *planned = peers::view_of(&self.table, &a.view);
            } else {
                self.to_plan.insert(id.clone());
            }
        }
    }

    /// Plans up to [`PLAN_BATCH`] waiting minions on a blocking thread.
    fn launch(&mut self) {
        let Some(applied) = self.applied.clone() else { return };
        let mut batch = Vec::new();
        while batch.len() < PLAN_BATCH {
            let Some(id) = self.to_plan.pop_first() else { break };
            if let Some(s) = self.minions.get(&id).filter(|s| s.connected) {
                batch.push((id, s.grains.clone()));
            }
        }
        if batch.is_empty() {
            return;
        }
        self.planning = true;
        let (table, generation, done) = (self.table.clone(), self.generation, self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let results = batch
                .into_iter()
                .map(|(id, grains)| {
                    let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        assign::plan_minion(&applied, id.as_str(), &grains, &table)
                    }))
                    .unwrap_or_else(|_| {
                        Err(vec![Diagnostic::whole_file(
                            "roles/",
                            "internal error while planning this minion",
                        )])
                    });
                    (id, planned)
                })
                .collect();
            let _ = done.send(PlanDone { generation, results });
        });
    }

    /// Plans finished: records and pushes them; a minion that cannot be planned keeps its
    /// assignment (nothing is pushed) and `roles status` says why.
    pub fn planned(&mut self, done: PlanDone) -> Vec<Out> {
        self.planning = false;
        let mut out = Vec::new();
        for (id, result) in done.results {
            let Some(standing) = self.minions.get_mut(&id) else { continue };
            if done.generation != self.generation {
                // planned for a commit no longer applied: again, unless the apply planned it
                let commit = self.applied.as_ref().map(|a| a.commit.as_str());
                if standing.connected
                    && standing.assigned.as_ref().is_none_or(|a| Some(a.commit.as_str()) != commit)
                {
                    self.to_plan.insert(id);
                }
                continue;
            }
            match result {
                Ok(p) => {
                    let connected = standing.connected;
                    self.peers_dirty |= standing.assigned.as_ref().is_none_or(|a| a.roles != p.roles);
                    let msg = self.install(&id, p);
                    if connected {
                        out.push((id, msg));
                    }
                }
                Err(diags) => {
                    let text = diags.iter().take(5).map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    if standing.problem.as_deref() != Some(text.as_str()) {
                        tracing::warn!(%id, problem = %text, "cannot plan a minion at the applied commit");
                        let commit = self.applied.as_ref().map(|a| a.commit.clone());
                        standing.problem = Some(text.clone());
                        self.event(
                            Some(&id),
                            "drover/roles/problem",
                            json!({"commit": commit, "diagnostics": diags.iter().map(ToString::to_string).collect::<Vec<_>>()}),
                        );
                    }
                }
            }
        }
        out
    }

    /// `roles status` for `accepted`.
    pub fn status(&self, accepted: &[MinionId]) -> Vec<RoleStatus> {
        accepted
            .iter()
            .map(|id| {
                let s = self.minions.get(id);
                let a = s.and_then(|s| s.assigned.as_ref());
                let r = s.and_then(|s| s.report.as_ref()).map(|(r, _)| r);
                let short = self.applied.as_ref().map(|a| a.short().to_string()).unwrap_or_default();
                let comment = match s.and_then(|s| s.problem.as_ref()) {
                    Some(p) => format!("cannot be planned at {short}: {p}"),
                    None => r.map(|r| r.comment.clone()).unwrap_or_default(),
                };
                RoleStatus {
                    id: id.to_string(),
                    connected: s.is_some_and(|s| s.connected),
                    roles: a.map(|a| a.roles.clone()).unwrap_or_default(),
                    assigned_commit: a.map(|a| a.commit.clone()),
                    converged_commit: r.map(|r| r.commit.clone()),
                    result: r.map(|r| r.result),
                    failing: r.map(|r| r.failed.clone()).unwrap_or_default(),
                    waiting: r.map(|r| r.waiting.clone()).unwrap_or_default(),
                    comment,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assign::tests::{CLOUD, commit};
    use serde_json::json;
    use wire::msg::sha256_hex;

    struct Fixture {
        state: RoleState,
        plans: mpsc::UnboundedReceiver<PlanDone>,
        store: Store,
        _dir: tempfile::TempDir,
    }

    fn id(s: &str) -> MinionId {
        MinionId::new(s).unwrap()
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _) = mpsc::unbounded_channel();
        let store = Store::open(&dir.path().join("drover.db"), tx).unwrap();
        let (state, plans) = RoleState::new(store.clone(), RolesRecord::default(), None);
        Fixture { state, plans, store, _dir: dir }
    }

    fn grains(ip: &str) -> Value {
        json!({"ipv4": [ip], "os_family": "Debian", "hostname": ip})
    }

    /// The cloud's minions: web-1 (webui), db-1 (datastore), w1 (worker, requires datastore).
    fn fleet() -> Vec<(MinionId, Value)> {
        vec![
            (id("web-1"), grains("10.0.0.1")),
            (id("db-1"), grains("10.0.0.2")),
            (id("w1"), grains("10.0.0.3")),
        ]
    }

    /// What `POST /roles/apply` does, minus git: plan every accepted minion, then apply.
    fn apply(f: &mut Fixture, files: &[(&str, &str)]) -> (RolesApplyResponse, Vec<Out>) {
        let applied = Arc::new(Applied::load(commit(files)).unwrap());
        let input = f.state.input(fleet());
        let planned = assign::plan_all(&applied, &input.minions).unwrap();
        let accepted: Vec<MinionId> = fleet().into_iter().map(|(id, _)| id).collect();
        f.state.apply(applied, planned, &accepted)
    }

    fn assignment(out: &[Out], who: &str) -> Assignment {
        let found: Vec<&Assignment> = out
            .iter()
            .filter(|(id, _)| id.as_str() == who)
            .filter_map(|(_, m)| match m {
                ToMinion::Assign(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "one assignment for {who} in {out:?}");
        found[0].clone()
    }

    /// Runs ticks (at `now`) and planning batches until nothing is left to plan.
    async fn settle(f: &mut Fixture, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        f.state.tick(now);
        while f.state.planning {
            let done = f.plans.recv().await.unwrap();
            out.extend(f.state.planned(done));
            f.state.tick(now);
        }
        out
    }

    fn ok_report(a: &Assignment) -> Converged {
        Converged { commit: a.commit.clone(), serial: a.serial, result: true, ..Converged::default() }
    }

    #[tokio::test]
    async fn apply_pushes_to_connected_minions_and_the_rest_get_it_on_connect() {
        let mut f = fixture();
        let fleet = fleet();
        assert!(f.state.connected(&fleet[0].0, fleet[0].1.clone()).is_empty(), "nothing applied yet");
        let (answer, out) = apply(&mut f, CLOUD);
        assert_eq!(answer.commit, commit(CLOUD).id);
        let rows: Vec<(&str, Vec<String>, bool, bool)> =
            answer.minions.iter().map(|m| (m.id.as_str(), m.roles.clone(), m.changed, m.connected)).collect();
        assert_eq!(
            rows,
            [
                ("web-1", vec!["webui".to_string()], true, true),
                ("db-1", vec!["datastore".to_string()], true, false),
                ("w1", vec!["worker".to_string()], true, false),
            ]
        );
        assert_eq!(out.len(), 1, "only the connected minion is sent its assignment now");
        let web = assignment(&out, "web-1");
        assert_eq!(web.roles, ["webui"]);
        assert_eq!(web.files.len(), 3);
        assert!(web.peers.is_empty() && web.pillar.is_empty());

        // db-1 connects with the grains it was planned with: its assignment goes at once
        let out = f.state.connected(&fleet[1].0, fleet[1].1.clone());
        let db = assignment(&out, "db-1");
        assert_eq!(db.roles, ["datastore"]);
        // w1 connects with other grains: planned again, then sent
        let out = f.state.connected(&id("w1"), json!({"ipv4": ["10.9.9.9"]}));
        assert!(out.is_empty());
        let out = settle(&mut f, Instant::now()).await;
        let w1 = assignment(&out, "w1");
        assert_eq!(w1.roles, ["worker"]);
        assert_eq!(w1.peers.keys().collect::<Vec<_>>(), ["datastore"]);

        // the same commit again changes nothing, but is pushed with a higher serial
        let (answer, out) = apply(&mut f, CLOUD);
        assert!(answer.minions.iter().all(|m| !m.changed), "{answer:?}");
        assert!(assignment(&out, "web-1").serial > web.serial);

        // a commit without a minion's roles gives it an empty assignment (it stops its daemons)
        let mut files = CLOUD.to_vec();
        files[0] = ("roles/top.yaml", "'db-*': [datastore]\n");
        let (answer, out) = apply(&mut f, &files);
        let web = assignment(&out, "web-1");
        assert!(web.roles.is_empty() && web.files.is_empty());
        assert!(answer.minions.iter().find(|m| m.id == "web-1").unwrap().changed);
    }

    #[tokio::test]
    async fn the_file_server_serves_the_manifest_and_nothing_else() {
        let mut f = fixture();
        for (id, g) in fleet() {
            f.state.connected(&id, g);
        }
        let (_, out) = apply(&mut f, CLOUD);
        let w1 = assignment(&out, "w1");
        let own = w1.files["states/coins/worker.toml"].clone();
        let secret = sha256_hex(b"states: [db.server]\npillar: {password: s3cret}\n"); // roles/datastore.yaml
        let unnamed = sha256_hex(b"not named by any plan\n"); // in the commit, in no plan
        let answers =
            f.state.fetch(&id("w1"), vec![own.clone(), secret.clone(), unnamed.clone(), "../x".into()]);
        assert_eq!(answers.len(), 1);
        let ToMinion::Files { blobs, missing } = &answers[0] else { panic!("{answers:?}") };
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].sha256, own);
        assert_eq!(sha256_hex(&blobs[0].data), own);
        assert_eq!(missing, &[secret.clone(), unnamed, "../x".to_string()]);
        // the datastore may fetch its own role file
        let ToMinion::Files { blobs, .. } = &f.state.fetch(&id("db-1"), vec![secret])[0] else { panic!() };
        assert_eq!(blobs.len(), 1);
        // a minion without an assignment gets nothing
        let ToMinion::Files { blobs, missing } = &f.state.fetch(&id("stranger"), vec![own])[0] else {
            panic!()
        };
        assert!(blobs.is_empty() && missing.len() == 1);
    }

    #[tokio::test]
    async fn a_tested_commit_is_served_to_its_trial_while_the_job_runs_and_no_longer() {
        let mut f = fixture();
        for (id, g) in fleet() {
            f.state.connected(&id, g);
        }
        apply(&mut f, CLOUD);
        let mut files = CLOUD.to_vec();
        for (path, text) in files.iter_mut() {
            if *path == "states/coins/worker.toml" {
                *text = "hostname = \"tested\"\n";
            }
        }
        let tested = Arc::new(Applied::load(commit(&files)).unwrap());
        let input = f.state.input(fleet());
        let planned = assign::plan_all(&tested, &input.minions).unwrap();
        let a = RoleState::trial_assignment(&tested, &planned[&id("w1")]);
        assert_eq!((a.serial, &a.commit), (0, &tested.commit), "never installed: no serial");
        let new = a.files["states/coins/worker.toml"].clone();
        let fetch = |state: &RoleState, who: &str| match &state.fetch(&id(who), vec![new.clone()])[0] {
            ToMinion::Files { blobs, .. } => blobs.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(fetch(&f.state, "w1"), 0, "not applied, not under test: not served");
        let jid = Jid::generate();
        f.state.begin_trial(&jid, &id("w1"), tested.clone(), &a);
        assert_eq!(fetch(&f.state, "w1"), 1, "served to the minion testing it");
        assert_eq!(fetch(&f.state, "db-1"), 0, "and to no other");
        f.state.end_trials(&Jid::generate());
        assert_eq!(fetch(&f.state, "w1"), 1, "another job's end changes nothing");
        f.state.end_trials(&jid);
        assert_eq!(fetch(&f.state, "w1"), 0, "the grant ends with its job");
    }

    #[tokio::test]
    async fn large_answers_are_split_under_the_frame_limit() {
        let mut f = fixture();
        let big: Vec<String> = (0..3).map(|i| format!("{i}{}", "x".repeat(3 << 20))).collect();
        let state = "a:\n  file.managed:\n    - name: /a\n    - source: big/a\nb:\n  file.managed:\n    - name: /b\n    - source: big/b\nc:\n  file.managed:\n    - name: /c\n    - source: big/c\n";
        let files = [
            ("roles/top.yaml", "'*': [big]\n"),
            ("roles/big.yaml", "states: [big.files]\n"),
            ("states/big/files.yaml", state),
            ("states/big/a", big[0].as_str()),
            ("states/big/b", big[1].as_str()),
            ("states/big/c", big[2].as_str()),
        ];
        f.state.connected(&id("w1"), grains("10.0.0.3"));
        let (_, out) = apply(&mut f, &files);
        let a = assignment(&out, "w1");
        let wanted: Vec<String> = a.files.values().cloned().collect();
        let answers = f.state.fetch(&id("w1"), wanted);
        assert_eq!(answers.len(), 2, "3 × 3 MiB do not fit one frame");
        let served: usize = answers
            .iter()
            .map(|m| {
                assert!(wire::msg::encode(m).is_ok(), "each answer encodes under MAX_FRAME");
                match m {
                    ToMinion::Files { blobs, missing } => {
                        assert!(missing.is_empty());
                        blobs.len()
                    }
                    _ => 0,
                }
            })
            .sum();
        assert_eq!(served, 5, "role file, state file and the three sources");
    }

    #[tokio::test]
    async fn a_superseded_minion_serves_no_role_until_its_new_container_reports() {
        let mut f = fixture();
        for (id, g) in fleet() {
            f.state.connected(&id, g);
        }
        let (_, out) = apply(&mut f, CLOUD);
        let db = assignment(&out, "db-1");
        f.state.converged(&id("db-1"), ok_report(&db));
        let t0 = Instant::now();
        let out = settle(&mut f, t0).await;
        assert_eq!(assignment(&out, "w1").peers["datastore"].len(), 1);

        f.state.superseded(&id("db-1"));
        assert!(f.state.report_of(&id("db-1")).is_none());
        let out = settle(&mut f, t0 + Duration::from_secs(1)).await;
        assert!(assignment(&out, "w1").peers["datastore"].is_empty());
        f.state.converged(&id("db-1"), ok_report(&db));
        let out = settle(&mut f, t0 + Duration::from_secs(2)).await;
        assert_eq!(assignment(&out, "w1").peers["datastore"].len(), 1);
    }

    #[tokio::test]
    async fn peers_follow_convergence_and_connections_with_coalesced_pushes() {
        let mut f = fixture();
        for (id, g) in fleet() {
            f.state.connected(&id, g);
        }
        let (_, out) = apply(&mut f, CLOUD);
        let t0 = Instant::now();
        assert!(settle(&mut f, t0).await.is_empty(), "nothing serves yet: nothing changes");
        let w1 = assignment(&out, "w1");
        assert!(w1.peers["datastore"].is_empty());
        let db = assignment(&out, "db-1");

        // a report for a serial never sent is dropped
        f.state.converged(&id("db-1"), Converged { serial: db.serial + 1000, ..ok_report(&db) });
        assert!(settle(&mut f, t0 + Duration::from_secs(1)).await.is_empty());

        // db-1 converges: it serves the datastore; w1 (which renders peers) is sent it
        f.state.converged(&id("db-1"), ok_report(&db));
        let out = settle(&mut f, t0 + Duration::from_secs(2)).await;
        assert_eq!(out.len(), 1, "only w1 depends on peers: {out:?}");
        let w1_again = assignment(&out, "w1");
        assert!(w1_again.serial > w1.serial);
        assert_eq!(w1_again.commit, w1.commit);
        assert_eq!(w1_again.peers["datastore"].len(), 1);
        let peer = &w1_again.peers["datastore"][0];
        assert_eq!((peer.id.as_str(), peer.address.as_str()), ("db-1", "10.0.0.2"));
        assert_eq!(peer.grains["roles"], json!(["datastore"]));
        assert_eq!(peer.grains["hostname"], json!("10.0.0.2"));

        // w1's own convergence changes no one's peers: nothing more
        f.state.converged(&id("w1"), ok_report(&w1_again));
        assert!(settle(&mut f, t0 + Duration::from_secs(3)).await.is_empty());

        // a failed apply takes db-1 out, once the interval since the last recompute passed
        f.state.converged(&id("db-1"), Converged { result: false, ..ok_report(&db) });
        assert!(settle(&mut f, t0 + Duration::from_millis(3050)).await.is_empty(), "coalesced");
        let out = settle(&mut f, t0 + Duration::from_millis(3300)).await;
        assert!(assignment(&out, "w1").peers["datastore"].is_empty());
        f.state.converged(&id("db-1"), ok_report(&db));
        let out = settle(&mut f, t0 + Duration::from_secs(5)).await;
        assert_eq!(assignment(&out, "w1").peers["datastore"].len(), 1);
        f.state.disconnected(&id("db-1"));
        let out = settle(&mut f, t0 + Duration::from_secs(6)).await;
        assert!(assignment(&out, "w1").peers["datastore"].is_empty());

        let status = f.state.status(&[id("db-1"), id("w1"), id("nobody")]);
        assert_eq!(status[0].converged_commit.as_deref(), Some(db.commit.as_str()));
        assert_eq!(status[0].result, Some(true));
        assert!(!status[0].connected);
        assert_eq!(status[1].roles, ["worker"]);
        assert_eq!(status[2], RoleStatus { id: "nobody".into(), ..RoleStatus::default() });
    }

    #[tokio::test]
    async fn a_minion_that_cannot_be_planned_keeps_its_assignment_and_says_why() {
        let mut f = fixture();
        let files = [
            ("roles/top.yaml", "'*': [r]\n"),
            ("roles/r.yaml", "states: [s]\n"),
            (
                "states/s.yaml",
                "x:\n  file.managed:\n    - name: /x\n    - contents: \"{{ grains.ipv4 | first }}\"\n",
            ),
        ];
        f.state.connected(&id("w1"), grains("10.0.0.3"));
        let (_, out) = apply(&mut f, &files);
        let before = assignment(&out, "w1");
        f.state.disconnected(&id("w1"));
        // reconnects without the grain its state needs
        assert!(f.state.connected(&id("w1"), json!({})).is_empty());
        assert!(settle(&mut f, Instant::now()).await.is_empty(), "nothing pushed");
        let status = f.state.status(&[id("w1")]);
        assert!(status[0].comment.starts_with("cannot be planned at "), "{status:?}");
        assert!(status[0].comment.contains("states/s.yaml:4:"), "{status:?}");
        assert_eq!(status[0].assigned_commit.as_deref(), Some(before.commit.as_str()));
        let events = f.store.events(0, 100).await.unwrap();
        assert!(events.iter().any(|e| e.tag == "drover/roles/problem" && e.minion.as_deref() == Some("w1")));
    }

    #[tokio::test]
    async fn assignments_and_reports_survive_a_restart() {
        let mut f = fixture();
        f.state.connected(&id("db-1"), grains("10.0.0.2"));
        let (_, out) = apply(&mut f, CLOUD);
        let db = assignment(&out, "db-1");
        f.state.converged(&id("db-1"), ok_report(&db));
        let saved = f.store.load_roles().await.unwrap();
        let (applied_commit, tree) = saved.applied.clone().unwrap();
        assert_eq!(applied_commit, db.commit);
        assert_eq!(tree.len(), CLOUD.len());
        let applied = Applied::load(commit(CLOUD)).unwrap();
        let (mut state, _plans) = RoleState::new(f.store.clone(), saved, Some(applied));
        let status = state.status(&[id("db-1"), id("w1")]);
        assert_eq!(status[0].roles, ["datastore"]);
        assert_eq!(status[0].result, Some(true));
        assert_eq!(status[1].assigned_commit.as_deref(), Some(db.commit.as_str()));
        assert!(!status[0].connected);
        // after a restart the peers it was planned with are unknown: planned again on connect
        assert!(state.connected(&id("db-1"), grains("10.0.0.2")).is_empty());
        assert!(state.to_plan.contains(&id("db-1")));
    }
}
