//! DNS-over-TLS: kdig with a CA the test generates, and certificate reload.

mod common;

use std::time::Duration;

use common::{eventually, kdig_tls, make_certs, start};

#[test]
fn dot_serves_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, cert, key) = make_certs(dir.path(), "one");
    let config = format!(
        r#"
clusterGeoTag: eu
dnsAddress: 127.0.0.1:0
metricsAddress: 127.0.0.1:0
dot: {{address: "127.0.0.1:0", certFile: "{}", keyFile: "{}"}}
dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]
gslbs:
  - {{name: app, hosts: [app.cloud.example.com], strategy: {{type: roundRobin}}, targets: [{{address: 10.0.0.1}}, {{address: "2001:db8::1"}}]}}
"#,
        cert.display(),
        key.display()
    );
    let s = start(&config);
    let dot = s.dot.expect("DoT listener bound");

    let (ok, out) = kdig_tls(dot, &ca1, "dns.example.test", &["app.cloud.example.com", "A"]);
    assert!(ok && out.contains("10.0.0.1") && out.contains("NOERROR"), "{out}");
    assert!(out.contains("TLS"), "the exchange went over TLS: {out}");
    let (ok, out) = kdig_tls(dot, &ca1, "dns.example.test", &["app.cloud.example.com", "AAAA"]);
    assert!(ok && out.contains("2001:db8::1"), "{out}");
    let (ok, out) = kdig_tls(dot, &ca1, "dns.example.test", &["nope.cloud.example.com", "A"]);
    assert!(ok && out.contains("NXDOMAIN"), "{out}");
    let (ok, out) = kdig_tls(dot, &ca1, "wrong.example.test", &["app.cloud.example.com", "A"]);
    assert!(!ok, "a wrong hostname must fail the handshake: {out}");

    // replace certificate and key with ones from another CA: new connections use them
    let (ca2, cert2, key2) = make_certs(dir.path(), "two");
    std::fs::rename(&key2, &key).unwrap();
    std::fs::rename(&cert2, &cert).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || kdig_tls(
            dot,
            &ca2,
            "dns.example.test",
            &["app.cloud.example.com", "A"]
        )
        .0),
        "the reloaded certificate is served: {}",
        s.log_text()
    );
    let (ok, out) = kdig_tls(dot, &ca1, "dns.example.test", &["app.cloud.example.com", "A"]);
    assert!(!ok, "the old CA no longer verifies: {out}");

    // a broken certificate file is rejected and the current one keeps serving
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(
        s.wait_log("certificate reload rejected", Duration::from_secs(10)),
        "{}",
        s.log_text()
    );
    let (ok, out) = kdig_tls(dot, &ca2, "dns.example.test", &["app.cloud.example.com", "A"]);
    assert!(ok, "{out}");
}

#[test]
fn bad_certificate_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "garbage").unwrap();
    std::fs::write(&key, "garbage").unwrap();
    let (code, stderr) = common::run_expecting_failure(
        dir.path(),
        &format!(
            "clusterGeoTag: eu\ndnsAddress: 127.0.0.1:0\nmetricsAddress: 127.0.0.1:0\ndot: {{address: \"127.0.0.1:0\", certFile: \"{}\", keyFile: \"{}\"}}\n",
            cert.display(),
            key.display()
        ),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("error: DoT:") && stderr.contains("cert.pem"),
        "{stderr}"
    );
}
