//! `POST /images/build?tag=NAME:VERSION&commit=C` (a tar of `images/<name>/` in, progress
//! out as newline-delimited JSON `api::ImageBuildLine`s) and `GET /images[?name=NAME]`.
//!
//! The handlers ask `fleet::image::Builder`, which holds the decisions. What can be refused
//! at once is an error answer (400 bad input, 409 a tag that exists with other content, 503
//! no engine or nothing to build with); the slow part runs in a task of its own and streams
//! its progress, then `done` or `failed`. A client that goes away stops watching, not the
//! build: a base built halfway would be work lost.
//!
//! The engine is reached on the first request that needs it (a master without Docker still
//! serves plain hosts), and again on the next request after it was unreachable. The base
//! image's definition is `images/base/base.yaml` of the config repository (`--repo`), read
//! from its working tree when a build needs it.

use std::path::PathBuf;
use std::time::Instant;

use api::{ImageBuildLine, ImageBuildQuery, ImageBuilt, ImageSummary};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use fleet::EngineError;
use fleet::docker::Docker;
use fleet::image::{
    Builder, Built, Debootstrap, ImageError, ImageRecord, Paths, Prepared, Progress, Request,
};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio_util::io::ReaderStream;

use super::{ApiState, Failure, internal};
use crate::Config;

/// The largest build context accepted (the tar of `images/<name>/`).
pub const MAX_CONTEXT: usize = 512 << 20;

/// What image builds need: the engine, once reached, and where builds work.
pub struct Images {
    engine: tokio::sync::OnceCell<Docker>,
    paths: Paths,
}

impl Images {
    pub fn new(cfg: &Config) -> Images {
        let minion = cfg.minion_bin.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("drover-minion")))
                .unwrap_or_else(|| PathBuf::from("drover-minion"))
        });
        Images {
            engine: tokio::sync::OnceCell::new(),
            paths: Paths {
                base: cfg.repo.join("images").join(fleet::image::BASE),
                work: cfg.build_dir.clone().unwrap_or_else(|| cfg.dir.join("build")),
                locks: std::env::temp_dir().join("drover-locks"),
                minion,
            },
        }
    }

    /// The engine, reached now if it was not yet.
    pub async fn engine(&self) -> Result<&Docker, EngineError> {
        self.engine.get_or_try_init(Docker::connect).await
    }

    async fn builder(&self) -> Result<Builder<Docker>, Failure> {
        let engine = self.engine().await.map_err(engine_failure)?.clone();
        Ok(Builder { engine, bootstrap: Debootstrap, paths: self.paths.clone() })
    }
}

pub fn build_route() -> MethodRouter<ApiState> {
    post(build).layer(DefaultBodyLimit::max(MAX_CONTEXT))
}

fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Unreachable { .. } => Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => internal(e),
    }
}

fn failure(e: ImageError) -> Failure {
    let status = match &e {
        ImageError::Invalid(_) => StatusCode::BAD_REQUEST,
        ImageError::Refused(_) => StatusCode::CONFLICT,
        ImageError::Setup(_) => StatusCode::SERVICE_UNAVAILABLE,
        ImageError::Engine(EngineError::Unreachable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        ImageError::Engine(_) | ImageError::Failed { .. } | ImageError::Io { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    Failure::new(status, e.to_string())
}

#[tracing::instrument(skip_all, fields(tag = %q.tag))]
pub async fn build(
    State(state): State<ApiState>,
    Query(q): Query<ImageBuildQuery>,
    context: Bytes,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let builder = state.images.builder().await?;
    let request = Request { tag: q.tag, commit: q.commit, context: context.into() };
    let prepared = builder.prepare(request).await.map_err(failure)?;
    let (mut out, reader) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let result = {
            let run = async {
                match prepared {
                    Prepared::UpToDate(built) => {
                        let _ = tx.send(Progress::Phase(format!("{} is up to date", built.image.tag)));
                        Ok(built)
                    }
                    Prepared::Build(plan) => builder.build(&plan, &tx).await,
                }
            };
            tokio::pin!(run);
            loop {
                tokio::select! {
                    result = &mut run => break result,
                    Some(p) = rx.recv() => write(&mut out, &progress_line(p)).await,
                }
            }
        };
        while let Ok(p) = rx.try_recv() {
            write(&mut out, &progress_line(p)).await;
        }
        let last = match result {
            Ok(built) => {
                tracing::info!(tag = %built.image.tag, up_to_date = built.up_to_date, "image ready");
                ImageBuildLine::Done { image: built_of(built, started) }
            }
            Err(e) => {
                tracing::warn!(error = %e, "image build failed");
                ImageBuildLine::Failed { error: e.to_string(), last_lines: e.last_lines().to_vec() }
            }
        };
        write(&mut out, &last).await;
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(ReaderStream::new(reader)))
        .into_response())
}

/// Writes one line; a client that went away is not an error (the build goes on).
async fn write(out: &mut DuplexStream, line: &ImageBuildLine) {
    let Ok(mut bytes) = serde_json::to_vec(line) else { return };
    bytes.push(b'\n');
    let _ = out.write_all(&bytes).await;
}

fn progress_line(p: Progress) -> ImageBuildLine {
    match p {
        Progress::Phase(text) => ImageBuildLine::Phase { text },
        Progress::Step { step, of, text } => ImageBuildLine::Step { step, of, text },
        Progress::Output(line) => ImageBuildLine::Output { line },
    }
}

fn summary(r: ImageRecord) -> ImageSummary {
    ImageSummary {
        name: r.name,
        version: r.version,
        tag: r.tag,
        id: r.id,
        commit: r.commit,
        content: r.content,
        created_ms: r.created.max(0) as u64 * 1000,
        size: r.size,
    }
}

fn built_of(b: Built, started: Instant) -> ImageBuilt {
    ImageBuilt {
        image: summary(b.image),
        base: b.base.tag,
        up_to_date: b.up_to_date,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    name: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<ImageSummary>>, Failure> {
    let engine = state.images.engine().await.map_err(engine_failure)?;
    let records = match &q.name {
        Some(name) => fleet::image::versions(engine, name).await,
        None => fleet::image::list(engine).await,
    }
    .map_err(engine_failure)?;
    Ok(axum::Json(records.into_iter().map(summary).collect()))
}
