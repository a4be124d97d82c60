//! Command-line flags and the configuration the daemon runs with.
//!
//! Every flag is checked while parsing, so a bad value is a usage error (exit status 2)
//! that names the flag and what was expected, before anything is started.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use wire::{MinionId, PublicKey};

/// The master's port when `--master` names only a host (Salt's default too).
pub const DEFAULT_MASTER_PORT: u16 = 4506;

/// drover-minion: connects to a drover master over ZeroMQ (CURVE), reports its grains and
/// runs the jobs the master sends.
///
/// Without --master-key the minion trusts the first master key it sees (asking the master's
/// key port, the master port - 1), prints its fingerprint, pins it in DIR/pki/master.pub and
/// refuses any other key afterwards.
#[derive(Debug, Parser)]
#[command(name = "drover-minion", version, max_term_width = 100)]
pub struct Cli {
    /// This minion's id: 1 to 64 characters from [A-Za-z0-9._-]
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    pub id: MinionId,

    /// The master to connect to, as HOST:PORT (PORT defaults to 4506; IPv6 as [ADDR]:PORT)
    #[arg(long, value_name = "HOST:PORT", value_parser = MasterAddr::parse)]
    pub master: MasterAddr,

    /// Directory for keys (DIR/pki), spooled returns (DIR/returns) and custom grains
    /// (DIR/grains.yaml)
    #[arg(long, value_name = "DIR", env = "DROVER_MINION_DIR", default_value = "/var/lib/drover/minion")]
    pub dir: PathBuf,

    /// The master's public key (40 Z85 characters, as in the master's pki/master.pub);
    /// pins it instead of trusting the first key seen
    #[arg(long, value_name = "Z85PUBKEY", value_parser = parse_key)]
    pub master_key: Option<PublicKey>,

    /// A custom grain, KEY=VALUE; VALUE is read as YAML (rack=3 gives the number 3).
    /// Repeatable; overrides DIR/grains.yaml
    #[arg(long = "grain", value_name = "KEY=VALUE", value_parser = parse_grain)]
    pub grains: Vec<(String, Value)>,

    /// Seconds between heartbeats until the master says otherwise in its welcome
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub heartbeat: Duration,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// "minion=debug"
    #[arg(long, value_name = "LEVEL", default_value = "info", env = "DROVER_LOG")]
    pub log_level: String,
}

/// What [`crate::run`] needs; built from [`Cli`] (tests build it directly).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: MinionId,
    pub master: MasterAddr,
    pub dir: PathBuf,
    pub master_key: Option<PublicKey>,
    pub grains: Vec<(String, Value)>,
    pub heartbeat: Duration,
}

impl Cli {
    pub fn into_config(self) -> Config {
        Config {
            id: self.id,
            master: self.master,
            dir: self.dir,
            master_key: self.master_key,
            grains: self.grains,
            heartbeat: self.heartbeat,
        }
    }
}

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(id: MinionId, master: MasterAddr, dir: PathBuf) -> Self {
        Self { id, master, dir, master_key: None, grains: Vec::new(), heartbeat: Duration::from_secs(5) }
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    pub fn returns_dir(&self) -> PathBuf {
        self.dir.join("returns")
    }

    pub fn grains_file(&self) -> PathBuf {
        self.dir.join("grains.yaml")
    }

    /// Where the master's key is pinned.
    pub fn master_pub(&self) -> PathBuf {
        self.pki_dir().join("master.pub")
    }
}

/// The master's address as given: a host name (resolved again on every connection attempt)
/// and the port of its encrypted socket. Its key port is the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterAddr {
    pub host: String,
    pub port: u16,
}

impl MasterAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected HOST:PORT, e.g. master.example.com:4506 or [::1]:4506";
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            // [v6]:port or [v6]
            let (host, after) =
                rest.split_once(']').ok_or_else(|| format!("{s:?}: missing ']'; {expected}"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{s:?}: {expected}")),
                },
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return Err(format!("{s:?}: an IPv6 address needs brackets; {expected}"));
                }
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("{s:?}: no valid host name; {expected}"));
        }
        let port = match port {
            None => DEFAULT_MASTER_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 1 => p,
                _ => return Err(format!("{s:?}: port must be a number from 2 to 65535; {expected}")),
            },
        };
        Ok(Self { host: host.to_string(), port })
    }

    /// The unencrypted port where the master tells its public key.
    pub fn key_port(&self) -> u16 {
        self.port - 1
    }
}

