//! The session with the master: hello, heartbeats, reconnection, jobs and their returns.
//!
//! One task owns every piece of session state and is fed by messages: frames from the
//! socket thread, finished jobs, timers and the shutdown token. It never blocks on zmq.
//!
//! - On connect it sends `Hello` and resends it every interval until `Welcome` (`Pending`
//!   is logged once; after `Refused` it retries every 30 s; after `Superseded`, logged
//!   once, every [`SUPERSEDED_RETRY`], its daemons left running, so that it is the minion
//!   again soon after the container of a higher generation that took its place is gone).
//! - It sends `Health` after every `Welcome` and whenever the minion's health changes.
//! - Once welcomed it sends `Heartbeat` every interval and resends unacknowledged returns
//!   every [`RESEND_EVERY`] and right after every `Welcome`.
//! - Each job runs as a task of its own, listed in [`crate::jobs::Running`] until its
//!   return is kept; `Kill` from the master aborts it and its return says it was killed.
//! - When the master is silent for [`SILENT_INTERVALS`] intervals it drops the socket, waits
//!   a jittered backoff, resolves the master's name again and connects a fresh socket. If
//!   nothing at all came back on that socket, it asks the key port whether the master now
//!   shows another key and says so (it never switches keys itself).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};
use wire::msg::{Grains, Hello};
use wire::{Health, Jid, Job, JobReturn, KeyPair, PublicKey, ToMaster, ToMinion};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::converge::Converger;
use crate::error::Error;
use crate::functions::{self, Call, Outcome};
use crate::jobs::{self, JobInfo, Running};
use crate::outbox::{self, Outbox, Spooled};
use crate::supervisor::Supervisor;
use crate::transport::{self, Identity, Transport};
use crate::{grains, health, pki};

/// How often unacknowledged returns are sent again (at first; see `resend_returns`).
pub const RESEND_EVERY: Duration = Duration::from_secs(2);
/// The longest wait between two rounds of resent returns.
pub const RESEND_MAX: Duration = Duration::from_secs(30);
/// The most bytes of returns resent in one round.
pub const RESEND_BYTES: usize = 4 << 20;
/// How many heartbeat intervals of silence mean the master is gone.
pub const SILENT_INTERVALS: u32 = 3;
/// How often a refused minion says hello again.
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// How often a superseded minion says hello again.
pub const SUPERSEDED_RETRY: Duration = Duration::from_secs(2);
/// How many acknowledged jids are remembered to ignore a job sent twice.
const REMEMBERED_JIDS: usize = 4096;

/// Runs the minion until `shutdown`: keys, grains, the spooled returns, the master key
/// (trusted on first use if need be), then the session.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    wire::private::create_dir(&config.dir)
        .map_err(|source| Error::Dir { path: config.dir.clone(), source })?;
    for loose in wire::private::secure(&config.dir) {
        warn!(path = %loose.path.display(), "{loose}");
    }
    let (keys, created) = KeyPair::load_or_create(&config.pki_dir(), "minion")?;
    if created {
        info!(fingerprint = %keys.public.fingerprint(), "generated this minion's key");
    }
    let grains = grains::collect(&config.id, &config.grains_file(), &config.grains)?;
    let outbox = Outbox::load(&config.returns_dir())?;
    if !outbox.is_empty() {
        info!(count = outbox.len(), "spooled returns will be sent once connected");
    }
    let ctx = zmq::Context::new();
    let Some(master_key) = pki::master_key(&config, &ctx, &shutdown).await? else {
        return Ok(());
    };
    info!(
        id = %config.id,
        master = %config.master,
        master_fingerprint = %master_key.fingerprint(),
        fingerprint = %keys.public.fingerprint(),
        "minion starting"
    );
    let grains = Arc::new(grains);
    let (events_tx, events) = mpsc::unbounded_channel();
    let supervisor = Supervisor::start(config.dir.join("daemons"), events_tx);
    if std::process::id() == 1 {
        tokio::spawn(forward_signals(supervisor.clone()));
    }
    let (to_master, from_converger) = mpsc::unbounded_channel();
    let converger = Converger::start(
        config.id.to_string(),
        grains.clone(),
        config.dir.join("cache"),
        supervisor.clone(),
        to_master,
    );
    let (link, link_rx) = watch::channel(health::Link::Down);
    let health =
        health::Sources { link: link_rx, convergence: converger.convergence(), daemons: supervisor.health() };
    // answers `drover-minion health` until the minion's daemons are stopped
    let _health_socket = match health::serve(&config.dir, health.clone()) {
        Ok(server) => Some(server),
        Err(e) => {
            warn!(socket = %config.health_socket().display(), cause = %e, "cannot serve health checks: 'drover-minion health' will find no minion");
            None
        }
    };
    let services =
        functions::Services { supervisor: Some(supervisor.clone()), converger: Some(converger.clone()) };
    let links = Links { converger, from_converger, events, link, health, services };
    let result = match Session::new(config, ctx, keys, master_key, grains, outbox, links) {
        Ok(session) => session.run(shutdown).await,
        Err(e) => Err(e),
    };
    // every daemon stops, latest started first, before the minion exits (as PID 1 too)
    supervisor.shutdown().await;
    result
}

