//! What the fleet's commands share: start an operation, follow its progress, print its
//! outcome (`--out json|yaml`: the outcome as one document), and the exit status.
//!
//! Exit status: 0 the operation did everything and every slot it waited for is ready; 1 it
//! ran and something is not as asked (a slot not ready, a rollout rolled back or paused);
//! 2 it was refused before it changed anything (bad request, no such role or image, another
//! operation running, the Docker engine unreachable).

use serde::Serialize;

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::progress::{self, Ended};
use crate::output::{self, Out};

/// Runs the fleet operation `op` with `body` to its end.
pub fn operate<B: Serialize>(ctx: &mut Ctx, op: &str, body: &B) -> anyhow::Result<Exit> {
    let client = ctx.client()?;
    let lines = client.fleet(op, body).map_err(api_error)?;
    match progress::follow(lines, ctx.stderr).map_err(api_error)? {
        Ended::Failed(failure) if failure.refused => Err(anyhow::Error::msg(failure.error)),
        Ended::Failed(failure) => {
            ctx.note(&format!("drover: {}", failure.error))?;
            Ok(Exit::Failed)
        }
        Ended::Done(outcome) => {
            let text = match ctx.out() {
                Out::Json => output::json(&outcome)?,
                Out::Yaml => output::yaml(&outcome)?,
                Out::Text | Out::Highstate => progress::outcome_text(&outcome),
            };
            ctx.print(&text)?;
            Ok(if outcome.ok() { Exit::Success } else { Exit::Failed })
        }
    }
}

/// `--timeout` as a number of seconds.
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim_end_matches('s').parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v > 0.0 && v <= 86_400.0 { Ok(v) } else { Err(format!("{s} is not between 0 and 86400 seconds")) }
}

/// A duration as `10s`, `500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let bad = || format!("{s:?} is not a duration: expected 10s, 500ms, 2m or seconds");
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let v = v * scale;
    if v > 0.0 && v <= 86_400.0 { Ok(v) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10.0));
        assert_eq!(parse_duration("500ms"), Ok(0.5));
        assert_eq!(parse_duration("2m"), Ok(120.0));
        assert_eq!(parse_duration("7"), Ok(7.0));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_secs("30"), Ok(30.0));
        assert!(parse_secs("-1").is_err());
    }
}
