//! The minion's session against an in-process fake master: a CURVE ROUTER with its own
//! ZAP handler and key port, on one thread, driven by the test through channels.
//!
//! Every wait polls with a deadline; nothing here asserts how long anything takes.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use wire::msg::KeyInfo;
use wire::{Jid, Job, KeyPair, MinionId, ToMaster, ToMinion};

use minion::config::{Config, MasterAddr};

const DEADLINE: Duration = Duration::from_secs(20);

/// What the fake master saw.
#[derive(Debug)]
enum Seen {
    /// A message on the ROUTER: the routing id, the ZAP user id (client key), the message.
    Message { routing: Vec<u8>, user_id: String, msg: ToMaster },
    /// A request on the key port.
    KeyRequest,
}

struct FakeMaster {
    port: u16,
    seen: mpsc::Receiver<Seen>,
    out: mpsc::Sender<Out>,
    thread: Option<thread::JoinHandle<()>>,
}

enum Out {
    Frame(Vec<u8>, Vec<u8>),
    Stop,
}

impl FakeMaster {
    /// Binds a ROUTER on `port` (any free port when None) and a key port on the next one.
    fn start(keys: &KeyPair, port: Option<u16>) -> Self {
        Self::start_on(keys, "127.0.0.1", port)
    }

    /// Binds on `host` (an address).
    fn start_on(keys: &KeyPair, host: &str, port: Option<u16>) -> Self {
        for _ in 0..50 {
            if let Some(master) = Self::try_start(keys, host, port) {
                return master;
            }
            // the port (or the next one) is taken for now: another port, or the same later
            thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot bind a fake master");
    }

    fn try_start(keys: &KeyPair, host: &str, port: Option<u16>) -> Option<Self> {
        let ctx = zmq::Context::new();
        let zap = ctx.socket(zmq::REP).unwrap();
        zap.bind("inproc://zeromq.zap.01").unwrap();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.set_curve_server(true).unwrap();
        router.set_curve_secretkey(&keys.secret_raw()).unwrap();
        router.set_zap_domain("drover").unwrap();
        match port {
            Some(p) => router.bind(&format!("tcp://{host}:{p}")).ok()?,
            None => router.bind(&format!("tcp://{host}:*")).unwrap(),
        }
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let key_port = ctx.socket(zmq::REP).unwrap();
        key_port.set_linger(0).unwrap();
        key_port.bind(&format!("tcp://{host}:{}", port - 1)).ok()?;
        let info = wire::msg::encode(&KeyInfo {
            public_key: keys.public.clone(),
            fingerprint: keys.public.fingerprint(),
        })
        .unwrap();

        let (seen_tx, seen) = mpsc::channel();
        let (out, out_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let _ctx = ctx;
            // like a real master: heartbeats of welcomed connections are acknowledged, others
            // get a rehello
            let mut welcomed = std::collections::HashSet::new();
            loop {
                let mut items = [
                    zap.as_poll_item(zmq::POLLIN),
                    router.as_poll_item(zmq::POLLIN),
                    key_port.as_poll_item(zmq::POLLIN),
                ];
                zmq::poll(&mut items, 20).unwrap();
                let ready = [items[0].is_readable(), items[1].is_readable(), items[2].is_readable()];
                if ready[0] {
                    // [version, request_id, domain, address, routing_id, mechanism, client key]
                    let req = zap.recv_multipart(0).unwrap();
                    let user_id = zmq::z85_encode(&req[6]).unwrap();
                    let reply: [&[u8]; 6] = [&req[0], &req[1], b"200", b"OK", user_id.as_bytes(), b""];
                    zap.send_multipart(reply, 0).unwrap();
                }
                if ready[1] {
                    let mut routing = zmq::Message::new();
                    router.recv(&mut routing, 0).unwrap();
                    let mut body = zmq::Message::new();
                    router.recv(&mut body, 0).unwrap();
                    let user_id = body.gets("User-Id").unwrap_or_default().to_string();
                    let msg = wire::msg::decode::<ToMaster>(&body).unwrap();
                    if let ToMaster::Heartbeat { seq } = msg {
                        let reply = match welcomed.contains(&routing.to_vec()) {
                            true => ToMinion::HeartbeatAck { seq },
                            false => ToMinion::Rehello,
                        };
                        router
                            .send_multipart([routing.to_vec(), wire::msg::encode(&reply).unwrap()], 0)
                            .unwrap();
                    }
                    let _ = seen_tx.send(Seen::Message { routing: routing.to_vec(), user_id, msg });
                }
                if ready[2] {
                    key_port.recv_bytes(0).unwrap();
                    key_port.send(&info, 0).unwrap();
                    let _ = seen_tx.send(Seen::KeyRequest);
                }
                loop {
                    match out_rx.try_recv() {
                        Ok(Out::Frame(routing, body)) => {
                            if let Ok(ToMinion::Welcome { .. }) = wire::msg::decode(&body) {
                                welcomed.insert(routing.clone());
                            }
                            router.send_multipart([routing, body], 0).unwrap();
                        }
                        Ok(Out::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                        Err(mpsc::TryRecvError::Empty) => break,
                    }
                }
            }
        });
        Some(Self { port, seen, out, thread: Some(thread) })
    }

    fn send(&self, routing: &[u8], msg: &ToMinion) {
        self.send_raw(routing, wire::msg::encode(msg).unwrap());
    }

    fn send_raw(&self, routing: &[u8], body: Vec<u8>) {
        self.out.send(Out::Frame(routing.to_vec(), body)).unwrap();
    }

    /// The next thing seen that `pick` accepts (others are skipped), within the deadline.
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&Seen) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(seen) => {
                    if let Some(t) = pick(&seen) {
                        return t;
                    }
                }
                Err(_) => panic!("fake master: no {what} before the deadline"),
            }
        }
    }

    /// The next message that `pick` accepts.
    fn wait_msg<T>(&self, what: &str, mut pick: impl FnMut(&ToMaster) -> Option<T>) -> (Vec<u8>, T) {
        self.wait_for(what, |seen| match seen {
            Seen::Message { routing, msg, .. } => pick(msg).map(|t| (routing.clone(), t)),
            Seen::KeyRequest => None,
        })
    }

    fn wait_hello(&self) -> (Vec<u8>, String, wire::Hello) {
        self.wait_for("hello", |seen| match seen {
            Seen::Message { routing, user_id, msg: ToMaster::Hello(hello) } => {
                Some((routing.clone(), user_id.clone(), hello.clone()))
            }
            _ => None,
        })
    }

    fn wait_return(&self, jid: &Jid) -> wire::JobReturn {
        self.wait_msg(&format!("return of {jid}"), |m| match m {
            ToMaster::Return(r) if r.jid == *jid => Some(r.clone()),
            _ => None,
        })
        .1
    }
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        let _ = self.out.send(Out::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A minion running `minion::run` on its own thread and runtime, as the binary does.
struct Minion {
    shutdown: CancellationToken,
    thread: Option<thread::JoinHandle<Result<(), minion::Error>>>,
}

impl Minion {
    fn start(config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(minion::run(config, token))
        });
        Self { shutdown, thread: Some(thread) }
    }

    fn stop(mut self) -> Result<(), minion::Error> {
        self.shutdown.cancel();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Minion {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(dir: &Path, port: u16) -> Config {
    let mut c = Config::new(
        MinionId::new("m1").unwrap(),
        MasterAddr { host: "localhost".into(), port },
        dir.to_path_buf(),
    );
    c.heartbeat = Duration::from_millis(200);
    c
}

fn job(fun: &str, args: Vec<serde_json::Value>) -> (Jid, ToMinion) {
    let jid = Jid::generate();
    let job = Job { jid: jid.clone(), fun: fun.into(), args, kwargs: Default::default(), timeout_ms: None };
    (jid, ToMinion::Job(job))
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not before the deadline");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hello_welcome_job_return_resend_ack() {
    let dir = tempfile::tempdir().unwrap();
    let master_keys = KeyPair::generate().unwrap();
    let master = FakeMaster::start(&master_keys, None);
    let mut cfg = config(dir.path(), master.port);
    cfg.master_key = Some(master_keys.public.clone());
    cfg.grains = vec![("rack".into(), json!(3))];
    let minion = Minion::start(cfg);

    let (routing, user_id, hello) = master.wait_hello();
    let minion_pub = wire::PublicKey::read(&dir.path().join("pki/minion.pub")).unwrap();
    assert_eq!(user_id, minion_pub.z85());
    assert_eq!(hello.id.as_str(), "m1");
    // the routing id names the minion and carries a random part
    assert!(wire::routing_id_names(&routing, &hello.id), "{routing:?}");
    assert_eq!(hello.grains["rack"], json!(3));
    assert_eq!(hello.grains["id"], json!("m1"));
    // the key given with --master-key is pinned
    assert_eq!(wire::PublicKey::read(&dir.path().join("pki/master.pub")).unwrap(), master_keys.public);

    master.send(&routing, &ToMinion::Welcome { heartbeat_ms: 200 });
    master.wait_msg("heartbeat", |m| matches!(m, ToMaster::Heartbeat { .. }).then_some(()));

    let (jid, echo) = job("test.echo", vec![json!("hi")]);
    master.send(&routing, &echo);
    let ret = master.wait_return(&jid);
    assert_eq!((ret.success, ret.retcode, &ret.ret), (true, 0, &json!("hi")));
    assert_eq!(ret.id.as_str(), "m1");
    assert!(ret.started_ms <= ret.finished_ms);
    let spooled = dir.path().join(format!("returns/{jid}.ret"));
    assert!(spooled.exists());

    // not acknowledged: sent again
    assert_eq!(master.wait_return(&jid), ret);

    master.send(&routing, &ToMinion::Ack { jid: jid.clone() });
    wait_until("spool file deleted after ack", || !spooled.exists());

    // garbage is dropped, the session goes on; a job sent again after its ack is ignored
    master.send_raw(&routing, b"\x93garbage".to_vec());
    master.send(&routing, &echo);
    let (jid2, unknown) = job("no.such", vec![]);
    master.send(&routing, &unknown);
    // a resend of the first return may still be on its way (sent before the ack); a run of
    // the job again would carry other times
    let ret2 = master.wait_msg("the return of the unknown function", |m| match m {
        ToMaster::Return(r) if r.jid == jid => {
            assert_eq!(*r, ret, "the acknowledged job ran again");
            None
        }
        ToMaster::Return(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(ret2.1.jid, jid2);
    assert!(!ret2.1.success);
    assert!(ret2.1.ret.as_str().unwrap().contains("'no.such' is not available"));

    minion.stop().unwrap();
}

#[test]
fn first_use_trust_pending_and_returns_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let master_keys = KeyPair::generate().unwrap();
    let master = FakeMaster::start(&master_keys, None);
    let minion = Minion::start(config(dir.path(), master.port));

    master.wait_for("key request", |s| matches!(s, Seen::KeyRequest).then_some(()));
    let (routing, _, _) = master.wait_hello();
    assert_eq!(wire::PublicKey::read(&dir.path().join("pki/master.pub")).unwrap(), master_keys.public);

    // pending: the minion keeps saying hello until welcomed
    master.send(&routing, &ToMinion::Pending);
    master.wait_hello();
    master.send(&routing, &ToMinion::Welcome { heartbeat_ms: 200 });
    let (jid, ping) = job("test.ping", vec![]);
    master.send(&routing, &ping);
    assert_eq!(master.wait_return(&jid).ret, json!(true));
    minion.stop().unwrap();

    // a new minion process on the same directory sends the unacknowledged return again
    let minion = Minion::start(config(dir.path(), master.port));
    let (routing, _, _) = master.wait_hello();
    master.send(&routing, &ToMinion::Welcome { heartbeat_ms: 200 });
    assert_eq!(master.wait_return(&jid).ret, json!(true));
    master.send(&routing, &ToMinion::Ack { jid: jid.clone() });
    let spooled = dir.path().join(format!("returns/{jid}.ret"));
    wait_until("spool file deleted after ack", || !spooled.exists());
    minion.stop().unwrap();
}

#[test]
fn reconnects_to_a_restarted_master() {
    let dir = tempfile::tempdir().unwrap();
    let master_keys = KeyPair::generate().unwrap();
    let master = FakeMaster::start(&master_keys, None);
    let port = master.port;
    let mut cfg = config(dir.path(), port);
    cfg.master_key = Some(master_keys.public.clone());
    let minion = Minion::start(cfg);
    let (routing, _, _) = master.wait_hello();
    master.send(&routing, &ToMinion::Welcome { heartbeat_ms: 200 });
    master.wait_msg("heartbeat", |m| matches!(m, ToMaster::Heartbeat { .. }).then_some(()));
    drop(master);

    // the new master knows nothing: a heartbeat gets a rehello (or the minion reconnects
    // after the silence); either way a hello comes
    let master = FakeMaster::start(&master_keys, Some(port));
    let (routing, _, hello) = master.wait_hello();
    assert_eq!(hello.id.as_str(), "m1");
    master.send(&routing, &ToMinion::Welcome { heartbeat_ms: 200 });
    let (jid, ping) = job("test.ping", vec![]);
    master.send(&routing, &ping);
    assert!(master.wait_return(&jid).success);
    minion.stop().unwrap();
}

#[test]
fn a_master_with_another_key_is_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = KeyPair::generate().unwrap();
    let impostor = KeyPair::generate().unwrap();
    let pinned = dir.path().join("pki/master.pub");
    std::fs::create_dir_all(pinned.parent().unwrap()).unwrap();
    std::fs::write(&pinned, format!("{}\n", trusted.public)).unwrap();

    let master = FakeMaster::start(&impostor, None);
    let minion = Minion::start(config(dir.path(), master.port));
    // the handshake fails silently; after the silence the minion asks the key port and
    // finds another key: it reports it (a log) and keeps the pinned one
    let seen = master.wait_for("key request", |s| match s {
        Seen::KeyRequest => Some(None),
        Seen::Message { msg, .. } => Some(Some(format!("{msg:?}"))),
    });
    assert_eq!(seen, None, "a message reached a master with another key");
    assert_eq!(wire::PublicKey::read(&pinned).unwrap(), trusted.public);
    minion.stop().unwrap();

    // --master-key that differs from the pinned key: refused before connecting
    let mut cfg = config(dir.path(), master.port);
    cfg.master_key = Some(impostor.public.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(minion::run(cfg, CancellationToken::new())).unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("delete"), "{err}");
}

/// The master's name is looked up again on every attempt: a name that does not resolve at
/// first is dialled as soon as it does. The name is added to an `/etc/hosts` of the test's
/// own: a file bind-mounted over it in a mount namespace that only the test's thread (and
/// the threads it starts: the minion's, the fake master's) is in, so the machine's file is
/// never touched. Needs root (CAP_SYS_ADMIN), as CI runs; skips with a message otherwise.
#[test]
fn the_master_name_is_resolved_again_on_every_attempt() {
    use std::io::Write;

    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: a private /etc/hosts (a mount namespace) needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts_path = dir.path().join("hosts");
    std::fs::copy("/etc/hosts", &hosts_path).unwrap();
    let test = {
        let (dir, hosts_path) = (dir.path().to_path_buf(), hosts_path.clone());
        thread::spawn(move || {
            // this thread alone leaves the process's mount namespace; nothing mounted in
            // the new one propagates back
            unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
                .expect("a mount namespace of the test's own");
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .expect("make the test's mounts private");
            mount(Some(&hosts_path), "/etc/hosts", None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .expect("bind the test's hosts file over /etc/hosts");

            let name = format!("drover-resolve-{}.test", std::process::id());
            let master_keys = KeyPair::generate().unwrap();
            // not 127.0.0.1: only the name, once it resolves, leads there
            let master = FakeMaster::start_on(&master_keys, "127.0.0.2", None);
            let mut cfg = config(&dir, master.port);
            cfg.master = MasterAddr { host: name.clone(), port: master.port };
            cfg.master_key = Some(master_keys.public.clone());
            let minion = Minion::start(cfg);

            // a few failed lookups, then the name appears (written in place: the bind
            // mount holds this inode)
            thread::sleep(Duration::from_millis(500));
            let mut hosts = std::fs::OpenOptions::new().append(true).open(&hosts_path).unwrap();
            hosts.write_all(format!("127.0.0.2 {name}\n").as_bytes()).unwrap();

            let (routing, _, hello) = master.wait_hello();
            assert_eq!(hello.id.as_str(), "m1");
            master.send(&routing, &ToMinion::Welcome { heartbeat_ms: 200 });
            let (jid, ping) = job("test.ping", vec![]);
            master.send(&routing, &ping);
            assert!(master.wait_return(&jid).success);
            minion.stop().unwrap();
            name
        })
    };
    let name = test.join().expect("the test's thread");
    let machine = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(!machine.contains(&name), "the machine's /etc/hosts was changed");
}
