//! The hub on plain data: messages from connections go in as [`Incoming`], what it sends
//! comes out of a captured [`Outgoing`], commands are called directly. No transport, no
//! network: generations, health and the fleet controller's views.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use wire::{Converged, Health, Hello, Jid, Job, JobReturn, KeyPair, MinionId, PublicKey, ToMaster, ToMinion};

use super::*;
use crate::assign::tests::{CLOUD, commit};
use crate::assign::{self, Applied};
use crate::pki::{KeyFiles, KeyStore};
use crate::roles::RoleState;
use crate::store::{RolesRecord, Store, Stored};
use crate::transport::{Incoming, Outgoing};

struct Fixture {
    hub: Hub,
    /// The hub's `pki/`, to change by hand.
    files: KeyFiles,
    sent: zmq::Socket,
    /// What the store committed, as the hub would be told.
    stored: mpsc::UnboundedReceiver<Vec<Stored>>,
    _ctx: zmq::Context,
    _dir: tempfile::TempDir,
}

/// One connection of a minion: its routing id (a fresh random part each) and key.
struct Conn {
    id: MinionId,
    routing: Vec<u8>,
    key: PublicKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(&dir.path().join("pki")).unwrap();
    let files = keys.files();
    let (stored_tx, stored) = mpsc::unbounded_channel();
    let store = Store::open(&dir.path().join("drover.db"), stored_tx).unwrap();
    let ctx = zmq::Context::new();
    let (out, sent) = Outgoing::captured(&ctx);
    sent.set_rcvtimeo(20_000).unwrap();
    let roles = RoleState::new(store.clone(), RolesRecord::default(), None);
    let hub = Hub::new(keys, store, out, Duration::from_secs(5), false, HashMap::new(), roles);
    Fixture { hub, files, sent, stored, _ctx: ctx, _dir: dir }
}

impl Fixture {
    /// A minion `id` whose key is accepted, and a connection of it.
    fn accepted(&mut self, id: &str) -> Conn {
        let id = MinionId::new(id).unwrap();
        let key = KeyPair::generate().unwrap().public;
        self.files.put(KeyState::Accepted, &id, &key).unwrap();
        self.hub.keys.set(id.clone(), self.files.known(&id));
        self.conn(&Conn { id, routing: Vec::new(), key })
    }

    /// Two containers of slot `id`, generations 5 then 7: each welcomed in turn, the older
    /// one told it is superseded.
    fn two_generations(&mut self, id: &str) -> (Conn, Conn) {
        self.generations(id, 5, 7)
    }

    /// Two containers of slot `id`, generation `first` then `second` (not lower): each
    /// welcomed in turn, the first told it is superseded.
    fn generations(&mut self, id: &str, first: u64, second: u64) -> (Conn, Conn) {
        let old = self.accepted(id);
        let new = self.conn(&old);
        self.hello(&old, first);
        assert!(matches!(self.sent_to(&old), ToMinion::Welcome { .. }));
        self.hello(&new, second);
        assert!(matches!(self.sent_to(&new), ToMinion::Welcome { .. }));
        assert_eq!(self.sent_to(&old), ToMinion::Superseded { by: second });
        (old, new)
    }

    /// Another connection of the same minion, with the same key (another container).
    fn conn(&self, of: &Conn) -> Conn {
        Conn { id: of.id.clone(), routing: wire::routing_id(&of.id).unwrap(), key: of.key.clone() }
    }

    fn from(&mut self, conn: &Conn, msg: &ToMaster) {
        let body = encode(msg).unwrap();
        self.hub.on_incoming(Incoming::Message {
            routing: conn.routing.clone(),
            key: Some(conn.key.clone()),
            body,
        });
    }

    fn hello(&mut self, conn: &Conn, generation: u64) {
        let hello = Hello {
            id: conn.id.clone(),
            version: "test".into(),
            grains: grains().as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            generation,
        };
        self.from(conn, &ToMaster::Hello(hello));
    }

