//! The state functions and their typed arguments.
//!
//! Each function lists its arguments in `SPECS` (what "unknown argument" names as allowed)
//! and reads them in `parse`. `name` defaults to the state id, as in Salt. Defaults that
//! the minion needs (restart policy, health timings, stop signal) are filled in here, so a
//! plan says exactly what will run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::Value;

use crate::args::{self, Args, string};
use crate::path::source_path;
use crate::state::describe;

/// One state function with its arguments. Serialized as Salt writes it:
/// `{"file.managed": {"name": "/etc/x", ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Function {
    #[serde(rename = "file.managed")]
    FileManaged(FileManaged),
    #[serde(rename = "file.directory")]
    FileDirectory(FileDirectory),
    #[serde(rename = "file.absent")]
    FileAbsent(FileAbsent),
    #[serde(rename = "file.symlink")]
    FileSymlink(FileSymlink),
    #[serde(rename = "cmd.run")]
    CmdRun(CmdRun),
    #[serde(rename = "daemon.running")]
    DaemonRunning(DaemonRunning),
    #[serde(rename = "daemon.dead")]
    DaemonDead(DaemonDead),
    #[serde(rename = "pkg.installed")]
    PkgInstalled(PkgInstalled),
    #[serde(rename = "pkg.removed")]
    PkgRemoved(PkgRemoved),
    #[serde(rename = "service.running")]
    ServiceRunning(Service),
    #[serde(rename = "service.dead")]
    ServiceDead(Service),
    #[serde(rename = "user.present")]
    UserPresent(UserPresent),
    #[serde(rename = "group.present")]
    GroupPresent(GroupPresent),
}

impl Function {
    /// `file.managed`
    pub fn function_name(&self) -> &'static str {
        match self {
            Function::FileManaged(_) => "file.managed",
            Function::FileDirectory(_) => "file.directory",
            Function::FileAbsent(_) => "file.absent",
            Function::FileSymlink(_) => "file.symlink",
            Function::CmdRun(_) => "cmd.run",
            Function::DaemonRunning(_) => "daemon.running",
            Function::DaemonDead(_) => "daemon.dead",
            Function::PkgInstalled(_) => "pkg.installed",
            Function::PkgRemoved(_) => "pkg.removed",
            Function::ServiceRunning(_) => "service.running",
            Function::ServiceDead(_) => "service.dead",
            Function::UserPresent(_) => "user.present",
            Function::GroupPresent(_) => "group.present",
        }
    }

    /// `file`, what a requisite names (`- file: worker-config`).
    pub fn module(&self) -> &'static str {
        self.function_name().split('.').next().unwrap_or_default()
    }

    /// The `name` argument: a path, a command, a daemon.
    pub fn name(&self) -> &str {
        match self {
            Function::FileManaged(f) => &f.name,
            Function::FileDirectory(f) => &f.name,
            Function::FileAbsent(f) => &f.name,
            Function::FileSymlink(f) => &f.name,
            Function::CmdRun(f) => &f.name,
            Function::DaemonRunning(f) => &f.name,
            Function::DaemonDead(f) => &f.name,
            Function::PkgInstalled(f) => &f.name,
            Function::PkgRemoved(f) => &f.name,
            Function::ServiceRunning(f) | Function::ServiceDead(f) => &f.name,
            Function::UserPresent(f) => &f.name,
            Function::GroupPresent(f) => &f.name,
        }
    }
}

