//! The YAML config file: the same settings as the environment (named like the
//! Helm chart's `k8gb.*` values), plus static peers and Gslb entries for
//! standalone mode. Unknown keys anywhere are an error.

use serde::Deserialize;

use crate::api::{ServiceHealthPolicy, Strategy};

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FileConfig {
    pub cluster_geo_tag: Option<String>,
    pub ext_gslb_clusters_geo_tags: Option<StringOrList>,
    pub dns_zones: Option<Vec<FileZone>>,
    #[serde(rename = "edgeDNSServers")]
    pub edge_dns_servers: Option<StringOrList>,
    pub reconcile_requeue_seconds: Option<i64>,
    pub zone_delegation_reconcile_requeue_seconds: Option<i64>,
    pub zone_delegation_recovery_seconds: Option<i64>,
    #[serde(rename = "nsRecordTTL")]
    pub ns_record_ttl: Option<i64>,
    #[serde(rename = "clusterExposedIPs")]
    pub cluster_exposed_ips: Option<StringOrList>,
    pub metrics_address: Option<String>,
    #[serde(rename = "glueAPrefix")]
    pub gluea_prefix: Option<String>,
    pub log: Option<FileLog>,
    pub dns_address: Option<StringOrList>,
    pub dot: Option<FileDot>,
    pub geoip: Option<FileGeoIp>,
    pub shutdown_grace_seconds: Option<i64>,
    pub peer_exchange: Option<FilePeerExchange>,
    pub delegation: Option<FileDelegation>,
    /// Peers with their DNS addresses (geotag → address).
    #[serde(default)]
    pub peers: Vec<FilePeer>,
    /// Gslb entries served in standalone mode.
    #[serde(default)]
    pub gslbs: Vec<FileGslb>,
}

/// Upstream's Helm values write some lists as one comma-separated string
/// (`extGslbClustersGeoTags: "eu,us"`); both spellings are accepted.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum StringOrList {
    String(String),
    List(Vec<String>),
}

impl StringOrList {
    pub fn items(&self) -> Vec<String> {
        match self {
            StringOrList::String(s) => super::parse::split_list(s),
            StringOrList::List(v) => v.iter().map(|s| s.trim().to_string()).collect(),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FileZone {
    pub parent_zone: String,
    pub load_balanced_zone: String,
    #[serde(rename = "dnsZoneNegTTL")]
    pub dns_zone_neg_ttl: Option<i64>,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct FileLog {
    pub level: Option<String>,
    pub format: Option<String>,
    #[serde(rename = "noColor")]
    pub no_color: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileDot {
    pub address: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Require client certificates signed by this CA (mutual TLS).
    pub client_ca_file: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct FileGeoIp {
    pub database: Option<String>,
    pub fields: Option<StringOrList>,
}

/// An active health check of a target.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileProbe {
    /// `tcp` (connect) or `http` (GET, expecting a status).
    #[serde(rename = "type")]
    pub type_: String,
    pub port: Option<i64>,
    /// HTTP path, default `/`.
    pub path: Option<String>,
    /// HTTP Host header, default the target address.
    pub host: Option<String>,
    /// Expected HTTP status, default 200.
    pub expect_status: Option<i64>,
    /// Seconds between checks (fractions allowed), default 1.
    pub interval_seconds: Option<f64>,
    /// Seconds before a check fails (fractions allowed), default 1.
    pub timeout_seconds: Option<f64>,
    /// Consecutive failures before the target is unhealthy, default 3.
    pub failure_threshold: Option<i64>,
    /// Consecutive successes before it is healthy again, default 1.
    pub success_threshold: Option<i64>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FilePeer {
    pub geo_tag: String,
    /// `ip:port`, or an IP with port 53.
    pub address: String,
    /// DNS-over-TLS address when peer exchange uses DoT, default the address's IP on port 853.
    pub dot_address: Option<String>,
    /// Name expected in the peer's certificate, default its IP address.
    pub server_name: Option<String>,
}

/// How this cluster talks to its peers.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FilePeerExchange {
    /// `udp` (UDP, TCP when truncated) or `dot`.
    pub transport: Option<String>,
    /// DNS port of peers found by geotag, default 53.
    pub port: Option<i64>,
    /// DoT port of peers found by geotag, default 853.
    pub dot_port: Option<i64>,
    pub heartbeat_seconds: Option<f64>,
    pub grace_attempts: Option<i64>,
    pub timeout_seconds: Option<f64>,
    pub notify: Option<bool>,
    /// Source address of queries and NOTIFY, default the first specific DNS address.
    pub source_address: Option<String>,
    pub tls: Option<FilePeerTls>,
    pub tsig: Option<FileTsig>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FilePeerTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// Native RFC 2136 delegation to the edge DNS.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileDelegation {
    pub tsig: Option<FileTsig>,
    /// Withdraw this cluster's NS and glue on shutdown.
    pub finalize: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileTsig {
    pub key_name: Option<String>,
    pub algorithm: Option<String>,
    /// A file holding the base64 secret (never put the secret itself here).
    pub secret_file: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FileGslb {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub hosts: Vec<String>,
    pub strategy: Strategy,
    #[serde(default)]
    pub service_health_policy: ServiceHealthPolicy,
    /// Probe for every target of this Gslb, unless a target has its own.
    #[serde(default)]
    pub probe: Option<FileProbe>,
    #[serde(default)]
    pub targets: Vec<FileTarget>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FileTarget {
    pub address: String,
    /// Static health of the target; `true` when omitted. Exclusive with a probe.
    #[serde(default)]
    pub healthy: Option<bool>,
    #[serde(default)]
    pub probe: Option<FileProbe>,
}
