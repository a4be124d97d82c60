//! Job control and job events: what `drover jobs kill` does (mark the job killed in the
//! store, then have the hub send the kill to the minions still busy with it), and the
//! events the master records for every job.
//!
//! Job events are the master's: `drover/job/<jid>/new` when a job is published,
//! `drover/job/<jid>/ret/<id>` when a minion's return is kept (once per return), and
//! `drover/job/<jid>/kill` when it is killed. A minion's own events are filed under
//! `drover/minion/<id>/...` (`hub::minion_tag`), so no minion can make one of these.

use std::time::Duration;

use api::KillResponse;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use wire::{Jid, JobReturn, MinionId};

use crate::hub::Command;
use crate::store::{JobRecord, Store, StoreError};

/// The largest return (as JSON) a `ret` event carries; a larger one is left out of the
/// event (`return_bytes` says how large it was) and read with `drover jobs show`.
pub const MAX_EVENT_RETURN: usize = 16 << 10;

/// `drover/job/<jid>/new`, `drover/job/<jid>/kill`...
pub fn tag(jid: &Jid, what: &str) -> String {
    format!("drover/job/{jid}/{what}")
}

/// `drover/job/<jid>/ret/<id>`.
pub fn ret_tag(jid: &Jid, id: &MinionId) -> String {
    format!("drover/job/{jid}/ret/{id}")
}

/// The data of a `new` event: Salt's new-job fields.
pub fn new_data(job: &JobRecord, timeout: Duration) -> Value {
    json!({
        "jid": job.jid,
        "fun": job.fun,
        "arg": job.args,
        "kwarg": job.kwargs,
        "tgt": job.target,
        "tgt_type": job.tgt_type,
        "minions": job.minions,
        "timeout_secs": timeout.as_secs_f64(),
    })
}

/// The data of a `ret` event: the return, its value left out past [`MAX_EVENT_RETURN`].
pub fn ret_data(r: &JobReturn) -> Value {
    let mut data = json!({
        "jid": r.jid,
        "id": r.id,
        "fun": r.fun,
        "success": r.success,
        "retcode": r.retcode,
        "started_ms": r.started_ms,
        "finished_ms": r.finished_ms,
        "killed": r.killed,
    });
    let bytes = serde_json::to_vec(&r.ret).map_or(usize::MAX, |v| v.len());
    if bytes <= MAX_EVENT_RETURN {
        data["return"] = r.ret.clone();
    } else {
        data["return_bytes"] = json!(bytes);
    }
    data
}

/// Why a kill did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("no job {0} (see 'drover jobs list')")]
    NotFound(Jid),
    #[error("job {0} is not running: every minion it was sent to has returned (see 'drover jobs show {0}')")]
    NotRunning(Jid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the master is shutting down")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the master is shutting down")]
    Stopped,
}

/// A job to start ([`start`]): what to call, on whom (already resolved), and how long to
/// wait for the returns.
pub struct NewJob {
    pub fun: String,
    pub args: Vec<Value>,
    pub kwargs: std::collections::BTreeMap<String, Value>,
    /// The target as the user wrote it, kept with the job.
    pub target: String,
    pub tgt_type: api::TargetType,
    pub targeted: Vec<MinionId>,
    pub timeout: Duration,
    pub batch: Option<api::Batch>,
}

/// Starts a job: recorded in the store (its `new` event queued before the hub sends it,
/// so it comes before every return's), then handed to the hub. Returns its jid and what
/// answers when every targeted minion returned or timed out.
pub async fn start(
    store: &Store,
    hub: &mpsc::Sender<Command>,
    job: NewJob,
) -> Result<(Jid, oneshot::Receiver<api::RunResponse>), StartError> {
    let jid = Jid::generate();
    let record = JobRecord {
        jid: jid.clone(),
        fun: job.fun.clone(),
        args: job.args.clone(),
        kwargs: job.kwargs.clone(),
        target: job.target,
        tgt_type: job.tgt_type,
        minions: job.targeted.clone(),
        created_ms: wire::msg::now_ms(),
    };
    let new = new_data(&record, job.timeout);
    store.insert_job(record).await?;
    store.event(None, &tag(&jid, "new"), new)?;
    let wire_job = wire::Job {
        jid: jid.clone(),
        fun: job.fun,
        args: job.args,
        kwargs: job.kwargs,
        timeout_ms: Some(job.timeout.as_millis() as u64),
    };
    let (reply, answer) = oneshot::channel();
    let start = Command::Start {
        job: wire_job,
        targeted: job.targeted,
        timeout: job.timeout,
        batch: job.batch,
        reply,
    };
    hub.send(start).await.map_err(|_| StartError::Stopped)?;
    Ok((jid, answer))
}

/// Kills job `jid`: records it killed, then has the hub send the kill to each minion the
/// store counts busy with it (sent the job, no return) and drop what a batch had not sent
/// yet. Each busy minion that gets the kill returns the job as killed, which ends it in
/// the store. Refused when no minion is busy with it, so a finished job is never marked.
pub async fn kill(store: &Store, hub: &mpsc::Sender<Command>, jid: Jid) -> Result<KillResponse, KillError> {
    let job = store.busy(jid.clone()).await?.ok_or_else(|| KillError::NotFound(jid.clone()))?;
    if job.busy_minions.is_empty() {
        return Err(KillError::NotRunning(jid));
    }
    store.kill(jid.clone(), wire::msg::now_ms()).await?;
    let busy = job.busy_minions.iter().filter_map(|id| MinionId::new(id.as_str()).ok()).collect();
    let (reply, answer) = oneshot::channel();
    let fun = job.summary.fun;
    hub.send(Command::Kill { jid: jid.clone(), fun, busy, reply }).await.map_err(|_| KillError::Stopped)?;
    let killed = answer.await.map_err(|_| KillError::Stopped)?;
    let data = serde_json::to_value(&killed).unwrap_or(Value::Null);
    store.event(None, &tag(&jid, "kill"), data)?;
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ret(value: Value) -> JobReturn {
        JobReturn {
            jid: Jid("20250101120000000001".into()),
            id: MinionId::new("web-1").unwrap(),
            fun: "cmd.run".into(),
            success: false,
            retcode: 137,
            ret: value,
            started_ms: 1,
            finished_ms: 2,
            killed: false,
        }
    }

    #[test]
    fn tags_are_the_masters_and_name_the_job() {
        let r = ret(json!("killed"));
        assert_eq!(tag(&r.jid, "new"), "drover/job/20250101120000000001/new");
        assert_eq!(ret_tag(&r.jid, &r.id), "drover/job/20250101120000000001/ret/web-1");
    }

    #[test]
    fn a_ret_event_carries_a_small_return_and_only_the_size_of_a_large_one() {
        let data = ret_data(&ret(json!("killed")));
        assert_eq!(data["return"], json!("killed"));
        assert_eq!((data["id"].clone(), data["retcode"].clone()), (json!("web-1"), json!(137)));
        let large = "x".repeat(MAX_EVENT_RETURN);
        let data = ret_data(&ret(json!(large)));
        assert!(data.get("return").is_none());
        assert_eq!(data["return_bytes"], json!(MAX_EVENT_RETURN + 2));
    }
}
