//! The master's ZeroMQ side: one I/O thread owns every socket, so no zmq call ever runs on
//! the async runtime.
//!
//! - a CURVE ROUTER on `--listen`: every minion's DEALER connects here;
//! - a ZAP handler (`inproc://zeromq.zap.01`) that lets any CURVE client finish the
//!   handshake and stamps its messages with its public key (`User-Id`); whether that key
//!   may do anything is the hub's decision, made per message;
//! - the key port (listen port − 1, 4505 by default, where Salt has its publish port): a REP socket without security that answers with the
//!   master's public key, so a minion can pin it on first use;
//! - an inproc PULL socket: the hub's outgoing messages, `[routing id, body]`.
//!
//! Incoming messages go to the hub as [`Incoming`] through a bounded channel.
//!
//! Outgoing queues are bounded by bytes, not messages (libzmq's high-water mark counts
//! messages, and one `Files` answer may be megabytes):
//! - the inproc queue from the hub holds at most [`INPROC_BYTES`] ([`Outgoing::send`] drops
//!   beyond it, counted);
//! - each connection has a queue here, and libzmq is handed at most [`ROUTE_IN_ZMQ`] bytes
//!   of it at a time: every body is given to libzmq without a copy, with a free function
//!   that tells when libzmq let go of it (encrypted and written out, or dropped with its
//!   connection), so the bytes in libzmq's pipe to a peer are known exactly;
//! - a connection whose queue here passes [`ROUTE_QUEUE`], or that stays busy (more than
//!   [`BUSY_BYTES`] waiting) for [`STALL_AFTER`] with libzmq letting go of nothing of it,
//!   does not read what it is sent: its queue is dropped, nothing more is queued for it, and the hub is told
//!   ([`Incoming::Stalled`]) and ends its session. When libzmq has let go of everything it
//!   held for it (the peer read it, or the connection closed: ZMTP heartbeats end a silent
//!   one), the hub is told again ([`Incoming::Drained`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wire::msg::{KeyInfo, MAX_FRAME};
use wire::{KeyPair, PublicKey};

const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
const OUT_ENDPOINT: &str = "inproc://drover-out";
const ZAP_DOMAIN: &str = "drover";

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot {what}: {source}")]
    Zmq { what: String, source: zmq::Error },
    #[error(
        "this build's libzmq has no CURVE support: build drover from its workspace, whose \
         .cargo/config.toml links the libzmq wire/build.rs makes (see ARCHITECTURE.md)"
    )]
    NoCurve,
}

fn zerr(what: impl Into<String>) -> impl FnOnce(zmq::Error) -> TransportError {
    let what = what.into();
    move |source| TransportError::Zmq { what, source }
}

/// The most bytes the inproc queue from the hub to the I/O thread holds.
pub const INPROC_BYTES: usize = 64 << 20;
/// The most bytes one connection's queue in the I/O thread holds; past it the peer is taken
/// for one that does not read.
pub const ROUTE_QUEUE: usize = 32 << 20;
/// A connection with more bytes than this waiting for it (here and in libzmq) is busy: the
/// hub holds back bulk data (file-server answers) until it is down to [`READY_BYTES`].
pub const BUSY_BYTES: usize = 4 << 20;
pub const READY_BYTES: usize = 1 << 20;
/// How long a busy connection may go without libzmq letting go of any of its bytes before
/// it counts as not reading.
pub const STALL_AFTER: Duration = Duration::from_secs(10);
/// The most bytes handed to libzmq for one connection at a time (one message more may be
/// handed while less than this is), besides the message its engine is writing and the
/// kernel's socket buffer.
pub const ROUTE_IN_ZMQ: usize = 4 << 20;

/// What the I/O thread tells the hub.
#[derive(Debug)]
pub enum Incoming {
    /// One message from a minion: its routing id, the key its connection authenticated
    /// with, and the raw body (decoded by the hub).
    Message { routing: Vec<u8>, key: Option<PublicKey>, body: Vec<u8> },
    /// The connection does not read what it is sent: `queued` bytes waited for it. Its
    /// queue was dropped and nothing more is sent to it.
    Stalled { routing: Vec<u8>, queued: usize },
    /// libzmq let go of everything it held for a stalled connection.
    Drained { routing: Vec<u8> },
    /// More than [`BUSY_BYTES`] wait for the connection.
    Busy { routing: Vec<u8> },
    /// A busy connection is down to [`READY_BYTES`] waiting (or gone).
    Ready { routing: Vec<u8> },
}

