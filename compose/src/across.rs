//! What no service tells alone: role and image names, dependencies (each names a service,
//! no cycle), aliases (one role each), networks, host ports (each once, on one container),
//! named volumes shared by services, and fleet.yaml's rules that join settings
//! (`start-first` beside volumes or a fixed host port; slot names of 64 characters).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use render::PortSpec;
use render::fleet::scalar::{dns_name, image_name};
use render::is_name;

use crate::model::Service;
use crate::project::Project;
use crate::reader::Reader;

/// The longest slot name: a slot's name is its minion's id.
const MAX_SLOT_NAME: usize = 64;

pub(crate) fn check(r: &mut Reader, services: &mut [Service], project: &Project, fleet: &str) {
    names(r, services);
    requires(r, services);
    aliases(r, services);
    networks(r, services, project);
    host_ports(r, services);
    volumes(r, services);
    start_first(r, services);
    for s in services.iter() {
        let longest = format!("{fleet}-{}-{}", s.role, s.replicas.max(1));
        if longest.len() > MAX_SLOT_NAME {
            r.error(
                s.at,
                &s.path,
                format!(
                    "drover would name its containers like `{longest}`, {} characters, and a slot's name (its \
                     minion's id) has at most {MAX_SLOT_NAME}: give a shorter fleet name with --fleet",
                    longest.len()
                ),
            );
        }
    }
}

/// Each service's role and image: its own name when drover can use it, else one made from
/// it (the service's name stays a name of the role, as an alias, when it can be one).
fn names(r: &mut Reader, services: &mut [Service]) {
    let mut roles = BTreeSet::new();
    let mut images = BTreeSet::new();
    for s in services.iter_mut() {
        let mut role = if is_name(&s.name) && s.name != "top" {
            s.name.clone()
        } else {
            let made: String = s
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
                .collect();
            if made == "top" { "top-service".to_string() } else { made }
        };
        role = unique(role, &roles);
        if role != s.name {
            let alias = if dns_name(&s.name).is_ok() {
                s.aliases.push((s.name.clone(), s.at));
                format!("; `{}` stays a name of its containers (an alias)", s.name)
            } else {
                String::new()
            };
            r.note(s.at, &s.path, format!("drover's role for the service is `{role}`{alias}"));
        }
        roles.insert(role.clone());
        s.role = role;

        let lower = s.role.to_ascii_lowercase();
        let mut image = if image_name(&lower).is_ok() && lower != "base" {
            lower
        } else {
            let mut made = String::new();
            for c in lower.chars() {
                if c.is_ascii_alphanumeric() {
                    made.push(c);
                } else if !made.ends_with('-') {
                    made.push('-');
                }
            }
            let made = made.trim_matches('-').to_string();
            match made.as_str() {
                "" => "service".to_string(),
                "base" => "base-service".to_string(),
                _ => made,
            }
        };
        image = unique(image, &images);
        images.insert(image.clone());
        s.image = image;
    }
}

fn unique(name: String, taken: &BTreeSet<String>) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..).map(|n| format!("{name}-{n}")).find(|n| !taken.contains(n)).expect("a free name")
}

