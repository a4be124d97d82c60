//! The grammars of `fleet.yaml`'s scalars: names, tags, ports, sizes, batches. (Durations
//! are read as in state files, by `args::duration_ms`.)
//! Each takes the text as written and returns the value, or what was expected (the caller
//! adds the file, the position and the key).

use std::net::IpAddr;
use std::time::Duration;

use super::{BatchSize, PortSpec, Protocol};

/// The longest fleet name: it prefixes every container, network and volume name.
pub const MAX_FLEET_NAME: usize = 31;

/// `[a-z0-9][a-z0-9-]{0,30}`.
pub fn fleet_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_FLEET_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be a fleet name: expected 1 to {MAX_FLEET_NAME} lowercase letters, digits \
             and `-`, starting with a letter or digit (it prefixes container, network and volume names)"
        ))
    }
}

/// An image of `images/<name>`, tagged `<name>:<version>`: one component of a Docker
/// repository name (lowercase letters and digits, separated by `.`, `_`, `__` or dashes).
pub fn image_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut ok = !name.is_empty() && name.len() <= 128 && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
    let mut i = 0;
    while ok && i < bytes.len() {
        let run = bytes[i..].iter().take_while(|&&b| !alnum(b)).count();
        if run > 0 {
            let sep = &name[i..i + run];
            ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
            i += run;
        } else {
            i += 1;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be an image name: expected lowercase letters and digits, separated by \
             `.`, `_`, `__` or `-`, such as `coins` (the image of images/coins)"
        ))
    }
}

/// A Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn tag(version: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = version.len() <= 128
        && version.bytes().next().is_some_and(word)
        && version.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{version}` cannot be a version: expected an image tag of at most 128 letters, digits, \
             `_`, `.` and `-`, not starting with `.` or `-`, such as \"1.0\""
        ))
    }
}

/// A Docker network name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters.
pub fn network_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be a network name: expected at most 64 letters, digits, `_`, `.` and \
             `-`, starting with a letter or digit"
        ))
    }
}

/// A DNS name: labels of letters, digits and inner `-`, joined by dots.
pub fn dns_name(name: &str) -> Result<(), String> {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot be a DNS name: expected labels of letters, digits and inner `-`, \
             joined by dots, such as `cache` or `db.internal`"
        ))
    }
}

/// An absolute path in the container, written plainly (no `.`, `..`, `//` or final `/`).
pub fn volume_path(path: &str) -> Result<(), String> {
    let expected = "expected an absolute path in the container, such as /var/lib/redis (each slot \
                    gets its own named volume there; host paths are not mounted)";
    if path.contains(':') {
        return Err(format!("`{path}` holds a `:`; {expected}"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("`{path}` is not absolute; {expected}"));
    };
    if rest.is_empty() || rest.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("`{path}` is not a plain path below /; {expected}"));
    }
    if path.contains(char::is_control) {
        return Err(format!("`{}` holds a control character; {expected}", path.escape_debug()));
    }
    Ok(())
}

/// Compose's short syntax: `[[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]`; an IPv6
/// host address is written in brackets (`[::1]:8080:80`).
pub fn port(text: &str) -> Result<PortSpec, String> {
    let expected = "expected \"80\", \"8080:80\", \"127.0.0.1:8080:80\" or \"127.0.0.1::80\", \
                    optionally ending in /tcp or /udp";
    let bad = |why: &str| Err(format!("`{text}` {why}; {expected}"));
    let (addr, protocol) = match text.rsplit_once('/') {
        Some((addr, "tcp")) => (addr, Protocol::Tcp),
        Some((addr, "udp")) => (addr, Protocol::Udp),
        Some((_, other)) => return bad(&format!("has protocol `{other}`")),
        None => (text, Protocol::Tcp),
    };
    let (host_ip, ports) = if let Some(v6) = addr.strip_prefix('[') {
        let Some((ip, rest)) = v6.split_once("]:") else {
            return bad("has `[` without `]:` after the address");
        };
        let Ok(ip) = ip.parse::<IpAddr>() else { return bad(&format!("has `{ip}`, not an IP address")) };
        (Some(ip), rest)
    } else {
        match addr.matches(':').count() {
            0 | 1 => (None, addr),
            2 => {
                let (ip, rest) = addr.split_once(':').expect("two colons");
                let Ok(ip) = ip.parse::<IpAddr>() else {
                    return bad(&format!("has `{ip}`, not an IP address"));
                };
                (Some(ip), rest)
            }
            _ => return bad("has too many `:` (write an IPv6 address in brackets)"),
        }
    };
    let number = |p: &str, what: &str| -> Result<u16, String> {
        if p.contains('-') {
            return Err(format!(
                "`{text}` has the range `{p}`; ranges are not supported, publish each port; {expected}"
            ));
        }
        match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('+') => Ok(n),
            _ => Err(format!("`{text}` has {what} `{p}`; expected a port from 1 to 65535")),
        }
    };
    let (host_port, container) = match ports.split_once(':') {
        Some(("", container)) if host_ip.is_some() => (None, container),
        Some((host, container)) => (Some(number(host, "host port")?), container),
        None if host_ip.is_some() => return bad("has a host address but no container port"),
        None => (None, ports),
    };
    Ok(PortSpec { host_ip, host_port, container_port: number(container, "container port")?, protocol })
}

