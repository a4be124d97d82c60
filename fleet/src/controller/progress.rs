//! What an operation tells as it goes: [`FleetEvent`]s (the API's, since the CLI reads
//! them), streamed to the CLI (progress bars, `--out json`) and put on the master's event
//! bus (`drover/fleet/<fleet>/…`, the dashboard).

pub use api::fleet::FleetEvent;
use tokio::sync::mpsc::UnboundedSender;

/// Where an operation's events go (besides the bus): the API request that asked for it.
/// Closed receivers are fine: the operation goes on when the CLI goes away.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    tx: Option<UnboundedSender<FleetEvent>>,
}

impl Progress {
    pub fn new(tx: UnboundedSender<FleetEvent>) -> Self {
        Progress { tx: Some(tx) }
    }

    /// Progress nobody reads (the healer's, a resumed rollout's): events reach the bus only.
    pub fn none() -> Self {
        Progress { tx: None }
    }

    pub(crate) fn send(&self, event: &FleetEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event.clone());
        }
    }
}
