//! The error `run` can end with: one variant per module that can fail.

use std::io;
use std::path::PathBuf;

use crate::grains::GrainsError;
use crate::outbox::OutboxError;
use crate::pki::PkiError;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the minion directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("minion key: {0}")]
    Keys(#[from] wire::keys::KeyError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("custom grains: {0}")]
    Grains(#[from] GrainsError),
    #[error("return spool: {0}")]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("grains too large for a hello: {0}")]
    Hello(wire::WireError),
    #[error("the socket thread stopped unexpectedly")]
    TransportStopped,
}

impl Error {
    /// Whether the user must fix a flag or a file (exit status 2) rather than the system.
    pub fn is_config(&self) -> bool {
        match self {
            Self::Pki(e) => e.is_config(),
            Self::Grains(GrainsError::Parse { .. }) => true,
            _ => false,
        }
    }
}
