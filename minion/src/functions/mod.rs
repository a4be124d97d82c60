//! The functions a job can call, one module per function module (`test.*`, `cmd.*`,
//! `daemon.*`, ...), and the registry that maps a function's name to its handler.
//!
//! A handler never panics and never fails with an error type: whatever goes wrong becomes
//! an [`Outcome`] with `success: false` and a message saying what was expected.

pub(crate) mod cmd;
mod daemon;
mod grains;
mod saltutil;
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

pub use daemon::set_supervisor;
pub use state::set_converger;

/// One call of a function: its arguments and what the minion knows.
#[derive(Clone, Debug)]
pub struct Call {
    pub fun: String,
    pub args: Vec<Value>,
    pub kwargs: BTreeMap<String, Value>,
    pub grains: Arc<Grains>,
}

/// What a function returned: the `success`, `retcode` and `ret` of a job return.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub retcode: i32,
    pub ret: Value,
}

impl Outcome {
    pub fn ok(ret: impl Into<Value>) -> Self {
        Self { success: true, retcode: 0, ret: ret.into() }
    }

    /// A failure with retcode 1 and a message as its return.
    pub fn fail(message: impl Into<String>) -> Self {
        Self { success: false, retcode: 1, ret: Value::String(message.into()) }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How a function runs: at once on the session's task, or as its own future.
#[derive(Clone, Copy)]
enum Handler {
    Now(fn(&Call) -> Outcome),
    Later(fn(Call) -> BoxFuture),
}

/// Every function, by name; `sys.list_functions` lists these.
const FUNCTIONS: &[(&str, Handler)] = &[
    ("cmd.retcode", Handler::Later(cmd::retcode)),
    ("cmd.run", Handler::Later(cmd::run)),
    ("cmd.run_all", Handler::Later(cmd::run_all)),
    ("daemon.list", Handler::Later(daemon::run)),
    ("daemon.logs", Handler::Later(daemon::run)),
    ("daemon.restart", Handler::Later(daemon::run)),
    ("daemon.status", Handler::Later(daemon::run)),
    ("grains.get", Handler::Now(grains::get)),
    ("grains.items", Handler::Now(grains::items)),
    ("role.list", Handler::Later(state::roles)),
    ("saltutil.find_job", Handler::Now(saltutil::find_job)),
    ("saltutil.kill_job", Handler::Now(saltutil::kill_job)),
    ("saltutil.running", Handler::Now(saltutil::running)),
    ("state.apply", Handler::Later(state::apply)),
    ("state.highstate", Handler::Later(state::apply)),
    ("sys.list_functions", Handler::Now(sys::list_functions)),
    ("test.echo", Handler::Now(test::echo)),
    ("test.ping", Handler::Now(test::ping)),
    ("test.sleep", Handler::Later(test::sleep)),
];

/// The names of every function, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names
}

/// Runs `call.fun`.
pub async fn call(call: Call) -> Outcome {
    match FUNCTIONS.iter().find(|(name, _)| *name == call.fun) {
        Some((_, Handler::Now(f))) => f(&call),
        Some((_, Handler::Later(f))) => f(call).await,
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
