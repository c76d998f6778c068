//! Active health probes for standalone targets: TCP connect or HTTP GET with
//! an expected status, with interval, timeout and failure/success thresholds.
//! Each probe runs as its own task and reports health changes to the engine.
//!
//! STUB: the interface below is fixed; the implementation lands separately.

use std::net::IpAddr;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ProbeConfig;

/// Which target a probe watches: the Gslb (`namespace/name`) and the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub gslb: String,
    pub address: IpAddr,
}

/// A target's health changed (or was first established).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub key: TargetKey,
    pub healthy: bool,
}

/// Runs one probe task per target and keeps the set in line with the config.
pub struct Prober {
    _events: mpsc::Sender<HealthEvent>,
    _cancel: CancellationToken,
}

impl Prober {
    pub fn new(events: mpsc::Sender<HealthEvent>, cancel: CancellationToken) -> Prober {
        Prober {
            _events: events,
            _cancel: cancel,
        }
    }

    /// Starts probes for new targets, stops removed ones, restarts changed ones.
    pub fn reconcile(&mut self, _targets: &[(TargetKey, ProbeConfig)]) {}
}
