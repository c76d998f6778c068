//! The ExternalDNS writer and the ZoneDelegation status task together over
//! real HTTP, against the `kmock` API emulator (merge patches, the status
//! subresource, a cluster-scoped resource): the DNSEndpoint and the
//! ZoneDelegation appear, follow the live peers, and leave foreign labels
//! alone.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8gb::api::{DNSEndpoint, ZoneDelegation};
use k8gb::config::ConfigArgs;
use k8gb::core::names::GeoTag;
use k8gb::delegation::{PeerAddresses, StatusSink, extdns, status};
use k8gb::metrics::Metrics;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const HOST: &str = "127.0.0.71";
const PORT: u16 = 18071;
const EP: &str = "k8gb-ns-extdns-cloud-example-com";

fn start_kmock() -> common::kmock::Kmock {
    common::kmock::start_kmock(HOST, PORT)
}

async fn client() -> Client {
    let cfg = kube::Config::new(format!("http://{HOST}:{PORT}").parse().expect("uri"));
    Client::try_from(cfg).expect("client")
}

/// Polls `f` until it returns Some, for up to 15 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The object, or None when the emulator answers 404 (its reason is not
/// `NotFound`, so kube's `get_opt` would fail).
async fn get_opt<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(o) => Some(o),
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => panic!("GET {name}: {e}"),
    }
}

fn tag(t: &str) -> GeoTag {
    GeoTag::parse(t).expect("geotag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnsendpoint_and_zone_delegation_follow_the_live_peers() {
    let _api = start_kmock();
    let args = ConfigArgs {
        cluster_geo_tag: Some("eu".into()),
        ext_gslb_clusters_geo_tags: Some("us".into()),
        dns_zones: Some("example.com:cloud.example.com:30".into()),
        edge_dns_servers: Some("192.0.2.53".into()),
        extdns_enabled: Some("true".into()),
        ..ConfigArgs::default()
    };
    let cfg = k8gb::config::build(&args, None, None).expect("config");
    let c = client().await;
    let (live_tx, live_rx) = watch::channel(BTreeSet::from([tag("us")]));
    let (peers_tx, peers_rx) = watch::channel(PeerAddresses::from([(
        tag("us"),
        vec!["198.51.100.7".parse::<IpAddr>().expect("ip")],
    )]));
    // our address is found after the start (Kubernetes discovery)
    let (ips_tx, ips_rx) = watch::channel(Vec::<IpAddr>::new());
    let (sink, outcomes) = StatusSink::new();
    let cancel = CancellationToken::new();
    let writer = tokio::spawn(extdns::run_extdns(
        c.clone(),
        cfg.clone(),
        live_rx,
        ips_rx.clone(),
        sink,
        Arc::new(Metrics::default()),
        cancel.clone(),
    ));
    let statuses = tokio::spawn(status::run_status(
        c.clone(),
        cfg.clone(),
        outcomes,
        peers_rx,
        ips_rx,
        cancel.clone(),
    ));
    let eps: Api<DNSEndpoint> = Api::namespaced(c.clone(), "k8gb");
    let zds: Api<ZoneDelegation> = Api::all(c.clone());

    // no address yet: Delegated=False NoExposedAddress, no DNSEndpoint
    let cond = eventually("NoExposedAddress", || async {
        let zd = get_opt(&zds, "cloud-example-com").await?;
        let c = zd.status?.conditions.into_iter().next()?;
        (c.reason == "NoExposedAddress").then_some(c)
    })
    .await;
    assert_eq!(cond.status, "False");
    assert!(get_opt(&eps, EP).await.is_none());

    ips_tx
        .send(vec![
            "192.0.2.1".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
        ])
        .expect("send");
    let ep = eventually("the DNSEndpoint", || async { get_opt(&eps, EP).await }).await;
    let labels = ep.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("k8gb.io/dnstype").map(String::as_str), Some("extdns"));
    assert_eq!(
        ep.spec.endpoints[0].targets,
        ["gslb-ns-eu-cloud.example.com", "gslb-ns-us-cloud.example.com"]
    );
    let types: Vec<&str> = ep.spec.endpoints.iter().map(|e| e.record_type.as_str()).collect();
    assert_eq!(types, ["NS", "A", "AAAA"]);

    let zd = eventually("Delegated=True", || async {
        let zd = get_opt(&zds, "cloud-example-com").await?;
        let ok = zd.status.as_ref()?.conditions.first()?.status == "True";
        ok.then_some(zd)
    })
    .await;
    assert_eq!(zd.spec.parent_zone, "example.com");
    let servers: Vec<(String, String)> = zd
        .status
        .expect("status")
        .dns_servers
        .into_iter()
        .map(|s| (s.name, s.address))
        .collect();
    assert_eq!(
        servers,
        [
            (
                "gslb-ns-eu-cloud.example.com".to_string(),
                "192.0.2.1".to_string()
            ),
            (
                "gslb-ns-eu-cloud.example.com".to_string(),
                "2001:db8::1".to_string()
            ),
            (
                "gslb-ns-us-cloud.example.com".to_string(),
                "198.51.100.7".to_string()
            ),
        ]
    );

    // someone labels our DNSEndpoint; then us goes down
    eps.patch(
        EP,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "dns"}}})),
    )
    .await
    .expect("label");
    live_tx.send(BTreeSet::new()).expect("send");
    peers_tx.send(PeerAddresses::new()).expect("send");
    let ep = eventually("us leaves the NS RRset", || async {
        let ep = get_opt(&eps, EP).await?;
        (ep.spec.endpoints[0].targets.len() == 1).then_some(ep)
    })
    .await;
    assert_eq!(ep.spec.endpoints[0].targets, ["gslb-ns-eu-cloud.example.com"]);
    let labels = ep.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("dns"),
        "foreign label kept"
    );
    eventually("us leaves dnsServers", || async {
        let zd = get_opt(&zds, "cloud-example-com").await?;
        (zd.status?.dns_servers.len() == 2).then_some(())
    })
    .await;

    cancel.cancel();
    writer.await.expect("writer stops");
    statuses.await.expect("status task stops");
    // finalization is off: the DNSEndpoint stays for ExternalDNS
    assert!(get_opt(&eps, EP).await.is_some());
}