/// Where the transport listens, once bound.
#[derive(Clone, Debug)]
pub struct Bound {
    pub router: String,
    pub key_port: String,
}

/// The hub's handle for sending; owned by the hub alone.
pub struct Outgoing {
    push: zmq::Socket,
    /// Bytes in the inproc queue (the I/O thread takes off what it reads).
    queued: Arc<AtomicUsize>,
    /// Messages dropped because the inproc queue was full, not yet reported.
    dropped: AtomicU64,
}

impl Outgoing {
    /// Queues `body` for the minion behind `routing`. Never blocks: the I/O thread drains
    /// this queue continuously; past [`INPROC_BYTES`] the message is dropped (counted, see
    /// [`Outgoing::take_dropped`]).
    pub fn send(&self, routing: &[u8], body: &[u8]) {
        if self.queued.load(Ordering::Relaxed) + body.len() > INPROC_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(body.len(), Ordering::Relaxed);
        if let Err(e) = self.push.send_multipart([routing, body], 0) {
            self.queued.fetch_sub(body.len(), Ordering::Relaxed);
            tracing::error!(error = %e, "cannot queue an outgoing message");
        }
    }

    /// How many messages were dropped for a full inproc queue since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// An `Outgoing` whose messages arrive on the returned PULL socket, for tests of the hub
    /// without a transport.
    #[cfg(test)]
    pub(crate) fn captured(ctx: &zmq::Context) -> (Outgoing, zmq::Socket) {
        let pull = ctx.socket(zmq::PULL).expect("a PULL socket");
        pull.bind(OUT_ENDPOINT).expect("bind the outgoing queue");
        let push = ctx.socket(zmq::PUSH).expect("a PUSH socket");
        push.connect(OUT_ENDPOINT).expect("connect the outgoing queue");
        (Outgoing { push, queued: Arc::new(AtomicUsize::new(0)), dropped: AtomicU64::new(0) }, pull)
    }
}

