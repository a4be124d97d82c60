//! Placement's I/O: the nodes (the swarm's, or the one engine as one node), the slots on
//! them, the check before an operation creates slots, the constraints each new slot's
//! service gets, and `drover nodes`. The decisions are [`crate::placement`]'s.

use std::collections::BTreeMap;

use api::fleet::{HeadroomStatus, NodeStatus, NodesReport};
use render::fleet::{Constraint, RoleSpec};

use super::{Controller, FleetError, Result};
use crate::engine::*;
use crate::host::Host;
use crate::placement::{self, NodeInfo, Placed};
use crate::record::{Desired, SlotSpec};

/// The one engine as a node: its hostname, a manager, active and ready, its engine labels
/// and no node labels, its CPUs and memory.
pub(crate) fn local_node(info: &EngineInfo) -> NodeInfo {
    NodeInfo {
        id: info.name.clone(),
        hostname: info.name.clone(),
        role: "manager".into(),
        availability: "active".into(),
        ready: true,
        os: info.os.clone(),
        arch: info.arch.clone(),
        labels: Labels::new(),
        engine_labels: info.labels.clone(),
        cpus: f64::from(info.cpus),
        memory: info.memory,
        containers: info.containers,
        ..Default::default()
    }
}

/// The node a slot's service is pinned to by drover (`node.id==<id>` in its
/// [`LABEL_PLACEMENT`]).
fn pinned(c: &ContainerInfo) -> Option<&str> {
    c.label(LABEL_PLACEMENT)?.split(',').find_map(|c| c.strip_prefix("node.id=="))
}

/// The fleet's slots in `observed` that `keep` says stay, each on its node: on one engine
/// the engine; on Swarm the node its task runs on, or the node drover pinned it to.
pub(crate) fn placed_slots(
    nodes: &[NodeInfo],
    observed: &[ContainerInfo],
    swarm: bool,
    keep: impl Fn(&str) -> bool,
) -> Vec<Placed> {
    let mut out: Vec<Placed> = Vec::new();
    for c in observed {
        let (Some(slot), Some(role)) = (c.label(LABEL_SLOT), c.label(LABEL_ROLE)) else { continue };
        if !keep(slot) || out.iter().any(|p| p.slot == slot) {
            continue;
        }
        let node = if swarm {
            let by_name = c.node.as_deref().and_then(|h| nodes.iter().find(|n| n.hostname == h || n.id == h));
            match by_name.map(|n| n.id.as_str()).or_else(|| pinned(c)) {
                Some(id) => id.to_string(),
                None => continue,
            }
        } else {
            match nodes.first() {
                Some(n) => n.id.clone(),
                None => continue,
            }
        };
        out.push(Placed { slot: slot.to_string(), role: role.to_string(), node });
    }
    out
}

/// Every role of the fleet with its spec.
fn roles_of(desired: &Desired) -> BTreeMap<String, RoleSpec> {
    desired.slots.values().map(|s| (s.role.clone(), s.spec.clone())).collect()
}

/// A slot's container with the constraints drover derived for it added, and recorded in
/// its [`LABEL_PLACEMENT`] so that its updates keep them.
pub(crate) fn with_placement(container: &mut ContainerSpec, derived: &[String]) {
    if derived.is_empty() {
        return;
    }
    container.constraints.extend(derived.iter().cloned());
    container.labels.insert(LABEL_PLACEMENT.to_string(), derived.join(","));
}

