use super::*;

fn args() -> ConfigArgs {
    ConfigArgs {
        cluster_geo_tag: Some("eu".into()),
        ..ConfigArgs::default()
    }
}

fn err(a: &ConfigArgs, file: Option<&str>) -> String {
    let parsed = file.map(|t| parse_file(t).expect("test file parses"));
    build(a, parsed.as_ref(), None)
        .expect_err("config must be rejected")
        .to_string()
}

fn ok(a: &ConfigArgs, file: Option<&str>) -> Config {
    let parsed = file.map(|t| parse_file(t).expect("test file parses"));
    build(a, parsed.as_ref(), None).expect("config must be accepted")
}

#[test]
fn defaults_match_upstream() {
    let c = ok(&args(), None);
    assert_eq!(c.geo_tag.as_str(), "eu");
    assert_eq!(c.reconcile_requeue_seconds, 30);
    assert_eq!(c.zone_delegation_reconcile_requeue_seconds, 300);
    assert_eq!(c.zone_delegation_recovery_seconds, 3600);
    assert_eq!(c.ns_record_ttl, 30);
    assert_eq!(c.pod_namespace, "k8gb");
    assert_eq!(c.service_type, ServiceType::ClusterIp);
    assert_eq!(c.metrics_address, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.gluea_prefix, "gslb-ns-");
    assert_eq!(c.log, LogConfig::default());
    assert!(!c.extdns_enabled);
    assert!(c.warnings.is_empty());
}

#[test]
fn geotag_required_and_checked() {
    let e = err(&ConfigArgs::default(), None);
    assert!(
        e.starts_with("CLUSTER_GEO_TAG (--cluster-geo-tag): required"),
        "{e}"
    );
    let mut a = args();
    a.cluster_geo_tag = Some("eu west".into());
    let e = err(&a, None);
    assert!(
        e.contains("\"eu west\"") && e.contains("letters, digits and '-'"),
        "{e}"
    );
}

#[test]
fn peers_from_env_need_edge_servers() {
    let mut a = args();
    a.ext_gslb_clusters_geo_tags = Some("eu,us,ap".into());
    let e = err(&a, None);
    assert!(e.starts_with("EDGE_DNS_SERVERS"), "{e}");
    a.edge_dns_servers = Some("127.0.0.1:1053, 127.0.0.2".into());
    let c = ok(&a, None);
    let tags: Vec<&str> = c.peers.iter().map(|p| p.geo_tag.as_str()).collect();
    assert_eq!(tags, ["ap", "us"], "own tag de-duplicated, sorted");
    assert_eq!(c.edge_dns_servers[1].port, 53);
}

#[test]
fn duplicate_geotags_and_edge_servers() {
    let mut a = args();
    a.ext_gslb_clusters_geo_tags = Some("us,us".into());
    a.edge_dns_servers = Some("1.1.1.1".into());
    assert!(err(&a, None).contains("listed twice"));
    a.ext_gslb_clusters_geo_tags = None;
    a.edge_dns_servers = Some("1.1.1.1,1.1.1.1:53".into());
    let e = err(&a, None);
    assert!(
        e.starts_with("EDGE_DNS_SERVERS (--edge-dns-servers): \"1.1.1.1:53\" is listed twice"),
        "{e}"
    );
}

#[test]
fn deprecated_edge_server_is_a_fallback_with_warning() {
    let mut a = args();
    a.edge_dns_server = Some("10.0.0.53".into());
    a.edge_dns_server_port = Some("1053".into());
    let c = ok(&a, None);
    assert_eq!(
        c.edge_dns_servers,
        vec![EdgeServer {
            host: "10.0.0.53".into(),
            port: 1053
        }]
    );
    assert_eq!(c.warnings.len(), 1);
    a.edge_dns_servers = Some("1.1.1.1".into());
    let c = ok(&a, None);
    assert_eq!(c.edge_dns_servers[0].host, "1.1.1.1", "EDGE_DNS_SERVERS wins");
}