pub struct Transport {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Splits "ADDR:PORT" into a ZeroMQ endpoint for the router and one for the key port.
fn endpoints(listen: &str) -> Result<(String, Option<String>), TransportError> {
    let bad = || TransportError::Zmq {
        what: format!("parse listen address {listen:?}"),
        source: zmq::Error::EINVAL,
    };
    let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if port == 0 {
        Ok((format!("tcp://{host}:*"), None))
    } else {
        let key_port = port.checked_sub(1).filter(|p| *p > 0).ok_or_else(bad)?;
        Ok((format!("tcp://{host}:{port}"), Some(format!("tcp://{host}:{key_port}"))))
    }
}

/// Binds every socket and starts the I/O thread.
pub fn start(
    keys: &KeyPair,
    listen: &str,
    incoming: mpsc::Sender<Incoming>,
) -> Result<(Transport, Outgoing, Bound), TransportError> {
    if zmq::has("curve") != Some(true) {
        return Err(TransportError::NoCurve);
    }
    let ctx = zmq::Context::new();
    // CURVE's crypto runs on the I/O threads: one per core this machine kind has
    ctx.set_io_threads(2).map_err(zerr("set the I/O threads"))?;
    // ZAP must be bound before the ROUTER accepts its first connection.
    let zap = ctx.socket(zmq::REP).map_err(zerr("create the ZAP socket"))?;
    zap.bind(ZAP_ENDPOINT).map_err(zerr("bind the ZAP handler"))?;

    let router = ctx.socket(zmq::ROUTER).map_err(zerr("create the router"))?;
    router.set_curve_server(true).map_err(zerr("enable CURVE"))?;
    router.set_curve_secretkey(&keys.secret_raw()).map_err(zerr("set the master's secret key"))?;
    router.set_zap_domain(ZAP_DOMAIN).map_err(zerr("set the ZAP domain"))?;
    router.set_maxmsgsize(MAX_FRAME as i64).map_err(zerr("set the message size limit"))?;
    router.set_backlog(4096).map_err(zerr("set the backlog"))?;
    router.set_router_mandatory(true).map_err(zerr("set router_mandatory"))?;
    // handover: a connection presenting a routing id in use takes the route, and the old
    // connection is closed. A minion redialing (its old connection half-open) is served at
    // once, and no connection is ever parked unread, as libzmq does with a duplicate id
    // without handover (a way to make the master buffer frames nobody reads). Taking a
    // live minion's route needs the random part of its id (wire::routing_id), which only
    // it and the master know; the hub also ends a session whose route speaks with another key.
    router.set_router_handover(true).map_err(zerr("set router_handover"))?;
    // The kernel's TCP keepalive ends dead connections (a minion's host gone without a
    // FIN): after 30 s of silence, 3 probes 10 s apart. Not ZMTP heartbeats: libzmq keeps
    // every connection's heartbeat timers in one list per I/O thread and cancels them by
    // walking it, on a message after each PING; at 10,000 minions that walk was 41% of the
    // master's CPU (perf, drover-bench --sizes 10000). The minion's own heartbeats (the
    // hub's sessions) are unchanged.
    router.set_tcp_keepalive(1).map_err(zerr("enable TCP keepalive"))?;
    router.set_tcp_keepalive_idle(30).map_err(zerr("set the TCP keepalive idle time"))?;
    router.set_tcp_keepalive_intvl(10).map_err(zerr("set the TCP keepalive interval"))?;
    router.set_tcp_keepalive_cnt(3).map_err(zerr("set the TCP keepalive count"))?;
    // per connection, in messages; what a connection may hold in bytes is bounded before
    // libzmq sees it (ROUTE_IN_ZMQ, ROUTE_QUEUE), this only keeps many small ones in check
    router.set_sndhwm(10_000).map_err(zerr("set the send high-water mark"))?;
    // per connection: one peer cannot queue more than this many unread messages
    router.set_rcvhwm(1000).map_err(zerr("set the receive high-water mark"))?;
    router.set_linger(0).map_err(zerr("set linger"))?;

    let (router_ep, key_ep) = endpoints(listen)?;
    router.bind(&router_ep).map_err(zerr(format!("listen on {listen}")))?;
    let router_bound = router.get_last_endpoint().ok().and_then(|r| r.ok()).unwrap_or(router_ep.clone());

    let key_port = ctx.socket(zmq::REP).map_err(zerr("create the key port"))?;
    key_port.set_linger(0).map_err(zerr("set linger"))?;
    key_port.set_maxmsgsize(4096).map_err(zerr("set the key port's size limit"))?;
    // with port 0 (tests), any free port: api.json says which
    let key_ep = key_ep.unwrap_or_else(|| {
        let (host, _) = router_bound.trim_start_matches("tcp://").rsplit_once(':').unwrap_or(("0.0.0.0", ""));
        format!("tcp://{host}:*")
    });
    key_port.bind(&key_ep).map_err(zerr(format!("listen on the key port {key_ep}")))?;
    let key_ep = key_port.get_last_endpoint().ok().and_then(|r| r.ok()).unwrap_or(key_ep);

    let pull = ctx.socket(zmq::PULL).map_err(zerr("create the outgoing queue"))?;
    pull.set_rcvhwm(0).map_err(zerr("set the queue's high-water mark"))?;
    pull.bind(OUT_ENDPOINT).map_err(zerr("bind the outgoing queue"))?;
    let push = ctx.socket(zmq::PUSH).map_err(zerr("create the outgoing queue"))?;
    push.set_sndhwm(0).map_err(zerr("set the queue's high-water mark"))?;
    push.connect(OUT_ENDPOINT).map_err(zerr("connect the outgoing queue"))?;
    let queued = Arc::new(AtomicUsize::new(0));

    let info = wire::msg::encode(&KeyInfo {
        public_key: keys.public.clone(),
        fingerprint: keys.public.fingerprint(),
    })
    .expect("key info encodes");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let io = IoThread {
        _ctx: ctx,
        router,
        zap,
        key_port,
        pull,
        incoming,
        info,
        stop: stop2,
        inproc: queued.clone(),
        routes: HashMap::new(),
        swept: Instant::now(),
    };
    let thread =
        thread::Builder::new().name("drover-zmq".into()).spawn(move || io.run()).expect("spawn zmq thread");
    let bound = Bound { router: router_bound.replace("tcp://", ""), key_port: key_ep.replace("tcp://", "") };
    let outgoing = Outgoing { push, queued, dropped: AtomicU64::new(0) };
    Ok((Transport { stop, thread: Some(thread) }, outgoing, bound))
}

/// One connection's outgoing side.
#[derive(Default)]
struct RouteOut {
    queue: VecDeque<Vec<u8>>,
    /// Bytes in `queue`.
    queued: usize,
    /// Bytes handed to libzmq and not let go of yet, and all it let go of (see [`tracked`]).
    in_zmq: Arc<tracked::Meter>,
    /// `in_zmq.released` when last looked at, and when it last moved.
    progress: Option<(u64, Instant)>,
    /// It did not read: nothing more is queued for it until libzmq let go of all it held.
    stalled: bool,
    /// The hub was told it is busy (and not yet that it is ready again).
    busy: bool,
}

impl RouteOut {
    fn waiting(&self) -> usize {
        self.queued + self.in_zmq.held()
    }