/// `depends_on` and `links` name services, not themselves, in no cycle (Compose refuses
/// them as well); each becomes the role the service is.
fn requires(r: &mut Reader, services: &mut [Service]) {
    let index: BTreeMap<String, usize> =
        services.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
    for (i, s) in services.iter().enumerate() {
        for (name, at) in &s.requires {
            match index.get(name) {
                Some(&j) if j == i => r.error(*at, &s.path, format!("the service {name} depends on itself")),
                Some(&j) => {
                    if !edges[i].contains(&j) {
                        edges[i].push(j);
                    }
                    if services[j].replicas == 0 && s.replicas > 0 {
                        r.note(
                            *at,
                            &s.path,
                            format!(
                                "{name} has 0 replicas (its profiles): {}'s daemons wait until it runs",
                                s.name
                            ),
                        );
                    }
                }
                None => {
                    r.error(*at, &s.path, format!("depends on `{name}`, which is not a service of the file"))
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<&str> = cycle.iter().chain(&cycle[..1]).map(|&i| services[i].name.as_str()).collect();
        let first = &services[cycle[0]];
        r.error(
            first.at,
            &first.path,
            format!("the services depend on each other in a cycle: {}", names.join(" -> ")),
        );
    }
    // links give the linked service an alias
    let mut given = Vec::new();
    for s in services.iter() {
        for (target, alias, at) in &s.link_aliases {
            given.push((target.clone(), alias.clone(), *at));
        }
    }
    for (target, alias, at) in given {
        if let Some(&j) = index.get(&target)
            && !services[j].aliases.iter().any(|(a, _)| *a == alias)
        {
            services[j].aliases.push((alias, at));
        }
    }
    let roles: Vec<String> = services.iter().map(|s| s.role.clone()).collect();
    for (i, s) in services.iter_mut().enumerate() {
        let mut seen = Vec::new();
        for &j in &edges[i] {
            if !seen.contains(&roles[j]) {
                seen.push(roles[j].clone());
            }
        }
        s.requires = seen.into_iter().map(|role| (role, s.at)).collect();
    }
}

/// A cycle of `edges` (node → the nodes it needs), as the nodes in it, if there is one.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // iterative depth-first search: (node, next edge to follow)
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match marks[to] {
                    Mark::New => {
                        marks[to] = Mark::Open;
                        stack.push((to, 0));
                    }
                    Mark::Open => {
                        let from =
                            stack.iter().position(|(n, _)| *n == to).expect("open nodes are on the stack");
                        return Some(stack[from..].iter().map(|(n, _)| *n).collect());
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// Aliases are DNS names that no other role answers to.
fn aliases(r: &mut Reader, services: &mut [Service]) {
    let roles: BTreeSet<String> = services.iter().map(|s| s.role.clone()).collect();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for s in services.iter_mut() {
        let mut kept: Vec<(String, render::locate::At)> = Vec::new();
        for (alias, at) in std::mem::take(&mut s.aliases) {
            if alias == s.role || kept.iter().any(|(a, _)| *a == alias) {
                continue;
            }
            let problem = if let Err(e) = dns_name(&alias) {
                Some(e)
            } else if roles.contains(&alias) {
                Some(format!("`{alias}` is the name of another role, which answers to it"))
            } else {
                taken.get(&alias).map(|other| format!("`{alias}` is a name of the role {other} already"))
            };
            match problem {
                Some(why) => {
                    r.left_out(at, &s.path, format!("{why}: it is not a name of {}'s containers", s.role))
                }
                None => {
                    taken.insert(alias.clone(), s.role.clone());
                    kept.push((alias, at));
                }
            }
        }
        s.aliases = kept;
    }
}

/// drover puts every container on one network: services kept apart on several networks
/// can now reach each other.
fn networks(r: &mut Reader, services: &[Service], project: &Project) {
    let used: BTreeSet<&str> = services.iter().flat_map(|s| s.networks.iter().map(String::as_str)).collect();
    if used.len() <= 1 {
        return;
    }
    let list = used.iter().copied().collect::<Vec<_>>().join(", ");
    for name in &used {
        let message = format!(
            "drover puts every container of the fleet on one network: the services of {list} can now reach \
             each other (keep them apart with separate fleets)"
        );
        match project.networks.get(*name) {
            Some(at) => r.left_out(*at, &format!("networks.{name}"), message),
            None => {
                if let Some(s) = services.iter().find(|s| s.networks.iter().any(|n| n == name)) {
                    r.left_out(s.at, &s.path, message);
                }
            }
        }
    }
}

/// A fixed host port binds one container: not on a role of many replicas, not twice.
fn host_ports(r: &mut Reader, services: &mut [Service]) {
    let mut published: Vec<(PortSpec, String)> = Vec::new();
    for s in services.iter_mut() {
        let path = format!("{}.ports", s.path);
        let mut kept = Vec::new();
        for (mut port, at) in std::mem::take(&mut s.ports) {
            if port.host_port.is_some() && s.replicas > 1 {
                let fixed = port;
                port.host_port = None;
                port.host_ip = None;
                r.left_out(
                    at,
                    &path,
                    format!(
                        "the host port of {fixed} would be bound by each of the {} replicas: each container \
                         publishes {port} on a free host port instead (`drover ps` shows them); for one address, \
                         put a load balancer role in front, or run one replica",
                        s.replicas
                    ),
                );
            }
            if let Some((_, other)) = published.iter().find(|(p, _)| overlaps(p, &port)) {
                r.left_out(
                    at,
                    &path,
                    format!("host port {port} is published by {other} already: it is published once"),
                );
                continue;
            }
            if port.host_port.is_some() {
                published.push((port, s.name.clone()));
            }
            if !kept.iter().any(|(p, _)| *p == port) {
                kept.push((port, at));
            }
        }
        s.ports = kept;
    }
}

fn overlaps(a: &PortSpec, b: &PortSpec) -> bool {
    let any = |ip: Option<IpAddr>| ip.is_none_or(|ip| ip.is_unspecified());
    a.protocol == b.protocol
        && a.host_port.is_some()
        && a.host_port == b.host_port
        && (any(a.host_ip) || any(b.host_ip) || a.host_ip == b.host_ip)
}

/// A named volume is the slot's own: services that shared one no longer do.
fn volumes(r: &mut Reader, services: &[Service]) {
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in services {
        for v in &s.volumes {
            if let Some(name) = &v.named {
                users.entry(name.as_str()).or_default().push(&s.name);
            }
        }
    }
    for s in services {
        for v in &s.volumes {
            let Some(name) = &v.named else { continue };
            let sharing = &users[name.as_str()];
            if sharing.len() > 1 && sharing[0] != s.name {
                r.left_out(
                    v.at,
                    &format!("{}.volumes", s.path),
                    format!(
                        "the volume {name} is shared with {}: drover gives each slot a volume of its own at {}, so \
                         they no longer share its files (put them in one role, or exchange them over the network)",
                        sharing[0], v.target
                    ),
                );
            } else if s.replicas > 1 {
                r.note(
                    v.at,
                    &format!("{}.volumes", s.path),
                    format!(
                        "each of the {} replicas gets a volume of its own at {}, not the one volume {name}",
                        s.replicas, v.target
                    ),
                );
            }
        }
    }
}

/// `start-first` runs two containers of a slot at once: not with volumes, nor a fixed host
/// port.
fn start_first(r: &mut Reader, services: &mut [Service]) {
    for s in services.iter_mut() {
        let Some((order, at)) = s.update.order.clone() else { continue };
        if order != "start-first" {
            continue;
        }
        let why = if !s.volumes.is_empty() {
            Some(format!(
                "the role has volumes ({}), which two containers would write at once",
                volume_list(s)
            ))
        } else {
            s.ports.iter().find(|(p, _)| p.host_port.is_some()).map(|(p, _)| {
                format!("the new container could not bind host port {p} while the old one holds it")
            })
        };
        if let Some(why) = why {
            r.left_out(
                at,
                &format!("{}.deploy.update_config.order", s.path),
                format!("start-first is not kept, stop-first is: {why}"),
            );
            s.update.order = None;
        }
    }
}

fn volume_list(s: &Service) -> String {
    s.volumes.iter().map(|v| v.target.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles() {
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![]]), None);
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![0]]), Some(vec![0, 1, 2]));
        assert_eq!(find_cycle(&[vec![], vec![2], vec![1]]), Some(vec![1, 2]));
        assert_eq!(find_cycle(&[vec![1, 2], vec![2], vec![]]), None, "a diamond");
    }
}