    /// A connection presenting a key of its own (one no key file holds) for `id`.
    fn stranger(&self, id: &str) -> Conn {
        let id = MinionId::new(id).unwrap();
        Conn { routing: wire::routing_id(&id).unwrap(), key: KeyPair::generate().unwrap().public, id }
    }

    /// Lets the hub go on with the next key or key action its key-files thread made (a new
    /// key's hello waits for it), as `Hub::run` does; the thread's readings of `pki/` on
    /// the way are passed on too.
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let news = self.hub.key_news.as_mut().expect("not taken: no run").try_recv();
            match news {
                Ok(news @ keys::KeyNews::Read(_)) => self.hub.on_key_news(news),
                Ok(news) => return self.hub.on_key_news(news),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("the key-files thread did nothing: {e}"),
            }
        }
    }

    /// A key action, answered once the thread made it.
    fn act(&mut self, action: api::KeyAction, id: &MinionId) -> Result<api::KeyActionResponse, String> {
        let (tx, mut answer) = oneshot::channel();
        self.hub.key_action(api::KeyActionRequest { action, id: Some(id.to_string()), all: false }, tx);
        self.settle();
        answer.try_recv().expect("answered once made")
    }

    /// Moves `conn`'s key to `state` by hand, and lets the hub see `pki/` as the thread
    /// reads it when a folder changed.
    fn by_hand(&mut self, state: KeyState, conn: &Conn) {
        self.files.put(state, &conn.id, &conn.key).unwrap();
        self.hub.on_key_news(keys::KeyNews::Read(self.files.index()));
    }

    /// Passes on to the hub what the store committed next (it answers every queued return).
    fn commit(&mut self) -> Vec<Stored> {
        let batch = self.stored.blocking_recv().expect("the store answers");
        self.hub.on_stored(batch.clone());
        batch
    }

    /// Whether the hub sent nothing more (every send is queued before the call returns).
    fn silent(&self) -> bool {
        matches!(self.sent.recv_multipart(zmq::DONTWAIT), Err(zmq::Error::EAGAIN))
    }

    /// The next `n` messages the hub sent, as (connection, message).
    fn sent(&self, n: usize) -> Vec<(Vec<u8>, ToMinion)> {
        (0..n)
            .map(|_| {
                let parts = self.sent.recv_multipart(0).expect("a message from the hub");
                (parts[0].clone(), decode::<ToMinion>(&parts[1]).unwrap())
            })
            .collect()
    }

    /// The one message the hub sent next, checked to go to `conn`.
    fn sent_to(&self, conn: &Conn) -> ToMinion {
        let (routing, msg) = self.sent(1).remove(0);
        assert_eq!(wire::routing_label(&routing), wire::routing_label(&conn.routing), "{msg:?}");
        assert_eq!(routing, conn.routing, "{msg:?} went to another connection");
        msg
    }

    fn views(&mut self, ids: &[&MinionId]) -> Vec<MinionView> {
        let (reply, mut answer) = oneshot::channel();
        let ids = ids.iter().map(|id| (*id).clone()).collect();
        self.hub.on_command(Command::MinionViews { ids, reply });
        answer.try_recv().expect("answered at once")
    }

    fn status(&self, id: &MinionId) -> MinionStatus {
        self.hub.minions().into_iter().find(|m| m.id == id.as_str()).unwrap()
    }

    /// The session of `id` was silent for longer than three heartbeats, and the tick saw it.
    fn silence(&mut self, id: &MinionId) {
        let long_ago = Instant::now().checked_sub(Duration::from_secs(3600)).unwrap();
        self.hub.sessions.get_mut(id).unwrap().last_seen = long_ago;
        self.hub.on_tick();
        assert!(!self.hub.sessions.contains_key(id));
    }
}

/// What every test minion says of itself.
fn grains() -> serde_json::Value {
    json!({"ipv4": ["10.0.0.1"], "os_family": "Debian", "hostname": "h1"})
}

