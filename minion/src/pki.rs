//! Which master key this minion trusts, and asking the master's key port for its key.
//!
//! `--master-key` wins; else the key pinned in `DIR/pki/master.pub`; else the key the
//! master's key port (its port - 1, unencrypted) presents, trusted on first use and pinned.
//! A pinned key is never replaced silently: a different key is an error the user resolves.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wire::PublicKey;
use wire::keys::KeyError;
use wire::msg::KeyInfo;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::transport;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "--master-key (fingerprint {given}) differs from the master key pinned in {path} \
         (fingerprint {pinned}): delete {path} to trust the key given, or drop --master-key"
    )]
    Mismatch { given: String, pinned: String, path: PathBuf },
    #[error("pinned master key: {0}")]
    Pinned(#[from] KeyError),
    #[error("cannot pin the master key in {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl PkiError {
    /// Whether the user must change a flag or a file (rather than a fault of the system).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Mismatch { .. } | Self::Pinned(KeyError::Malformed { .. }))
    }
}

/// How long the key port may take to answer one request.
pub const KEY_PORT_TIMEOUT: Duration = Duration::from_secs(3);

/// What to do about the master key, from the flag and the pinned file alone.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Use this key (already pinned, or given and to be pinned).
    Use { key: PublicKey, pin: bool },
    /// No key known: ask the master and trust its answer.
    TrustOnFirstUse,
}

pub fn decide(flag: Option<&PublicKey>, pinned_file: &Path) -> Result<Decision, PkiError> {
    let pinned = if pinned_file.exists() { Some(PublicKey::read(pinned_file)?) } else { None };
    match (flag, pinned) {
        (Some(given), Some(pinned)) if *given != pinned => Err(PkiError::Mismatch {
            given: given.fingerprint(),
            pinned: pinned.fingerprint(),
            path: pinned_file.to_path_buf(),
        }),
        (Some(given), pinned) => Ok(Decision::Use { key: given.clone(), pin: pinned.is_none() }),
        (None, Some(pinned)) => Ok(Decision::Use { key: pinned, pin: false }),
        (None, None) => Ok(Decision::TrustOnFirstUse),
    }
}

pub fn pin(path: &Path, key: &PublicKey) -> Result<(), PkiError> {
    wire::private::write_atomic(path, format!("{key}\n").as_bytes())
        .map_err(|source| PkiError::Write { path: path.to_path_buf(), source })
}

/// The master key to use, asking the master when none is known yet (retrying until it
/// answers). `None` when `shutdown` came first.
pub async fn master_key(
    config: &Config,
    ctx: &zmq::Context,
    shutdown: &CancellationToken,
) -> Result<Option<PublicKey>, PkiError> {
    let path = config.master_pub();
    match decide(config.master_key.as_ref(), &path)? {
        Decision::Use { key, pin: false } => Ok(Some(key)),
        Decision::Use { key, pin: true } => {
            pin(&path, &key)?;
            tracing::info!(fingerprint = %key.fingerprint(), file = %path.display(), "pinned the master key given with --master-key");
            Ok(Some(key))
        }
        Decision::TrustOnFirstUse => {
            let mut backoff = Backoff::default();
            loop {
                let attempt = async {
                    let addr = transport::resolve(&config.master)
                        .await
                        .map_err(|e| format!("cannot resolve {}: {e}", config.master.host))?;
                    fetch(ctx, SocketAddr::new(addr.ip(), config.master.key_port())).await
                };
                let result = tokio::select! {
                    r = attempt => r,
                    () = shutdown.cancelled() => return Ok(None),
                };
                match result {
                    Ok(key) => {
                        pin(&path, &key)?;
                        tracing::info!(
                            file = %path.display(),
                            "trusting master key on first use, fingerprint {}",
                            key.fingerprint()
                        );
                        return Ok(Some(key));
                    }
                    Err(e) => {
                        tracing::warn!(master = %config.master, "cannot get the master's key yet: {e}; retrying")
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Asks the key port at `addr` for the master's public key (one request, on a blocking
/// thread since it is a zmq call).
pub async fn fetch(ctx: &zmq::Context, addr: SocketAddr) -> Result<PublicKey, String> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || fetch_blocking(&ctx, addr, KEY_PORT_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?
}

fn fetch_blocking(ctx: &zmq::Context, addr: SocketAddr, timeout: Duration) -> Result<PublicKey, String> {
    let zmq_err = |e: zmq::Error| format!("key port {addr}: {e}");
    let req = ctx.socket(zmq::REQ).map_err(zmq_err)?;
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    req.set_linger(0).map_err(zmq_err)?;
    req.set_rcvtimeo(ms).map_err(zmq_err)?;
    req.set_sndtimeo(ms).map_err(zmq_err)?;
    req.set_maxmsgsize(64 * 1024).map_err(zmq_err)?;
    req.set_ipv6(addr.is_ipv6()).map_err(zmq_err)?;
    req.connect(&format!("tcp://{addr}")).map_err(zmq_err)?;
    req.send(&b"key"[..], 0).map_err(zmq_err)?;
    let reply = match req.recv_bytes(0) {
        Ok(reply) => reply,
        Err(zmq::Error::EAGAIN) => return Err(format!("key port {addr}: no answer within {timeout:?}")),
        Err(e) => return Err(zmq_err(e)),
    };
    let info = wire::msg::decode::<KeyInfo>(&reply).map_err(|e| format!("key port {addr}: {e}"))?;
    Ok(info.public_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::KeyPair;

    #[test]
    fn flag_file_and_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("master.pub");
        let a = KeyPair::generate().unwrap().public;
        let b = KeyPair::generate().unwrap().public;

        assert_eq!(decide(None, &file).unwrap(), Decision::TrustOnFirstUse);
        assert_eq!(decide(Some(&a), &file).unwrap(), Decision::Use { key: a.clone(), pin: true });
        pin(&file, &a).unwrap();
        assert_eq!(decide(None, &file).unwrap(), Decision::Use { key: a.clone(), pin: false });
        assert_eq!(decide(Some(&a), &file).unwrap(), Decision::Use { key: a.clone(), pin: false });

        let err = decide(Some(&b), &file).unwrap_err();
        assert!(err.is_config());
        let msg = err.to_string();
        assert!(msg.contains(&a.fingerprint()) && msg.contains(&b.fingerprint()), "{msg}");
        assert!(msg.contains("delete") && msg.contains("master.pub"), "{msg}");

        std::fs::write(&file, "not a key\n").unwrap();
        let err = decide(None, &file).unwrap_err();
        assert!(err.is_config() && err.to_string().contains("not a CURVE key"), "{err}");
    }

    #[test]
    fn an_unanswered_key_port_times_out() {
        let ctx = zmq::Context::new();
        // a bound port that never answers
        let rep = ctx.socket(zmq::ROUTER).unwrap();
        rep.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = rep.get_last_endpoint().unwrap().unwrap();
        let addr: SocketAddr = endpoint.trim_start_matches("tcp://").parse().unwrap();
        let err = fetch_blocking(&ctx, addr, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }
}