/// A file with given contents: from `source` (a file under `states/`, rendered with Tera
/// when `template` says so), from `contents`, or empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileManaged {
    pub name: String,
    /// Path relative to the repository root: `states/coins/worker.toml`.
    pub source: Option<String>,
    pub contents: Option<String>,
    pub template: Option<TemplateEngine>,
    pub mode: Option<Mode>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub makedirs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateEngine {
    Tera,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDirectory {
    pub name: String,
    pub mode: Option<Mode>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub makedirs: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileAbsent {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSymlink {
    pub name: String,
    pub target: String,
    pub force: bool,
}

/// A command, run unless `creates` exists, `unless` succeeds or `onlyif` fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmdRun {
    /// The command as written (or its words joined).
    pub name: String,
    /// What to execute: `["/bin/sh", "-c", name]` for a command line (Salt's default), or
    /// the words of `name` (a list, or a string with `shell: false`).
    pub argv: Vec<String>,
    pub creates: Vec<String>,
    /// Each an argv, built like `argv`.
    pub unless: Vec<Vec<String>>,
    pub onlyif: Vec<Vec<String>>,
    pub cwd: Option<String>,
    pub env: BTreeMap<String, String>,
    pub runas: Option<String>,
    /// `argv` is `/bin/sh -c <command line>`.
    pub shell: bool,
    /// The command (and each `unless`/`onlyif` check) is killed after this long and the
    /// state fails: a hung command must not hold the minion's applies forever.
    pub timeout_ms: u64,
}

/// `cmd.run`'s `timeout` when none is given: one hour.
pub const DEFAULT_CMD_TIMEOUT_MS: u64 = 3_600_000;

/// A supervised daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonRunning {
    pub name: String,
    pub cmd: Vec<String>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub restart: Restart,
    pub health: Option<Health>,
    /// `SIGTERM`
    pub stop_signal: String,
    pub stop_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub check: HealthCheck,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failures in a row before the daemon counts as unhealthy.
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheck {
    /// `host:port` accepts a connection.
    Tcp(String),
    /// A GET answers 2xx or 3xx.
    Http(String),
    /// The command exits 0.
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonDead {
    pub name: String,
}

/// Debian packages installed (apt-get), on a host the minion manages (not a fleet
/// container: its packages come from its image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PkgInstalled {
    pub name: String,
    /// The packages: `pkgs`, else `[name]`.
    pub pkgs: Vec<String>,
    /// The exact version wanted (of `name`; not with `pkgs`).
    pub version: Option<String>,
    /// `apt-get update` first.
    pub refresh: bool,
}

/// Debian packages not installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PkgRemoved {
    pub name: String,
    /// The packages: `pkgs`, else `[name]`.
    pub pkgs: Vec<String>,
}

/// A systemd unit running (`service.running`) or stopped (`service.dead`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Also enabled (or disabled) at boot; `None` leaves that as it is.
    pub enable: Option<bool>,
}

/// A local user account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPresent {
    pub name: String,
    pub uid: Option<u32>,
    /// The primary group, by name or number.
    pub gid: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    /// Supplementary groups (exactly these, when given).
    pub groups: Option<Vec<String>>,
    pub system: bool,
    pub createhome: bool,
}

/// A local group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPresent {
    pub name: String,
    pub gid: Option<u32>,
    pub system: bool,
}

/// A file mode, written and shown in octal (`"0644"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Mode {
    /// `"0644"`, `"644"`, `"0o644"`, or a YAML integer read as octal digits (`644`, Salt's
    /// way). Note that YAML's own `0o644` is the integer 420, read as `0420`: quote modes.
    fn from_yaml(v: &Value) -> Result<Mode, String> {
        const EXPECTED: &str = "expected an octal mode such as \"0644\"";
        let digits = match v {
            Value::String(s) => s.trim().trim_start_matches("0o").to_string(),
            Value::Number(n) if n.as_u64().is_some() => n.to_string(),
            other => return Err(format!("{EXPECTED}, got {}", describe(other))),
        };
        match u32::from_str_radix(&digits, 8) {
            Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(Mode(mode)),
            _ => Err(format!("{EXPECTED}, got `{digits}`")),
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let s = String::deserialize(d)?;
        Mode::from_yaml(&Value::String(s)).map_err(serde::de::Error::custom)
    }
}

/// The requisite arguments every function takes.
pub(crate) const REQUISITES: [&str; 8] =
    ["require", "watch", "onchanges", "onfail", "require_in", "watch_in", "onchanges_in", "onfail_in"];

/// A state function and the arguments it takes (besides `REQUISITES`).
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) args: &'static [&'static str],
}

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        name: "file.managed",
        args: &["name", "source", "contents", "template", "mode", "user", "group", "makedirs"],
    },
    Spec { name: "file.directory", args: &["name", "mode", "user", "group", "makedirs"] },
    Spec { name: "file.absent", args: &["name"] },
    Spec { name: "file.symlink", args: &["name", "target", "force"] },
    Spec {
        name: "cmd.run",
        args: &["name", "creates", "unless", "onlyif", "cwd", "env", "runas", "shell", "timeout"],
    },
    Spec {
        name: "daemon.running",
        args: &["name", "cmd", "user", "env", "cwd", "restart", "health", "stop_signal", "stop_timeout"],
    },
    Spec { name: "daemon.dead", args: &["name"] },
    Spec { name: "pkg.installed", args: &["name", "pkgs", "version", "refresh"] },
    Spec { name: "pkg.removed", args: &["name", "pkgs"] },
    Spec { name: "service.running", args: &["name", "enable"] },
    Spec { name: "service.dead", args: &["name", "enable"] },
    Spec {
        name: "user.present",
        args: &["name", "uid", "gid", "home", "shell", "groups", "system", "createhome"],
    },
    Spec { name: "group.present", args: &["name", "gid", "system"] },
];