/// A size as `memory` reads it: `256M`, `1G`, `512k`, or bytes when no unit divides it.
pub fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("k", 10)] {
        if bytes > 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Docker's minimum memory limit.
pub const MIN_MEMORY: u64 = 6 << 20;

/// Bytes: `268435456`, `512k`, `256M`, `1.5G` (units of 1024, in any case, optionally
/// followed by `b`, `ib` or `iB`).
pub fn memory(text: &str) -> Result<u64, String> {
    let expected = "expected a size such as 256M, 1G, 512k or 1.5G (or a number of bytes)";
    let bad = || format!("`{text}` is not a size; {expected}");
    let digits = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(bad());
    }
    let too_large = || format!("`{text}` is too large; {expected}");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(1 << shift).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        // fraction × unit, rounded down to a byte; only the first 12 digits count
        let kept = &fraction[..fraction.len().min(12)];
        let part =
            (u128::from(kept.parse::<u64>().map_err(|_| bad())?) << shift) / 10u128.pow(kept.len() as u32);
        bytes = bytes.checked_add(part as u64).ok_or_else(too_large)?;
    }
    if bytes < MIN_MEMORY {
        return Err(format!("`{text}` is below 6M, the least memory Docker gives a container"));
    }
    Ok(bytes)
}

/// A duration's spelling in its largest exact unit, as `args::duration_ms` reads it back:
/// `3s`, `500ms`, `2m`, `90s` (whole milliseconds; less is dropped).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    match [("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        .into_iter()
        .find(|(_, scale)| ms.is_multiple_of(*scale))
    {
        Some((unit, scale)) => format!("{}{unit}", ms / scale),
        None => format!("{ms}ms"),
    }
}

/// `2` (slots at once) or `25%` (of the replicas).
pub fn batch(text: &str) -> Result<BatchSize, String> {
    let expected = "expected a number of slots such as 2, or a share of the replicas such as \"25%\"";
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) && !percent.starts_with('+') => Ok(BatchSize::Percent(p)),
            _ => Err(format!("`{text}` is not a share from 1% to 100%; {expected}")),
        };
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 && !text.starts_with('+') => Ok(BatchSize::Count(n)),
        _ => Err(format!("`{text}` is not a batch; {expected}")),
    }
}