/// As PID 1 (a container's entrypoint), SIGHUP, SIGUSR1 and SIGUSR2 sent to the container
/// are meant for its daemons: pass them on to every daemon's process group.
async fn forward_signals(supervisor: Supervisor) {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        warn!("cannot listen for SIGHUP/SIGUSR1/SIGUSR2: they will not reach the daemons");
        return;
    };
    loop {
        let sig = tokio::select! {
            Some(()) = hup.recv() => Signal::SIGHUP,
            Some(()) = usr1.recv() => Signal::SIGUSR1,
            Some(()) = usr2.recv() => Signal::SIGUSR2,
            else => return,
        };
        let to = supervisor.signal_all(sig).await;
        info!(signal = %sig, daemons = ?to, "forwarded a signal to the daemons");
    }
}

/// The session's links to the rest of the minion.
struct Links {
    converger: Converger,
    /// `Fetch` and `Converged` messages from the converger, for the master.
    from_converger: mpsc::UnboundedReceiver<ToMaster>,
    /// Daemon events from the supervisor, for the master.
    events: mpsc::UnboundedReceiver<wire::Event>,
    /// Where the link stands, for the minion's health; the session owns it.
    link: watch::Sender<health::Link>,
    /// The minion's health, to report to the master.
    health: health::Sources,
    /// What jobs' functions reach: the supervisor and the converger.
    services: functions::Services,
}

/// Where the link to the master stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No socket; the next attempt is at this instant.
    Down { retry_at: Instant },
    /// Hello sent, no answer yet.
    Hello,
    /// The master knows the key but it is not accepted yet.
    Pending,
    /// The master refuses this minion.
    Refused,
    /// Another container of this minion's slot, of a higher generation, has the session.
    Superseded { by: u64 },
    /// Welcomed: heartbeats flow, jobs come, returns go.
    Up,
}

struct Session {
    config: Config,
    master_key: PublicKey,
    ctx: zmq::Context,
    transport: Transport,
    incoming: mpsc::UnboundedReceiver<ToMinion>,
    hello: Vec<u8>,
    grains: Arc<Grains>,
    outbox: Outbox,
    jobs: Jobs,
    links: Links,
    link: Link,
    backoff: Backoff,
    interval: Duration,
    /// The address the current socket dials.
    addr: Option<SocketAddr>,
    last_heard: Instant,
    /// Whether anything came back on the current socket (i.e. the handshake worked).
    heard_on_socket: bool,
    next_beat: Instant,
    next_resend: Instant,
    resend_every: Duration,
    /// Where the next resend round starts in the outbox.
    resend_cursor: usize,
    seq: u64,
    told_pending: bool,
    told_superseded: bool,
    /// Why the master refuses this minion, while it does.
    refused: String,
    /// The health last sent to the master on this session.
    sent_health: Option<Health>,
    /// The background check of the master's key, if one ran.
    key_check: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    fn new(
        config: Config,
        ctx: zmq::Context,
        keys: KeyPair,
        master_key: PublicKey,
        grains: Arc<Grains>,
        outbox: Outbox,
        links: Links,
    ) -> Result<Self, Error> {
        let (tx, incoming) = mpsc::unbounded_channel();
        let identity = Identity { id: config.id.clone(), keys, master_key: master_key.clone() };
        let transport = Transport::start(&ctx, identity, tx)?;
        let hello = ToMaster::Hello(Hello {
            id: config.id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            grains: (*grains).clone(),
            generation: config.generation,
        });
        let hello = wire::msg::encode(&hello).map_err(Error::Hello)?;
        if hello.len() > wire::msg::MAX_HELLO {
            error!(
                "this minion's hello is {} KiB with its grains, over the {} KiB the master reads before it \
                 welcomes a minion: the master will refuse it; trim the custom grains (DIR/grains.yaml, --grain)",
                hello.len() >> 10,
                wire::msg::MAX_HELLO >> 10
            );
        }
        let now = Instant::now();
        Ok(Self {
            interval: config.heartbeat,
            config,
            master_key,
            ctx,
            transport,
            incoming,
            hello,
            grains,
            outbox,
            jobs: Jobs::new(),
            links,
            link: Link::Down { retry_at: now },
            backoff: Backoff::default(),
            addr: None,
            last_heard: now,
            heard_on_socket: false,
            next_beat: now,
            next_resend: now,
            resend_every: RESEND_EVERY,
            resend_cursor: 0,
            seq: 0,
            told_pending: false,
            told_superseded: false,
            refused: String::new(),
            sent_health: None,
            key_check: None,
        })
    }

