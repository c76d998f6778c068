//! Three instances as processes on their own loopback addresses, exchanging
//! targets like three clusters: the strategies' prescribed answers
//! everywhere, failover and fail-back, push, a killed peer leaving within its
//! grace, a dropped packet changing nothing, DoT (and a foreign CA refused),
//! TSIG, and interoperability with an upstream k8gb peer.

#![allow(clippy::needless_range_loop)] // cluster i indexes TAGS and its addresses alike

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, dig, dig_short, eventually, http_get, start_file};

const TAGS: [&str; 3] = ["eu", "us", "ap"];
const WAIT: Duration = Duration::from_secs(15);

/// Loopback address of cluster `i` (0..3) in test subnet `net`.
fn ip(net: u8, i: usize) -> String {
    format!("127.0.{net}.{}", 11 + i)
}

fn addr(net: u8, i: usize) -> SocketAddr {
    format!("{}:5353", ip(net, i)).parse().unwrap()
}

/// The Gslbs every cluster serves; target addresses encode the cluster.
fn gslbs(i: usize, down: &[&str]) -> String {
    let tag = TAGS[i];
    let health = |name: &str| {
        if down.contains(&name) {
            ", healthy: false"
        } else {
            ""
        }
    };
    let split_primary = if i == 2 { "eu" } else { tag };
    format!(
        r#"gslbs:
  - {{name: rr, hosts: [rr.cloud.example.com], strategy: {{type: roundRobin, dnsTtlSeconds: 1}}, targets: [{{address: 10.{i}.0.1{rr}}}]}}
  - {{name: w, hosts: [w.cloud.example.com], strategy: {{type: roundRobin, weight: {{eu: 60, us: 30, ap: 10}}}}, targets: [{{address: 10.{i}.0.2{w}}}]}}
  - {{name: fo, hosts: [fo.cloud.example.com], strategy: {{type: failover, primaryGeoTag: eu}}, targets: [{{address: 10.{i}.0.3{fo}}}, {{address: "fd00::{i}:3"{fo}}}]}}
  - {{name: split, hosts: [split.cloud.example.com], strategy: {{type: failover, primaryGeoTag: {split_primary}}}, targets: [{{address: 10.{i}.0.4{split}}}]}}
"#,
        rr = health("rr"),
        w = health("w"),
        fo = health("fo"),
        split = health("split"),
    )
}

struct Opts {
    heartbeat: f64,
    requeue: u64,
    extra: String,
    peer_extra: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            heartbeat: 0.2,
            requeue: 30,
            extra: String::new(),
            peer_extra: vec![String::new(); 3],
        }
    }
}

fn config(net: u8, i: usize, down: &[&str], o: &Opts, peer_addr: &dyn Fn(usize) -> String) -> String {
    let peers: String = (0..3)
        .filter(|j| *j != i)
        .map(|j| {
            format!(
                "  - {{geoTag: {}, address: \"{}\"{}}}\n",
                TAGS[j],
                peer_addr(j),
                o.peer_extra[j]
            )
        })
        .collect();
    format!(
        "clusterGeoTag: {tag}\ndnsAddress: {dns}\nmetricsAddress: {ip}:0\nreconcileRequeueSeconds: {rq}\n\
         dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]\n\
         peerExchange: {{heartbeatSeconds: {hb}, graceAttempts: 3, timeoutSeconds: 0.3{extra}}}\npeers:\n{peers}{gslbs}",
        tag = TAGS[i],
        dns = addr(net, i),
        ip = ip(net, i),
        rq = o.requeue,
        hb = o.heartbeat,
        extra = o.extra,
        gslbs = gslbs(i, down),
    )
}

struct Mesh {
    net: u8,
    dir: tempfile::TempDir,
    nodes: Vec<Option<Server>>,
}

