//! The fleet's record, kept by the master (SQLite): fleet.yaml as last brought up, the
//! imperative changes made since (`scale`, `upgrade`), and the rollouts. From it,
//! [`FleetRecord::desired`] computes which slot should run which version.
//!
//! `drover up` merges like `kubectl apply`: a role's `version` or `replicas` that changed in
//! fleet.yaml since the last `up` wins over an override; one that did not keeps the
//! override, so an `upgrade` is not undone by an `up` that changed something else.

use std::collections::BTreeMap;

use render::FleetFile;
use render::fleet::RoleSpec;
use serde::{Deserialize, Serialize};

use crate::rollout::Rollout;

/// How many finished rollouts the record keeps.
pub const KEPT_ROLLOUTS: usize = 50;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetRecord {
    /// fleet.yaml as last brought up, and the commit it came from.
    pub applied: Option<AppliedFleet>,
    /// Changes made since by `scale` and `upgrade`, by role.
    #[serde(default)]
    pub overrides: BTreeMap<String, Override>,
    /// Rollouts, oldest first; the last may still run.
    #[serde(default)]
    pub rollouts: Vec<Rollout>,
    /// The fleet `down` last took away (its volumes may still be there, for a later
    /// `down --volumes`); none once a fleet is up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_down: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppliedFleet {
    pub file: FleetFile,
    pub commit: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// One slot as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotSpec {
    /// `<fleet>-<role>-<n>`: the container name, minion id and volume prefix.
    pub slot: String,
    pub role: String,
    pub n: u32,
    pub version: String,
    pub spec: RoleSpec,
}

impl SlotSpec {
    /// The image reference: `<image>:<version>`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.spec.image, self.version)
    }
}

/// Every slot that should exist, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub fleet: String,
    pub network: String,
    /// The fleet's extra networks by the names roles use (`networks:`); each is the Docker
    /// network [`Desired::network_name`] gives.
    pub networks: Vec<String>,
    /// `engine: swarm`: each slot a Swarm service, the network an overlay.
    pub swarm: bool,
    /// Swarm: the registry images go through, services naming them by digest.
    pub registry: Option<render::fleet::Registry>,
    pub slots: BTreeMap<String, SlotSpec>,
}

impl Desired {
    /// The Docker network of the network roles call `name`: `default` is the fleet's
    /// `network`, any other `<fleet>-<name>` (as [`render::fleet::FleetFile::network_name`]).
    pub fn network_name(&self, name: &str) -> String {
        if name == render::fleet::DEFAULT_NETWORK {
            self.network.clone()
        } else {
            format!("{}-{name}", self.fleet)
        }
    }

    pub fn slots_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a SlotSpec> + 'a {
        self.slots.values().filter(move |s| s.role == role)
    }
}

impl FleetRecord {
    /// The record after `drover up` of `file` at `commit`: overrides of fields that
    /// changed in the file since the last `up` are dropped, as are those of removed roles.
    pub fn brought_up(&self, file: FleetFile, commit: String) -> FleetRecord {
        let mut next = self.clone();
        next.taken_down = None;
        let before = self.applied.as_ref().filter(|a| a.file.fleet == file.fleet).map(|a| &a.file);
        next.overrides.retain(|role, o| {
            let Some(new) = file.roles.get(role) else { return false };
            let old = before.and_then(|b| b.roles.get(role));
            if old.is_none_or(|old| old.version != new.version) {
                o.version = None;
            }
            if old.is_none_or(|old| old.replicas != new.replicas) {
                o.replicas = None;
            }
            // an override equal to the file says nothing
            if o.version.as_ref() == Some(&new.version) {
                o.version = None;
            }
            if o.replicas == Some(new.replicas) {
                o.replicas = None;
            }
            o.version.is_some() || o.replicas.is_some()
        });
        next.applied = Some(AppliedFleet { file, commit });
        next
    }

    /// The slots that should run, from the applied file and the overrides.
    pub fn desired(&self) -> Desired {
        let Some(applied) = &self.applied else { return Desired::default() };
        let file = &applied.file;
        let mut slots = BTreeMap::new();
        for (role, spec) in &file.roles {
            let o = self.overrides.get(role);
            let replicas = o.and_then(|o| o.replicas).unwrap_or(spec.replicas);
            let version = o.and_then(|o| o.version.clone()).unwrap_or_else(|| spec.version.clone());
            for n in 1..=replicas {
                let slot = file.slot_name(role, n);
                slots.insert(
                    slot.clone(),
                    SlotSpec { slot, role: role.clone(), n, version: version.clone(), spec: spec.clone() },
                );
            }
        }
        Desired {
            fleet: file.fleet.clone(),
            network: file.network.clone(),
            networks: file.networks.clone(),
            swarm: file.engine == render::fleet::EngineKind::Swarm,
            registry: file.registry.clone(),
            slots,
        }
    }

