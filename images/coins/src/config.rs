//! The worker's and the webui's config files: TOML, as the states render them
//! (`states/coins/worker.toml`, `states/coins/webui.toml`). A list of peers may be empty: a
//! fresh cloud renders the files before any peer exists, and the services wait for them.
//! A key this release does not know is kept and warned about, not refused, so that states
//! written for a newer release can run beside an older one during a rollout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The worker's pause between two hashes when the config names none.
pub const DEFAULT_PAUSE_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// `coins worker --config FILE`
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkerConfig {
    /// Where `/health` is served.
    pub listen: SocketAddr,
    /// redis, `host:port` each; the worker uses the first that answers.
    #[serde(default)]
    pub redis: Vec<String>,
    /// rng, `http://host:port` each (the lb's, in the demo cloud).
    #[serde(default)]
    pub rng: Vec<String>,
    /// hasher, `http://host:port` each.
    #[serde(default)]
    pub hasher: Vec<String>,
    /// Milliseconds between two hashes.
    #[serde(default = "default_pause")]
    pub pause_ms: u64,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

fn default_pause() -> u64 {
    DEFAULT_PAUSE_MS
}

/// `coins webui --config FILE`
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebuiConfig {
    /// Where the page, `/json` and `/health` are served.
    pub listen: SocketAddr,
    /// redis, `host:port` each.
    #[serde(default)]
    pub redis: Vec<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

impl WorkerConfig {
    pub fn load(path: &Path) -> Result<WorkerConfig, ConfigError> {
        WorkerConfig::parse(&read(path)?, &path.display().to_string())
    }

    /// `file` names the text in errors.
    pub fn parse(text: &str, file: &str) -> Result<WorkerConfig, ConfigError> {
        let config: WorkerConfig = from_toml(text, file)?;
        check_addresses(&config.redis, "redis", file)?;
        check_urls(&config.rng, "rng", file)?;
        check_urls(&config.hasher, "hasher", file)?;
        Ok(config)
    }

    /// What to warn about: keys this release does not know.
    pub fn warnings(&self) -> Vec<String> {
        unknown_keys(&self.unknown)
    }

    /// A config for tests and tools: these peers, the default pause.
    pub fn new(
        listen: SocketAddr,
        redis: Vec<String>,
        rng: Vec<String>,
        hasher: Vec<String>,
    ) -> WorkerConfig {
        WorkerConfig { listen, redis, rng, hasher, pause_ms: DEFAULT_PAUSE_MS, unknown: BTreeMap::new() }
    }
}

impl WebuiConfig {
    pub fn load(path: &Path) -> Result<WebuiConfig, ConfigError> {
        WebuiConfig::parse(&read(path)?, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<WebuiConfig, ConfigError> {
        let config: WebuiConfig = from_toml(text, file)?;
        check_addresses(&config.redis, "redis", file)?;
        Ok(config)
    }

    pub fn warnings(&self) -> Vec<String> {
        unknown_keys(&self.unknown)
    }

    pub fn new(listen: SocketAddr, redis: Vec<String>) -> WebuiConfig {
        WebuiConfig { listen, redis, unknown: BTreeMap::new() }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        message: format!("cannot read it: {e}"),
    })
}

fn from_toml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        });
        ConfigError { file: format!("{file}{}", at.unwrap_or_default()), message: e.message().to_string() }
    })
}

fn unknown_keys(unknown: &BTreeMap<String, toml::Value>) -> Vec<String> {
    unknown.keys().map(|k| format!("unknown key `{k}` ignored")).collect()
}

/// Each `host:port`.
fn check_addresses(addrs: &[String], key: &str, file: &str) -> Result<(), ConfigError> {
    for addr in addrs {
        let ok =
            addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            let message = format!("{key}: expected host:port, got {addr:?}");
            return Err(ConfigError { file: file.to_string(), message });
        }
    }
    Ok(())
}

