//! Typed configuration: upstream's environment variables (also flags) and a
//! YAML file for standalone mode, merged and validated into one [`Config`].
//!
//! Precedence per setting: flag, environment variable, file, default.
//! Every mistake becomes a [`ConfigError`]: one line naming the field (the
//! variable and flag, or the file path to the key) and the bad value.

pub mod args;
pub mod file;
pub mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use args::ConfigArgs;
pub use parse::EdgeServer;

use crate::core::health::Policy;
use crate::core::names::{self, GeoTag};
use crate::core::strategy::{self, Kind, Strategy};
use file::{FileConfig, FileGslb, StringOrList};

/// A configuration mistake, displayed as one line: `<field>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // one line, whatever a parser put into the message
        let msg: String = self.message.split_whitespace().collect::<Vec<_>>().join(" ");
        write!(f, "{}: {}", self.field, msg)
    }
}

impl std::error::Error for ConfigError {}

/// Log verbosity (`LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log output (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    Simple,
    /// One JSON object per line on stdout.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub no_color: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Simple,
            no_color: false,
        }
    }
}

/// A load-balanced zone and the parent zone that delegates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone this server is authoritative for, normalized.
    pub name: String,
    /// The edge zone holding the delegation, normalized.
    pub parent: String,
    /// Negative-caching TTL (SOA minimum).
    pub neg_ttl: u32,
}

/// A peer cluster: its geotag and, when known statically, its DNS address.
/// Without an address it is found through the edge DNS by its NS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub geo_tag: GeoTag,
    pub address: Option<SocketAddr>,
    /// DoT address (default: the address's IP on the DoT port).
    pub dot_address: Option<SocketAddr>,
    /// Name checked in the peer's certificate (default: its IP address).
    pub server_name: Option<String>,
}

/// How peer queries travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTransport {
    /// UDP, retried over TCP when truncated.
    Udp,
    /// DNS-over-TLS, the peer's certificate checked against `PeerTls::ca_file`.
    Dot,
}

/// TLS material for DoT peer exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    pub ca_file: PathBuf,
    /// Client certificate and key for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// TSIG algorithms we sign and verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

/// A TSIG key. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Native delegation: RFC 2136 updates of the first edge DNS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationConfig {
    pub tsig: TsigKey,
    /// Withdraw this cluster's NS and glue on shutdown.
    pub finalize: bool,
}

/// Peer exchange settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerExchange {
    pub transport: PeerTransport,
    /// DNS port of peers found by geotag.
    pub port: u16,
    /// DoT port of peers without an explicit DoT address.
    pub dot_port: u16,
    /// Period of the liveness check (an SOA query) of each peer.
    pub heartbeat: Duration,
    /// Failed checks in a row before a peer leaves the answers.
    pub grace_attempts: u32,
    /// Timeout of one query attempt.
    pub timeout: Duration,
    pub notify: bool,
    /// Source IPs of our queries and NOTIFY messages; the first of the
    /// peer's address family is used (none: the kernel chooses).
    pub source_ips: Vec<IpAddr>,
    pub tls: Option<PeerTls>,
    pub tsig: Option<TsigKey>,
}

/// One target of a standalone Gslb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub address: IpAddr,
    /// Static health, used when there is no probe.
    pub healthy: bool,
    /// Active health check; when set, health comes from it.
    pub probe: Option<ProbeConfig>,
}

/// What an active probe does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Healthy when a TCP connection to the port opens.
    Tcp,
    /// Healthy when `GET path` answers `expect_status`.
    Http {
        path: String,
        host: Option<String>,
        expect_status: u16,
    },
}

/// An active health check of one target, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

/// The DNS-over-TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotConfig {
    pub address: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate from this CA.
    pub client_ca_file: Option<PathBuf>,
}

/// The geoip database and the fields compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoIpConfig {
    pub database: Option<PathBuf>,
    pub fields: Vec<String>,
}

/// A Gslb entry from the config file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GslbConfig {
    pub namespace: String,
    pub name: String,
    /// Normalized host names, each inside a configured zone.
    pub hosts: Vec<String>,
    pub strategy: Strategy,
    pub policy: Policy,
    pub targets: Vec<TargetConfig>,
}