fn job(id: &MinionId) -> (Command, oneshot::Receiver<api::RunResponse>) {
    let job = Job {
        jid: Jid::generate(),
        fun: "test.ping".into(),
        args: vec![],
        kwargs: Default::default(),
        timeout_ms: None,
    };
    let (reply, answer) = oneshot::channel();
    let cmd = Command::Start {
        job,
        targeted: vec![id.clone()],
        timeout: Duration::from_secs(60),
        batch: None,
        reply,
    };
    (cmd, answer)
}

#[test]
fn the_higher_generation_has_the_session_and_the_lower_one_takes_it_back_when_it_is_gone() {
    let mut f = fixture();
    let (old, new) = f.two_generations("coins-worker-1");
    let id = old.id.clone();
    // the old one says hello again: still superseded, no session for it
    f.hello(&old, 5);
    assert_eq!(f.sent_to(&old), ToMinion::Superseded { by: 7 });
    assert_eq!(f.views(&[&id])[0].generation, Some(7));

    // jobs go to the newer one; what the old one says besides hello is not heard
    let (start, _answer) = job(&id);
    f.hub.on_command(start);
    assert!(matches!(f.sent_to(&new), ToMinion::Job(_)));
    f.from(&old, &ToMaster::Health(Health { healthy: true, ..Health::default() }));
    assert_eq!(f.sent_to(&old), ToMinion::Rehello);
    assert_eq!(f.views(&[&id])[0].healthy, None);

    // the newer container goes away (a rollback): the old one's next hello takes over
    f.silence(&id);
    assert!(!f.views(&[&id])[0].connected);
    f.hello(&old, 5);
    assert!(matches!(f.sent_to(&old), ToMinion::Welcome { .. }));
    let view = f.views(&[&id]).remove(0);
    assert_eq!((view.connected, view.generation), (true, Some(5)));
    let (start, _answer) = job(&id);
    f.hub.on_command(start);
    assert!(matches!(f.sent_to(&old), ToMinion::Job(_)));
}

#[test]
fn the_generation_the_fleet_wants_has_the_session() {
    let mut f = fixture();
    let (old, new) = f.two_generations("coins-web-1");
    let id = old.id.clone();
    // Swarm's rollback starts the slot's older container while the newer one still runs:
    // once the fleet wants it, its hello takes the session
    f.hello(&old, 5);
    assert_eq!(f.sent_to(&old), ToMinion::Superseded { by: 7 });
    f.hub.on_command(Command::Want { id: id.clone(), generation: 5 });
    f.hello(&old, 5);
    assert!(matches!(f.sent_to(&old), ToMinion::Welcome { .. }));
    assert_eq!(f.sent_to(&new), ToMinion::Superseded { by: 5 });
    // and the newer one, still saying hello until Swarm stops it, does not take it back
    f.hello(&new, 7);
    assert_eq!(f.sent_to(&new), ToMinion::Superseded { by: 5 });
    let view = f.views(&[&id]).remove(0);
    assert_eq!((view.connected, view.generation), (true, Some(5)));
    // a container the fleet makes next is wanted in its turn
    let next = f.conn(&old);
    f.hub.on_command(Command::Want { id: id.clone(), generation: 9 });
    f.hello(&next, 9);
    assert!(matches!(f.sent_to(&next), ToMinion::Welcome { .. }));
    assert_eq!(f.sent_to(&old), ToMinion::Superseded { by: 9 });
}

#[test]
fn an_equal_generation_takes_the_session_and_the_other_connection_is_told() {
    let mut f = fixture();
    // e.g. the same minion again on a new socket after a half-open connection
    let (a, b) = f.generations("web-1", 3, 3);
    // a hello again on the connection that has the session changes nothing
    f.hello(&b, 3);
    assert!(matches!(f.sent_to(&b), ToMinion::Welcome { .. }));
    assert_eq!(f.views(&[&a.id])[0].generation, Some(3));
    // a minion without generations (0) is superseded by any fleet container
    let c = f.conn(&a);
    f.hello(&c, 0);
    assert_eq!(f.sent_to(&c), ToMinion::Superseded { by: 3 });
}

