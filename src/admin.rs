//! The admin HTTP server on METRICS_ADDRESS: `/healthz`, `/readyz` (ready once
//! the first snapshot is published) and `/metrics`.
//!
//! STUB: the interface below is fixed; the implementation lands separately.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Serves until `cancel` fires.
pub async fn serve(
    _listener: TcpListener,
    _metrics: Arc<Metrics>,
    _ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    cancel.cancelled().await;
    Ok(())
}