/// `COREDNS_SERVICE_TYPE`: how the cluster's DNS is exposed (selects where
/// cluster addresses come from in Kubernetes mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIp,
    LoadBalancer,
    NodePort,
    ExternalName,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub geo_tag: GeoTag,
    /// Peer clusters, own tag removed, sorted by geotag.
    pub peers: Vec<Peer>,
    pub zones: Vec<Zone>,
    pub edge_dns_servers: Vec<EdgeServer>,
    pub reconcile_requeue_seconds: u64,
    pub zone_delegation_reconcile_requeue_seconds: u64,
    pub zone_delegation_recovery_seconds: u64,
    pub ns_record_ttl: u32,
    pub pod_namespace: String,
    pub service_type: ServiceType,
    pub cluster_exposed_ips: Vec<IpAddr>,
    pub extdns_enabled: bool,
    pub metrics_address: SocketAddr,
    pub gluea_prefix: String,
    pub log: LogConfig,
    /// UDP and TCP listen addresses of the DNS server.
    pub dns_addresses: Vec<SocketAddr>,
    pub dot: Option<DotConfig>,
    pub geoip: GeoIpConfig,
    pub shutdown_grace: Duration,
    pub peer_exchange: PeerExchange,
    /// RFC 2136 delegation, when a key is configured.
    pub delegation: Option<DelegationConfig>,
    /// Withdraw the delegation on shutdown (`DELEGATION_FINALIZE`), with
    /// either provider; `delegation.finalize` holds the same value.
    pub delegation_finalize: bool,
    pub gslbs: Vec<GslbConfig>,
    pub config_file: Option<PathBuf>,
    /// Deprecations and ignored settings, to be logged once logging is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// The NS name of `geo_tag` for `zone` (upstream naming, `GLUEA_PREFIX`).
    pub fn ns_name(&self, geo_tag: &GeoTag, zone: &Zone) -> String {
        // validated for every mesh member at load time
        names::ns_name(&self.gluea_prefix, geo_tag, &zone.name, &zone.parent)
            .unwrap_or_else(|_| format!("{}{}-invalid.{}", self.gluea_prefix, geo_tag, zone.parent))
    }

    /// This cluster's DNS addresses as published in its glue records:
    /// `CLUSTER_EXPOSED_IPS` when set, else the specific listen addresses.
    pub fn exposed_dns_ips(&self) -> Vec<IpAddr> {
        if !self.cluster_exposed_ips.is_empty() {
            return self.cluster_exposed_ips.clone();
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for a in self
            .dns_addresses
            .iter()
            .chain(self.dot.iter().map(|d| &d.address))
        {
            if !a.ip().is_unspecified() && !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        ips
    }

    /// A short description of what is enabled, for the start-up log line.
    pub fn features(&self) -> String {
        let mode = if self.config_file.is_some() {
            "standalone"
        } else {
            "kubernetes"
        };
        let delegation = if self.extdns_enabled {
            "externaldns"
        } else if self.delegation.is_some() {
            "rfc2136"
        } else {
            "none"
        };
        let dot = match &self.dot {
            Some(d) => d.address.to_string(),
            None => "off".to_string(),
        };
        let geoip = if self.geoip.database.is_some() {
            "on"
        } else {
            "off"
        };
        format!(
            "mode={mode} geotag={} zones={} peers={} gslbs={} delegation={delegation} dot={dot} geoip={geoip}",
            self.geo_tag,
            self.zones.len(),
            self.peers.len(),
            self.gslbs.len()
        )
    }
}

/// Reads the config file named in `args` (if any) and merges it with the
/// flags and environment in `args`.
pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
    let file = match &args.config {
        Some(path) => Some(read_file(path)?),
        None => None,
    };
    build(args, file.as_ref(), args.config.as_deref())
}

/// Parses a config file; unknown keys and type errors name the key path.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let field = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&field, format!("cannot read config file: {e}")))?;
    parse_file(&text).map_err(|e| ConfigError::new(format!("{field}: {}", e.field), e.message))
}

/// Parses config file text. Errors carry the key path in `field`.
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::new("(file)", "the config file is empty"));
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let mut unknown: Vec<String> = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignored = serde_ignored::Deserializer::new(de, &mut record);
    let parsed: Result<FileConfig, _> = serde_path_to_error::deserialize(ignored);
    let cfg = parsed.map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "(file)".to_string()
        } else {
            path
        };
        ConfigError::new(field, e.into_inner().to_string())
    })?;
    if let Some(first) = unknown.first() {
        return Err(ConfigError::new(first.clone(), "unknown key"));
    }
    Ok(cfg)
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
struct Names {
    env: &'static str,
    flag: &'static str,
    key: &'static str,
}

impl Names {
    fn cli(&self) -> String {
        format!("{} (--{})", self.env, self.flag)
    }
}

macro_rules! names {
    ($env:literal, $flag:literal, $key:literal) => {
        Names {
            env: $env,
            flag: $flag,
            key: $key,
        }
    };
}

/// A value picked by precedence, with the label naming its origin.
struct Picked<T> {
    value: T,
    field: String,
}

fn pick_text(cli: &Option<String>, file: Option<String>, n: Names) -> Option<Picked<String>> {
    match (cli, file) {
        (Some(v), _) => Some(Picked {
            value: v.clone(),
            field: n.cli(),
        }),
        (None, Some(v)) => Some(Picked {
            value: v,
            field: n.key.to_string(),
        }),
        (None, None) => None,
    }
}

fn pick_list(cli: &Option<String>, file: &Option<StringOrList>, n: Names) -> Option<Picked<Vec<String>>> {
    match (cli, file) {
        (Some(v), _) => Some(Picked {
            value: parse::split_list(v),
            field: n.cli(),
        }),
        (None, Some(v)) => Some(Picked {
            value: v.items(),
            field: n.key.to_string(),
        }),
        (None, None) => None,
    }
}

fn pick_int(cli: &Option<String>, file: Option<i64>, n: Names) -> Result<Option<Picked<i64>>, ConfigError> {
    match (cli, file) {
        (Some(v), _) => {
            let value = parse::parse_int(v).map_err(|m| ConfigError::new(n.cli(), m))?;
            Ok(Some(Picked {
                value,
                field: n.cli(),
            }))
        }
        (None, Some(v)) => Ok(Some(Picked {
            value: v,
            field: n.key.to_string(),
        })),
        (None, None) => Ok(None),
    }
}

fn ranged_int(
    cli: &Option<String>,
    file: Option<i64>,
    n: Names,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    match pick_int(cli, file, n)? {
        None => Ok(default),
        Some(p) if range.contains(&p.value) => Ok(p.value),
        Some(p) => Err(ConfigError::new(
            p.field,
            format!("{} is out of range {}..={}", p.value, range.start(), range.end()),
        )),
    }
}

fn cli_bool(cli: &Option<String>, n: Names) -> Result<Option<bool>, ConfigError> {
    cli.as_deref()
        .map(|v| parse::parse_bool(v).map_err(|m| ConfigError::new(n.cli(), m)))
        .transpose()
}

