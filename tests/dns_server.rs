//! The built binary serves the DNS contract (shared/DESIGN.md) from a file
//! config, checked row by row with the hickory client and dig, over UDP and TCP.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{dig, dig_short, eventually, http_get, start};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

fn config(extra_target: &str) -> String {
    let big: String = (1..=60).map(|i| format!("{{address: 10.7.0.{i}}}, ")).collect();
    format!(
        r#"
clusterGeoTag: eu
dnsAddress: 127.0.0.1:0
metricsAddress: 127.0.0.1:0
dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com, dnsZoneNegTTL: 17}}]
peers: [{{geoTag: us, address: 127.0.0.2:53}}]
gslbs:
  - name: app
    hosts: [app.cloud.example.com]
    strategy: {{type: roundRobin, dnsTtlSeconds: 9}}
    targets: [{{address: 10.0.0.1}}, {{address: 10.0.0.2}}, {{address: 10.0.0.3}}, {{address: "2001:db8::1"}}, {{address: 10.0.0.9, healthy: false}}{extra_target}]
  - name: v4
    hosts: [v4.cloud.example.com]
    strategy: {{type: failover, primaryGeoTag: eu}}
    targets: [{{address: 10.0.1.1}}]
  - name: down
    hosts: [down.cloud.example.com]
    strategy: {{type: roundRobin}}
    targets: [{{address: 10.0.2.1, healthy: false}}]
  - name: big
    hosts: [big.cloud.example.com]
    strategy: {{type: roundRobin}}
    targets: [{big}]
"#
    )
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Udp,
    Tcp,
}

async fn ask(server: SocketAddr, via: Via, name: &str, rtype: RecordType) -> Message {
    let provider = TokioRuntimeProvider::default();
    let name = Name::from_ascii(name).unwrap();
    let response = match via {
        Via::Udp => {
            let stream = UdpClientStream::builder(server, provider).build();
            let (mut client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
            tokio::spawn(bg);
            client.query(name, DNSClass::IN, rtype).await
        }
        Via::Tcp => {
            let (stream, handle) = TcpClientStream::new(server, None, Some(Duration::from_secs(5)), provider);
            let stream = stream.await.expect("tcp connect");
            let (mut client, bg) = Client::<TokioRuntimeProvider>::new(stream, handle);
            tokio::spawn(bg);
            client.query(name, DNSClass::IN, rtype).await
        }
    };
    response.expect("a DNS response").into_message()
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = list.iter().map(|s| s.parse().unwrap()).collect();
    v.sort();
    v
}

fn soa_serial(m: &Message) -> u32 {
    m.answers
        .iter()
        .chain(m.authorities.iter())
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
        .expect("an SOA")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_contract_with_hickory_over_udp_and_tcp() {
    let s = start(&config(""));
    for via in [Via::Udp, Via::Tcp] {
        let ctx = format!("{via:?}");
        // <host> A and AAAA: healthy targets only, strategy TTL, authoritative
        let m = ask(s.dns, via, "app.cloud.example.com.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ctx}");
        assert!(m.metadata.authoritative, "{ctx}");
        assert_eq!(addrs(&m), ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]), "{ctx}");
        assert!(m.answers.iter().all(|r| r.ttl == 9), "{ctx}");
        let m = ask(s.dns, via, "app.cloud.example.com.", RecordType::AAAA).await;
        assert_eq!(addrs(&m), ips(&["2001:db8::1"]), "{ctx}");
        // localtargets-<host> A and AAAA
        let m = ask(s.dns, via, "localtargets-app.cloud.example.com.", RecordType::A).await;
        assert_eq!(addrs(&m), ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]), "{ctx}");
        let m = ask(
            s.dns,
            via,
            "localtargets-app.cloud.example.com.",
            RecordType::AAAA,
        )
        .await;
        assert_eq!(addrs(&m), ips(&["2001:db8::1"]), "{ctx}");
        // NODATA: SOA in authority with the negative TTL
        let m = ask(s.dns, via, "v4.cloud.example.com.", RecordType::AAAA).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ctx}");
        assert!(m.answers.is_empty(), "{ctx}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{ctx}");
        assert_eq!(m.authorities[0].ttl, 17, "{ctx}");
        // NXDOMAIN: no healthy target anywhere, unhealthy localtargets, unknown names
        for name in [
            "down.cloud.example.com.",
            "localtargets-down.cloud.example.com.",
            "nope.cloud.example.com.",
        ] {
            let m = ask(s.dns, via, name, RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{ctx} {name}");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{ctx} {name}");
        }
        // REFUSED outside served zones (label suffix, not substring)
        for name in ["example.org.", "app.notcloud.example.com."] {
            let m = ask(s.dns, via, name, RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{ctx} {name}");
        }
        // SOA, NS and glue
        let m = ask(s.dns, via, "cloud.example.com.", RecordType::SOA).await;
        assert!(soa_serial(&m) > 1_700_000_000, "{ctx}: time-based serial");
        let m = ask(s.dns, via, "cloud.example.com.", RecordType::NS).await;
        let mut ns: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(n.0.to_ascii()),
                _ => None,
            })
            .collect();
        ns.sort();
        assert_eq!(
            ns,
            ["gslb-ns-eu-cloud.example.com.", "gslb-ns-us-cloud.example.com."],
            "{ctx}"
        );
        assert_eq!(m.additionals.len(), 2, "{ctx}: glue for both NS names");
        let m = ask(s.dns, via, "gslb-ns-us-cloud.example.com.", RecordType::A).await;
        assert_eq!(addrs(&m), ips(&["127.0.0.2"]), "{ctx}");
        let m = ask(s.dns, via, "gslb-ns-eu-cloud.example.com.", RecordType::A).await;
        assert_eq!(
            addrs(&m),
            ips(&["127.0.0.1"]),
            "{ctx}: our own glue is our listen address"
        );
        // case-insensitive, question echoed as asked
        let m = ask(s.dns, via, "APP.Cloud.Example.COM.", RecordType::A).await;
        assert_eq!(m.queries[0].name().to_ascii(), "APP.Cloud.Example.COM.", "{ctx}");
        assert_eq!(addrs(&m).len(), 3, "{ctx}");
        // a big answer is complete over TCP
        if let Via::Tcp = via {
            let m = ask(s.dns, via, "big.cloud.example.com.", RecordType::A).await;
            assert_eq!(m.answers.len(), 60);
        }
    }
}