#[test]
fn dns_zones() {
    let mut a = args();
    a.dns_zones = Some("example.com:cloud.example.com:30;example.org:gslb.example.org:10".into());
    let c = ok(&a, None);
    assert_eq!(c.zones.len(), 2);
    assert_eq!(c.zones[1].neg_ttl, 10);
    assert_eq!(c.ns_name(&c.geo_tag, &c.zones[0]), "gslb-ns-eu-cloud.example.com");
    for (bad, needle) in [
        ("example.com:cloud.example.com", "exactly three parts"),
        ("example.com:cloud.example.com:x", "not an integer"),
        ("example.com:cloud.example.org:30", "not a subdomain"),
        ("example.com:example.com:30", "not a subdomain"),
        ("example.com:cl oud.example.com:30", "invalid character"),
        ("example.com:cloud.example.com:-1", "out of range"),
        (
            "example.com:cloud.example.com:30;example.com:cloud.example.com:30",
            "listed twice",
        ),
    ] {
        a.dns_zones = Some(bad.into());
        let e = err(&a, None);
        assert!(
            e.starts_with("DNS_ZONES (--dns-zones):") && e.contains(needle),
            "{bad}: {e}"
        );
    }
}

#[test]
fn ns_names_must_fit() {
    let mut a = args();
    a.dns_zones = Some(format!("example.com:{}.example.com:30", "a".repeat(50)));
    a.gluea_prefix = Some("a-very-long-glue-prefix-".into());
    let e = err(&a, None);
    assert!(e.starts_with("GLUEA_PREFIX") && e.contains("63"), "{e}");
}

#[test]
fn scalars_ranges() {
    type Case = (fn(&mut ConfigArgs), &'static str);
    let cases: Vec<Case> = vec![
        (
            |a| a.ns_record_ttl = Some("0".into()),
            "NS_RECORD_TTL (--ns-record-ttl): 0 is out of range",
        ),
        (
            |a| a.reconcile_requeue_seconds = Some("-1".into()),
            "RECONCILE_REQUEUE_SECONDS",
        ),
        (
            |a| a.reconcile_requeue_seconds = Some("ten".into()),
            "\"ten\" is not an integer",
        ),
        (
            |a| a.log_level = Some("panic".into()),
            "LOG_LEVEL (--log-level): \"panic\"",
        ),
        (|a| a.log_format = Some("xml".into()), "LOG_FORMAT"),
        (|a| a.metrics_address = Some("8080".into()), "METRICS_ADDRESS"),
        (
            |a| a.cluster_exposed_ips = Some("10.0.0.1,nope".into()),
            "\"nope\" is not an IP",
        ),
        (
            |a| a.cluster_exposed_ips = Some("10.0.0.1,10.0.0.1".into()),
            "listed twice",
        ),
        (|a| a.extdns_enabled = Some("sure".into()), "EXTDNS_ENABLED"),
        (
            |a| a.coredns_service_type = Some("Ingress".into()),
            "COREDNS_SERVICE_TYPE",
        ),
        (
            |a| a.infoblox_grid_host = Some("grid.example.com".into()),
            "Infoblox provider is not supported",
        ),
    ];
    for (set, needle) in cases {
        let mut a = args();
        set(&mut a);
        let e = err(&a, None);
        assert!(e.contains(needle), "{needle}: {e}");
        assert!(!e.contains('\n'));
    }
    let mut a = args();
    a.reconcile_requeue_seconds = Some("0".into());
    a.cluster_exposed_ips = Some("10.0.0.1, 2001:db8::1".into());
    a.metrics_address = Some(":9090".into());
    a.coredns_exposed = Some("true".into());
    a.tracing_enabled = Some("true".into());
    let c = ok(&a, None);
    assert_eq!(c.reconcile_requeue_seconds, 0, "0 means event-driven only");
    assert_eq!(c.cluster_exposed_ips.len(), 2, "IPv6 is kept");
    assert_eq!(c.metrics_address.port(), 9090);
    assert_eq!(c.warnings.len(), 2);
}

const FILE: &str = r#"
clusterGeoTag: eu
extGslbClustersGeoTags: "us"
dnsZones:
  - parentZone: example.com
    loadBalancedZone: cloud.example.com
    dnsZoneNegTTL: 10
log:
  level: debug
peers:
  - geoTag: us
    address: 127.0.0.12:5353
  - geoTag: ap
    address: 127.0.0.13
gslbs:
  - name: rr
    hosts: [rr.cloud.example.com]
    strategy: {type: roundRobin, weight: {eu: 60, us: 30, ap: 10}, dnsTtlSeconds: 5}
    targets:
      - address: 10.0.0.1
      - address: 2001:db8::1
        healthy: false
  - name: fo
    namespace: shop
    hosts: [Fo.Cloud.Example.com.]
    strategy: {type: failover, primaryGeoTag: us}
"#;

#[test]
fn file_config() {
    let c = ok(&ConfigArgs::default(), Some(FILE));
    assert_eq!(c.geo_tag.as_str(), "eu");
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[1].address, Some("127.0.0.12:5353".parse().unwrap()));
    assert_eq!(c.peers[0].address, Some("127.0.0.13:53".parse().unwrap()));
    assert_eq!(c.gslbs[0].strategy.ttl, 5);
    assert_eq!(
        c.gslbs[0].targets[1],
        TargetConfig {
            address: "2001:db8::1".parse().unwrap(),
            healthy: false,
            probe: None
        }
    );
    assert_eq!(c.gslbs[1].hosts, ["fo.cloud.example.com"]);
    assert_eq!(c.gslbs[1].namespace, "shop");
    assert!(c.edge_dns_servers.is_empty(), "every peer has an address");
}

