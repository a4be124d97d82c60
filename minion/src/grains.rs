//! Grains: the facts this minion reports in its hello and answers `grains.*` with.
//!
//! Collected once at start: the built-in grains from the system, then the custom grains
//! of `DIR/grains.yaml`, then the `--grain KEY=VALUE` flags, each layer overriding the one
//! before (except `id`, which is always the minion's id).

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wire::MinionId;
use wire::msg::Grains;

#[derive(Debug, thiserror::Error)]
pub enum GrainsError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}{location}: expected a YAML map of grain names to values: {message}")]
    Parse { path: PathBuf, location: String, message: String },
}

/// Collects every grain: system facts, then `custom_file` (if it exists), then `flags`.
pub fn collect(id: &MinionId, custom_file: &Path, flags: &[(String, Value)]) -> Result<Grains, GrainsError> {
    let mut grains = system(id);
    let custom = read_custom(custom_file)?;
    for (key, value) in custom.into_iter().chain(flags.iter().cloned()) {
        if key == "id" {
            tracing::warn!(grain = %key, "ignoring a custom grain named 'id': the id grain is always the minion id");
            continue;
        }
        grains.insert(key, value);
    }
    Ok(grains)
}

/// The grains that come from the system itself.
pub fn system(id: &MinionId) -> Grains {
    let os_release = fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .map(|text| OsRelease::parse(&text))
        .unwrap_or_default();
    let hostname = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let kernelrelease =
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let num_cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_total = fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_total_mib(&t)).unwrap_or(0);

    let mut g = Grains::new();
    g.insert("id".into(), json!(id.as_str()));
    g.insert("hostname".into(), json!(hostname));
    g.insert("os".into(), json!(os_release.os()));
    g.insert("os_family".into(), json!(os_release.os_family()));
    g.insert("osrelease".into(), json!(os_release.version_id));
    g.insert("kernel".into(), json!("Linux"));
    g.insert("kernelrelease".into(), json!(kernelrelease));
    g.insert("num_cpus".into(), json!(num_cpus));
    g.insert("mem_total".into(), json!(mem_total));
    g.insert("ipv4".into(), json!(ipv4_addresses().iter().map(|a| a.to_string()).collect::<Vec<_>>()));
    g.insert("roles".into(), json!([]));
    let env = |name: &str| std::env::var(name).ok();
    g.extend(container(&env, Path::new("/.dockerenv").exists()));
    g
}

/// The grains a fleet container's environment gives (the master sets these variables when
/// it creates the container): `image` (`DROVER_IMAGE`, the image's name), `image_version`
/// (`DROVER_IMAGE_VERSION`), `container` (true with `DROVER_CONTAINER=1` or in Docker, where
/// `/.dockerenv` exists), and `fleet` and `slot` (`DROVER_FLEET`, `DROVER_SLOT`) when set.
/// `image` and `image_version` are null outside a fleet.
pub fn container(env: &dyn Fn(&str) -> Option<String>, dockerenv: bool) -> Grains {
    let var = |name: &str| env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let flagged = var("DROVER_CONTAINER").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    let mut g = Grains::new();
    g.insert("image".into(), json!(var("DROVER_IMAGE")));
    g.insert("image_version".into(), json!(var("DROVER_IMAGE_VERSION")));
    g.insert("container".into(), json!(dockerenv || flagged));
    for (grain, name) in [("fleet", "DROVER_FLEET"), ("slot", "DROVER_SLOT")] {
        if let Some(value) = var(name) {
            g.insert(grain.into(), json!(value));
        }
    }
    g
}

/// Reads `DIR/grains.yaml`: absent or empty means no custom grains.
fn read_custom(path: &Path) -> Result<Grains, GrainsError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Grains::new()),
        Err(source) => return Err(GrainsError::Read { path: path.into(), source }),
    };
    parse_custom(&text).map_err(|e| GrainsError::Parse {
        path: path.into(),
        location: e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default(),
        message: e.to_string(),
    })
}

fn parse_custom(text: &str) -> Result<Grains, serde_yaml::Error> {
    Ok(serde_yaml::from_str::<Option<Grains>>(text)?.unwrap_or_default())
}

/// The fields of os-release(5) that grains use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub name: Option<String>,
    pub id: Option<String>,
    pub id_like: Vec<String>,
    pub version_id: Option<String>,
}

impl OsRelease {
    /// Parses os-release(5): `KEY=value` lines, values optionally quoted with `"` or `'`.
    pub fn parse(text: &str) -> Self {
        let mut r = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((key, raw)) = line.split_once('=') else { continue };
            let value = unquote(raw.trim());
            match key.trim() {
                "NAME" => r.name = Some(value),
                "ID" => r.id = Some(value.to_ascii_lowercase()),
                "ID_LIKE" => r.id_like = value.split_whitespace().map(|s| s.to_ascii_lowercase()).collect(),
                "VERSION_ID" => r.version_id = Some(value),
                _ => {}
            }
        }
        r
    }

    /// The first word of NAME ("Debian GNU/Linux" → "Debian"), else the capitalised ID.
    pub fn os(&self) -> String {
        match self.name.as_deref().and_then(|n| n.split_whitespace().next()) {
            Some(word) => word.to_string(),
            None => self.id.as_deref().map(capitalise).unwrap_or_else(|| "Unknown".into()),
        }
    }

    /// Salt's family names: Debian for Debian and its derivatives, RedHat for the Red Hat
    /// family, else the capitalised ID.
    pub fn os_family(&self) -> String {
        let ids: Vec<&str> = self.id.iter().chain(&self.id_like).map(String::as_str).collect();
        if ids.iter().any(|i| matches!(*i, "debian" | "ubuntu")) {
            "Debian".into()
        } else if ids.iter().any(|i| matches!(*i, "rhel" | "fedora" | "centos")) {
            "RedHat".into()
        } else {
            self.id.as_deref().map(capitalise).unwrap_or_else(|| "Unknown".into())
        }
    }
}