/// Merges flags/environment with an optional parsed file and validates.
pub fn build(
    args: &ConfigArgs,
    file: Option<&FileConfig>,
    path: Option<&Path>,
) -> Result<Config, ConfigError> {
    let empty = FileConfig::default();
    let f = file.unwrap_or(&empty);
    let mut warnings = Vec::new();

    if let Some(host) = args.infoblox_grid_host.as_deref().filter(|h| !h.is_empty()) {
        return Err(ConfigError::new(
            "INFOBLOX_GRID_HOST (--infoblox-grid-host)",
            format!(
                "{host:?}: the Infoblox provider is not supported; delegate with RFC 2136 (EDGE_DNS_SERVERS) or ExternalDNS (EXTDNS_ENABLED=true)"
            ),
        ));
    }
    if cli_bool(
        &args.tracing_enabled,
        names!("TRACING_ENABLED", "tracing-enabled", ""),
    )? == Some(true)
    {
        warnings.push("TRACING_ENABLED=true is ignored: OpenTelemetry tracing is not implemented".into());
    }
    if args.coredns_exposed.is_some() {
        warnings.push("COREDNS_EXPOSED is deprecated and ignored, as upstream".into());
    }

    // geotags
    let n = names!("CLUSTER_GEO_TAG", "cluster-geo-tag", "clusterGeoTag");
    let geo = pick_text(&args.cluster_geo_tag, f.cluster_geo_tag.clone(), n)
        .ok_or_else(|| ConfigError::new(n.cli(), "required: this cluster's geotag, e.g. eu"))?;
    let geo_tag = GeoTag::parse(geo.value.trim())
        .map_err(|e| ConfigError::new(&geo.field, format!("{:?} {e}", geo.value)))?;

    let mut peers: BTreeMap<GeoTag, Peer> = BTreeMap::new();
    let n = names!(
        "EXT_GSLB_CLUSTERS_GEO_TAGS",
        "ext-gslb-clusters-geo-tags",
        "extGslbClustersGeoTags"
    );
    if let Some(p) = pick_list(&args.ext_gslb_clusters_geo_tags, &f.ext_gslb_clusters_geo_tags, n) {
        for raw in &p.value {
            let tag = GeoTag::parse(raw).map_err(|e| ConfigError::new(&p.field, format!("{raw:?} {e}")))?;
            if tag == geo_tag {
                continue; // upstream de-duplicates the own tag
            }
            if peers.contains_key(&tag) {
                return Err(ConfigError::new(
                    &p.field,
                    format!("geotag {raw:?} is listed twice"),
                ));
            }
            peers.insert(
                tag.clone(),
                Peer {
                    geo_tag: tag,
                    address: None,
                    dot_address: None,
                    server_name: None,
                },
            );
        }
    }
    let mut static_seen = BTreeSet::new();
    for (i, fp) in f.peers.iter().enumerate() {
        let field = format!("peers[{i}]");
        let tag = GeoTag::parse(&fp.geo_tag)
            .map_err(|e| ConfigError::new(format!("{field}.geoTag"), format!("{:?} {e}", fp.geo_tag)))?;
        if tag == geo_tag {
            return Err(ConfigError::new(
                format!("{field}.geoTag"),
                format!("{:?} is this cluster's own geotag", fp.geo_tag),
            ));
        }
        if !static_seen.insert(tag.clone()) {
            return Err(ConfigError::new(
                format!("{field}.geoTag"),
                format!("geotag {:?} is listed twice", fp.geo_tag),
            ));
        }
        let address = parse::parse_dns_address(&fp.address)
            .map_err(|m| ConfigError::new(format!("{field}.address"), m))?;
        let dot_address = match &fp.dot_address {
            Some(a) => Some(
                parse::parse_dns_address(a)
                    .map_err(|m| ConfigError::new(format!("{field}.dotAddress"), m))?,
            ),
            None => None,
        };
        if let Some(n) = &fp.server_name {
            names::validate_dns_name(n)
                .map_err(|e| ConfigError::new(format!("{field}.serverName"), format!("{n:?} {e}")))?;
        }
        peers.insert(
            tag.clone(),
            Peer {
                geo_tag: tag,
                address: Some(address),
                dot_address,
                server_name: fp.server_name.clone(),
            },
        );
    }

    // zones
    let prefix_n = names!("GLUEA_PREFIX", "gluea-prefix", "glueAPrefix");
    let gluea = pick_text(&args.gluea_prefix, f.gluea_prefix.clone(), prefix_n);
    let gluea_prefix = gluea
        .as_ref()
        .map(|p| p.value.clone())
        .unwrap_or_else(|| names::DEFAULT_GLUE_PREFIX.to_string());
    let gluea_field = gluea.map(|p| p.field).unwrap_or_else(|| prefix_n.cli());

    let n = names!("DNS_ZONES", "dns-zones", "dnsZones");
    let zone_specs: Vec<(parse::ZoneSpec, String)> = match (&args.dns_zones, &f.dns_zones) {
        (Some(text), _) => {
            let specs = parse::parse_dns_zones(text).map_err(|m| ConfigError::new(n.cli(), m))?;
            specs.into_iter().map(|s| (s, n.cli())).collect()
        }
        (None, Some(list)) => list
            .iter()
            .enumerate()
            .map(|(i, z)| {
                (
                    parse::ZoneSpec {
                        parent_zone: z.parent_zone.clone(),
                        load_balanced_zone: z.load_balanced_zone.clone(),
                        neg_ttl: z.dns_zone_neg_ttl.unwrap_or(30),
                    },
                    format!("dnsZones[{i}]"),
                )
            })
            .collect(),
        (None, None) => Vec::new(),
    };
    let mut zones: Vec<Zone> = Vec::new();
    for (spec, field) in &zone_specs {
        for (what, name) in [
            ("parentZone", &spec.parent_zone),
            ("loadBalancedZone", &spec.load_balanced_zone),
        ] {
            names::validate_dns_name(name)
                .map_err(|e| ConfigError::new(field, format!("{what} {name:?} {e}")))?;
        }
        let name = names::normalize(&spec.load_balanced_zone);
        let parent = names::normalize(&spec.parent_zone);
        names::zone_relative_to_parent(&name, &parent).map_err(|e| ConfigError::new(field, e.to_string()))?;
        if !(0..=86_400).contains(&spec.neg_ttl) {
            return Err(ConfigError::new(
                field,
                format!("negTTL {} of {name:?} is out of range 0..=86400", spec.neg_ttl),
            ));
        }
        if zones.iter().any(|z| z.name == name) {
            return Err(ConfigError::new(field, format!("zone {name:?} is listed twice")));
        }
        // every mesh member's NS name must fit RFC 1035
        for tag in std::iter::once(&geo_tag).chain(peers.keys()) {
            names::ns_name(&gluea_prefix, tag, &name, &parent).map_err(|e| {
                let field = if gluea_prefix != names::DEFAULT_GLUE_PREFIX {
                    &gluea_field
                } else {
                    field
                };
                ConfigError::new(
                    field.clone(),
                    format!("NS name of geotag {tag} for zone {name:?} with prefix {gluea_prefix:?} {e}"),
                )
            })?;
        }
        zones.push(Zone {
            name,
            parent,
            neg_ttl: spec.neg_ttl as u32,
        });
    }

    // edge DNS servers
    let n = names!("EDGE_DNS_SERVERS", "edge-dns-servers", "edgeDNSServers");
    let mut edge_dns_servers = Vec::new();
    let picked = pick_list(&args.edge_dns_servers, &f.edge_dns_servers, n).filter(|p| !p.value.is_empty());
    let picked = match picked {
        Some(p) => Some(p),
        None => match &args.edge_dns_server {
            Some(host) if !host.trim().is_empty() => {
                warnings.push(
                    "EDGE_DNS_SERVER and EDGE_DNS_SERVER_PORT are deprecated: use EDGE_DNS_SERVERS".into(),
                );
                let port = args
                    .edge_dns_server_port
                    .as_deref()
                    .unwrap_or("53")
                    .trim()
                    .to_string();
                Some(Picked {
                    value: vec![format!("{}:{port}", host.trim())],
                    field: "EDGE_DNS_SERVER (--edge-dns-server)".to_string(),
                })
            }
            _ => {
                if args.edge_dns_server_port.is_some() {
                    warnings
                        .push("EDGE_DNS_SERVER_PORT is deprecated and unused without EDGE_DNS_SERVER".into());
                }
                None
            }
        },
    };
    if let Some(p) = picked {
        for raw in &p.value {
            let server = parse::parse_edge_server(raw).map_err(|m| ConfigError::new(&p.field, m))?;
            if edge_dns_servers.contains(&server) {
                return Err(ConfigError::new(&p.field, format!("{raw:?} is listed twice")));
            }
            edge_dns_servers.push(server);
        }
    }
    if let Some(p) = peers.values().find(|p| p.address.is_none())
        && edge_dns_servers.is_empty()
    {
        return Err(ConfigError::new(
            n.cli(),
            format!(
                "required to find peer {} by its NS name; set edge DNS servers or give the peer an address under peers",
                p.geo_tag
            ),
        ));
    }

    // scalars
    let reconcile_requeue_seconds = ranged_int(
        &args.reconcile_requeue_seconds,
        f.reconcile_requeue_seconds,
        names!(
            "RECONCILE_REQUEUE_SECONDS",
            "reconcile-requeue-seconds",
            "reconcileRequeueSeconds"
        ),
        30,
        0..=86_400,
    )? as u64;
    let zone_delegation_reconcile_requeue_seconds = ranged_int(
        &args.zone_delegation_reconcile_requeue_seconds,
        f.zone_delegation_reconcile_requeue_seconds,
        names!(
            "ZONE_DELEGATION_RECONCILE_REQUEUE_SECONDS",
            "zone-delegation-reconcile-requeue-seconds",
            "zoneDelegationReconcileRequeueSeconds"
        ),
        300,
        0..=86_400,
    )? as u64;
    let zone_delegation_recovery_seconds = ranged_int(
        &args.zone_delegation_recovery_seconds,
        f.zone_delegation_recovery_seconds,
        names!(
            "ZONE_DELEGATION_RECOVERY_SECONDS",
            "zone-delegation-recovery-seconds",
            "zoneDelegationRecoverySeconds"
        ),
        3600,
        0..=86_400,
    )? as u64;
    let ns_record_ttl = ranged_int(
        &args.ns_record_ttl,
        f.ns_record_ttl,
        names!("NS_RECORD_TTL", "ns-record-ttl", "nsRecordTTL"),
        30,
        1..=strategy::MAX_TTL,
    )? as u32;

    let pod_namespace = args.pod_namespace.clone().unwrap_or_else(|| "k8gb".to_string());
    names::validate_dns_name(&pod_namespace).map_err(|e| {
        ConfigError::new(
            "POD_NAMESPACE (--pod-namespace)",
            format!("{pod_namespace:?} {e}"),
        )
    })?;

    let service_type = match args.coredns_service_type.as_deref().map(str::trim) {
        None | Some("") | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("NodePort") => ServiceType::NodePort,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(ConfigError::new(
                "COREDNS_SERVICE_TYPE (--coredns-service-type)",
                format!("{other:?} is not one of ClusterIP, LoadBalancer, NodePort, ExternalName"),
            ));
        }
    };

    let n = names!("CLUSTER_EXPOSED_IPS", "cluster-exposed-ips", "clusterExposedIPs");
    let mut cluster_exposed_ips = Vec::new();
    if let Some(p) = pick_list(&args.cluster_exposed_ips, &f.cluster_exposed_ips, n) {
        for raw in &p.value {
            let ip: IpAddr = raw
                .parse()
                .map_err(|_| ConfigError::new(&p.field, format!("{raw:?} is not an IP address")))?;
            if cluster_exposed_ips.contains(&ip) {
                return Err(ConfigError::new(&p.field, format!("{raw:?} is listed twice")));
            }
            cluster_exposed_ips.push(ip);
        }
    }

    let extdns_enabled = cli_bool(
        &args.extdns_enabled,
        names!("EXTDNS_ENABLED", "extdns-enabled", ""),
    )?
    .unwrap_or(false);

    let n = names!("METRICS_ADDRESS", "metrics-address", "metricsAddress");
    let metrics_address = match pick_text(&args.metrics_address, f.metrics_address.clone(), n) {
        Some(p) => parse::parse_listen_address(&p.value).map_err(|m| ConfigError::new(p.field, m))?,
        None => SocketAddr::from(([0, 0, 0, 0], 8080)),
    };

    let file_log = f.log.clone().unwrap_or_default();
    let n = names!("LOG_LEVEL", "log-level", "log.level");
    let level = match pick_text(&args.log_level, file_log.level.clone(), n) {
        None => LogLevel::Info,
        Some(p) => match p.value.trim().to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" | "" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                return Err(ConfigError::new(
                    p.field,
                    format!("{:?} is not one of trace, debug, info, warn, error", p.value),
                ));
            }
        },
    };
    let n = names!("LOG_FORMAT", "log-format", "log.format");
    let format = match pick_text(&args.log_format, file_log.format.clone(), n) {
        None => LogFormat::Simple,
        Some(p) => match p.value.trim().to_ascii_lowercase().as_str() {
            "simple" | "" => LogFormat::Simple,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::new(
                    p.field,
                    format!("{:?} is not one of simple, json", p.value),
                ));
            }
        },
    };
    // NO_COLOR convention: any value but an explicit false disables colour
    let no_color = match args.no_color.as_deref() {
        Some(v) => parse::parse_bool(v).unwrap_or(true),
        None => file_log.no_color.unwrap_or(false),
    };

    let n = names!("DNS_ADDRESS", "dns-address", "dnsAddress");
    let mut dns_addresses = Vec::new();
    match pick_list(&args.dns_address, &f.dns_address, n) {
        Some(p) => {
            for raw in &p.value {
                let a = parse::parse_listen_address(raw).map_err(|m| ConfigError::new(&p.field, m))?;
                if dns_addresses.contains(&a) {
                    return Err(ConfigError::new(&p.field, format!("{raw:?} is listed twice")));
                }
                dns_addresses.push(a);
            }
            if dns_addresses.is_empty() {
                return Err(ConfigError::new(&p.field, "at least one address is required"));
            }
        }
        None => dns_addresses.push(SocketAddr::from(([0, 0, 0, 0], 5353))),
    }

    let fdot = f.dot.clone().unwrap_or_default();
    let dot_addr = pick_text(
        &args.dot_address,
        fdot.address,
        names!("DOT_ADDRESS", "dot-address", "dot.address"),
    );
    let dot_cert = pick_text(
        &args.dot_cert_file,
        fdot.cert_file,
        names!("DOT_CERT_FILE", "dot-cert-file", "dot.certFile"),
    );
    let dot_key = pick_text(
        &args.dot_key_file,
        fdot.key_file,
        names!("DOT_KEY_FILE", "dot-key-file", "dot.keyFile"),
    );
    let dot = match (dot_addr, dot_cert, dot_key) {
        (None, None, None) => None,
        (Some(a), Some(c), Some(k)) => {
            let address = parse::parse_listen_address(&a.value).map_err(|m| ConfigError::new(&a.field, m))?;
            for p in [&c, &k] {
                std::fs::metadata(&p.value)
                    .map_err(|e| ConfigError::new(&p.field, format!("{:?}: {e}", p.value)))?;
            }
            let client_ca_file = match pick_text(
                &args.dot_client_ca_file,
                fdot.client_ca_file.clone(),
                names!("DOT_CLIENT_CA_FILE", "dot-client-ca-file", "dot.clientCaFile"),
            ) {
                Some(p) => {
                    std::fs::metadata(&p.value)
                        .map_err(|e| ConfigError::new(&p.field, format!("{:?}: {e}", p.value)))?;
                    Some(PathBuf::from(p.value))
                }
                None => None,
            };
            Some(DotConfig {
                address,
                cert_file: PathBuf::from(c.value),
                key_file: PathBuf::from(k.value),
                client_ca_file,
            })
        }
        (a, _, _) => {
            let field = a
                .map(|a| a.field)
                .unwrap_or_else(|| "DOT_ADDRESS (--dot-address)".into());
            return Err(ConfigError::new(
                field,
                "DNS-over-TLS needs an address, a certificate file and a key file",
            ));
        }
    };

    let fgeo = f.geoip.clone().unwrap_or_default();
    let geo_db = pick_text(
        &args.geoip_database,
        fgeo.database,
        names!("GEOIP_DATABASE", "geoip-database", "geoip.database"),
    );
    let geo_fields = pick_list(
        &args.geoip_fields,
        &fgeo.fields,
        names!("GEOIP_FIELDS", "geoip-fields", "geoip.fields"),
    );
    let fields = match geo_fields {
        Some(p) if p.value.is_empty() => {
            return Err(ConfigError::new(&p.field, "at least one field is required"));
        }
        Some(p) => {
            if let Some(bad) = p.value.iter().find(|f| f.split('.').any(str::is_empty)) {
                return Err(ConfigError::new(&p.field, format!("{bad:?} is not a field path")));
            }
            p.value
        }
        None => vec!["datacenter".to_string()],
    };
    let database = match geo_db {
        Some(p) => {
            std::fs::metadata(&p.value)
                .map_err(|e| ConfigError::new(&p.field, format!("{:?}: {e}", p.value)))?;
            Some(PathBuf::from(p.value))
        }
        None => None,
    };
    let geoip = GeoIpConfig { database, fields };

    let grace = ranged_int(
        &args.shutdown_grace_seconds,
        f.shutdown_grace_seconds,
        names!(
            "SHUTDOWN_GRACE_SECONDS",
            "shutdown-grace-seconds",
            "shutdownGraceSeconds"
        ),
        10,
        0..=3600,
    )?;

    let peer_exchange = peer_exchange(args, f.peer_exchange.clone().unwrap_or_default(), &dns_addresses)?;
    let fdel = f.delegation.clone().unwrap_or_default();
    // both providers: RFC 2136 withdraws our records, ExternalDNS our DNSEndpoint
    let delegation_finalize = match cli_bool(
        &args.delegation_finalize,
        names!("DELEGATION_FINALIZE", "delegation-finalize", ""),
    )? {
        Some(b) => b,
        None => fdel.finalize.unwrap_or(false),
    };
    let delegation = match tsig_key(
        [
            &args.rfc2136_tsig_key_name,
            &args.rfc2136_tsig_algorithm,
            &args.rfc2136_tsig_secret,
            &args.rfc2136_tsig_secret_file,
        ],
        fdel.tsig.clone().unwrap_or_default(),
        [
            names!(
                "RFC2136_TSIG_KEY_NAME",
                "rfc2136-tsig-key-name",
                "delegation.tsig.keyName"
            ),
            names!(
                "RFC2136_TSIG_ALGORITHM",
                "rfc2136-tsig-algorithm",
                "delegation.tsig.algorithm"
            ),
            names!("RFC2136_TSIG_SECRET", "rfc2136-tsig-secret", ""),
            names!(
                "RFC2136_TSIG_SECRET_FILE",
                "rfc2136-tsig-secret-file",
                "delegation.tsig.secretFile"
            ),
        ],
    )? {
        None => None,
        Some(tsig) => {
            if edge_dns_servers.is_empty() {
                return Err(ConfigError::new(
                    "EDGE_DNS_SERVERS (--edge-dns-servers)",
                    "required with RFC2136_TSIG_KEY_NAME: the edge server that receives the updates",
                ));
            }
            if extdns_enabled {
                return Err(ConfigError::new(
                    "RFC2136_TSIG_KEY_NAME (--rfc2136-tsig-key-name)",
                    "RFC 2136 delegation and EXTDNS_ENABLED exclude each other: choose one provider",
                ));
            }
            Some(DelegationConfig {
                tsig,
                finalize: delegation_finalize,
            })
        }
    };

    let mesh: BTreeSet<&GeoTag> = std::iter::once(&geo_tag).chain(peers.keys()).collect();
    let gslbs = validate_gslbs(&f.gslbs, &zones, &mesh)?;
    if geoip.database.is_none() && gslbs.iter().any(|g| g.strategy.kind == Kind::GeoIp) {
        warnings.push(
            "a Gslb uses the geoip strategy but GEOIP_DATABASE is not set: its answers are not filtered"
                .into(),
        );
    }

    Ok(Config {
        peers: peers.into_values().collect(),
        geo_tag,
        zones,
        edge_dns_servers,
        reconcile_requeue_seconds,
        zone_delegation_reconcile_requeue_seconds,
        zone_delegation_recovery_seconds,
        ns_record_ttl,
        pod_namespace,
        service_type,
        cluster_exposed_ips,
        extdns_enabled,
        metrics_address,
        gluea_prefix,
        log: LogConfig {
            level,
            format,
            no_color,
        },
        dns_addresses,
        dot,
        geoip,
        shutdown_grace: Duration::from_secs(grace as u64),
        peer_exchange,
        delegation,
        delegation_finalize,
        gslbs,
        config_file: path.map(Path::to_path_buf),
        warnings,
    })
}

