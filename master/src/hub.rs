//! The hub: the one owner of connection state and in-flight jobs, fed by messages.
//!
//! Inputs: frames (and stalled connections) from the transport, returns the store has committed, commands
//! from the API, and a tick. Outputs: frames to minions (through [`Outgoing`]), writes to
//! the store, answers to the API. Nothing else holds a session or a job, so there are no
//! locks to order.
//!
//! A minion is *connected* when it said `Hello` with the key accepted for its id and has
//! been heard from within three heartbeat intervals. Only connected minions are sent jobs.
//!
//! One id has one session. Two containers of one fleet slot (a start-first swap, a heal)
//! say hello with the same id and key and their `generation`: the higher one has the
//! session, the other is answered `Superseded` (and says hello again every few seconds, so
//! it is the minion again once the higher one is gone). A session keeps the minion's last
//! `Health` and whether it reported convergence since it began.
//!
//! The roles side (assignments, reports, peers, the file server) is [`RoleState`], a part
//! of the hub: told of every connection and disconnection, it answers with the messages to
//! send. Plans it asks for run on blocking threads and come back on their own channel.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{
    Batch, KeyAction, KeyActionRequest, KeyActionResponse, KeyList, KeyState, KillResponse, MinionReturn,
    MinionStatus, RoleStatus, RolesApplyResponse, RunResponse, TargetType,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::msg::{MAX_HELLO, decode, encode, now_ms};
use wire::{Assignment, Converged, Hello, Jid, Job, JobReturn, MinionId, PublicKey, ToMaster, ToMinion};

use crate::assign::{Applied, Planned};
use crate::autosign::Autosign;
use crate::jobs;
use crate::limits::{DROPS_INTERVAL, Drops, KeyRefusal, MAX_PENDING, MinionLimits, NewKeys, Reason};
use crate::metrics::Metrics;
use crate::pki::KeyStore;
use crate::roles::{Out, PlanDone, RoleState, RolesInput};
use crate::store::{Store, Stored};
use crate::transport::{Incoming, Outgoing};
use targeting::{Candidate, Nodegroups, Target};

/// What the API asks of the hub.
pub enum Command {
    /// Which accepted minions `target` selects.
    Resolve {
        target: String,
        tgt_type: TargetType,
        reply: oneshot::Sender<Result<Vec<MinionId>, String>>,
    },
    /// Publish a job already recorded in the store; `reply` fires when every targeted
    /// minion returned or timed out.
    Start {
        job: Job,
        targeted: Vec<MinionId>,
        timeout: Duration,
        batch: Option<Batch>,
        reply: oneshot::Sender<RunResponse>,
    },
    /// Like `Start`, for `roles apply --test`: each minion is sent `job` with its own
    /// assignment at `applied`'s commit as the `assignment` argument, and may fetch that
    /// assignment's files until the job ends.
    Trial {
        job: Job,
        applied: Arc<Applied>,
        assignments: BTreeMap<MinionId, Assignment>,
        timeout: Duration,
        reply: oneshot::Sender<RunResponse>,
    },
    Keys {
        reply: oneshot::Sender<KeyList>,
    },
    KeyAction {
        req: KeyActionRequest,
        reply: oneshot::Sender<Result<KeyActionResponse, String>>,
    },
    Minions {
        reply: oneshot::Sender<Vec<MinionStatus>>,
    },
    /// What a `roles apply` or `roles diff` plans from.
    RolesInput {
        reply: oneshot::Sender<RolesInput>,
    },
    /// Record and push the assignments of a validated commit, planned from `RolesInput`.
    RolesApply {
        applied: Arc<Applied>,
        planned: BTreeMap<MinionId, Planned>,
        reply: oneshot::Sender<RolesApplyResponse>,
    },
    RolesStatus {
        reply: oneshot::Sender<Vec<RoleStatus>>,
    },
    /// Each minion's last convergence report, if it answers an assignment of at least that
    /// serial (`roles apply` waiting for the assignments it sent).
    Reports {
        serials: Vec<(MinionId, u64)>,
        reply: oneshot::Sender<Vec<Option<Converged>>>,
    },
    /// How these minions stand, in the order asked (the fleet controller polls it while it
    /// waits for slots: a few lookups per id, whatever the number of minions).
    MinionViews {
        ids: Vec<MinionId>,
        reply: oneshot::Sender<Vec<MinionView>>,
    },
    /// End job `jid` (`crate::jobs::kill`): send `ToMinion::Kill` to each of `busy` (the
    /// minions the store counts busy with it) that is connected, and drop what a batch of
    /// it has not sent yet.
    Kill {
        jid: Jid,
        fun: String,
        busy: Vec<MinionId>,
        reply: oneshot::Sender<KillResponse>,
    },
}

