//! The healer: a fleet container that dies without the controller asking is replaced in
//! its slot (same version, same volumes, same identity), as [`crate::heal`] decides.
//!
//! It follows the engine's container events (`die`) for every `drover.fleet` container and,
//! every `sweep`, compares the containers with the record, which also catches deaths the
//! event stream missed (the engine restarted, the stream broke) and containers removed by
//! hand. Slots an operation is changing are left to it, as are roles with `heal: false`.
//!
//! On Swarm the healer replaces nothing: Swarm's restart policy replaces a dead task in its
//! service; the healer reports the death, the new task and when its minion is ready
//! (`Controller::on_task_event`), and its sweep does nothing.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Controller, FleetEvent, Progress};
use crate::engine::*;
use crate::heal::Verdict;
use crate::host::Host;
use crate::plan::{self, Action};

impl<E: Engine, H: Host> Controller<E, H> {
    /// Runs the healer until `token` is cancelled.
    pub fn spawn_healer(&self, token: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.heal_loop(token).await })
    }

    async fn heal_loop(self, token: CancellationToken) {
        let mut sweep = tokio::time::interval(self.inner.opts.sweep);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut events = self.inner.engine.events(&[LABEL_FLEET.to_string()]);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    event = events.next() => match event {
                        Some(Ok(e)) if e.labels.contains_key(super::swarm::SWARM_TASK_LABEL) => {
                            self.on_task_event(&e)
                        }
                        Some(Ok(e)) if e.action == "die" => {
                            self.on_death(&e.labels, &e.name, e.exit_code, Some(&e.id))
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the engine's event stream broke; following it again");
                            break;
                        }
                        None => break,
                    },
                    _ = sweep.tick() => self.sweep().await,
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// A container died (`id`, when the engine's event named it): if it is a slot's current
    /// container and nobody is changing the slot, decide what to do.
    fn on_death(&self, labels: &Labels, name: &str, code: Option<i64>, id: Option<&str>) {
        let Some(slot) = labels.get(LABEL_SLOT) else { return };
        if name != slot {
            // a container moved aside by a start-first swap
            return;
        }
        let verdict = {
            let mut shared = self.inner.shared();
            let record = &shared.record;
            let Some(fleet) = record.fleet() else { return };
            if labels.get(LABEL_FLEET).map(String::as_str) != Some(fleet) || shared.busy.contains(slot) {
                return;
            }
            let desired = record.desired();
            match desired.slots.get(slot) {
                Some(spec) if spec.spec.heal => {}
                _ => return,
            }
            shared.healer.died(slot, wire::msg::now_ms())
        };
        let progress = Progress::none();
        let detail = code.map(|c| format!("exit code {c}"));
        match verdict {
            Verdict::Replace(delay) => {
                self.emit(&progress, FleetEvent::Slot { slot: slot.clone(), step: "died".into(), detail });
                let this = self.clone();
                let slot = slot.clone();
                let died = tokio::time::Instant::now();
                let dead_id = id.map(String::from);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    this.replace(&slot, died, dead_id).await;
                });
            }
            Verdict::GiveUp { deaths } => {
                let minutes = crate::heal::WINDOW.as_secs() / 60;
                let detail = format!(
                    "died {deaths} times in {minutes} min: given up until the next up, scale or upgrade"
                );
                tracing::error!(%slot, "{detail}");
                self.emit(
                    &progress,
                    FleetEvent::Slot { slot: slot.clone(), step: "gave-up".into(), detail: Some(detail) },
                );
            }
            Verdict::Ignore => {}
        }
    }

    /// Replaces the slot's dead (or missing) container with one of the version it ran; once
    /// the new one is ready, says how long the slot was down (`.../healed`). `dead_id`: the
    /// container the engine said died, dead whatever the container list still says (Docker
    /// sends `die` before its list shows the container exited).
    async fn replace(&self, slot: &str, died: tokio::time::Instant, dead_id: Option<String>) {
        let (desired, fleet) = {
            let mut shared = self.inner.shared();
            let Some(fleet) = shared.record.fleet().map(String::from) else { return };
            if !shared.busy.insert(slot.to_string()) {
                return;
            }
            (shared.record.desired(), fleet)
        };
        let progress = Progress::none();
        let result = async {
            let Some(spec) = desired.slots.get(slot) else { return Ok(None) };
            let filter = [format!("{LABEL_FLEET}={fleet}"), format!("{LABEL_SLOT}={slot}")];
            let mut containers = self.inner.engine.containers(&[&filter[0], &filter[1]]).await?;
            for c in containers.iter_mut().filter(|c| Some(&c.id) == dead_id.as_ref()) {
                c.state = ContainerState::Exited;
            }
            if containers.iter().any(|c| c.name == slot && c.state == ContainerState::Running) {
                return Ok(None);
            }
            // the version it ran (a rollout may have left it at another than the record's)
            let version = containers
                .iter()
                .filter(|c| c.name == slot)
                .max_by_key(|c| c.generation())
                .and_then(|c| c.label(LABEL_VERSION).map(String::from))
                .unwrap_or_else(|| spec.version.clone());
            // the dead go aside (a rename is quick) and are removed once the new one runs
            let mut dead = Vec::new();
            for c in containers {
                if c.name == slot {
                    let aside = format!("{slot}.dead-{}", c.generation());
                    self.inner.engine.rename(&c.id, &aside).await?;
                }
                dead.push(c);
            }
            let network = self.network(&desired).await?;
            let (id, generation) = self.launch(spec, &version, &network, &progress).await?;
            for c in &dead {
                self.remove_container(c, &progress).await?;
            }
            Ok::<_, super::FleetError>(Some((version, id, generation, spec.spec.update)))
        }
        .await;
        self.inner.shared().busy.remove(slot);
        match result {
            Ok(Some((version, id, generation, policy))) => {
                tracing::info!(%slot, %version, "replaced a dead container");
                self.emit(
                    &progress,
                    FleetEvent::Slot { slot: slot.into(), step: "replaced".into(), detail: Some(version) },
                );
                // no min_healthy here: a healed slot counts from the first moment it is ready
                let policy = render::fleet::UpdatePolicy { min_healthy: Duration::ZERO, ..policy };
                if self.wait_ready(slot, id, generation, &policy, &progress).await.is_ok() {
                    let down = died.elapsed().as_secs_f64();
                    let detail = format!("ready {down:.1} s after it died");
                    self.emit(
                        &progress,
                        FleetEvent::Slot { slot: slot.into(), step: "healed".into(), detail: Some(detail) },
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(%slot, error = %e, "cannot replace a dead container");
                self.emit(
                    &progress,
                    FleetEvent::Slot {
                        slot: slot.into(),
                        step: "heal-failed".into(),
                        detail: Some(e.to_string()),
                    },
                );
            }
        }
    }

    /// Every slot's container looked at: a dead or missing one is a death.
    async fn sweep(&self) {
        let (desired, busy) = {
            let shared = self.inner.shared();
            (shared.record.desired(), shared.busy.clone())
        };
        if desired.slots.is_empty() || desired.swarm {
            return;
        }
        let Ok(observed) = self.inner.engine.containers(&[&format!("{LABEL_FLEET}={}", desired.fleet)]).await
        else {
            return;
        };
        let plan = plan::reconcile(&desired, &observed);
        for action in plan.actions {
            let (slot, code) = match &action {
                Action::Create { slot } => (slot.clone(), None),
                Action::Replace { slot, container } => (slot.clone(), container.exit_code),
                Action::Remove { .. } => continue,
            };
            if busy.contains(&slot) {
                continue;
            }
            let labels = Labels::from([
                (LABEL_FLEET.to_string(), desired.fleet.clone()),
                (LABEL_SLOT.to_string(), slot.clone()),
            ]);
            self.on_death(&labels, &slot, code, None);
        }
    }
}
