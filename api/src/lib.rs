//! The master's local API, spoken over HTTP on 127.0.0.1 with a bearer token.
//!
//! - [`types`]: requests and responses (JSON), shared by the master's server and clients.
//! - [`fleet`]: the fleet's requests, streamed progress and answers (`drover up`, `ps`...).
//! - [`client`] (feature `client`): a blocking client; the `drover` CLI's only way in.
//! - [`short`]: how commit ids and content hashes are shown.
//! - [`words`]: a function's words split into arguments and keyword arguments.
//! - [`ApiInfo`]: `DIR/api.json`, where the master says how to reach it.
//!
//! Routes (all under `/api/v1`, all need `Authorization: Bearer <token>`; the master also
//! serves its dashboard page, public and without data, at `/`):
//! `POST /jobs` runs a job ([`RunRequest`] → [`RunResponse`]), `GET /jobs` lists jobs,
//! `GET /jobs/{jid}` shows one ([`JobDetail`]), `GET /keys` and `POST /keys` list and
//! change minion keys, `GET /minions` lists minions with their connection state,
//! `POST /roles/apply` ([`RolesApplyRequest`]), `GET /roles/diff?commit=REV`, `GET /roles/status`,
//! `GET /events?since=SEQ&follow=true` (newline-delimited JSON [`Event`]s; with `follow` the
//! answer stays open and streams new events as they happen), `POST /images/build?tag=&commit=`
//! (a tar of the image's folder in, [`ImageBuildLine`]s out, one per line), `GET /images`
//! ([`ImageSummary`]s).

pub mod fleet;
pub mod short;
pub mod types;
pub mod words;

#[cfg(feature = "client")]
pub mod client;

pub use short::{short, short_commit};
pub use types::*;

/// The file name the master writes under its directory once it serves its API.
pub const API_FILE: &str = "api.json";

/// Contents of `DIR/api.json` (mode 0600): where the API listens and its bearer token.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ApiInfo {
    pub url: String,
    pub token: String,
}