fn validate_gslbs(
    entries: &[FileGslb],
    zones: &[Zone],
    mesh: &BTreeSet<&GeoTag>,
) -> Result<Vec<GslbConfig>, ConfigError> {
    let mut out: Vec<GslbConfig> = Vec::new();
    let mut host_owner: BTreeMap<String, String> = BTreeMap::new();
    for (i, g) in entries.iter().enumerate() {
        let field = format!("gslbs[{i}]");
        let namespace = g.namespace.clone().unwrap_or_else(|| "default".to_string());
        for (what, v) in [("name", &g.name), ("namespace", &namespace)] {
            names::validate_dns_name(v)
                .map_err(|e| ConfigError::new(format!("{field}.{what}"), format!("{v:?} {e}")))?;
        }
        let id = format!("{namespace}/{}", g.name);
        if out.iter().any(|o| o.namespace == namespace && o.name == g.name) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("{id} is listed twice"),
            ));
        }
        if g.hosts.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.hosts"),
                "at least one host is required",
            ));
        }
        let mut hosts = Vec::new();
        for (j, h) in g.hosts.iter().enumerate() {
            let hf = format!("{field}.hosts[{j}]");
            names::validate_dns_name(h).map_err(|e| ConfigError::new(&hf, format!("{h:?} {e}")))?;
            let host = names::normalize(h);
            if names::best_zone(&host, zones.iter().map(|z| z.name.as_str())).is_none() {
                let list: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
                return Err(ConfigError::new(
                    &hf,
                    format!("{h:?} is outside every zone in dnsZones ({})", list.join(", ")),
                ));
            }
            names::localtargets_name(&host)
                .map_err(|e| ConfigError::new(&hf, format!("localtargets-{host} {e}")))?;
            if let Some(other) = host_owner.insert(host.clone(), id.clone()) {
                return Err(ConfigError::new(
                    &hf,
                    format!("{h:?} is already served by gslb {other}"),
                ));
            }
            hosts.push(host);
        }
        let strategy = g
            .strategy
            .validate()
            .map_err(|e| ConfigError::new(format!("{field}.strategy"), e.to_string()))?;
        // In the file every cluster is known, so a primary outside the mesh can
        // only be a typo; upstream would silently never fail back.
        if strategy.kind == Kind::Failover
            && let Some(p) = &strategy.primary
            && !mesh.contains(p)
        {
            return Err(ConfigError::new(
                format!("{field}.strategy.primaryGeoTag"),
                format!("{:?} is neither this cluster's geotag nor a peer's", p.as_str()),
            ));
        }
        let gslb_probe = match &g.probe {
            Some(p) => Some(validate_probe(p, &format!("{field}.probe"))?),
            None => None,
        };
        let mut targets: Vec<TargetConfig> = Vec::new();
        for (j, t) in g.targets.iter().enumerate() {
            let probe = match &t.probe {
                Some(p) => Some(validate_probe(p, &format!("{field}.targets[{j}].probe"))?),
                None => gslb_probe.clone(),
            };
            if probe.is_some() && t.healthy.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.targets[{j}].healthy"),
                    "static health and a probe exclude each other",
                ));
            }
            let tf = format!("{field}.targets[{j}].address");
            let address: IpAddr = t
                .address
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(&tf, format!("{:?} is not an IP address", t.address)))?;
            if targets.iter().any(|x| x.address == address) {
                return Err(ConfigError::new(&tf, format!("{address} is listed twice")));
            }
            targets.push(TargetConfig {
                address,
                healthy: t.healthy.unwrap_or(true),
                probe,
            });
        }
        out.push(GslbConfig {
            namespace,
            name: g.name.clone(),
            hosts,
            strategy,
            policy: g.service_health_policy.into(),
            targets,
        });
    }
    Ok(out)
}

