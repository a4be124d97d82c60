//! Command-line flags and the configuration the daemon runs with.
//!
//! Every flag is checked while parsing, so a bad value is a usage error (exit status 2)
//! that names the flag and what was expected, before anything is started.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use wire::{MinionId, PublicKey};

/// The master's port when `--master` names only a host (Salt's default too).
pub const DEFAULT_MASTER_PORT: u16 = 4506;

/// drover-minion: connects to a drover master over ZeroMQ (CURVE), reports its grains and
/// runs the jobs the master sends.
///
/// Every flag can also come from the environment variable named with it (a fleet container
/// is configured that way and has no command line); a flag given wins over its variable.
///
/// Without --master-key the minion trusts the first master key it sees (asking the master's
/// key port, the master port - 1), prints its fingerprint, pins it in DIR/pki/master.pub and
/// refuses any other key afterwards.
#[derive(Debug, Parser)]
#[command(name = "drover-minion", version, max_term_width = 100, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// This minion's id: 1 to 64 characters from [A-Za-z0-9._-]
    #[arg(long, value_name = "ID", env = "DROVER_MINION_ID", required = true, value_parser = parse_id)]
    pub id: Option<MinionId>,

    /// The master to connect to, as HOST:PORT (PORT defaults to 4506; IPv6 as [ADDR]:PORT)
    #[arg(long, value_name = "HOST:PORT", env = "DROVER_MASTER", required = true, value_parser = MasterAddr::parse)]
    pub master: Option<MasterAddr>,

    /// Directory for keys (DIR/pki), spooled returns (DIR/returns), custom grains
    /// (DIR/grains.yaml) and the health socket (DIR/health.sock)
    #[arg(
        long,
        value_name = "DIR",
        env = "DROVER_MINION_DIR",
        default_value = "/var/lib/drover/minion",
        global = true
    )]
    pub dir: PathBuf,

    /// The master's public key (40 Z85 characters, as in the master's pki/master.pub);
    /// pins it instead of trusting the first key seen
    #[arg(long, value_name = "Z85PUBKEY", env = "DROVER_MASTER_KEY", value_parser = parse_key)]
    pub master_key: Option<PublicKey>,

    /// Which container of this minion's fleet slot this is: of two minions with the same id
    /// and key, the master gives the session to the higher generation, and the other waits
    /// (its daemons running) until that one is gone
    #[arg(long, value_name = "N", env = "DROVER_GENERATION", default_value = "0")]
    pub generation: u64,

    /// A custom grain, KEY=VALUE; VALUE is read as YAML (rack=3 gives the number 3).
    /// Repeatable; overrides --grains and DIR/grains.yaml
    #[arg(long = "grain", value_name = "KEY=VALUE", value_parser = parse_grain)]
    pub grains: Vec<(String, Value)>,

    /// Custom grains as one YAML map, e.g. '{rack: 3, zone: eu}'; overrides DIR/grains.yaml
    #[arg(long = "grains", value_name = "YAML", env = "DROVER_GRAINS", value_parser = parse_grain_map)]
    pub grain_map: Option<GrainMap>,

    /// Seconds between heartbeats until the master says otherwise in its welcome
    #[arg(long, value_name = "SECS", env = "DROVER_HEARTBEAT", default_value = "5", value_parser = parse_secs)]
    pub heartbeat: Duration,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// "minion=debug"
    #[arg(long, value_name = "LEVEL", default_value = "info", env = "DROVER_LOG")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Asks the minion running on DIR whether it is connected to its master, converged
    /// (its last apply of its current assignment succeeded) and its daemons healthy (all
    /// running and passing their checks); prints its answer as one JSON line. Exits 0 when
    /// all three hold, 1 when not, 2 when no minion answers within 2 s. Made for Docker's
    /// HEALTHCHECK: it needs only DIR (--dir or DROVER_MINION_DIR)
    Health,
    /// Applies states with no master, as `salt-call --local` does: reads roles/ and states/
    /// from a working tree (committed or not), works out this host's roles from
    /// roles/top.yaml, renders with its grains and applies once (test=true: changes
    /// nothing), then exits. Daemons are not started: they would end with it
    Local(crate::local::LocalArgs),
}

/// Grains given as one YAML map (`--grains`), sorted by name.
#[derive(Clone, Debug, PartialEq)]
pub struct GrainMap(pub Vec<(String, Value)>);

/// What [`crate::run`] needs; built from [`Cli`] (tests build it directly).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: MinionId,
    pub master: MasterAddr,
    pub dir: PathBuf,
    pub master_key: Option<PublicKey>,
    /// Custom grains from the command line: `--grains`, then `--grain` (later wins).
    pub grains: Vec<(String, Value)>,
    pub heartbeat: Duration,
    pub generation: u64,
}

