//! Jobs: targets resolved over the accepted minions, jobs sent (a window at a time with a
//! batch), returns accepted only from a minion the job was sent to, their acknowledgement
//! once the store committed them, timeouts, and kills.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{Batch, KeyState, KillResponse, MinionReturn, RunResponse, TargetType};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use wire::msg::encode;
use wire::{Assignment, Jid, Job, JobReturn, MinionId, ToMinion};

use super::Hub;
use crate::assign::Applied;
use crate::jobs;
use crate::limits::Reason;
use crate::store::Stored;
use targeting::{Candidate, Nodegroups, Target};

/// The largest return (its frame) the master keeps; a larger one is stored as a failure
/// saying so. A minion cuts each output at `wire::msg::MAX_OUTPUT`, far below it.
pub(super) const MAX_RETURN: usize = 4 << 20;

pub(super) struct ActiveJob {
    body: Vec<u8>,
    /// The body for a minion that gets its own (a trial's assignment), instead of `body`.
    bodies: HashMap<MinionId, Vec<u8>>,
    targeted: Vec<MinionId>,
    timeout: Duration,
    window: usize,
    queue: VecDeque<MinionId>,
    /// Minions sent the job and not yet returned, with when it was sent.
    in_flight: HashMap<MinionId, Instant>,
    returns: BTreeMap<String, MinionReturn>,
    timed_out: Vec<String>,
    not_connected: Vec<String>,
    /// Queued minions dropped when the job was killed: they never get it.
    not_run: Vec<String>,
    reply: Option<oneshot::Sender<RunResponse>>,
}

impl ActiveJob {
    /// Whether the job was sent to `id` (it may have returned or timed out since).
    pub(super) fn was_sent(&self, id: &MinionId) -> bool {
        self.in_flight.contains_key(id)
            || self.returns.contains_key(id.as_str())
            || self.timed_out.binary_search_by(|t| t.as_str().cmp(id.as_str())).is_ok()
    }
}

fn minion_return(r: &JobReturn) -> MinionReturn {
    MinionReturn {
        success: r.success,
        retcode: r.retcode,
        ret: r.ret.clone(),
        started_ms: r.started_ms,
        finished_ms: r.finished_ms,
    }
}

/// What is stored instead of a return over [`MAX_RETURN`]: a failure that says so.
fn too_large(ret: JobReturn, bytes: usize) -> JobReturn {
    JobReturn {
        success: false,
        retcode: 1,
        ret: Value::String(format!(
            "the return of this job was {} KiB, over the {} KiB the master keeps for one return: \
             have the function return less (write large output to a file)",
            bytes >> 10,
            MAX_RETURN >> 10
        )),
        ..ret
    }
}

/// `grains` with `roles` holding the reported roles and `assigned` ones.
fn with_roles(grains: &Value, assigned: &[String]) -> Value {
    let mut grains = grains.clone();
    if let Value::Object(map) = &mut grains {
        let mut roles: Vec<Value> = match map.get("roles") {
            Some(Value::Array(reported)) => reported.clone(),
            _ => Vec::new(),
        };
        roles.extend(assigned.iter().map(|r| Value::from(r.as_str())));
        map.insert("roles".into(), Value::Array(roles));
    }
    grains
}

impl Hub {
    /// A return from `id`'s session, `bytes` long on the wire. Kept only for a job the
    /// master sent to `id`: one the hub runs, or, when the hub knows nothing of the jid (a
    /// job from before the master's last start, or finished), one the store has recorded
    /// with `id` targeted. A return refused for good is acknowledged all the same, so the
    /// minion stops resending it; one over the rate limit is not (it comes again later).
    pub(super) fn on_return(
        &mut self,
        id: &MinionId,
        routing: &[u8],
        mut ret: JobReturn,
        bytes: usize,
        now: Instant,
    ) {
        if ret.id != *id {
            self.drops.note(id.as_str(), Reason::ReturnOtherId);
            return;
        }
        if !self.limits(id, now).take_return(now, bytes) {
            self.drops.note(id.as_str(), Reason::ReturnRate);
            return;
        }
        if bytes > MAX_RETURN {
            self.drops.note(id.as_str(), Reason::ReturnTooLarge);
            ret = too_large(ret, bytes);
        }
        let queued = match self.jobs.get(&ret.jid).map(|job| job.was_sent(id)) {
            Some(true) => self.store.insert_return(ret),
            Some(false) => {
                self.drops.note(id.as_str(), Reason::ReturnNotSent);
                self.send(routing, &ToMinion::Ack { jid: ret.jid });
                return;
            }
            None => self.store.insert_return_if_targeted(ret),
        };
        if let Err(e) = queued {
            tracing::error!(error = %e, "cannot queue a return");
        }
    }

