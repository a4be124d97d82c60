//! `saltutil.running`, `saltutil.find_job` and `saltutil.kill_job`: the jobs this minion
//! runs now, as Salt's minion answers them, from the table in [`crate::jobs`].
//!
//! `drover jobs running` and `drover jobs kill` are the master's side of the same: the
//! master's view of which minions have not returned, and a kill sent to those. These
//! functions are the minion's own view, for when the two may differ (a minion restarted
//! while it ran a job, or the master did).

use serde_json::{Map, Value};
use wire::Jid;

use super::{Call, Outcome, arity, known_kwargs, scalar_string};
use crate::jobs::{self, Running};

/// `saltutil.running` → the jobs running on this minion (`{jid, fun, arg, kwarg,
/// started_ms}` each, oldest first), this one left out.
pub fn running(call: &Call) -> Outcome {
    let usage = "saltutil.running";
    if let Err(o) = arity(call, 0..=0, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    let Some(ctx) = jobs::current() else { return outside_a_job(call) };
    let listed = ctx.running.list().into_iter().filter(|job| job.jid != ctx.jid).map(|job| job.to_value());
    Outcome::ok(Value::Array(listed.collect()))
}

/// `saltutil.find_job <jid>` → that job's `{jid, fun, arg, kwarg, started_ms}` while it
/// runs here, else `{}` (as Salt answers).
pub fn find_job(call: &Call) -> Outcome {
    let (running, jid) = match job_of(call, "saltutil.find_job <jid>") {
        Ok(found) => found,
        Err(o) => return o,
    };
    Outcome::ok(running.find(&jid).map_or_else(|| Value::Object(Map::new()), |job| job.to_value()))
}

/// `saltutil.kill_job <jid>` → ends that job (its task, so its process group) and returns
/// `{jid, fun, killed: true}`; the job's own return follows, as killed. Fails when the job
/// does not run here.
pub fn kill_job(call: &Call) -> Outcome {
    let (running, jid) = match job_of(call, "saltutil.kill_job <jid>") {
        Ok(found) => found,
        Err(o) => return o,
    };
    match running.kill(&jid) {
        Some(job) => Outcome::ok(serde_json::json!({"jid": job.jid, "fun": job.fun, "killed": true})),
        None => Outcome::fail(format!(
            "job {jid} is not running on this minion (saltutil.running lists the jobs that are)"
        )),
    }
}

/// The table and the jid a `saltutil.*_job <jid>` call names.
fn job_of(call: &Call, usage: &str) -> Result<(Running, Jid), Outcome> {
    arity(call, 1..=1, usage).and_then(|()| known_kwargs(call, &[], usage))?;
    let jid = scalar_string(&call.args[0]).filter(|s| Jid::is_valid(s)).ok_or_else(|| {
        Outcome::fail(format!(
            "{} expects a jid (20 digits, as 'drover jobs running' shows), got {}; usage: {usage}",
            call.fun, call.args[0]
        ))
    })?;
    let ctx = jobs::current().ok_or_else(|| outside_a_job(call))?;
    Ok((ctx.running, Jid(jid)))
}

fn outside_a_job(call: &Call) -> Outcome {
    Outcome::fail(format!("{} can only run as a job of the minion's session", call.fun))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::tests::run;
    use crate::jobs::{Context, JobInfo, Running, scope};
    use wire::Jid;

    /// A table with one sleeping job, and the jid of the job asking.
    fn table() -> (Running, JobInfo, tokio::task::JoinHandle<()>, Jid) {
        let running = Running::default();
        let task = tokio::spawn(std::future::pending::<()>());
        let info = JobInfo {
            jid: Jid::generate(),
            fun: "cmd.run".into(),
            args: vec![json!("sleep 60")],
            kwargs: BTreeMap::new(),
            started_ms: 1,
        };
        running.insert(info.clone(), task.abort_handle());
        let asking = Jid::generate();
        let own = tokio::spawn(std::future::pending::<()>());
        running.insert(
            JobInfo { jid: asking.clone(), fun: "saltutil.running".into(), ..info.clone() },
            own.abort_handle(),
        );
        (running, info, task, asking)
    }

    async fn ask(running: &Running, asking: &Jid, fun: &str, args: Vec<serde_json::Value>) -> super::Outcome {
        let ctx = Context { running: running.clone(), jid: asking.clone() };
        scope(ctx, run(fun, args, &[])).await
    }

    #[tokio::test]
    async fn running_lists_the_other_jobs_and_find_job_finds_one() {
        let (running, info, _task, asking) = table();
        let o = ask(&running, &asking, "saltutil.running", vec![]).await;
        assert!(o.success);
        assert_eq!(o.ret, json!([info.to_value()]));
        assert_eq!(o.ret[0]["fun"], json!("cmd.run"));
        let o = ask(&running, &asking, "saltutil.find_job", vec![json!(info.jid.as_str())]).await;
        assert_eq!(o.ret, info.to_value());
        let gone = Jid::generate();
        let o = ask(&running, &asking, "saltutil.find_job", vec![json!(gone.as_str())]).await;
        assert_eq!((o.success, o.ret), (true, json!({})));
    }

    #[tokio::test]
    async fn kill_job_aborts_the_job_and_says_which() {
        let (running, info, task, asking) = table();
        let o = ask(&running, &asking, "saltutil.kill_job", vec![json!(info.jid.as_str())]).await;
        assert_eq!((o.success, o.ret), (true, json!({"jid": info.jid, "fun": "cmd.run", "killed": true})));
        assert!(task.await.unwrap_err().is_cancelled());
        let other = Jid::generate();
        let o = ask(&running, &asking, "saltutil.kill_job", vec![json!(other.as_str())]).await;
        assert!(!o.success);
        assert!(o.ret.as_str().unwrap().contains("is not running on this minion"), "{}", o.ret);
    }

    #[tokio::test]
    async fn bad_jids_and_calls_outside_a_job_say_what_was_wrong() {
        let (running, _, _task, asking) = table();
        let o = ask(&running, &asking, "saltutil.kill_job", vec![json!("soon")]).await;
        assert!(o.ret.as_str().unwrap().contains("expects a jid (20 digits"), "{}", o.ret);
        let o = run("saltutil.running", vec![], &[]).await;
        assert!(!o.success);
        assert!(o.ret.as_str().unwrap().contains("can only run as a job"), "{}", o.ret);
    }
}
