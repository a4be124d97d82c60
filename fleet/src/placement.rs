//! Where a role's slots go, and whether the fleet has headroom, without I/O: pure functions
//! over the nodes ([`NodeInfo`]), the slots placed on them ([`Placed`]) and the roles'
//! specs, unit-tested below with fake node lists.
//!
//! A slot is a Swarm service of one replica, so Swarm's own `MaxReplicas` and spread
//! preferences count one service's tasks and mean nothing across a role's slots. drover
//! derives, for each slot it creates, constraints on Swarm's terms that make the role's
//! slots honour them ([`plan`]):
//!
//! - `spread: [node.labels.zone]`: the slot gets `node.labels.zone==<value>`, the value whose
//!   nodes hold the fewest of the role's slots (nodes without the label count as one value,
//!   reached with `!=` every other value); several labels narrow in order;
//! - `max_per_node: N`: drover picks the node itself (among those the constraints and
//!   spread allow, holding fewer than N of the role and with room for the reservations: the
//!   one with the fewest of the role, then the least reserved) and pins the slot there with
//!   `node.id==<id>`; a pin is the only constraint that holds a count across services
//!   whichever way Swarm schedules the slots created at once.
//!
//! A role the eligible nodes cannot hold is refused before anything changes: no node
//! satisfies its constraints, more slots than `max_per_node` × eligible nodes, or a slot
//! whose reservations fit on no node.
//!
//! [`headroom`] answers Clocker's question: could the fleet lose its largest node (by the
//! reservations placed there) and still fit the slots it ran on the other nodes, respecting
//! each role's constraints, `max_per_node` and reservations?

use std::collections::BTreeMap;

use render::fleet::placement::NodeAttributes;
use render::fleet::{Constraint, RoleSpec};
use serde::{Deserialize, Serialize};

use crate::engine::Labels;

/// A node of the swarm (or the one engine), as placement sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`: only an active node takes new tasks.
    pub availability: String,
    /// Swarm's view of it is `ready`.
    pub ready: bool,
    pub os: String,
    pub arch: String,
    pub labels: Labels,
    pub engine_labels: Labels,
    pub cpus: f64,
    /// Bytes.
    pub memory: u64,
    /// Containers (Swarm tasks) running there, whoever's.
    pub containers: u32,
    /// The reservations of the tasks running there, CPUs and bytes, by their fleet (their
    /// `drover.fleet` label; `""` for the tasks of no drover fleet). Swarm only.
    #[serde(default)]
    pub reserved_by: BTreeMap<String, (f64, u64)>,
    /// What of it is not this fleet's ([`NodeInfo::seen_by`]): taken, for this fleet.
    #[serde(default)]
    pub others: (f64, u64),
}

impl NodeInfo {
    fn attributes(&self) -> NodeAttributes<'_> {
        NodeAttributes {
            id: &self.id,
            hostname: &self.hostname,
            role: &self.role,
            os: &self.os,
            arch: &self.arch,
            labels: &self.labels,
            engine_labels: &self.engine_labels,
        }
    }

    /// The node as `fleet` sees it (none: no fleet is up): what the other fleets' and
    /// services' tasks reserve there is taken.
    pub fn seen_by(mut self, fleet: Option<&str>) -> NodeInfo {
        self.others = self
            .reserved_by
            .iter()
            .filter(|(f, _)| fleet != Some(f.as_str()))
            .fold((0.0, 0), |(cpus, memory), (_, (c, m))| (cpus + c, memory + m));
        self
    }

    /// Takes new tasks: active and ready.
    pub fn schedulable(&self) -> bool {
        self.availability == "active" && self.ready
    }

    /// `n1 (zone=a)`: its hostname and labels, for messages.
    fn shown(&self) -> String {
        if self.labels.is_empty() {
            return self.hostname.clone();
        }
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} ({})", self.hostname, labels.join(", "))
    }
}

