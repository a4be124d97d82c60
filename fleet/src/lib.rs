//! The container fleet: what the master needs to run a fleet of version-tagged containers.
//!
//! - [`engine`]: the [`Engine`] seam (images, networks, volumes, containers, events) and its types.
//! - [`docker`]: [`Engine`] over the Docker Engine API (bollard); the only code that knows bollard.
//! - [`fake`]: [`Engine`] in memory, for unit tests of everything above it.
//! - [`image`]: images without a registry: the base from Debian packages, app images on it.

pub mod docker;
pub mod engine;
pub mod fake;
pub mod image;

pub use engine::{Engine, EngineError};