impl Mesh {
    fn start(net: u8, o: &Opts, per_node: &dyn Fn(usize) -> String) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let text = format!(
                "{}{}",
                config(net, i, &[], o, &|j| addr(net, j).to_string()),
                per_node(i)
            );
            nodes.push(Some(start_file(
                &dir.path().join(format!("{}.yaml", TAGS[i])),
                &text,
            )));
        }
        Mesh { net, dir, nodes }
    }

    fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node running")
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.yaml", TAGS[i]))
    }

    fn answer(&self, i: usize, host: &str, rtype: &str) -> Vec<String> {
        dig_short(addr(self.net, i), &[&format!("{host}.cloud.example.com"), rtype])
    }

    /// Waits until cluster `i` answers exactly `want` (sorted) for `host`.
    fn converges(&self, i: usize, host: &str, want: &[&str]) {
        let ok = eventually(WAIT, || self.answer(i, host, "A") == want);
        assert!(
            ok,
            "{} answers {:?} for {host}, expected {want:?}\n{}",
            TAGS[i],
            self.answer(i, host, "A"),
            self.node(i).log_text()
        );
    }

    fn everyone(&self, host: &str, want: &[&str]) {
        for i in 0..3 {
            if self.nodes[i].is_some() {
                self.converges(i, host, want);
            }
        }
    }
}

/// Replaces a config file atomically.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn strategies_failover_and_failback_across_three_clusters() {
    let net = 31;
    let o = Opts::default();
    let m = Mesh::start(net, &o, &|_| String::new());
    // all healthy: every cluster serves what the tables prescribe
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
    m.everyone("w", &["10.0.0.2", "10.1.0.2", "10.2.0.2"]);
    m.everyone("fo", &["10.0.0.3"]);
    for i in 0..3 {
        assert_eq!(
            m.answer(i, "fo", "AAAA"),
            ["fd00::3"],
            "failover holds for AAAA too"
        );
    }
    m.converges(0, "split", &["10.0.0.4"]);
    m.converges(1, "split", &["10.1.0.4"]);
    m.converges(2, "split", &["10.0.0.4"]);
    // localtargets: each cluster publishes only its own
    assert_eq!(
        dig_short(addr(net, 1), &["localtargets-rr.cloud.example.com", "A"]),
        ["10.1.0.1"]
    );

    // eu's failover and split targets go unhealthy: failover to the others
    rewrite(
        &m.path(0),
        &config(net, 0, &["fo", "split", "rr"], &o, &|j| addr(net, j).to_string()),
    );
    m.everyone("fo", &["10.1.0.3", "10.2.0.3"]);
    for i in 0..3 {
        assert_eq!(m.answer(i, "fo", "AAAA"), ["fd00::1:3", "fd00::2:3"]);
    }
    m.everyone("rr", &["10.1.0.1", "10.2.0.1"]);
    m.converges(0, "split", &["10.1.0.4", "10.2.0.4"]);
    m.converges(1, "split", &["10.1.0.4"]);
    m.converges(2, "split", &["10.1.0.4", "10.2.0.4"]);
    // an unhealthy host's localtargets disappear (NXDOMAIN for peers)
    let lt = dig(addr(net, 0), &["localtargets-fo.cloud.example.com", "A"]);
    assert!(lt.contains("NXDOMAIN"), "{lt}");

    // eu recovers: fail-back everywhere
    rewrite(
        &m.path(0),
        &config(net, 0, &[], &o, &|j| addr(net, j).to_string()),
    );
    m.everyone("fo", &["10.0.0.3"]);
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
    m.converges(2, "split", &["10.0.0.4"]);
}

#[test]
fn push_converges_without_waiting_for_a_poll() {
    // heartbeat and requeue far longer than the wait: only NOTIFY can do it
    let net = 32;
    let o = Opts {
        heartbeat: 60.0,
        requeue: 600,
        ..Opts::default()
    };
    let m = Mesh::start(net, &o, &|_| String::new());
    // each cluster's first heartbeat runs at start; wait until all have synced once
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
    rewrite(
        &m.path(1),
        &config(net, 1, &["rr"], &o, &|j| addr(net, j).to_string()),
    );
    m.converges(0, "rr", &["10.0.0.1", "10.2.0.1"]);
    m.converges(2, "rr", &["10.0.0.1", "10.2.0.1"]);
    let metrics = http_get(m.node(1).admin, "/metrics");
    assert!(
        metrics.contains("k8gb_notify_sent_total{result=\"acknowledged\"}"),
        "{metrics}"
    );
}