fn peer_exchange(
    args: &ConfigArgs,
    f: file::FilePeerExchange,
    dns_addresses: &[SocketAddr],
) -> Result<PeerExchange, ConfigError> {
    let transport = match pick_text(
        &args.peer_transport,
        f.transport.clone(),
        names!("PEER_TRANSPORT", "peer-transport", "peerExchange.transport"),
    ) {
        None => PeerTransport::Udp,
        Some(p) => match p.value.trim() {
            "udp" => PeerTransport::Udp,
            "dot" => PeerTransport::Dot,
            other => {
                return Err(ConfigError::new(
                    p.field,
                    format!("{other:?} is not one of udp, dot"),
                ));
            }
        },
    };
    let port = ranged_int(
        &args.peer_dns_port,
        f.port,
        names!("PEER_DNS_PORT", "peer-dns-port", "peerExchange.port"),
        53,
        1..=65535,
    )? as u16;
    let dot_port = ranged_int(
        &args.peer_dot_port,
        f.dot_port,
        names!("PEER_DOT_PORT", "peer-dot-port", "peerExchange.dotPort"),
        853,
        1..=65535,
    )? as u16;
    let seconds =
        |cli: &Option<String>, file: Option<f64>, n: Names, default: f64| -> Result<Duration, ConfigError> {
            let (v, field) = match (cli, file) {
                (Some(t), _) => (
                    t.trim().parse::<f64>().map_err(|_| {
                        ConfigError::new(n.cli(), format!("{t:?} is not a number of seconds"))
                    })?,
                    n.cli(),
                ),
                (None, Some(v)) => (v, n.key.to_string()),
                (None, None) => (default, n.cli()),
            };
            if !(0.01..=3600.0).contains(&v) {
                return Err(ConfigError::new(
                    field,
                    format!("{v} is out of range 0.01..=3600"),
                ));
            }
            Ok(Duration::from_secs_f64(v))
        };
    let heartbeat = seconds(
        &args.peer_heartbeat_seconds,
        f.heartbeat_seconds,
        names!(
            "PEER_HEARTBEAT_SECONDS",
            "peer-heartbeat-seconds",
            "peerExchange.heartbeatSeconds"
        ),
        1.0,
    )?;
    let timeout = seconds(
        &args.peer_timeout_seconds,
        f.timeout_seconds,
        names!(
            "PEER_TIMEOUT_SECONDS",
            "peer-timeout-seconds",
            "peerExchange.timeoutSeconds"
        ),
        0.5,
    )?;
    let grace_attempts = ranged_int(
        &args.peer_grace_attempts,
        f.grace_attempts,
        names!(
            "PEER_GRACE_ATTEMPTS",
            "peer-grace-attempts",
            "peerExchange.graceAttempts"
        ),
        3,
        1..=100,
    )? as u32;
    let notify = match cli_bool(
        &args.notify_enabled,
        names!("NOTIFY_ENABLED", "notify-enabled", ""),
    )? {
        Some(b) => b,
        None => f.notify.unwrap_or(true),
    };
    let source_ips: Vec<IpAddr> = match pick_text(
        &args.peer_source_address,
        f.source_address.clone(),
        names!(
            "PEER_SOURCE_ADDRESS",
            "peer-source-address",
            "peerExchange.sourceAddress"
        ),
    ) {
        Some(p) => parse::split_list(&p.value)
            .iter()
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| ConfigError::new(&p.field, format!("{v:?} is not an IP address")))
            })
            .collect::<Result<_, _>>()?,
        // every specific DNS address, so IPv4 and IPv6 peers each get one of their family
        None => dns_addresses
            .iter()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .collect(),
    };

    let ftls = f.tls.clone().unwrap_or_default();
    let file_of =
        |cli: &Option<String>, file: Option<String>, n: Names| -> Result<Option<PathBuf>, ConfigError> {
            match pick_text(cli, file, n) {
                Some(p) => {
                    std::fs::metadata(&p.value)
                        .map_err(|e| ConfigError::new(&p.field, format!("{:?}: {e}", p.value)))?;
                    Ok(Some(PathBuf::from(p.value)))
                }
                None => Ok(None),
            }
        };
    let ca = file_of(
        &args.peer_tls_ca_file,
        ftls.ca_file,
        names!("PEER_TLS_CA_FILE", "peer-tls-ca-file", "peerExchange.tls.caFile"),
    )?;
    let cert = file_of(
        &args.peer_tls_cert_file,
        ftls.cert_file,
        names!(
            "PEER_TLS_CERT_FILE",
            "peer-tls-cert-file",
            "peerExchange.tls.certFile"
        ),
    )?;
    let key = file_of(
        &args.peer_tls_key_file,
        ftls.key_file,
        names!(
            "PEER_TLS_KEY_FILE",
            "peer-tls-key-file",
            "peerExchange.tls.keyFile"
        ),
    )?;
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::new(
                "PEER_TLS_CERT_FILE (--peer-tls-cert-file)",
                "a client certificate needs both PEER_TLS_CERT_FILE and PEER_TLS_KEY_FILE",
            ));
        }
    };
    let tls = match (ca, transport) {
        (Some(ca_file), _) => Some(PeerTls { ca_file, client_cert }),
        (None, PeerTransport::Dot) => {
            return Err(ConfigError::new(
                "PEER_TLS_CA_FILE (--peer-tls-ca-file)",
                "required with PEER_TRANSPORT=dot: the CA that signs the peers' certificates",
            ));
        }
        (None, PeerTransport::Udp) => None,
    };

    let tsig = tsig_key(
        [
            &args.tsig_key_name,
            &args.tsig_algorithm,
            &args.tsig_secret,
            &args.tsig_secret_file,
        ],
        f.tsig.clone().unwrap_or_default(),
        [
            names!("TSIG_KEY_NAME", "tsig-key-name", "peerExchange.tsig.keyName"),
            names!("TSIG_ALGORITHM", "tsig-algorithm", "peerExchange.tsig.algorithm"),
            names!("TSIG_SECRET", "tsig-secret", ""),
            names!(
                "TSIG_SECRET_FILE",
                "tsig-secret-file",
                "peerExchange.tsig.secretFile"
            ),
        ],
    )?;
    Ok(PeerExchange {
        transport,
        port,
        dot_port,
        heartbeat,
        grace_attempts,
        timeout,
        notify,
        source_ips,
        tls,
        tsig,
    })
}

