//! drover-master: holds the truth and pushes jobs to minions.
//!
//! - [`config`]: the daemon's settings.
//! - [`pki`]: the master keypair and minion keys (accepted / pending / rejected files).
//! - [`transport`]: the ZeroMQ I/O thread (CURVE ROUTER, ZAP, key port).
//! - [`hub`]: the single owner of sessions and in-flight jobs.
//! - [`jobs`]: job control (`drover jobs kill`) and the job events (`drover/job/<jid>/...`).
//! - [`metrics`]: what the master counts, for `GET /metrics` (Prometheus text format).
//! - [`limits`]: what one minion may cost the master (rates, caps) and the tally of drops.
//! - [`roles`]: the hub's roles side: assignments, reports, peers, the file server.
//! - [`repo`]: reads `roles/` and `states/` of the config repository at a commit (git CLI).
//! - [`apply`]: applying a commit: read, validate and plan it whole, then push (no HTTP in it).
//! - [`fleet`]: the fleet controller's host (minions, slot keys, events, storage) and its lazy start.
//! - [`assign`]: what a commit gives each minion: roles, plan, manifest, peers (no I/O).
//! - [`peers`]: the peer table: which minions serve each role.
//! - [`content`]: the applied commit's files on disk, named by sha256; restored at start.
//! - [`store`]: SQLite store (jobs, returns, grains, events, assignments) on its own thread.
//! - [`target`]: target expressions (glob, regex, list, grain, compound).
//! - [`server`]: the local HTTP API.
//!
//! [`run`] wires them together and serves until the cancellation token fires.

pub mod apply;
pub mod assign;
pub mod autosign;
pub mod config;
pub mod content;
pub mod fleet;
pub mod hub;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod peers;
pub mod pki;
pub mod repo;
pub mod roles;
pub mod server;
pub mod store;
pub mod transport;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MasterError {
    let what = what.into();
    move |source| MasterError::Io { what, source }
}

/// A random API token: 32 bytes from the kernel's CSPRNG, hex-encoded.
fn new_token() -> Result<String, MasterError> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(io("read /dev/urandom"))?;
    Ok(hex::encode(buf))
}

/// Runs the master until `token` is cancelled.
pub async fn run(cfg: Config, token: CancellationToken) -> Result<(), MasterError> {
    wire::private::create_dir(&cfg.dir).map_err(io(format!("create {}", cfg.dir.display())))?;
    for loose in wire::private::secure(&cfg.dir) {
        tracing::warn!(path = %loose.path.display(), "{loose}");
    }
    let keys = pki::KeyStore::open(&cfg.dir.join("pki"))?;
    let master_key = keys.master().clone();

    let (stored_tx, stored_rx) = mpsc::unbounded_channel();
    let store = store::Store::open(&cfg.dir.join("drover.db"), stored_tx)?;
    let known: HashMap<_, _> =
        store.minions().await?.into_iter().map(|m| (m.id, (m.grains, m.last_seen_ms))).collect();
    let content = Arc::new(
        content::ContentStore::open(&cfg.dir.join("files"))
            .map_err(io(format!("create {}", cfg.dir.join("files").display())))?,
    );
    let saved = store.load_roles().await?;
    let applied = match saved.applied.clone() {
        Some((commit, tree)) => {
            let (content, repo) = (content.clone(), cfg.repo.clone());
            tokio::task::spawn_blocking(move || content::restore_applied(&content, &repo, commit, &tree))
                .await
                .unwrap_or(None)
        }
        None => None,
    };
    let roles = roles::RoleState::new(store.clone(), saved, applied);

    let (in_tx, in_rx) = mpsc::channel(65_536);
    let (transport, outgoing, bound) = transport::start(&master_key, &cfg.listen, in_tx)?;
    tracing::info!(
        listen = %bound.router, key_port = %bound.key_port,
        fingerprint = %master_key.public.fingerprint(), "master listening"
    );

    tokio::spawn(prune_hourly(store.clone(), cfg.keep, token.clone()));

    let metrics = Arc::new(metrics::Metrics::new());
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let hub = hub::Hub::new(keys, store.clone(), outgoing, cfg.heartbeat, cfg.auto_accept, known, roles)
        .with_metrics(metrics.clone())
        .with_autosign(autosign::Autosign::for_master(&cfg.dir));
    let hub_task = tokio::spawn(hub.run(in_rx, stored_rx, cmd_rx, token.clone()));

    let listener =
        tokio::net::TcpListener::bind(&cfg.api).await.map_err(io(format!("listen on {}", cfg.api)))?;
    let addr = listener.local_addr().map_err(io("read the API address"))?;
    let api_token = new_token()?;
    let info = serde_json::json!({
        "url": format!("http://{addr}"),
        "token": api_token,
        "listen": bound.router,
        "key_port": bound.key_port,
        "fingerprint": master_key.public.fingerprint(),
    });
    let api_path = cfg.dir.join(api::API_FILE);
    // only its owner may read it: the API token is a credential
    wire::private::write_atomic(&api_path, info.to_string().as_bytes())
        .map_err(io(format!("write {}", api_path.display())))?;
    tracing::info!(url = %format!("http://{addr}"), "API serving");

    let closer = store.clone();
    let fleet_host = fleet::FleetHost::new(
        &cfg.dir,
        cmd_tx.clone(),
        store.clone(),
        master_key.public.to_string(),
        &bound.router,
        cfg.advertise.clone(),
        metrics.clone(),
    );
    let fleet = fleet::FleetService::new(fleet_host, store.clone(), token.clone());
    fleet.start();
    let roles = apply::Roles {
        hub: cmd_tx.clone(),
        repo: cfg.repo.clone(),
        content,
        applying: Arc::new(tokio::sync::Mutex::new(())),
    };
    let app = server::router(server::ApiState {
        hub: cmd_tx,
        store,
        token: api_token,
        roles,
        fleet,
        shutdown: token.clone(),
        images: Arc::new(server::images::Images::new(&cfg)),
        metrics,
    });
    let shutdown = token.clone();
    let served =
        axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    let _ = std::fs::remove_file(&api_path);
    token.cancel();
    let _ = hub_task.await;
    drop(transport);
    // what the hub queued last (events, grains, convergence reports) is committed
    closer.close().await;
    served.map_err(io("serve the API"))?;
    tracing::info!("master stopped");
    Ok(())
}

/// Deletes jobs, returns and events older than `keep`, at start and then every hour.
async fn prune_hourly(store: store::Store, keep: std::time::Duration, token: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = every.tick() => {}
        }
        let before = wire::msg::now_ms().saturating_sub(keep.as_millis() as u64);
        match store.prune(before).await {
            Ok((0, 0)) => {}
            Ok((jobs, events)) => {
                tracing::info!(jobs, events, "deleted jobs and events older than --keep-days")
            }
            Err(e) => tracing::warn!(error = %e, "cannot delete old jobs and events"),
        }
    }
}