#[test]
fn health_is_kept_per_session_and_shown_with_the_minions() {
    let mut f = fixture();
    let m = f.accepted("web-1");
    let id = m.id.clone();
    f.hello(&m, 1);
    f.sent_to(&m);
    let status = f.status(&id);
    assert_eq!((status.connected, status.healthy, status.problem), (true, None, None));

    let sick = Health {
        healthy: false,
        problem: Some("daemon worker: exited with code 1 (restarting)".into()),
        daemons: vec![wire::DaemonHealth {
            name: "worker".into(),
            state: "backoff".into(),
            healthy: false,
            problem: Some("exited with code 1 (restarting)".into()),
        }],
    };
    f.from(&m, &ToMaster::Health(sick));
    let status = f.status(&id);
    assert_eq!(status.healthy, Some(false));
    assert_eq!(status.problem.as_deref(), Some("daemon worker: exited with code 1 (restarting)"));
    let view = f.views(&[&id]).remove(0);
    assert_eq!((view.healthy, view.problem), (Some(false), status.problem));

    // what a minion says is kept within bounds
    let long =
        Health { healthy: false, problem: Some("x".repeat(5000)), daemons: vec![Default::default(); 1000] };
    f.from(&m, &ToMaster::Health(long));
    let kept = f.hub.sessions[&id].health.clone().unwrap();
    assert_eq!((kept.problem.unwrap().len(), kept.daemons.len()), (1000, 256));

    f.from(&m, &ToMaster::Health(Health { healthy: true, ..Health::default() }));
    assert_eq!(f.status(&id).healthy, Some(true));
    // the session ends: so does what it said
    f.silence(&id);
    let status = f.status(&id);
    assert_eq!((status.connected, status.healthy, status.problem), (false, None, None));
}

#[tokio::test]
async fn views_answer_per_id_with_the_report_of_the_current_session_only() {
    let mut f = fixture();
    let m = f.accepted("web-1");
    let id = m.id.clone();
    let unknown = MinionId::new("nobody").unwrap();
    f.hello(&m, 1);
    f.sent_to(&m);

    // the commit is applied: the connected minion gets its assignment and reports on it
    let applied = Arc::new(Applied::load(commit(CLOUD)).unwrap());
    let input = f.hub.roles.input(vec![(id.clone(), grains())]);
    let planned = assign::plan_all(&applied, &input.minions).unwrap();
    let (reply, _applied) = oneshot::channel();
    f.hub.on_command(Command::RolesApply { applied, planned, reply });
    let ToMinion::Assign(a) = f.sent_to(&m) else { panic!("expected the assignment") };
    let [view, nobody] = <[MinionView; 2]>::try_from(f.views(&[&id, &unknown])).unwrap();
    assert_eq!((view.connected, view.generation, view.converged), (true, Some(1), None));
    assert_eq!(
        nobody,
        MinionView {
            id: unknown,
            connected: false,
            generation: None,
            converged: None,
            healthy: None,
            problem: None
        }
    );

    let report =
        Converged { commit: a.commit.clone(), serial: a.serial, result: true, ..Converged::default() };
    f.from(&m, &ToMaster::Converged(report));
    let view = f.views(&[&id]).remove(0);
    let want = ConvergedView {
        commit: a.commit.clone(),
        result: true,
        comment: String::new(),
        failed: false,
        current: true,
    };
    assert_eq!(view.converged, Some(want));

    // a new container of the slot: the report of the old one does not count for it
    let next = f.conn(&m);
    f.hello(&next, 2);
    assert!(matches!(f.sent_to(&next), ToMinion::Welcome { .. }));
    assert_eq!(f.sent_to(&m), ToMinion::Superseded { by: 2 });
    let view = f.views(&[&id]).remove(0);
    assert_eq!((view.generation, view.converged), (Some(2), None));
}

