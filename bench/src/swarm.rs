//! A minion swarm: N simulated minions in one process, each with its own CURVE keypair and
//! DEALER socket, speaking the real protocol. Functions: `test.ping`, `test.echo`; anything
//! else fails as "not available in the swarm".
//!
//! Sockets are spread over several ZeroMQ contexts (libzmq allows 1,023 sockets per
//! context by default) and served by one thread per 500 minions, woken by epoll. A swarm
//! of more than [`PER_PROCESS`] minions runs in child processes (`drover-bench swarm
//! --report`), since each minion holds two file descriptors (its connection and its
//! socket's mailbox) and a process often may not hold more than 20,000.

use std::io::{BufRead, BufReader};
use std::os::fd::BorrowedFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serde_json::{Value, json};
use wire::msg::{decode, encode, now_ms};
use wire::{Hello, JobReturn, KeyPair, MinionId, PublicKey, ToMaster, ToMinion};

/// Minions per thread and per context (libzmq allows 1,023 sockets per context).
const PER_THREAD: usize = 500;

/// Minions per process: each holds its TCP connection and its socket's mailbox (two file
/// descriptors), against a limit of open files that is often 20,000.
pub const PER_PROCESS: usize = 4000;

pub struct SwarmConfig {
    pub master: String,
    pub master_key: PublicKey,
    pub count: usize,
    pub prefix: String,
    /// The number of the first minion (`<prefix>00001` for 1).
    pub first: usize,
    pub heartbeat: Duration,
}

/// A running swarm; stops when dropped.
pub struct Swarm {
    stop: Arc<AtomicBool>,
    pub connected: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
    children: Vec<Child>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Sim {
    id: MinionId,
    sock: zmq::Socket,
    welcomed: bool,
    last_hello: Instant,
    last_beat: Instant,
    seq: u64,
}

impl Swarm {
    pub fn start(cfg: &SwarmConfig) -> anyhow::Result<Swarm> {
        if cfg.count > PER_PROCESS {
            return Self::start_processes(cfg);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        let ids: Vec<usize> = (cfg.first..cfg.first + cfg.count).collect();
        for chunk in ids.chunks(PER_THREAD) {
            let ctx = zmq::Context::new();
            let mut sims = Vec::new();
            for &i in chunk {
                let id = MinionId::new(format!("{}{i:05}", cfg.prefix))?;
                let keys = KeyPair::generate()?;
                let sock = ctx.socket(zmq::DEALER)?;
                sock.set_identity(&wire::routing_id(&id)?)?;
                sock.set_curve_serverkey(&cfg.master_key.raw())?;
                sock.set_curve_publickey(&keys.public.raw())?;
                sock.set_curve_secretkey(&keys.secret_raw())?;
                sock.set_linger(0)?;
                sock.connect(&format!("tcp://{}", cfg.master))?;
                let past = Instant::now() - Duration::from_secs(3600);
                sims.push(Sim { id, sock, welcomed: false, last_hello: past, last_beat: past, seq: 0 });
            }
            let (stop, connected, beat) = (stop.clone(), connected.clone(), cfg.heartbeat);
            threads.push(thread::spawn(move || run(ctx, sims, beat, stop, connected)));
        }
        Ok(Swarm { stop, connected, threads, children: Vec::new() })
    }

    /// The swarm as child processes of [`PER_PROCESS`] minions at most, each reporting its
    /// count of welcomed minions on a line of its own (`drover-bench swarm --report`).
    fn start_processes(cfg: &SwarmConfig) -> anyhow::Result<Swarm> {
        let exe = std::env::current_exe()?;
        let mut swarm = Swarm {
            stop: Arc::new(AtomicBool::new(false)),
            connected: Arc::new(AtomicUsize::new(0)),
            threads: Vec::new(),
            children: Vec::new(),
        };
        let mut first = cfg.first;
        while first < cfg.first + cfg.count {
            let count = PER_PROCESS.min(cfg.first + cfg.count - first);
            let mut child = Command::new(&exe)
                .args([
                    "swarm",
                    "--report",
                    "--master",
                    &cfg.master,
                    "--master-key",
                    &cfg.master_key.to_string(),
                ])
                .args(["--count", &count.to_string(), "--prefix", &cfg.prefix, "--first", &first.to_string()])
                .stdout(Stdio::piped())
                .spawn()?;
            let out = child.stdout.take().expect("piped");
            swarm.children.push(child);
            let connected = swarm.connected.clone();
            swarm.threads.push(thread::spawn(move || {
                let mut last = 0;
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("connected ").and_then(|n| n.parse::<usize>().ok()) {
                        connected.fetch_add(n.saturating_sub(last), Ordering::Relaxed);
                        last = last.max(n);
                    }
                }
            }));
            first += count;
        }
        Ok(swarm)
    }