#[test]
fn flags_beat_file() {
    let mut a = ConfigArgs {
        cluster_geo_tag: Some("ap".into()),
        log_level: Some("warn".into()),
        ..ConfigArgs::default()
    };
    let e = err(&a, Some(FILE));
    // ap is now this cluster, and the file lists it as a peer
    assert!(e.starts_with("peers[1].geoTag"), "{e}");
    a.cluster_geo_tag = Some("eu".into());
    let c = ok(&a, Some(FILE));
    assert_eq!(c.log.level, LogLevel::Warn);
}

#[test]
fn file_mistakes_name_the_key() {
    let cases = [
        ("clusterGeoTag: eu\nwieght: 1\n", "wieght: unknown key"),
        (
            "clusterGeoTag: eu\ngslbs:\n  - name: a\n    hosts: [a.x.com]\n    strategy: {type: roundRobin, wieght: {}}\n",
            "gslbs.0.strategy.wieght: unknown key",
        ),
        (
            "clusterGeoTag: eu\nnsRecordTTL: ten\n",
            "nsRecordTTL: invalid type",
        ),
        (
            "clusterGeoTag: eu\npeers: [{geoTag: us}]\n",
            "missing field `address`",
        ),
    ];
    for (text, needle) in cases {
        let e = parse_file(text).expect_err(text).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
        assert!(!e.contains('\n'));
    }
    assert!(parse_file("  \n").is_err());
}