    async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                () = shutdown.cancelled() => break,
                msg = self.incoming.recv() => match msg {
                    Some(msg) => self.on_message(msg),
                    None => return Err(Error::TransportStopped),
                },
                Some(ret) = self.jobs.done.recv() => self.on_finished(ret),
                Some(msg) = self.links.from_converger.recv() => self.to_master(msg),
                Some(event) = self.links.events.recv() => self.to_master(ToMaster::Event(event)),
                Ok(()) = self.links.health.convergence.changed() => self.report_health(false),
                Ok(()) = self.links.health.daemons.changed() => self.report_health(false),
                () = tokio::time::sleep_until(wake) => self.on_timer(&shutdown).await,
            }
        }
        // returns of jobs that finished meanwhile are spooled, to be sent after a restart
        while let Ok(ret) = self.jobs.done.try_recv() {
            self.on_finished(ret);
        }
        info!("stopping");
        Ok(())
    }

    /// The interval of hellos or heartbeats in the current state.
    fn period(&self) -> Duration {
        match self.link {
            Link::Refused => REFUSED_RETRY,
            Link::Superseded { .. } => SUPERSEDED_RETRY,
            _ => self.interval,
        }
    }

    /// Moves the link to `link`, and the minion's health with it.
    fn set_link(&mut self, link: Link) {
        self.link = link;
        let seen = match link {
            Link::Down { .. } | Link::Hello => health::Link::Down,
            Link::Pending => health::Link::Pending,
            Link::Refused => health::Link::Refused(self.refused.clone()),
            Link::Superseded { by } => health::Link::Superseded(by),
            Link::Up => health::Link::Up,
        };
        self.links.link.send_if_modified(|published| {
            let changed = *published != seen;
            if changed {
                *published = seen;
            }
            changed
        });
    }

    /// Sends the minion's health to the master if it changed since it was last sent on
    /// this session (or in any case: `force`, after a Welcome).
    fn report_health(&mut self, force: bool) {
        if self.link != Link::Up {
            return;
        }
        let health = self.links.health.report();
        if force || self.sent_health.as_ref() != Some(&health) {
            self.send(&ToMaster::Health(health.clone()));
            self.sent_health = Some(health);
        }
    }

    fn silence_deadline(&self) -> Instant {
        self.last_heard + self.period() * SILENT_INTERVALS
    }

    fn next_wake(&self) -> Instant {
        match self.link {
            Link::Down { retry_at } => retry_at,
            Link::Up if !self.outbox.is_empty() => {
                self.next_beat.min(self.silence_deadline()).min(self.next_resend)
            }
            _ => self.next_beat.min(self.silence_deadline()),
        }
    }

    async fn on_timer(&mut self, shutdown: &CancellationToken) {
        let now = Instant::now();
        if let Link::Down { retry_at } = self.link {
            if now >= retry_at {
                self.connect(shutdown).await;
            }
            return;
        }
        if now >= self.silence_deadline() {
            self.lost();
            return;
        }
        if now >= self.next_beat {
            match self.link {
                Link::Up => {
                    self.seq += 1;
                    self.send(&ToMaster::Heartbeat { seq: self.seq });
                }
                _ => self.transport.send(&self.hello),
            }
            self.next_beat = now + self.period();
        }
        if self.link == Link::Up && now >= self.next_resend {
            self.resend_returns(now);
        }
    }

    /// Resolves the master again and dials it with a fresh socket.
    async fn connect(&mut self, shutdown: &CancellationToken) {
        let resolved = tokio::select! {
            r = transport::resolve(&self.config.master) => r,
            () = shutdown.cancelled() => return,
        };
        let now = Instant::now();
        let addr = match resolved {
            Ok(addr) => addr,
            Err(e) => {
                warn!(master = %self.config.master, cause = %e, "cannot resolve the master; retrying");
                let retry_at = now + self.backoff.next_delay();
                self.set_link(Link::Down { retry_at });
                return;
            }
        };
        debug!(%addr, "connecting to the master");
        self.transport.connect(addr);
        self.addr = Some(addr);
        self.heard_on_socket = false;
        self.last_heard = now;
        self.set_link(Link::Hello);
        self.transport.send(&self.hello);
        self.next_beat = now + self.period();
    }

    /// The master went silent: drop the socket and plan the next attempt.
    fn lost(&mut self) {
        let silent = Instant::now() - self.last_heard;
        warn!(master = %self.config.master, "no answer from the master for {:.0?}; reconnecting", silent);
        self.transport.disconnect();
        if !self.heard_on_socket {
            self.check_master_key();
        }
        let retry_at = Instant::now() + self.backoff.next_delay();
        self.set_link(Link::Down { retry_at });
    }

    /// Nothing came back on a socket: a CURVE handshake with the wrong server key fails
    /// silently, so ask the key port (in the background) whether the master now shows
    /// another key, and say so. The trusted key never changes here.
    fn check_master_key(&mut self) {
        let Some(addr) = self.addr else { return };
        if self.key_check.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let key_addr = SocketAddr::new(addr.ip(), self.config.master.key_port());
        let (ctx, trusted) = (self.ctx.clone(), self.master_key.clone());
        let (master, pinned) = (self.config.master.clone(), self.config.master_pub());
        self.key_check = Some(tokio::spawn(async move {
            match pki::fetch(&ctx, key_addr).await {
                Ok(key) if key != trusted => error!(
                    trusted = %trusted.fingerprint(),
                    presented = %key.fingerprint(),
                    "the master at {master} presents key {} but this minion trusts {}: not connecting; if the \
                     master was replaced on purpose, delete {} (and drop --master-key) to trust the new master",
                    key.fingerprint(),
                    trusted.fingerprint(),
                    pinned.display()
                ),
                Ok(_) => debug!("the master presents the trusted key but did not answer"),
                Err(e) => debug!(cause = %e, "cannot ask the master's key port"),
            }
        }));
    }

    fn on_message(&mut self, msg: ToMinion) {
        let now = Instant::now();
        if let Link::Down { .. } = self.link {
            // left over from the socket just closed: jobs and acks still count, the rest
            // belongs to a session that is over
            match msg {
                ToMinion::Job(job) => self.start_job(job),
                ToMinion::Ack { jid } => self.acknowledged(jid),
                ToMinion::Kill { jid, fun } => self.kill_job(jid, fun),
                _ => {}
            }
            return;
        }
        self.last_heard = now;
        self.heard_on_socket = true;
        match msg {
            ToMinion::Welcome { heartbeat_ms } => {
                if heartbeat_ms > 0 {
                    self.interval = Duration::from_millis(heartbeat_ms.clamp(100, 3_600_000));
                }
                if self.link != Link::Up {
                    info!(master = %self.config.master, heartbeat = ?self.interval, "connected to the master");
                }
                self.set_link(Link::Up);
                self.told_pending = false;
                self.told_superseded = false;
                self.backoff.reset();
                self.next_beat = now + self.interval;
                self.resend_every = RESEND_EVERY;
                self.resend_returns(now);
                self.report_health(true);
            }
            ToMinion::Pending => {
                if !self.told_pending {
                    warn!("key not accepted yet: run 'drover key accept {}' on the master", self.config.id);
                    self.told_pending = true;
                }
                self.set_link(Link::Pending);
            }
            ToMinion::Refused { reason } => {
                error!(%reason, "the master refuses this minion; trying again every {:?}", REFUSED_RETRY);
                self.refused = reason;
                self.set_link(Link::Refused);
                self.next_beat = now + REFUSED_RETRY;
            }
            ToMinion::Superseded { by } => {
                if !self.told_superseded {
                    warn!(
                        generation = self.config.generation,
                        by,
                        "superseded: another container of this minion (generation {by}) has its session now; \
                         this one gets no jobs, keeps its daemons running and says hello every {:?} to take \
                         over once that one is gone",
                        SUPERSEDED_RETRY
                    );
                    self.told_superseded = true;
                }
                self.set_link(Link::Superseded { by });
                self.next_beat = now + SUPERSEDED_RETRY;
            }
            ToMinion::Rehello => {
                debug!("the master asks for a new hello");
                self.set_link(Link::Hello);
                self.transport.send(&self.hello);
                self.next_beat = now + self.period();
            }
            ToMinion::HeartbeatAck { .. } => {}
            ToMinion::Job(job) => self.start_job(job),
            ToMinion::Ack { jid } => self.acknowledged(jid),
            ToMinion::Assign(a) => self.links.converger.assign(a),
            ToMinion::Files { blobs, missing } => self.links.converger.files(blobs, missing),
            ToMinion::Kill { jid, fun } => self.kill_job(jid, fun),
        }
    }

    /// The master ends job `jid` (`drover jobs kill`): abort it if it runs (its return, as
    /// killed, follows). If it neither runs nor returned here, say so in a failed return,
    /// so that the master stops counting this minion busy on it; a return already made
    /// is on its way and says what happened.
    fn kill_job(&mut self, jid: Jid, fun: String) {
        if let Some(job) = self.jobs.running.kill(&jid) {
            info!(%jid, fun = %job.fun, "killing a job, as the master asks");
            return;
        }
        if self.outbox.contains(&jid) || self.jobs.seen(&jid) {
            debug!(%jid, "asked to kill a job that already returned");
            return;
        }
        info!(%jid, %fun, "asked to kill a job that does not run here; saying so");
        let now = wire::msg::now_ms();
        let ret = JobReturn {
            ret: jobs::not_running(&jid),
            jid,
            id: self.config.id.clone(),
            fun,
            success: false,
            retcode: jobs::KILLED_RETCODE,
            started_ms: now,
            finished_ms: now,
            killed: true,
        };
        self.on_finished(Err(ret));
    }

    fn acknowledged(&mut self, jid: Jid) {
        if self.outbox.ack(&jid) {
            self.resend_every = RESEND_EVERY;
        }
        self.jobs.remember(jid);
    }

    fn start_job(&mut self, job: Job) {
        if !Jid::is_valid(job.jid.as_str()) {
            warn!(jid = %job.jid, fun = %job.fun, "ignoring a job whose jid is not 20 digits");
            return;
        }
        if self.jobs.running.contains(&job.jid) || self.outbox.contains(&job.jid) || self.jobs.seen(&job.jid)
        {
            debug!(jid = %job.jid, "ignoring a job already running or returned");
            return;
        }
        debug!(jid = %job.jid, fun = %job.fun, "running job");
        let done = self.jobs.done_tx.clone();
        let spooler = self.outbox.spooler();
        let id = self.config.id.clone();
        let grains = Arc::clone(&self.grains);
        let span = tracing::info_span!("job", jid = %job.jid, fun = %job.fun);
        let started_ms = wire::msg::now_ms();
        let Job { jid, fun, args, kwargs, timeout_ms: _ } = job;
        let info = JobInfo { jid: jid.clone(), fun: fun.clone(), args, kwargs, started_ms };
        let call = Call {
            fun: fun.clone(),
            args: info.args.clone(),
            kwargs: info.kwargs.clone(),
            grains,
            services: self.links.services.clone(),
        };
        // its own task: a panic still makes a return, and a kill aborts it alone
        let ctx = jobs::Context { running: self.jobs.running.clone(), jid: jid.clone() };
        let work = tokio::spawn(jobs::scope(ctx, functions::call(call)).instrument(span.clone()));
        self.jobs.running.insert(info, work.abort_handle());
        let task = async move {
            // only a kill aborts the task (the runtime's end drops this task with it)
            let (outcome, killed) = match work.await {
                Ok(outcome) => (outcome, false),
                Err(e) if e.is_cancelled() => {
                    (jobs::killed(&fun, wire::msg::now_ms().saturating_sub(started_ms)), true)
                }
                Err(e) => (Outcome::fail(format!("{fun} stopped unexpectedly: {e}")), false),
            };
            let ret = JobReturn {
                jid,
                id,
                fun,
                success: outcome.success,
                retcode: outcome.retcode,
                ret: outcome.ret,
                started_ms,
                finished_ms: wire::msg::now_ms(),
                killed,
            };
            // written (and fsynced) here, off the session's thread, before it is first sent
            // what a failure will be made from, if it cannot be kept (not the value: it may
            // be large)
            let head = outbox::failure(&ret, "");
            let why = match tokio::task::spawn_blocking(move || spooler.spool(ret)).await {
                Ok(Ok(spooled)) => {
                    let _ = done.send(Ok(spooled));
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("spooling stopped unexpectedly: {e}"),
            };
            // the master still learns the job ended, and why (this one is not spooled)
            error!(jid = %head.jid, cause = %why, "cannot keep the return of a job");
            let why = format!("the minion could not keep this job's return ({why})");
            let _ = done.send(Err(outbox::failure(&head, &why)));
        };
        tokio::spawn(task.instrument(span));
    }

    /// A job's return is spooled, or (`Err`) could not be kept: then a failed return saying
    /// so is sent as long as the minion runs, not spooled.
    fn on_finished(&mut self, done: Result<Spooled, JobReturn>) {
        let spooled = match done {
            Ok(spooled) => spooled,
            Err(failed) => {
                let jid = failed.jid.clone();
                match wire::msg::encode(&ToMaster::Return(failed)) {
                    Ok(frame) => Spooled { jid, frame },
                    Err(e) => {
                        error!(%jid, cause = %e, "cannot even report that a job's return was lost");
                        self.jobs.running.remove(&jid);
                        return;
                    }
                }
            }
        };
        self.jobs.running.remove(&spooled.jid);
        let frame = self.outbox.insert(spooled);
        if self.link == Link::Up {
            self.transport.send(frame);
        }
        let now = Instant::now();
        if self.next_resend <= now {
            self.next_resend = now + RESEND_EVERY;
        }
    }

    /// Sends unacknowledged returns again: at most [`RESEND_BYTES`] a round, taking turns
    /// through the outbox, and less often while nothing is acknowledged (the interval
    /// doubles up to [`RESEND_MAX`]; an acknowledgement or a Welcome resets it).
    fn resend_returns(&mut self, now: Instant) {
        let frames: Vec<&[u8]> = self.outbox.frames().collect();
        let n = frames.len();
        let mut sent_bytes = 0;
        let mut sent = 0;
        while sent < n && (sent == 0 || sent_bytes < RESEND_BYTES) {
            let frame = frames[(self.resend_cursor + sent) % n];
            self.transport.send(frame);
            sent_bytes += frame.len();
            sent += 1;
        }
        self.resend_cursor = if n == 0 { 0 } else { (self.resend_cursor + sent) % n };
        self.next_resend = now + self.resend_every;
        self.resend_every = (self.resend_every * 2).min(RESEND_MAX);
    }

    /// Sends what the converger or the supervisor has for the master; while the link is
    /// down it is dropped (the master pushes the assignment again after the next Welcome,
    /// and the converger reports again then).
    fn to_master(&self, msg: ToMaster) {
        if self.link == Link::Up {
            self.send(&msg);
        } else {
            debug!("not connected: dropped a message for the master");
        }
    }

    fn send(&self, msg: &ToMaster) {
        match wire::msg::encode(msg) {
            Ok(frame) => self.transport.send(&frame),
            Err(e) => error!(cause = %e, "cannot encode a message for the master"),
        }
    }
}