#[test]
fn a_kill_reaches_the_busy_minions_and_drops_what_a_batch_has_not_sent() {
    let mut f = fixture();
    let (w1, w2) = (f.accepted("web-1"), f.accepted("web-2"));
    for conn in [&w1, &w2] {
        f.hello(conn, 0);
        assert!(matches!(f.sent_to(conn), ToMinion::Welcome { .. }));
    }
    let (start, mut answer) = job(&w1.id);
    let Command::Start { job, timeout, reply, .. } = start else { unreachable!() };
    let jid = job.jid.clone();
    let targeted = vec![w1.id.clone(), w2.id.clone()];
    f.hub.on_command(Command::Start { job, targeted, timeout, batch: Some(api::Batch::Count(1)), reply });
    assert!(matches!(f.sent_to(&w1), ToMinion::Job(_)));

    // the store counts both busy (sent, or queued: neither returned), and a gone one
    let gone = MinionId::new("db-1").unwrap();
    let busy = vec![w1.id.clone(), w2.id.clone(), gone];
    let (reply, mut killed) = oneshot::channel();
    f.hub.on_command(Command::Kill { jid: jid.clone(), fun: "test.ping".into(), busy, reply });
    let killed = killed.try_recv().expect("answered at once");
    assert_eq!(
        (killed.sent, killed.not_connected, killed.not_run),
        (vec!["web-1".to_string()], vec!["db-1".to_string()], vec!["web-2".to_string()])
    );
    assert_eq!(f.sent_to(&w1), ToMinion::Kill { jid: jid.clone(), fun: "test.ping".into() });

    // web-1 returns the job as killed: the job ends, web-2 never got it
    let ret =
        JobReturn { success: false, retcode: 137, ret: json!("killed"), killed: true, ..ret(&jid, &w1.id) };
    f.hub.on_stored(vec![Stored { ret, kept: true, fresh: true }]);
    assert_eq!(f.sent_to(&w1), ToMinion::Ack { jid: jid.clone() });
    let done = answer.try_recv().expect("the job ended");
    assert_eq!(done.returns["web-1"].retcode, 137);
    assert_eq!(done.not_run, ["web-2"]);
    assert!(done.timed_out.is_empty() && done.not_connected.is_empty());
}

/// A return of `jid` by `id`.
fn ret(jid: &Jid, id: &MinionId) -> JobReturn {
    JobReturn {
        jid: jid.clone(),
        id: id.clone(),
        fun: "test.ping".into(),
        success: true,
        retcode: 0,
        ret: json!(true),
        started_ms: 1,
        finished_ms: 2,
        killed: false,
    }
}