/// One minion as the fleet controller sees it ([`Command::MinionViews`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MinionView {
    pub id: MinionId,
    /// Welcomed, and heard from within three heartbeats.
    pub connected: bool,
    /// The generation its session's hello gave; none when not connected.
    pub generation: Option<u64>,
    /// Its last convergence report, if one came on its current session.
    pub converged: Option<ConvergedView>,
    /// Its own verdict (`wire::Health`) as last reported on its current session.
    pub healthy: Option<bool>,
    pub problem: Option<String>,
}

/// The parts of a convergence report the fleet controller needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergedView {
    pub commit: String,
    /// Every state succeeded, and no required role is waited for.
    pub result: bool,
    /// The first failing state, or what it waits for.
    pub comment: String,
    /// Some state failed (not only a required role waited for).
    pub failed: bool,
    /// The report is about the commit of its current assignment.
    pub current: bool,
}

/// The most bytes the JSON data of one minion event may take.
const MAX_EVENT_DATA: usize = 64 << 10;

/// The largest return (its frame) the master keeps; a larger one is stored as a failure
/// saying so. A minion cuts each output at `wire::msg::MAX_OUTPUT`, far below it.
const MAX_RETURN: usize = 4 << 20;

/// The most bytes of file-server answers sent at once to one minion (at least one message
/// goes); the rest waits for a later tick.
const FETCH_SERVE_BYTES: usize = 4 << 20;

/// How often limits at rest are forgotten.
const LIMITS_GC: Duration = Duration::from_secs(10);

struct Session {
    routing: Vec<u8>,
    key: PublicKey,
    last_seen: Instant,
    /// Of the container this connection speaks for (`Hello::generation`).
    generation: u64,
    /// The minion's own verdict, as it last reported it on this session.
    health: Option<wire::Health>,
    /// Whether a convergence report was recorded on this session.
    reported: bool,
}

/// Which minion a connection said it is (its last Hello), and when it was last heard.
struct Route {
    id: MinionId,
    seen: Instant,
    /// Its last hello was welcomed (its key is the accepted one): only such a route's
    /// stall counts against its minion.
    welcomed: bool,
}

/// How long a welcomed connection is remembered after its last message: longer than the
/// transport takes to find that it does not read (`transport::STALL_AFTER`).
const WELCOMED_ROUTE_MEMORY: Duration = Duration::from_secs(60);

struct ActiveJob {
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
    fn was_sent(&self, id: &MinionId) -> bool {
        self.in_flight.contains_key(id)
            || self.returns.contains_key(id.as_str())
            || self.timed_out.binary_search_by(|t| t.as_str().cmp(id.as_str())).is_ok()
    }
}

pub struct Hub {
    keys: KeyStore,
    store: Store,
    out: Outgoing,
    heartbeat: Duration,
    auto_accept: bool,
    /// `DIR/autosign_grains`: new keys accepted by a grain their hello carries.
    autosign: Option<Autosign>,
    sessions: HashMap<MinionId, Session>,
    /// Every live connection (routing id) → the minion it said it is.
    routes: HashMap<Vec<u8>, Route>,
    /// When `pki/` was last looked at, and what its folders' times were then.
    pki_checked: (Instant, Vec<Option<std::time::SystemTime>>),
    /// Connections of minions whose key waits in `pending/`, to nudge them on accept.
    pending_routes: HashMap<MinionId, Vec<u8>>,
    /// Last grains and last-seen time of every minion ever seen (from the store at start).
    known: HashMap<MinionId, (Value, u64)>,
    jobs: HashMap<Jid, ActiveJob>,
    /// What each minion with a session (or recently one) may still send.
    limits: HashMap<MinionId, MinionLimits>,
    limits_gc: Instant,
    /// What was dropped, per minion and reason; logged on the tick.
    drops: Drops,
    /// Whether one more new key may wait in `pending/`.
    new_keys: NewKeys,
    /// Minions whose connection did not read what it was sent, with that connection: each
    /// is refused until the transport says libzmq let go of all it held for it.
    stalled: HashMap<MinionId, Vec<u8>>,
    /// Connections with more than `transport::BUSY_BYTES` waiting: no file-server answer is
    /// added until they are ready again.
    busy: HashSet<Vec<u8>>,
    roles: RoleState,
    /// Finished plans of `roles`; taken by `run`.
    plans: Option<mpsc::UnboundedReceiver<PlanDone>>,
    metrics: Arc<Metrics>,
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

impl Hub {
    pub fn new(
        keys: KeyStore,
        store: Store,
        out: Outgoing,
        heartbeat: Duration,
        auto_accept: bool,
        known: HashMap<MinionId, (Value, u64)>,
        roles: (RoleState, mpsc::UnboundedReceiver<PlanDone>),
    ) -> Self {
        Self {
            keys,
            store,
            out,
            heartbeat,
            auto_accept,
            autosign: None,
            sessions: HashMap::new(),
            routes: HashMap::new(),
            pki_checked: (Instant::now(), Vec::new()),
            pending_routes: HashMap::new(),
            known,
            jobs: HashMap::new(),
            limits: HashMap::new(),
            limits_gc: Instant::now(),
            drops: Drops::new(DROPS_INTERVAL, Arc::default()),
            new_keys: NewKeys::new(MAX_PENDING, Instant::now()),
            stalled: HashMap::new(),
            busy: HashSet::new(),
            roles: roles.0,
            plans: Some(roles.1),
            metrics: Arc::default(),
        }
    }

