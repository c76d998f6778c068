//! Native delegation against a real BIND 9 edge (RFC 2136 + TSIG): clusters
//! add their NS and glue, a withdrawing cluster removes only its own, a
//! wrong key is refused and changes nothing, and a resolution that starts at
//! the edge reaches our servers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::bind::{Bind, SECRET};
use common::{dig, dig_short, eventually, http_get, start_file};

const WRONG: &str = "d3Jvbmcta2V5LXNlY3JldC1mb3ItazhnYi10ZXN0cy0zMg==";
const TAGS: [&str; 3] = ["eu", "us", "ap"];

/// The edge on `ip`:5399.
fn bind(dir: &Path, ip: &str) -> Bind {
    common::bind::start(dir, ip, 5399, "")
}

fn cluster(net: u8, i: usize, edge: SocketAddr, secret_file: &Path, finalize: bool) -> String {
    let peers: String = (0..3)
        .filter(|j| *j != i)
        .map(|j| {
            format!(
                "  - {{geoTag: {}, address: \"127.0.{net}.{}:5353\"}}\n",
                TAGS[j],
                11 + j
            )
        })
        .collect();
    format!(
        "clusterGeoTag: {tag}\ndnsAddress: 127.0.{net}.{n}:5353\nmetricsAddress: 127.0.{net}.{n}:0\n\
         dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]\n\
         edgeDNSServers: [\"{edge}\"]\nzoneDelegationReconcileRequeueSeconds: 1\nnsRecordTTL: 17\n\
         delegation: {{finalize: {finalize}, tsig: {{keyName: k8gb-edge, secretFile: \"{sf}\"}}}}\n\
         peerExchange: {{heartbeatSeconds: 0.2}}\npeers:\n{peers}\
         gslbs: [{{name: app, hosts: [app.cloud.example.com], strategy: {{type: roundRobin}}, targets: [{{address: 10.{i}.0.1}}]}}]\n",
        tag = TAGS[i],
        n = 11 + i,
        sf = secret_file.display(),
    )
}

fn edge_ns(edge: SocketAddr) -> Vec<String> {
    // the parent answers with a referral: the NS RRset is in the authority section
    let out = dig(
        edge,
        &[
            "+norec",
            "+noall",
            "+authority",
            "+answer",
            "cloud.example.com",
            "NS",
        ],
    );
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.contains("\tNS\t"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn clusters_delegate_withdraw_and_a_wrong_key_changes_nothing() {
    let net = 51;
    let dir = tempfile::tempdir().unwrap();
    let bind_dir = dir.path().join("bind");
    std::fs::create_dir(&bind_dir).unwrap();
    let edge = bind(&bind_dir, "127.0.0.1");
    let secret = dir.path().join("edge.secret");
    std::fs::write(&secret, SECRET).unwrap();

    let eu = start_file(
        &dir.path().join("eu.yaml"),
        &cluster(net, 0, edge.addr, &secret, false),
    );
    let us = start_file(
        &dir.path().join("us.yaml"),
        &cluster(net, 1, edge.addr, &secret, false),
    );
    let two = ["gslb-ns-eu-cloud.example.com.", "gslb-ns-us-cloud.example.com."];
    assert!(
        eventually(Duration::from_secs(15), || edge_ns(edge.addr) == two),
        "{:?}\n{}",
        edge_ns(edge.addr),
        eu.log_text()
    );
    assert_eq!(
        dig_short(edge.addr, &["gslb-ns-eu-cloud.example.com", "A"]),
        [format!("127.0.{net}.11")]
    );
    assert_eq!(
        dig_short(edge.addr, &["gslb-ns-us-cloud.example.com", "A"]),
        [format!("127.0.{net}.12")]
    );
    let ttl = dig(
        edge.addr,
        &["+noall", "+answer", "gslb-ns-eu-cloud.example.com", "A"],
    );
    let fields: Vec<&str> = ttl.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&"17"), "NS_RECORD_TTL on the glue: {ttl}");

    // a third cluster joins, with finalization on
    let mut ap = start_file(
        &dir.path().join("ap.yaml"),
        &cluster(net, 2, edge.addr, &secret, true),
    );
    let three = [
        "gslb-ns-ap-cloud.example.com.",
        "gslb-ns-eu-cloud.example.com.",
        "gslb-ns-us-cloud.example.com.",
    ];
    assert!(
        eventually(Duration::from_secs(15), || edge_ns(edge.addr) == three),
        "{:?}",
        edge_ns(edge.addr)
    );

    // a resolution that starts at the edge: referral, glue, then our server
    let referral = dig(edge.addr, &["+norec", "app.cloud.example.com", "A"]);
    assert!(
        referral.contains("AUTHORITY: 3") && referral.contains("gslb-ns-eu-cloud.example.com"),
        "{referral}"
    );
    let glue = dig_short(edge.addr, &["gslb-ns-us-cloud.example.com", "A"]);
    let ns_addr: SocketAddr = format!("{}:5353", glue[0]).parse().unwrap();
    assert!(
        eventually(Duration::from_secs(15), || dig_short(
            ns_addr,
            &["app.cloud.example.com", "A"]
        ) == [
            "10.0.0.1", "10.1.0.1", "10.2.0.1"
        ]),
        "the delegated server gives the global answer"
    );

    // ap withdraws on shutdown: only its NS and glue go
    let pid = ap.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(eventually(Duration::from_secs(15), || ap
        .child
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(
        ap.log_text().contains("delegation withdrawn"),
        "{}",
        ap.log_text()
    );
    assert_eq!(edge_ns(edge.addr), two);
    assert!(
        dig_short(edge.addr, &["gslb-ns-ap-cloud.example.com", "A"]).is_empty(),
        "ap's glue removed"
    );
    assert_eq!(
        dig_short(edge.addr, &["gslb-ns-eu-cloud.example.com", "A"]),
        [format!("127.0.{net}.11")],
        "others' glue kept"
    );
    drop(ap);
    // eu and us do not re-add ap's NS record
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge_ns(edge.addr), two);

    // a cluster with a wrong key is refused, says so, and changes nothing
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, WRONG).unwrap();
    let bad = start_file(
        &dir.path().join("ap2.yaml"),
        &cluster(net, 2, edge.addr, &wrong, false),
    );
    assert!(
        bad.wait_log("rejected our TSIG", Duration::from_secs(15)),
        "{}",
        bad.log_text()
    );
    assert!(
        !bad.log_text().contains(SECRET) && !bad.log_text().contains(WRONG),
        "secrets never logged"
    );
    assert_eq!(edge_ns(edge.addr), two, "nothing changed at the edge");
    let metrics = http_get(bad.admin, "/metrics");
    assert!(
        metrics.contains("k8gb_delegation_reconciles_total{zone=\"cloud.example.com\",result=\"failed\"}"),
        "{metrics}"
    );
    assert!(dig_short(edge.addr, &["gslb-ns-ap-cloud.example.com", "A"]).is_empty());
    drop((eu, us, bad));
}
