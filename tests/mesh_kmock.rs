//! Two clusters in Kubernetes mode, each against its own `kmock` API
//! emulator, peers found by geotag through a real BIND edge: the fast
//! regression test of the cross-cluster exchange in the mode users run.
//! roundRobin answers both clusters' targets in both clusters, and a
//! failover Gslb moves to us when eu's only endpoint becomes unready (and
//! back). The real-control-plane suite (tests/kube_e2e.rs) proves the same
//! against kube-apiserver; this one runs in seconds.

mod common;

use std::path::Path;
use std::time::Duration;

use common::kmock::{api, client, create, start_kmock};
use common::{Server, dig_short, eventually, http_get, require};
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const EDGE_PORT: u16 = 5397;
const WITHIN: Duration = Duration::from_secs(20);

struct Region {
    tag: &'static str,
    ip: &'static str,
    api_port: u16,
    /// The address the cluster's Ingresses expose (its app target).
    target: &'static str,
}

const EU: Region = Region {
    tag: "eu",
    ip: "127.0.0.71",
    api_port: 18071,
    target: "192.0.2.71",
};
const US: Region = Region {
    tag: "us",
    ip: "127.0.0.72",
    api_port: 18072,
    target: "192.0.2.72",
};

/// A Service, its EndpointSlice, an Ingress for `host` exposing the
/// region's target, and a Gslb referencing the Ingress with `strategy`.
async fn app(c: &Client, r: &Region, name: &str, host: &str, strategy: Value) {
    create(
        c,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {"app": name}}}),
    )
    .await;
    create(c, slice(name, true)).await;
    create(
        c,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]},
            "status": {"loadBalancer": {"ingress": [{"ip": r.target}]}}}),
    )
    .await;
    create(
        c,
        json!({"apiVersion": "k8gb.io/v1beta1", "kind": "Gslb",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"resourceRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": name},
                     "strategy": strategy}}),
    )
    .await;
}

fn slice(service: &str, ready: bool) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x1"), "namespace": "demo", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": ready}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]})
}

fn start_k8gb(r: &Region, kubeconfig: &Path, edge: &str) -> Server {
    let dns = format!("{}:5353", r.ip);
    let admin = format!("{}:0", r.ip);
    let envs: Vec<(&str, &str)> = vec![
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("CLUSTER_GEO_TAG", r.tag),
        ("EXT_GSLB_CLUSTERS_GEO_TAGS", "eu,us"),
        ("DNS_ZONES", "example.com:cloud.example.com:30"),
        ("EDGE_DNS_SERVERS", edge),
        ("DNS_ADDRESS", &dns),
        ("METRICS_ADDRESS", &admin),
        ("POD_NAMESPACE", "k8gb"),
        ("PEER_DNS_PORT", "5353"),
        ("PEER_HEARTBEAT_SECONDS", "0.5"),
        // the safety nets are far away: everything below is event-driven
        ("RECONCILE_REQUEUE_SECONDS", "3600"),
    ];
    let dir = Path::new(kubeconfig).parent().unwrap().to_path_buf();
    common::start_with(&["run"], &envs, &dir, None)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn answers(s: &Server, host: &str) -> Vec<String> {
    sorted(dig_short(s.dns, &["A", host]))
}

fn wait_answers(servers: &[&Server], host: &str, want: &[&str]) {
    let want = sorted(want.iter().map(|s| s.to_string()).collect());
    for s in servers {
        assert!(
            eventually(WITHIN, || answers(s, host) == want),
            "{} answers {:?} for {host}, want {want:?}\n{}",
            s.dns,
            answers(s, host),
            s.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kubernetes_clusters_exchange_targets_and_fail_over() {
    require("dig", "bind9-dnsutils");
    let dir = tempfile::tempdir().unwrap();
    let edge_dir = dir.path().join("edge");
    std::fs::create_dir_all(&edge_dir).unwrap();
    // the edge holds each cluster's NS name, as the delegation writes it
    let edge = common::bind::start(
        &edge_dir,
        "127.0.0.1",
        EDGE_PORT,
        &format!(
            "cloud IN NS gslb-ns-eu-cloud.example.com.\ncloud IN NS gslb-ns-us-cloud.example.com.\n\
             gslb-ns-eu-cloud IN A {}\ngslb-ns-us-cloud IN A {}\n",
            EU.ip, US.ip
        ),
    );
    let edge = edge.addr.to_string();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    let mut apis = Vec::new();
    for r in [&EU, &US] {
        apis.push(start_kmock(r.ip, r.api_port));
        let kc =
            common::kmock::write_kubeconfig(dir.path(), &format!("kubeconfig-{}", r.tag), r.ip, r.api_port);
        let c = client(&kc).await;
        app(
            &c,
            r,
            "rr",
            "rr.cloud.example.com",
            json!({"type": "roundRobin", "dnsTtlSeconds": 5}),
        )
        .await;
        app(
            &c,
            r,
            "fo",
            "fo.cloud.example.com",
            json!({"type": "failover", "primaryGeoTag": "eu", "dnsTtlSeconds": 5}),
        )
        .await;
        clients.push(c);
        let edge = edge.clone();
        servers.push(tokio::task::block_in_place(|| start_k8gb(r, &kc, &edge)));
    }
    let (eu, us) = (&servers[0], &servers[1]);

    // roundRobin: both clusters' targets, in both clusters
    wait_answers(&[eu, us], "rr.cloud.example.com", &[EU.target, US.target]);
    // failover: the primary's target everywhere
    wait_answers(&[eu, us], "fo.cloud.example.com", &[EU.target]);

    // eu's only endpoint becomes unready: both fail over to us
    let eu_slices = api(
        &clients[0],
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
    );
    let unready = json!({"endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": false}}]});
    eu_slices
        .patch("fo-x1", &PatchParams::default(), &Patch::Merge(&unready))
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_answers(&[eu, us], "fo.cloud.example.com", &[US.target]);
    });
    // and back
    let ready = json!({"endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}]});
    eu_slices
        .patch("fo-x1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_answers(&[eu, us], "fo.cloud.example.com", &[EU.target]);
        wait_answers(&[eu, us], "rr.cloud.example.com", &[EU.target, US.target]);
    });

    // the metrics tell the truth: each peer is up, and syncs that asked
    // hosts succeeded
    for (s, peer) in [(eu, "us"), (us, "eu")] {
        let m = http_get(s.admin, "/metrics");
        let line = |prefix: &str| {
            m.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        assert_eq!(line(&format!("k8gb_peer_up{{peer=\"{peer}\"")), 1.0, "{m}");
        let ok = format!("k8gb_peer_syncs_total{{peer=\"{peer}\",result=\"success\"");
        assert!(line(&ok) >= 1.0, "{m}");
    }
}