    /// Whether the fleet brought up runs on Swarm (`engine: swarm`).
    pub fn swarm(&self) -> bool {
        self.applied.as_ref().is_some_and(|a| a.file.engine == render::fleet::EngineKind::Swarm)
    }

    /// The registry of the fleet brought up (Swarm), if it names one.
    pub fn registry(&self) -> Option<&render::fleet::Registry> {
        self.applied.as_ref().and_then(|a| a.file.registry.as_ref())
    }

    /// The fleet's name, once brought up.
    pub fn fleet(&self) -> Option<&str> {
        self.applied.as_ref().map(|a| a.file.fleet.as_str())
    }

    /// The rollout that has not ended, if one has not.
    pub fn running(&self) -> Option<&Rollout> {
        self.rollouts.last().filter(|r| !r.state.ended())
    }

    /// Adds or replaces (same id) a rollout, keeping the last [`KEPT_ROLLOUTS`].
    pub fn put_rollout(&mut self, rollout: Rollout) {
        match self.rollouts.iter_mut().find(|r| r.id == rollout.id) {
            Some(r) => *r = rollout,
            None => self.rollouts.push(rollout),
        }
        let extra = self.rollouts.len().saturating_sub(KEPT_ROLLOUTS);
        self.rollouts.drain(..extra);
    }
}

/// The name of a slot's volume for the container path `target`:
/// `/var/lib/redis` in `coins-datastore-1` is `coins-datastore-1-var-lib-redis`.
pub fn volume_name(slot: &str, target: &str) -> String {
    let path: String = target
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' })
        .collect();
    if path.is_empty() { format!("{slot}-root") } else { format!("{slot}-{path}") }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use render::fleet::{EngineKind, Resources, UpdatePolicy};

    pub fn role(version: &str, replicas: u32) -> RoleSpec {
        RoleSpec {
            image: "app".into(),
            version: version.into(),
            replicas,
            volumes: vec![],
            ports: vec![],
            env: BTreeMap::new(),
            resources: Resources::default(),
            update: UpdatePolicy::default(),
            heal: true,
            aliases: vec![],
            networks: vec![render::fleet::DEFAULT_NETWORK.into()],
            placement: Default::default(),
        }
    }

    pub fn file(roles: &[(&str, RoleSpec)]) -> FleetFile {
        FleetFile {
            fleet: "f".into(),
            engine: EngineKind::Local,
            network: "f".into(),
            networks: vec![],
            roles: roles.iter().map(|(n, r)| (n.to_string(), r.clone())).collect(),
            registry: None,
        }
    }

    #[test]
    fn desired_slots_follow_the_file_and_the_overrides() {
        let mut rec = FleetRecord::default()
            .brought_up(file(&[("web", role("1", 2)), ("db", role("1", 1))]), "c1".into());
        let names: Vec<_> = rec.desired().slots.into_keys().collect();
        assert_eq!(names, ["f-db-1", "f-web-1", "f-web-2"]);
        rec.overrides.insert("web".into(), Override { version: Some("2".into()), replicas: Some(3) });
        let d = rec.desired();
        assert_eq!(d.slots_of("web").map(|s| s.version.as_str()).collect::<Vec<_>>(), ["2", "2", "2"]);
        assert_eq!(d.slots["f-db-1"].reference(), "app:1");
    }

    #[test]
    fn up_keeps_overrides_of_fields_the_file_did_not_change() {
        let first = FleetRecord::default().brought_up(file(&[("web", role("1", 2))]), "c1".into());
        let mut rec = first.clone();
        rec.overrides.insert("web".into(), Override { version: Some("2".into()), replicas: Some(4) });

        // the file changed nothing about web: both overrides stay
        let same = rec.brought_up(file(&[("web", role("1", 2))]), "c2".into());
        assert_eq!(same.overrides["web"], Override { version: Some("2".into()), replicas: Some(4) });

        // the file now says replicas 3: that wins, the version override stays
        let scaled = rec.brought_up(file(&[("web", role("1", 3))]), "c3".into());
        assert_eq!(scaled.overrides["web"], Override { version: Some("2".into()), replicas: None });

        // the file catches up with the override: nothing left to override
        let caught_up = rec.brought_up(file(&[("web", role("2", 4))]), "c4".into());
        assert!(caught_up.overrides.is_empty(), "{:?}", caught_up.overrides);

        // a role gone from the file takes its overrides with it
        let gone = rec.brought_up(file(&[("db", role("1", 1))]), "c5".into());
        assert!(gone.overrides.is_empty());
    }

    #[test]
    fn volume_names_are_docker_names() {
        assert_eq!(volume_name("coins-datastore-1", "/var/lib/redis"), "coins-datastore-1-var-lib-redis");
        assert_eq!(volume_name("f-a-1", "/data/"), "f-a-1-data");
        assert_eq!(volume_name("f-a-1", "/"), "f-a-1-root");
        assert_eq!(volume_name("f-a-1", "/a b/ç"), "f-a-1-a-b--");
    }
}