pub(crate) const MODULES: [&str; 7] = ["file", "cmd", "daemon", "pkg", "service", "user", "group"];

pub(crate) fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

const SIGNALS: [&str; 10] = ["HUP", "INT", "QUIT", "ABRT", "KILL", "USR1", "USR2", "ALRM", "TERM", "WINCH"];
const DEFAULT_INTERVAL_MS: u64 = 10_000;
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

/// Read the arguments of `spec` into its typed function. `None` when an argument that
/// cannot be defaulted is missing or wrong (already reported).
pub(crate) fn parse(spec: &Spec, args: &mut Args) -> Option<Function> {
    match spec.name {
        "file.managed" => file_managed(args).map(Function::FileManaged),
        "file.directory" => Some(Function::FileDirectory(FileDirectory {
            name: args.path_name(),
            mode: args.typed("mode", Mode::from_yaml),
            user: args.string("user"),
            group: args.string("group"),
            makedirs: args.bool("makedirs").unwrap_or(false),
        })),
        "file.absent" => Some(Function::FileAbsent(FileAbsent { name: args.path_name() })),
        "file.symlink" => {
            let name = args.path_name();
            let target = args.string("target");
            let target = args.required("target", target);
            let force = args.bool("force").unwrap_or(false);
            target.map(|target| Function::FileSymlink(FileSymlink { name, target, force }))
        }
        "cmd.run" => cmd_run(args).map(Function::CmdRun),
        "daemon.running" => daemon_running(args).map(Function::DaemonRunning),
        "daemon.dead" => Some(Function::DaemonDead(DaemonDead { name: args.name() })),
        "pkg.installed" => pkg_installed(args).map(Function::PkgInstalled),
        "pkg.removed" => {
            let (name, pkgs) = packages(args);
            Some(Function::PkgRemoved(PkgRemoved { name, pkgs }))
        }
        "service.running" | "service.dead" => {
            let service = Service { name: args.name(), enable: args.bool("enable") };
            Some(match spec.name {
                "service.running" => Function::ServiceRunning(service),
                _ => Function::ServiceDead(service),
            })
        }
        "user.present" => Some(Function::UserPresent(UserPresent {
            name: args.name(),
            uid: args.typed("uid", id_number),
            gid: args.typed("gid", |v| match v {
                Value::Number(n) if n.as_u64().is_some() => Ok(n.to_string()),
                other => string(other),
            }),
            home: absolute(args, "home"),
            shell: absolute(args, "shell"),
            groups: args.take("groups").map(|_| args.strings("groups")),
            system: args.bool("system").unwrap_or(false),
            createhome: args.bool("createhome").unwrap_or(true),
        })),
        "group.present" => Some(Function::GroupPresent(GroupPresent {
            name: args.name(),
            gid: args.typed("gid", id_number),
            system: args.bool("system").unwrap_or(false),
        })),
        _ => None,
    }
}

/// `name` and the packages: `pkgs` (a list), else `[name]`.
fn packages(args: &mut Args) -> (String, Vec<String>) {
    let name = args.name();
    let pkgs = match args.take("pkgs") {
        Some(_) => args.strings("pkgs"),
        None => vec![name.clone()],
    };
    (name, pkgs)
}

fn pkg_installed(args: &mut Args) -> Option<PkgInstalled> {
    let (name, pkgs) = packages(args);
    let version = args.string("version");
    if let (Some(_), Some((_, at))) = (&version, args.take("pkgs")) {
        let message = format!("{}: `version` is for one package (`name`); not with `pkgs`", args.function);
        args.error(&at, message);
    }
    Some(PkgInstalled { name, pkgs, version, refresh: args.bool("refresh").unwrap_or(false) })
}

/// A user or group id.
fn id_number(v: &Value) -> Result<u32, String> {
    v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| match v {
        Value::Number(n) => format!("expected an id from 0 to {}, got {n}", u32::MAX),
        other => format!("expected an id from 0 to {}, got {}", u32::MAX, describe(other)),
    })
}

