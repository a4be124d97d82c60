//! The jobs running on this minion: the table `saltutil.running` and `saltutil.find_job`
//! read, and that a kill (`wire::ToMinion::Kill`, `saltutil.kill_job`) acts on.
//!
//! The session starts every job as a task of its own and keeps its [`AbortHandle`] here;
//! it removes the job when the job's return is kept. Killing a job aborts that task: the
//! function's future is dropped, and with it what it runs (`cmd.*` kill their process
//! group when dropped), while the minion goes on. The session then sends the job's return
//! as killed ([`killed`]).
//!
//! The `saltutil.*` functions reach the table through [`current`]: each job runs inside
//! [`scope`], a task-local holding the table and the job's own jid, so a function gets the
//! minion's jobs without a process-wide global, and a test gets a table of its own. One
//! mutex guards the map, held only to read or change it, never across an await.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};
use tokio::task::AbortHandle;
use wire::Jid;

use crate::outcome::Outcome;

/// The retcode of a killed job: 128 + SIGKILL, as a shell reports a process it killed.
pub const KILLED_RETCODE: i32 = 137;

/// What the minion knows of one running job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    pub jid: Jid,
    pub fun: String,
    pub args: Vec<Value>,
    pub kwargs: BTreeMap<String, Value>,
    pub started_ms: u64,
}

impl JobInfo {
    /// Salt's shape of a running job: `{jid, fun, arg, kwarg, started_ms}`.
    pub fn to_value(&self) -> Value {
        json!({
            "jid": self.jid,
            "fun": self.fun,
            "arg": self.args,
            "kwarg": Map::from_iter(self.kwargs.clone()),
            "started_ms": self.started_ms,
        })
    }
}

/// The jobs running on this minion. Cheap to clone: every clone is the same table.
#[derive(Clone, Default)]
pub struct Running {
    jobs: Arc<Mutex<BTreeMap<Jid, (JobInfo, AbortHandle)>>>,
}

impl Running {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Jid, (JobInfo, AbortHandle)>) -> T) -> T {
        f(&mut self.jobs.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a started job; `abort` ends its task.
    pub fn insert(&self, info: JobInfo, abort: AbortHandle) {
        self.with(|jobs| jobs.insert(info.jid.clone(), (info, abort)));
    }

    /// Forgets a job (its return is kept).
    pub fn remove(&self, jid: &Jid) {
        self.with(|jobs| jobs.remove(jid));
    }

    pub fn contains(&self, jid: &Jid) -> bool {
        self.with(|jobs| jobs.contains_key(jid))
    }

    /// Every running job, oldest jid first.
    pub fn list(&self) -> Vec<JobInfo> {
        self.with(|jobs| jobs.values().map(|(info, _)| info.clone()).collect())
    }

    pub fn find(&self, jid: &Jid) -> Option<JobInfo> {
        self.with(|jobs| jobs.get(jid).map(|(info, _)| info.clone()))
    }

    /// Aborts job `jid`'s task, if it runs; its return (killed) follows from the session.
    /// The job stays listed until that return is kept.
    pub fn kill(&self, jid: &Jid) -> Option<JobInfo> {
        self.with(|jobs| {
            jobs.get(jid).map(|(info, abort)| {
                abort.abort();
                info.clone()
            })
        })
    }
}

/// What a job's function can see of the minion's jobs: the table, and its own jid.
#[derive(Clone)]
pub struct Context {
    pub running: Running,
    pub jid: Jid,
}

tokio::task_local! {
    static JOB: Context;
}

/// Runs `job` (a function's future) with `ctx` as its [`current`] context.
pub fn scope<F: Future>(ctx: Context, job: F) -> impl Future<Output = F::Output> {
    JOB.scope(ctx, job)
}

/// The context of the job running on this task, if it runs inside [`scope`].
pub fn current() -> Option<Context> {
    JOB.try_with(Context::clone).ok()
}

/// The return of a job killed after `ran_ms`: failed, [`KILLED_RETCODE`], and why.
pub fn killed(fun: &str, ran_ms: u64) -> Outcome {
    Outcome {
        success: false,
        retcode: KILLED_RETCODE,
        ret: Value::String(format!(
            "killed: {fun} was ended after {:.1}s by a kill (drover jobs kill, saltutil.kill_job); \
             its processes were sent SIGKILL",
            ran_ms as f64 / 1000.0
        )),
    }
}

/// The answer of a minion told to kill a job it does not run and never returned: failed,
/// so that the master stops counting it busy on that job.
pub fn not_running(jid: &Jid) -> Value {
    Value::String(format!(
        "killed: job {jid} was not running on this minion when the kill came (it never reached \
         it, or the minion restarted while it ran)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_killed_job_is_aborted_and_stays_listed_until_removed() {
        let running = Running::default();
        let jid = Jid::generate();
        let task = tokio::spawn(std::future::pending::<()>());
        let info = JobInfo {
            jid: jid.clone(),
            fun: "test.sleep".into(),
            args: vec![json!(60)],
            kwargs: BTreeMap::new(),
            started_ms: 5,
        };
        running.insert(info.clone(), task.abort_handle());
        assert_eq!(running.list(), vec![info.clone()]);
        assert_eq!(running.find(&jid), Some(info.clone()));
        assert_eq!(running.kill(&jid), Some(info));
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(running.contains(&jid));
        running.remove(&jid);
        assert!(running.list().is_empty());
        assert_eq!(running.kill(&jid), None);
    }

    #[tokio::test]
    async fn the_context_is_seen_only_inside_its_scope() {
        assert!(current().is_none());
        let jid = Jid::generate();
        let ctx = Context { running: Running::default(), jid: jid.clone() };
        let seen = scope(ctx, async { current().map(|c| c.jid) }).await;
        assert_eq!(seen, Some(jid));
    }

    #[test]
    fn a_killed_return_says_so() {
        let o = killed("cmd.run", 2_345);
        assert_eq!((o.success, o.retcode), (false, 137));
        let msg = o.ret.as_str().unwrap();
        assert!(msg.starts_with("killed: cmd.run was ended after 2.3s"), "{msg}");
    }
}