fn unquote(raw: &str) -> String {
    let bytes = raw.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[bytes.len() - 1] == bytes[0] {
        let inner = &raw[1..raw.len() - 1];
        if bytes[0] == b'\'' {
            return inner.to_string();
        }
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    raw.to_string()
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `MemTotal` of /proc/meminfo, in MiB.
pub fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    Some(kib / 1024)
}

/// The IPv4 addresses of every interface except loopback, sorted (`network.ip_addrs`'s).
fn ipv4_addresses() -> Vec<Ipv4Addr> {
    crate::functions::network::Filter::default().apply(&crate::functions::network::host_addrs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_variants() {
        // (os-release text, os, os_family, osrelease)
        let cases = [
            (
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
                "Debian",
                "Debian",
                Some("12"),
            ),
            (
                "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n",
                "Ubuntu",
                "Debian",
                Some("24.04"),
            ),
            (
                "NAME='Linux Mint'\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=21.3\n",
                "Linux",
                "Debian",
                Some("21.3"),
            ),
            (
                "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
                "Rocky",
                "RedHat",
                Some("9.3"),
            ),
            ("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n", "Alpine", "Alpine", Some("3.19.1")),
            ("# comment\nID=arch\n", "Arch", "Arch", None),
            ("NAME=\"Quoted \\\"Name\\\"\"\nID=x\n", "Quoted", "X", None),
            ("", "Unknown", "Unknown", None),
            ("garbage without equals\n=\nNAME=\n", "Unknown", "Unknown", None),
        ];
        for (text, os, family, release) in cases {
            let r = OsRelease::parse(text);
            assert_eq!(r.os(), os, "{text:?}");
            assert_eq!(r.os_family(), family, "{text:?}");
            assert_eq!(r.version_id.as_deref(), release, "{text:?}");
        }
    }

    #[test]
    fn meminfo() {
        assert_eq!(mem_total_mib("MemTotal:        8048576 kB\nMemFree: 1 kB\n"), Some(7859));
        assert_eq!(mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_mib("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn layers_override_in_order_and_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grains.yaml");
        fs::write(&file, "rack: 1\nzone: eu\nid: other\nnested: {a: [1, 2]}\n").unwrap();
        let id = MinionId::new("m1").unwrap();
        let g = collect(&id, &file, &[("rack".into(), json!(3))]).unwrap();
        assert_eq!(g["id"], json!("m1"));
        assert_eq!(g["rack"], json!(3));
        assert_eq!(g["zone"], json!("eu"));
        assert_eq!(g["nested"], json!({"a": [1, 2]}));
        assert_eq!(g["kernel"], json!("Linux"));
        assert_eq!(g["roles"], json!([]));
        assert!(g["num_cpus"].as_u64().unwrap() >= 1);
        assert!(g["ipv4"].is_array());
        assert!(g["container"].is_boolean());
        for key in [
            "hostname",
            "os",
            "os_family",
            "osrelease",
            "kernelrelease",
            "mem_total",
            "image",
            "image_version",
        ] {
            assert!(g.contains_key(key), "{key}");
        }
    }

    /// (environment, /.dockerenv exists) → the container grains.
    #[test]
    fn a_fleet_containers_environment_gives_its_grains() {
        let fleet = [
            ("DROVER_IMAGE", "coins"),
            ("DROVER_IMAGE_VERSION", "1.2"),
            ("DROVER_CONTAINER", "1"),
            ("DROVER_FLEET", "coins"),
            ("DROVER_SLOT", "coins-worker-1"),
        ];
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: Vec<(Env, bool, Value)> = vec![
            (
                &fleet,
                false,
                json!({"image": "coins", "image_version": "1.2", "container": true, "fleet": "coins", "slot": "coins-worker-1"}),
            ),
            // a plain host
            (&[], false, json!({"image": null, "image_version": null, "container": false})),
            // any Docker container, not drover's
            (&[], true, json!({"image": null, "image_version": null, "container": true})),
            // empty values are unset; DROVER_CONTAINER other than 1/true/yes is not a container
            (
                &[("DROVER_IMAGE", ""), ("DROVER_CONTAINER", "0"), ("DROVER_SLOT", " ")],
                false,
                json!({"image": null, "image_version": null, "container": false}),
            ),
            (
                &[("DROVER_CONTAINER", "true")],
                false,
                json!({"image": null, "image_version": null, "container": true}),
            ),
        ];
        for (vars, dockerenv, want) in cases {
            let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
            let got = Value::Object(container(&env, dockerenv).into_iter().collect());
            assert_eq!(got, want, "{vars:?} {dockerenv}");
        }
    }

    #[test]
    fn custom_grains_files() {
        let dir = tempfile::tempdir().unwrap();
        let id = MinionId::new("m1").unwrap();
        // absent and empty files are fine
        assert!(collect(&id, &dir.path().join("none.yaml"), &[]).is_ok());
        let file = dir.path().join("grains.yaml");
        fs::write(&file, "").unwrap();
        assert!(collect(&id, &file, &[]).is_ok());
        // a list, or broken YAML, is an error naming the file and line
        fs::write(&file, "- a\n- b\n").unwrap();
        let err = collect(&id, &file, &[]).unwrap_err().to_string();
        assert!(err.contains("grains.yaml") && err.contains("expected a YAML map"), "{err}");
        fs::write(&file, "a: 1\nb: [\n").unwrap();
        let err = collect(&id, &file, &[]).unwrap_err().to_string();
        assert!(err.contains("grains.yaml:"), "{err}");
    }
}
