//! A blocking client for the master's API (ureq: one small synchronous request per CLI
//! call keeps the `drover` binary free of an async runtime and quick to start).
//!
//! No request has an overall timeout (only connecting has one): `roles apply` renders every
//! state before it answers, and `events` with `follow` stays open as long as the user wants.
//!
//! Where the master is found is logged at info, each request at debug (method, URL, then
//! the status and time of its answer), bodies at trace; the token never is.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, trace};

use crate::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source} (is drover-master running with --dir {dir}?)")]
    NoApiFile { path: PathBuf, dir: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    BadApiFile { path: PathBuf, source: serde_json::Error },
    #[error("cannot reach the master at {url}: {source} (is drover-master running?)")]
    Unreachable { url: String, source: ureq::Error },
    /// The master understood the request and refused it (HTTP 4xx): a usage error.
    #[error("{0}")]
    Refused(String),
    /// The user's files are broken (HTTP 422): `diagnostics` has one `file:line:col: message`
    /// each. Only `error` is in the message, so a caller prints the diagnostics itself.
    #[error("{error}")]
    Invalid { error: String, diagnostics: Vec<String> },
    /// The master cannot do it now: something it needs is unreachable (HTTP 503), such as
    /// the Docker engine. The message says what.
    #[error("{0}")]
    Unavailable(String),
    /// The master failed (HTTP 5xx).
    #[error("master error: {0}")]
    Master(String),
    #[error("bad answer from the master: {0}")]
    BadAnswer(String),
    /// A streamed answer broke off.
    #[error("lost the connection to the master at {url}: {source}")]
    Lost { url: String, source: std::io::Error },
}

pub struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// Reads `DIR/api.json`, where the master says how to reach it.
pub fn read_api_info(dir: &Path) -> Result<ApiInfo, ClientError> {
    let path = dir.join(API_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ClientError::NoApiFile {
        path: path.clone(),
        dir: dir.to_path_buf(),
        source,
    })?;
    let info: ApiInfo = serde_json::from_str(&text)
        .map_err(|source| ClientError::BadApiFile { path: path.clone(), source })?;
    info!("the master is at {} (from {})", info.url, path.display());
    Ok(info)
}

