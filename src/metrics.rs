//! Prometheus metrics: upstream k8gb's `k8gb_*` series where they keep their
//! meaning, plus DNS query counters and a latency histogram.
//!
//! STUB: the interface below is fixed; the implementation lands separately.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::core::health::Health;
use crate::core::strategy::Kind;

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Per-worker DNS counters (no shared cache line on the query path).
#[derive(Default)]
pub struct DnsStats {}

impl DnsStats {
    /// Counts one answered query: its transport, type, response code and latency.
    pub fn record(&self, _transport: Transport, _qtype: u16, _rcode: u16, _elapsed: Duration) {}
    /// Counts a packet dropped without an answer (unparseable, or a response).
    pub fn dropped(&self, _transport: Transport) {}
}

/// One host of a Gslb as the engine computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub health: Health,
    /// The global answer (`<host>`).
    pub answer: Vec<IpAddr>,
    /// This cluster's published targets (`localtargets-<host>`).
    pub local_targets: Vec<IpAddr>,
}

/// One Gslb as the engine computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GslbReport {
    pub namespace: String,
    pub name: String,
    pub strategy: Kind,
    /// For failover: is this cluster the primary?
    pub is_primary: bool,
    pub hosts: Vec<HostReport>,
}

/// All metrics of the process.
#[derive(Default)]
pub struct Metrics {}

impl Metrics {
    pub fn new(_geotag: &str, _namespace: &str) -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }
    /// A recorder for one DNS worker; all are summed at scrape time.
    pub fn dns_worker(&self) -> Arc<DnsStats> {
        Arc::new(DnsStats::default())
    }
    /// Replaces the per-Gslb gauges with the engine's latest computation
    /// and counts one reconciliation per Gslb.
    pub fn report_gslbs(&self, _reports: &[GslbReport]) {}
    /// Counts a failed computation of a Gslb.
    pub fn gslb_error(&self, _namespace: &str, _name: &str) {}
    /// Counts a config file reload, good or rejected.
    pub fn config_reload(&self, _ok: bool) {}
    /// Sets the serial of a zone's SOA.
    pub fn zone_serial(&self, _zone: &str, _serial: u32) {}
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        String::new()
    }
}