#[test]
fn dns_contract_with_dig() {
    let s = start(&config(""));
    for proto in ["+notcp", "+tcp"] {
        let full = dig(s.dns, &[proto, "app.cloud.example.com", "A"]);
        assert!(
            full.contains("status: NOERROR") && full.contains("flags: qr aa"),
            "{proto}: {full}"
        );
        assert_eq!(
            dig_short(s.dns, &[proto, "app.cloud.example.com", "A"]),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            dig_short(s.dns, &[proto, "app.cloud.example.com", "AAAA"]),
            ["2001:db8::1"]
        );
        assert_eq!(
            dig_short(s.dns, &[proto, "localtargets-app.cloud.example.com", "A"]),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        let nodata = dig(s.dns, &[proto, "v4.cloud.example.com", "AAAA"]);
        assert!(
            nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0, AUTHORITY: 1"),
            "{nodata}"
        );
        assert!(nodata.contains("17\tIN\tSOA"), "negative TTL: {nodata}");
        let nx = dig(s.dns, &[proto, "down.cloud.example.com", "A"]);
        assert!(
            nx.contains("status: NXDOMAIN") && nx.contains("AUTHORITY: 1"),
            "{nx}"
        );
        let refused = dig(s.dns, &[proto, "www.example.org", "A"]);
        assert!(refused.contains("status: REFUSED"), "{refused}");
        let echo = dig(s.dns, &[proto, "ApP.CLOUD.example.com", "A"]);
        assert!(echo.contains(";ApP.CLOUD.example.com.\t\tIN\tA"), "{echo}");
        let ns = dig_short(s.dns, &[proto, "cloud.example.com", "NS"]);
        assert_eq!(
            ns,
            ["gslb-ns-eu-cloud.example.com.", "gslb-ns-us-cloud.example.com."]
        );
    }
    // rotation: successive answers start with different records
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let out = dig(s.dns, &["+short", "app.cloud.example.com", "A"]);
        firsts.insert(out.lines().next().unwrap_or("").to_string());
    }
    assert_eq!(firsts.len(), 3, "answer order rotates");
    // UDP without EDNS: 512 bytes, so 60 records are cut with TC; dig then retries over TCP
    let cut = dig(s.dns, &["+noedns", "+ignore", "big.cloud.example.com", "A"]);
    assert!(cut.contains(" tc") && cut.contains("ANSWER: 0"), "{cut}");
    let edns_small = dig(s.dns, &["+bufsize=1232", "+ignore", "big.cloud.example.com", "A"]);
    assert!(
        edns_small.contains("ANSWER: 60"),
        "60 A records fit 1232 bytes: {edns_small}"
    );
    let retried = dig(s.dns, &["+noedns", "big.cloud.example.com", "A"]);
    assert!(
        retried.contains("ANSWER: 60") && retried.contains("(TCP)"),
        "{retried}"
    );
    // EDNS: our OPT carries 1232; version 1 gets BADVERS
    let opt = dig(s.dns, &["app.cloud.example.com", "A"]);
    assert!(opt.contains("udp: 1232"), "{opt}");
    let badvers = dig(s.dns, &["+edns=1", "+noednsneg", "app.cloud.example.com", "A"]);
    assert!(badvers.contains("status: BADVERS"), "{badvers}");
}

