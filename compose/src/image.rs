//! Images: the configuration an image gives its containers (what `docker image inspect`
//! shows as `.Config`), and image references (`registry:5000/team/app:1.2`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The parts of an image's configuration that become the daemon's: entrypoint, command,
/// user, working directory, environment, stop signal, health check, volumes. Deserializes
/// from `docker image inspect --format '{{json .Config}}'`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `""` is root.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// `NAME=value` each.
    pub env: Option<Vec<String>>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<HealthConfig>,
    /// Paths of the image's `VOLUME`s (the values are empty objects).
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

/// An image's `HEALTHCHECK`, as the engine keeps it: durations in nanoseconds, 0 for the
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `["CMD", argv...]`, `["CMD-SHELL", line]` or `["NONE"]`; empty: inherited.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub retries: u32,
}

impl ImageConfig {
    /// The environment as pairs, in order.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }
}

/// An image reference, taken apart: `registry:5000/team/app:1.2@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The last part of the repository: `app`.
    pub(crate) name: String,
    pub(crate) tag: Option<String>,
}

impl Reference {
    pub(crate) fn parse(reference: &str) -> Reference {
        let without_digest = reference.split('@').next().unwrap_or_default();
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        let (repo_part, tag) = match without_digest[last_slash..].split_once(':') {
            Some((name, tag)) => (name, Some(tag.to_string())),
            None => (&without_digest[last_slash..], None),
        };
        Reference { name: repo_part.to_ascii_lowercase(), tag }
    }

    /// Why the image cannot run drover-minion (it needs glibc), when its name says so
    /// (Alpine and what is built on it use musl), and what to use instead.
    pub(crate) fn musl(&self) -> Option<(String, &'static str)> {
        let tag = self.tag.as_deref().unwrap_or("latest").to_ascii_lowercase();
        if self.name == "alpine" {
            Some(("Alpine Linux uses the musl C library".into(), "use debian or ubuntu instead"))
        } else if tag.contains("alpine") {
            Some((
                format!("the tag `{tag}` is built on Alpine Linux, which uses the musl C library"),
                "use its tag without -alpine (built on Debian), or another Debian or Ubuntu build",
            ))
        } else if self.name == "busybox" && !tag.contains("glibc") {
            Some((
                "busybox images are built with musl or uClibc unless tagged glibc".into(),
                "use busybox:glibc",
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("localhost:5000/team/App:1.2@sha256:abc");
        assert_eq!((r.name.as_str(), r.tag.as_deref()), ("app", Some("1.2")));
        let r = Reference::parse("redis");
        assert_eq!((r.name.as_str(), r.tag.as_deref()), ("redis", None));
        assert!(Reference::parse("redis:7-alpine").musl().is_some());
        assert!(Reference::parse("alpine").musl().is_some());
        assert!(Reference::parse("busybox:1.36").musl().is_some());
        assert!(Reference::parse("busybox:glibc").musl().is_none());
        assert!(Reference::parse("redis:7.2-bookworm").musl().is_none());
        assert!(Reference::parse("alpine-ish.example:5000/x:1").musl().is_none());
    }

    #[test]
    fn reads_docker_inspect() {
        let json = r#"{"Hostname":"","User":"","Env":["PATH=/usr/bin","A=b=c"],"Cmd":["redis-server"],
            "Healthcheck":{"Test":["CMD-SHELL","redis-cli ping"],"Interval":5000000000},
            "Volumes":{"/data":{}},"WorkingDir":"/data","Entrypoint":["docker-entrypoint.sh"],
            "OnBuild":null,"Labels":null,"StopSignal":"SIGTERM"}"#;
        let config: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.entrypoint.as_deref(), Some(&["docker-entrypoint.sh".to_string()][..]));
        assert_eq!(config.env_pairs()[1], ("A".to_string(), "b=c".to_string()));
        assert_eq!(config.healthcheck.unwrap().interval, 5_000_000_000);
        assert!(config.volumes.unwrap().contains_key("/data"));
    }
}