/// A TSIG key from name, algorithm and secret settings (`cli` and `n` in
/// that order: key name, algorithm, secret, secret file).
fn tsig_key(
    cli: [&Option<String>; 4],
    f: file::FileTsig,
    n: [Names; 4],
) -> Result<Option<TsigKey>, ConfigError> {
    let [cli_name, cli_alg, cli_secret, cli_secret_file] = cli;
    let [n_name, n_alg, n_secret, n_secret_file] = n;
    let key_name = pick_text(cli_name, f.key_name, n_name);
    let secret_file = pick_text(cli_secret_file, f.secret_file, n_secret_file);
    let tsig = match key_name {
        None => {
            if cli_secret.is_some() || secret_file.is_some() {
                return Err(ConfigError::new(n_name.cli(), "required with a TSIG secret"));
            }
            None
        }
        Some(name) => {
            names::validate_dns_name(&name.value)
                .map_err(|e| ConfigError::new(&name.field, format!("{:?} {e}", name.value)))?;
            let algorithm = match pick_text(cli_alg, f.algorithm, n_alg) {
                None => TsigAlgorithm::HmacSha256,
                Some(p) => match p.value.trim().to_ascii_lowercase().trim_end_matches('.') {
                    "hmac-sha256" => TsigAlgorithm::HmacSha256,
                    "hmac-sha512" => TsigAlgorithm::HmacSha512,
                    other => {
                        return Err(ConfigError::new(
                            p.field,
                            format!("{other:?} is not one of hmac-sha256, hmac-sha512"),
                        ));
                    }
                },
            };
            // the secret's value never appears in an error message
            let (text, field) = match (cli_secret, secret_file) {
                (Some(s), _) => (s.clone(), n_secret.cli()),
                (None, Some(p)) => (
                    std::fs::read_to_string(&p.value)
                        .map_err(|e| ConfigError::new(&p.field, format!("{:?}: {e}", p.value)))?,
                    p.field,
                ),
                (None, None) => {
                    return Err(ConfigError::new(
                        n_secret_file.cli(),
                        format!(
                            "a TSIG key needs its secret ({} or {})",
                            n_secret_file.env, n_secret.env
                        ),
                    ));
                }
            };
            let secret = data_encoding::BASE64
                .decode(text.trim().as_bytes())
                .map_err(|_| {
                    ConfigError::new(&field, "the TSIG secret is not valid base64 (value not shown)")
                })?;
            if secret.len() < 16 {
                return Err(ConfigError::new(
                    &field,
                    "the TSIG secret is shorter than 16 bytes (value not shown)",
                ));
            }
            Some(TsigKey {
                name: names::normalize(&name.value),
                algorithm,
                secret,
            })
        }
    };
    Ok(tsig)
}