#[test]
fn a_killed_peer_leaves_within_its_grace_and_comes_back() {
    let net = 33;
    let o = Opts::default();
    let mut m = Mesh::start(net, &o, &|_| String::new());
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
    m.nodes[2] = None; // kill ap
    // grace: 3 heartbeats of 0.2 s (plus retries) — well inside the wait
    m.converges(0, "rr", &["10.0.0.1", "10.1.0.1"]);
    m.converges(1, "rr", &["10.0.0.1", "10.1.0.1"]);
    assert!(m.node(0).log_text().contains("peer left the answers"));
    let text = config(net, 2, &[], &o, &|j| addr(net, j).to_string());
    m.nodes[2] = Some(start_file(&m.path(2), &text));
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
}

/// A UDP relay between a cluster and one peer that can drop packets.
struct Relay {
    addr: SocketAddr,
    drop_next: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(listen: &str, upstream: SocketAddr) -> Relay {
        let front = UdpSocket::bind(listen).unwrap();
        front.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(upstream).unwrap();
        back.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let r = Relay {
            addr: front.local_addr().unwrap(),
            drop_next: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (drop_next, dropped, stop) = (r.drop_next.clone(), r.dropped.clone(), r.stop.clone());
        std::thread::spawn(move || {
            let clients: Mutex<HashMap<[u8; 2], SocketAddr>> = Mutex::new(HashMap::new());
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = front.recv_from(&mut buf)
                    && n >= 2
                {
                    if drop_next.load(Ordering::SeqCst) > 0 {
                        drop_next.fetch_sub(1, Ordering::SeqCst);
                        dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    clients.lock().unwrap().insert([buf[0], buf[1]], from);
                    let _ = back.send(&buf[..n]);
                }
                while let Ok(n) = back.recv(&mut buf) {
                    if n >= 2
                        && let Some(to) = clients.lock().unwrap().remove(&[buf[0], buf[1]])
                    {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            }
        });
        r
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_dropped_packet_changes_no_answer() {
    let net = 34;
    let o = Opts::default();
    let dir = tempfile::tempdir().unwrap();
    // eu reaches us through a relay that drops on command
    let relay = Relay::start(&format!("{}:5353", ip(net, 5)), addr(net, 1));
    let peer_of_eu = |j: usize| {
        if j == 1 {
            relay.addr.to_string()
        } else {
            addr(net, j).to_string()
        }
    };
    let mut nodes = Vec::new();
    for i in 0..3 {
        let text = if i == 0 {
            config(net, i, &[], &o, &peer_of_eu)
        } else {
            config(net, i, &[], &o, &|j| addr(net, j).to_string())
        };
        nodes.push(start_file(&dir.path().join(format!("{}.yaml", TAGS[i])), &text));
    }
    let eu = addr(net, 0);
    let all = ["10.0.0.1", "10.1.0.1", "10.2.0.1"];
    assert!(
        eventually(WAIT, || dig_short(eu, &["rr.cloud.example.com", "A"]) == all),
        "{}",
        nodes[0].log_text()
    );
    // drop one packet, then watch eu's answer through several heartbeats
    for _ in 0..3 {
        relay.drop_next.store(1, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        while std::time::Instant::now() < deadline {
            assert_eq!(
                dig_short(eu, &["rr.cloud.example.com", "A"]),
                all,
                "a lost packet changed the answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(
        relay.dropped.load(Ordering::SeqCst) >= 3,
        "the relay dropped packets"
    );
    assert!(!nodes[0].log_text().contains("peer left the answers"));
}

#[test]
fn dot_mesh_and_a_peer_from_another_ca_is_refused() {
    let net = 35;
    let dir = tempfile::tempdir().unwrap();
    let ips: Vec<String> = (0..3).map(|i| ip(net, i)).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let (ca, cert, key) = common::make_certs_for(dir.path(), "mesh", &ip_refs);
    // ap's certificate (server and client) comes from a different CA
    let (_ca2, cert2, key2) = common::make_certs_for(dir.path(), "rogue", &ip_refs);
    let tls = |i: usize| {
        let (c, k) = if i == 2 { (&cert2, &key2) } else { (&cert, &key) };
        format!(
            "dot: {{address: \"{}:8853\", certFile: \"{}\", keyFile: \"{}\"}}\n",
            ip(net, i),
            c.display(),
            k.display()
        )
    };
    let o = Opts {
        extra: format!(
            ", transport: dot, tls: {{caFile: \"{}\", certFile: \"{}\", keyFile: \"{}\"}}",
            ca.display(),
            cert.display(),
            key.display()
        ),
        peer_extra: (0..3)
            .map(|j| format!(", dotAddress: \"{}:8853\"", ip(net, j)))
            .collect(),
        ..Opts::default()
    };
    let m = Mesh::start(net, &o, &|i| tls(i));
    // eu and us trust each other; ap's certificate is refused
    m.converges(0, "rr", &["10.0.0.1", "10.1.0.1"]);
    m.converges(1, "rr", &["10.0.0.1", "10.1.0.1"]);
    assert!(
        m.node(0).wait_log("peer exchange refused", WAIT),
        "a log line says why ap is refused: {}",
        m.node(0).log_text()
    );
    let log = m.node(0).log_text();
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "{log}"
    );
}

#[test]
fn tsig_signs_peer_traffic_and_refuses_unsigned_queries() {
    let net = 36;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tsig.secret");
    std::fs::write(&secret, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM=\n").unwrap();
    let o = Opts {
        extra: format!(
            ", tsig: {{keyName: k8gb-peers, algorithm: hmac-sha256, secretFile: \"{}\"}}",
            secret.display()
        ),
        ..Opts::default()
    };
    let m = Mesh::start(net, &o, &|_| String::new());
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
    // an unsigned peer query is refused; resolvers' ordinary queries are not
    let unsigned = dig(addr(net, 0), &["localtargets-rr.cloud.example.com", "A"]);
    assert!(unsigned.contains("status: REFUSED"), "{unsigned}");
    let signed = dig(
        addr(net, 0),
        &[
            "-y",
            "hmac-sha256:k8gb-peers:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM=",
            "localtargets-rr.cloud.example.com",
            "A",
        ],
    );
    assert!(
        signed.contains("status: NOERROR") && signed.contains("10.0.0.1"),
        "{signed}"
    );
    assert!(!signed.contains("failure"), "the reply's TSIG verifies: {signed}");
    let wrong = dig(
        addr(net, 0),
        &[
            "-y",
            "hmac-sha256:k8gb-peers:d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc=",
            "localtargets-rr.cloud.example.com",
            "A",
        ],
    );
    assert!(wrong.contains("BADSIG") || wrong.contains("NOTAUTH"), "{wrong}");
    let unknown = dig(
        addr(net, 0),
        &[
            "-y",
            "hmac-sha256:other-key:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM=",
            "localtargets-rr.cloud.example.com",
            "A",
        ],
    );
    assert!(
        unknown.contains("BADKEY"),
        "a key we do not know gets BADKEY: {unknown}"
    );
    assert_eq!(m.answer(0, "rr", "A").len(), 3, "public answers need no key");
    for i in 0..3 {
        assert!(
            !m.node(i)
                .log_text()
                .contains("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM"),
            "the TSIG secret never appears in the logs"
        );
    }
}

#[test]
fn notify_from_an_unknown_source_is_ignored_and_counted() {
    let net = 37;
    let m = Mesh::start(net, &Opts::default(), &|_| String::new());
    m.everyone("rr", &["10.0.0.1", "10.1.0.1", "10.2.0.1"]);
    // a NOTIFY from an address that is no peer
    let mut msg = vec![0x12, 0x34, 0x24, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(b"\x05cloud\x07example\x03com\x00\x00\x06\x00\x01");
    let sock = UdpSocket::bind(format!("{}:0", ip(net, 9))).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&msg, addr(net, 0)).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    assert!(n >= 12 && buf[3] & 0x0F == 5, "REFUSED: {:?}", &buf[..n]);
    let metrics = http_get(m.node(0).admin, "/metrics");
    assert!(
        metrics.contains("k8gb_notify_received_total{result=\"ignored\"} 1"),
        "{metrics}"
    );
}

/// Plays an upstream (Go) k8gb peer: CoreDNS with the k8s_crd plugin.
/// Answers `localtargets-rr` A with its target, AAAA with NODATA, the apex
/// SOA, NOTIFY with NOTIMP; records every question it gets.
/// Questions the fake peer received: (name, qtype, RD flag).
type Seen = Arc<Mutex<Vec<(String, u16, bool)>>>;

fn fake_upstream_peer(listen: &str) -> (Seen, Arc<AtomicBool>) {
    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let sock = UdpSocket::bind(listen).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2) = (seen.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop2.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(question) = q.queries.first().cloned() else {
                continue;
            };
            let name = question.name().to_ascii().to_lowercase();
            seen2.lock().unwrap().push((
                name.clone(),
                u16::from(question.query_type()),
                q.metadata.recursion_desired,
            ));
            let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            r.metadata.authoritative = true;
            r.add_query(question.clone());
            let soa = || {
                Record::from_rdata(
                    Name::from_ascii("cloud.example.com.").unwrap(),
                    30,
                    RData::SOA(SOA::new(
                        Name::from_ascii("ns1.dns.cloud.example.com.").unwrap(),
                        Name::from_ascii("hostmaster.dns.cloud.example.com.").unwrap(),
                        1_700_000_000,
                        7200,
                        1800,
                        86400,
                        30,
                    )),
                )
            };
            if q.metadata.op_code == OpCode::Notify {
                r.metadata.response_code = ResponseCode::NotImp;
            } else if name == "localtargets-rr.cloud.example.com." && question.query_type() == RecordType::A {
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    5,
                    RData::A(A::new(10, 9, 0, 1)),
                ));
            } else if name == "cloud.example.com." && question.query_type() == RecordType::SOA {
                r.add_answer(soa());
            } else if name.starts_with("localtargets-") && question.query_type() == RecordType::A {
                r.metadata.response_code = ResponseCode::NXDomain;
                r.add_authority(soa());
            } else {
                r.add_authority(soa()); // NODATA, as k8s_crd for AAAA
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from);
        }
    });
    (seen, stop)
}

#[test]
fn interoperates_with_an_upstream_k8gb_peer() {
    let net = 38;
    let dir = tempfile::tempdir().unwrap();
    let (seen, stop) = fake_upstream_peer(&addr(net, 1).to_string());
    // we are eu; "us" is the Go peer
    let text = format!(
        "clusterGeoTag: eu\ndnsAddress: {}\nmetricsAddress: {}:0\n\
         dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]\n\
         peerExchange: {{heartbeatSeconds: 0.2, timeoutSeconds: 0.3}}\n\
         peers: [{{geoTag: us, address: \"{}\"}}]\n{}",
        addr(net, 0),
        ip(net, 0),
        addr(net, 1),
        "gslbs:\n  - {name: rr, hosts: [rr.cloud.example.com], strategy: {type: roundRobin}, targets: [{address: 10.0.0.1}]}\n  - {name: unhealthy, hosts: [unhealthy.cloud.example.com], strategy: {type: roundRobin}, targets: [{address: 10.0.0.9, healthy: false}]}\n"
    );
    let eu = start_file(&dir.path().join("eu.yaml"), &text);
    // we query the Go peer the way it expects, and merge its targets
    assert!(
        eventually(WAIT, || dig_short(addr(net, 0), &["rr.cloud.example.com", "A"])
            == ["10.0.0.1", "10.9.0.1"]),
        "{}",
        eu.log_text()
    );
    let asked = seen.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|(n, t, rd)| n == "localtargets-rr.cloud.example.com." && *t == 1 && *rd),
        "plain A query for localtargets-<host>, RD set, over UDP: {asked:?}"
    );
    // the Go peer queries us as it queries CoreDNS: plain A over UDP, RD set
    let mut q = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x0flocaltargets-rr\x05cloud\x07example\x03com\x00\x00\x01\x00\x01");
    let sock = UdpSocket::bind(format!("{}:0", ip(net, 1))).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&q, addr(net, 0)).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    let r = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.response_code, hickory_proto::op::ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    // no targets: NXDOMAIN, as the k8s_crd plugin answers
    let mut q2 = vec![0xAB, 0xCE, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q2.extend_from_slice(b"\x16localtargets-unhealthy\x05cloud\x07example\x03com\x00\x00\x01\x00\x01");
    sock.send_to(&q2, addr(net, 0)).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let r = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        r.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    stop.store(true, Ordering::Relaxed);
}

/// A minimal edge DNS: answers A for the peers' NS names (glue), as the
/// parent zone does once clusters have delegated.
fn fake_edge(listen: &str, glue: Vec<(&'static str, [u8; 4])>) -> Arc<AtomicBool> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    let sock = UdpSocket::bind(listen).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop2.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(question) = q.queries.first().cloned() else {
                continue;
            };
            let name = question.name().to_ascii().to_lowercase();
            let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            r.add_query(question.clone());
            match glue.iter().find(|(n, _)| format!("{n}.") == name) {
                Some((_, ip)) if question.query_type() == RecordType::A => {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        30,
                        RData::A(A::from(std::net::Ipv4Addr::from(*ip))),
                    ));
                }
                Some(_) => {}
                None => r.metadata.response_code = ResponseCode::NXDomain,
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), from);
        }
    });
    stop
}