    /// Whether libzmq let go of nothing of this connection's for [`STALL_AFTER`].
    fn stuck(&mut self, now: Instant) -> bool {
        let released = self.in_zmq.released();
        match self.progress {
            Some((seen, since)) if seen == released => now.duration_since(since) >= STALL_AFTER,
            _ => {
                self.progress = Some((released, now));
                false
            }
        }
    }

    /// Drops the queue: nothing more is queued for it. Returns the bytes dropped.
    fn stall(&mut self) -> usize {
        let queued = self.queued;
        self.queue.clear();
        self.queued = 0;
        self.stalled = true;
        queued
    }
}

/// How often routes with nothing queued are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct IoThread {
    _ctx: zmq::Context,
    router: zmq::Socket,
    zap: zmq::Socket,
    key_port: zmq::Socket,
    pull: zmq::Socket,
    incoming: mpsc::Sender<Incoming>,
    info: Vec<u8>,
    stop: Arc<AtomicBool>,
    /// Bytes in the inproc queue, shared with [`Outgoing`].
    inproc: Arc<AtomicUsize>,
    routes: HashMap<Vec<u8>, RouteOut>,
    swept: Instant,
}

impl IoThread {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            // queued messages wait for libzmq to let go of earlier ones: look again soon
            let backlog = self.routes.values().any(|r| !r.queue.is_empty() || r.busy);
            let mut items = [
                self.router.as_poll_item(zmq::POLLIN),
                self.zap.as_poll_item(zmq::POLLIN),
                self.key_port.as_poll_item(zmq::POLLIN),
                self.pull.as_poll_item(zmq::POLLIN),
            ];
            if let Err(e) = zmq::poll(&mut items, if backlog { 5 } else { 100 }) {
                if e != zmq::Error::EINTR {
                    tracing::error!(error = %e, "poll failed");
                }
                continue;
            }
            let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
            if ready[1] {
                self.answer_zap();
            }
            if ready[2] {
                self.answer_key_port();
            }
            if ready[3] && !self.forward_outgoing() {
                return;
            }
            if backlog && !self.flush_all() {
                return;
            }
            if ready[0] && !self.receive() {
                return;
            }
            if self.swept.elapsed() >= SWEEP_EVERY && !self.sweep() {
                return;
            }
        }
    }

    /// Answers one ZAP request: CURVE clients pass, with their key as the user id.
    fn answer_zap(&self) {
        let Ok(frames) = self.zap.recv_multipart(zmq::DONTWAIT) else { return };
        // [version, request_id, domain, address, routing_id, mechanism, credentials...]
        if frames.len() < 6 {
            return;
        }
        let (version, request_id) = (&frames[0], &frames[1]);
        let key = (frames[5] == b"CURVE" && frames.len() >= 7 && frames[6].len() == 32)
            .then(|| zmq::z85_encode(&frames[6]).ok())
            .flatten();
        let reply: [&[u8]; 6] = match &key {
            Some(k) => [version, request_id, b"200", b"OK", k.as_bytes(), b""],
            None => [version, request_id, b"400", b"CURVE required", b"", b""],
        };
        if let Err(e) = self.zap.send_multipart(reply, 0) {
            tracing::error!(error = %e, "cannot answer a ZAP request");
        }
    }

    fn answer_key_port(&self) {
        if self.key_port.recv_bytes(zmq::DONTWAIT).is_ok()
            && let Err(e) = self.key_port.send(&self.info, 0)
        {
            tracing::warn!(error = %e, "cannot answer on the key port");
        }
    }

    /// Moves the hub's messages into their connections' queues and on to libzmq as far as
    /// each connection's budget allows; false when the hub is gone.
    fn forward_outgoing(&mut self) -> bool {
        while let Ok(mut frames) = self.pull.recv_multipart(zmq::DONTWAIT) {
            let Some(body) = frames.pop().filter(|_| frames.len() == 1) else { continue };
            let routing = frames.pop().expect("two frames");
            self.inproc.fetch_sub(body.len(), Ordering::Relaxed);
            let route = self.routes.entry(routing.clone()).or_default();
            if route.stalled {
                continue;
            }
            route.queued += body.len();
            route.queue.push_back(body);
            if route.queued > ROUTE_QUEUE {
                let queued = route.stall();
                tracing::debug!(routing = %wire::routing_label(&routing), queued, "a connection does not read");
                if self.incoming.blocking_send(Incoming::Stalled { routing, queued }).is_err() {
                    return false;
                }
                continue;
            }
            self.flush(&routing);
            if !self.tell_busy(&routing) {
                return false;
            }
        }
        true
    }

    /// Flushes every connection with something queued and tells the hub which are busy or
    /// ready again; false when the hub is gone.
    fn flush_all(&mut self) -> bool {
        let waiting: Vec<Vec<u8>> = self
            .routes
            .iter()
            .filter(|(_, r)| !r.queue.is_empty() || r.busy)
            .map(|(k, _)| k.clone())
            .collect();
        for routing in waiting {
            self.flush(&routing);
            if !self.tell_busy(&routing) {
                return false;
            }
        }
        true
    }

    /// Tells the hub when `routing` turns busy or ready, or stalls (busy, and nothing of it
    /// let go of for [`STALL_AFTER`]); false when the hub is gone.
    fn tell_busy(&mut self, routing: &[u8]) -> bool {
        let Some(route) = self.routes.get_mut(routing) else { return true };
        let waiting = route.waiting();
        let routing = routing.to_vec();
        if !route.busy {
            route.progress = None;
        }
        let tell = if route.busy && !route.stalled && route.stuck(Instant::now()) {
            let queued = route.stall();
            tracing::debug!(routing = %wire::routing_label(&routing), queued, "a busy connection read nothing");
            if self
                .incoming
                .blocking_send(Incoming::Stalled { routing: routing.clone(), queued: waiting })
                .is_err()
            {
                return false;
            }
            route.busy = false;
            Incoming::Ready { routing }
        } else if !route.busy && waiting > BUSY_BYTES {
            route.busy = true;
            Incoming::Busy { routing }
        } else if route.busy && (waiting <= READY_BYTES || route.stalled) {
            route.busy = false;
            Incoming::Ready { routing }
        } else {
            return true;
        };
        self.incoming.blocking_send(tell).is_ok()
    }

    /// Hands `routing`'s queue to libzmq while less than [`ROUTE_IN_ZMQ`] of it is there.
    fn flush(&mut self, routing: &[u8]) {
        let Some(route) = self.routes.get_mut(routing) else { return };
        while let Some(body) = route.queue.front() {
            let in_zmq = route.in_zmq.held();
            if in_zmq > 0 && in_zmq + body.len() > ROUTE_IN_ZMQ {
                return;
            }
            // ROUTER checks the peer's pipe at the routing frame: absent, or full (its
            // high-water mark counts messages), nothing is taken
            match self.router.send(routing, zmq::SNDMORE | zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    if e != zmq::Error::EHOSTUNREACH {
                        tracing::warn!(error = %e, "cannot send to a minion");
                    }
                    tracing::debug!(routing = %wire::routing_label(routing), "minion gone; its queue is dropped");
                    route.queue.clear();
                    route.queued = 0;
                    return;
                }
            }
            let body = route.queue.pop_front().expect("front");
            route.queued -= body.len();
            if let Err(e) = tracked::send(&mut self.router, body, &route.in_zmq) {
                tracing::debug!(error = %e, routing = %wire::routing_label(routing), "message to a minion dropped");
            }
        }
    }

    /// Forgets connections with nothing queued here or in libzmq; tells the hub of stalled
    /// ones that libzmq let go of. False when the hub is gone.
    fn sweep(&mut self) -> bool {
        self.swept = Instant::now();
        let mut told = Vec::new();
        self.routes.retain(|routing, r| {
            let idle = r.queue.is_empty() && r.in_zmq.held() == 0;
            if idle && r.stalled {
                told.push(Incoming::Drained { routing: routing.clone() });
            }
            if idle && r.busy {
                told.push(Incoming::Ready { routing: routing.clone() });
            }
            !idle
        });
        told.into_iter().all(|tell| self.incoming.blocking_send(tell).is_ok())
    }

    /// Reads every waiting message; false when the hub is gone.
    fn receive(&self) -> bool {
        loop {
            let routing = match self.router.recv_bytes(zmq::DONTWAIT) {
                Ok(r) => r,
                Err(zmq::Error::EAGAIN) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    return true;
                }
            };
            let mut body = match self.router.get_rcvmore() {
                Ok(true) => match self.router.recv_msg(0) {
                    Ok(m) => m,
                    Err(_) => continue,
                },
                _ => continue,
            };
            // A well-formed message has exactly two frames; drain and drop anything else.
            let mut extra = false;
            while self.router.get_rcvmore().unwrap_or(false) {
                extra = true;
                if self.router.recv_msg(0).is_err() {
                    break;
                }
            }
            if extra {
                tracing::debug!("dropped a message with extra frames");
                continue;
            }
            let key = body.gets("User-Id").and_then(|k| PublicKey::parse(k).ok());
            let body = std::mem::replace(&mut body, zmq::Message::new()).to_vec();
            if self.incoming.blocking_send(Incoming::Message { routing, key, body }).is_err() {
                return false;
            }
        }
    }
}

