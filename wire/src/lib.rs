//! drover's wire protocol, shared by master and minion.
//!
//! - [`id`]: minion ids, routing ids and job ids (jids): validation and generation.
//! - [`keys`]: CURVE keypairs on disk, fingerprints.
//! - [`msg`]: the versioned messages both ends exchange, and their size-limited framing.
//! - [`private`]: private state on disk (0700 directories, 0600 files), made and checked.
//!
//! Only this crate defines what travels between master and minion; nothing here does I/O
//! beyond reading and writing key files and the modes of private state.

pub mod id;
pub mod keys;
pub mod msg;
pub mod private;

pub use id::{Jid, MinionId, routing_id, routing_id_names, routing_label};
pub use keys::{KeyPair, PublicKey};
pub use msg::{
    Assignment, Blob, Converged, DaemonHealth, Event, Health, Hello, Job, JobReturn, Peer, StateResult,
    ToMaster, ToMinion, WireError,
};
