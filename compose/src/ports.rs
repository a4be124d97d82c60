//! `ports:` in Compose's short syntax (`"127.0.0.1:8080-8081:80-81/udp"`) and long syntax
//! (`{target: 80, published: "8080", host_ip: 127.0.0.1, protocol: udp}`) → fleet.yaml's
//! ports, one per line: fleet.yaml has no ranges, so a range becomes its ports.

use render::PortSpec;
use render::locate::At;
use serde_yaml::Value;

use crate::reader::{Key, Reader};

/// The published ports of a service, each at the item it comes from.
pub(crate) fn read(r: &mut Reader, key: &Key, value: &Value) -> Vec<(PortSpec, At)> {
    let mut ports = Vec::new();
    for (at, item) in r.list(key, value).unwrap_or_default() {
        let text = match item {
            Value::Mapping(_) => match long(r, at, &key.path, item) {
                Some(text) => text,
                None => continue,
            },
            other => match r.string(at, &key.path, other) {
                Some(text) => text,
                None => continue,
            },
        };
        match short(&text) {
            Ok(Expanded { ports: found, any_host_port }) => {
                if let Some(range) = any_host_port {
                    r.left_out(
                        at,
                        &key.path,
                        format!(
                            "`{text}` publishes on one host port of {range}; fleet.yaml has no ranges: the engine \
                             picks a free host port instead (`drover ps` shows it), or write one host port"
                        ),
                    );
                }
                ports.extend(found.into_iter().map(|p| (p, at)));
            }
            Err(Unsupported(why)) => r.left_out(at, &key.path, why),
        }
    }
    ports
}

/// The long syntax, as the short one it means.
fn long(r: &mut Reader, at: At, path: &str, item: &Value) -> Option<String> {
    let (mut target, mut published, mut ip, mut protocol) = (None, None, None, None);
    for (key, value) in r.item_map(at, path, item) {
        match key.name.as_str() {
            "target" => target = r.key_string(&key, value),
            "published" => published = r.key_string(&key, value),
            "host_ip" => ip = r.key_string(&key, value),
            "protocol" => protocol = r.key_string(&key, value),
            "mode" | "name" | "app_protocol" => {}
            other => {
                r.left_out(key.at, path, format!("`{other}` of a port is not a Compose key; it is not used"))
            }
        }
    }
    let Some(target) = target else {
        r.error(at, path, "a port in the long syntax needs `target:`, the container's port");
        return None;
    };
    let mut text = String::new();
    match (&ip, published.as_deref().filter(|p| !p.is_empty())) {
        (Some(ip), Some(p)) if ip.contains(':') => text.push_str(&format!("[{ip}]:{p}:")),
        (Some(ip), Some(p)) => text.push_str(&format!("{ip}:{p}:")),
        (Some(ip), None) if ip.contains(':') => text.push_str(&format!("[{ip}]::")),
        (Some(ip), None) => text.push_str(&format!("{ip}::")),
        (None, Some(p)) => text.push_str(&format!("{p}:")),
        (None, None) => {}
    }
    text.push_str(&target);
    if let Some(protocol) = protocol {
        text.push('/');
        text.push_str(&protocol);
    }
    Some(text)
}

#[derive(Debug, PartialEq)]
struct Expanded {
    ports: Vec<PortSpec>,
    /// A host port range for one container port: the engine's choice instead.
    any_host_port: Option<String>,
}

#[derive(Debug, PartialEq)]
struct Unsupported(String);