#[test]
fn only_a_hello_with_the_accepted_key_gets_a_session() {
    let mut f = fixture();
    let web = f.accepted("web-1");

    // another key for an accepted id: refused, told what to do, nothing else
    let impostor = f.stranger("web-1");
    f.hello(&impostor, 0);
    // (a refusal goes by the files: the key-files thread looks first)
    assert!(f.silent());
    f.settle();
    let ToMinion::Refused { reason } = f.sent_to(&impostor) else { panic!("expected a refusal") };
    assert!(reason.contains("drover key delete web-1"), "{reason}");
    assert!(!f.hub.sessions.contains_key(&web.id));
    assert_eq!(
        f.hub.keys.lookup(&web.id),
        Some((KeyState::Accepted, web.key.clone())),
        "the key file is kept"
    );

    // a new key waits in pending/; it is not resolved, sent jobs nor heard besides its hello
    let new = f.stranger("db-1");
    f.hello(&new, 0);
    // written off the hub's task: nothing is said until the file is there; its hello again
    // meanwhile waits for that write, another key for its id is refused
    assert!(f.silent());
    f.hello(&new, 0);
    assert!(f.silent());
    let other = f.stranger("db-1");
    f.hello(&other, 0);
    let ToMinion::Refused { reason } = f.sent_to(&other) else { panic!("expected a refusal") };
    assert!(reason.contains("another key is being registered for 'db-1'"), "{reason}");
    // the thread looks whether the files hold a key the index has not read, then writes
    f.settle();
    assert!(f.silent());
    f.settle();
    assert_eq!(f.sent_to(&new), ToMinion::Pending);
    assert_eq!(f.hub.keys.lookup(&new.id), Some((KeyState::Pending, new.key.clone())));
    assert_eq!(
        f.hub.resolve("*", TargetType::Glob).unwrap(),
        std::slice::from_ref(&web.id),
        "pending keys are not targets"
    );
    f.from(&new, &ToMaster::Heartbeat { seq: 1 });
    assert_eq!(f.sent_to(&new), ToMinion::Rehello);
    let (start, mut answer) = job(&new.id);
    f.hub.on_command(start);
    assert_eq!(answer.try_recv().unwrap().not_connected, ["db-1"]);
    assert!(f.silent());

    // a rejected key (`drover key reject`): refused, and it stays rejected
    assert_eq!(f.act(api::KeyAction::Reject, &new.id).unwrap().changed, ["db-1"]);
    assert_eq!(f.files.lookup(&new.id), Some((KeyState::Rejected, new.key.clone())));
    f.hello(&new, 0);
    f.settle();
    let ToMinion::Refused { reason } = f.sent_to(&new) else { panic!("expected a refusal") };
    assert!(reason.contains("rejected"), "{reason}");
    assert!(!f.hub.sessions.contains_key(&new.id));

    // the accepted key: welcomed; its key file moved to rejected/ by hand ends the session
    f.hello(&web, 0);
    assert!(matches!(f.sent_to(&web), ToMinion::Welcome { .. }));
    f.by_hand(KeyState::Rejected, &web);
    assert_eq!(f.sent_to(&web), ToMinion::Rehello);
    assert!(!f.hub.sessions.contains_key(&web.id));
    f.hello(&web, 0);
    f.settle();
    assert!(matches!(f.sent_to(&web), ToMinion::Refused { .. }));
    assert!(f.hub.resolve("*", TargetType::Glob).unwrap().is_empty(), "rejected keys are not targets");
}

#[test]
fn key_actions_are_made_in_the_order_asked_after_the_writes_before_them() {
    let mut f = fixture();
    let new = f.stranger("db-1");
    f.hello(&new, 0);
    f.settle();
    assert!(f.silent(), "its key is being written");
    // asked while the key is written: made after that write, so the write cannot undo it
    let (tx, mut answer) = oneshot::channel();
    f.hub.key_action(
        api::KeyActionRequest { action: api::KeyAction::Reject, id: Some("db-1".into()), all: false },
        tx,
    );
    assert!(answer.try_recv().is_err(), "answered once made");
    f.settle();
    assert_eq!(f.sent_to(&new), ToMinion::Pending);
    f.settle();
    assert_eq!(answer.try_recv().unwrap().unwrap().changed, ["db-1"]);
    assert_eq!(f.hub.keys.lookup(&new.id), Some((KeyState::Rejected, new.key.clone())));
    assert_eq!(f.files.lookup(&new.id), Some((KeyState::Rejected, new.key.clone())));
    // an id without a key: nothing changes, the answer says why
    let nobody = MinionId::new("nobody").unwrap();
    let refused = f.act(api::KeyAction::Accept, &nobody).unwrap_err();
    assert!(refused.contains("no key for minion 'nobody'"), "{refused}");
    // a key the index does not know yet (put there by hand, not read again): its hello
    // finds it through the thread, which writes nothing over it
    let web = f.stranger("web-1");
    f.files.put(KeyState::Accepted, &web.id, &web.key).unwrap();
    f.hello(&web, 0);
    f.settle();
    assert!(matches!(f.sent_to(&web), ToMinion::Welcome { .. }));
    assert_eq!(f.files.lookup(&web.id), Some((KeyState::Accepted, web.key.clone())));
    // an id enrolled again with a new key a moment ago (a fleet slot made anew), before the
    // thread read the folder again: not refused by the index's old key, welcomed by the files
    let anew = f.stranger("web-1");
    f.files.put(KeyState::Accepted, &anew.id, &anew.key).unwrap();
    f.hello(&anew, 0);
    f.settle();
    assert!(matches!(f.sent_to(&anew), ToMinion::Welcome { .. }));
}

