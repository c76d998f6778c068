//! Prometheus metrics: upstream k8gb's `k8gb_*` series where they keep their
//! meaning, plus DNS query counters and a latency histogram.
//!
//! Two halves with opposite needs:
//!
//! * The Gslb series (`k8gb_gslb_*`, `k8gb_endpoint_status_num`, …) change a
//!   few times a minute. They live in prometheus-client families; every
//!   [`Metrics::report_gslbs`] replaces them wholesale under a lock that
//!   scrapes also take, so a scrape never sees half a report.
//! * The DNS series are updated per query. Each DNS worker owns a
//!   [`DnsStats`]: fixed arrays of atomics indexed by transport, query type
//!   bucket and response code bucket, bumped with `Relaxed` adds: no lock, no
//!   hashing, no allocation. A scrape sums every worker's arrays in a custom
//!   [`Collector`].
//!
//! [`Metrics::encode`] renders the Prometheus text format 0.0.4 (what the
//! admin server announces): prometheus-client writes OpenMetrics, whose
//! counters are declared without their `_total` suffix; the declarations are
//! renamed to match the samples, as client_golang (and so upstream) does.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::core::health::Health;
use crate::core::strategy::Kind;

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Every transport, in the order of [`Transport::index`].
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// The `transport` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    const fn index(self) -> usize {
        match self {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
        }
    }
}

const TRANSPORTS: usize = Transport::ALL.len();

/// `qtype` label values; the index is [`qtype_bucket`]'s result.
pub const QTYPE_LABELS: [&str; 6] = ["A", "AAAA", "NS", "SOA", "ANY", "OTHER"];
const QTYPES: usize = QTYPE_LABELS.len();

/// `rcode` label values; the index is [`rcode_bucket`]'s result.
pub const RCODE_LABELS: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
];
const RCODES: usize = RCODE_LABELS.len();

/// The `qtype` bucket of a query type: A, AAAA, NS, SOA, ANY, else OTHER.
#[inline]
pub const fn qtype_bucket(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        2 => 2,
        6 => 3,
        255 => 4,
        _ => 5,
    }
}

/// The `rcode` bucket of a (possibly extended) response code.
#[inline]
pub const fn rcode_bucket(rcode: u16) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        16 => 6,
        _ => 7,
    }
}

/// Upper bounds of `k8gb_dns_query_duration_seconds`, in seconds (`+Inf` implied).
pub const LATENCY_BOUNDS_SECONDS: [f64; 10] =
    [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 0.1];
/// The same bounds in nanoseconds, as the query path compares them.
const LATENCY_BOUNDS_NS: [u64; 10] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    25_000_000,
    100_000_000,
];
/// Finite buckets plus `+Inf`.
const LATENCY_SLOTS: usize = LATENCY_BOUNDS_NS.len() + 1;
/// Latencies beyond this are clamped so the sum cannot wrap.
const LATENCY_CLAMP_NS: u64 = 3_600 * 1_000_000_000;

#[inline]
fn latency_slot(ns: u64) -> usize {
    let mut i = 0;
    while i < LATENCY_BOUNDS_NS.len() {
        if ns <= LATENCY_BOUNDS_NS[i] {
            return i;
        }
        i += 1;
    }
    LATENCY_BOUNDS_NS.len()
}

/// Per-worker DNS counters (no shared cache line on the query path).
///
/// Cache-line aligned so two workers' stats never share a line; only its
/// worker writes it, scrapes only read it.
#[repr(align(64))]
pub struct DnsStats {
    /// Answered queries, indexed `[transport][qtype bucket][rcode bucket]`.
    queries: [[[AtomicU64; RCODES]; QTYPES]; TRANSPORTS],
    dropped: [AtomicU64; TRANSPORTS],
    /// Latency observations per bucket (not cumulative), `[transport][slot]`.
    latency: [[AtomicU64; LATENCY_SLOTS]; TRANSPORTS],
    latency_sum_ns: [AtomicU64; TRANSPORTS],
}

impl DnsStats {
    pub const fn new() -> DnsStats {
        DnsStats {
            queries: [const { [const { [const { AtomicU64::new(0) }; RCODES] }; QTYPES] }; TRANSPORTS],
            dropped: [const { AtomicU64::new(0) }; TRANSPORTS],
            latency: [const { [const { AtomicU64::new(0) }; LATENCY_SLOTS] }; TRANSPORTS],
            latency_sum_ns: [const { AtomicU64::new(0) }; TRANSPORTS],
        }
    }

    /// Counts one answered query: its transport, type, response code and latency.
    #[inline]
    pub fn record(&self, transport: Transport, qtype: u16, rcode: u16, elapsed: Duration) {
        let t = transport.index();
        self.queries[t][qtype_bucket(qtype)][rcode_bucket(rcode)].fetch_add(1, Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).map_or(LATENCY_CLAMP_NS, |n| n.min(LATENCY_CLAMP_NS));
        self.latency[t][latency_slot(ns)].fetch_add(1, Relaxed);
        self.latency_sum_ns[t].fetch_add(ns, Relaxed);
    }

    /// Counts a packet dropped without an answer (unparseable, or a response).
    #[inline]
    pub fn dropped(&self, transport: Transport) {
        self.dropped[transport.index()].fetch_add(1, Relaxed);
    }

    fn add_to(&self, totals: &mut DnsTotals) {
        for t in 0..TRANSPORTS {
            for q in 0..QTYPES {
                for r in 0..RCODES {
                    let v = self.queries[t][q][r].load(Relaxed);
                    totals.queries[t][q][r] = totals.queries[t][q][r].wrapping_add(v);
                }
            }
            totals.dropped[t] = totals.dropped[t].wrapping_add(self.dropped[t].load(Relaxed));
            for s in 0..LATENCY_SLOTS {
                totals.latency[t][s] = totals.latency[t][s].wrapping_add(self.latency[t][s].load(Relaxed));
            }
            totals.latency_sum_ns[t] =
                totals.latency_sum_ns[t].wrapping_add(self.latency_sum_ns[t].load(Relaxed));
        }
    }
}

impl Default for DnsStats {
    fn default() -> DnsStats {
        DnsStats::new()
    }
}

impl fmt::Debug for DnsStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsStats").finish_non_exhaustive()
    }
}