/// A slot of the fleet and the node (id) it runs on, or is pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub slot: String,
    pub role: String,
    pub node: String,
}

/// What the fleet's slots take of each node: its role's slots counted, reservations summed.
#[derive(Clone, Debug, Default)]
struct Usage {
    /// (node id, role) → slots.
    count: BTreeMap<(String, String), u32>,
    cpus: BTreeMap<String, f64>,
    memory: BTreeMap<String, u64>,
}

impl Usage {
    fn of(placed: &[Placed], roles: &BTreeMap<String, RoleSpec>) -> Usage {
        let mut usage = Usage::default();
        for p in placed {
            usage.add(&p.node, &p.role, roles.get(&p.role));
        }
        usage
    }

    fn add(&mut self, node: &str, role: &str, spec: Option<&RoleSpec>) {
        *self.count.entry((node.to_string(), role.to_string())).or_default() += 1;
        let r = spec.map(|s| s.resources.reservations).unwrap_or_default();
        *self.cpus.entry(node.to_string()).or_default() += r.cpus.unwrap_or(0.0);
        *self.memory.entry(node.to_string()).or_default() += r.memory.unwrap_or(0);
    }

    fn role_on(&self, node: &str, role: &str) -> u32 {
        self.count.get(&(node.to_string(), role.to_string())).copied().unwrap_or(0)
    }

    /// What the node has that neither this fleet nor the others reserve.
    fn free_cpus(&self, node: &NodeInfo) -> f64 {
        node.cpus - node.others.0 - self.cpus.get(&node.id).copied().unwrap_or(0.0)
    }

    fn free_memory(&self, node: &NodeInfo) -> i128 {
        i128::from(node.memory)
            - i128::from(node.others.1)
            - i128::from(self.memory.get(&node.id).copied().unwrap_or(0))
    }

    /// Whether the role's reservations fit in what is left of the node.
    fn fits(&self, node: &NodeInfo, spec: &RoleSpec) -> bool {
        let r = spec.resources.reservations;
        r.cpus.is_none_or(|c| self.free_cpus(node) + 1e-9 >= c)
            && r.memory.is_none_or(|m| self.free_memory(node) >= i128::from(m))
    }
}

/// The nodes that may run the role: schedulable, every constraint holding.
pub fn eligible<'n>(nodes: &'n [NodeInfo], spec: &RoleSpec) -> Vec<&'n NodeInfo> {
    nodes
        .iter()
        .filter(|n| n.schedulable() && spec.placement.constraints.iter().all(|c| c.holds(&n.attributes())))
        .collect()
}

fn constraints_text(spec: &RoleSpec) -> String {
    spec.placement.constraints.iter().map(Constraint::to_string).collect::<Vec<_>>().join(", ")
}

