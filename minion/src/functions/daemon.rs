//! `daemon.*`: the daemons the supervisor runs, and a hand on them.
//!
//! - `daemon.list` → every supervised daemon (name, pid, state, restarts, health, ...)
//! - `daemon.status <name>` → one of them
//! - `daemon.restart <name>` → stops it and starts it again
//! - `daemon.logs <name> [lines=N]` → the last N lines of its output (default 50)
//!
//! The supervisor is the minion's one [`Supervisor`], which every [`Call`] carries
//! (`Call::services`).

use serde_json::{Value, json};
use wire::msg::MAX_OUTPUT;

use super::{BoxFuture, Call, Outcome, arity, known_kwargs, scalar_string};
use crate::supervisor::{Supervisor, SupervisorError};

/// Lines `daemon.logs` shows unless told.
pub const DEFAULT_LINES: usize = 50;
/// The most lines `daemon.logs` shows.
pub const MAX_LINES: usize = 100_000;

/// `daemon.list`, `daemon.status`, `daemon.restart`, `daemon.logs`.
pub fn run(call: Call) -> BoxFuture {
    Box::pin(async move {
        match call.services.supervisor.clone() {
            Some(supervisor) => with(&call, &supervisor).await,
            None => {
                Outcome::fail(format!("{}: the daemon supervisor is not running on this minion", call.fun))
            }
        }
    })
}

/// Runs `call` against `supervisor`.
pub(crate) async fn with(call: &Call, supervisor: &Supervisor) -> Outcome {
    match call.fun.as_str() {
        "daemon.list" => {
            let usage = "daemon.list";
            if let Err(o) = arity(call, 0..=0, usage).and_then(|()| known_kwargs(call, &[], usage)) {
                return o;
            }
            Outcome::ok(json!(supervisor.list().await))
        }
        "daemon.status" => {
            let name = match name(call, "daemon.status <name>", &[]) {
                Ok(name) => name,
                Err(o) => return o,
            };
            match supervisor.status(&name).await {
                Some(info) => Outcome::ok(json!(info)),
                None => Outcome::fail(SupervisorError::Unknown(name).to_string()),
            }
        }
        "daemon.restart" => {
            let name = match name(call, "daemon.restart <name>", &[]) {
                Ok(name) => name,
                Err(o) => return o,
            };
            match supervisor.restart(&name).await {
                Ok(o) => Outcome {
                    success: o.result,
                    retcode: if o.result { 0 } else { 1 },
                    ret: json!({"comment": o.comment, "changes": o.changes}),
                },
                Err(e) => Outcome::fail(e.to_string()),
            }
        }
        "daemon.logs" => logs(call, supervisor).await,
        other => Outcome::fail(format!("'{other}' is not a daemon function")),
    }
}

async fn logs(call: &Call, supervisor: &Supervisor) -> Outcome {
    let usage = "daemon.logs <name> [lines=N]";
    let name = match name(call, usage, &["lines"]) {
        Ok(name) => name,
        Err(o) => return o,
    };
    let lines = match call.kwargs.get("lines") {
        None => DEFAULT_LINES,
        Some(v) => match scalar_string(v).and_then(|s| s.trim().parse::<usize>().ok()) {
            Some(n) if (1..=MAX_LINES).contains(&n) => n,
            _ => {
                return Outcome::fail(format!(
                    "daemon.logs: lines= expects a number of lines from 1 to {MAX_LINES}, got {v}; usage: {usage}"
                ));
            }
        },
    };
    match supervisor.logs(&name, lines).await {
        Ok(text) => Outcome::ok(Value::String(keep_end(text))),
        Err(e) => Outcome::fail(e.to_string()),
    }
}

/// The one argument, a daemon name.
fn name(call: &Call, usage: &str, kwargs: &[&str]) -> Result<String, Outcome> {
    arity(call, 1..=1, usage)?;
    known_kwargs(call, kwargs, usage)?;
    match call.args[0].as_str() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Outcome::fail(format!(
            "{} expects a daemon name, got {}; usage: {usage}",
            call.fun, call.args[0]
        ))),
    }
}

