//! Request and response bodies of the master's API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a target string is read (Salt's `tgt_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    /// Shell glob on minion ids (the default).
    #[default]
    Glob,
    /// Regular expression on minion ids (`-E`).
    Pcre,
    /// Comma-separated list of ids (`-L`).
    List,
    /// `grain:glob` (`-G`).
    Grain,
    /// Compound: `G@os:debian and web-* or L@a,b` (`-C`).
    Compound,
    /// `grain:regex` (`-P`).
    GrainPcre,
    /// An IPv4 network or address, matched against the `ipv4` grain (`-S`).
    Ipcidr,
}

/// `-b N` or `-b N%`: at most this many minions busy with the job at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batch {
    Count(u32),
    Percent(u32),
}

impl Batch {
    /// The window size for `targeted` minions: never less than 1.
    pub fn window(self, targeted: usize) -> usize {
        match self {
            Batch::Count(n) => n as usize,
            Batch::Percent(p) => (targeted * p as usize).div_ceil(100),
        }
        .max(1)
    }
}

impl FromStr for Batch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid batch {s:?}: expected a count like 10 or a percentage like 25%");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Batch::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Batch::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Batch::Count(n) => write!(f, "{n}"),
            Batch::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `POST /jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRequest {
    pub target: String,
    #[serde(default)]
    pub tgt_type: TargetType,
    pub fun: String,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: BTreeMap<String, Value>,
    /// Seconds to wait for each minion's return, counted from when it was sent the job.
    pub timeout_secs: f64,
    #[serde(default)]
    pub batch: Option<Batch>,
    /// `false` (`--async`): answer as soon as the job is published, with the jid only.
    #[serde(default = "yes")]
    pub wait: bool,
    /// The function's words as a user typed them (the dashboard's command box), for the
    /// master to split into `args` and `kwargs` as the CLI does ([`crate::words::split`]);
    /// only with `args` and `kwargs` empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
}

fn yes() -> bool {
    true
}

/// One minion's return as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinionReturn {
    pub success: bool,
    pub retcode: i32,
    pub ret: Value,
    /// When the minion started and finished the job (ms since the Unix epoch, its clock).
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// Answer to `POST /jobs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResponse {
    pub jid: String,
    /// Every minion the target selected, sorted.
    pub targeted: Vec<String>,
    /// Returns received before the answer (empty with `wait: false`).
    pub returns: BTreeMap<String, MinionReturn>,
    /// Connected minions that did not return within the timeout.
    pub timed_out: Vec<String>,
    /// Targeted minions that were not connected, so never got the job.
    pub not_connected: Vec<String>,
    /// Targeted minions a batch had not reached yet when the job was killed: they never
    /// got it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<String>,
}

/// One row of `GET /jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSummary {
    pub jid: String,
    pub fun: String,
    pub args: Vec<Value>,
    pub kwargs: BTreeMap<String, Value>,
    pub target: String,
    pub tgt_type: TargetType,
    pub created_ms: u64,
    pub targeted: usize,
    pub returned: usize,
    pub failed: usize,
    /// Targeted minions that were sent the job (or that its batch has yet to send it to)
    /// and have not returned: the master's view of who is still busy with it.
    #[serde(default)]
    pub busy: usize,
    /// When `drover jobs kill` ended it (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_ms: Option<u64>,
}

impl JobSummary {
    /// `killed`, `running` (some minion is busy with it) or `done`.
    pub fn status(&self) -> &'static str {
        match (self.killed_ms, self.busy) {
            (Some(_), _) => "killed",
            (None, 0) => "done",
            (None, _) => "running",
        }
    }
}

/// `GET /jobs` query: which jobs to list. Every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobsQuery {
    /// The newest this many (after filtering); 100 when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// A glob on the function (`cmd.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// A glob on the ids of the minions a job targeted (`web-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Jobs created at or after this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Only jobs with at least one failed return.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

/// One row of `GET /jobs/running`: a job some minion has not returned yet, and which.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunningJob {
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The minions sent the job that have not returned, sorted.
    pub busy_minions: Vec<String>,
}

/// Answer to `POST /jobs/{jid}/kill`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KillResponse {
    pub jid: String,
    /// Busy minions that were sent the kill; each returns the job as killed.
    pub sent: Vec<String>,
    /// Busy minions that are not connected now: the kill did not reach them.
    pub not_connected: Vec<String>,
    /// Minions a batch had not reached yet: they will never get the job.
    pub not_run: Vec<String>,
}

