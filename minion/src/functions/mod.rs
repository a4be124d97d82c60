//! The functions a job can call, one module per function module (`test.*`, `cmd.*`,
//! `daemon.*`, ...), and the registry that maps a function's name to its handler.
//!
//! A handler never panics and never fails with an error type: whatever goes wrong becomes
//! an [`Outcome`] with `success: false` and a message saying what was expected.

pub(crate) mod cmd;
mod cp;
mod daemon;
mod file;
mod grains;
pub(crate) mod host;
mod minion;
pub(crate) mod network;
pub(crate) mod pkg;
mod saltutil;
pub(crate) mod service;
mod state;
mod sys;
mod test;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wire::msg::Grains;

use crate::converge::Converger;
use crate::supervisor::Supervisor;

/// One call of a function: its arguments and what the minion knows.
#[derive(Clone, Debug)]
pub struct Call {
    pub fun: String,
    pub args: Vec<Value>,
    pub kwargs: BTreeMap<String, Value>,
    pub grains: Arc<Grains>,
    pub services: Services,
}

/// The parts of the minion a function may reach besides its arguments, carried by each
/// [`Call`] (no process-wide state): `daemon.*` ask the supervisor, `state.*` and
/// `role.list` the converger. None in a call made without them (unit tests), which those
/// functions answer with a failure saying so.
#[derive(Clone, Default)]
pub struct Services {
    pub supervisor: Option<Supervisor>,
    pub converger: Option<Converger>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("supervisor", &self.supervisor.is_some())
            .field("converger", &self.converger.is_some())
            .finish()
    }
}

pub use crate::outcome::Outcome;

type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How a function runs: at once on the session's task, or as its own future.
#[derive(Clone, Copy)]
enum Handler {
    Now(fn(&Call) -> Outcome),
    Later(fn(Call) -> BoxFuture),
    /// On a blocking thread: for file I/O, which may stall on a slow disk.
    Blocking(fn(&Call) -> Outcome),
}