#[test]
fn the_pending_cap_counts_keys_written_not_keys_looked_up() {
    let mut f = fixture();
    f.hub.new_keys = crate::limits::NewKeys::new(3, Instant::now());
    let waiting = f.stranger("w-0");
    f.files.put(KeyState::Pending, &waiting.id, &waiting.key).unwrap();
    f.hub.on_key_news(keys::KeyNews::Read(f.files.index()));
    // three new minions at once: each is looked up in the files first, which counts for nothing
    let new: Vec<Conn> = (1..=3).map(|i| f.stranger(&format!("w-{i}"))).collect();
    for conn in &new {
        f.hello(conn, 0);
    }
    assert!(f.silent());
    // the looks come back (nothing on disk): two fit under the cap with the one waiting
    for _ in 0..3 {
        f.settle();
    }
    let ToMinion::Refused { reason } = f.sent_to(&new[2]) else { panic!("expected a refusal") };
    assert!(reason.contains("already has 3 keys waiting for acceptance (its limit is 3)"), "{reason}");
    // then their writes
    f.settle();
    f.settle();
    assert_eq!(f.sent_to(&new[0]), ToMinion::Pending);
    assert_eq!(f.sent_to(&new[1]), ToMinion::Pending);
    assert_eq!(f.files.ids(KeyState::Pending).len(), 3);
}

#[test]
fn key_files_changed_elsewhere_are_read_before_they_count() {
    let mut f = fixture();
    // an unreadable key file: refused by the files, then welcomed once fixed in place
    let web = f.stranger("web-1");
    let path = f._dir.path().join("pki/accepted/web-1");
    std::fs::write(&path, "not a key\n").unwrap();
    f.hub.on_key_news(keys::KeyNews::Read(f.files.index()));
    f.hello(&web, 0);
    f.settle();
    let ToMinion::Refused { reason } = f.sent_to(&web) else { panic!("expected a refusal") };
    assert!(reason.contains("cannot read") && reason.contains("accepted/web-1"), "{reason}");
    std::fs::write(&path, format!("{}\n", web.key)).unwrap();
    f.hello(&web, 0);
    f.settle();
    assert!(matches!(f.sent_to(&web), ToMinion::Welcome { .. }));
    // the fleet revokes its key (files removed by the fleet, then the hub told): the index
    // reads that id again at once and the session ends
    f.files.delete(&web.id).unwrap();
    f.hub.on_command(Command::KeyFilesChanged { id: web.id.clone() });
    f.settle();
    assert_eq!(f.sent_to(&web), ToMinion::Rehello);
    assert!(!f.hub.sessions.contains_key(&web.id));
    assert_eq!(f.hub.keys.lookup(&web.id), None);
}