fn file_managed(args: &mut Args) -> Option<FileManaged> {
    let name = args.path_name();
    let source = args.typed("source", |v| source_path(&string(v)?));
    let contents = args.typed("contents", |v| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Sequence(lines) => {
            lines.iter().map(string).collect::<Result<Vec<_>, _>>().map(|l| l.join("\n") + "\n")
        }
        other => Err(format!("expected text, got {}", describe(other))),
    });
    let template = args.typed("template", |v| match v {
        Value::String(s) if s == "tera" => Ok(TemplateEngine::Tera),
        other => Err(format!("expected `tera` (the only template engine), got {}", shown(other))),
    });
    if let (Some(_), Some((_, at))) = (&source, args.take("contents")) {
        let message = format!("{}: give either `source` or `contents`, not both", args.function);
        args.error(&at, message);
    }
    if let (Some(_), None, Some((_, at))) = (&template, args.take("source"), args.take("template")) {
        let message = format!("{}: `template` needs a `source` to render", args.function);
        args.error(&at, message);
    }
    Some(FileManaged {
        name,
        source,
        contents,
        template,
        mode: args.typed("mode", Mode::from_yaml),
        user: args.string("user"),
        group: args.string("group"),
        makedirs: args.bool("makedirs").unwrap_or(false),
    })
}

/// A command written as a string (a command line for `/bin/sh -c`, as Salt runs it, unless
/// `shell: false`: then split into words) or as a list of words (never a shell).
fn command(v: &Value, shell: Option<bool>) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if shell != Some(false) => Ok(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
        Value::Sequence(_) if shell == Some(true) => {
            Err("with `shell: true`, expected the command as one string".into())
        }
        other => args::argv(other),
    }
}

fn cmd_run(args: &mut Args) -> Option<CmdRun> {
    let shell = args.bool("shell");
    let (name, argv) = match args.take("name") {
        Some(_) => args.typed("name", |v| Ok((shown_command(v), command(v, shell)?)))?,
        None => {
            let id = Value::String(args.id.clone());
            let argv = command(&id, shell);
            match argv {
                Ok(argv) => (args.id.clone(), argv),
                Err(e) => {
                    let (message, at) =
                        (format!("{}: state id as command: {e}", args.function), args.at.clone());
                    args.error(&at, message);
                    return None;
                }
            }
        }
    };
    let commands = |v: &Value| match v {
        Value::Sequence(items) => items.iter().map(|c| command(c, shell)).collect(),
        other => command(other, shell).map(|c| vec![c]),
    };
    let creates = args.strings("creates");
    let shell = matches!(argv.as_slice(), [sh, c, _] if sh == "/bin/sh" && c == "-c");
    Some(CmdRun {
        name,
        argv,
        creates,
        unless: args.typed("unless", commands).unwrap_or_default(),
        onlyif: args.typed("onlyif", commands).unwrap_or_default(),
        cwd: absolute(args, "cwd"),
        env: args.env("env"),
        runas: args.string("runas"),
        shell,
        timeout_ms: args.typed("timeout", args::duration_ms).unwrap_or(DEFAULT_CMD_TIMEOUT_MS),
    })
}

fn daemon_running(args: &mut Args) -> Option<DaemonRunning> {
    let name = args.name();
    let cmd = args.typed("cmd", args::argv);
    let cmd = args.required("cmd", cmd)?;
    let restart = args
        .typed("restart", |v| match v {
            Value::String(s) if s == "always" => Ok(Restart::Always),
            Value::String(s) if s == "on-failure" => Ok(Restart::OnFailure),
            Value::String(s) if s == "never" => Ok(Restart::Never),
            other => Err(format!("expected always, on-failure or never, got {}", shown(other))),
        })
        .unwrap_or(Restart::Always);
    let stop_signal = args
        .typed("stop_signal", |v| {
            let s = string(v)?;
            let bare = s.trim().trim_start_matches("SIG");
            if SIGNALS.contains(&bare) {
                Ok(format!("SIG{bare}"))
            } else {
                Err(format!("expected a signal name such as SIGTERM, got `{s}`"))
            }
        })
        .unwrap_or_else(|| "SIGTERM".into());
    Some(DaemonRunning {
        name,
        cmd,
        user: args.string("user"),
        env: args.env("env"),
        cwd: absolute(args, "cwd"),
        restart,
        health: args.typed("health", health),
        stop_signal,
        stop_timeout_ms: args.typed("stop_timeout", args::duration_ms).unwrap_or(DEFAULT_STOP_TIMEOUT_MS),
    })
}

fn absolute(args: &mut Args, key: &str) -> Option<String> {
    args.typed(key, |v| {
        let path = string(v)?;
        if path.starts_with('/') { Ok(path) } else { Err(format!("expected an absolute path, got `{path}`")) }
    })
}