/// All workers' DNS counters summed at one scrape.
#[derive(Default)]
struct DnsTotals {
    queries: [[[u64; RCODES]; QTYPES]; TRANSPORTS],
    dropped: [u64; TRANSPORTS],
    latency: [[u64; LATENCY_SLOTS]; TRANSPORTS],
    latency_sum_ns: [u64; TRANSPORTS],
}

type Workers = Arc<Mutex<Vec<Arc<DnsStats>>>>;

/// Encodes the DNS families from every registered worker at scrape time.
struct DnsCollector {
    workers: Workers,
}

impl fmt::Debug for DnsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsCollector").finish_non_exhaustive()
    }
}

impl DnsCollector {
    fn totals(&self) -> DnsTotals {
        let mut totals = DnsTotals::default();
        for w in lock(&self.workers).iter() {
            w.add_to(&mut totals);
        }
        totals
    }
}

impl Collector for DnsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let totals = self.totals();
        {
            // Only the combinations seen so far: 144 mostly-zero series would
            // bury the few that matter.
            let mut e = encoder.encode_descriptor(
                "k8gb_dns_queries",
                "DNS queries answered, by transport, query type and response code.",
                None,
                MetricType::Counter,
            )?;
            for t in Transport::ALL {
                for (q, qtype) in QTYPE_LABELS.iter().enumerate() {
                    for (r, rcode) in RCODE_LABELS.iter().enumerate() {
                        let v = totals.queries[t.index()][q][r];
                        if v == 0 {
                            continue;
                        }
                        let labels = [("transport", t.as_str()), ("qtype", *qtype), ("rcode", *rcode)];
                        e.encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                    }
                }
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "k8gb_dns_dropped",
                "DNS packets dropped without an answer (unparseable, or a response).",
                None,
                MetricType::Counter,
            )?;
            for t in Transport::ALL {
                let labels = [("transport", t.as_str())];
                e.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&totals.dropped[t.index()], None)?;
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "k8gb_dns_query_duration_seconds",
                "Time from receiving a DNS query to sending its answer.",
                None,
                MetricType::Histogram,
            )?;
            for t in Transport::ALL {
                let slots = &totals.latency[t.index()];
                // prometheus-client takes per-bucket counts and accumulates
                // them itself; f64::MAX is its spelling of +Inf.
                let mut buckets = [(0.0, 0); LATENCY_SLOTS];
                for (i, b) in buckets.iter_mut().enumerate() {
                    *b = (
                        LATENCY_BOUNDS_SECONDS.get(i).copied().unwrap_or(f64::MAX),
                        slots[i],
                    );
                }
                let count = slots.iter().fold(0u64, |a, v| a.wrapping_add(*v));
                let sum = totals.latency_sum_ns[t.index()] as f64 / 1e9;
                let labels = [("transport", t.as_str())];
                e.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }
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

/// The `name` label of the series every family starts with, as upstream.
pub const INIT_NAME: &str = "init";
/// The `dns_name` label of `k8gb_endpoint_status_num`'s initial series.
pub const INIT_DNS_NAME: &str = "init.example.com";

const HEALTHS: [Health; 3] = [Health::Healthy, Health::Unhealthy, Health::NotFound];