/// `GET /jobs/{jid}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub minions: Vec<String>,
    pub returns: BTreeMap<String, MinionReturn>,
}

/// A key's state, as its folder under `DIR/pki/` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Accepted,
    Pending,
    Rejected,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: String,
    pub fingerprint: String,
    pub state: KeyState,
}

/// `GET /keys`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyList {
    pub master_fingerprint: String,
    pub keys: Vec<KeyEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    Accept,
    Reject,
    Delete,
}

/// `POST /keys`: act on one id, or on every key the action applies to (`all`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyActionRequest {
    pub action: KeyAction,
    pub id: Option<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyActionResponse {
    /// Ids whose key changed state.
    pub changed: Vec<String>,
}

/// One row of `GET /minions`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MinionStatus {
    pub id: String,
    pub connected: bool,
    /// Last message from the minion, ms since the Unix epoch (0: never since master start).
    pub last_seen_ms: u64,
    pub grains: BTreeMap<String, Value>,
    /// The minion's own verdict, as it last reported it on its current session: its last
    /// apply of its current assignment succeeded and every daemon runs and passes its
    /// health check. Null when not connected or not reported yet.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Why it is not healthy, in one line (`daemon worker: exited with code 1 (restarting)`).
    #[serde(default)]
    pub problem: Option<String>,
}

/// Body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// Problems in the user's files, one `file:line:col: message` each (`roles apply`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// `POST /roles/apply`: validate and push the roles at a commit (default: HEAD).
/// A commit with any problem is refused whole (HTTP 422, `ApiError::diagnostics`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RolesApplyRequest {
    #[serde(default)]
    pub commit: Option<String>,
    /// Wait up to this many seconds for every connected minion to report how its apply of
    /// the commit went ([`MinionAssignment::outcome`]); none: answer once the assignments
    /// are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<f64>,
}

/// One minion's part in a roles apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinionAssignment {
    pub id: String,
    pub roles: Vec<String>,
    /// Whether its assignment differs from the one it had.
    pub changed: bool,
    /// Whether it was connected, so the assignment was sent now (else: when it connects).
    pub connected: bool,
    /// The serial of the assignment it was given; its reports echo it.
    #[serde(default)]
    pub serial: u64,
    /// How its apply of this assignment went, when the request waited and it reported in
    /// time; none: not waited for, not connected, or still applying at the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ApplyOutcome>,
}

/// A minion's report of applying its assignment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// Every state succeeded.
    pub result: bool,
    /// Ids of the states that failed.
    #[serde(default)]
    pub failing: Vec<String>,
    /// How many states changed something.
    #[serde(default)]
    pub changed: usize,
    /// Roles named in `requires` with no converged member yet: its daemons wait for them.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// One line: the first failure, or what it waits for.
    #[serde(default)]
    pub comment: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolesApplyResponse {
    /// The full commit id applied.
    pub commit: String,
    pub minions: Vec<MinionAssignment>,
    /// Whether the request waited for the minions' reports (`wait_secs`).
    #[serde(default)]
    pub waited: bool,
}

/// `POST /roles/test` ([`RolesApplyRequest`], `wait_secs` the job's timeout): every minion
/// the commit would change dry-runs its assignment at that commit (`state.apply test=true`
/// on it); no assignment changes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RolesTestResponse {
    /// The full commit id tested.
    pub commit: String,
    /// The job that ran the dry runs (`drover jobs show JID`); none when no minion would change.
    pub run: RunResponse,
    /// The accepted minions the commit would not change (not tested), sorted.
    #[serde(default)]
    pub unchanged: Vec<String>,
}

/// `GET /roles/diff?commit=REV`: what `roles apply` at REV would change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolesDiff {
    /// The commit compared with the current assignments.
    pub commit: String,
    /// The commit of the current assignments, if any was applied.
    pub current_commit: Option<String>,
    /// Only the minions that would change.
    pub minions: Vec<MinionDiff>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MinionDiff {
    pub id: String,
    pub roles_added: Vec<String>,
    pub roles_removed: Vec<String>,
    /// Repo paths whose content differs, was added, or was removed for this minion.
    pub files_changed: Vec<String>,
    pub files_added: Vec<String>,
    pub files_removed: Vec<String>,
}

