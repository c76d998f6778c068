//! Active probes drive the served answer: a target whose HTTP backend goes
//! away leaves the answer after the failure threshold and comes back with it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{dig_short, eventually, start};

/// A minimal HTTP/1.1 server answering 200 until `stop` is set.
fn backend(listener: TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ =
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

#[test]
fn http_probe_removes_and_restores_a_target() {
    let listener = TcpListener::bind("127.0.0.23:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = backend(listener, stop.clone());
    let config = format!(
        r#"
clusterGeoTag: eu
dnsAddress: 127.0.0.1:0
metricsAddress: 127.0.0.1:0
dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]
gslbs:
  - name: web
    hosts: [web.cloud.example.com]
    strategy: {{type: roundRobin, dnsTtlSeconds: 1}}
    probe: {{type: http, port: {port}, path: /healthz, intervalSeconds: 0.1, timeoutSeconds: 0.5, failureThreshold: 2}}
    targets: [{{address: 127.0.0.23}}, {{address: 127.0.0.24, probe: {{type: tcp, port: 9, intervalSeconds: 0.1}}}}]
"#
    );
    let s = start(&config);
    let answer = || dig_short(s.dns, &["web.cloud.example.com", "A"]);
    assert!(
        eventually(Duration::from_secs(10), || answer() == ["127.0.0.23"]),
        "the healthy backend is served, the closed port is not: {:?} {}",
        answer(),
        s.log_text()
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || answer().is_empty()),
        "the target leaves after the failures: {:?}",
        answer()
    );
    let nx = common::dig(s.dns, &["web.cloud.example.com", "A"]);
    assert!(nx.contains("NXDOMAIN"), "no healthy target anywhere: {nx}");
    // the backend comes back on the same port
    let listener = TcpListener::bind(("127.0.0.23", port)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = backend(listener, stop.clone());
    assert!(
        eventually(Duration::from_secs(10), || answer() == ["127.0.0.23"]),
        "the target is back: {:?}",
        answer()
    );
    assert!(s.log_text().contains("target health changed"));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}