/// Zero-copy sends whose memory is accounted: libzmq calls the free function once it let go
/// of a body (the engine took it to encrypt and write, or the connection closed with it
/// still queued), so `in_zmq` is the bytes libzmq holds for one connection. `zmq::Message`
/// frees through its own function and says nothing, hence the FFI.
#[allow(unsafe_code)]
mod tracked {
    use std::os::raw::c_void;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// One connection's bytes in libzmq: held now, and let go of since it was made.
    #[derive(Debug, Default)]
    pub struct Meter {
        held: AtomicUsize,
        released: AtomicU64,
    }

    impl Meter {
        pub fn held(&self) -> usize {
            self.held.load(Ordering::Acquire)
        }

        pub fn released(&self) -> u64 {
            self.released.load(Ordering::Acquire)
        }
    }

    /// What libzmq holds until it calls [`release`]: the body and the meter to take it off.
    struct Held {
        body: Box<[u8]>,
        meter: Arc<Meter>,
    }

    unsafe extern "C" fn release(_data: *mut c_void, hint: *mut c_void) {
        // SAFETY: `hint` is the `Box<Held>` leaked in `send`, and libzmq calls this once per
        // message, when it drops its last reference (on any thread: only atomics are used).
        let held = unsafe { Box::from_raw(hint.cast::<Held>()) };
        held.meter.held.fetch_sub(held.body.len(), Ordering::Release);
        held.meter.released.fetch_add(held.body.len() as u64, Ordering::Release);
    }