#[test]
fn gslb_mistakes() {
    let base = "clusterGeoTag: eu\ndnsZones: [{parentZone: example.com, loadBalancedZone: cloud.example.com}]\npeers: [{geoTag: us, address: 127.0.0.2}]\n";
    let cases = [
        (
            "gslbs: [{name: a, hosts: [a.other.org], strategy: {type: roundRobin}}]",
            "gslbs[0].hosts[0]: \"a.other.org\" is outside every zone",
        ),
        (
            "gslbs: [{name: a, hosts: [], strategy: {type: roundRobin}}]",
            "gslbs[0].hosts: at least one host",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: failover}}]",
            "gslbs[0].strategy: primaryGeoTag: required",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: failover, primaryGeoTag: mars}}]",
            "primaryGeoTag: \"mars\" is neither",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: roundRobin, weight: {eu: 1200}}}]",
            "gslbs[0].strategy: weight.eu: 1200 is out of range 0..=1000",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: geoip, weight: {eu: 1}}}]",
            "weight: only allowed with type roundRobin",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: rr}}]",
            "unknown strategy type \"rr\"",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: roundRobin}, targets: [{address: 10.0.0.300}]}]",
            "gslbs[0].targets[0].address",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: roundRobin}}, {name: b, hosts: [A.cloud.example.com], strategy: {type: roundRobin}}]",
            "already served by gslb default/a",
        ),
        (
            "gslbs: [{name: a, hosts: [a.cloud.example.com], strategy: {type: roundRobin}}, {name: a, hosts: [b.cloud.example.com], strategy: {type: roundRobin}}]",
            "default/a is listed twice",
        ),
    ];
    for (gslbs, needle) in cases {
        let text = format!("{base}{gslbs}\n");
        let e = err(&ConfigArgs::default(), Some(&text));
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn listeners_and_probes() {
    let c = ok(&args(), None);
    assert_eq!(c.dns_addresses, vec!["0.0.0.0:5353".parse().unwrap()]);
    assert!(c.dot.is_none());
    assert_eq!(c.geoip.fields, ["datacenter"]);
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert!(
        c.exposed_dns_ips().is_empty(),
        "unspecified listen address publishes nothing"
    );

    let mut a = args();
    a.dns_address = Some("127.0.0.11:5353,[::1]:5353".into());
    let c = ok(&a, None);
    assert_eq!(c.exposed_dns_ips().len(), 2);
    a.cluster_exposed_ips = Some("192.0.2.1".into());
    assert_eq!(
        ok(&a, None).exposed_dns_ips(),
        vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
    );

    let mut a = args();
    a.dot_address = Some("127.0.0.1:8853".into());
    assert!(err(&a, None).contains("needs an address, a certificate file and a key file"));
    a.dot_cert_file = Some("/nonexistent/cert.pem".into());
    a.dot_key_file = Some("/nonexistent/key.pem".into());
    assert!(err(&a, None).starts_with("DOT_CERT_FILE"));

    let base =
        "clusterGeoTag: eu\ndnsZones: [{parentZone: example.com, loadBalancedZone: cloud.example.com}]\n";
    let text = format!(
        "{base}gslbs:\n  - name: a\n    hosts: [a.cloud.example.com]\n    strategy: {{type: roundRobin}}\n    probe: {{type: http, port: 8080, path: /healthz, intervalSeconds: 0.2, failureThreshold: 2}}\n    targets:\n      - address: 127.0.0.21\n      - address: 127.0.0.22\n        probe: {{type: tcp, port: 22}}\n"
    );
    let c = ok(&ConfigArgs::default(), Some(&text));
    let t = &c.gslbs[0].targets;
    let p0 = t[0].probe.as_ref().expect("inherited probe");
    assert_eq!(p0.interval, Duration::from_millis(200));
    assert_eq!(p0.failure_threshold, 2);
    assert_eq!(p0.success_threshold, 1);
    assert!(matches!(&p0.kind, ProbeKind::Http { path, expect_status: 200, .. } if path == "/healthz"));
    assert_eq!(t[1].probe.as_ref().expect("own probe").kind, ProbeKind::Tcp);

    for (probe, needle) in [
        ("{type: icmp, port: 1}", "probe.type: \"icmp\""),
        ("{type: tcp}", "probe.port: required"),
        ("{type: tcp, port: 70000}", "probe.port: 70000"),
        ("{type: http, port: 80, expectStatus: 999}", "probe.expectStatus"),
        ("{type: http, port: 80, path: healthz}", "probe.path"),
        (
            "{type: http, port: 80, intervalSeconds: 0}",
            "probe.intervalSeconds",
        ),
        (
            "{type: tcp, port: 80, failureThreshold: 0}",
            "probe.failureThreshold",
        ),
        ("{type: tcp, port: 80, path: /x}", "need type http"),
    ] {
        let text = format!(
            "{base}gslbs: [{{name: a, hosts: [a.cloud.example.com], strategy: {{type: roundRobin}}, probe: {probe}, targets: [{{address: 10.0.0.1}}]}}]\n"
        );
        let e = err(&ConfigArgs::default(), Some(&text));
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let text = format!(
        "{base}gslbs: [{{name: a, hosts: [a.cloud.example.com], strategy: {{type: roundRobin}}, targets: [{{address: 10.0.0.1, healthy: true, probe: {{type: tcp, port: 1}}}}]}}]\n"
    );
    assert!(err(&ConfigArgs::default(), Some(&text)).contains("exclude each other"));
}

#[test]
fn delegation_finalize_applies_to_externaldns_too() {
    let mut a = args();
    a.extdns_enabled = Some("true".into());
    let c = ok(&a, None);
    assert!(c.extdns_enabled && c.delegation.is_none());
    assert!(!c.delegation_finalize, "default false, as upstream's doFinalize");
    a.delegation_finalize = Some("true".into());
    assert!(ok(&a, None).delegation_finalize);
    a.delegation_finalize = None;
    assert!(ok(&a, Some("delegation:\n  finalize: true\n")).delegation_finalize);
    a.delegation_finalize = Some("maybe".into());
    assert!(err(&a, None).starts_with("DELEGATION_FINALIZE (--delegation-finalize): "));
}