/// `[[IP:][HOST[-HOST]]:]CONTAINER[-CONTAINER][/PROTOCOL]` → its ports.
fn short(text: &str) -> Result<Expanded, Unsupported> {
    let bad = |why: String| Err(Unsupported(format!("`{text}` {why}; it is not published")));
    let (addr, protocol) = match text.rsplit_once('/') {
        Some((addr, p @ ("tcp" | "udp"))) => (addr, Some(p)),
        Some((_, "sctp")) => return bad("is an SCTP port, which fleet.yaml cannot publish".into()),
        Some((_, other)) => return bad(format!("has the protocol `{other}`; expected tcp or udp")),
        None => (text, None),
    };
    let (ip, ports) = if let Some(v6) = addr.strip_prefix('[') {
        match v6.split_once("]:") {
            Some((ip, rest)) => (Some(format!("[{ip}]")), rest),
            None => return bad("has `[` without `]:`".into()),
        }
    } else if addr.matches(':').count() == 2 {
        let (ip, rest) = addr.split_once(':').expect("two colons");
        (Some(ip.to_string()), rest)
    } else if addr.matches(':').count() > 2 {
        return bad("has an IPv6 address without brackets".into());
    } else {
        (None, addr)
    };
    let (host, container) = match ports.split_once(':') {
        Some((host, container)) => (Some(host).filter(|h| !h.is_empty()), container),
        None => (None, ports),
    };
    let range = |r: &str| -> Result<(u32, u32), Unsupported> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(a), Ok(b)) if a <= b && b - a < 1000 => Ok((a, b)),
            _ => Err(Unsupported(format!("`{text}` has the port or range `{r}`; it is not published"))),
        }
    };
    let (c0, c1) = range(container)?;
    let mut any_host_port = None;
    let pairs: Vec<(Option<u32>, u32)> = match host.map(range).transpose()? {
        None => (c0..=c1).map(|c| (None, c)).collect(),
        Some((h0, h1)) if h1 - h0 == c1 - c0 => (h0..=h1).zip(c0..=c1).map(|(h, c)| (Some(h), c)).collect(),
        Some((h0, h1)) if c0 == c1 => {
            any_host_port = Some(format!("{h0}-{h1}"));
            vec![(None, c0)]
        }
        Some(_) => return bad("maps ranges of different lengths".into()),
    };
    let mut found = Vec::new();
    for (h, c) in pairs {
        let mut one = String::new();
        if let Some(ip) = &ip {
            one.push_str(ip);
            one.push(':');
            one.push_str(&h.map_or_else(String::new, |h| h.to_string()));
            one.push(':');
        } else if let Some(h) = h {
            one.push_str(&format!("{h}:"));
        }
        one.push_str(&c.to_string());
        if let Some(p) = protocol {
            one.push('/');
            one.push_str(p);
        }
        match one.parse::<PortSpec>() {
            Ok(port) => found.push(port),
            Err(e) => return Err(Unsupported(format!("{e}; it is not published"))),
        }
    }
    Ok(Expanded { ports: found, any_host_port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> Result<Vec<String>, String> {
        short(text).map(|e| e.ports.iter().map(ToString::to_string).collect()).map_err(|u| u.0)
    }

    #[test]
    fn short_syntax() {
        assert_eq!(shown("80").unwrap(), ["80"]);
        assert_eq!(shown("8080:80").unwrap(), ["8080:80"]);
        assert_eq!(shown("127.0.0.1:8080:80/udp").unwrap(), ["127.0.0.1:8080:80/udp"]);
        assert_eq!(shown("127.0.0.1::80").unwrap(), ["127.0.0.1::80"]);
        assert_eq!(shown("[::1]:8080:80").unwrap(), ["[::1]:8080:80"]);
        assert_eq!(shown("3000-3002").unwrap(), ["3000", "3001", "3002"]);
        assert_eq!(shown("9090-9091:8080-8081").unwrap(), ["9090:8080", "9091:8081"]);
        let e = short("8000-8010:80").unwrap();
        assert_eq!(
            (e.ports[0].to_string(), e.any_host_port.as_deref()),
            ("80".to_string(), Some("8000-8010"))
        );
        assert!(shown("1-3:1-2").unwrap_err().contains("different lengths"));
        assert!(shown("80/sctp").unwrap_err().contains("SCTP"));
        assert!(shown("0").is_err());
        assert!(shown("70000").is_err());
        assert!(shown("x:80").is_err());
        assert!(shown("::1:80:80").is_err());
    }
}
