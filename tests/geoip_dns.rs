//! geoip answers from the running binary, with a database the test builds:
//! clients from two subnets (by source address and by EDNS Client Subnet)
//! get their region's targets; an unknown subnet gets all of them.

mod common;

use std::time::Duration;

use common::{dig, dig_short, eventually, make_mmdb, start};
use serde_json::json;

fn spec(eu_source: &str) -> serde_json::Value {
    json!([
        {"network": eu_source, "data": {"datacenter": "eu"}},
        {"network": "127.2.0.0/16", "data": {"datacenter": "us"}},
        {"network": "192.0.2.0/24", "data": {"datacenter": "eu"}},
        {"network": "198.51.100.0/24", "data": {"datacenter": "us"}},
        {"network": "10.1.0.0/16", "data": {"datacenter": "eu"}},
        {"network": "10.2.0.0/16", "data": {"datacenter": "us"}},
    ])
}

#[test]
fn geoip_by_source_address_and_by_ecs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    make_mmdb(&db, &spec("127.1.0.0/16"));
    let config = format!(
        r#"
clusterGeoTag: eu
dnsAddress: 127.0.0.1:0
metricsAddress: 127.0.0.1:0
geoip: {{database: "{}"}}
dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]
gslbs:
  - name: geo
    hosts: [geo.cloud.example.com]
    strategy: {{type: geoip}}
    targets: [{{address: 10.1.0.1}}, {{address: 10.1.0.2}}, {{address: 10.2.0.1}}]
"#,
        db.display()
    );
    let s = start(&config);
    let q = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["geo.cloud.example.com", "A"]);
        dig_short(s.dns, &args)
    };
    // by source address (loopback clients bound to different 127/8 addresses)
    assert_eq!(q(&["-b", "127.1.0.5"]), ["10.1.0.1", "10.1.0.2"]);
    assert_eq!(q(&["-b", "127.2.0.5"]), ["10.2.0.1"]);
    assert_eq!(
        q(&["-b", "127.3.0.5"]),
        ["10.1.0.1", "10.1.0.2", "10.2.0.1"],
        "unknown: all targets"
    );
    // by EDNS Client Subnet, which wins over the source address
    assert_eq!(
        q(&["-b", "127.2.0.5", "+subnet=192.0.2.0/24"]),
        ["10.1.0.1", "10.1.0.2"]
    );
    assert_eq!(q(&["+subnet=198.51.100.0/24"]), ["10.2.0.1"]);
    assert_eq!(
        q(&["+subnet=203.0.113.0/24"]),
        ["10.1.0.1", "10.1.0.2", "10.2.0.1"]
    );
    // the answer carries the ECS scope: the matched network's prefix, or 0
    let full = dig(s.dns, &["+subnet=198.51.100.7/32", "geo.cloud.example.com", "A"]);
    assert!(full.contains("CLIENT-SUBNET: 198.51.100.7/32/24"), "{full}");
    let full = dig(s.dns, &["+subnet=203.0.113.0/24", "geo.cloud.example.com", "A"]);
    assert!(full.contains("CLIENT-SUBNET: 203.0.113.0/24/0"), "{full}");

    // the database is reloaded when the file changes
    let next = dir.path().join("geo.next");
    make_mmdb(&next, &spec("127.3.0.0/16"));
    std::fs::rename(&next, &db).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || q(&["-b", "127.3.0.5"])
            == ["10.1.0.1", "10.1.0.2"]),
        "reloaded database: {}",
        s.log_text()
    );
    // a corrupt replacement is rejected and the last database keeps serving
    std::fs::write(&db, b"not a database").unwrap();
    assert!(
        s.wait_log(&db.display().to_string(), Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    assert_eq!(q(&["-b", "127.3.0.5"]), ["10.1.0.1", "10.1.0.2"]);
}

#[test]
fn a_corrupt_database_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.mmdb");
    std::fs::write(&db, vec![0xAB; 4096]).unwrap();
    let (code, stderr) = common::run_expecting_failure(
        dir.path(),
        &format!(
            "clusterGeoTag: eu\ndnsAddress: 127.0.0.1:0\nmetricsAddress: 127.0.0.1:0\ngeoip: {{database: \"{}\"}}\n",
            db.display()
        ),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("GEOIP_DATABASE") && stderr.contains("bad.mmdb"),
        "{stderr}"
    );
}
