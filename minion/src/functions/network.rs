//! `network.ip_addrs`: the minion's IPv4 addresses, as Salt's.

use std::net::Ipv4Addr;

use serde_json::Value;

use super::{Call, Outcome, arity, boolean, known_kwargs, scalar_string};

/// One address of an interface.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Addr {
    pub interface: String,
    pub ip: Ipv4Addr,
}

/// Every IPv4 address of every interface, from getifaddrs(3).
pub(crate) fn host_addrs() -> Vec<Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter_map(|a| {
            let ip = a.address.and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip()))?;
            Some(Addr { interface: a.interface_name, ip })
        })
        .collect()
}

/// Which addresses to keep.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Filter {
    pub interface: Option<String>,
    pub include_loopback: bool,
    /// A network and its prefix length.
    pub cidr: Option<(Ipv4Addr, u8)>,
}

impl Filter {
    /// The addresses of `addrs` this filter keeps, sorted, each once.
    pub fn apply(&self, addrs: &[Addr]) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = addrs
            .iter()
            .filter(|a| self.interface.as_ref().is_none_or(|i| *i == a.interface))
            .filter(|a| self.include_loopback || !a.ip.is_loopback())
            .filter(|a| self.cidr.is_none_or(|(net, bits)| in_network(a.ip, net, bits)))
            .map(|a| a.ip)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn in_network(ip: Ipv4Addr, net: Ipv4Addr, bits: u8) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// `10.0.0.0/8` (a bare address is a /32).
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, bits) = s.split_once('/').unwrap_or((s, "32"));
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
    Some((ip.parse().ok()?, bits))
}

/// `network.ip_addrs [interface] [include_loopback=false] [cidr=NET/BITS]` → the sorted
/// IPv4 addresses of the minion's interfaces (or of one).
pub fn ip_addrs(call: &Call) -> Outcome {
    match filter(call) {
        Ok(filter) => Outcome::ok(Value::Array(
            filter.apply(&host_addrs()).iter().map(|ip| ip.to_string().into()).collect(),
        )),
        Err(o) => o,
    }
}

fn filter(call: &Call) -> Result<Filter, Outcome> {
    let usage = "network.ip_addrs [INTERFACE] [include_loopback=true] [cidr=NET/BITS]";
    arity(call, 0..=1, usage)?;
    known_kwargs(call, &["interface", "include_loopback", "cidr"], usage)?;
    let fail = |what: String| Outcome::fail(format!("network.ip_addrs: {what}; usage: {usage}"));
    let interface = match call.args.first().or(call.kwargs.get("interface")) {
        None => None,
        Some(v) => {
            Some(scalar_string(v).ok_or_else(|| fail(format!("expected an interface name, got {v}")))?)
        }
    };
    let include_loopback = match call.kwargs.get("include_loopback") {
        None => false,
        Some(v) => {
            boolean(v).ok_or_else(|| fail(format!("include_loopback= takes true or false, got {v}")))?
        }
    };
    let cidr = match call.kwargs.get("cidr") {
        None => None,
        Some(v) => Some(
            scalar_string(v)
                .and_then(|s| parse_cidr(&s))
                .ok_or_else(|| fail(format!("cidr= expects an IPv4 network such as 10.0.0.0/8, got {v}")))?,
        ),
    };
    Ok(Filter { interface, include_loopback, cidr })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call_of, run};
    use super::*;
    use serde_json::json;

    fn addr(interface: &str, ip: &str) -> Addr {
        Addr { interface: interface.into(), ip: ip.parse().unwrap() }
    }

    #[test]
    fn filters() {
        let addrs = [
            addr("lo", "127.0.0.1"),
            addr("eth0", "10.1.2.3"),
            addr("eth1", "192.168.0.9"),
            addr("eth0", "10.1.2.3"),
            addr("eth0", "172.17.0.2"),
        ];
        let ips = |f: Filter| f.apply(&addrs).iter().map(|ip| ip.to_string()).collect::<Vec<_>>();
        assert_eq!(ips(Filter::default()), ["10.1.2.3", "172.17.0.2", "192.168.0.9"]);
        let lo = Filter { include_loopback: true, ..Filter::default() };
        assert_eq!(ips(lo), ["10.1.2.3", "127.0.0.1", "172.17.0.2", "192.168.0.9"]);
        let eth0 = Filter { interface: Some("eth0".into()), ..Filter::default() };
        assert_eq!(ips(eth0), ["10.1.2.3", "172.17.0.2"]);
        let net = Filter { cidr: parse_cidr("10.0.0.0/8"), ..Filter::default() };
        assert_eq!(ips(net), ["10.1.2.3"]);
        assert_eq!(parse_cidr("10.1.2.3"), Some(("10.1.2.3".parse().unwrap(), 32)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
    }

    #[tokio::test]
    async fn arguments_and_the_host() {
        let f = filter(&call_of("network.ip_addrs", vec![json!("eth0")], &[("cidr", json!("10.0.0.0/8"))]));
        assert_eq!(
            f.unwrap(),
            Filter { interface: Some("eth0".into()), cidr: parse_cidr("10.0.0.0/8"), ..Filter::default() }
        );
        let bad = run("network.ip_addrs", vec![], &[("cidr", json!("nope"))]).await;
        assert!(bad.ret.as_str().unwrap().contains("cidr= expects an IPv4 network"), "{}", bad.ret);
        // this host's loopback: only when asked
        let all = run("network.ip_addrs", vec![], &[("include_loopback", json!(true))]).await.ret;
        assert!(all.as_array().unwrap().contains(&json!("127.0.0.1")), "{all}");
        let some = run("network.ip_addrs", vec![], &[]).await.ret;
        assert!(!some.as_array().unwrap().contains(&json!("127.0.0.1")), "{some}");
    }
}