#[test]
fn peers_found_by_geotag_through_the_edge_dns() {
    let net = 39;
    let dir = tempfile::tempdir().unwrap();
    let edge = format!("{}:5353", ip(net, 9));
    let stop = fake_edge(
        &edge,
        vec![
            ("gslb-ns-eu-cloud.example.com", [127, 0, net, 11]),
            ("gslb-ns-us-cloud.example.com", [127, 0, net, 12]),
        ],
    );
    // like upstream: peers by geotag only, addresses from the edge DNS
    let text = |i: usize| {
        format!(
            "clusterGeoTag: {tag}\ndnsAddress: {dns}\nmetricsAddress: {ip}:0\n\
             dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]\n\
             extGslbClustersGeoTags: eu,us\nedgeDNSServers: [\"{edge}\"]\n\
             peerExchange: {{heartbeatSeconds: 0.2, timeoutSeconds: 0.3, port: 5353}}\n\
             gslbs:\n  - {{name: rr, hosts: [rr.cloud.example.com], strategy: {{type: roundRobin}}, targets: [{{address: 10.{i}.0.1}}]}}\n",
            tag = TAGS[i],
            dns = addr(net, i),
            ip = ip(net, i),
        )
    };
    let eu = start_file(&dir.path().join("eu.yaml"), &text(0));
    let us = start_file(&dir.path().join("us.yaml"), &text(1));
    for (s, i) in [(&eu, 0), (&us, 1)] {
        assert!(
            eventually(WAIT, || dig_short(addr(net, i), &["rr.cloud.example.com", "A"])
                == ["10.0.0.1", "10.1.0.1"]),
            "{}",
            s.log_text()
        );
    }
    assert!(eu.log_text().contains("peer found through the edge DNS"));
    // NOTIFY from a discovered peer is accepted: its address is known
    rewrite(
        &dir.path().join("us.yaml"),
        &text(1).replace("10.1.0.1", "10.1.0.2"),
    );
    assert!(eventually(WAIT, || dig_short(
        addr(net, 0),
        &["rr.cloud.example.com", "A"]
    ) == ["10.0.0.1", "10.1.0.2"]));
    stop.store(true, Ordering::Relaxed);
}