/// Output too long for a return keeps its end (the newest lines), and says so.
fn keep_end(text: String) -> String {
    if text.len() <= MAX_OUTPUT {
        return text;
    }
    let mut cut = text.len() - MAX_OUTPUT;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    // start at a whole line
    let start = text[cut..].find('\n').map_or(cut, |i| cut + i + 1);
    format!("[drover: only the last {} bytes of {}]\n{}", text.len() - start, text.len(), &text[start..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::tests::{Kwargs, call_of, run as call_fn};
    use super::*;
    use crate::daemons::Daemons;

    fn spec(name: &str, script: &str) -> render::DaemonRunning {
        render::DaemonRunning {
            name: name.into(),
            cmd: vec!["/bin/sh".into(), "-c".into(), script.into()],
            user: None,
            env: BTreeMap::new(),
            cwd: None,
            restart: render::Restart::Always,
            health: None,
            stop_signal: "SIGTERM".into(),
            stop_timeout_ms: 5_000,
        }
    }

    async fn call(sup: &Supervisor, fun: &str, args: Vec<Value>, kwargs: &[(&str, Value)]) -> Outcome {
        with(&call_of(fun, args, kwargs), sup).await
    }

    #[tokio::test]
    async fn list_status_restart_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let sup = Supervisor::start(dir.path().join("daemons"), tx);
        let o = sup
            .ensure_running(&spec("echo", "echo one; echo two; echo three; exec sleep 30"), false, false)
            .await;
        assert!(o.result, "{o:?}");

        let o = call(&sup, "daemon.list", vec![], &[]).await;
        assert!(o.success, "{o:?}");
        let list = o.ret.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["name"], json!("echo"));
        assert_eq!(list[0]["state"], json!("running"));
        assert_eq!(list[0]["cmd"][0], json!("/bin/sh"));
        let pid = list[0]["pid"].as_u64().unwrap();

        let o = call(&sup, "daemon.status", vec![json!("echo")], &[]).await;
        assert_eq!((o.success, o.ret["pid"].as_u64()), (true, Some(pid)));
        let o = call(&sup, "daemon.status", vec![json!("nope")], &[]).await;
        assert!(!o.success);
        assert_eq!(
            o.ret,
            json!("no daemon named 'nope' is supervised on this minion (daemon.list shows them)")
        );

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let o = call(&sup, "daemon.logs", vec![json!("echo")], &[("lines", json!("2"))]).await;
            assert!(o.success, "{o:?}");
            if o.ret == json!("two\nthree\n") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{o:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let o = call(&sup, "daemon.logs", vec![json!("echo")], &[]).await;
        assert!(o.ret.as_str().unwrap().starts_with("[drover] started pid"), "{o:?}");

        let o = call(&sup, "daemon.restart", vec![json!("echo")], &[]).await;
        assert!(o.success, "{o:?}");
        assert!(o.ret["comment"].as_str().unwrap().starts_with("restarted echo (pid "), "{o:?}");
        assert_ne!(o.ret["changes"]["pid"].as_u64(), Some(pid));
        let o = call(&sup, "daemon.restart", vec![json!("nope")], &[]).await;
        assert!(!o.success && o.ret.as_str().unwrap().starts_with("no daemon named 'nope'"), "{o:?}");
        let o = call(&sup, "daemon.logs", vec![json!("nope")], &[]).await;
        assert!(!o.success && o.ret.as_str().unwrap().starts_with("no daemon named 'nope'"), "{o:?}");
        sup.shutdown().await;
    }

    #[tokio::test]
    async fn arguments_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let sup = Supervisor::start(dir.path().join("daemons"), tx);
        let cases: &[(&str, Vec<Value>, Kwargs, &str)] = &[
            ("daemon.list", vec![json!("x")], &[], "daemon.list takes no arguments"),
            ("daemon.status", vec![], &[], "daemon.status takes 1 argument, got 0"),
            ("daemon.status", vec![json!(3)], &[], "expects a daemon name"),
            ("daemon.logs", vec![json!("w")], &[("lines", json!(0))], "lines= expects a number of lines"),
            (
                "daemon.logs",
                vec![json!("w")],
                &[("lines", json!("many"))],
                "lines= expects a number of lines",
            ),
            ("daemon.restart", vec![json!("w")], &[("lines", json!(1))], "takes no keyword arguments"),
        ];
        for (fun, args, kwargs, want) in cases {
            let o = call(&sup, fun, args.clone(), kwargs).await;
            let msg = o.ret.as_str().unwrap_or_default();
            assert!(!o.success && msg.contains(want), "{fun} {args:?}: {msg}");
        }
    }

    #[tokio::test]
    async fn without_a_supervisor_daemon_functions_say_so() {
        // a call made without the minion's services (Services::default())
        let o = call_fn("daemon.list", vec![], &[]).await;
        assert_eq!(o.ret, json!("daemon.list: the daemon supervisor is not running on this minion"));
    }

    #[test]
    fn long_logs_keep_their_end() {
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let kept = keep_end(text.clone());
        assert!(kept.len() < MAX_OUTPUT + 100);
        assert!(kept.starts_with("[drover: only the last "), "{}", &kept[..80]);
        assert!(kept.ends_with("line 199999\n"));
        assert_eq!(keep_end("short\n".into()), "short\n");
    }
}