/// The constraints recorded on a slot's service.
pub(crate) fn recorded_placement(c: &ContainerInfo) -> Vec<String> {
    c.label(LABEL_PLACEMENT)
        .map(|l| l.split(',').filter(|c| !c.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

impl<E: Engine, H: Host> Controller<E, H> {
    /// The nodes: the swarm's, or the one engine as one node.
    /// On Swarm, each as `fleet` sees it: what other fleets' and services' tasks reserve
    /// there is taken ([`NodeInfo::seen_by`]).
    pub(crate) async fn node_list(&self, swarm: bool, fleet: Option<&str>) -> Result<Vec<NodeInfo>> {
        if swarm {
            let nodes = self.inner.engine.nodes().await?;
            return Ok(nodes.into_iter().map(|n| n.seen_by(fleet)).collect());
        }
        Ok(vec![local_node(&self.inner.engine.info().await?)])
    }

    /// Before an operation creates `creates`: refused (nothing changed yet) when the nodes
    /// cannot hold a role as its placement and reservations say. On Swarm, the constraints
    /// drover derives for each new slot are kept for its service ([`Self::derived_for`]).
    /// On one engine every slot of the fleet is checked against the engine as one node.
    pub(crate) async fn check_placement(
        &self,
        desired: &Desired,
        observed: &[ContainerInfo],
        creates: &[&SlotSpec],
    ) -> Result<()> {
        // what an earlier operation derived and did not use (it failed) is out of date
        self.inner.shared().placements.clear();
        let roles = roles_of(desired);
        let placing = |s: &&SlotSpec| {
            let p = &s.spec.placement;
            !p.is_empty() || !s.spec.resources.reservations.is_empty()
        };
        if !desired.slots.values().any(|s| placing(&s)) {
            return Ok(());
        }
        let nodes = self.node_list(desired.swarm, Some(&desired.fleet)).await?;
        let (placed, mut new): (Vec<Placed>, Vec<&SlotSpec>) = if desired.swarm {
            let placed = placed_slots(&nodes, observed, true, |s| desired.slots.contains_key(s));
            (placed, creates.to_vec())
        } else {
            (Vec::new(), desired.slots.values().collect())
        };
        new.sort_by(|a, b| (&a.role, a.n).cmp(&(&b.role, b.n)));
        let new: Vec<(String, String)> = new.iter().map(|s| (s.slot.clone(), s.role.clone())).collect();
        let derived = placement::plan(&nodes, &placed, &roles, &new).map_err(|problems| {
            let engine = if desired.swarm {
                String::new()
            } else {
                format!(" (on `engine: local` the one engine, {}, is the only node)", nodes[0].hostname)
            };
            FleetError::Refused(format!(
                "the fleet cannot be placed{engine}: {}; nothing changed",
                problems.join("; ")
            ))
        })?;
        if desired.swarm {
            let mut shared = self.inner.shared();
            for (slot, constraints) in derived {
                shared.placements.insert(slot, constraints.iter().map(Constraint::to_string).collect());
            }
        }
        Ok(())
    }

    /// The constraints derived for a slot about to be created (once).
    pub(crate) fn derived_for(&self, slot: &str) -> Vec<String> {
        self.inner.shared().placements.remove(slot).unwrap_or_default()
    }

    /// `drover nodes`: every node with the fleet's slots, reservations and what is free,
    /// and the fleet's headroom. With no fleet up, the engine's nodes.
    pub async fn nodes(&self) -> Result<NodesReport> {
        let record = self.record();
        let fleet = record.fleet().map(String::from);
        let desired = record.desired();
        let swarm = match &fleet {
            Some(_) => desired.swarm,
            None => self.inner.engine.info().await?.swarm == "active",
        };
        let nodes = self.node_list(swarm, fleet.as_deref()).await?;
        let observed = match &fleet {
            Some(f) => self.observed(f, swarm).await?,
            None => Vec::new(),
        };
        let roles = roles_of(&desired);
        let placed = placed_slots(&nodes, &observed, swarm, |_| true);
        let running: Vec<&ContainerInfo> =
            observed.iter().filter(|c| c.state == ContainerState::Running).collect();
        let headroom = placement::headroom(&nodes, &placed, &roles);
        let nodes = nodes
            .iter()
            .map(|n| {
                let (reserved_cpus, reserved_memory) = placement::reserved_on(&n.id, &placed, &roles);
                let slots: Vec<String> =
                    placed.iter().filter(|p| p.node == n.id).map(|p| p.slot.clone()).collect();
                let containers = if swarm {
                    running.iter().filter(|c| c.node.as_deref() == Some(n.hostname.as_str())).count()
                } else {
                    running.len()
                } as u32;
                NodeStatus {
                    id: n.id.clone(),
                    name: n.hostname.clone(),
                    role: n.role.clone(),
                    availability: n.availability.clone(),
                    ready: n.ready,
                    labels: n.labels.clone(),
                    slots,
                    containers,
                    containers_total: n.containers,
                    cpus: n.cpus,
                    memory: n.memory,
                    reserved_cpus,
                    reserved_memory,
                    others_cpus: n.others.0,
                    others_memory: n.others.1,
                    free_cpus: (n.cpus - reserved_cpus - n.others.0).max(0.0),
                    free_memory: n.memory.saturating_sub(reserved_memory).saturating_sub(n.others.1),
                }
            })
            .collect();
        Ok(NodesReport {
            engine: if swarm { "swarm" } else { "local" }.into(),
            fleet,
            nodes,
            headroom: HeadroomStatus {
                ok: headroom.ok,
                verdict: headroom.verdict,
                largest: headroom.largest,
                unplaced: headroom.unplaced,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(slot: &str, role: &str, node: Option<&str>, placement: Option<&str>) -> ContainerInfo {
        let mut labels = Labels::from([
            (LABEL_SLOT.to_string(), slot.to_string()),
            (LABEL_ROLE.to_string(), role.to_string()),
        ]);
        if let Some(p) = placement {
            labels.insert(LABEL_PLACEMENT.into(), p.into());
        }
        ContainerInfo {
            id: slot.into(),
            name: slot.into(),
            image: "app:1".into(),
            labels,
            state: ContainerState::Running,
            health: Health::Healthy,
            addresses: BTreeMap::new(),
            exit_code: None,
            node: node.map(String::from),
            update: Some(String::new()),
        }
    }

    #[test]
    fn slots_are_placed_where_their_task_runs_or_where_they_are_pinned() {
        let nodes = [
            NodeInfo { id: "x1".into(), hostname: "n1".into(), ..NodeInfo::default() },
            NodeInfo { id: "x2".into(), hostname: "n2".into(), ..NodeInfo::default() },
        ];
        let observed = [
            service("f-web-1", "web", Some("n2"), None),
            service("f-web-2", "web", None, Some("node.labels.zone==a,node.id==x1")),
            service("f-web-3", "web", None, None),
            service("f-web-4", "web", Some("n1"), None),
        ];
        let placed = placed_slots(&nodes, &observed, true, |s| s != "f-web-4");
        let got: Vec<(&str, &str)> = placed.iter().map(|p| (p.slot.as_str(), p.node.as_str())).collect();
        assert_eq!(got, [("f-web-1", "x2"), ("f-web-2", "x1")], "f-web-3 is nowhere yet, f-web-4 goes");
        let local = placed_slots(&nodes[..1], &observed, false, |_| true);
        assert!(local.iter().all(|p| p.node == "x1") && local.len() == 4);
        assert_eq!(recorded_placement(&observed[1]), ["node.labels.zone==a", "node.id==x1"]);
        assert!(recorded_placement(&observed[0]).is_empty());
    }
}
