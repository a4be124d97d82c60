//! Reconcile: what to do to bring the containers the engine has to the slots the record
//! wants, computed without I/O.
//!
//! A slot with no container is created; one whose container is at its version but not
//! running is replaced (same version, same volumes); one at another version is left to a
//! rollout (the plan lists it under `changes`); a container no slot wants (scaled down, role
//! gone) is removed, as is every container of a slot but its newest (a swap cut short). A
//! container of the fleet whose labels cannot be read (no slot label) is named as a problem
//! and left alone.

use std::collections::BTreeMap;

use crate::engine::{ContainerInfo, ContainerState, LABEL_SLOT, LABEL_VERSION};
use crate::record::Desired;

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The slot has no container: create one at its version.
    Create { slot: String },
    /// The slot's container is at its version but not running: replace it.
    Replace { slot: String, container: ContainerInfo },
    /// No slot wants this container (or a newer one of its slot exists).
    Remove { container: ContainerInfo, why: String },
}

/// A slot whose container runs another version than the record wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub slot: String,
    pub role: String,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Version changes, in slot order, for a rollout.
    pub changes: Vec<Change>,
    /// Slots whose container is running at the wanted version.
    pub keep: Vec<String>,
    /// Containers of the fleet the plan cannot place.
    pub problems: Vec<String>,
}

