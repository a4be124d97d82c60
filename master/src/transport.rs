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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

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

/// One message from a minion: its routing id, the key its connection authenticated with,
/// and the raw body (decoded by the hub).
#[derive(Debug)]
pub struct Incoming {
    pub routing: Vec<u8>,
    pub key: Option<PublicKey>,
    pub body: Vec<u8>,
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
}

impl Outgoing {
    /// Queues `body` for the minion behind `routing`. Never blocks for long: the I/O thread
    /// drains this queue continuously.
    pub fn send(&self, routing: &[u8], body: &[u8]) {
        if let Err(e) = self.push.send_multipart([routing, body], 0) {
            tracing::error!(error = %e, "cannot queue an outgoing message");
        }
    }

    /// An `Outgoing` whose messages arrive on the returned PULL socket, for tests of the hub
    /// without a transport.
    #[cfg(test)]
    pub(crate) fn captured(ctx: &zmq::Context) -> (Outgoing, zmq::Socket) {
        let pull = ctx.socket(zmq::PULL).expect("a PULL socket");
        pull.bind(OUT_ENDPOINT).expect("bind the outgoing queue");
        let push = ctx.socket(zmq::PUSH).expect("a PUSH socket");
        push.connect(OUT_ENDPOINT).expect("connect the outgoing queue");
        (Outgoing { push }, pull)
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
    // ZMTP heartbeats end dead connections (a minion's host gone without a FIN)
    router.set_heartbeat_ivl(10_000).map_err(zerr("set the heartbeat interval"))?;
    router.set_heartbeat_timeout(30_000).map_err(zerr("set the heartbeat timeout"))?;
    // per connection: a minion that stops reading gets at most this many messages queued;
    // past it, messages to it are dropped (it resyncs on its next hello)
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

    let info = wire::msg::encode(&KeyInfo {
        public_key: keys.public.clone(),
        fingerprint: keys.public.fingerprint(),
    })
    .expect("key info encodes");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let io = IoThread { _ctx: ctx, router, zap, key_port, pull, incoming, info, stop: stop2 };
    let thread =
        thread::Builder::new().name("drover-zmq".into()).spawn(move || io.run()).expect("spawn zmq thread");
    let bound = Bound { router: router_bound.replace("tcp://", ""), key_port: key_ep.replace("tcp://", "") };
    Ok((Transport { stop, thread: Some(thread) }, Outgoing { push }, bound))
}

struct IoThread {
    _ctx: zmq::Context,
    router: zmq::Socket,
    zap: zmq::Socket,
    key_port: zmq::Socket,
    pull: zmq::Socket,
    incoming: mpsc::Sender<Incoming>,
    info: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl IoThread {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            let mut items = [
                self.router.as_poll_item(zmq::POLLIN),
                self.zap.as_poll_item(zmq::POLLIN),
                self.key_port.as_poll_item(zmq::POLLIN),
                self.pull.as_poll_item(zmq::POLLIN),
            ];
            if let Err(e) = zmq::poll(&mut items, 100) {
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
            if ready[3] {
                self.forward_outgoing();
            }
            if ready[0] && !self.receive() {
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

    fn forward_outgoing(&self) {
        while let Ok(frames) = self.pull.recv_multipart(zmq::DONTWAIT) {
            if frames.len() != 2 {
                continue;
            }
            match self.router.send_multipart(&frames, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EHOSTUNREACH) => {
                    tracing::debug!(routing = %wire::routing_label(&frames[0]), "minion gone; message dropped")
                }
                Err(e) => tracing::warn!(error = %e, "cannot send to a minion"),
            }
        }
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
            if self.incoming.blocking_send(Incoming { routing, key, body }).is_err() {
                return false;
            }
        }
    }
}