/// Every function: its name, its handler and what it does (one paragraph, which
/// `sys.doc` returns; docs/functions.md says the same at more length).
const FUNCTIONS: &[(&str, Handler, &str)] = &[
    (
        "cmd.retcode",
        Handler::Later(cmd::retcode),
        "Runs a command (one string: a command line for /bin/sh -c; several words: the program and its arguments) and returns its exit status. Keyword arguments as cmd.run.",
    ),
    (
        "cmd.run",
        Handler::Later(cmd::run),
        "Runs a command (one string: a command line for /bin/sh -c; several words: the program and its arguments) and returns its output, stderr merged into stdout. Takes shell=, cwd=, env=, timeout=, stdin=, runas=; succeeds when the command exits 0.",
    ),
    (
        "cmd.run_all",
        Handler::Later(cmd::run_all),
        "Runs a command like cmd.run and returns {pid, retcode, stdout, stderr}.",
    ),
    (
        "cp.get_file",
        Handler::Later(cp::get_file),
        "cp.get_file salt://PATH DEST [makedirs=true]: copies a file of the states tree (PATH relative to states/, at the commit of the minion's assignment) to DEST and returns DEST. Only the files of the minion's own assignment: its roles' state files and the sources their states name.",
    ),
    (
        "daemon.list",
        Handler::Later(daemon::run),
        "Lists every daemon this minion supervises: its state, pid, restarts and health.",
    ),
    (
        "daemon.logs",
        Handler::Later(daemon::run),
        "daemon.logs NAME [lines=50]: the last lines of a supervised daemon's output.",
    ),
    (
        "daemon.restart",
        Handler::Later(daemon::run),
        "daemon.restart NAME: stops a supervised daemon and starts it again.",
    ),
    (
        "daemon.status",
        Handler::Later(daemon::run),
        "daemon.status NAME: the state, pid, restarts and health of one supervised daemon.",
    ),
    (
        "file.contains",
        Handler::Blocking(file::contains),
        "file.contains PATH TEXT: true when the file holds TEXT (plain text, not a pattern).",
    ),
    (
        "file.exists",
        Handler::Blocking(file::exists),
        "file.exists PATH: true when something exists at the absolute path (a symlink is followed).",
    ),
    (
        "file.get_hash",
        Handler::Blocking(file::get_hash),
        "file.get_hash PATH [form=sha256]: the file's digest in hex; form= is sha224, sha256, sha384 or sha512.",
    ),
    (
        "file.read",
        Handler::Blocking(file::read),
        "file.read PATH: the file's contents as text (UTF-8, at most 1 MiB).",
    ),
    (
        "file.replace",
        Handler::Blocking(file::replace),
        "file.replace PATH PATTERN REPL [count=0] [dry_run=false] [show_changes=true]: replaces every match of the regular expression PATTERN (multi-line: ^ and $ match at each line) with REPL, where \\1 or \\g<name> is a group, as in Salt. Returns the diff of the change (empty when nothing matched), or with show_changes=false whether the file changed.",
    ),
    (
        "file.stats",
        Handler::Blocking(file::stats),
        "file.stats PATH: the file's type, size, mode, owner (uid, gid, user, group), inode, times (atime, mtime, ctime in seconds since the epoch) and real path.",
    ),
    (
        "file.write",
        Handler::Blocking(file::write),
        "file.write PATH LINE...: writes the lines, each ended by a newline, over the file's contents (creating it if its directory exists).",
    ),
    (
        "grains.get",
        Handler::Now(grains::get),
        "grains.get KEY[:SUB...] [DEFAULT]: one grain; : goes into maps and lists; an absent grain gives DEFAULT, else \"\".",
    ),
    ("grains.items", Handler::Now(grains::items), "Every grain this minion reported, as a map."),
    (
        "minion.kill",
        Handler::Now(minion::kill),
        "minion.kill: the minion ends itself at once (exit status 137, as after kill -9), half a second after its return is on its way; its daemons are left as they are. In a fleet container (the minion is PID 1) the container dies with it and is replaced: the chaos monkey's kill on any Swarm node.",
    ),
    (
        "network.ip_addrs",
        Handler::Now(network::ip_addrs),
        "network.ip_addrs [INTERFACE] [include_loopback=false] [cidr=NET/BITS]: the IPv4 addresses of the minion's interfaces (or of one), sorted, loopback left out unless asked, only those inside cidr= when given.",
    ),
    (
        "pkg.install",
        Handler::Later(pkg::install_fn),
        "pkg.install NAME... [version=V] [refresh=true] | pkg.install pkgs='[a, b]': installs Debian packages with apt-get (noninteractive; apt-get update first with refresh=true) and returns {name: {old, new}} for each package that changed. Refused in a fleet container: change its image instead.",
    ),
    (
        "pkg.list_pkgs",
        Handler::Later(pkg::list_pkgs),
        "The installed Debian packages and their versions, {name: version}, from dpkg's status database.",
    ),
    (
        "pkg.remove",
        Handler::Later(pkg::remove_fn),
        "pkg.remove NAME... | pkg.remove pkgs='[a, b]': removes Debian packages with apt-get remove and returns {name: {old, new}} for each package removed. Refused in a fleet container: change its image instead.",
    ),
    (
        "pkg.version",
        Handler::Later(pkg::version),
        "pkg.version NAME...: the installed version of a Debian package (\"\" when not installed); a map of them for several names.",
    ),
    (
        "role.list",
        Handler::Later(state::roles),
        "The roles the master assigned to this minion, the commit they come from and the assignment's serial.",
    ),
    (
        "saltutil.find_job",
        Handler::Now(saltutil::find_job),
        "saltutil.find_job JID: the job JID while this minion runs it ({jid, fun, arg, kwarg, started_ms}), else {}.",
    ),
    (
        "saltutil.kill_job",
        Handler::Now(saltutil::kill_job),
        "saltutil.kill_job JID: ends the job JID on this minion (its task, and the process group of any command it started); the job returns as killed (retcode 137). The minion itself goes on. Fails when the job does not run here.",
    ),
    (
        "saltutil.running",
        Handler::Now(saltutil::running),
        "The jobs this minion runs now, oldest first, this one left out: {jid, fun, arg, kwarg, started_ms} each.",
    ),
    (
        "service.restart",
        Handler::Later(service::act),
        "service.restart UNIT: restarts a systemd unit (systemctl restart) and returns true. Needs systemd; refused in a fleet container.",
    ),
    (
        "service.start",
        Handler::Later(service::act),
        "service.start UNIT: starts a systemd unit (systemctl start) and returns true. Needs systemd; refused in a fleet container.",
    ),
    (
        "service.status",
        Handler::Later(service::status),
        "service.status UNIT: whether a systemd unit is active (systemctl is-active). Needs systemd.",
    ),
    (
        "service.stop",
        Handler::Later(service::act),
        "service.stop UNIT: stops a systemd unit (systemctl stop) and returns true. Needs systemd; refused in a fleet container.",
    ),
    (
        "state.apply",
        Handler::Later(state::apply),
        "state.apply [STATE-FILE-OR-ID...] [test=true]: applies the minion's roles, or only the named state files or state ids; test=true changes nothing and says what would change.",
    ),
    (
        "state.highstate",
        Handler::Later(state::apply),
        "state.highstate [test=true]: applies every state of the minion's roles, then stops the daemons no state asks for.",
    ),
    (
        "sys.doc",
        Handler::Now(sys::doc),
        "sys.doc [FUNCTION-OR-MODULE...]: what each function does, by name (this text), for every function or for those named.",
    ),
    (
        "sys.list_functions",
        Handler::Now(sys::list_functions),
        "sys.list_functions [MODULE...]: the sorted names of every function, or of the named modules' functions.",
    ),
    ("test.echo", Handler::Now(test::echo), "test.echo TEXT: returns its one argument, as given."),
    ("test.ping", Handler::Now(test::ping), "Returns true: the minion is connected and answers."),
    (
        "test.sleep",
        Handler::Later(test::sleep),
        "test.sleep SECONDS: waits that long (fractions allowed), then returns true.",
    ),
    ("test.version", Handler::Now(test::version), "The version of drover-minion this minion runs."),
];