impl fmt::Display for MasterAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_id(s: &str) -> Result<MinionId, String> {
    MinionId::new(s).map_err(|e| e.to_string())
}

fn parse_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::parse(s).map_err(|e| e.to_string())
}

/// `KEY=VALUE`, the value read as YAML (a string when it is not valid YAML).
pub fn parse_grain(s: &str) -> Result<(String, Value), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{s:?}: expected KEY=VALUE with a non-empty KEY"));
    }
    let value = match serde_yaml::from_str::<Value>(value) {
        Ok(v) => v,
        Err(_) => Value::String(value.to_string()),
    };
    Ok((key.to_string(), value))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>().ok().and_then(|f| Duration::try_from_secs_f64(f).ok()) {
        Some(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => Ok(d),
        _ => Err(format!("{s:?}: expected a number of seconds from 0.1 to 3600")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drover-minion").chain(args.iter().copied()))
    }

    #[test]
    fn good_flags_make_a_config() {
        let cli = parse(&[
            "--id",
            "web-1",
            "--master",
            "m.example:5000",
            "--dir",
            "/tmp/x",
            "--grain",
            "rack=3",
            "--grain",
            "tier=front",
            "--heartbeat",
            "2.5",
        ])
        .unwrap();
        let c = cli.into_config();
        assert_eq!(c.id.as_str(), "web-1");
        assert_eq!(c.master, MasterAddr { host: "m.example".into(), port: 5000 });
        assert_eq!(c.dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.grains, vec![("rack".into(), json!(3)), ("tier".into(), json!("front"))]);
        assert_eq!(c.heartbeat, Duration::from_millis(2500));
        assert_eq!(c.master_pub(), PathBuf::from("/tmp/x/pki/master.pub"));
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_what_was_expected() {
        let cases: &[(&[&str], &str)] = &[
            (&["--id", "a b", "--master", "m:2"], "expected 1 to 64 characters"),
            (&["--id", "a", "--master", "m:x"], "port must be a number"),
            (&["--id", "a", "--master", "m:1"], "port must be a number"),
            (&["--id", "a", "--master", "::1:4506"], "needs brackets"),
            (&["--id", "a", "--master", ":4506"], "no valid host name"),
            (&["--id", "a", "--master", "m:2", "--master-key", "short"], "not a CURVE key"),
            (&["--id", "a", "--master", "m:2", "--grain", "novalue"], "expected KEY=VALUE"),
            (&["--id", "a", "--master", "m:2", "--grain", "=3"], "non-empty KEY"),
            (&["--id", "a", "--master", "m:2", "--heartbeat", "0"], "number of seconds"),
            (&["--master", "m:2"], "--id"),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let text = err.to_string();
            assert!(text.contains(want), "{args:?}: {text}");
        }
    }

    #[test]
    fn master_addresses() {
        let cases = [
            ("master", "master", 4506),
            ("10.0.0.1:4506", "10.0.0.1", 4506),
            ("[::1]:7000", "::1", 7000),
            ("[fe80::1]", "fe80::1", 4506),
        ];
        for (input, host, port) in cases {
            let a = MasterAddr::parse(input).unwrap();
            assert_eq!((a.host.as_str(), a.port), (host, port), "{input}");
        }
        assert_eq!(MasterAddr::parse("[::1]:7000").unwrap().to_string(), "[::1]:7000");
        assert_eq!(MasterAddr::parse("m:7000").unwrap().key_port(), 6999);
    }

    #[test]
    fn grain_values_are_yaml() {
        assert_eq!(parse_grain("a=3").unwrap().1, json!(3));
        assert_eq!(parse_grain("a=[x, y]").unwrap().1, json!(["x", "y"]));
        assert_eq!(parse_grain("a=true").unwrap().1, json!(true));
        assert_eq!(parse_grain("a=").unwrap().1, json!(null));
        assert_eq!(parse_grain("a=x=y").unwrap().1, json!("x=y"));
        assert_eq!(parse_grain("a=[1").unwrap().1, json!("[1"));
    }
}