    /// Prints `connected N` whenever the count of welcomed minions changes, and every second
    /// besides, until the process is killed (for [`Swarm::start_processes`]). A parent gone
    /// ends it within a second: printing to a closed pipe ends the process.
    pub fn report(&self) -> ! {
        let (mut last, mut printed) = (usize::MAX, Instant::now());
        loop {
            let n = self.connected.load(Ordering::Relaxed);
            if n != last || printed.elapsed() >= Duration::from_secs(1) {
                println!("connected {n}");
                (last, printed) = (n, Instant::now());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every simulated minion was welcomed; returns how long that took.
    pub fn wait_connected(&self, count: usize, limit: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        while self.connected.load(Ordering::Relaxed) < count {
            anyhow::ensure!(
                t0.elapsed() < limit,
                "only {} of {count} swarm minions connected after {limit:?}",
                self.connected.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(5));
        }
        Ok(t0.elapsed())
    }
}

fn grains(id: &MinionId) -> wire::msg::Grains {
    [
        ("id".to_string(), json!(id.as_str())),
        ("os".to_string(), json!("Debian")),
        ("os_family".to_string(), json!("Debian")),
        ("kernel".to_string(), json!("Linux")),
        ("swarm".to_string(), json!(true)),
    ]
    .into()
}

fn answer(job: &wire::Job) -> (bool, Value) {
    match job.fun.as_str() {
        "test.ping" => (true, json!(true)),
        "test.echo" => (true, job.args.first().cloned().unwrap_or(Value::Null)),
        other => (false, json!(format!("'{other}' is not available in the swarm"))),
    }
}

#[allow(unsafe_code)] // BorrowedFd::borrow_raw: see the SAFETY note
fn run(
    _ctx: zmq::Context,
    mut sims: Vec<Sim>,
    beat: Duration,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
) {
    // One epoll over the sockets' ZMQ_FDs, not zmq_poll: zmq_poll asks every one of its
    // sockets for ZMQ_EVENTS on each call (a system call each), so a thread of 500 minions
    // paid 1,000 system calls per wake-up and the swarm, not the master, set the pace at
    // 10,000 minions. Here a wake-up costs only the sockets that have something.
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("an epoll instance");
    for (i, s) in sims.iter().enumerate() {
        let fd = s.sock.get_fd().expect("a ZMQ_FD");
        // SAFETY: the descriptor is the socket's own and lives as long as the socket, which
        // outlives the epoll instance (both dropped at the end of this function).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64)).expect("an epoll registration");
    }
    let mut events = vec![EpollEvent::empty(); sims.len()];
    // Sockets to look at besides those epoll names: a send may take in the signal of a
    // message that arrived meanwhile, after which the ZMQ_FD no longer says so.
    let mut touched: Vec<usize> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (i, s) in sims.iter_mut().enumerate() {
            if !s.welcomed && now.duration_since(s.last_hello) > Duration::from_secs(1) {
                let hello = ToMaster::Hello(Hello {
                    id: s.id.clone(),
                    version: "swarm".into(),
                    grains: grains(&s.id),
                    generation: 0,
                });
                let _ = s.sock.send(encode(&hello).expect("encodes"), zmq::DONTWAIT);
                s.last_hello = now;
                touched.push(i);
            }
            if s.welcomed && now.duration_since(s.last_beat) > beat {
                s.seq += 1;
                let _ =
                    s.sock.send(encode(&ToMaster::Heartbeat { seq: s.seq }).expect("encodes"), zmq::DONTWAIT);
                s.last_beat = now;
                touched.push(i);
            }
        }
        let wait = if touched.is_empty() { EpollTimeout::from(50u16) } else { EpollTimeout::ZERO };
        let n = epoll.wait(&mut events, wait).unwrap_or(0);
        touched.extend(events[..n].iter().map(|e| e.data() as usize));
        for i in touched.drain(..) {
            serve(&mut sims[i], &connected);
        }
    }
}

/// Takes every message the socket holds and answers it, until ZMQ_EVENTS says there is no
/// more (which also takes in the signal its ZMQ_FD woke the thread with).
fn serve(s: &mut Sim, connected: &AtomicUsize) {
    while s.sock.get_events().is_ok_and(|e| e.contains(zmq::POLLIN)) {
        while let Ok(body) = s.sock.recv_bytes(zmq::DONTWAIT) {
            match decode::<ToMinion>(&body) {
                Ok(ToMinion::Welcome { .. }) if !s.welcomed => {
                    s.welcomed = true;
                    s.last_beat = Instant::now();
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ToMinion::Rehello) => s.last_hello = Instant::now() - Duration::from_secs(3600),
                Ok(ToMinion::Job(job)) => {
                    let started = now_ms();
                    let (success, ret) = answer(&job);
                    let r = ToMaster::Return(JobReturn {
                        jid: job.jid.clone(),
                        id: s.id.clone(),
                        fun: job.fun.clone(),
                        success,
                        retcode: if success { 0 } else { 1 },
                        ret,
                        started_ms: started,
                        finished_ms: now_ms(),
                        killed: false,
                    });
                    let _ = s.sock.send(encode(&r).expect("encodes"), zmq::DONTWAIT);
                }
                _ => {}
            }
        }
    }
}
