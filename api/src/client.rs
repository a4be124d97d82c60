//! A blocking client for the master's API (ureq: one small synchronous request per CLI
//! call keeps the `drover` binary free of an async runtime and quick to start).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// The master failed (HTTP 5xx).
    #[error("master error: {0}")]
    Master(String),
    #[error("bad answer from the master: {0}")]
    BadAnswer(String),
}

pub struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl Client {
    /// Finds the master through `DIR/api.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join(API_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ClientError::NoApiFile {
            path: path.clone(),
            dir: dir.to_path_buf(),
            source,
        })?;
        let info: ApiInfo =
            serde_json::from_str(&text).map_err(|source| ClientError::BadApiFile { path, source })?;
        Ok(Self::new(&info))
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
        self.get("/jobs")
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

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.agent.get(&url).header("Authorization", &self.auth).call();
        self.answer(&url, resp)
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.agent.post(&url).header("Authorization", &self.auth).send_json(body);
        self.answer(&url, resp)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut resp = resp.map_err(|source| ClientError::Unreachable { url: url.to_string(), source })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer(e.to_string()));
        }
        let msg = serde_json::from_str::<ApiError>(&text).map(|e| e.error).unwrap_or(text);
        if status.is_client_error() { Err(ClientError::Refused(msg)) } else { Err(ClientError::Master(msg)) }
    }
}