    /// Counts into `metrics` (the master's, which `GET /metrics` serves) instead of a set
    /// of its own.
    /// Accepts the new keys whose hello grains a file of `autosign` lists.
    pub fn with_autosign(mut self, autosign: Autosign) -> Self {
        self.autosign = Some(autosign);
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.drops = Drops::new(DROPS_INTERVAL, metrics.clone());
        self.metrics = metrics;
        self
    }

    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut stored: mpsc::UnboundedReceiver<Vec<Stored>>,
        mut commands: mpsc::Receiver<Command>,
        token: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut plans = self.plans.take().expect("run once");
        loop {
            tokio::select! {
                // minions' messages first: after a stall, heartbeats that waited in the
                // queue must count before the tick judges who went silent
                biased;
                _ = token.cancelled() => break,
                Some(msg) = incoming.recv() => {
                    self.on_incoming(msg);
                    while let Ok(msg) = incoming.try_recv() {
                        self.on_incoming(msg);
                    }
                }
                Some(rets) = stored.recv() => self.on_stored(rets),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(done) = plans.recv() => {
                    let out = self.roles.planned(done);
                    self.deliver(out);
                }
                _ = tick.tick() => self.on_tick(),
                else => break,
            }
            self.metrics.connected.set(self.sessions.len() as i64);
        }
    }

    fn send(&self, routing: &[u8], msg: &ToMinion) {
        match encode(msg) {
            Ok(body) => self.out.send(routing, &body),
            Err(e) => tracing::error!(error = %e, "cannot encode a message for a minion"),
        }
    }

    /// Sends each message to its minion, if it is connected.
    fn deliver(&self, out: Vec<Out>) {
        for (id, msg) in out {
            if let Some(s) = self.sessions.get(&id) {
                self.send(&s.routing, &msg);
            }
        }
    }

    fn event(&self, minion: &MinionId, tag: &str, data: Value) {
        if let Err(e) = self.store.event(Some(minion), tag, data) {
            tracing::error!(error = %e, "cannot record event");
        }
    }

    fn limits(&mut self, id: &MinionId, now: Instant) -> &mut MinionLimits {
        self.limits.entry(id.clone()).or_insert_with(|| MinionLimits::new(now))
    }

    fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Message { routing, key, body } => self.on_message(routing, key, body),
            Incoming::Stalled { routing, queued } => self.on_stalled(routing, queued),
            Incoming::Drained { routing } => self.stalled.retain(|_, r| *r != routing),
            Incoming::Busy { routing } => {
                self.busy.insert(routing);
            }
            Incoming::Ready { routing } => {
                self.busy.remove(&routing);
            }
        }
    }

    /// A connection did not read what it was sent; the transport dropped its queue. Its
    /// session ends, and its minion is refused until the master's side of that connection
    /// is drained.
    fn on_stalled(&mut self, routing: Vec<u8>, queued: usize) {
        // only a connection welcomed with the minion's accepted key speaks for it: another
        // process presenting its routing id must not get it refused
        let Some(id) = self.routes.get(&routing).filter(|r| r.welcomed).map(|r| r.id.clone()) else {
            tracing::debug!(routing = %wire::routing_label(&routing), "a connection without a session does not read");
            return;
        };
        self.drops.note(id.as_str(), Reason::NotReading);
        self.stalled.insert(id.clone(), routing.clone());
        if let Some(l) = self.limits.get_mut(&id) {
            l.forget_fetch();
        }
        if self.sessions.get(&id).is_some_and(|s| s.routing == routing) {
            self.sessions.remove(&id);
            tracing::warn!(%id, queued, "a minion does not read what the master sends it: its session ends");
            self.roles.disconnected(&id);
            self.event(
                &id,
                "drover/minion/disconnected",
                json!({"id": id, "reason": format!("it did not read what the master sent ({queued} bytes waited)")}),
            );
        }
    }

    fn on_message(&mut self, routing: Vec<u8>, key: Option<PublicKey>, body: Vec<u8>) {
        let Some(key) = key else {
            tracing::debug!("message from a connection without a CURVE key");
            return;
        };
        // Which minion a connection is comes from its Hello only (its key and id; the
        // routing id must name that id too). A minion's routing id carries a random part
        // new for every socket (wire::routing_id), so only that minion can present it again
        // (its redial takes the route over); a route that speaks with another key ends the
        // session below.
        let now = Instant::now();
        let id = match self.routes.get_mut(&routing) {
            Some(route) => {
                route.seen = now;
                Some(route.id.clone())
            }
            None => None,
        };
        // the route was handed over to a connection with another key (only possible to a
        // process that knows the random part of the minion's routing id): the session ends
        // at once, so nothing more for the minion is sent down this route
        if let Some(id) = &id
            && self.sessions.get(id).is_some_and(|s| s.routing == routing && s.key != key)
        {
            self.sessions.remove(id);
            tracing::warn!(%id, presented = %key.fingerprint(), "a connection with another key took a minion's route; the session ends");
            self.roles.disconnected(id);
            self.event(
                id,
                "drover/minion/disconnected",
                json!({"id": id, "reason": "its route was taken by a connection with another key"}),
            );
        }
        let in_session = id
            .as_ref()
            .is_some_and(|id| self.sessions.get(id).is_some_and(|s| s.routing == routing && s.key == key));
        if !in_session && body.len() > MAX_HELLO {
            // not decoded; the connection is named by its routing id (`web-1/…`) and told why
            self.drops.note(&wire::routing_label(&routing), Reason::LargeUnauthenticated);
            let reason = format!(
                "the master reads at most {} KiB from a minion before it is welcomed, and this one sent \
                 {} KiB: its hello carries too many grains; trim its custom grains (DIR/grains.yaml, --grain)",
                MAX_HELLO >> 10,
                body.len() >> 10
            );
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        let msg = match decode::<ToMaster>(&body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(id = ?id, error = %e, "dropped a bad frame");
                return;
            }
        };
        if let ToMaster::Hello(hello) = msg {
            if !wire::routing_id_names(&routing, &hello.id) {
                tracing::warn!(id = %hello.id, routing = %wire::routing_label(&routing), "refused a hello whose routing id names another minion");
                let reason = format!(
                    "this connection's routing id does not name minion '{}': drover-minion presents '<id>/<random>'",
                    hello.id
                );
                self.send(&routing, &ToMinion::Refused { reason });
                return;
            }
            self.routes.insert(routing.clone(), Route { id: hello.id.clone(), seen: now, welcomed: false });
            return self.on_hello(routing, key, hello);
        }
        let (Some(id), true) = (id, in_session) else {
            self.send(&routing, &ToMinion::Rehello);
            return;
        };
        if let Some(s) = self.sessions.get_mut(&id) {
            s.last_seen = now;
        }
        match msg {
            ToMaster::Hello(_) => unreachable!("handled above"),
            ToMaster::Heartbeat { seq } => self.send(&routing, &ToMinion::HeartbeatAck { seq }),
            ToMaster::Return(ret) => self.on_return(&id, &routing, ret, body.len(), now),
            ToMaster::Fetch { sha256 } => {
                let busy = self.busy.contains(&routing);
                let limits = self.limits(&id, now);
                if busy {
                    limits.defer(sha256);
                } else if let Some(wanted) = limits.fetch(now, sha256) {
                    self.serve_fetch(&id, &routing, wanted, now);
                }
            }
            ToMaster::Converged(report) => {
                if self.roles.converged(&id, report)
                    && let Some(s) = self.sessions.get_mut(&id)
                {
                    s.reported = true;
                }
            }
            ToMaster::Health(health) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.health = Some(bounded_health(health));
                }
            }
            ToMaster::Event(event) => self.on_event(&id, event, now),
        }
    }

    /// A return from `id`'s session, `bytes` long on the wire. Kept only for a job the
    /// master sent to `id`: one the hub runs, or, when the hub knows nothing of the jid (a
    /// job from before the master's last start, or finished), one the store has recorded
    /// with `id` targeted. A return refused for good is acknowledged all the same, so the
    /// minion stops resending it; one over the rate limit is not (it comes again later).
    fn on_return(&mut self, id: &MinionId, routing: &[u8], mut ret: JobReturn, bytes: usize, now: Instant) {
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

    /// An event from `id`: filed under its own namespace, `drover/minion/<id>/<tag>`, so
    /// that it can never pass for one of the master's events.
    fn on_event(&mut self, id: &MinionId, event: wire::Event, now: Instant) {
        if !self.limits(id, now).take_event(now) {
            self.drops.note(id.as_str(), Reason::EventRate);
            return;
        }
        if let Err(why) = check_event(&event) {
            tracing::debug!(%id, why, "dropped an event");
            self.drops.note(id.as_str(), Reason::EventBad);
            return;
        }
        self.metrics.minion_event(&event.tag);
        let event = wire::Event { tag: minion_tag(id, &event.tag), ..event };
        if let Err(e) = self.store.minion_event(id, event) {
            tracing::error!(error = %e, "cannot record event");
        }
    }

    /// Answers a fetch of `wanted` now, up to [`FETCH_SERVE_BYTES`] (at least one message),
    /// charging its bytes to `id`'s file-server budget; the rest waits for the next tick on
    /// which the budget allows and the connection is not busy.
    fn serve_fetch(&mut self, id: &MinionId, routing: &[u8], wanted: Vec<String>, now: Instant) {
        let mut bytes = 0;
        let mut later = Vec::new();
        for answer in self.roles.fetch(id, wanted) {
            if bytes >= FETCH_SERVE_BYTES {
                if let ToMinion::Files { blobs, missing } = answer {
                    later.extend(blobs.into_iter().map(|b| b.sha256).chain(missing));
                }
                continue;
            }
            match encode(&answer) {
                Ok(body) => {
                    bytes += body.len();
                    self.out.send(routing, &body);
                }
                Err(e) => tracing::error!(%id, error = %e, "cannot encode the files for a minion"),
            }
        }
        let limits = self.limits(id, now);
        limits.served(now, bytes);
        limits.defer(later);
    }

    fn on_hello(&mut self, routing: Vec<u8>, key: PublicKey, hello: Hello) {
        let id = hello.id.clone();
        if self.stalled.contains_key(&id) {
            let reason =
                "the master still holds what it sent this minion on a connection that did not read it; \
                          it takes this minion back once that connection read it or closed"
                    .to_string();
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        if let Some(path) = self.keys.broken(&id) {
            tracing::error!(%id, path = %path.display(), "refused a minion whose key file is unreadable");
            let reason = format!("the master cannot read {}: fix or delete that file", path.display());
            self.send(&routing, &ToMinion::Refused { reason });
            return;
        }
        let known = self.keys.lookup(&id);
        match known {
            Some((KeyState::Accepted, k)) if k == key => self.welcome(routing, key, hello),
            Some((state, k)) if k != key && state != KeyState::Rejected => {
                tracing::warn!(
                    %id, presented = %key.fingerprint(), expected = %k.fingerprint(),
                    "refused a connection: another key is registered for this id"
                );
                self.event(
                    &id,
                    "drover/key/mismatch",
                    json!({"id": id, "presented": key.fingerprint(), "registered": k.fingerprint(), "state": state}),
                );
                self.send(
                    &routing,
                    &ToMinion::Refused {
                        reason: format!(
                            "another key is registered for '{id}'; if this minion's key really changed, \
                             run 'drover key delete {id}' on the master"
                        ),
                    },
                );
            }
            Some((KeyState::Rejected, _)) => {
                let reason = format!(
                    "the key of '{id}' is rejected; 'drover key delete {id}' on the master lets it register again"
                );
                self.send(&routing, &ToMinion::Refused { reason });
            }
            Some((KeyState::Pending, _)) | None => {
                let signed = match &mut self.autosign {
                    Some(a) if !self.auto_accept => a.check(&hello.grains),
                    _ => None,
                };
                let state =
                    if self.auto_accept || signed.is_some() { KeyState::Accepted } else { KeyState::Pending };
                // a key never seen waits in pending/ only if the cap and the rate allow
                if known.is_none() && state == KeyState::Pending {
                    let keys = &self.keys;
                    if let Err(refusal) =
                        self.new_keys.admit(Instant::now(), || keys.ids(KeyState::Pending).len())
                    {
                        let reason = match refusal {
                            KeyRefusal::Full { .. } => Reason::PendingFull,
                            KeyRefusal::Rate => Reason::NewKeyRate,
                        };
                        self.drops.note(id.as_str(), reason);
                        self.send(&routing, &ToMinion::Refused { reason: refusal.to_string() });
                        return;
                    }
                }
                // a pending minion says hello every interval: write only what changes
                let unchanged = known.is_some() && state == KeyState::Pending;
                if !unchanged && let Err(e) = self.keys.put(state, &id, &key) {
                    tracing::error!(%id, error = %e, "cannot record a minion key");
                    let reason = format!("the master cannot record this minion's key: {e}");
                    self.send(&routing, &ToMinion::Refused { reason });
                    return;
                }
                if known.is_none() {
                    tracing::info!(%id, fingerprint = %key.fingerprint(), ?state, "new minion key");
                    self.event(
                        &id,
                        "drover/key/new",
                        json!({"id": id, "fingerprint": key.fingerprint(), "state": state}),
                    );
                }
                if let Some(s) = signed {
                    tracing::info!(
                        %id, fingerprint = %key.fingerprint(), grain = %s.grain, value = %s.value,
                        file = %s.file.display(), "key accepted by a grain (autosign)"
                    );
                    self.event(
                        &id,
                        "drover/key/autosign",
                        json!({"id": id, "fingerprint": key.fingerprint(), "grain": s.grain, "value": s.value,
                               "file": s.file.display().to_string(),
                               "reason": format!("grain {} is {:?}, listed in {}", s.grain, s.value, s.file.display())}),
                    );
                }
                if state == KeyState::Accepted {
                    self.welcome(routing, key, hello);
                } else {
                    self.send(&routing, &ToMinion::Pending);
                    self.pending_routes.insert(id, routing);
                }
            }
            Some((KeyState::Accepted, _)) => unreachable!("matched above"),
        }
    }

    fn welcome(&mut self, routing: Vec<u8>, key: PublicKey, hello: Hello) {
        let id = hello.id;
        let generation = hello.generation;
        // a live session of a higher generation (a newer container of the slot) keeps it
        if let Some(live) = self.sessions.get(&id)
            && live.routing != routing
            && live.generation > generation
        {
            tracing::debug!(%id, generation, live = live.generation, "a hello of an older generation: superseded");
            self.send(&routing, &ToMinion::Superseded { by: live.generation });
            return;
        }
        if let Some(route) = self.routes.get_mut(&routing) {
            route.welcomed = true;
        }
        self.pending_routes.remove(&id);
        let session = Session {
            routing: routing.clone(),
            key,
            last_seen: Instant::now(),
            generation,
            health: None,
            reported: false,
        };
        let previous = self.sessions.insert(id.clone(), session);
        self.send(&routing, &ToMinion::Welcome { heartbeat_ms: self.heartbeat.as_millis() as u64 });
        // a second hello on a connection already welcomed (several of its messages met a
        // Rehello at once) brings nothing new: no grains to save, no assignment to push again
        if let Some(p) = previous.as_ref().filter(|p| p.routing == routing) {
            let session = self.sessions.get_mut(&id).expect("inserted above");
            (session.health, session.reported) = (p.health.clone(), p.reported);
            return;
        }
        if let Some(p) = &previous {
            // the connection it had is told, so that it stops saying anything but hello
            self.send(&p.routing, &ToMinion::Superseded { by: generation });
            if p.generation != generation {
                // what it reported was the other container's
                self.roles.superseded(&id);
                tracing::info!(%id, generation, previous = p.generation, "another generation of a minion takes its session");
                self.event(
                    &id,
                    "drover/minion/superseded",
                    json!({"id": id, "generation": generation, "previous": p.generation}),
                );
            }
        }
        if previous.is_none() {
            tracing::info!(%id, "minion connected");
            self.event(&id, "drover/minion/connected", json!({"id": id}));
        }
        let now = now_ms();
        let grains = Value::Object(hello.grains.into_iter().collect());
        if let Err(e) = self.store.save_minion(id.clone(), grains.clone(), now) {
            tracing::error!(error = %e, "cannot save grains");
        }
        self.known.insert(id.clone(), (grains.clone(), now));
        let out = self.roles.connected(&id, grains);
        self.deliver(out);
    }

    fn on_stored(&mut self, rets: Vec<Stored>) {
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
    fn pump(&mut self, jid: &Jid) {
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

    fn on_tick(&mut self) {
        let now = Instant::now();
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
        let limit = self.heartbeat * 3;
        let gone: Vec<MinionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_seen) > limit)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.sessions.remove(&id);
            self.roles.disconnected(&id);
            tracing::info!(%id, "minion disconnected (no heartbeat)");
            self.event(&id, "drover/minion/disconnected", json!({"id": id}));
        }
        self.recheck_keys(now);
        // connections silent as long are gone too (pending minions say hello every interval)
        self.routes.retain(|_, r| {
            now.duration_since(r.seen) <= if r.welcomed { limit.max(WELCOMED_ROUTE_MEMORY) } else { limit }
        });
        let routes = &self.routes;
        self.pending_routes.retain(|_, routing| routes.contains_key(routing));
        self.roles.tick(now);
        let due: Vec<(MinionId, Vec<String>)> = self
            .limits
            .iter_mut()
            .filter(|(id, _)| self.sessions.get(*id).is_some_and(|s| !self.busy.contains(&s.routing)))
            .filter_map(|(id, l)| l.due_fetch(now).map(|w| (id.clone(), w)))
            .collect();
        for (id, wanted) in due {
            if let Some(routing) = self.sessions.get(&id).map(|s| s.routing.clone()) {
                self.serve_fetch(&id, &routing, wanted, now);
            }
        }
        self.drops.note_n("(every minion)", Reason::OutgoingFull, self.out.take_dropped());
        if now.duration_since(self.limits_gc) >= LIMITS_GC {
            self.limits_gc = now;
            let sessions = &self.sessions;
            self.limits.retain(|id, l| sessions.contains_key(id) || !l.at_rest(now));
        }
        for line in self.drops.report(now) {
            tracing::warn!(
                minion = %line.who, reason = %line.reason, dropped = line.new, since_start = line.total,
                "over the master's limits: dropped what a minion sent or what waited for it \
                 (one line per minion and reason every {}s at most)",
                DROPS_INTERVAL.as_secs()
            );
        }
    }

    /// Key files are the truth: when a folder of `pki/` changed (a key moved or removed by
    /// hand), every session is checked against the files again, at most once a second.
    fn recheck_keys(&mut self, now: Instant) {
        if now.duration_since(self.pki_checked.0) < Duration::from_secs(1) {
            return;
        }
        let stamp = self.keys.stamp();
        let changed = stamp != self.pki_checked.1;
        self.pki_checked = (now, stamp);
        if !changed {
            return;
        }
        let revoked: Vec<MinionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                self.keys.lookup(id).is_none_or(|(state, key)| state != KeyState::Accepted || key != s.key)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in revoked {
            if let Some(s) = self.sessions.remove(&id) {
                tracing::warn!(%id, "the accepted key file changed by hand: the session ends");
                self.roles.disconnected(&id);
                self.event(
                    &id,
                    "drover/minion/disconnected",
                    json!({"id": id, "reason": "key no longer accepted"}),
                );
                // it says hello again, and is treated as its key files now say
                self.send(&s.routing, &ToMinion::Rehello);
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Resolve { target, tgt_type, reply } => {
                let _ = reply.send(self.resolve(&target, tgt_type));
            }
            Command::Start { job, targeted, timeout, batch, reply } => {
                self.start(job, targeted, timeout, batch, HashMap::new(), reply)
            }
            Command::Trial { job, applied, assignments, timeout, reply } => {
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
            Command::Keys { reply } => {
                let _ = reply.send(KeyList {
                    master_fingerprint: self.keys.master().public.fingerprint(),
                    keys: self.keys.list(),
                });
            }
            Command::KeyAction { req, reply } => {
                let _ = reply.send(self.key_action(req));
            }
            Command::Minions { reply } => {
                let _ = reply.send(self.minions());
            }
            Command::RolesInput { reply } => {
                let accepted = self
                    .keys
                    .ids(KeyState::Accepted)
                    .into_iter()
                    .map(|id| {
                        let grains = self.known.get(&id).map(|(g, _)| g.clone()).unwrap_or_else(|| json!({}));
                        (id, grains)
                    })
                    .collect();
                let _ = reply.send(self.roles.input(accepted));
            }
            Command::RolesApply { applied, planned, reply } => {
                let accepted = self.keys.ids(KeyState::Accepted);
                let (answer, out) = self.roles.apply(applied, planned, &accepted);
                self.deliver(out);
                let _ = reply.send(answer);
            }
            Command::RolesStatus { reply } => {
                let _ = reply.send(self.roles.status(&self.keys.ids(KeyState::Accepted)));
            }
            Command::Reports { serials, reply } => {
                let reports = serials
                    .iter()
                    .map(|(id, serial)| {
                        self.roles.report_of(id).map(|(r, _)| r).filter(|r| r.serial >= *serial).cloned()
                    })
                    .collect();
                let _ = reply.send(reports);
            }
            Command::MinionViews { ids, reply } => {
                let _ = reply.send(ids.into_iter().map(|id| self.view(id)).collect());
            }
            Command::Kill { jid, fun, busy, reply } => {
                let _ = reply.send(self.kill(jid, fun, busy));
            }
        }
    }

    /// Drops what the job's batch has not sent yet (those minions never get it), and sends
    /// the kill to every minion of `busy` that is connected (each returns the job as
    /// killed, or says it does not run it). The job, if it runs here, ends as usual once
    /// the busy minions returned or timed out.
    fn kill(&mut self, jid: Jid, fun: String, busy: Vec<MinionId>) -> KillResponse {
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

    /// How `id` stands: its session (if any) and its last report, both looked up by id.
    fn view(&self, id: MinionId) -> MinionView {
        let session = self.sessions.get(&id);
        let converged = session.filter(|s| s.reported).and_then(|_| self.roles.report_of(&id)).map(
            |(report, assigned)| ConvergedView {
                commit: report.commit.clone(),
                result: report.result,
                comment: report.comment.clone(),
                failed: !report.failed.is_empty(),
                current: assigned == Some(report.commit.as_str()),
            },
        );
        let health = session.and_then(|s| s.health.as_ref());
        MinionView {
            connected: session.is_some(),
            generation: session.map(|s| s.generation),
            converged,
            healthy: health.map(|h| h.healthy),
            problem: health.and_then(|h| h.problem.clone()),
            id,
        }
    }

    /// Which accepted minions `target` selects. `R@role` matches the roles a minion is
    /// assigned as well as those its grains report. `N@` names the nodegroups of the
    /// applied commit; `I@` sees the pillar of a minion's assigned roles at that commit
    /// (computed only for targets that have an `I@` term).
    fn resolve(&self, target: &str, tgt_type: TargetType) -> Result<Vec<MinionId>, String> {
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

    fn start(
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

    fn key_action(&mut self, req: KeyActionRequest) -> Result<KeyActionResponse, String> {
        let ids: Vec<MinionId> = match (&req.id, req.all) {
            (Some(_), true) => return Err("give an id or --all, not both".into()),
            (None, false) => return Err("give a minion id or --all".into()),
            (Some(id), false) => {
                let id = MinionId::new(id.as_str()).map_err(|e| e.to_string())?;
                if self.keys.lookup(&id).is_none() {
                    return Err(format!("no key for minion '{id}' (see 'drover key list')"));
                }
                vec![id]
            }
            (None, true) => match req.action {
                KeyAction::Accept | KeyAction::Reject => self.keys.ids(KeyState::Pending),
                KeyAction::Delete => [KeyState::Accepted, KeyState::Pending, KeyState::Rejected]
                    .into_iter()
                    .flat_map(|s| self.keys.ids(s))
                    .collect(),
            },
        };
        let mut changed = Vec::new();
        for id in ids {
            let done = match req.action {
                KeyAction::Accept => self.keys.transition(&id, KeyState::Accepted),
                KeyAction::Reject => self.keys.transition(&id, KeyState::Rejected),
                KeyAction::Delete => self.keys.delete(&id),
            }
            .map_err(|e| e.to_string())?;
            if !done {
                continue;
            }
            let tag = match req.action {
                KeyAction::Accept => "accept",
                KeyAction::Reject => "reject",
                KeyAction::Delete => "delete",
            };
            tracing::info!(%id, action = tag, "key changed");
            self.event(&id, &format!("drover/key/{tag}"), json!({"id": id}));
            match req.action {
                // A waiting minion says hello again and is welcomed at once.
                KeyAction::Accept => {
                    if let Some(routing) = self.pending_routes.remove(&id) {
                        self.send(&routing, &ToMinion::Rehello);
                    }
                }
                KeyAction::Reject => {
                    self.roles.disconnected(&id);
                    if let Some(s) = self.sessions.remove(&id) {
                        self.send(
                            &s.routing,
                            &ToMinion::Refused { reason: format!("the key of '{id}' was rejected") },
                        );
                    }
                }
                // A deleted minion comes back as pending when it says hello again.
                KeyAction::Delete => {
                    self.roles.forget(&id);
                    if let Some(s) = self.sessions.remove(&id) {
                        self.send(&s.routing, &ToMinion::Rehello);
                    }
                    self.pending_routes.remove(&id);
                }
            }
            changed.push(id.to_string());
        }
        Ok(KeyActionResponse { changed })
    }

    fn minions(&self) -> Vec<MinionStatus> {
        let mut out: Vec<MinionStatus> = self
            .keys
            .ids(KeyState::Accepted)
            .into_iter()
            .map(|id| {
                let (grains, seen) = self.known.get(&id).cloned().unwrap_or((json!({}), 0));
                let session = self.sessions.get(&id);
                // a connected minion was last heard at its last message, not at its hello
                let seen = session
                    .map_or(seen, |s| now_ms().saturating_sub(s.last_seen.elapsed().as_millis() as u64));
                let health = session.and_then(|s| s.health.as_ref());
                MinionStatus {
                    healthy: health.map(|h| h.healthy),
                    problem: health.and_then(|h| h.problem.clone()),
                    connected: session.is_some(),
                    last_seen_ms: seen,
                    grains: match grains {
                        Value::Object(m) => m.into_iter().collect(),
                        _ => BTreeMap::new(),
                    },
                    id: id.to_string(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
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

/// The tag a minion's event is filed under: `drover/minion/<id>/<tag>`. The master's own
/// events never have that shape (`drover/minion/connected` has no fourth part), and `id`
/// cannot hold a `/`, so a minion can only write under its own name.
fn minion_tag(id: &MinionId, tag: &str) -> String {
    format!("drover/minion/{id}/{tag}")
}

/// A minion's health as the hub keeps it: at most 256 daemons, and short lines.
fn bounded_health(mut health: wire::Health) -> wire::Health {
    let cut = |s: &mut String, max: usize| {
        if let Some((at, _)) = s.char_indices().nth(max) {
            s.truncate(at);
        }
    };
    if let Some(p) = &mut health.problem {
        cut(p, 1000);
    }
    health.daemons.truncate(256);
    for d in &mut health.daemons {
        cut(&mut d.name, 128);
        cut(&mut d.state, 32);
        if let Some(p) = &mut d.problem {
            cut(p, 500);
        }
    }
    health
}

/// Whether a minion's event may be recorded: a tag like `daemon/worker/crashed`
/// (printable, no spaces, at most 256 bytes) and data of at most [`MAX_EVENT_DATA`] bytes.
fn check_event(event: &wire::Event) -> Result<(), &'static str> {
    if event.tag.is_empty() || event.tag.len() > 256 {
        return Err("its tag is empty or longer than 256 bytes");
    }
    if event.tag.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("its tag has spaces or control characters");
    }
    if serde_json::to_vec(&event.data).map_or(true, |d| d.len() > MAX_EVENT_DATA) {
        return Err("its data is larger than 64 KiB");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