/// Each `http://host[:port]`, without a path.
fn check_urls(urls: &[String], key: &str, file: &str) -> Result<(), ConfigError> {
    for url in urls {
        let ok = url.parse::<hyper::Uri>().is_ok_and(|uri| {
            uri.scheme_str() == Some("http")
                && uri.authority().is_some_and(|a| !a.host().is_empty())
                && matches!(uri.path(), "" | "/")
                && uri.query().is_none()
        });
        if !ok {
            let message = format!("{key}: expected http://host:port, got {url:?}");
            return Err(ConfigError { file: file.to_string(), message });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: &str = r#"# managed by drover on coins-worker-1: the worker finds its peers here; a change restarts it
listen = "127.0.0.1:8003"
redis = []
rng = []
hasher = []
"#;

    const FULL: &str = r#"# managed by drover on coins-worker-1
listen = "127.0.0.1:8003"
redis = ["10.0.0.2:6379", ]
rng = ["http://10.0.0.9:8001", "http://10.0.0.10:8001", ]
hasher = ["http://10.0.0.9:8002", ]
pause_ms = 20
"#;

    #[test]
    fn a_fresh_cloud_has_no_peers_yet() {
        let c = WorkerConfig::parse(FRESH, "worker.toml").unwrap();
        assert_eq!(c, WorkerConfig::new("127.0.0.1:8003".parse().unwrap(), vec![], vec![], vec![]));
        assert!(c.warnings().is_empty());
        // and lists left out are empty too
        let c = WorkerConfig::parse("listen = \"0.0.0.0:1\"\n", "worker.toml").unwrap();
        assert!(c.redis.is_empty() && c.rng.is_empty() && c.hasher.is_empty());
    }

    #[test]
    fn a_full_cloud_lists_its_peers_with_trailing_commas() {
        let c = WorkerConfig::parse(FULL, "worker.toml").unwrap();
        assert_eq!(c.redis, ["10.0.0.2:6379"]);
        assert_eq!(c.rng, ["http://10.0.0.9:8001", "http://10.0.0.10:8001"]);
        assert_eq!(c.hasher, ["http://10.0.0.9:8002"]);
        assert_eq!(c.pause_ms, 20);
        let w =
            WebuiConfig::parse("listen = \"0.0.0.0:8080\"\nredis = [\"db:6379\", ]\n", "webui.toml").unwrap();
        assert_eq!(w, WebuiConfig::new("0.0.0.0:8080".parse().unwrap(), vec!["db:6379".into()]));
    }

    #[test]
    fn unknown_keys_are_warned_about_not_refused() {
        let c = WorkerConfig::parse(&format!("{FRESH}colour = \"blue\"\n"), "worker.toml").unwrap();
        assert_eq!(c.warnings(), ["unknown key `colour` ignored"]);
    }

    #[test]
    fn mistakes_name_the_file_the_line_and_what_was_expected() {
        let cases = [
            ("redis = []\n", "worker.toml:1:1: missing field `listen`"),
            ("listen = \"localhost\"\n", "worker.toml:1:10: invalid socket address syntax"),
            (
                "listen = \"127.0.0.1:1\"\nrng = \"http://a:1\"\n",
                "worker.toml:2:7: invalid type: string \"http://a:1\", expected a sequence",
            ),
            (
                "listen = \"127.0.0.1:1\"\nredis = [\"db\"]\n",
                "worker.toml: redis: expected host:port, got \"db\"",
            ),
            (
                "listen = \"127.0.0.1:1\"\nrng = [\"10.0.0.1:8001\"]\n",
                "worker.toml: rng: expected http://host:port, got \"10.0.0.1:8001\"",
            ),
            (
                "listen = \"127.0.0.1:1\"\nhasher = [\"http://h:1/x\"]\n",
                "worker.toml: hasher: expected http://host:port, got \"http://h:1/x\"",
            ),
            (
                "listen = \"127.0.0.1:1\"\nrng = [\"https://r:1\"]\n",
                "worker.toml: rng: expected http://host:port, got \"https://r:1\"",
            ),
            ("listen = [\n", "worker.toml:2:1: invalid array\nexpected `]`"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(text, want)| {
                let got = WorkerConfig::parse(text, "worker.toml").unwrap_err().to_string();
                (got.trim() != *want).then(|| format!("{text:?}:\n  got  {got:?}\n  want {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = WebuiConfig::load(Path::new("/nonexistent/webui.toml")).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/webui.toml: cannot read it: "), "{err}");
    }
}
