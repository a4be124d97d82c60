//! One slot's container: made ([`Controller::launch`]), removed, swapped to another version
//! in place ([`Controller::swap`]), and waited for until its minion is ready.
//!
//! A swap keeps the slot: same name (minion id), same volumes, same identity; only the
//! image version and the generation change. Stop-first removes the old container before
//! the new one starts. Start-first renames the old one aside (`<slot>.old`), starts the new
//! one under the slot's name, and removes the old one only once the new one is ready — or
//! puts the old one back under its name if the new one fails. The old one answers to the
//! slot's and the role's names on the network until it is removed (they are aliases of
//! every container of the slot), so a start-first swap leaves no moment when they do not
//! resolve. A swap to the version the
//! slot already runs only waits for it, so a rollout can be resumed.

use std::time::Duration;

use render::fleet::{Order, UpdatePolicy};
use tokio::time::Instant;

use super::{Controller, FleetEvent, FleetNetworks, Progress, Result};
use crate::engine::*;
use crate::host::{Enrollment, Host};
use crate::record::{SlotSpec, volume_name};

/// Where the minion keeps its keys in a fleet container.
pub const MINION_DIR: &str = "/var/lib/drover/minion";

/// Lines of the container's own output quoted when it failed.
const LOG_LINES: usize = 8;

impl<E: Engine, H: Host> Controller<E, H> {
    /// Makes and starts a container for `spec` at `version`; returns its id and generation.
    pub(crate) async fn launch(
        &self,
        spec: &SlotSpec,
        version: &str,
        network: &FleetNetworks,
        progress: &Progress,
    ) -> Result<(String, u64)> {
        let fleet = network.fleet.clone();
        for target in &spec.spec.volumes {
            let labels = Labels::from([
                (LABEL_FLEET.to_string(), fleet.clone()),
                (LABEL_ROLE.to_string(), spec.role.clone()),
                (LABEL_SLOT.to_string(), spec.slot.clone()),
            ]);
            self.inner.engine.create_volume(&volume_name(&spec.slot, target), &labels).await?;
        }
        let enrollment = self.inner.host.enroll(&spec.slot).await?;
        let generation = self.next_generation();
        self.inner.host.want(&spec.slot, generation).await;
        let container = container_spec(&fleet, spec, version, generation, &enrollment, network)
            .map_err(super::FleetError::Refused)?;
        self.emit(
            progress,
            FleetEvent::Slot {
                slot: spec.slot.clone(),
                step: "creating".into(),
                detail: Some(container.image.clone()),
            },
        );
        let id = if self.swarm() {
            self.create_slot_service(&fleet, spec, container, progress).await?
        } else {
            let id = self.inner.engine.create(&container).await?;
            if let Err(e) = self.inner.engine.start(&id).await {
                let _ = self.inner.engine.remove(&id).await;
                return Err(e.into());
            }
            id
        };
        self.emit(
            progress,
            FleetEvent::Slot { slot: spec.slot.clone(), step: "started".into(), detail: None },
        );
        Ok((id, generation))
    }

    /// A generation above every one handed out before: the time in ms, or one more.
    pub(crate) fn next_generation(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let now = wire::msg::now_ms();
        let last = &self.inner.generation;
        let mut prev = last.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match last.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }

    /// Stops (SIGTERM, then SIGKILL after the stop timeout) and removes a container; on
    /// Swarm, removes a slot's service (Swarm stops its task the same way).
    pub(crate) async fn remove_container(&self, c: &ContainerInfo, progress: &Progress) -> Result<()> {
        let slot = c.label(LABEL_SLOT).unwrap_or(&c.name).to_string();
        if c.update.is_some() {
            self.emit(
                progress,
                FleetEvent::Slot {
                    slot: slot.clone(),
                    step: "stopping".into(),
                    detail: Some(c.name.clone()),
                },
            );
            self.inner.engine.remove_service(&c.name).await?;
            self.emit(
                progress,
                FleetEvent::Slot { slot, step: "removed".into(), detail: Some(c.name.clone()) },
            );
            return Ok(());
        }
        if c.state == ContainerState::Running {
            self.emit(
                progress,
                FleetEvent::Slot {
                    slot: slot.clone(),
                    step: "stopping".into(),
                    detail: Some(c.name.clone()),
                },
            );
            if let Err(e) = self.inner.engine.stop(&c.id, self.inner.opts.stop_timeout).await
                && !e.is_not_found()
            {
                tracing::warn!(container = %c.name, error = %e, "cannot stop; removing it anyway");
            }
        }
        self.inner.engine.remove(&c.id).await?;
        self.emit(progress, FleetEvent::Slot { slot, step: "removed".into(), detail: Some(c.name.clone()) });
        Ok(())
    }