    pub(super) fn on_stored(&mut self, rets: Vec<Stored>) {
        let mut touched = Vec::new();
        for Stored { ret: r, kept, fresh } in rets {
            if let Some(s) = self.sessions.get(&r.id) {
                self.send(&s.routing.clone(), &ToMinion::Ack { jid: r.jid.clone() });
            }
            if !kept {
                self.drops.note(r.id.as_str(), Reason::ReturnNotSent);
                continue;
            }
            if fresh {
                self.event(&r.id, &jobs::ret_tag(&r.jid, &r.id), jobs::ret_data(&r));
            }
            let sent = self.jobs.get_mut(&r.jid).and_then(|job| job.in_flight.remove(&r.id));
            self.metrics.returned(r.success, sent.map(|at| at.elapsed()));
            if let (Some(job), Some(_)) = (self.jobs.get_mut(&r.jid), sent) {
                job.returns.insert(r.id.to_string(), minion_return(&r));
                touched.push(r.jid.clone());
            }
        }
        touched.dedup();
        for jid in touched {
            self.pump(&jid);
        }
    }

    /// Sends the job to as many queued minions as its window allows; completes it when
    /// nothing is queued or in flight.
    pub(super) fn pump(&mut self, jid: &Jid) {
        let Some(job) = self.jobs.get_mut(jid) else { return };
        let mut unsent = Vec::new();
        while job.in_flight.len() < job.window {
            let Some(id) = job.queue.pop_front() else { break };
            match self.sessions.get(&id) {
                Some(s) => {
                    self.out.send(&s.routing, job.bodies.get(&id).unwrap_or(&job.body));
                    job.in_flight.insert(id, Instant::now());
                }
                None => {
                    job.not_connected.push(id.to_string());
                    unsent.push(id);
                }
            }
        }
        // so that the store does not count them busy with it
        if !unsent.is_empty()
            && let Err(e) = self.store.unsent(jid.clone(), unsent)
        {
            tracing::error!(%jid, error = %e, "cannot note the minions a job never reached");
        }
        if job.queue.is_empty() && job.in_flight.is_empty() {
            let job = self.jobs.remove(jid).expect("present");
            if !job.bodies.is_empty() {
                self.roles.end_trials(jid);
            }
            if let Some(reply) = job.reply {
                let _ = reply.send(RunResponse {
                    jid: jid.to_string(),
                    targeted: job.targeted.iter().map(ToString::to_string).collect(),
                    returns: job.returns,
                    timed_out: job.timed_out,
                    not_connected: job.not_connected,
                    not_run: job.not_run,
                });
            }
        }
    }

    /// Drops what the job's batch has not sent yet (those minions never get it), and sends
    /// the kill to every minion of `busy` that is connected (each returns the job as
    /// killed, or says it does not run it). The job, if it runs here, ends as usual once
    /// the busy minions returned or timed out.
    pub(super) fn kill(&mut self, jid: Jid, fun: String, busy: Vec<MinionId>) -> KillResponse {
        let mut not_run: Vec<MinionId> = Vec::new();
        if let Some(job) = self.jobs.get_mut(&jid) {
            not_run = job.queue.drain(..).collect();
            job.not_run.extend(not_run.iter().map(ToString::to_string));
        }
        if !not_run.is_empty()
            && let Err(e) = self.store.unsent(jid.clone(), not_run.clone())
        {
            tracing::error!(%jid, error = %e, "cannot note the minions a job never reached");
        }
        let (mut sent, mut not_connected) = (Vec::new(), Vec::new());
        let kill = ToMinion::Kill { jid: jid.clone(), fun };
        for id in busy.into_iter().filter(|id| !not_run.contains(id)) {
            match self.sessions.get(&id) {
                Some(s) => {
                    self.send(&s.routing, &kill);
                    sent.push(id.to_string());
                }
                None => not_connected.push(id.to_string()),
            }
        }
        tracing::info!(%jid, ?sent, ?not_connected, not_run = not_run.len(), "killing a job");
        self.pump(&jid);
        KillResponse {
            jid: jid.to_string(),
            sent,
            not_connected,
            not_run: not_run.iter().map(ToString::to_string).collect(),
        }
    }