/// One row of `GET /roles/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleStatus {
    pub id: String,
    pub connected: bool,
    pub roles: Vec<String>,
    /// The commit of the assignment the master last gave it.
    pub assigned_commit: Option<String>,
    /// The commit it last reported converging to.
    pub converged_commit: Option<String>,
    /// Result of its last apply: true all states succeeded, false some failed, null never applied.
    pub result: Option<bool>,
    /// Ids of the states that failed in its last apply.
    pub failing: Vec<String>,
    /// Roles it waits for (`requires`) before starting daemons.
    pub waiting: Vec<String>,
    pub comment: String,
}

/// One event, as `GET /events` streams them (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing; `GET /events?since=SEQ` starts after it.
    pub seq: u64,
    pub time_ms: u64,
    /// `drover/daemon/worker/crashed`, `drover/minion/connected`, `drover/key/accept`...
    pub tag: String,
    /// The minion it comes from, when it comes from one.
    pub minion: Option<String>,
    pub data: Value,
}

/// `POST /images/build?tag=NAME:VERSION&commit=C`: build an app image. The body is a tar
/// of its folder (`images/<name>/`: a Dockerfile `FROM base` and its context); the answer
/// streams [`ImageBuildLine`]s, one JSON object per line, the last one `done` or `failed`.
/// What can be refused at once (a bad tag or context, a tag that exists with other content,
/// no engine) is an error answer instead (400, 409, 503).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageBuildQuery {
    pub tag: String,
    /// The git commit of the folder, `-dirty` when it has changes; none outside a repo.
    #[serde(default)]
    pub commit: Option<String>,
}

/// One line of a build's progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageBuildLine {
    /// What happens next, or what was found (`base:0123456789ab is up to date`).
    Phase { text: String },
    /// A step of the engine's build: `step` of `of`.
    Step { step: u32, of: u32, text: String },
    /// A line of output of what runs (debootstrap, a `RUN`).
    Output { line: String },
    /// The end: the image (built, or up to date).
    Done { image: ImageBuilt },
    /// The end: the build failed; `last_lines` is the end of its output.
    Failed {
        error: String,
        #[serde(default)]
        last_lines: Vec<String>,
    },
}

/// The result of `POST /images/build`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageBuilt {
    #[serde(flatten)]
    pub image: ImageSummary,
    /// The base image it builds on (`base:<first 12 of its content hash>`).
    pub base: String,
    /// Whether the tag existed with this very content already (nothing was built).
    pub up_to_date: bool,
    pub seconds: f64,
}

/// One row of `GET /images[?name=NAME]`: an image drover built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    pub name: String,
    pub version: String,
    /// `name:version`
    pub tag: String,
    /// `sha256:…`
    pub id: String,
    /// The git commit it was built from (`-dirty`: with uncommitted changes).
    pub commit: Option<String>,
    /// The sha256 of everything it was built from.
    pub content: Option<String>,
    pub created_ms: u64,
    /// Bytes.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_parse_and_size_windows() {
        assert_eq!("2".parse(), Ok(Batch::Count(2)));
        assert_eq!("25%".parse(), Ok(Batch::Percent(25)));
        for bad in ["0", "0%", "101%", "x", "-1", "", "%"] {
            assert!(bad.parse::<Batch>().is_err(), "{bad}");
        }
        assert_eq!(Batch::Percent(10).window(50), 5);
        assert_eq!(Batch::Percent(10).window(3), 1);
        assert_eq!(Batch::Count(2).window(20), 2);
    }

    #[test]
    fn build_lines_are_tagged_objects() {
        let image = ImageSummary {
            name: "coins".into(),
            version: "1.0".into(),
            tag: "coins:1.0".into(),
            id: "sha256:ab".into(),
            commit: None,
            content: Some("cd".into()),
            created_ms: 1,
            size: 2,
        };
        let done = ImageBuildLine::Done {
            image: ImageBuilt { image, base: "base:0123456789ab".into(), up_to_date: true, seconds: 0.5 },
        };
        let text = serde_json::to_string(&done).unwrap();
        assert!(
            text.starts_with(r#"{"type":"done","image":{"name":"coins","version":"1.0","tag":"coins:1.0""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ImageBuildLine>(&text).unwrap(), done);
        let step: ImageBuildLine =
            serde_json::from_str(r#"{"type":"step","step":2,"of":7,"text":"RUN x"}"#).unwrap();
        assert_eq!(step, ImageBuildLine::Step { step: 2, of: 7, text: "RUN x".into() });
        let failed: ImageBuildLine = serde_json::from_str(r#"{"type":"failed","error":"no"}"#).unwrap();
        assert_eq!(failed, ImageBuildLine::Failed { error: "no".into(), last_lines: vec![] });
    }
}