impl Change {
    pub fn to_api(&self) -> api::fleet::VersionChange {
        api::fleet::VersionChange {
            slot: self.slot.clone(),
            role: self.role.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.changes.is_empty()
    }
}

/// The plan from `desired` slots and the fleet's `observed` containers (every container
/// carrying the fleet's label).
pub fn reconcile(desired: &Desired, observed: &[ContainerInfo]) -> Plan {
    let mut plan = Plan::default();
    let mut by_slot: BTreeMap<&str, Vec<&ContainerInfo>> = BTreeMap::new();
    for c in observed {
        match c.label(LABEL_SLOT) {
            Some(slot) => by_slot.entry(slot).or_default().push(c),
            None => plan.problems.push(format!(
                "container {} has the fleet's label but no {LABEL_SLOT}: left alone (remove it by hand if it is not needed)",
                c.name
            )),
        }
    }
    for list in by_slot.values_mut() {
        // newest first; the one named like its slot wins a tie
        list.sort_by(|a, b| {
            b.generation().cmp(&a.generation()).then_with(|| {
                let named = |c: &&ContainerInfo| c.label(LABEL_SLOT) == Some(c.name.as_str());
                named(b).cmp(&named(a))
            })
        });
    }
    for (name, spec) in &desired.slots {
        let Some(list) = by_slot.get(name.as_str()) else {
            plan.actions.push(Action::Create { slot: name.clone() });
            continue;
        };
        let current = list[0];
        for older in &list[1..] {
            plan.actions.push(Action::Remove {
                container: (*older).clone(),
                why: format!("an older container of slot {name}"),
            });
        }
        let version = current.label(LABEL_VERSION).unwrap_or("");
        if version != spec.version {
            plan.changes.push(Change {
                slot: name.clone(),
                role: spec.role.clone(),
                from: version.to_string(),
                to: spec.version.clone(),
            });
        } else if current.state == ContainerState::Running {
            plan.keep.push(name.clone());
        } else {
            plan.actions.push(Action::Replace { slot: name.clone(), container: current.clone() });
        }
    }
    for (slot, list) in &by_slot {
        if desired.slots.contains_key(*slot) {
            continue;
        }
        for c in list {
            plan.actions
                .push(Action::Remove { container: (*c).clone(), why: format!("no slot {slot} is wanted") });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Health, LABEL_FLEET, LABEL_GENERATION, LABEL_ROLE};
    use crate::record::FleetRecord;
    use crate::record::tests::{file, role};

    fn container(slot: &str, version: &str, generation: u64, state: ContainerState) -> ContainerInfo {
        ContainerInfo {
            id: format!("{slot}-{generation}"),
            name: slot.into(),
            image: format!("app:{version}"),
            labels: [
                (LABEL_FLEET, "f"),
                (LABEL_ROLE, slot.split('-').nth(1).unwrap()),
                (LABEL_SLOT, slot),
                (LABEL_VERSION, version),
                (LABEL_GENERATION, &generation.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            state,
            health: Health::None,
            addresses: BTreeMap::new(),
            exit_code: None,
            node: None,
            update: None,
        }
    }

    fn desired(web: (&str, u32)) -> Desired {
        FleetRecord::default()
            .brought_up(file(&[("web", role(web.0, web.1)), ("db", role("1", 1))]), "c".into())
            .desired()
    }

    #[test]
    fn an_empty_engine_gets_every_slot_created() {
        let plan = reconcile(&desired(("1", 2)), &[]);
        assert_eq!(
            plan.actions,
            ["f-db-1", "f-web-1", "f-web-2"].map(|s| Action::Create { slot: s.into() }).to_vec()
        );
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn a_fleet_as_wanted_plans_nothing() {
        let observed = [
            container("f-db-1", "1", 1, ContainerState::Running),
            container("f-web-1", "1", 1, ContainerState::Running),
            container("f-web-2", "1", 1, ContainerState::Running),
        ];
        let plan = reconcile(&desired(("1", 2)), &observed);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.keep, ["f-db-1", "f-web-1", "f-web-2"]);
    }

    #[test]
    fn scale_down_removes_extra_slots_and_dead_containers_are_replaced() {
        let observed = [
            container("f-db-1", "1", 1, ContainerState::Exited),
            container("f-web-1", "1", 1, ContainerState::Running),
            container("f-web-2", "1", 1, ContainerState::Running),
            container("f-web-3", "1", 1, ContainerState::Running),
        ];
        let plan = reconcile(&desired(("1", 2)), &observed);
        assert_eq!(plan.actions.len(), 2, "{plan:?}");
        assert!(matches!(&plan.actions[0], Action::Replace { slot, .. } if slot == "f-db-1"));
        assert!(matches!(&plan.actions[1], Action::Remove { container, .. } if container.name == "f-web-3"));
    }

    #[test]
    fn other_versions_are_changes_for_a_rollout() {
        let observed = [
            container("f-db-1", "1", 1, ContainerState::Running),
            container("f-web-1", "1", 1, ContainerState::Running),
            container("f-web-2", "2", 2, ContainerState::Running),
        ];
        let plan = reconcile(&desired(("2", 2)), &observed);
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.changes,
            [Change { slot: "f-web-1".into(), role: "web".into(), from: "1".into(), to: "2".into() }]
        );
    }

    #[test]
    fn of_two_containers_of_a_slot_the_newest_stays() {
        let mut old = container("f-web-1", "1", 1, ContainerState::Running);
        old.name = "f-web-1.old".into();
        let observed = [
            container("f-db-1", "1", 1, ContainerState::Running),
            old.clone(),
            container("f-web-1", "2", 5, ContainerState::Running),
        ];
        let plan = reconcile(&desired(("2", 1)), &observed);
        assert_eq!(
            plan.actions,
            [Action::Remove { container: old, why: "an older container of slot f-web-1".into() }]
        );
        assert_eq!(plan.keep, ["f-db-1", "f-web-1"]);
    }

    #[test]
    fn a_container_without_a_slot_label_is_named_and_left_alone() {
        let mut odd = container("f-web-1", "1", 1, ContainerState::Running);
        odd.labels.remove(LABEL_SLOT);
        odd.name = "odd".into();
        let plan = reconcile(&desired(("1", 1)), &[odd]);
        assert_eq!(plan.problems.len(), 1);
        assert!(plan.problems[0].contains("container odd"));
        assert!(!plan.actions.iter().any(|a| matches!(a, Action::Remove { .. })));
    }
}
