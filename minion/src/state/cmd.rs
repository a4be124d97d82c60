//! `cmd.run` as a state: run a command unless its guards say it is not needed.
//!
//! The guards, as in Salt: skip when every `creates` path exists, when any `onlyif`
//! command exits non-zero, or when every `unless` command exits 0. The guards run with the
//! command's `cwd`, `env` and `runas`, also with `test` (they only look). Each runs as the
//! argv render made of it (`/bin/sh -c <line>` for a command line, unless `shell: false`)
//! through the `cmd.*` functions' [`Command`].

use std::path::Path;
use std::time::Duration;

use render::CmdRun;
use serde_json::{Map, Value};

use super::Outcome;
use crate::functions::cmd::{self, Command, Streams};

pub(super) async fn run(c: &CmdRun, test: bool) -> Outcome {
    if !c.creates.is_empty() && c.creates.iter().all(|p| Path::new(p).exists()) {
        return Outcome::ok(format!("all files in creates exist: {}", c.creates.join(", ")));
    }
    for check in &c.onlyif {
        match exec(check, c).await {
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
            match exec(check, c).await {
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
    match exec(&c.argv, c).await {
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
async fn exec(argv: &[String], c: &CmdRun) -> Result<(i32, Map<String, Value>), String> {
    let runas = match &c.runas {
        Some(user) => Some(cmd::account(user).map_err(|e| format!("runas {user}: {e}"))?),
        None => None,
    };
    let command = Command {
        argv: argv.to_vec(),
        cwd: c.cwd.as_deref().map(cmd::existing_dir).transpose()?,
        env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timeout: Some(Duration::from_millis(c.timeout_ms)),
        stdin: None,
        runas,
    };
    // its own task, so that even a panic in it ends as a failed state
    let ran = tokio::spawn(command.run(Streams::Separate))
        .await
        .map_err(|e| format!("cmd.run stopped unexpectedly: {e}"))?
        .map_err(|e| e.message)?;
    Ok((ran.retcode, ran.into_map()))
}

fn shown(argv: &[String]) -> String {
    match argv {
        [sh, c, script] if sh == "/bin/sh" && c == "-c" => script.clone(),
        words => shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" ")),
    }
}