/// The constraints drover adds to each slot it creates (`creates`: slot and role, in the
/// order they are made), beyond the role's own, given the nodes and the slots `placed`
/// already (those that stay). Every reason the nodes cannot hold a role, or none.
pub fn plan(
    nodes: &[NodeInfo],
    placed: &[Placed],
    roles: &BTreeMap<String, RoleSpec>,
    creates: &[(String, String)],
) -> Result<BTreeMap<String, Vec<Constraint>>, Vec<String>> {
    let mut usage = Usage::of(placed, roles);
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    let mut refused_roles: Vec<&str> = Vec::new();
    for (slot, role) in creates {
        if refused_roles.contains(&role.as_str()) {
            continue;
        }
        let Some(spec) = roles.get(role) else {
            out.insert(slot.clone(), Vec::new());
            continue;
        };
        let allowed = eligible(nodes, spec);
        let pool: Vec<String> = nodes.iter().map(NodeInfo::shown).collect();
        if allowed.is_empty() {
            let why = if spec.placement.constraints.is_empty() {
                "no node is active and ready".to_string()
            } else {
                format!("no active node satisfies its constraints ({})", constraints_text(spec))
            };
            problems.push(format!("role {role} cannot be placed: {why}; nodes: {}", pool.join(", ")));
            refused_roles.push(role);
            continue;
        }
        if let Some(max) = spec.placement.max_per_node {
            // the role's slots on nodes it may no longer use (drained, relabelled) take no room
            let on_allowed = |p: &&Placed| p.role == *role && allowed.iter().any(|n| n.id == p.node);
            let wanted =
                placed.iter().filter(on_allowed).count() + creates.iter().filter(|(_, r)| r == role).count();
            let room = max as usize * allowed.len();
            if wanted > room {
                let names: Vec<&str> = allowed.iter().map(|n| n.hostname.as_str()).collect();
                problems.push(format!(
                    "role {role} wants {wanted} slots, but at most {max} per node on the {} node(s) that may run it \
                     ({}) hold {room}: add nodes (or labels), raise max_per_node, or lower replicas",
                    allowed.len(),
                    names.join(", ")
                ));
                refused_roles.push(role);
                continue;
            }
        }
        let mut candidates: Vec<&NodeInfo> = allowed
            .iter()
            .copied()
            .filter(|n| spec.placement.max_per_node.is_none_or(|max| usage.role_on(&n.id, role) < max))
            .filter(|n| usage.fits(n, spec))
            .collect();
        if candidates.is_empty() {
            let r = spec.resources.reservations;
            let free: Vec<String> = allowed
                .iter()
                .map(|n| {
                    format!(
                        "{} has {:.2} CPUs and {} free",
                        n.hostname,
                        usage.free_cpus(n).max(0.0),
                        render::fleet::scalar::size_text(usage.free_memory(n).max(0) as u64)
                    )
                })
                .collect();
            problems.push(format!(
                "slot {slot} (role {role}) fits on no node: it reserves {} CPUs and {} ({}); free some, add nodes, \
                 or lower its reservations",
                r.cpus.unwrap_or(0.0),
                render::fleet::scalar::size_text(r.memory.unwrap_or(0)),
                free.join("; ")
            ));
            refused_roles.push(role);
            continue;
        }
        let mut derived = Vec::new();
        for label in &spec.placement.spread {
            let name = render::fleet::placement::spread_label(label).unwrap_or(label);
            let value_of = |n: &NodeInfo| n.labels.get(name).cloned().unwrap_or_default();
            // the role's slots per value, over every node that may run it
            let mut per_value: BTreeMap<String, u32> = BTreeMap::new();
            for n in &allowed {
                *per_value.entry(value_of(n)).or_default() += usage.role_on(&n.id, role);
            }
            let best = candidates
                .iter()
                .map(|n| value_of(n))
                .min_by_key(|v| (per_value.get(v).copied().unwrap_or(0), v.clone()))
                .unwrap_or_default();
            candidates.retain(|n| value_of(n) == best);
            if best.is_empty() {
                for other in per_value.keys().filter(|v| !v.is_empty()) {
                    derived.push(Constraint { attribute: label.clone(), equal: false, value: other.clone() });
                }
            } else {
                derived.push(Constraint { attribute: label.clone(), equal: true, value: best });
            }
        }
        // the node it is counted on: the one with the fewest of the role, then the least reserved
        let node = candidates
            .iter()
            .min_by(|a, b| {
                let key =
                    |n: &NodeInfo| (usage.role_on(&n.id, role), -usage.free_cpus(n), n.hostname.clone());
                let (ka, kb) = (key(a), key(b));
                ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(ka.2.cmp(&kb.2))
            })
            .copied()
            .expect("candidates is not empty");
        if spec.placement.max_per_node.is_some() {
            derived = vec![Constraint::node_id(&node.id)];
        }
        usage.add(&node.id, role, Some(spec));
        out.insert(slot.clone(), derived);
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Clocker's headroom: could the fleet lose its largest node and still run?
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Headroom {
    pub ok: bool,
    /// The node it would lose: the one with the most reserved (CPUs, then memory, then slots).
    pub largest: Option<String>,
    /// The slots of that node that would fit on no other node.
    pub unplaced: Vec<String>,
    /// `yes: ...` or `no: ...`, in a line.
    pub verdict: String,
}

/// Would the slots on the largest node (by reservations placed) fit on the other
/// schedulable nodes, each where its role's constraints hold, under its `max_per_node`, in
/// the CPUs and memory not reserved there? Spread is a preference and not held to; a slot's
/// own pin (`node.id==`) is not either: losing its node is the question.
pub fn headroom(nodes: &[NodeInfo], placed: &[Placed], roles: &BTreeMap<String, RoleSpec>) -> Headroom {
    let schedulable: Vec<&NodeInfo> = nodes.iter().filter(|n| n.schedulable()).collect();
    if schedulable.len() <= 1 {
        let verdict = match schedulable.first() {
            Some(n) => format!("no: one node ({})", n.hostname),
            None => "no: no node takes tasks".to_string(),
        };
        return Headroom {
            ok: false,
            largest: schedulable.first().map(|n| n.hostname.clone()),
            unplaced: placed.iter().map(|p| p.slot.clone()).collect(),
            verdict,
        };
    }
    let mut usage = Usage::of(placed, roles);
    let slots_on = |id: &str| placed.iter().filter(|p| p.node == id).count();
    let largest = nodes
        .iter()
        .filter(|n| slots_on(&n.id) > 0)
        .max_by(|a, b| {
            let key = |n: &NodeInfo| {
                (usage.cpus.get(&n.id).copied().unwrap_or(0.0), usage.memory.get(&n.id).copied().unwrap_or(0))
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then(slots_on(&a.id).cmp(&slots_on(&b.id)))
                .then(b.hostname.cmp(&a.hostname))
        })
        .cloned();
    let Some(largest) = largest else {
        return Headroom {
            ok: true,
            largest: None,
            unplaced: Vec::new(),
            verdict: "yes: no slot is placed".into(),
        };
    };
    let mut displaced: Vec<&Placed> = placed.iter().filter(|p| p.node == largest.id).collect();
    // the largest reservations first: they are the hardest to fit
    displaced.sort_by(|a, b| {
        let r = |p: &Placed| roles.get(&p.role).map(|s| s.resources.reservations).unwrap_or_default();
        let (ra, rb) = (r(a), r(b));
        rb.cpus
            .unwrap_or(0.0)
            .total_cmp(&ra.cpus.unwrap_or(0.0))
            .then(rb.memory.cmp(&ra.memory))
            .then(a.slot.cmp(&b.slot))
    });
    let others: Vec<NodeInfo> = nodes.iter().filter(|n| n.id != largest.id).cloned().collect();
    let mut unplaced = Vec::new();
    for p in displaced {
        let Some(spec) = roles.get(&p.role) else { continue };
        let target = eligible(&others, spec)
            .into_iter()
            .filter(|n| spec.placement.max_per_node.is_none_or(|max| usage.role_on(&n.id, &p.role) < max))
            .filter(|n| usage.fits(n, spec))
            .max_by(|a, b| {
                usage.free_cpus(a).total_cmp(&usage.free_cpus(b)).then(b.hostname.cmp(&a.hostname))
            });
        match target {
            Some(n) => {
                let id = n.id.clone();
                usage.add(&id, &p.role, Some(spec));
            }
            None => unplaced.push(p.slot.clone()),
        }
    }
    let verdict = if unplaced.is_empty() {
        format!("yes: the slots of {} would fit on the other nodes", largest.hostname)
    } else {
        format!("no: without {}, {} would fit nowhere", largest.hostname, unplaced.join(", "))
    };
    Headroom { ok: unplaced.is_empty(), largest: Some(largest.hostname), unplaced, verdict }
}

/// The fleet's reservations placed on a node: CPUs and bytes.
pub fn reserved_on(node: &str, placed: &[Placed], roles: &BTreeMap<String, RoleSpec>) -> (f64, u64) {
    let usage = Usage::of(placed, roles);
    (usage.cpus.get(node).copied().unwrap_or(0.0), usage.memory.get(node).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use render::fleet::{Placement, Reservations, Resources};

    const G: u64 = 1 << 30;

    fn node(id: &str, zone: Option<&str>, cpus: f64, memory: u64) -> NodeInfo {
        NodeInfo {
            id: format!("id-{id}"),
            hostname: id.into(),
            role: "worker".into(),
            availability: "active".into(),
            ready: true,
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: zone.map(|z| Labels::from([("zone".to_string(), z.to_string())])).unwrap_or_default(),
            engine_labels: Labels::new(),
            cpus,
            memory,
            containers: 0,
            ..Default::default()
        }
    }

    fn role(replicas: u32, placement: Placement, cpus: Option<f64>, memory: Option<u64>) -> RoleSpec {
        RoleSpec {
            replicas,
            placement,
            resources: Resources { reservations: Reservations { cpus, memory }, ..Resources::default() },
            ..RoleSpec::default()
        }
    }

    fn constraints(list: &[&str]) -> Vec<Constraint> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn creates(role: &str, from: u32, to: u32) -> Vec<(String, String)> {
        (from..=to).map(|n| (format!("f-{role}-{n}"), role.to_string())).collect()
    }

    fn shown(c: &[Constraint]) -> Vec<String> {
        c.iter().map(Constraint::to_string).collect()
    }

    fn placed(slot: &str, node: &str) -> Placed {
        let role = slot.split('-').nth(1).unwrap().to_string();
        Placed { slot: slot.into(), role, node: format!("id-{node}") }
    }

    #[test]
    fn max_per_node_pins_each_slot_to_a_node_with_room() {
        let nodes =
            [node("n1", None, 4.0, 8 * G), node("n2", None, 4.0, 8 * G), node("n3", None, 4.0, 8 * G)];
        let web = role(5, Placement { max_per_node: Some(2), ..Placement::default() }, None, None);
        let roles = BTreeMap::from([("web".to_string(), web)]);
        // n1 holds 2 already: the new ones go to n2 and n3, never n1
        let have = [placed("f-web-1", "n1"), placed("f-web-2", "n1")];
        let out = plan(&nodes, &have, &roles, &creates("web", 3, 5)).unwrap();
        assert_eq!(shown(&out["f-web-3"]), ["node.id==id-n2"]);
        assert_eq!(shown(&out["f-web-4"]), ["node.id==id-n3"]);
        assert_eq!(shown(&out["f-web-5"]), ["node.id==id-n2"]);
        let mut per_node = BTreeMap::new();
        for c in out.values() {
            *per_node.entry(c[0].value.clone()).or_insert(0) += 1;
        }
        assert!(per_node.values().all(|&n| n <= 2), "{per_node:?}");
        // a slot on a node that takes no task any more takes no room
        let mut gone = nodes.to_vec();
        gone.push(NodeInfo { availability: "drain".into(), ..node("n4", None, 4.0, 8 * G) });
        let with_gone = [placed("f-web-1", "n1"), placed("f-web-2", "n1"), placed("f-web-9", "n4")];
        assert!(plan(&gone, &with_gone, &roles, &creates("web", 3, 6)).is_ok());
        // 7 slots, 2 per node on 3 nodes: refused, saying why
        let e = plan(&nodes, &have, &roles, &creates("web", 3, 7)).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("role web wants 7 slots, but at most 2 per node on the 3 node(s)"), "{e:?}");
        assert!(e[0].contains("(n1, n2, n3) hold 6"), "{e:?}");
    }

    #[test]
    fn constraints_choose_the_eligible_nodes() {
        let mut drained = node("n4", Some("a"), 4.0, 8 * G);
        drained.availability = "drain".into();
        let nodes = [
            node("n1", Some("a"), 4.0, 8 * G),
            node("n2", Some("b"), 4.0, 8 * G),
            node("n3", Some("a"), 4.0, 8 * G),
            drained,
        ];
        let placement = Placement {
            constraints: constraints(&["node.labels.zone==a"]),
            max_per_node: Some(1),
            ..Placement::default()
        };
        let roles = BTreeMap::from([("db".to_string(), role(2, placement, None, None))]);
        let out = plan(&nodes, &[], &roles, &creates("db", 1, 2)).unwrap();
        assert_eq!(shown(&out["f-db-1"]), ["node.id==id-n1"]);
        assert_eq!(shown(&out["f-db-2"]), ["node.id==id-n3"], "never n2 (zone b) nor n4 (drained)");
        // a third: only two nodes of zone a are active
        let e = plan(&nodes, &[], &roles, &creates("db", 1, 3)).unwrap_err();
        assert!(e[0].contains("on the 2 node(s) that may run it (n1, n3) hold 2"), "{e:?}");
        // a constraint no node satisfies
        let placement =
            Placement { constraints: constraints(&["node.labels.zone==c"]), ..Placement::default() };
        let roles = BTreeMap::from([("db".to_string(), role(1, placement, None, None))]);
        let e = plan(&nodes, &[], &roles, &creates("db", 1, 1)).unwrap_err();
        assert!(
            e[0].starts_with(
                "role db cannot be placed: no active node satisfies its constraints (node.labels.zone==c); \
                 nodes: n1 (zone=a), n2 (zone=b)"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn spread_pins_each_slot_to_the_least_used_label_value() {
        let nodes = [
            node("n1", Some("a"), 4.0, 8 * G),
            node("n2", Some("a"), 4.0, 8 * G),
            node("n3", Some("b"), 4.0, 8 * G),
            node("n4", None, 4.0, 8 * G),
        ];
        let spread = Placement { spread: vec!["node.labels.zone".into()], ..Placement::default() };
        let roles = BTreeMap::from([("web".to_string(), role(4, spread, None, None))]);
        // one web in zone a already: b, then the unlabelled node, then a and b again
        let have = [placed("f-web-1", "n1")];
        let out = plan(&nodes, &have, &roles, &creates("web", 2, 6)).unwrap();
        assert_eq!(shown(&out["f-web-2"]), ["node.labels.zone!=a", "node.labels.zone!=b"]);
        assert_eq!(shown(&out["f-web-3"]), ["node.labels.zone==b"]);
        assert_eq!(shown(&out["f-web-4"]), ["node.labels.zone!=a", "node.labels.zone!=b"]);
        assert_eq!(shown(&out["f-web-5"]), ["node.labels.zone==a"]);
        assert_eq!(shown(&out["f-web-6"]), ["node.labels.zone==b"]);
        // the derived constraints hold where they were meant to
        let zone_b = &out["f-web-3"][0];
        assert!(zone_b.holds(&nodes[2].attributes()) && !zone_b.holds(&nodes[0].attributes()));
        let none = &out["f-web-2"];
        assert!(none.iter().all(|c| c.holds(&nodes[3].attributes())));
        assert!(!none.iter().all(|c| c.holds(&nodes[1].attributes())));
    }

    #[test]
    fn reservations_must_fit_in_what_is_left() {
        let nodes = [node("n1", None, 2.0, 4 * G), node("n2", None, 1.0, 4 * G)];
        let roles = BTreeMap::from([
            ("db".to_string(), role(1, Placement::default(), Some(1.5), Some(3 * G))),
            (
                "web".to_string(),
                role(2, Placement { max_per_node: Some(2), ..Placement::default() }, Some(1.0), None),
            ),
        ]);
        let have = [placed("f-db-1", "n1")];
        // n1 has 0.5 CPU left, n2 1: both webs would need n2, but the second does not fit
        let e = plan(&nodes, &have, &roles, &creates("web", 1, 2)).unwrap_err();
        assert!(e[0].starts_with("slot f-web-2 (role web) fits on no node: it reserves 1 CPUs"), "{e:?}");
        assert!(e[0].contains("n1 has 0.50 CPUs and 1G free; n2 has 0.00 CPUs and 4G free"), "{e:?}");
        let out = plan(&nodes, &have, &roles, &creates("web", 1, 1)).unwrap();
        assert_eq!(shown(&out["f-web-1"]), ["node.id==id-n2"]);
    }

    #[test]
    fn what_other_fleets_and_services_reserve_is_taken() {
        // n2 has 2 CPUs, of which another fleet reserves 1 and a service not of drover 0.5
        let mut busy = node("n2", None, 2.0, 4 * G);
        busy.reserved_by = BTreeMap::from([
            ("f".to_string(), (1.0, G)),
            ("other".to_string(), (1.0, G)),
            (String::new(), (0.5, G)),
        ]);
        let nodes = [node("n1", None, 0.5, 4 * G), busy.seen_by(Some("f"))];
        assert_eq!(nodes[1].others, (1.5, 2 * G), "this fleet's own are not the others'");
        let roles = BTreeMap::from([("web".to_string(), role(1, Placement::default(), Some(1.0), None))]);
        let e = plan(&nodes, &[], &roles, &creates("web", 1, 1)).unwrap_err();
        assert!(e[0].contains("n2 has 0.50 CPUs and 2G free"), "{e:?}");
        // seen with no fleet up, everything there is the others'
        assert_eq!(busy_seen(None).others, (2.5, 3 * G));
        fn busy_seen(fleet: Option<&str>) -> NodeInfo {
            let mut n = node("n2", None, 2.0, 4 * G);
            n.reserved_by = BTreeMap::from([("f".to_string(), (1.0, G)), ("x".to_string(), (1.5, 2 * G))]);
            n.seen_by(fleet)
        }
    }

    #[test]
    fn headroom_asks_whether_the_largest_node_can_go() {
        let nodes =
            [node("n1", None, 4.0, 8 * G), node("n2", None, 4.0, 8 * G), node("n3", None, 2.0, 8 * G)];
        let roles = BTreeMap::from([
            ("db".to_string(), role(1, Placement::default(), Some(2.0), Some(2 * G))),
            (
                "web".to_string(),
                role(3, Placement { max_per_node: Some(1), ..Placement::default() }, Some(1.0), None),
            ),
        ]);
        let have = [
            placed("f-db-1", "n1"),
            placed("f-web-1", "n1"),
            placed("f-web-2", "n2"),
            placed("f-web-3", "n3"),
        ];
        let h = headroom(&nodes, &have, &roles);
        // n1 is the largest (3 CPUs reserved): db fits on n2 (3 free), web-1 fits nowhere (1 per node)
        assert_eq!(h.largest.as_deref(), Some("n1"));
        assert_eq!(h.unplaced, ["f-web-1"]);
        assert!(!h.ok);
        assert_eq!(h.verdict, "no: without n1, f-web-1 would fit nowhere");
        // with a fourth node, web-1 moves there
        let mut more = nodes.to_vec();
        more.push(node("n4", None, 1.0, G));
        let h = headroom(&more, &have, &roles);
        assert!(h.ok, "{h:?}");
        assert_eq!(h.verdict, "yes: the slots of n1 would fit on the other nodes");
        // one node: never
        let h = headroom(&nodes[..1], &have[..2], &roles);
        assert_eq!((h.ok, h.verdict.as_str()), (false, "no: one node (n1)"));
        assert_eq!(reserved_on("id-n1", &have, &roles), (3.0, 2 * G));
    }
}
