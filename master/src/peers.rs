//! Peers: for each role, the minions that serve it, as templates see them in `peers.<role>`.
//!
//! A minion serves a role when it is connected, has the role, and its last report
//! (`ToMaster::Converged`) succeeded for an assignment that already held the role (its serial
//! is at least the one the role was first pushed with). So a minion given a new role is not
//! its peer until it converged with it, one whose apply fails stops being a peer, and one
//! that served a role keeps serving it while it converges to a newer commit (no flapping of
//! every dependant's configuration at each `roles apply`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value};
use wire::Peer;

/// Role → its members, sorted by id. Lists are shared (`Arc`) between the table and the
/// assignments planned from it, so "is this still what it was planned with" is usually a
/// pointer comparison.
pub type PeerMap = BTreeMap<String, Arc<Vec<Peer>>>;

/// The grains a peer shows besides its id and address (with its assigned `roles`).
const PEER_GRAINS: [&str; 6] = ["hostname", "os", "os_family", "ipv4", "image", "image_version"];

/// How `id` looks to the minions that see it as a peer.
pub fn peer(id: &str, grains: &Value, roles: &[String]) -> Peer {
    let mut shown = Map::new();
    for key in PEER_GRAINS {
        if let Some(v) = grains.get(key) {
            shown.insert(key.to_string(), v.clone());
        }
    }
    shown.insert("roles".into(), Value::from(roles.to_vec()));
    Peer { id: id.to_string(), address: address(grains), grains: shown }
}

/// The first IPv4 address in the `ipv4` grain (a list, or one string), loopback last.
pub fn address(grains: &Value) -> String {
    let list: Vec<&str> = match grains.get("ipv4") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    };
    list.iter().find(|a| !a.starts_with("127.")).or(list.first()).map(|a| a.to_string()).unwrap_or_default()
}

/// One minion as the peer table sees it.
pub struct Member<'a> {
    pub id: &'a str,
    pub grains: &'a Value,
    /// Every role it is assigned.
    pub roles: &'a [String],
    /// The roles it serves now (see the module's rule).
    pub serving: BTreeSet<&'a str>,
}

/// The peer table: every role in `roles` (members or not, so a template can always name
/// `peers.<role>`), with the members serving it.
pub fn table<'a>(roles: impl IntoIterator<Item = &'a String>, members: &[Member]) -> PeerMap {
    let mut lists: BTreeMap<String, Vec<Peer>> = roles.into_iter().map(|r| (r.clone(), Vec::new())).collect();
    for m in members {
        if m.serving.is_empty() {
            continue;
        }
        let p = peer(m.id, m.grains, m.roles);
        for role in &m.serving {
            if let Some(list) = lists.get_mut(*role) {
                list.push(p.clone());
            }
        }
    }
    lists
        .into_iter()
        .map(|(role, mut list)| {
            list.sort_by(|a, b| a.id.cmp(&b.id));
            (role, Arc::new(list))
        })
        .collect()
}

/// Keeps the lists of `old` that did not change (same `Arc`), so that pointer comparisons
/// keep working. Returns the table and whether anything changed.
pub fn refresh(old: &PeerMap, new: PeerMap) -> (PeerMap, bool) {
    let mut changed = old.len() != new.len();
    let merged = new
        .into_iter()
        .map(|(role, list)| match old.get(&role) {
            Some(prev) if **prev == *list => (role, prev.clone()),
            _ => {
                changed = true;
                (role, list)
            }
        })
        .collect();
    (merged, changed)
}

/// Whether `planned` (the peers an assignment was rendered with) still shows, for every
/// role of `view`, what `table` says now.
pub fn current(planned: &PeerMap, view: &BTreeSet<String>, table: &PeerMap) -> bool {
    view.iter().all(|role| match (planned.get(role), table.get(role)) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        (Some(a), None) | (None, Some(a)) => a.is_empty(),
    })
}

/// The part of `table` a minion sees: the roles of `view`.
pub fn view_of(table: &PeerMap, view: &BTreeSet<String>) -> PeerMap {
    view.iter().map(|role| (role.clone(), table.get(role).cloned().unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_serve_only_the_roles_they_converged_with() {
        let roles: Vec<String> = ["datastore", "worker", "webui"].map(String::from).into();
        let g1 = json!({"ipv4": ["127.0.0.1", "10.0.0.2"], "os": "Debian", "mem_total": 9});
        let g2 = json!({"ipv4": "10.0.0.3", "hostname": "db-2"});
        let db1_roles = vec!["datastore".to_string(), "worker".to_string()];
        let db2_roles = vec!["datastore".to_string()];
        let members = [
            Member { id: "db-2", grains: &g2, roles: &db2_roles, serving: ["datastore"].into() },
            Member { id: "db-1", grains: &g1, roles: &db1_roles, serving: ["datastore"].into() },
            Member { id: "idle", grains: &g2, roles: &db2_roles, serving: BTreeSet::new() },
        ];
        let t = table(&roles, &members);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["datastore", "webui", "worker"]);
        let ids: Vec<&str> = t["datastore"].iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["db-1", "db-2"], "sorted, only serving members");
        assert!(t["worker"].is_empty(), "db-1 has not converged with worker yet");
        assert_eq!(t["datastore"][0].address, "10.0.0.2", "loopback skipped");
        assert_eq!(t["datastore"][1].address, "10.0.0.3");
        assert_eq!(
            Value::Object(t["datastore"][0].grains.clone()),
            json!({"ipv4": ["127.0.0.1", "10.0.0.2"], "os": "Debian", "roles": ["datastore", "worker"]})
        );

        let (same, changed) = refresh(&t, table(&roles, &members));
        assert!(!changed);
        assert!(Arc::ptr_eq(&same["datastore"], &t["datastore"]));
        let fewer = table(&roles, &members[..1]);
        let (next, changed) = refresh(&same, fewer);
        assert!(changed);
        assert!(Arc::ptr_eq(&next["worker"], &t["worker"]), "unchanged lists are kept");

        let view: BTreeSet<String> = ["datastore".to_string()].into();
        let planned = view_of(&t, &view);
        assert!(current(&planned, &view, &same));
        assert!(!current(&planned, &view, &next));
        let webui_only: BTreeSet<String> = ["webui".to_string()].into();
        assert!(current(&view_of(&t, &webui_only), &webui_only, &next), "a view sees only its roles");
    }
}
