//! `GET /events?since=SEQ&follow=true|false&tail=N`: newline-delimited JSON `api::Event`s.
//!
//! - `since=SEQ`: every stored event after SEQ, oldest first; without it, every stored
//!   event when not following, and only new ones when following (like `salt-run state.event`).
//! - `tail=N` (without `since`): the stored events whose seq is among the last N first (the
//!   dashboard's history when it opens), then as above.
//! - `tag=GLOB`: only events whose tag matches (`drover/job/*/ret/*`; `*` matches `/` too,
//!   as in Salt's event matching), for `since`, `tail` and the live part alike; `tail`
//!   still counts every event.
//! - `follow=true`: the answer stays open and streams each event once the store committed
//!   it. A stream that falls behind the broadcast catches up from the events table, so it
//!   skips nothing and repeats nothing (it goes by `seq`). It ends when the master stops.

use api::Event;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::{ApiState, Failure, internal};
use crate::store::Store;

/// Events read from the store at once.
const PAGE: usize = 1000;

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    since: Option<u64>,
    #[serde(default)]
    follow: bool,
    tail: Option<u64>,
    tag: Option<String>,
}

/// The events a stream passes on: all, or those whose tag matches a glob.
#[derive(Clone)]
struct Filter(Option<globset::GlobMatcher>);

impl Filter {
    fn new(tag: Option<&str>) -> Result<Self, Failure> {
        let Some(tag) = tag else { return Ok(Self(None)) };
        let glob = globset::GlobBuilder::new(tag).literal_separator(false).build().map_err(|e| {
            Failure::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("bad tag glob {tag:?}: {}; e.g. 'drover/job/*'", e.kind()),
            )
        })?;
        Ok(Self(Some(glob.compile_matcher())))
    }

    fn passes(&self, event: &Event) -> bool {
        self.0.as_ref().is_none_or(|glob| glob.is_match(&event.tag))
    }
}

pub async fn events(
    State(state): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, Failure> {
    let filter = Filter::new(q.tag.as_deref())?;
    // subscribe before reading the past, so nothing falls between the two
    let live = q.follow.then(|| state.store.subscribe());
    let since = match (q.since, q.tail) {
        (Some(seq), _) => seq,
        (None, Some(n)) => state.store.last_event().await.map_err(internal)?.saturating_sub(n),
        (None, None) if q.follow => state.store.last_event().await.map_err(internal)?,
        (None, None) => 0,
    };
    let (mut writer, reader) = tokio::io::duplex(64 << 10);
    let (store, shutdown) = (state.store.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = stream(&store, since, live, &filter, &mut writer, &shutdown).await {
            tracing::debug!(error = %e, "event stream ended");
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(ReaderStream::new(reader)))
        .into_response())
}

type StreamError = Box<dyn std::error::Error + Send + Sync>;

async fn stream(
    store: &Store,
    since: u64,
    live: Option<broadcast::Receiver<Event>>,
    filter: &Filter,
    out: &mut DuplexStream,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let mut last = catch_up(store, since, filter, out).await?;
    let Some(mut live) = live else { return Ok(()) };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = live.recv() => next,
        };
        match next {
            Ok(event) if event.seq <= last => {}
            Ok(event) => {
                if filter.passes(&event) {
                    write(out, &event).await?;
                }
                last = event.seq;
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "event stream fell behind; reading the store");
                last = catch_up(store, last, filter, out).await?;
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Writes every stored event after `last` that `filter` passes; returns the last one read
/// (or `last`).
async fn catch_up(
    store: &Store,
    mut last: u64,
    filter: &Filter,
    out: &mut DuplexStream,
) -> Result<u64, StreamError> {
    loop {
        let page = store.events(last, PAGE).await?;
        for event in &page {
            if filter.passes(event) {
                write(out, event).await?;
            }
            last = event.seq;
        }
        if page.len() < PAGE {
            return Ok(last);
        }
    }
}

async fn write(out: &mut DuplexStream, event: &Event) -> Result<(), StreamError> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(tag: &str) -> Event {
        Event { seq: 1, time_ms: 0, tag: tag.into(), minion: None, data: json!(null) }
    }

    #[test]
    fn a_tag_glob_matches_across_slashes() {
        let jobs = Filter::new(Some("drover/job/*")).unwrap_or_else(|_| panic!("a good glob"));
        assert!(jobs.passes(&event("drover/job/20250101120000000001/new")));
        assert!(jobs.passes(&event("drover/job/20250101120000000001/ret/web-1")));
        assert!(!jobs.passes(&event("drover/minion/web-1/drover/job/x/new")));
        let rets = Filter::new(Some("drover/job/*/ret/web-?")).unwrap_or_else(|_| panic!("a good glob"));
        assert!(rets.passes(&event("drover/job/1/ret/web-1")));
        assert!(!rets.passes(&event("drover/job/1/new")));
        assert!(Filter::new(None).unwrap_or_else(|_| panic!("no glob")).passes(&event("x")));
        assert!(Filter::new(Some("drover/[job")).is_err());
    }
}