    /// The slot's containers, newest first.
    async fn slot_containers(&self, fleet: &str, slot: &str) -> Result<Vec<ContainerInfo>> {
        let filter = [format!("{LABEL_FLEET}={fleet}"), format!("{LABEL_SLOT}={slot}")];
        let mut list = self.inner.engine.containers(&[&filter[0], &filter[1]]).await?;
        list.sort_by_key(|c| std::cmp::Reverse(c.generation()));
        Ok(list)
    }

    /// Puts the slot at `version` in `order` and waits until it is ready (`policy`); the
    /// reason when it is not. `back`: the slot goes back to the version it had (on Swarm,
    /// through its service's rollback).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn swap(
        &self,
        spec: &SlotSpec,
        version: &str,
        order: Order,
        policy: &UpdatePolicy,
        network: &FleetNetworks,
        back: bool,
        progress: &Progress,
    ) -> std::result::Result<(), String> {
        if self.swarm() {
            return self.swap_service(spec, version, order, policy, network, back, progress).await;
        }
        let fleet = network.fleet.clone();
        let text = |e: super::FleetError| e.to_string();
        let containers = self.slot_containers(&fleet, &spec.slot).await.map_err(text)?;
        if let Some(c) = containers.first()
            && c.label(LABEL_VERSION) == Some(version)
            && c.state == ContainerState::Running
        {
            return self.wait_ready(&spec.slot, c.id.clone(), c.generation(), policy, progress).await;
        }
        match order {
            Order::StopFirst => {
                for c in &containers {
                    self.remove_container(c, progress).await.map_err(text)?;
                }
                let (id, generation) = self.launch(spec, version, network, progress).await.map_err(text)?;
                self.wait_ready(&spec.slot, id, generation, policy, progress).await
            }
            Order::StartFirst => {
                let (old, older) = match containers.split_first() {
                    Some((old, older)) if old.state == ContainerState::Running => (Some(old), older),
                    _ => (None, &containers[..]),
                };
                for c in older {
                    self.remove_container(c, progress).await.map_err(text)?;
                }
                let aside = format!("{}.old", spec.slot);
                if let Some(old) = old {
                    self.emit(
                        progress,
                        FleetEvent::Slot {
                            slot: spec.slot.clone(),
                            step: "renaming".into(),
                            detail: Some(aside.clone()),
                        },
                    );
                    self.inner.engine.rename(&old.id, &aside).await.map_err(|e| e.to_string())?;
                }
                let put_back = async {
                    if let Some(old) = old
                        && let Err(e) = self.inner.engine.rename(&old.id, &spec.slot).await
                    {
                        tracing::error!(slot = %spec.slot, error = %e, "cannot give the old container its name back");
                    }
                };
                let launched = self.launch(spec, version, network, progress).await;
                let (id, generation) = match launched {
                    Ok(v) => v,
                    Err(e) => {
                        put_back.await;
                        return Err(e.to_string());
                    }
                };
                match self.wait_ready(&spec.slot, id.clone(), generation, policy, progress).await {
                    Ok(()) => {
                        if let Some(old) = old {
                            let mut old = old.clone();
                            old.name = aside;
                            self.remove_container(&old, progress).await.map_err(text)?;
                        }
                        Ok(())
                    }
                    Err(why) => {
                        let _ = self.inner.engine.remove(&id).await;
                        put_back.await;
                        Err(why)
                    }
                }
            }
        }
    }

    /// Waits until the slot's minion of `generation` is connected, converged and healthy
    /// for `policy.min_healthy`, within `policy.health_timeout`. Fails at once when the
    /// container ends or its apply fails.
    pub(crate) async fn wait_ready(
        &self,
        slot: &str,
        id: String,
        generation: u64,
        policy: &UpdatePolicy,
        progress: &Progress,
    ) -> std::result::Result<(), String> {
        self.emit(progress, FleetEvent::Slot { slot: slot.into(), step: "waiting".into(), detail: None });
        let start = Instant::now();
        let deadline = start + policy.health_timeout;
        let mut ready_since: Option<Instant> = None;
        let mut checked = start;
        let swarm = self.swarm();
        // on Swarm: the state of the service's task, told when it changes
        let mut task = String::new();
        let result = loop {
            let now = Instant::now();
            let view = self
                .inner
                .host
                .minions(vec![slot.to_string()])
                .await
                .remove(slot)
                .filter(|v| v.generation == generation);
            match &view {
                Some(v) if v.ready() => {
                    let since = *ready_since.get_or_insert(now);
                    if now.duration_since(since) >= policy.min_healthy {
                        break Ok(());
                    }
                }
                Some(v) if v.failed.is_some() => {
                    let why = format!("apply failed: {}", v.failed.clone().unwrap_or_default());
                    break Err(self.with_logs(&id, why).await);
                }
                _ => ready_since = None,
            }
            if now.duration_since(checked) >= Duration::from_millis(500) || now >= deadline {
                checked = now;
                if swarm {
                    // a task that ends is Swarm's to restart; a rollback of its own ends the wait
                    match self.service_still_wanted(&id, generation).await {
                        Ok(now) if now != task => {
                            task = now;
                            self.emit(
                                progress,
                                FleetEvent::Slot {
                                    slot: slot.into(),
                                    step: "task".into(),
                                    detail: Some(task.clone()),
                                },
                            );
                        }
                        Ok(_) => {}
                        Err(why) => break Err(why),
                    }
                } else {
                    match self.inner.engine.container(&id).await {
                        Ok(Some(c)) if c.state == ContainerState::Running => {}
                        Ok(Some(c)) => {
                            let code = c.exit_code.map(|c| format!(" with code {c}")).unwrap_or_default();
                            break Err(self.with_logs(&id, format!("its container exited{code}")).await);
                        }
                        Ok(None) => break Err("its container is gone".into()),
                        Err(e) => break Err(e.to_string()),
                    }
                }
            }
            if now >= deadline {
                let why = match &view {
                    None => "its minion never connected".to_string(),
                    Some(v) if !v.connected => "its minion is not connected".into(),
                    Some(v) if v.converged.is_none() => "its minion has not converged".into(),
                    Some(v) => v.problem.clone().unwrap_or_else(|| "not healthy".into()),
                };
                let waited = policy.health_timeout.as_secs_f64();
                break Err(self.with_logs(&id, format!("not ready after {waited:.0}s: {why}")).await);
            }
            tokio::time::sleep(self.inner.opts.poll).await;
        };
        let (step, detail) = match &result {
            Ok(()) => ("ready", None),
            Err(why) => ("failed", Some(why.clone())),
        };
        self.emit(progress, FleetEvent::Slot { slot: slot.into(), step: step.into(), detail });
        result
    }

    /// `why`, with the container's last lines of output.
    async fn with_logs(&self, id: &str, why: String) -> String {
        match self.inner.engine.logs(id, LOG_LINES).await {
            Ok(log) if !log.trim().is_empty() => {
                format!("{why}\nthe container's last lines:\n{}", log.trim_end())
            }
            _ => why,
        }
    }
}

