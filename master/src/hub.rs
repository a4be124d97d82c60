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
//! This file routes the inputs; the hub's three concerns are `impl Hub` blocks of their own:
//! [`sessions`] (which connection speaks for which minion), [`keys`] (what a hello gets by
//! the key files, key actions) and [`jobs`] (targets, sending, return provenance, kills).
//!
//! The roles side (assignments, reports, peers, the file server) is [`RoleState`], a part
//! of the hub: told of every connection and disconnection, it answers with the messages to
//! send. Plans it asks for run on blocking threads and come back on their own channel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{
    Batch, KeyActionRequest, KeyActionResponse, KeyList, KeyState, KillResponse, MinionStatus, RoleStatus,
    RolesApplyResponse, RunResponse, TargetType,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::msg::{MAX_HELLO, decode, encode};
use wire::{Assignment, Converged, Jid, Job, MinionId, PublicKey, ToMaster, ToMinion};

use crate::assign::{Applied, Planned};
use crate::autosign::Autosign;
use crate::limits::{DROPS_INTERVAL, Drops, MAX_PENDING, MinionLimits, NewKeys, Reason};
use crate::metrics::Metrics;
use crate::pki::{KeyIndex, KeyStore};
use crate::roles::{Out, PlanDone, RoleState, RolesInput};
use crate::store::{Store, Stored};
use crate::transport::{Incoming, Outgoing};
use jobs::ActiveJob;
use sessions::{Route, Session};

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
    /// The fleet wrote or removed the key files of slot `id` (enrolled or revoked it): the
    /// hub's index reads them again at once, and a session whose key is gone ends.
    KeyFilesChanged {
        id: MinionId,
    },
    /// The container of slot `id` the fleet wants now has `generation`: its hello takes the
    /// session from any other container of the slot, and no other takes it back while it
    /// has it. Without one, the higher generation has the session; Swarm's rollback puts a
    /// slot's older container back, which the fleet then wants.
    Want {
        id: MinionId,
        generation: u64,
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

/// The most bytes of file-server answers sent at once to one minion (at least one message
/// goes); the rest waits for a later tick.
const FETCH_SERVE_BYTES: usize = 4 << 20;

/// How often limits at rest are forgotten.
const LIMITS_GC: Duration = Duration::from_secs(10);

pub struct Hub {
    /// The key files of `pki/`, as the key-files thread last told ([`keys::KeyFilesThread`]).
    keys: KeyIndex,
    master_fingerprint: String,
    store: Store,
    out: Outgoing,
    heartbeat: Duration,
    auto_accept: bool,
    /// `DIR/autosign_grains`: new keys accepted by a grain their hello carries.
    autosign: Option<Autosign>,
    sessions: HashMap<MinionId, Session>,
    /// Per fleet slot, the generation of the container the fleet wants ([`Command::Want`]).
    wanted: HashMap<MinionId, u64>,
    /// Every live connection (routing id) → the minion it said it is.
    routes: HashMap<Vec<u8>, Route>,
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
    /// Reads and writes `pki/` on a thread of its own.
    key_files: keys::KeyFilesThread,
    /// What it did (keys written, each with the hello that waits for it; key actions;
    /// `pki/` read again); taken by `run`.
    key_news: Option<mpsc::UnboundedReceiver<keys::KeyNews>>,
    /// The id and key whose files the key-files thread just found as the index says
    /// ([`keys::Written::Same`]), while their hello goes on.
    looked: Option<(MinionId, PublicKey)>,
    /// Ids whose key the key-files thread looks up before their hello goes on, with it.
    looking: HashMap<MinionId, PublicKey>,
    /// Ids whose new key is being written, with that key.
    writing: HashMap<MinionId, PublicKey>,
    metrics: Arc<Metrics>,
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
        let (news_tx, news) = mpsc::unbounded_channel();
        let files = keys.files();
        // the folders' times before the reading: a change meanwhile is read again
        let stamp = files.stamp();
        // read once here, at start; the thread reads it again when `pki/` changes
        let index = files.index();
        Self {
            key_files: keys::KeyFilesThread::start(files, stamp, index.clone(), news_tx),
            keys: index,
            master_fingerprint: keys.master().public.fingerprint(),
            key_news: Some(news),
            writing: HashMap::new(),
            looked: None,
            looking: HashMap::new(),
            store,
            out,
            heartbeat,
            auto_accept,
            autosign: None,
            sessions: HashMap::new(),
            wanted: HashMap::new(),
            routes: HashMap::new(),
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
        let mut key_news = self.key_news.take().expect("run once");
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
                Some(news) = key_news.recv() => self.on_key_news(news),
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

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.time_out_jobs(now);
        self.end_silent_sessions(now);
        self.roles.tick(now);
        let due: Vec<(MinionId, Vec<String>)> = self
            .limits
            .iter_mut()
            // (the cheap test first: this runs over every minion at every tick)
            .filter(|(_, l)| l.has_deferred())
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

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Resolve { target, tgt_type, reply } => {
                let _ = reply.send(self.resolve(&target, tgt_type));
            }
            Command::Start { job, targeted, timeout, batch, reply } => {
                self.start(job, targeted, timeout, batch, HashMap::new(), reply)
            }
            Command::Trial { job, applied, assignments, timeout, reply } => {
                self.trial(job, applied, assignments, timeout, reply)
            }
            Command::Keys { reply } => {
                let _ = reply.send(KeyList {
                    master_fingerprint: self.master_fingerprint.clone(),
                    keys: self.keys.list(),
                });
            }
            Command::KeyAction { req, reply } => {
                self.key_action(req, reply);
            }
            Command::KeyFilesChanged { id } => self.key_files_changed(id),
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
            Command::Want { id, generation } => {
                self.wanted.insert(id, generation);
            }
            Command::Kill { jid, fun, busy, reply } => {
                let _ = reply.send(self.kill(jid, fun, busy));
            }
        }
    }
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

mod jobs;
mod keys;
mod sessions;
#[cfg(test)]
mod tests;