#[test]
fn a_route_speaks_for_the_minion_its_routing_id_names_and_only_with_its_key() {
    let mut f = fixture();
    let web = f.accepted("web-1");
    let db = f.accepted("db-1");
    f.hello(&web, 0);
    assert!(matches!(f.sent_to(&web), ToMinion::Welcome { .. }));

    // a hello for web-1 on db-1's kind of routing id (another minion's name): refused
    let lying = Conn { id: web.id.clone(), routing: db.routing.clone(), key: web.key.clone() };
    f.hello(&lying, 0);
    let ToMinion::Refused { reason } = f.sent_to(&lying) else { panic!("expected a refusal") };
    assert!(reason.contains("does not name minion 'web-1'"), "{reason}");

    // a connection with another key takes web-1's route (it knew the random part): the
    // session ends at once, and nothing more for web-1 goes down that route
    let thief = Conn { id: web.id.clone(), routing: web.routing.clone(), key: db.key.clone() };
    f.from(&thief, &ToMaster::Heartbeat { seq: 1 });
    assert_eq!(f.sent_to(&thief), ToMinion::Rehello);
    assert!(!f.hub.sessions.contains_key(&web.id));
    let (start, mut answer) = job(&web.id);
    f.hub.on_command(start);
    assert_eq!(answer.try_recv().unwrap().not_connected, ["web-1"]);
    // its hello is refused too: another key is registered for web-1
    f.hello(&thief, 0);
    f.settle();
    assert!(matches!(f.sent_to(&thief), ToMinion::Refused { .. }));
    assert!(f.silent());

    // the minion itself redials (a new random part) and is welcomed again
    let back = f.conn(&web);
    f.hello(&back, 0);
    assert!(matches!(f.sent_to(&back), ToMinion::Welcome { .. }));
}

#[test]
fn a_return_is_kept_only_from_a_minion_the_job_was_sent_to() {
    let mut f = fixture();
    let (w1, w2) = (f.accepted("web-1"), f.accepted("web-2"));
    for conn in [&w1, &w2] {
        f.hello(conn, 0);
        assert!(matches!(f.sent_to(conn), ToMinion::Welcome { .. }));
    }
    let (start, mut answer) = job(&w1.id);
    let Command::Start { ref job, .. } = start else { unreachable!() };
    let jid = job.jid.clone();
    f.hub.on_command(start);
    assert!(matches!(f.sent_to(&w1), ToMinion::Job(_)));

    // web-2 returns web-1's job under web-1's name: dropped unread, not acknowledged
    f.from(&w2, &ToMaster::Return(ret(&jid, &w1.id)));
    assert!(f.silent());
    assert_eq!(f.hub.drops.total("web-2", Reason::ReturnOtherId), 1);
    // web-2 returns a job the hub runs and never sent it: acknowledged (so that it stops
    // resending) and dropped; the job still waits for web-1
    f.from(&w2, &ToMaster::Return(ret(&jid, &w2.id)));
    assert_eq!(f.sent_to(&w2), ToMinion::Ack { jid: jid.clone() });
    assert_eq!(f.hub.drops.total("web-2", Reason::ReturnNotSent), 1);
    assert!(answer.try_recv().is_err(), "the job does not end on a return it did not ask for");
    // a made-up jid (no job the hub runs, none the store recorded): the store refuses it
    let made_up = Jid::generate();
    f.from(&w2, &ToMaster::Return(ret(&made_up, &w2.id)));
    let committed = f.commit();
    assert_eq!((committed.len(), committed[0].kept), (1, false));
    assert_eq!(f.sent_to(&w2), ToMinion::Ack { jid: made_up });
    assert_eq!(f.hub.drops.total("web-2", Reason::ReturnNotSent), 2);
    // a connection not in session (a stranger's key) is told to say hello, nothing stored
    let stranger = f.stranger("web-2");
    f.from(&stranger, &ToMaster::Return(ret(&jid, &w2.id)));
    assert_eq!(f.sent_to(&stranger), ToMinion::Rehello);

    // web-1's own return: committed, acknowledged, and the job ends with it alone
    f.from(&w1, &ToMaster::Return(ret(&jid, &w1.id)));
    let committed = f.commit();
    assert!(committed[0].kept && committed[0].fresh);
    assert_eq!(f.sent_to(&w1), ToMinion::Ack { jid: jid.clone() });
    let done = answer.try_recv().expect("the job ended");
    assert_eq!(done.returns.keys().collect::<Vec<_>>(), ["web-1"]);
    assert!(f.silent());
}