fn validate_probe(p: &file::FileProbe, field: &str) -> Result<ProbeConfig, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::new(format!("{field}.{key}"), msg);
    let port = match p.port {
        Some(n) if (1..=65535).contains(&n) => n as u16,
        Some(n) => return Err(err("port", format!("{n} is out of range 1..=65535"))),
        None => return Err(err("port", "required".into())),
    };
    let kind = match p.type_.as_str() {
        "tcp" => {
            if p.path.is_some() || p.expect_status.is_some() || p.host.is_some() {
                return Err(err("type", "path, host and expectStatus need type http".into()));
            }
            ProbeKind::Tcp
        }
        "http" => {
            let path = p.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("path", format!("{path:?} is not an absolute URL path")));
            }
            let expect_status = match p.expect_status {
                None => 200,
                Some(s) if (100..=599).contains(&s) => s as u16,
                Some(s) => return Err(err("expectStatus", format!("{s} is not an HTTP status"))),
            };
            if let Some(h) = &p.host
                && (h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(err("host", format!("{h:?} is not a host name")));
            }
            ProbeKind::Http {
                path,
                host: p.host.clone(),
                expect_status,
            }
        }
        other => return Err(err("type", format!("{other:?} is not one of tcp, http"))),
    };
    let secs = |key: &str, v: Option<f64>, default: f64| -> Result<Duration, ConfigError> {
        let v = v.unwrap_or(default);
        if !(0.01..=3600.0).contains(&v) {
            return Err(err(key, format!("{v} is out of range 0.01..=3600")));
        }
        Ok(Duration::from_secs_f64(v))
    };
    let interval = secs("intervalSeconds", p.interval_seconds, 1.0)?;
    let timeout = secs("timeoutSeconds", p.timeout_seconds, 1.0)?;
    let count = |key: &str, v: Option<i64>, default: i64| -> Result<u32, ConfigError> {
        match v.unwrap_or(default) {
            n @ 1..=100 => Ok(n as u32),
            n => Err(err(key, format!("{n} is out of range 1..=100"))),
        }
    };
    Ok(ProbeConfig {
        kind,
        port,
        interval,
        timeout,
        failure_threshold: count("failureThreshold", p.failure_threshold, 3)?,
        success_threshold: count("successThreshold", p.success_threshold, 1)?,
    })
}

#[cfg(test)]
mod tests;
