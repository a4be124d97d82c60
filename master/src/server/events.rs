//! `GET /events?since=SEQ&follow=true|false&tail=N`: newline-delimited JSON `api::Event`s.
//!
//! - `since=SEQ`: every stored event after SEQ, oldest first; without it, every stored
//!   event when not following, and only new ones when following (like `salt-run state.event`).
//! - `tail=N` (without `since`): the stored events whose seq is among the last N first (the
//!   dashboard's history when it opens), then as above.
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
}

pub async fn events(
    State(state): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, Failure> {
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
        if let Err(e) = stream(&store, since, live, &mut writer, &shutdown).await {
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
    out: &mut DuplexStream,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let mut last = catch_up(store, since, out).await?;
    let Some(mut live) = live else { return Ok(()) };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = live.recv() => next,
        };
        match next {
            Ok(event) if event.seq <= last => {}
            Ok(event) => {
                write(out, &event).await?;
                last = event.seq;
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "event stream fell behind; reading the store");
                last = catch_up(store, last, out).await?;
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Writes every stored event after `last`; returns the last one written (or `last`).
async fn catch_up(store: &Store, mut last: u64, out: &mut DuplexStream) -> Result<u64, StreamError> {
    loop {
        let page = store.events(last, PAGE).await?;
        for event in &page {
            write(out, event).await?;
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