    /// Sends `body` as the last frame of a message on `socket` (whose routing frame was
    /// sent), counting its bytes into `meter` until libzmq lets go of them.
    pub fn send(socket: &mut zmq::Socket, body: Vec<u8>, meter: &Arc<Meter>) -> Result<(), zmq::Error> {
        let len = body.len();
        meter.held.fetch_add(len, Ordering::Release);
        let held = Box::into_raw(Box::new(Held { body: body.into_boxed_slice(), meter: meter.clone() }));
        let mut msg = zmq_sys::zmq_msg_t::default();
        // SAFETY: `data` points into the boxed body that `held` owns; libzmq only reads it
        // and hands `held` back to `release` exactly once, when it closes the message (also
        // on a failed send: closed below). `msg` is a fresh zmq_msg_t; `socket` is live.
        unsafe {
            let data = (*held).body.as_ptr().cast_mut().cast::<c_void>();
            if zmq_sys::zmq_msg_init_data(&mut msg, data, len, Some(release), held.cast::<c_void>()) != 0 {
                let error = zmq::Error::from_raw(zmq_sys::zmq_errno());
                release(data, held.cast::<c_void>());
                return Err(error);
            }
            if zmq_sys::zmq_msg_send(&mut msg, socket.as_mut_ptr(), zmq::DONTWAIT) < 0 {
                let error = zmq::Error::from_raw(zmq_sys::zmq_errno());
                zmq_sys::zmq_msg_close(&mut msg);
                return Err(error);
            }
        }
        Ok(())
    }
}