type L1 = [(&'static str, String); 1];
type L2 = [(&'static str, String); 2];
type L3 = [(&'static str, String); 3];
type L6 = [(&'static str, String); 6];

/// The per-Gslb gauges [`Metrics::report_gslbs`] replaces.
#[derive(Default)]
struct GslbGauges {
    healthy_records: Family<L2, Gauge>,
    healthy_local_records: Family<L3, Gauge>,
    service_status: Family<L3, Gauge>,
    failover: Family<L3, Gauge>,
    roundrobin: Family<L3, Gauge>,
    geoip: Family<L3, Gauge>,
    endpoint_status: Family<L3, Gauge>,
}

/// All metrics of the process.
pub struct Metrics {
    geotag: String,
    namespace: String,
    registry: Registry,
    gauges: GslbGauges,
    errors: Family<L2, Counter>,
    loops: Family<L2, Counter>,
    config_reloads: Family<L1, Counter>,
    zone_serial: Family<L1, Gauge>,
    peer_up: Family<L1, Gauge>,
    peer_syncs: Family<[(&'static str, String); 2], Counter>,
    notify_received: Family<L1, Counter>,
    notify_sent: Family<L1, Counter>,
    delegation: Family<L2, Counter>,
    workers: Workers,
    /// Held while the Gslb gauges are replaced and while encoding, so a
    /// scrape never sees a half-applied report.
    report: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::build("", "")
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("geotag", &self.geotag)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(geotag: &str, namespace: &str) -> Arc<Metrics> {
        Arc::new(Metrics::build(geotag, namespace))
    }

    fn build(geotag: &str, namespace: &str) -> Metrics {
        let m = Metrics {
            geotag: geotag.to_owned(),
            namespace: namespace.to_owned(),
            registry: Registry::default(),
            gauges: GslbGauges::default(),
            errors: Family::default(),
            loops: Family::default(),
            config_reloads: Family::default(),
            zone_serial: Family::default(),
            peer_up: Family::default(),
            peer_syncs: Family::default(),
            notify_received: Family::default(),
            notify_sent: Family::default(),
            delegation: Family::default(),
            workers: Arc::default(),
            report: Mutex::new(()),
        };
        let mut registry = Registry::default();
        let g = &m.gauges;
        // Counters are registered without `_total` (the encoder appends it),
        // help texts without their final period (the registry appends it).
        registry.register("k8gb_gslb_errors", "Number of errors", m.errors.clone());
        registry.register(
            "k8gb_gslb_reconciliation_loops",
            "Number of successful reconciliation loops",
            m.loops.clone(),
        );
        registry.register(
            "k8gb_gslb_healthy_records",
            "Number of healthy records observed by k8gb",
            g.healthy_records.clone(),
        );
        registry.register(
            "k8gb_gslb_healthy_local_records",
            "Number of local cluster IPs in healthy records",
            g.healthy_local_records.clone(),
        );
        registry.register(
            "k8gb_gslb_service_status_num",
            "Number of managed hosts observed by k8gb",
            g.service_status.clone(),
        );
        registry.register(
            "k8gb_gslb_status_count_for_failover",
            "Gslb status count for Failover strategy",
            g.failover.clone(),
        );
        registry.register(
            "k8gb_gslb_status_count_for_roundrobin",
            "Gslb status count for RoundRobin strategy",
            g.roundrobin.clone(),
        );
        registry.register(
            "k8gb_gslb_status_count_for_geoip",
            "Gslb status count for GeoIP strategy",
            g.geoip.clone(),
        );
        registry.register(
            "k8gb_endpoint_status_num",
            "Number of targets in DNS endpoint",
            g.endpoint_status.clone(),
        );
        let runtime_info = Family::<L6, Gauge>::default();
        runtime_info.get_or_create(&runtime_labels(namespace)).set(1);
        registry.register("k8gb_runtime_info", "K8gb runtime info", runtime_info);
        registry.register(
            "k8gb_config_reloads",
            "Config file reloads, by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "k8gb_zone_serial",
            "SOA serial of each served zone",
            m.zone_serial.clone(),
        );
        registry.register(
            "k8gb_peer_up",
            "Whether a peer answers (1) or left the answers (0)",
            m.peer_up.clone(),
        );
        registry.register(
            "k8gb_peer_syncs",
            "Full queries of a peer's localtargets, by result",
            m.peer_syncs.clone(),
        );
        registry.register(
            "k8gb_notify_received",
            "DNS NOTIFY messages received, accepted from a known peer or ignored",
            m.notify_received.clone(),
        );
        registry.register(
            "k8gb_notify_sent",
            "DNS NOTIFY messages sent to peers, acknowledged or failed",
            m.notify_sent.clone(),
        );
        registry.register(
            "k8gb_delegation_reconciles",
            "Edge DNS delegation checks per zone: unchanged, updated or failed",
            m.delegation.clone(),
        );
        registry.register_collector(Box::new(DnsCollector {
            workers: m.workers.clone(),
        }));

        // Every series starts at zero, as upstream pre-creates them.
        let init = l2(namespace, INIT_NAME);
        m.errors.get_or_create(&init).inc_by(0);
        m.loops.get_or_create(&init).inc_by(0);
        for result in ["success", "failure"] {
            m.config_reloads
                .get_or_create(&[("result", result.to_owned())])
                .inc_by(0);
        }
        for result in ["accepted", "ignored"] {
            m.notify_received
                .get_or_create(&[("result", result.to_owned())])
                .inc_by(0);
        }
        for result in ["acknowledged", "failed"] {
            m.notify_sent
                .get_or_create(&[("result", result.to_owned())])
                .inc_by(0);
        }
        m.init_gauges();
        Metrics { registry, ..m }
    }

    /// The zero-valued `name="init"` series of every Gslb gauge.
    fn init_gauges(&self) {
        let (ns, g) = (self.namespace.as_str(), &self.gauges);
        g.healthy_records.get_or_create(&l2(ns, INIT_NAME)).set(0);
        g.healthy_local_records
            .get_or_create(&l3(ns, INIT_NAME, "geotag", &self.geotag))
            .set(0);
        let healthy = Health::Healthy.as_str();
        g.service_status
            .get_or_create(&l3(ns, INIT_NAME, "status", healthy))
            .set(0);
        g.failover
            .get_or_create(&l3(ns, INIT_NAME, "status", &format!("{healthy}_primary")))
            .set(0);
        g.roundrobin
            .get_or_create(&l3(ns, INIT_NAME, "status", healthy))
            .set(0);
        g.geoip
            .get_or_create(&l3(ns, INIT_NAME, "status", healthy))
            .set(0);
        g.endpoint_status
            .get_or_create(&l3(ns, INIT_NAME, "dns_name", INIT_DNS_NAME))
            .set(0);
    }

    /// A recorder for one DNS worker; all are summed at scrape time.
    ///
    /// Recorders stay registered for the life of the process, so a restarted
    /// worker's counts are never lost (counters must not go backwards).
    pub fn dns_worker(&self) -> Arc<DnsStats> {
        let stats = Arc::new(DnsStats::new());
        lock(&self.workers).push(stats.clone());
        stats
    }

    /// Replaces the per-Gslb gauges with the engine's latest computation
    /// and counts one reconciliation per Gslb.
    pub fn report_gslbs(&self, reports: &[GslbReport]) {
        let _guard = lock(&self.report);
        let g = &self.gauges;
        g.healthy_records.clear();
        g.healthy_local_records.clear();
        g.service_status.clear();
        g.failover.clear();
        g.roundrobin.clear();
        g.geoip.clear();
        g.endpoint_status.clear();
        self.init_gauges();

        for r in reports {
            let (ns, name) = (r.namespace.as_str(), r.name.as_str());
            self.loops.get_or_create(&l2(ns, name)).inc();

            let records: usize = r.hosts.iter().map(|h| h.answer.len()).sum();
            g.healthy_records.get_or_create(&l2(ns, name)).set(gauge(records));

            let local: usize = r
                .hosts
                .iter()
                .map(|h| h.local_targets.iter().filter(|ip| h.answer.contains(ip)).count())
                .sum();
            g.healthy_local_records
                .get_or_create(&l3(ns, name, "geotag", &self.geotag))
                .set(gauge(local));

            let (family, suffix) = match r.strategy {
                Kind::RoundRobin => (&g.roundrobin, ""),
                Kind::GeoIp => (&g.geoip, ""),
                Kind::Failover if r.is_primary => (&g.failover, "_primary"),
                Kind::Failover => (&g.failover, "_secondary"),
            };
            for health in HEALTHS {
                let hosts = r.hosts.iter().filter(|h| h.health == health);
                let host_count = hosts.clone().count();
                let addresses: usize = hosts.map(|h| h.answer.len()).sum();
                g.service_status
                    .get_or_create(&l3(ns, name, "status", health.as_str()))
                    .set(gauge(host_count));
                family
                    .get_or_create(&l3(ns, name, "status", &format!("{health}{suffix}")))
                    .set(gauge(addresses));
            }

            for h in &r.hosts {
                g.endpoint_status
                    .get_or_create(&l3(ns, name, "dns_name", &h.host))
                    .set(gauge(h.answer.len()));
                g.endpoint_status
                    .get_or_create(&l3(ns, name, "dns_name", &format!("localtargets-{}", h.host)))
                    .set(gauge(h.local_targets.len()));
            }
        }
    }

    /// Counts a failed computation of a Gslb.
    pub fn gslb_error(&self, namespace: &str, name: &str) {
        self.errors.get_or_create(&l2(namespace, name)).inc();
    }

    /// Counts a config file reload, good or rejected.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.config_reloads
            .get_or_create(&[("result", result.to_owned())])
            .inc();
    }

    /// Sets whether a peer is in the answers.
    pub fn peer_up(&self, peer: &str, up: bool) {
        self.peer_up
            .get_or_create(&[("peer", escape(peer))])
            .set(i64::from(up));
    }

    /// Counts a full sync with a peer.
    pub fn peer_sync(&self, peer: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.peer_syncs
            .get_or_create(&[("peer", escape(peer)), ("result", result.to_owned())])
            .inc();
    }

    /// Counts a NOTIFY received.
    pub fn notify_received(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "ignored" };
        self.notify_received
            .get_or_create(&[("result", result.to_owned())])
            .inc();
    }

    /// Counts a NOTIFY sent.
    pub fn notify_sent(&self, acknowledged: bool) {
        let result = if acknowledged { "acknowledged" } else { "failed" };
        self.notify_sent
            .get_or_create(&[("result", result.to_owned())])
            .inc();
    }

    /// Counts a delegation check of a zone: `unchanged`, `updated` or `failed`.
    pub fn delegation(&self, zone: &str, result: &'static str) {
        self.delegation
            .get_or_create(&[("zone", escape(zone)), ("result", result.to_owned())])
            .inc();
    }

    /// Sets the serial of a zone's SOA.
    pub fn zone_serial(&self, zone: &str, serial: u32) {
        self.zone_serial
            .get_or_create(&[("zone", escape(zone))])
            .set(i64::from(serial));
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut open_metrics = String::with_capacity(16 * 1024);
        {
            let _guard = lock(&self.report);
            if let Err(e) =
                prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.registry)
            {
                // Writing to a String cannot fail; a collector bug could.
                tracing::warn!(error = %e, "encoding metrics failed");
            }
        }
        to_text_format(&open_metrics)
    }
}

fn l2(namespace: &str, name: &str) -> L2 {
    [("namespace", escape(namespace)), ("name", escape(name))]
}

fn l3(namespace: &str, name: &str, key: &'static str, value: &str) -> L3 {
    [
        ("namespace", escape(namespace)),
        ("name", escape(name)),
        (key, escape(value)),
    ]
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime_labels(namespace: &str) -> L6 {
    [
        ("namespace", escape(namespace)),
        ("k8gb_version", env!("CARGO_PKG_VERSION").to_owned()),
        (
            "rust_version",
            escape(option_env!("K8GB_RUST_VERSION").unwrap_or("unknown")),
        ),
        ("arch", std::env::consts::ARCH.to_owned()),
        ("os", std::env::consts::OS.to_owned()),
        (
            "git_sha",
            escape(option_env!("K8GB_GIT_SHA").unwrap_or("unknown")),
        ),
    ]
}

/// Escapes a label value for the text format (prometheus-client writes label
/// values verbatim).
fn escape(s: &str) -> String {
    if !s.contains(['\\', '"', '\n']) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Turns prometheus-client's OpenMetrics text into the Prometheus text format
/// 0.0.4: counter families are declared under their sample name
/// (`x_total`), `unknown` becomes `untyped`, and `# EOF` goes.
fn to_text_format(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .filter(|name| !name.ends_with("_total"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 64 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = if prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            out.push_str(prefix);
            out.push_str(name);
            if counters.contains(name) {
                out.push_str("_total");
            }
            out.push(' ');
            out.push_str(tail);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    /// One sample line: metric name, labels, value.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn is_name(s: &str, colons: bool) -> bool {
        let mut chars = s.chars();
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
        matches!(chars.next(), Some(c) if ok_first(c))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
    }

    fn parse_value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => s.parse::<f64>().map_err(|e| format!("bad value {s:?}: {e}")),
        }
    }

    /// Parses `name{a="b",...} value [timestamp]`.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find('=').ok_or("label without =")?;
                let key = &rest[..eq];
                if !is_name(key, false) || key.starts_with("__") {
                    return Err(format!("bad label name {key:?}"));
                }
                rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next().ok_or("unterminated label value")? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => return Err(format!("bad escape \\{c}")),
                        },
                        (_, '\n') => return Err("newline in label value".into()),
                        (_, c) => value.push(c),
                    }
                };
                if labels.insert(key.to_owned(), value).is_some() {
                    return Err(format!("duplicate label {key}"));
                }
                rest = &rest[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if !rest.starts_with('}') {
                    return Err("expected , or } after a label".into());
                }
            }
        }
        let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().ok_or("no value")?)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
        }
        if fields.next().is_some() {
            return Err("trailing fields".into());
        }
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// A strict checker of the Prometheus text format 0.0.4: line syntax,
    /// one HELP/TYPE per family before its samples, families contiguous,
    /// sample names matching their family's type, no duplicate series, and
    /// histograms cumulative with `+Inf` equal to `_count`.
    fn parse_text(text: &str) -> Result<Vec<Sample>, String> {
        let mut samples = Vec::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps: HashSet<String> = HashSet::new();
        let mut closed: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        let mut switch_to = |family: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if closed.contains(family) {
                    return Err(format!("family {family} is not contiguous"));
                }
                if let Some(prev) = current.take() {
                    closed.insert(prev);
                }
                *current = Some(family.to_owned());
            }
            Ok(())
        };
        for (n, line) in text.lines().enumerate() {
            let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut parts = comment.trim_start().splitn(3, ' ');
                let kind = parts.next().unwrap_or_default();
                if kind != "HELP" && kind != "TYPE" {
                    continue;
                }
                let name = parts.next().ok_or_else(|| err("no metric name".into()))?;
                if !is_name(name, true) {
                    return Err(err("bad metric name".into()));
                }
                switch_to(name, &mut current).map_err(err)?;
                if kind == "HELP" {
                    if !helps.insert(name.to_owned()) {
                        return Err(err("second HELP".into()));
                    }
                } else {
                    let t = parts.next().ok_or_else(|| err("no type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(err(format!("bad type {t}")));
                    }
                    if samples
                        .iter()
                        .any(|s: &Sample| family_of(&s.name, &types) == name)
                    {
                        return Err(err("TYPE after samples".into()));
                    }
                    if types.insert(name.to_owned(), t.to_owned()).is_some() {
                        return Err(err("second TYPE".into()));
                    }
                }
                continue;
            }
            let s = parse_sample(line).map_err(err)?;
            let family = family_of(&s.name, &types);
            switch_to(&family, &mut current).map_err(err)?;
            // Stricter than the format: our output declares every family, so
            // an undeclared sample means a name mismatch (e.g. `x` vs `x_total`).
            let t = types
                .get(&family)
                .map(String::as_str)
                .ok_or_else(|| err(format!("sample {} has no TYPE", s.name)))?;
            let suffix = &s.name[family.len()..];
            let allowed: &[&str] = match t {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            if !allowed.contains(&suffix) {
                return Err(err(format!("sample {} does not belong to {t} {family}", s.name)));
            }
            if t == "histogram" && (suffix == "_bucket") != s.labels.contains_key("le") {
                return Err(err("le label on a non-bucket or missing on a bucket".into()));
            }
            if !series.insert((s.name.clone(), s.labels.clone())) {
                return Err(err("duplicate series".into()));
            }
            samples.push(s);
        }
        check_histograms(&samples, &types)?;
        Ok(samples)
    }

    /// The family a sample belongs to, given the declared types.
    fn family_of(name: &str, types: &HashMap<String, String>) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && matches!(types.get(base).map(String::as_str), Some("histogram" | "summary"))
            {
                return base.to_owned();
            }
        }
        name.to_owned()
    }

    fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
        for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
            let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let mut labels = s.labels.clone();
                let le = parse_value(&labels.remove("le").unwrap_or_default())?;
                groups.entry(labels).or_default().push((le, s.value));
            }
            for (labels, mut buckets) in groups {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                    return Err(format!("{family}{labels:?}: buckets not cumulative"));
                }
                let inf = buckets.last().filter(|b| b.0 == f64::INFINITY);
                let count = samples
                    .iter()
                    .find(|s| s.name == format!("{family}_count") && s.labels == labels);
                match (inf, count) {
                    (Some(inf), Some(count)) if inf.1 == count.value => {}
                    _ => return Err(format!("{family}{labels:?}: +Inf bucket missing or != _count")),
                }
                if !samples
                    .iter()
                    .any(|s| s.name == format!("{family}_sum") && s.labels == labels)
                {
                    return Err(format!("{family}{labels:?}: no _sum"));
                }
            }
        }
        Ok(())
    }

    fn parsed(m: &Metrics) -> Vec<Sample> {
        let text = m.encode();
        parse_text(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
    }

    /// The value of the one series with exactly these labels.
    fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The label sets (minus namespace/name) of a family's series for one Gslb.
    fn series_of(samples: &[Sample], name: &str, gslb: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut out: Vec<_> = samples
            .iter()
            .filter(|s| s.name == name && s.labels.get("name").map(String::as_str) == Some(gslb))
            .map(|s| {
                let mut l = s.labels.clone();
                l.remove("namespace");
                l.remove("name");
                (l, s.value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host(name: &str, health: Health, answer: &[&str], local: &[&str]) -> HostReport {
        HostReport {
            host: name.to_owned(),
            health,
            answer: answer.iter().map(|a| ip(a)).collect(),
            local_targets: local.iter().map(|a| ip(a)).collect(),
        }
    }

    fn roundrobin() -> GslbReport {
        GslbReport {
            namespace: "test-gslb".into(),
            name: "rr".into(),
            strategy: Kind::RoundRobin,
            is_primary: false,
            hosts: vec![
                host(
                    "rr.cloud.example.com",
                    Health::Healthy,
                    &["10.0.0.1", "10.0.0.2", "10.1.0.1"],
                    &["10.0.0.1", "10.0.0.2"],
                ),
                host("rr2.cloud.example.com", Health::Unhealthy, &["10.1.0.1"], &[]),
                host("rr3.cloud.example.com", Health::NotFound, &[], &[]),
                host(
                    "rr4.cloud.example.com",
                    Health::Healthy,
                    &["10.0.0.3"],
                    &["10.0.0.3"],
                ),
            ],
        }
    }

    fn failover(name: &str, is_primary: bool) -> GslbReport {
        GslbReport {
            namespace: "test-gslb".into(),
            name: name.into(),
            strategy: Kind::Failover,
            is_primary,
            hosts: vec![
                host(
                    "fo.cloud.example.com",
                    Health::Unhealthy,
                    &["10.1.0.1", "10.1.0.2"],
                    &[],
                ),
                host(
                    "fo2.cloud.example.com",
                    Health::Healthy,
                    &["10.0.0.9"],
                    &["10.0.0.9"],
                ),
            ],
        }
    }

    #[test]
    fn init_series_present_at_zero() {
        let m = Metrics::new("eu", "k8gb");
        let s = parsed(&m);
        let init = [("namespace", "k8gb"), ("name", "init")];
        for name in [
            "k8gb_gslb_errors_total",
            "k8gb_gslb_reconciliation_loops_total",
            "k8gb_gslb_healthy_records",
        ] {
            assert_eq!(get(&s, name, &init), Some(0.0), "{name}");
        }
        let with = |k, v| [init[0], init[1], (k, v)];
        assert_eq!(
            get(&s, "k8gb_gslb_healthy_local_records", &with("geotag", "eu")),
            Some(0.0)
        );
        for name in [
            "k8gb_gslb_service_status_num",
            "k8gb_gslb_status_count_for_roundrobin",
            "k8gb_gslb_status_count_for_geoip",
        ] {
            assert_eq!(get(&s, name, &with("status", "Healthy")), Some(0.0), "{name}");
        }
        assert_eq!(
            get(
                &s,
                "k8gb_gslb_status_count_for_failover",
                &with("status", "Healthy_primary")
            ),
            Some(0.0)
        );
        assert_eq!(
            get(
                &s,
                "k8gb_endpoint_status_num",
                &with("dns_name", "init.example.com")
            ),
            Some(0.0)
        );
        for result in ["success", "failure"] {
            assert_eq!(
                get(&s, "k8gb_config_reloads_total", &[("result", result)]),
                Some(0.0)
            );
        }
        for t in ["udp", "tcp", "tls"] {
            assert_eq!(get(&s, "k8gb_dns_dropped_total", &[("transport", t)]), Some(0.0));
            assert_eq!(
                get(&s, "k8gb_dns_query_duration_seconds_count", &[("transport", t)]),
                Some(0.0)
            );
        }
        // Nothing answered yet: no query series, but the family is declared.
        assert!(!s.iter().any(|x| x.name == "k8gb_dns_queries_total"));
        assert!(m.encode().contains("# TYPE k8gb_dns_queries_total counter\n"));
    }

    #[test]
    fn runtime_info_labels() {
        let m = Metrics::new("eu", "k8gb");
        let s = parsed(&m);
        let info: Vec<_> = s.iter().filter(|x| x.name == "k8gb_runtime_info").collect();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].value, 1.0);
        let l = &info[0].labels;
        assert_eq!(l["namespace"], "k8gb");
        assert_eq!(l["k8gb_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(l["arch"], std::env::consts::ARCH);
        assert_eq!(l["os"], std::env::consts::OS);
        assert!(!l["rust_version"].is_empty());
        assert!(!l["git_sha"].is_empty());
        assert_eq!(l.len(), 6);
    }

    #[test]
    fn report_sets_roundrobin_gauges() {
        let m = Metrics::new("eu", "k8gb");
        m.report_gslbs(&[roundrobin()]);
        let s = parsed(&m);
        let rr = [("namespace", "test-gslb"), ("name", "rr")];
        assert_eq!(get(&s, "k8gb_gslb_healthy_records", &rr), Some(5.0));
        assert_eq!(
            series_of(&s, "k8gb_gslb_healthy_local_records", "rr"),
            vec![(labels(&[("geotag", "eu")]), 3.0)]
        );
        assert_eq!(
            series_of(&s, "k8gb_gslb_service_status_num", "rr"),
            vec![
                (labels(&[("status", "Healthy")]), 2.0),
                (labels(&[("status", "NotFound")]), 1.0),
                (labels(&[("status", "Unhealthy")]), 1.0),
            ]
        );
        // Answer addresses by the host's health: 3 + 1 healthy, 1 unhealthy.
        assert_eq!(
            series_of(&s, "k8gb_gslb_status_count_for_roundrobin", "rr"),
            vec![
                (labels(&[("status", "Healthy")]), 4.0),
                (labels(&[("status", "NotFound")]), 0.0),
                (labels(&[("status", "Unhealthy")]), 1.0),
            ]
        );
        assert!(series_of(&s, "k8gb_gslb_status_count_for_failover", "rr").is_empty());
        assert!(series_of(&s, "k8gb_gslb_status_count_for_geoip", "rr").is_empty());
        let ep = |d: &str, v: f64| (labels(&[("dns_name", d)]), v);
        assert_eq!(
            series_of(&s, "k8gb_endpoint_status_num", "rr"),
            vec![
                ep("localtargets-rr.cloud.example.com", 2.0),
                ep("localtargets-rr2.cloud.example.com", 0.0),
                ep("localtargets-rr3.cloud.example.com", 0.0),
                ep("localtargets-rr4.cloud.example.com", 1.0),
                ep("rr.cloud.example.com", 3.0),
                ep("rr2.cloud.example.com", 1.0),
                ep("rr3.cloud.example.com", 0.0),
                ep("rr4.cloud.example.com", 1.0),
            ]
        );
        assert_eq!(get(&s, "k8gb_gslb_reconciliation_loops_total", &rr), Some(1.0));
        // The init series survive a report.
        let init = [("namespace", "k8gb"), ("name", "init")];
        assert_eq!(get(&s, "k8gb_gslb_healthy_records", &init), Some(0.0));
    }

    #[test]
    fn report_sets_failover_gauges_primary_and_secondary() {
        let m = Metrics::new("us", "k8gb");
        m.report_gslbs(&[failover("fo-p", true), failover("fo-s", false)]);
        let s = parsed(&m);
        for (name, role) in [("fo-p", "primary"), ("fo-s", "secondary")] {
            let st = |h: &str, v: f64| (labels(&[("status", &format!("{h}_{role}"))]), v);
            assert_eq!(
                series_of(&s, "k8gb_gslb_status_count_for_failover", name),
                vec![st("Healthy", 1.0), st("NotFound", 0.0), st("Unhealthy", 2.0)],
                "{name}"
            );
            let gslb = [("namespace", "test-gslb"), ("name", name)];
            assert_eq!(get(&s, "k8gb_gslb_healthy_records", &gslb), Some(3.0));
            assert_eq!(
                get(
                    &s,
                    "k8gb_gslb_healthy_local_records",
                    &[gslb[0], gslb[1], ("geotag", "us")]
                ),
                Some(1.0)
            );
            assert_eq!(
                series_of(&s, "k8gb_gslb_service_status_num", name),
                vec![
                    (labels(&[("status", "Healthy")]), 1.0),
                    (labels(&[("status", "NotFound")]), 0.0),
                    (labels(&[("status", "Unhealthy")]), 1.0),
                ]
            );
            assert!(series_of(&s, "k8gb_gslb_status_count_for_roundrobin", name).is_empty());
        }
    }

    #[test]
    fn report_sets_geoip_gauges() {
        let m = Metrics::new("eu", "k8gb");
        let mut g = roundrobin();
        g.name = "geo".into();
        g.strategy = Kind::GeoIp;
        m.report_gslbs(&[g]);
        let s = parsed(&m);
        assert_eq!(
            series_of(&s, "k8gb_gslb_status_count_for_geoip", "geo"),
            vec![
                (labels(&[("status", "Healthy")]), 4.0),
                (labels(&[("status", "NotFound")]), 0.0),
                (labels(&[("status", "Unhealthy")]), 1.0),
            ]
        );
        assert!(series_of(&s, "k8gb_gslb_status_count_for_roundrobin", "geo").is_empty());
    }

    #[test]
    fn report_removes_gslbs_no_longer_reported() {
        let m = Metrics::new("eu", "k8gb");
        m.report_gslbs(&[roundrobin(), failover("fo", true)]);
        let before = parsed(&m);
        assert!(!series_of(&before, "k8gb_endpoint_status_num", "fo").is_empty());

        // fo is gone and rr lost a host.
        let mut rr = roundrobin();
        rr.hosts.truncate(1);
        m.report_gslbs(&[rr]);
        let s = parsed(&m);
        let gauges = [
            "k8gb_gslb_healthy_records",
            "k8gb_gslb_healthy_local_records",
            "k8gb_gslb_service_status_num",
            "k8gb_gslb_status_count_for_failover",
            "k8gb_gslb_status_count_for_roundrobin",
            "k8gb_gslb_status_count_for_geoip",
            "k8gb_endpoint_status_num",
        ];
        for name in gauges {
            assert!(series_of(&s, name, "fo").is_empty(), "{name} still has fo");
            // The init series stays.
            assert_eq!(series_of(&s, name, "init").len(), 1, "{name}");
        }
        assert_eq!(series_of(&s, "k8gb_endpoint_status_num", "rr").len(), 2);
        let rr = [("namespace", "test-gslb"), ("name", "rr")];
        assert_eq!(get(&s, "k8gb_gslb_healthy_records", &rr), Some(3.0));

        // Counters keep their history.
        let fo = [("namespace", "test-gslb"), ("name", "fo")];
        assert_eq!(get(&s, "k8gb_gslb_reconciliation_loops_total", &fo), Some(1.0));

        m.report_gslbs(&[]);
        let s = parsed(&m);
        for name in gauges {
            assert_eq!(
                s.iter().filter(|x| x.name == name).count(),
                1,
                "{name}: only init left"
            );
        }
    }

    #[test]
    fn reconciliation_loops_and_errors_count() {
        let m = Metrics::new("eu", "k8gb");
        for _ in 0..3 {
            m.report_gslbs(&[roundrobin(), failover("fo", false)]);
        }
        m.report_gslbs(&[roundrobin()]);
        m.gslb_error("test-gslb", "fo");
        m.gslb_error("test-gslb", "fo");
        let s = parsed(&m);
        let rr = [("namespace", "test-gslb"), ("name", "rr")];
        let fo = [("namespace", "test-gslb"), ("name", "fo")];
        assert_eq!(get(&s, "k8gb_gslb_reconciliation_loops_total", &rr), Some(4.0));
        assert_eq!(get(&s, "k8gb_gslb_reconciliation_loops_total", &fo), Some(3.0));
        assert_eq!(get(&s, "k8gb_gslb_errors_total", &fo), Some(2.0));
        assert_eq!(get(&s, "k8gb_gslb_errors_total", &rr), None);
    }

    #[test]
    fn config_reloads_and_zone_serial() {
        let m = Metrics::new("eu", "k8gb");
        m.config_reload(true);
        m.config_reload(true);
        m.config_reload(false);
        m.zone_serial("cloud.example.com", 7);
        m.zone_serial("cloud.example.com", u32::MAX);
        m.zone_serial("other.example.com", 1);
        let s = parsed(&m);
        assert_eq!(
            get(&s, "k8gb_config_reloads_total", &[("result", "success")]),
            Some(2.0)
        );
        assert_eq!(
            get(&s, "k8gb_config_reloads_total", &[("result", "failure")]),
            Some(1.0)
        );
        assert_eq!(
            get(&s, "k8gb_zone_serial", &[("zone", "cloud.example.com")]),
            Some(f64::from(u32::MAX))
        );
        assert_eq!(
            get(&s, "k8gb_zone_serial", &[("zone", "other.example.com")]),
            Some(1.0)
        );
    }

    #[test]
    fn qtype_and_rcode_buckets() {
        let q = |t| QTYPE_LABELS[qtype_bucket(t)];
        assert_eq!(
            [q(1), q(28), q(2), q(6), q(255), q(99), q(5), q(0), q(65535)],
            [
                "A", "AAAA", "NS", "SOA", "ANY", "OTHER", "OTHER", "OTHER", "OTHER"
            ]
        );
        let r = |c| RCODE_LABELS[rcode_bucket(c)];
        assert_eq!(
            [
                r(0),
                r(1),
                r(2),
                r(3),
                r(4),
                r(5),
                r(16),
                r(6),
                r(9),
                r(17),
                r(4095)
            ],
            [
                "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
                "OTHER", "OTHER", "OTHER"
            ]
        );

        let m = Metrics::new("eu", "k8gb");
        let w = m.dns_worker();
        w.record(Transport::Udp, 28, 0, Duration::ZERO);
        w.record(Transport::Udp, 99, 3, Duration::ZERO);
        w.record(Transport::Tls, 1, 16, Duration::ZERO);
        w.record(Transport::Tcp, 6, 42, Duration::ZERO);
        let s = parsed(&m);
        let q = |t, qt, rc| {
            get(
                &s,
                "k8gb_dns_queries_total",
                &[("transport", t), ("qtype", qt), ("rcode", rc)],
            )
        };
        assert_eq!(q("udp", "AAAA", "NOERROR"), Some(1.0));
        assert_eq!(q("udp", "OTHER", "NXDOMAIN"), Some(1.0));
        assert_eq!(q("tls", "A", "BADVERS"), Some(1.0));
        assert_eq!(q("tcp", "SOA", "OTHER"), Some(1.0));
        assert_eq!(s.iter().filter(|x| x.name == "k8gb_dns_queries_total").count(), 4);
    }

    #[test]
    fn dns_stats_summed_across_workers() {
        let m = Metrics::new("eu", "k8gb");
        let (a, b) = (m.dns_worker(), m.dns_worker());
        for _ in 0..3 {
            a.record(Transport::Udp, 1, 0, Duration::from_micros(5));
        }
        for _ in 0..4 {
            b.record(Transport::Udp, 1, 0, Duration::from_micros(30));
        }
        b.record(Transport::Tcp, 2, 5, Duration::from_micros(30));
        a.dropped(Transport::Udp);
        b.dropped(Transport::Udp);
        b.dropped(Transport::Tls);
        // Worker threads record concurrently; the scrape sees every add.
        std::thread::scope(|scope| {
            for w in [&a, &b] {
                scope.spawn(move || {
                    for _ in 0..1000 {
                        w.record(Transport::Tls, 255, 2, Duration::from_millis(1));
                    }
                });
            }
        });
        let s = parsed(&m);
        let q = |t, qt, rc| {
            get(
                &s,
                "k8gb_dns_queries_total",
                &[("transport", t), ("qtype", qt), ("rcode", rc)],
            )
        };
        assert_eq!(q("udp", "A", "NOERROR"), Some(7.0));
        assert_eq!(q("tcp", "NS", "REFUSED"), Some(1.0));
        assert_eq!(q("tls", "ANY", "SERVFAIL"), Some(2000.0));
        let dropped = |t| get(&s, "k8gb_dns_dropped_total", &[("transport", t)]);
        assert_eq!(
            (dropped("udp"), dropped("tcp"), dropped("tls")),
            (Some(2.0), Some(0.0), Some(1.0))
        );
        let count = |t| get(&s, "k8gb_dns_query_duration_seconds_count", &[("transport", t)]);
        assert_eq!(
            (count("udp"), count("tcp"), count("tls")),
            (Some(7.0), Some(1.0), Some(2000.0))
        );
        let sum = get(&s, "k8gb_dns_query_duration_seconds_sum", &[("transport", "udp")]).unwrap();
        assert!((sum - (3.0 * 5e-6 + 4.0 * 30e-6)).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn histogram_buckets_cumulative() {
        let m = Metrics::new("eu", "k8gb");
        let w = m.dns_worker();
        let observe = [
            Duration::ZERO,               // le 1e-5
            Duration::from_micros(10),    // le 1e-5 (bounds are inclusive)
            Duration::from_nanos(10_001), // le 2.5e-5
            Duration::from_micros(100),   // le 1e-4
            Duration::from_micros(700),   // le 1e-3
            Duration::from_millis(30),    // le 0.1
            Duration::from_secs(2),       // +Inf only
            Duration::from_secs(1 << 40), // +Inf, clamped in the sum
        ];
        for d in observe {
            w.record(Transport::Tcp, 1, 0, d);
        }
        let s = parsed(&m);
        let bucket = |le: &str| {
            get(
                &s,
                "k8gb_dns_query_duration_seconds_bucket",
                &[("transport", "tcp"), ("le", le)],
            )
        };
        let les: Vec<f64> = s
            .iter()
            .filter(|x| x.name == "k8gb_dns_query_duration_seconds_bucket" && x.labels["transport"] == "tcp")
            .map(|x| parse_value(&x.labels["le"]).unwrap())
            .collect();
        let mut want: Vec<f64> = LATENCY_BOUNDS_SECONDS.to_vec();
        want.push(f64::INFINITY);
        assert_eq!(les, want, "bucket bounds, in order");
        let by_le: Vec<f64> = s
            .iter()
            .filter(|x| x.name == "k8gb_dns_query_duration_seconds_bucket" && x.labels["transport"] == "tcp")
            .map(|x| x.value)
            .collect();
        assert_eq!(by_le, [2.0, 3.0, 3.0, 4.0, 4.0, 4.0, 5.0, 5.0, 5.0, 6.0, 8.0]);
        assert_eq!(bucket("+Inf"), Some(8.0));
        assert_eq!(
            get(
                &s,
                "k8gb_dns_query_duration_seconds_count",
                &[("transport", "tcp")]
            ),
            Some(8.0)
        );
        let sum = get(&s, "k8gb_dns_query_duration_seconds_sum", &[("transport", "tcp")]).unwrap();
        assert!(
            (sum - (0.000_120_001 + 0.000_7 + 0.03 + 2.0 + 3600.0)).abs() < 1e-6,
            "{sum}"
        );
        // Other transports still expose an all-zero histogram.
        assert_eq!(
            get(
                &s,
                "k8gb_dns_query_duration_seconds_bucket",
                &[("transport", "udp"), ("le", "+Inf")]
            ),
            Some(0.0)
        );
    }

    #[test]
    fn output_is_valid_prometheus_text() {
        let m = Metrics::new("eu", "k8gb");
        m.report_gslbs(&[roundrobin(), failover("fo", true)]);
        m.gslb_error("test-gslb", "rr");
        m.config_reload(false);
        m.zone_serial("cloud.example.com", 2024010101);
        let w = m.dns_worker();
        w.record(Transport::Udp, 1, 0, Duration::from_micros(20));
        w.dropped(Transport::Tcp);
        let text = m.encode();
        let s = parse_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!text.contains("# EOF"));
        // Counters are declared under their sample names, as client_golang does.
        for counter in [
            "k8gb_gslb_errors_total",
            "k8gb_gslb_reconciliation_loops_total",
            "k8gb_config_reloads_total",
            "k8gb_dns_queries_total",
            "k8gb_dns_dropped_total",
            "k8gb_notify_received_total",
            "k8gb_notify_sent_total",
        ] {
            assert!(text.contains(&format!("# TYPE {counter} counter\n")), "{counter}");
            assert!(text.contains(&format!("# HELP {counter} ")), "{counter}");
        }
        assert!(text.contains("# TYPE k8gb_dns_query_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE k8gb_runtime_info gauge\n"));
        // Every family is declared once, and every sample belongs to one.
        let declared = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        // 15 upstream and DNS families plus the two NOTIFY counters (pre-created at zero);
        // k8gb_peer_up and k8gb_peer_syncs appear once a peer exists
        assert_eq!(declared, 17);
        assert!(s.len() > 40);
    }

    #[test]
    fn checker_rejects_bad_text() {
        for bad in [
            "# TYPE x counter\nx_total 1\n",     // sample outside its family
            "# TYPE x gauge\nx{a=\"b} 1\n",      // unterminated value
            "# TYPE x gauge\nx{a=\"b\\q\"} 1\n", // bad escape
            "# TYPE x gauge\nx 1\nx 2\n",        // duplicate series
            "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a=\"1\"} 1\n", // split family
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum 0\n",
            "# TYPE x info\n",
            "# TYPE x gauge\nx one\n",
            "# TYPE x gauge\nx 1",
            "# TYPE x gauge\n# TYPE x gauge\nx 1\n",
        ] {
            assert!(parse_text(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new("eu", "k8gb");
        m.zone_serial("we\"ird\\zone\n", 3);
        let mut g = roundrobin();
        g.name = "a\"b".into();
        m.report_gslbs(&[g]);
        let s = parsed(&m);
        assert_eq!(
            get(&s, "k8gb_zone_serial", &[("zone", "we\"ird\\zone\n")]),
            Some(3.0)
        );
        assert_eq!(
            get(
                &s,
                "k8gb_gslb_healthy_records",
                &[("namespace", "test-gslb"), ("name", "a\"b")]
            ),
            Some(5.0)
        );
    }

    #[test]
    fn dns_stats_are_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<DnsStats>(), 64);
        assert_eq!(std::mem::size_of::<DnsStats>() % 64, 0);
    }
}