/// Jobs running now, and jids already returned and acknowledged.
struct Jobs {
    running: Running,
    acked: HashSet<Jid>,
    acked_order: VecDeque<Jid>,
    done_tx: mpsc::UnboundedSender<Result<Spooled, JobReturn>>,
    done: mpsc::UnboundedReceiver<Result<Spooled, JobReturn>>,
}

impl Jobs {
    fn new() -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        Self {
            running: Running::default(),
            acked: HashSet::new(),
            acked_order: VecDeque::new(),
            done_tx,
            done,
        }
    }

    /// Remembers an acknowledged jid (the last [`REMEMBERED_JIDS`] of them).
    fn remember(&mut self, jid: Jid) {
        if self.acked.insert(jid.clone()) {
            self.acked_order.push_back(jid);
            if self.acked_order.len() > REMEMBERED_JIDS
                && let Some(old) = self.acked_order.pop_front()
            {
                self.acked.remove(&old);
            }
        }
    }

    fn seen(&self, jid: &Jid) -> bool {
        self.acked.contains(jid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_jids_are_remembered_up_to_a_bound() {
        let mut jobs = Jobs::new();
        let first = Jid::generate();
        jobs.remember(first.clone());
        jobs.remember(first.clone());
        assert!(jobs.seen(&first));
        assert_eq!(jobs.acked_order.len(), 1);
        for _ in 0..REMEMBERED_JIDS {
            jobs.remember(Jid::generate());
        }
        assert!(!jobs.seen(&first));
        assert_eq!(jobs.acked.len(), REMEMBERED_JIDS);
    }
}