/// A registry's `host:port`, as an engine names it in an image reference: a DNS name or an
/// IPv4 address, then a port; no scheme, no path.
pub fn registry_address(address: &str) -> Result<(), String> {
    let wrong = |why: &str| {
        Err(format!(
            "`{address}` cannot be a registry's address: {why}; expected HOST:PORT, such as `127.0.0.1:5000`"
        ))
    };
    if address.contains("://") {
        return wrong("an engine names a registry without a scheme");
    }
    let Some((host, port)) = address.rsplit_once(':') else { return wrong("no port") };
    if host.is_empty() || dns_name(host).is_err() && host.parse::<std::net::Ipv4Addr>().is_err() {
        return wrong("the host is neither a DNS name nor an IPv4 address");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('0') => Ok(()),
        _ => wrong("the port is not a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        for good in ["coins", "a", "0", "a-b-1", &"a".repeat(31)] {
            assert!(fleet_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "Coins", "a_b", "a.b", &"a".repeat(32)] {
            assert!(fleet_name(bad).is_err(), "{bad}");
        }
        for good in ["coins", "my.app", "my_app", "my__app", "my--app", "a1"] {
            assert!(image_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Coins", "a/b", "a:1", "-a", "a-", "a._b", "a___b", "a b"] {
            assert!(image_name(bad).is_err(), "{bad}");
        }
        for good in ["1.0", "latest", "_x", "1.10-rc.1", &"v".repeat(128)] {
            assert!(tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".1", "-1", "1+2", "1 0", &"v".repeat(129)] {
            assert!(tag(bad).is_err(), "{bad}");
        }
        assert!(dns_name("cache").is_ok() && dns_name("db.internal").is_ok() && dns_name("a-1").is_ok());
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b"] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
        assert!(volume_path("/var/lib/redis").is_ok());
        for bad in ["", "/", "data", "./data:/data", "/a/../b", "/a//b", "/a/", "/a/./b", "/a\n"] {
            assert!(volume_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_in_compose_short_syntax() {
        let p = |text: &str| {
            port(text).map(|p| (p.host_ip.map(|i| i.to_string()), p.host_port, p.container_port, p.protocol))
        };
        assert_eq!(p("80"), Ok((None, None, 80, Protocol::Tcp)));
        assert_eq!(p("8080:80"), Ok((None, Some(8080), 80, Protocol::Tcp)));
        assert_eq!(p("127.0.0.1:8000:80/udp"), Ok((Some("127.0.0.1".into()), Some(8000), 80, Protocol::Udp)));
        assert_eq!(p("127.0.0.1::80"), Ok((Some("127.0.0.1".into()), None, 80, Protocol::Tcp)));
        assert_eq!(p("[::1]:8080:53/udp"), Ok((Some("::1".into()), Some(8080), 53, Protocol::Udp)));
        assert_eq!(p("[::1]::53"), Ok((Some("::1".into()), None, 53, Protocol::Tcp)));
        for bad in [
            "",
            "0",
            "65536",
            "80/sctp",
            "8000-8010:80",
            "x:80",
            "1.2.3:80:80",
            "::1:80:80",
            "[::1]80",
            ":80",
            "80:",
            "+80",
            "1.2.3.4:80",
            "a:b:c:d",
            "80/",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
        for text in
            ["80", "8080:80", "127.0.0.1:8000:80/udp", "127.0.0.1::80", "[::1]:8080:53", "[::1]::53/udp"]
        {
            assert_eq!(port(text).unwrap().to_string(), text, "Display writes the short syntax back");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("256M"), Ok(256 << 20));
        assert_eq!(memory("256m"), Ok(256 << 20));
        assert_eq!(memory("1G"), Ok(1 << 30));
        assert_eq!(memory("1.5G"), Ok(3 << 29));
        assert_eq!(memory("1.5gib"), Ok(3 << 29));
        assert_eq!(memory("8192k"), Ok(8 << 20));
        assert_eq!(memory("268435456"), Ok(256 << 20));
        assert_eq!(memory("0.01G"), Ok(10_737_418));
        assert!(memory("512k").unwrap_err().contains("below 6M"));
        for bad in [
            "",
            "M",
            "1.G",
            ".5G",
            "1..5G",
            "1.5.0G",
            "256 M",
            "256X",
            "-1G",
            "99999999999999999999",
            "99999999999T",
        ] {
            assert!(memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_print_as_they_are_read() {
        for text in ["3s", "500ms", "2m", "90s", "1h", "0s", "1500ms"] {
            let ms = crate::args::duration_ms(&serde_yaml::Value::String(text.into())).unwrap();
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
    }

    #[test]
    fn batches() {
        assert_eq!(batch("2"), Ok(BatchSize::Count(2)));
        assert_eq!(batch("25%"), Ok(BatchSize::Percent(25)));
        for bad in ["0", "0%", "101%", "-1", "x", "%", "2.5", "+2"] {
            assert!(batch(bad).is_err(), "{bad}");
        }
    }
}