/// The names of every function, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|(name, ..)| *name).collect();
    names.sort_unstable();
    names
}

/// What `name` does, from its registry entry; `None` for a function this minion lacks.
pub fn doc(name: &str) -> Option<&'static str> {
    FUNCTIONS.iter().find(|(n, ..)| *n == name).map(|(_, _, doc)| *doc)
}

/// Runs `call.fun`.
pub async fn call(call: Call) -> Outcome {
    match FUNCTIONS.iter().find(|(name, ..)| *name == call.fun) {
        Some((_, Handler::Now(f), _)) => f(&call),
        Some((_, Handler::Later(f), _)) => f(call).await,
        Some((_, Handler::Blocking(f), _)) => {
            let f = *f;
            let fun = call.fun.clone();
            tokio::task::spawn_blocking(move || f(&call))
                .await
                .unwrap_or_else(|e| Outcome::fail(format!("{fun} stopped unexpectedly: {e}")))
        }
        None => Outcome::fail(format!(
            "'{}' is not available: run sys.list_functions to see the functions this minion has",
            call.fun
        )),
    }
}

/// Checks the number of positional arguments; `usage` shows the expected call.
fn arity(call: &Call, expected: RangeInclusive<usize>, usage: &str) -> Result<(), Outcome> {
    let n = call.args.len();
    if expected.contains(&n) {
        return Ok(());
    }
    let want = match (*expected.start(), *expected.end()) {
        (0, 0) => "no arguments".to_string(),
        (1, 1) => "1 argument".to_string(),
        (a, usize::MAX) => format!("{a} or more arguments"),
        (a, b) if a == b => format!("{a} arguments"),
        (a, b) => format!("{a} to {b} arguments"),
    };
    Err(Outcome::fail(format!("{} takes {want}, got {n}; usage: {usage}", call.fun)))
}

