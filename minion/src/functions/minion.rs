//! `minion.kill`: the minion ends itself at once, as `kill -9` would end it, a moment after
//! its return is on its way. In a fleet container the minion is PID 1, so the container
//! dies with it and the engine's restart policy (Swarm's, or drover's healer) replaces it:
//! the chaos monkey's kill on any node (`drover chaos kill` on Swarm), where the master's
//! engine cannot reach the container itself.

use std::time::Duration;

use super::{Call, Outcome, arity, known_kwargs};

/// The exit status: that of a process killed by SIGKILL, as a shell shows it.
pub const KILLED: i32 = 137;

/// How long the minion waits before it ends: its return is spooled and sent by then.
const GRACE: Duration = Duration::from_millis(500);

/// `minion.kill` → `{killed: <pid>, in_ms}`; then the process exits with [`KILLED`], its
/// daemons left as they are (as after a `kill -9`; in a container they die with it).
/// Only in a running minion (one with a supervisor): a call without one fails.
pub fn kill(call: &Call) -> Outcome {
    let usage = "minion.kill";
    if let Err(o) = arity(call, 0..=0, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    if call.services.supervisor.is_none() {
        return Outcome::fail("minion.kill ends a running minion; this call was made outside one");
    }
    let pid = std::process::id();
    tracing::warn!(pid, "minion.kill: ending this minion as `kill -9` would");
    // a thread of its own: the exit comes whatever the runtime is busy with
    std::thread::spawn(|| {
        std::thread::sleep(GRACE);
        std::process::exit(KILLED);
    });
    Outcome::ok(serde_json::json!({"killed": pid, "in_ms": GRACE.as_millis() as u64}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_running_minion_it_refuses_and_takes_no_arguments() {
        let call = |args: Vec<serde_json::Value>| Call {
            fun: "minion.kill".into(),
            args,
            kwargs: Default::default(),
            grains: Default::default(),
            services: Default::default(),
        };
        let out = kill(&call(vec![]));
        assert!(!out.success && out.ret.as_str().is_some_and(|m| m.contains("outside")), "{out:?}");
        let out = kill(&call(vec![serde_json::json!(1)]));
        assert!(!out.success && out.ret.as_str().is_some_and(|m| m.contains("minion.kill")), "{out:?}");
    }
}
