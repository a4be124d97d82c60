//! Sessions: which connection speaks for which minion. A session begins when a hello with
//! the minion's accepted key is welcomed ([`keys`](super::keys) decides that), is taken over
//! by a higher (or equal) generation of the same slot, and ends when the minion goes silent,
//! stalls, loses its key, or its route is taken by a connection with another key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api::{KeyState, MinionStatus};
use serde_json::{Value, json};
use wire::msg::now_ms;
use wire::{Hello, MinionId, PublicKey, ToMinion};

use super::{ConvergedView, Hub, MinionView};
use crate::limits::Reason;

pub(super) struct Session {
    pub(super) routing: Vec<u8>,
    pub(super) key: PublicKey,
    pub(super) last_seen: Instant,
    /// Of the container this connection speaks for (`Hello::generation`).
    pub(super) generation: u64,
    /// The minion's own verdict, as it last reported it on this session.
    pub(super) health: Option<wire::Health>,
    /// Whether a convergence report was recorded on this session.
    pub(super) reported: bool,
}

/// Which minion a connection said it is (its last Hello), and when it was last heard.
pub(super) struct Route {
    pub(super) id: MinionId,
    pub(super) seen: Instant,
    /// Its last hello was welcomed (its key is the accepted one): only such a route's
    /// stall counts against its minion.
    pub(super) welcomed: bool,
}

/// How long a welcomed connection is remembered after its last message: longer than the
/// transport takes to find that it does not read (`transport::STALL_AFTER`).
pub(super) const WELCOMED_ROUTE_MEMORY: Duration = Duration::from_secs(60);

impl Hub {
    /// A connection did not read what it was sent; the transport dropped its queue. Its
    /// session ends, and its minion is refused until the master's side of that connection
    /// is drained.
    pub(super) fn on_stalled(&mut self, routing: Vec<u8>, queued: usize) {
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

    pub(super) fn welcome(&mut self, routing: Vec<u8>, key: PublicKey, hello: Hello) {
        let id = hello.id;
        let generation = hello.generation;
        // a live session keeps it from a lower generation (an older container of the slot),
        // unless the fleet wants that one; the one the fleet wants keeps it from any other
        let wanted = self.wanted.get(&id).copied();
        if let Some(live) = self.sessions.get(&id)
            && live.routing != routing
            && wanted != Some(generation)
            && (live.generation > generation || wanted == Some(live.generation))
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

    /// How `id` stands: its session (if any) and its last report, both looked up by id.
    pub(super) fn view(&self, id: MinionId) -> MinionView {
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

    pub(super) fn minions(&self) -> Vec<MinionStatus> {
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

    /// Ends the sessions silent for longer than three heartbeats, and forgets connections
    /// silent as long (pending minions say hello every interval; a welcomed connection is
    /// remembered for [`WELCOMED_ROUTE_MEMORY`], so that its stall is still its minion's).
    pub(super) fn end_silent_sessions(&mut self, now: Instant) {
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
        self.routes.retain(|_, r| {
            now.duration_since(r.seen) <= if r.welcomed { limit.max(WELCOMED_ROUTE_MEMORY) } else { limit }
        });
        let routes = &self.routes;
        self.pending_routes.retain(|_, routing| routes.contains_key(routing));
    }
}