impl Cli {
    /// The daemon's configuration. Only without a subcommand: clap then requires `--id` and
    /// `--master` (or their variables).
    pub fn into_config(self) -> Config {
        let (Some(id), Some(master)) = (self.id, self.master) else {
            panic!("clap requires --id and --master when no subcommand is given");
        };
        let mut grains = self.grain_map.map(|m| m.0).unwrap_or_default();
        grains.extend(self.grains);
        Config {
            id,
            master,
            dir: self.dir,
            master_key: self.master_key,
            grains,
            heartbeat: self.heartbeat,
            generation: self.generation,
        }
    }
}

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(id: MinionId, master: MasterAddr, dir: PathBuf) -> Self {
        Self {
            id,
            master,
            dir,
            master_key: None,
            grains: Vec::new(),
            heartbeat: Duration::from_secs(5),
            generation: 0,
        }
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

    /// Where the running minion answers `drover-minion health`.
    pub fn health_socket(&self) -> PathBuf {
        crate::health::socket_path(&self.dir)
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

/// A YAML map of grain names to values, as `--grains` / `DROVER_GRAINS` give it.
fn parse_grain_map(s: &str) -> Result<GrainMap, String> {
    match serde_yaml::from_str::<Option<serde_json::Map<String, Value>>>(s) {
        Ok(map) => Ok(GrainMap(map.unwrap_or_default().into_iter().collect())),
        Err(e) => {
            Err(format!("{s:?}: expected a YAML map of grain names to values, e.g. '{{rack: 3}}': {e}"))
        }
    }
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
        assert_eq!(c.health_socket(), PathBuf::from("/tmp/x/health.sock"));
        assert_eq!(c.generation, 0);
    }

    #[test]
    fn generations_and_grain_maps() {
        let cli = parse(&[
            "--id",
            "coins-worker-1",
            "--master",
            "m",
            "--generation",
            "1700000000123",
            "--grains",
            "{rack: 3, zone: eu}",
            "--grain",
            "rack=4",
        ])
        .unwrap();
        let c = cli.into_config();
        assert_eq!(c.generation, 1_700_000_000_123);
        // the map first, then each --grain: later entries win when grains are collected
        assert_eq!(
            c.grains,
            vec![("rack".into(), json!(3)), ("zone".into(), json!("eu")), ("rack".into(), json!(4))]
        );
    }

    /// Every flag of the daemon can come from the environment (a fleet container has no
    /// command line), except the repeatable --grain, whose variable is DROVER_GRAINS (--grains).
    #[test]
    fn every_flag_has_its_environment_variable() {
        use clap::CommandFactory;
        let want = [
            ("id", "DROVER_MINION_ID"),
            ("master", "DROVER_MASTER"),
            ("dir", "DROVER_MINION_DIR"),
            ("master_key", "DROVER_MASTER_KEY"),
            ("generation", "DROVER_GENERATION"),
            ("grain_map", "DROVER_GRAINS"),
            ("heartbeat", "DROVER_HEARTBEAT"),
            ("log_level", "DROVER_LOG"),
        ];
        let cmd = Cli::command();
        let mut seen: Vec<(String, Option<String>)> = cmd
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "grains"))
            .map(|a| (a.get_id().to_string(), a.get_env().map(|e| e.to_string_lossy().into_owned())))
            .collect();
        seen.sort();
        let mut want: Vec<(String, Option<String>)> =
            want.iter().map(|(a, e)| (a.to_string(), Some(e.to_string()))).collect();
        want.sort();
        assert_eq!(seen, want);
        // and --help names them
        let help = cmd.clone().render_long_help().to_string();
        for (_, var) in &want {
            assert!(help.contains(var.as_deref().unwrap()), "--help does not name {var:?}:\n{help}");
        }
        assert!(help.contains("health"), "{help}");
    }

    #[test]
    fn health_needs_neither_id_nor_master() {
        for args in [&["health"][..], &["health", "--dir", "/tmp/h"], &["--dir", "/tmp/h", "health"]] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(matches!(cli.command, Some(Command::Health)), "{args:?}");
            assert!(cli.id.is_none() && cli.master.is_none());
        }
        assert_eq!(parse(&["health", "--dir", "/tmp/h"]).unwrap().dir, PathBuf::from("/tmp/h"));
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
            (&["--id", "a", "--master", "m:2", "--generation", "x"], "--generation"),
            (&["--id", "a", "--master", "m:2", "--grains", "[a, b]"], "expected a YAML map"),
            (&["--id", "a"], "--master"),
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