#[test]
fn config_edits_apply_and_broken_edits_keep_serving() {
    let s = start(&config(""));
    let serial = |s: &common::Server| -> u64 {
        let out = dig_short(s.dns, &["cloud.example.com", "SOA"]);
        out[0].split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let before = serial(&s);
    s.write_config(&config(", {address: 10.0.0.4}"));
    assert!(
        eventually(Duration::from_secs(10), || dig_short(
            s.dns,
            &["app.cloud.example.com", "A"]
        )
        .len()
            == 4),
        "the added target is served: {}",
        s.log_text()
    );
    assert!(serial(&s) > before, "the serial grows on change");
    let after = serial(&s);
    s.write_config(
        "clusterGeoTag: eu\ngslbs: [{name: x, hosts: [x.elsewhere.org], strategy: {type: roundRobin}}]\n",
    );
    assert!(
        s.wait_log("config reload rejected", Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    assert!(
        s.log_text().contains("gslbs[0].hosts[0]"),
        "the log names the problem: {}",
        s.log_text()
    );
    assert_eq!(
        dig_short(s.dns, &["app.cloud.example.com", "A"]).len(),
        4,
        "last good config still serves"
    );
    assert_eq!(serial(&s), after, "nothing changed");
}

#[test]
fn sigterm_stops_within_the_grace_period() {
    let mut s = start(&format!("shutdownGraceSeconds: 3\n{}", config("")));
    assert_eq!(dig_short(s.dns, &["app.cloud.example.com", "A"]).len(), 3);
    let pid = s.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    assert!(
        eventually(Duration::from_secs(8), || {
            status = s.child.try_wait().unwrap();
            status.is_some()
        }),
        "k8gb did not exit after SIGTERM: {}",
        s.log_text()
    );
    assert!(status.unwrap().success(), "{}", s.log_text());
    assert!(s.log_text().contains("\"stopped\""), "{}", s.log_text());
}

#[test]
fn admin_endpoints_report_health_readiness_and_metrics() {
    let s = start(&config(""));
    assert!(http_get(s.admin, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(
        http_get(s.admin, "/readyz").starts_with("HTTP/1.1 200"),
        "ready after the first snapshot"
    );
    dig(s.dns, &["app.cloud.example.com", "A"]);
    dig(s.dns, &["+tcp", "nope.cloud.example.com", "A"]);
    let m = http_get(s.admin, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    for needle in [
        "k8gb_runtime_info{",
        "k8gb_gslb_healthy_records{namespace=\"default\",name=\"app\"} 4",
        "k8gb_gslb_service_status_num{namespace=\"default\",name=\"down\",status=\"Unhealthy\"} 1",
        "k8gb_endpoint_status_num{namespace=\"default\",name=\"app\",dns_name=\"localtargets-app.cloud.example.com\"} 4",
        "k8gb_dns_queries_total{transport=\"udp\",qtype=\"A\",rcode=\"NOERROR\"}",
        "k8gb_dns_queries_total{transport=\"tcp\",qtype=\"A\",rcode=\"NXDOMAIN\"} 1",
        "k8gb_dns_query_duration_seconds_bucket{le=\"+Inf\",transport=\"udp\"} 1",
        "k8gb_zone_serial{zone=\"cloud.example.com\"}",
    ] {
        assert!(m.contains(needle), "{needle} missing in:\n{m}");
    }
}