/// Checks that every keyword argument is one the function knows.
fn known_kwargs(call: &Call, known: &[&str], usage: &str) -> Result<(), Outcome> {
    match call.kwargs.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if known.is_empty() => {
            Err(Outcome::fail(format!("{} takes no keyword arguments, got {k}=; usage: {usage}", call.fun)))
        }
        Some(k) => Err(Outcome::fail(format!(
            "{} does not take the keyword argument {k}= (it takes {}); usage: {usage}",
            call.fun,
            known.iter().map(|k| format!("{k}=")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A number of seconds, as a JSON number or a numeric string; negative or not finite is None.
fn seconds(v: &Value) -> Option<Duration> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    Duration::try_from_secs_f64(f).ok()
}

/// A scalar as a string (strings as they are, numbers and booleans as written).
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean, also from the strings true/false/yes/no/1/0 as a command line may pass it.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_u64() == Some(1) => Some(true),
        Value::Number(n) if n.as_u64() == Some(0) => Some(false),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Keyword arguments as a test writes them.
    pub type Kwargs<'a> = &'a [(&'a str, Value)];

    pub fn call_of(fun: &str, args: Vec<Value>, kwargs: &[(&str, Value)]) -> Call {
        let mut grains = Grains::new();
        grains.insert("id".into(), json!("m1"));
        grains.insert("os".into(), json!("Debian"));
        grains.insert("deep".into(), json!({"a": {"b": [10, 20]}}));
        Call {
            fun: fun.into(),
            args,
            kwargs: kwargs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            grains: Arc::new(grains),
            services: Services::default(),
        }
    }

    pub async fn run(fun: &str, args: Vec<Value>, kwargs: &[(&str, Value)]) -> Outcome {
        call(call_of(fun, args, kwargs)).await
    }

    #[tokio::test]
    async fn unknown_functions_name_themselves_and_the_way_out() {
        let o = run("state.nope", vec![], &[]).await;
        assert_eq!((o.success, o.retcode), (false, 1));
        let msg = o.ret.as_str().unwrap();
        assert!(msg.starts_with("'state.nope' is not available"), "{msg}");
        assert!(msg.contains("sys.list_functions"), "{msg}");
    }

    #[tokio::test]
    async fn wrong_arguments_say_what_was_expected() {
        let cases: &[(&str, Vec<Value>, Kwargs, &str)] = &[
            ("test.ping", vec![json!(1)], &[], "test.ping takes no arguments, got 1"),
            ("test.echo", vec![], &[], "test.echo takes 1 argument, got 0"),
            ("test.echo", vec![json!("a"), json!("b")], &[], "usage: test.echo <text>"),
            ("test.sleep", vec![json!("soon")], &[], "a number of seconds"),
            ("test.sleep", vec![json!(-1)], &[], "a number of seconds"),
            ("test.ping", vec![], &[("x", json!(1))], "takes no keyword arguments"),
            ("grains.get", vec![], &[], "grains.get takes 1 to 2 arguments, got 0"),
            ("grains.get", vec![json!(["x"])], &[], "a grain name"),
            ("cmd.run", vec![], &[], "cmd.run takes"),
            (
                "cmd.run",
                vec![json!("echo")],
                &[("bogus", json!(1))],
                "does not take the keyword argument bogus=",
            ),
        ];
        for (fun, args, kwargs, want) in cases {
            let o = run(fun, args.clone(), kwargs).await;
            assert!(!o.success, "{fun} {args:?}");
            let msg = o.ret.as_str().unwrap_or_default();
            assert!(msg.contains(want), "{fun} {args:?}: {msg}");
        }
    }

    #[test]
    fn names_are_sorted_and_unique() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn loose_values() {
        assert_eq!(seconds(&json!(1.5)), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(&json!("2")), Some(Duration::from_secs(2)));
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!(null)), None);
        assert_eq!(boolean(&json!("yes")), Some(true));
        assert_eq!(boolean(&json!("maybe")), None);
        assert_eq!(scalar_string(&json!(3)), Some("3".into()));
        assert_eq!(scalar_string(&json!([3])), None);
    }
}