    /// Which accepted minions `target` selects. `R@role` matches the roles a minion is
    /// assigned as well as those its grains report. `N@` names the nodegroups of the
    /// applied commit; `I@` sees the pillar of a minion's assigned roles at that commit
    /// (computed only for targets that have an `I@` term).
    pub(super) fn resolve(&self, target: &str, tgt_type: TargetType) -> Result<Vec<MinionId>, String> {
        let applied = self.roles.applied();
        let no_groups = Nodegroups::default();
        let groups = applied.map_or(&no_groups, |a| &a.nodegroups);
        let target = Target::parse_with(target, tgt_type, groups).map_err(|e| e.to_string())?;
        let pillars = applied.filter(|_| target.uses_pillar());
        let empty = json!({});
        Ok(self
            .keys
            .ids(KeyState::Accepted)
            .into_iter()
            .filter(|id| {
                let grains = self.known.get(id).map(|(g, _)| g).unwrap_or(&empty);
                let assigned = self.roles.roles_of(id).filter(|r| !r.is_empty());
                let pillar = pillars.map(|a| a.pillar_of(assigned.unwrap_or_default()));
                let pillar = pillar.as_ref();
                match assigned {
                    Some(assigned) => {
                        let grains = with_roles(grains, assigned);
                        target.matches(&Candidate { id: id.as_str(), grains: &grains, pillar })
                    }
                    None => target.matches(&Candidate { id: id.as_str(), grains, pillar }),
                }
            })
            .collect())
    }

    pub(super) fn start(
        &mut self,
        job: Job,
        targeted: Vec<MinionId>,
        timeout: Duration,
        batch: Option<Batch>,
        bodies: HashMap<MinionId, Vec<u8>>,
        reply: oneshot::Sender<RunResponse>,
    ) {
        let jid = job.jid.clone();
        let body = match encode(&ToMinion::Job(job)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(%jid, error = %e, "cannot encode job");
                return;
            }
        };
        let window = batch.map_or(targeted.len(), |b| b.window(targeted.len())).max(1);
        self.metrics.jobs_published.inc();
        self.jobs.insert(
            jid.clone(),
            ActiveJob {
                body,
                bodies,
                queue: targeted.iter().cloned().collect(),
                targeted,
                timeout,
                window,
                in_flight: HashMap::new(),
                returns: BTreeMap::new(),
                timed_out: Vec::new(),
                not_connected: Vec::new(),
                not_run: Vec::new(),
                reply: Some(reply),
            },
        );
        self.pump(&jid);
    }

    /// A trial (`roles apply --test`): `job` sent to each minion of `assignments` with its
    /// own assignment as the `assignment` argument; while it runs, each may fetch the files
    /// of that assignment.
    pub(super) fn trial(
        &mut self,
        job: Job,
        applied: Arc<Applied>,
        assignments: BTreeMap<MinionId, Assignment>,
        timeout: Duration,
        reply: oneshot::Sender<RunResponse>,
    ) {
        let mut bodies = HashMap::new();
        for (id, a) in &assignments {
            let mut own = job.clone();
            own.kwargs.insert("assignment".into(), serde_json::to_value(a).unwrap_or_default());
            match encode(&ToMinion::Job(own)) {
                Ok(body) => {
                    bodies.insert(id.clone(), body);
                    self.roles.begin_trial(&job.jid, id, applied.clone(), a);
                }
                Err(e) => tracing::error!(%id, error = %e, "cannot encode a trial job"),
            }
        }
        let targeted = assignments.into_keys().collect();
        self.start(job, targeted, timeout, None, bodies, reply)
    }

    /// Counts as timed out each minion a job was sent to longer than its timeout ago, and
    /// sends those jobs' next minions.
    pub(super) fn time_out_jobs(&mut self, now: Instant) {
        let mut touched = Vec::new();
        for (jid, job) in &mut self.jobs {
            let before = job.in_flight.len();
            job.in_flight.retain(|id, sent| {
                let keep = *sent + job.timeout > now;
                if !keep {
                    job.timed_out.push(id.to_string());
                }
                keep
            });
            self.metrics.job_timeouts.inc_by((before - job.in_flight.len()) as u64);
            if job.in_flight.len() != before {
                job.timed_out.sort();
                touched.push(jid.clone());
            }
        }
        for jid in touched {
            self.pump(&jid);
        }
    }
}