/// The container of `spec` at `version`: the slot's name, labels, networks (the role's, the
/// first the one it reaches the master on; on each the slot's and the role's names and the
/// role's aliases as DNS names), volumes, ports, resources, environment, and the files
/// and variables that enroll its minion.
pub(crate) fn container_spec(
    fleet: &str,
    spec: &SlotSpec,
    version: &str,
    generation: u64,
    enrollment: &Enrollment,
    network: &FleetNetworks,
) -> std::result::Result<ContainerSpec, String> {
    let mut joined = Vec::new();
    for name in &spec.spec.networks {
        let Some(info) = network.get(name) else {
            return Err(format!(
                "role {} names the network `{name}`, which the fleet does not have: add it to `networks:` in \
                 fleet.yaml, or take it out of the role's `networks:`",
                spec.role
            ));
        };
        joined.push(info);
    }
    let Some((network, others)) = joined.split_first() else {
        return Err(format!("role {} has no network: list one in its `networks:` in fleet.yaml", spec.role));
    };
    let host = match (&enrollment.master_host, network.gateway) {
        (Some(host), _) => host.clone(),
        (None, Some(gateway)) => gateway.to_string(),
        (None, None) => {
            return Err(format!(
                "network {} has no gateway address for containers to reach the master: start the master with \
                 --advertise HOST",
                network.name
            ));
        }
    };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    let image = format!("{}:{version}", spec.spec.image);
    let mut env = spec.spec.env.clone();
    for (k, v) in [
        ("DROVER_MINION_ID", spec.slot.clone()),
        ("DROVER_MASTER", format!("{host}:{}", enrollment.master_port)),
        ("DROVER_MASTER_KEY", enrollment.master_key.clone()),
        ("DROVER_GENERATION", generation.to_string()),
        ("DROVER_MINION_DIR", MINION_DIR.to_string()),
        ("DROVER_IMAGE", spec.spec.image.clone()),
        ("DROVER_IMAGE_VERSION", version.to_string()),
        ("DROVER_CONTAINER", "1".into()),
        ("DROVER_FLEET", fleet.to_string()),
        ("DROVER_SLOT", spec.slot.clone()),
    ] {
        env.insert(k.to_string(), v);
    }
    // The slot's name is the container's name, and an alias too: a start-first swap renames
    // the old container aside (`<slot>.old`), which takes the container name out of the
    // engine's DNS, while its aliases stay until it is removed; so the slot's name keeps
    // answering (with both containers for a moment) until the new one answers to it.
    let mut aliases = vec![spec.slot.clone(), spec.role.clone()];
    aliases.extend(spec.spec.aliases.iter().cloned());
    Ok(ContainerSpec {
        name: spec.slot.clone(),
        image,
        command: Vec::new(),
        hostname: spec.slot.clone(),
        env,
        labels: Labels::from([
            (LABEL_FLEET.to_string(), fleet.to_string()),
            (LABEL_ROLE.to_string(), spec.role.clone()),
            (LABEL_SLOT.to_string(), spec.slot.clone()),
            (LABEL_VERSION.to_string(), version.to_string()),
            (LABEL_GENERATION.to_string(), generation.to_string()),
        ]),
        network: network.name.clone(),
        aliases,
        networks: others.iter().map(|n| n.name.clone()).collect(),
        mounts: spec
            .spec
            .volumes
            .iter()
            .map(|target| Mount { volume: volume_name(&spec.slot, target), target: target.clone() })
            .collect(),
        publish: spec
            .spec
            .ports
            .iter()
            .map(|p| Publish {
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: match p.protocol {
                    render::fleet::Protocol::Tcp => "tcp".into(),
                    render::fleet::Protocol::Udp => "udp".into(),
                },
            })
            .collect(),
        cpus: spec.spec.resources.cpus,
        memory: spec.spec.resources.memory,
        reserve_cpus: spec.spec.resources.reservations.cpus,
        reserve_memory: spec.spec.resources.reservations.memory,
        constraints: spec.spec.placement.constraints.iter().map(|c| c.to_string()).collect(),
        files: enrollment.files.clone(),
        stop_timeout: Duration::from_secs(10),
    })
}