/// `{tcp: "host:port" | http: url | exec: argv, interval, timeout, retries}`
fn health(v: &Value) -> Result<Health, String> {
    const CHECKS: &str = "one of tcp: \"host:port\", http: \"http://…\" or exec: [argv]";
    let Value::Mapping(map) = v else {
        return Err(format!("expected a map with {CHECKS}, got {}", describe(v)));
    };
    let mut check = None;
    let (mut interval_ms, mut timeout_ms, mut retries) =
        (DEFAULT_INTERVAL_MS, DEFAULT_TIMEOUT_MS, DEFAULT_RETRIES);
    for (key, value) in map {
        let key = string(key)?;
        let this = match key.as_str() {
            "tcp" => {
                let addr = string(value)?;
                match addr.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                        HealthCheck::Tcp(addr)
                    }
                    _ => return Err(format!("tcp: expected \"host:port\", got `{addr}`")),
                }
            }
            "http" => {
                let url = string(value)?;
                if url.starts_with("https://") {
                    return Err(format!(
                        "http: `{url}`: the minion's check speaks plain http only; use exec: [curl, -fsS, <url>] for https"
                    ));
                }
                let rest = url.strip_prefix("http://");
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                    return Err(format!(
                        "http: expected a URL such as http://127.0.0.1:8003/health, got `{url}`"
                    ));
                }
                HealthCheck::Http(url)
            }
            "exec" => HealthCheck::Exec(args::argv(value).map_err(|e| format!("exec: {e}"))?),
            "interval" => {
                interval_ms = args::duration_ms(value).map_err(|e| format!("interval: {e}"))?;
                continue;
            }
            "timeout" => {
                timeout_ms = args::duration_ms(value).map_err(|e| format!("timeout: {e}"))?;
                continue;
            }
            "retries" => {
                retries = value
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok())
                    .ok_or_else(|| format!("retries: expected a count, got {}", describe(value)))?;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown key `{other}`; expected tcp, http, exec, interval, timeout, retries"
                ));
            }
        };
        if check.replace(this).is_some() {
            return Err(format!("expected {CHECKS}, got more than one"));
        }
    }
    let check = check.ok_or_else(|| format!("expected {CHECKS}"))?;
    Ok(Health { check, interval_ms, timeout_ms, retries })
}

/// A value as a user wrote it, for "got …".
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => describe(other).to_string(),
    }
}

fn shown_command(v: &Value) -> String {
    match v {
        Value::Sequence(words) => words.iter().filter_map(|w| string(w).ok()).collect::<Vec<_>>().join(" "),
        other => string(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal() {
        let yaml = |s: &str| serde_yaml::from_str::<Value>(s).unwrap();
        assert_eq!(Mode::from_yaml(&yaml("'0644'")), Ok(Mode(0o644)));
        assert_eq!(Mode::from_yaml(&yaml("0644")), Ok(Mode(0o644)));
        assert_eq!(Mode::from_yaml(&yaml("644")), Ok(Mode(0o644)));
        assert_eq!(Mode::from_yaml(&yaml("'0o755'")), Ok(Mode(0o755)));
        assert!(Mode::from_yaml(&yaml("'0688'")).is_err());
        assert!(Mode::from_yaml(&yaml("'77777'")).is_err());
        assert!(Mode::from_yaml(&yaml("-1")).is_err());
        assert_eq!(serde_json::to_string(&Mode(0o644)).unwrap(), "\"0644\"");
    }

    #[test]
    fn health_checks() {
        let yaml = |s: &str| serde_yaml::from_str::<Value>(s).unwrap();
        let h = health(&yaml("{http: 'http://127.0.0.1:8003/health', interval: 2s}")).unwrap();
        assert_eq!(h.check, HealthCheck::Http("http://127.0.0.1:8003/health".into()));
        assert_eq!((h.interval_ms, h.timeout_ms, h.retries), (2000, DEFAULT_TIMEOUT_MS, DEFAULT_RETRIES));
        assert!(health(&yaml("{tcp: 'localhost'}")).is_err());
        assert!(health(&yaml("{tcp: 'h:1', http: 'http://h'}")).is_err());
        let https = health(&yaml("{http: 'https://127.0.0.1/health'}")).unwrap_err();
        assert!(https.contains("plain http only"), "{https}");
        assert!(health(&yaml("{interval: 1}")).is_err());
        assert!(health(&yaml("{tcp: 'h:1', bogus: 1}")).is_err());
    }
}
