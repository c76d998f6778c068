//! Command-line flags, each also read from upstream's environment variable.
//!
//! Values are taken as text and validated in [`super::load`], so a mistake
//! gives our one-line error naming the variable, not a parser dump.

use std::path::PathBuf;

use clap::Args;

/// Settings shared by every command that reads the configuration.
/// Precedence: flag, then environment variable, then config file, then default.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// YAML config file (standalone mode: static peers and Gslb entries).
    #[arg(long, short = 'c', env = "K8GB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// This cluster's geotag: letters, digits and '-' [required].
    #[arg(long, env = "CLUSTER_GEO_TAG", value_name = "TAG")]
    pub cluster_geo_tag: Option<String>,

    /// Comma-separated geotags of the peer clusters.
    #[arg(long, env = "EXT_GSLB_CLUSTERS_GEO_TAGS", value_name = "TAGS")]
    pub ext_gslb_clusters_geo_tags: Option<String>,

    /// Load-balanced zones: "parent:zone:negTTL;parent2:zone2:negTTL".
    #[arg(long, env = "DNS_ZONES", value_name = "ZONES")]
    pub dns_zones: Option<String>,

    /// Comma-separated edge DNS servers, host[:port] (port 53 by default).
    #[arg(long, env = "EDGE_DNS_SERVERS", value_name = "SERVERS")]
    pub edge_dns_servers: Option<String>,

    /// Deprecated: use EDGE_DNS_SERVERS.
    #[arg(long, env = "EDGE_DNS_SERVER", value_name = "HOST", hide = true)]
    pub edge_dns_server: Option<String>,

    /// Deprecated: use EDGE_DNS_SERVERS.
    #[arg(long, env = "EDGE_DNS_SERVER_PORT", value_name = "PORT", hide = true)]
    pub edge_dns_server_port: Option<String>,

    /// Safety-net period of the Gslb reconcile and peer re-query, in seconds; 0 turns it off [default: 30].
    #[arg(long, env = "RECONCILE_REQUEUE_SECONDS", value_name = "SECONDS")]
    pub reconcile_requeue_seconds: Option<String>,

    /// Period of the zone delegation refresh, in seconds [default: 300].
    #[arg(
        long,
        env = "ZONE_DELEGATION_RECONCILE_REQUEUE_SECONDS",
        value_name = "SECONDS"
    )]
    pub zone_delegation_reconcile_requeue_seconds: Option<String>,

    /// Delay before retrying a failed zone delegation, in seconds [default: 3600].
    #[arg(long, env = "ZONE_DELEGATION_RECOVERY_SECONDS", value_name = "SECONDS")]
    pub zone_delegation_recovery_seconds: Option<String>,

    /// TTL of the NS and glue records written to the edge, at least 1 [default: 30].
    #[arg(long, env = "NS_RECORD_TTL", value_name = "SECONDS")]
    pub ns_record_ttl: Option<String>,

    /// Namespace k8gb runs in [default: k8gb].
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Type of the Service exposing k8gb's DNS: ClusterIP, LoadBalancer, NodePort or ExternalName [default: ClusterIP].
    #[arg(long, env = "COREDNS_SERVICE_TYPE", value_name = "TYPE")]
    pub coredns_service_type: Option<String>,

    /// Deprecated and ignored, as upstream.
    #[arg(long, env = "COREDNS_EXPOSED", value_name = "BOOL", hide = true)]
    pub coredns_exposed: Option<String>,

    /// Comma-separated addresses that replace discovered cluster addresses (IPv4 and IPv6).
    #[arg(long, env = "CLUSTER_EXPOSED_IPS", value_name = "IPS")]
    pub cluster_exposed_ips: Option<String>,

    /// Publish the delegation as DNSEndpoint resources for ExternalDNS [default: false].
    #[arg(long, env = "EXTDNS_ENABLED", value_name = "BOOL")]
    pub extdns_enabled: Option<String>,

    /// Upstream's Infoblox provider; not supported, rejected with a clear error.
    #[arg(long, env = "INFOBLOX_GRID_HOST", value_name = "HOST", hide = true)]
    pub infoblox_grid_host: Option<String>,

    /// Upstream's OpenTelemetry switch; accepted and ignored with a warning.
    #[arg(long, env = "TRACING_ENABLED", value_name = "BOOL", hide = true)]
    pub tracing_enabled: Option<String>,

    /// Admin HTTP address (metrics, health), host:port [default: 0.0.0.0:8080].
    #[arg(long, env = "METRICS_ADDRESS", value_name = "ADDR")]
    pub metrics_address: Option<String>,

    /// Prefix of the NS names published for each cluster; may be empty [default: gslb-ns-].
    #[arg(long, env = "GLUEA_PREFIX", value_name = "PREFIX")]
    pub gluea_prefix: Option<String>,

    /// DNS listen addresses for UDP and TCP, comma-separated host:port [default: 0.0.0.0:5353].
    #[arg(long, env = "DNS_ADDRESS", value_name = "ADDRS")]
    pub dns_address: Option<String>,

    /// DNS-over-TLS listen address, host:port (off unless set; needs the certificate and key).
    #[arg(long, env = "DOT_ADDRESS", value_name = "ADDR")]
    pub dot_address: Option<String>,

    /// PEM certificate chain for DNS-over-TLS; reloaded when it changes.
    #[arg(long, env = "DOT_CERT_FILE", value_name = "FILE")]
    pub dot_cert_file: Option<String>,

    /// PEM private key for DNS-over-TLS; reloaded when it changes.
    #[arg(long, env = "DOT_KEY_FILE", value_name = "FILE")]
    pub dot_key_file: Option<String>,

    /// Require DoT clients to present a certificate from this CA (mutual TLS for peers).
    #[arg(long, env = "DOT_CLIENT_CA_FILE", value_name = "FILE")]
    pub dot_client_ca_file: Option<String>,

    /// Peer exchange transport: udp (TCP when truncated) or dot [default: udp].
    #[arg(long, env = "PEER_TRANSPORT", value_name = "TRANSPORT")]
    pub peer_transport: Option<String>,

    /// DNS port of peers found by geotag through the edge DNS [default: 53].
    #[arg(long, env = "PEER_DNS_PORT", value_name = "PORT")]
    pub peer_dns_port: Option<String>,

    /// DoT port of peers found by geotag [default: 853].
    #[arg(long, env = "PEER_DOT_PORT", value_name = "PORT")]
    pub peer_dot_port: Option<String>,

    /// Seconds between liveness checks of each peer (an SOA query) [default: 1].
    #[arg(long, env = "PEER_HEARTBEAT_SECONDS", value_name = "SECONDS")]
    pub peer_heartbeat_seconds: Option<String>,

    /// Failed checks in a row before a peer's targets leave the answers [default: 3].
    #[arg(long, env = "PEER_GRACE_ATTEMPTS", value_name = "N")]
    pub peer_grace_attempts: Option<String>,

    /// Timeout of one peer query attempt, in seconds [default: 0.5].
    #[arg(long, env = "PEER_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub peer_timeout_seconds: Option<String>,

    /// Send DNS NOTIFY to peers when local targets change [default: true].
    #[arg(long, env = "NOTIFY_ENABLED", value_name = "BOOL")]
    pub notify_enabled: Option<String>,

    /// Source IPs of peer queries and NOTIFY, one per address family [default: the specific DNS_ADDRESS IPs].
    #[arg(long, env = "PEER_SOURCE_ADDRESS", value_name = "IP")]
    pub peer_source_address: Option<String>,

    /// CA that signs peers' DoT certificates.
    #[arg(long, env = "PEER_TLS_CA_FILE", value_name = "FILE")]
    pub peer_tls_ca_file: Option<String>,

    /// Client certificate presented to peers (mutual TLS).
    #[arg(long, env = "PEER_TLS_CERT_FILE", value_name = "FILE")]
    pub peer_tls_cert_file: Option<String>,

    /// Key of the client certificate.
    #[arg(long, env = "PEER_TLS_KEY_FILE", value_name = "FILE")]
    pub peer_tls_key_file: Option<String>,

    /// TSIG key name for peer queries and NOTIFY; unsigned ones are then refused.
    #[arg(long, env = "TSIG_KEY_NAME", value_name = "NAME")]
    pub tsig_key_name: Option<String>,

    /// TSIG algorithm: hmac-sha256 or hmac-sha512 [default: hmac-sha256].
    #[arg(long, env = "TSIG_ALGORITHM", value_name = "ALG")]
    pub tsig_algorithm: Option<String>,

    /// TSIG secret, base64 (prefer TSIG_SECRET_FILE); never logged.
    #[arg(long, env = "TSIG_SECRET", value_name = "BASE64", hide_env_values = true)]
    pub tsig_secret: Option<String>,

    /// File holding the base64 TSIG secret.
    #[arg(long, env = "TSIG_SECRET_FILE", value_name = "FILE")]
    pub tsig_secret_file: Option<String>,

    /// TSIG key name for RFC 2136 updates of the edge DNS (enables native delegation).
    #[arg(long, env = "RFC2136_TSIG_KEY_NAME", value_name = "NAME")]
    pub rfc2136_tsig_key_name: Option<String>,

    /// TSIG algorithm for RFC 2136: hmac-sha256 or hmac-sha512 [default: hmac-sha256].
    #[arg(long, env = "RFC2136_TSIG_ALGORITHM", value_name = "ALG")]
    pub rfc2136_tsig_algorithm: Option<String>,

    /// TSIG secret for RFC 2136, base64 (prefer RFC2136_TSIG_SECRET_FILE); never logged.
    #[arg(
        long,
        env = "RFC2136_TSIG_SECRET",
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub rfc2136_tsig_secret: Option<String>,

    /// File holding the base64 TSIG secret for RFC 2136.
    #[arg(long, env = "RFC2136_TSIG_SECRET_FILE", value_name = "FILE")]
    pub rfc2136_tsig_secret_file: Option<String>,

    /// Withdraw this cluster's NS and glue from the edge on shutdown [default: false].
    #[arg(long, env = "DELEGATION_FINALIZE", value_name = "BOOL")]
    pub delegation_finalize: Option<String>,

    /// MaxMind-format database for the geoip strategy; reloaded when it changes.
    #[arg(long, env = "GEOIP_DATABASE", value_name = "FILE")]
    pub geoip_database: Option<String>,

    /// Comma-separated database fields compared for geoip, tried in order; dots for nesting [default: datacenter].
    #[arg(long, env = "GEOIP_FIELDS", value_name = "FIELDS")]
    pub geoip_fields: Option<String>,

    /// Seconds to finish in-flight work after SIGTERM/SIGINT [default: 10].
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", value_name = "SECONDS")]
    pub shutdown_grace_seconds: Option<String>,

    /// Log level: trace, debug, info, warn or error [default: info].
    #[arg(long, env = "LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: simple (text on stderr) or json (stdout) [default: simple].
    #[arg(long, env = "LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Disable colours in simple logs.
    #[arg(long, env = "NO_COLOR", value_name = "BOOL")]
    pub no_color: Option<String>,
}
