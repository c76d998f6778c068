//! bench/kube-failover: on two real control planes (eu, us; the chart
//! installed with helm, k8gb running with the chart's ServiceAccount and
//! environment, peers found through a BIND edge), the time from
//! `kubectl scale --replicas=0` of eu's app to every cluster answering
//! without eu, and from `--replicas=1` to every cluster answering with eu
//! again, over N cycles; p50/p95/p99/max.
//!
//! Included: kubectl, the API server, the controller-manager's Deployment,
//! ReplicaSet and EndpointSlice controllers, kwok's pod status, our watch,
//! reconcile and publish, the NOTIFY to the peer and its re-query. The
//! clock starts just before kubectl is run and stops at the first UDP reply
//! (each cluster polled every 2 ms) that shows the change in both clusters.
//!
//! Run: `bench/kube-failover/run [--cycles N]` (`cargo bench --bench
//! kube-failover -- --cycles N`). Loopback only (127.0.0.101-102, edge
//! 127.0.0.1:5395); every wait bounded (30 s per change).

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::product::{APPS, Mesh, app_yaml, ingress_yaml, scale};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const HOST: &str = "web.cloud.example.com";
const EU: &str = "192.0.2.101";
const US: &str = "192.0.2.102";
const LIMIT: Duration = Duration::from_secs(30);

/// The A answers of `server` for HOST, sorted (empty on any error).
fn answers(sock: &UdpSocket, server: SocketAddr, id: u16) -> Vec<String> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(
        Name::from_str(&format!("{HOST}.")).expect("name"),
        RecordType::A,
    ));
    let Ok(bytes) = m.to_vec() else { return Vec::new() };
    if sock.send_to(&bytes, server).is_err() {
        return Vec::new();
    }
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            return Vec::new();
        };
        let Ok(r) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if r.metadata.id != id {
            continue;
        }
        let mut v: Vec<String> = r
            .answers
            .iter()
            .filter_map(|rr| match &rr.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        v.sort();
        return v;
    }
    Vec::new()
}

/// Runs `change`, then waits until every server answers `want`; the time taken.
fn measure(servers: &[SocketAddr], want: &[&str], change: impl FnOnce()) -> Duration {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    change();
    let mut done = vec![false; servers.len()];
    let mut id: u16 = 0;
    while start.elapsed() < LIMIT {
        for (i, s) in servers.iter().enumerate() {
            if !done[i] {
                id = id.wrapping_add(1);
                done[i] = answers(&sock, *s, id) == want;
            }
        }
        if done.iter().all(|d| *d) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("not every cluster answered {want:?} within {LIMIT:?}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets once without --bench
        println!("kube-failover: a benchmark; run it with bench/kube-failover/run");
        return;
    }
    let cycles: usize = args
        .iter()
        .position(|a| a == "--cycles")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--cycles N"))
        .unwrap_or(20);
    let t0 = Instant::now();
    let mesh = Mesh::start(&["eu", "us"], Ipv4Addr::new(127, 0, 0, 101), 5395);
    let setup = t0.elapsed();
    for r in &mesh.regions {
        let target = if r.tag == "eu" { EU } else { US };
        r.apply(&app_yaml("web", 1));
        r.apply(&ingress_yaml("web", HOST, "web", "app: web"));
        r.cluster.set_ingress_status(APPS, "web", &[target]);
        r.apply(&format!(
            "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {{name: web, namespace: {APPS}}}\n\
             spec:\n  resourceRef: {{apiVersion: networking.k8s.io/v1, kind: Ingress, name: web}}\n  \
             strategy: {{type: roundRobin, dnsTtlSeconds: 5}}\n"
        ));
    }
    mesh.wait_answers(HOST, &[EU, US]);
    let servers: Vec<SocketAddr> = mesh.regions.iter().map(|r| r.dns()).collect();
    let eu = mesh.region("eu");
    let (mut down, mut up) = (Vec::new(), Vec::new());
    for _ in 0..cycles {
        down.push(measure(&servers, &[US], || scale(eu, "web", 0)).as_secs_f64() * 1000.0);
        up.push(measure(&servers, &[EU, US], || scale(eu, "web", 1)).as_secs_f64() * 1000.0);
    }
    let mut report = format!(
        "kube-failover: {cycles} cycles, 2 clusters (k8s v1.36.3 control planes, kwok), mesh set up in {:.1} s\n\
         | change | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|\n",
        setup.as_secs_f64()
    );
    for (what, v) in [
        ("eu scaled to 0 → every cluster answers without eu", &mut down),
        ("eu scaled to 1 → every cluster answers with eu", &mut up),
    ] {
        v.sort_by(f64::total_cmp);
        report += &format!(
            "| {what} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            percentile(v, 50.0),
            percentile(v, 95.0),
            percentile(v, 99.0),
            v[v.len() - 1]
        );
    }
    print!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&dir).expect("results dir");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = dir.join(format!("kube-failover-{stamp}.md"));
    std::fs::write(&out, &report).expect("write results");
    println!("results: {}", out.display());
}