impl Client {
    /// Finds the master through `DIR/api.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ClientError> {
        Ok(Self::new(&read_api_info(dir)?))
    }

    pub fn new(info: &ApiInfo) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Self {
            base: format!("{}/api/v1", info.url.trim_end_matches('/')),
            auth: format!("Bearer {}", info.token),
            agent,
        }
    }

    pub fn run(&self, req: &RunRequest) -> Result<RunResponse, ClientError> {
        self.post("/jobs", req)
    }

    pub fn jobs(&self) -> Result<Vec<JobSummary>, ClientError> {
        self.jobs_where(&JobsQuery::default())
    }

    /// The jobs `query` selects, newest last.
    pub fn jobs_where(&self, query: &JobsQuery) -> Result<Vec<JobSummary>, ClientError> {
        let limit = query.limit.map(|n| n.to_string());
        let since = query.since_ms.map(|ms| ms.to_string());
        self.get_with(
            "/jobs",
            &[
                ("limit", limit.as_deref()),
                ("function", query.function.as_deref()),
                ("target", query.target.as_deref()),
                ("since_ms", since.as_deref()),
                ("failed", query.failed.then_some("true")),
            ],
        )
    }

    /// Jobs some minion has not returned yet, with those minions (the master's view).
    pub fn running_jobs(&self) -> Result<Vec<RunningJob>, ClientError> {
        self.get("/jobs/running")
    }

    /// Ends job `jid` on the minions still busy with it.
    pub fn kill_job(&self, jid: &str) -> Result<KillResponse, ClientError> {
        self.post(&format!("/jobs/{jid}/kill"), &serde_json::json!({}))
    }

    pub fn job(&self, jid: &str) -> Result<JobDetail, ClientError> {
        self.get(&format!("/jobs/{jid}"))
    }

    pub fn keys(&self) -> Result<KeyList, ClientError> {
        self.get("/keys")
    }

    pub fn key_action(&self, req: &KeyActionRequest) -> Result<KeyActionResponse, ClientError> {
        self.post("/keys", req)
    }

    pub fn minions(&self) -> Result<Vec<MinionStatus>, ClientError> {
        self.get("/minions")
    }

    /// Validates and pushes the roles at a commit. A commit with problems in its files is
    /// refused whole with [`ClientError::Invalid`] and its diagnostics.
    pub fn roles_apply(&self, req: &RolesApplyRequest) -> Result<RolesApplyResponse, ClientError> {
        self.post("/roles/apply", req)
    }

    /// `roles apply --test`: dry-run the commit on every minion it would change.
    pub fn roles_test(&self, req: &RolesApplyRequest) -> Result<RolesTestResponse, ClientError> {
        self.post("/roles/test", req)
    }

    /// What `roles_apply` at `commit` (default: HEAD) would change.
    pub fn roles_diff(&self, commit: Option<&str>) -> Result<RolesDiff, ClientError> {
        self.get_with("/roles/diff", &[("commit", commit)])
    }

    pub fn roles_status(&self) -> Result<Vec<RoleStatus>, ClientError> {
        self.get("/roles/status")
    }

    /// The event stream, after event `since` (without it: where the master starts). With
    /// `follow` it does not end: it yields new events as they happen, until the master
    /// closes it. A read that fails ends the stream after one [`ClientError::Lost`].
    pub fn events(&self, since: Option<u64>, follow: bool) -> Result<Events, ClientError> {
        self.events_tagged(since, follow, None)
    }

    /// [`Client::events`], only those whose tag matches the glob `tag` (`*` matches `/` too).
    pub fn events_tagged(
        &self,
        since: Option<u64>,
        follow: bool,
        tag: Option<&str>,
    ) -> Result<Events, ClientError> {
        let since = since.map(|s| s.to_string());
        let query = [
            ("since", since.as_deref()),
            ("follow", Some(if follow { "true" } else { "false" })),
            ("tag", tag),
        ];
        let (url, resp) = self.call_get("/events", &query);
        lines_answer(url, resp, "event")
    }

    /// Builds an app image from `context` (a tar of its folder) as `tag` (`name:version`).
    /// What the master refuses at once is an error here; otherwise the lines of its
    /// progress follow, the last one [`ImageBuildLine::Done`] or [`ImageBuildLine::Failed`].
    pub fn image_build(
        &self,
        context: &[u8],
        tag: &str,
        commit: Option<&str>,
    ) -> Result<Lines<ImageBuildLine>, ClientError> {
        let url = format!("{}/images/build", self.base);
        let mut req = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/x-tar")
            .query("tag", tag);
        if let Some(commit) = commit {
            req = req.query("commit", commit);
        }
        let sent = sending::<()>("POST", &format!("{url}?tag={tag} ({} bytes of tar)", context.len()), None);
        let resp = answered(req.send(context), sent);
        lines_answer(url, resp, "build progress line")
    }

    /// The images drover built (and the bases), or only the versions of `name`.
    pub fn images(&self, name: Option<&str>) -> Result<Vec<ImageSummary>, ClientError> {
        self.get_with("/images", &[("name", name)])
    }

    /// Starts a fleet operation (`up`, `scale`, `upgrade`, `undo`, `down`, `chaos`: the
    /// route's last word) and reads its answer line by line as the master sends it.
    pub fn fleet<B: Serialize>(
        &self,
        op: &str,
        body: &B,
    ) -> Result<Lines<crate::fleet::FleetLine>, ClientError> {
        self.post_lines(&format!("/fleet/{op}"), body)
    }

    /// Every slot of the fleet, as `drover ps` shows them.
    pub fn fleet_ps(&self) -> Result<Vec<crate::fleet::SlotStatus>, ClientError> {
        self.get("/fleet/ps")
    }

    /// The nodes the fleet runs on, and its headroom, as `drover nodes` shows them.
    pub fn fleet_nodes(&self) -> Result<crate::fleet::NodesReport, ClientError> {
        self.get("/fleet/nodes")
    }

    /// The fleet's rollouts, newest first.
    pub fn fleet_rollouts(&self) -> Result<Vec<crate::fleet::RolloutSummary>, ClientError> {
        self.get("/fleet/rollouts")
    }

    /// A POST whose answer is newline-delimited JSON, read as it comes.
    fn post_lines<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Lines<T>, ClientError> {
        let url = format!("{}{path}", self.base);
        let sent = sending("POST", &url, Some(body));
        let resp = self.agent.post(&url).header("Authorization", &self.auth).send_json(body);
        lines_answer(url, answered(resp, sent), "progress line")
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.get_with(path, &[])
    }

    /// A GET with query parameters, those given `None` left out; values are percent-encoded.
    fn get_with<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, Option<&str>)],
    ) -> Result<T, ClientError> {
        let (url, resp) = self.call_get(path, query);
        self.answer(&url, resp)
    }

    fn call_get(
        &self,
        path: &str,
        query: &[(&str, Option<&str>)],
    ) -> (String, Result<ureq::http::Response<ureq::Body>, ureq::Error>) {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url).header("Authorization", &self.auth);
        for (key, value) in query {
            if let Some(value) = value {
                req = req.query(key, value);
            }
        }
        let query: Vec<String> = query.iter().filter_map(|(k, v)| Some(format!("{k}={}", (*v)?))).collect();
        let shown = if query.is_empty() { url.clone() } else { format!("{url}?{}", query.join("&")) };
        let sent = sending::<()>("GET", &shown, None);
        let resp = answered(req.call(), sent);
        (url, resp)
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let sent = sending("POST", &url, Some(body));
        let resp = self.agent.post(&url).header("Authorization", &self.auth).send_json(body);
        self.answer(&url, answered(resp, sent))
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut resp = resp.map_err(|source| ClientError::Unreachable { url: url.to_string(), source })?;
        let status = resp.status();
        let text = body_text(&mut resp)?;
        trace!("answer: {}", shortened(&text));
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer(e.to_string()));
        }
        Err(refusal(status, text))
    }
}

