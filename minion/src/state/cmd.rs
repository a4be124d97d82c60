//! `cmd.run` as a state: run a command unless its guards say it is not needed.
//!
//! The guards, as in Salt: skip when every `creates` path exists, when any `onlyif`
//! command exits non-zero, or when every `unless` command exits 0. The guards run with the
//! command's `cwd`, `env` and `runas`, also with `test` (they only look). Commands run
//! through the `cmd.run` function ([`crate::functions`]), without a shell: render already
//! turned `shell: true` into `/bin/sh -c`.

use std::path::Path;
use std::sync::Arc;

use render::CmdRun;
use serde_json::{Map, Value, json};
use wire::msg::Grains;

use super::Outcome;
use crate::functions::{self, Call};

pub(super) async fn run(c: &CmdRun, grains: &Arc<Grains>, test: bool) -> Outcome {
    if !c.creates.is_empty() && c.creates.iter().all(|p| Path::new(p).exists()) {
        return Outcome::ok(format!("all files in creates exist: {}", c.creates.join(", ")));
    }
    for check in &c.onlyif {
        match exec(check, c, grains).await {
            Err(why) => {
                return Outcome::fail(format!("onlyif command `{}` could not run: {why}", shown(check)));
            }
            Ok((retcode, _)) if retcode != 0 => {
                return Outcome::ok(format!(
                    "onlyif condition is false: `{}` exited {retcode}",
                    shown(check)
                ));
            }
            Ok(_) => {}
        }
    }
    if !c.unless.is_empty() {
        let mut all_zero = true;
        for check in &c.unless {
            match exec(check, c, grains).await {
                Err(why) => {
                    return Outcome::fail(format!("unless command `{}` could not run: {why}", shown(check)));
                }
                Ok((retcode, _)) => all_zero &= retcode == 0,
            }
            if !all_zero {
                break;
            }
        }
        if all_zero {
            let checks: Vec<String> = c.unless.iter().map(|u| format!("`{}`", shown(u))).collect();
            return Outcome::ok(format!("unless condition is true: {} exited 0", checks.join(", ")));
        }
    }
    if test {
        return Outcome::changed(true, format!("command `{}` would run", c.name), Map::new());
    }
    match exec(&c.argv, c, grains).await {
        Err(why) => Outcome::fail(why),
        Ok((retcode, changes)) => {
            let (result, comment) = if retcode == 0 {
                (Some(true), format!("command `{}` run", c.name))
            } else {
                (Some(false), format!("command `{}` run; it exited {retcode}", c.name))
            };
            Outcome { result, comment, changes, changed: true }
        }
    }
}

/// Runs `argv` with the options of `c`: its exit status and `{pid, retcode, stdout,
/// stderr}`, or why it could not start.
async fn exec(
    argv: &[String],
    c: &CmdRun,
    grains: &Arc<Grains>,
) -> Result<(i32, Map<String, Value>), String> {
    // one argument is split into words by cmd.run: quote it so it stays one word
    let args: Vec<Value> = match argv {
        [one] => vec![json!(shlex::try_quote(one).map(|q| q.into_owned()).unwrap_or_else(|_| one.clone()))],
        words => words.iter().map(|w| json!(w)).collect(),
    };
    let mut kwargs = std::collections::BTreeMap::new();
    if let Some(cwd) = &c.cwd {
        kwargs.insert("cwd".to_string(), json!(cwd));
    }
    if !c.env.is_empty() {
        kwargs.insert("env".to_string(), json!(c.env));
    }
    if let Some(user) = &c.runas {
        kwargs.insert("runas".to_string(), json!(user));
    }
    kwargs.insert("timeout".to_string(), json!(c.timeout_ms as f64 / 1000.0));
    let call = Call { fun: "cmd.run".to_string(), args, kwargs, grains: Arc::clone(grains) };
    // its own task, so that even a panic in it ends as a failed state
    let outcome = tokio::spawn(functions::call(call))
        .await
        .map_err(|e| format!("cmd.run stopped unexpectedly: {e}"))?;
    match outcome.ret {
        Value::Object(ret) => Ok((outcome.retcode, ret)),
        Value::String(message) => Err(message),
        other => Err(format!("cmd.run returned {other}")),
    }
}

fn shown(argv: &[String]) -> String {
    match argv {
        [sh, c, script] if sh == "/bin/sh" && c == "-c" => script.clone(),
        words => shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" ")),
    }
}