/// Logs a request about to be sent; the time it was sent, for [`answered`].
fn sending<B: Serialize>(method: &str, url: &str, body: Option<&B>) -> Instant {
    debug!("{method} {url}");
    if let Some(body) = body {
        trace!(
            "body: {}",
            serde_json::to_string(body).map_or_else(|e| e.to_string(), |b| shortened(&b).to_string())
        );
    }
    Instant::now()
}

/// Logs how a request sent at `sent` was answered.
fn answered(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    sent: Instant,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let ms = sent.elapsed().as_secs_f64() * 1000.0;
    match &resp {
        Ok(r) => debug!("answered {} in {ms:.1} ms", r.status()),
        Err(e) => debug!("no answer after {ms:.1} ms: {e}"),
    }
    resp
}

/// At most 4 KiB of a body, for the log.
fn shortened(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 4096;
    if text.len() <= MAX {
        return text.into();
    }
    let end = (0..=MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
}

fn body_text(resp: &mut ureq::http::Response<ureq::Body>) -> Result<String, ClientError> {
    resp.body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| ClientError::BadAnswer(e.to_string()))
}

/// The error an answer that is not a success stands for: its body is an [`ApiError`].
fn refusal(status: ureq::http::StatusCode, text: String) -> ClientError {
    let (error, diagnostics) = match serde_json::from_str::<ApiError>(&text) {
        Ok(e) => (e.error, e.diagnostics),
        Err(_) => (text, Vec::new()),
    };
    if status == ureq::http::StatusCode::UNPROCESSABLE_ENTITY {
        ClientError::Invalid { error, diagnostics }
    } else if status.is_client_error() {
        ClientError::Refused(error)
    } else if status == ureq::http::StatusCode::SERVICE_UNAVAILABLE {
        ClientError::Unavailable(error)
    } else {
        ClientError::Master(error)
    }
}

/// The events of `GET /events`, as the master sends them.
pub type Events = Lines<Event>;

/// A streamed answer's lines, or the refusal its status stands for.
fn lines_answer<T>(
    url: String,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &'static str,
) -> Result<Lines<T>, ClientError> {
    let mut resp = resp.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(refusal(status, body_text(&mut resp)?));
    }
    let reader = BufReader::new(resp.into_body().into_reader());
    Ok(Lines { url, lines: reader.lines(), done: false, what, item: std::marker::PhantomData })
}

/// A newline-delimited JSON answer, one `T` a line, read as the master sends it (blank
/// lines, which a master may send to keep the connection alive, are skipped). A read that
/// fails ends it after one [`ClientError::Lost`].
pub struct Lines<T> {
    url: String,
    lines: std::io::Lines<BufReader<ureq::BodyReader<'static>>>,
    done: bool,
    /// What a line is, for errors: `event`.
    what: &'static str,
    item: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Iterator for Lines<T> {
    type Item = Result<T, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.lines.next()? {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => {
                    return Some(
                        serde_json::from_str(&line)
                            .map_err(|e| ClientError::BadAnswer(format!("{} {line:?}: {e}", self.what))),
                    );
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(ClientError::Lost { url: self.url.clone(), source }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ureq::http::StatusCode;

    use super::*;

    #[test]
    fn refusals_become_errors_by_status() {
        let body = r#"{"error": "commit abc has 1 error", "diagnostics": ["roles/a.yaml:1:1: bad"]}"#;
        match refusal(StatusCode::UNPROCESSABLE_ENTITY, body.to_string()) {
            ClientError::Invalid { error, diagnostics } => {
                assert_eq!(error, "commit abc has 1 error");
                assert_eq!(diagnostics, ["roles/a.yaml:1:1: bad"]);
            }
            other => panic!("{other:?}"),
        }
        let table = [
            (StatusCode::BAD_REQUEST, r#"{"error": "bad target"}"#, "Refused(\"bad target\")"),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "not json",
                "Invalid { error: \"not json\", diagnostics: [] }",
            ),
            (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error": "locked"}"#, "Master(\"locked\")"),
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"error": "no engine"}"#, "Unavailable(\"no engine\")"),
        ];
        for (status, body, want) in table {
            assert_eq!(format!("{:?}", refusal(status, body.to_string())), want, "{status}");
        }
    }
}
