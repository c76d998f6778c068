//! The ExternalDNS delegation writer and the ZoneDelegation status against
//! a mocked Kubernetes API server: the test plays the API server, checking
//! each request's method, path and body in order and answering as the API
//! server does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8gb::api::{DNSEndpoint, ZoneDelegation};
use k8gb::config::{Config, ConfigArgs};
use k8gb::core::names::GeoTag;
use k8gb::delegation::extdns::{self, Written};
use k8gb::delegation::status::{self, PeerAddresses};
use k8gb::delegation::{DelegationOutcome, Reason, StatusSink};
use k8gb::metrics::Metrics;
use kube::Api;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_test::mock::{Handle, SendResponse};

const EP_PATH: &str = "/apis/externaldns.k8s.io/v1alpha1/namespaces/k8gb/dnsendpoints";
const EP_NAME: &str = "k8gb-ns-extdns-cloud-example-com";
const ZD_PATH: &str = "/apis/k8gb.io/v1beta1/zonedelegations";
const EU: &str = "gslb-ns-eu-cloud.example.com";
const US: &str = "gslb-ns-us-cloud.example.com";
const AP: &str = "gslb-ns-ap-cloud.example.com";

fn cfg(extra: impl FnOnce(&mut ConfigArgs)) -> Config {
    let mut args = ConfigArgs {
        cluster_geo_tag: Some("eu".into()),
        ext_gslb_clusters_geo_tags: Some("us,ap".into()),
        dns_zones: Some("example.com:cloud.example.com:30".into()),
        edge_dns_servers: Some("192.0.2.53".into()),
        cluster_exposed_ips: Some("192.0.2.1,2001:db8::1".into()),
        extdns_enabled: Some("true".into()),
        ..ConfigArgs::default()
    };
    extra(&mut args);
    k8gb::config::build(&args, None, None).expect("test config")
}

/// Our addresses as the configuration gives them (a sender that stays).
fn own_ips(cfg: &Config) -> watch::Receiver<Vec<IpAddr>> {
    let (tx, rx) = watch::channel(cfg.exposed_dns_ips());
    std::mem::forget(tx);
    rx
}

fn tags(list: &[&str]) -> BTreeSet<GeoTag> {
    list.iter().map(|t| GeoTag::parse(t).expect("geotag")).collect()
}

/// The mocked API server's side.
struct FakeApi {
    handle: Pin<Box<Handle<Request<Body>, Response<Body>>>>,
}

/// One request as received.
struct Got {
    body: Value,
    content_type: String,
    reply: SendResponse<Response<Body>>,
}

impl Got {
    fn respond(self, code: u16, body: Value) {
        let resp = Response::builder()
            .status(StatusCode::from_u16(code).expect("status code"))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response");
        self.reply.send_response(resp);
    }

    fn ok(self, body: Value) {
        self.respond(200, body)
    }
}

/// A `metav1.Status` failure body, as the API server sends it.
fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

fn client() -> (kube::Client, FakeApi) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        kube::Client::new(service, "default"),
        FakeApi {
            handle: Box::pin(handle),
        },
    )
}

impl FakeApi {
    /// The next request must be `method path`; returns its body.
    async fn expect(&mut self, method: &str, path: &str) -> Got {
        self.expect_within(Duration::from_secs(30), method, path).await
    }

    async fn expect_within(&mut self, within: Duration, method: &str, path: &str) -> Got {
        let (req, reply) = tokio::time::timeout(within, self.handle.as_mut().next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        assert_eq!(
            (req.method().as_str(), req.uri().path()),
            (method, path),
            "request order"
        );
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = req.into_body().collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        Got {
            body,
            content_type,
            reply,
        }
    }

    /// No request for `d` (the writer stays quiet).
    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some((req, _))) = tokio::time::timeout(d, self.handle.as_mut().next_request()).await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }

    /// Every client is gone and nothing else was asked.
    async fn done(mut self) {
        if let Some((req, _)) = self.handle.as_mut().next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

fn ns_endpoint(targets: &[&str]) -> Value {
    json!({"dnsName": "cloud.example.com", "recordType": "NS", "recordTTL": 30, "targets": targets})
}

fn glue() -> [Value; 2] {
    [
        json!({"dnsName": EU, "recordType": "A", "recordTTL": 30, "targets": ["192.0.2.1"]}),
        json!({"dnsName": EU, "recordType": "AAAA", "recordTTL": 30, "targets": ["2001:db8::1"]}),
    ]
}

fn labels() -> Value {
    json!({"k8gb.io/dnstype": "extdns", "k8gb.absa.oss/dnstype": "extdns"})
}

/// The DNSEndpoint as the API server returns it.
fn stored(ns: &[&str]) -> Value {
    let [a, aaaa] = glue();
    json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {
            "name": EP_NAME, "namespace": "k8gb", "uid": "6b1f0c1e-0000-4000-8000-000000000001",
            "resourceVersion": "1234", "generation": 1, "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"k8gb.io/dnstype": "extdns", "k8gb.absa.oss/dnstype": "extdns", "team": "dns"}
        },
        "spec": {"endpoints": [ns_endpoint(ns), a, aaaa]},
        "status": {"observedGeneration": 1}
    })
}

fn not_found(name: &str) -> Value {
    failure(
        404,
        "NotFound",
        &format!("dnsendpoints.externaldns.k8s.io \"{name}\" not found"),
    )
}

fn metric(metrics: &Metrics, result: &str) -> u64 {
    let text = metrics.encode();
    let key = format!("k8gb_delegation_reconciles_total{{zone=\"cloud.example.com\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().expect("counter"))
        .unwrap_or(0)
}

// (a) missing → created with exactly upstream's object (plus AAAA glue)
#[tokio::test]
async fn missing_dnsendpoint_is_created() {
    let cfg = cfg(|_| {});
    let (client, mut api) = client();
    let want = extdns::build(&cfg, &cfg.zones[0], &cfg.exposed_dns_ips(), &tags(&["us"]));
    let writer = tokio::spawn(async move {
        let eps: Api<DNSEndpoint> = Api::namespaced(client, "k8gb");
        extdns::apply(&eps, &want).await
    });
    api.expect("GET", &format!("{EP_PATH}/{EP_NAME}"))
        .await
        .respond(404, not_found(EP_NAME));
    let post = api.expect("POST", EP_PATH).await;
    let [a, aaaa] = glue();
    let body = json!({
        "apiVersion": "externaldns.k8s.io/v1alpha1",
        "kind": "DNSEndpoint",
        "metadata": {"name": EP_NAME, "namespace": "k8gb", "labels": labels()},
        "spec": {"endpoints": [ns_endpoint(&[EU, US]), a, aaaa]}
    });
    assert_eq!(post.body, body);
    let mut created = body.clone();
    created["metadata"]["uid"] = json!("6b1f0c1e-0000-4000-8000-000000000001");
    created["metadata"]["resourceVersion"] = json!("1");
    post.respond(201, created);
    assert_eq!(writer.await.expect("writer").expect("written"), Written::Created);
    api.done().await;
}

// (b) existing and equal (foreign labels and status aside) → only the GET
#[tokio::test]
async fn equal_dnsendpoint_is_not_written() {
    let cfg = cfg(|_| {});
    let (client, mut api) = client();
    let want = extdns::build(&cfg, &cfg.zones[0], &cfg.exposed_dns_ips(), &tags(&["us", "ap"]));
    let writer = tokio::spawn(async move {
        let eps: Api<DNSEndpoint> = Api::namespaced(client, "k8gb");
        extdns::apply(&eps, &want).await
    });
    api.expect("GET", &format!("{EP_PATH}/{EP_NAME}"))
        .await
        .ok(stored(&[AP, EU, US]));
    assert_eq!(writer.await.expect("writer").expect("read"), Written::Unchanged);
    api.done().await;
}

// (c) event-driven: a peer leaves → one merge patch with the new NS list;
// nothing else is written and no other DNSEndpoint is touched
#[tokio::test(start_paused = true)]
async fn a_peer_leaving_rewrites_the_ns_list() {
    let cfg = cfg(|_| {});
    let (client, mut api) = client();
    let (live_tx, live_rx) = watch::channel(tags(&["us", "ap"]));
    let (sink, outcomes) = StatusSink::new();
    let metrics = Arc::new(Metrics::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(extdns::run_extdns(
        client,
        cfg.clone(),
        live_rx,
        own_ips(&cfg),
        sink,
        metrics.clone(),
        cancel.clone(),
    ));
    let path = format!("{EP_PATH}/{EP_NAME}");
    api.expect("GET", &path).await.ok(stored(&[AP, EU, US]));
    api.quiet(Duration::from_secs(5)).await;
    assert_eq!(metric(&metrics, "unchanged"), 1);

    live_tx.send(tags(&["us"])).expect("writer listens");
    api.expect("GET", &path).await.ok(stored(&[AP, EU, US]));
    let patch = api.expect("PATCH", &path).await;
    assert_eq!(patch.content_type, "application/merge-patch+json");
    let [a, aaaa] = glue();
    assert_eq!(
        patch.body,
        json!({
            "metadata": {"labels": labels()},
            "spec": {"endpoints": [ns_endpoint(&[EU, US]), a, aaaa]}
        })
    );
    patch.ok(stored(&[EU, US]));
    api.quiet(Duration::from_secs(5)).await;
    assert_eq!(metric(&metrics, "updated"), 1);
    assert_eq!(
        outcomes.borrow()["cloud.example.com"],
        DelegationOutcome::delegated(&format!("ExternalDNS (DNSEndpoint k8gb/{EP_NAME})"))
    );

    // the periodic check (ZONE_DELEGATION_RECONCILE_REQUEUE_SECONDS=300) reads again
    let since = tokio::time::Instant::now();
    api.expect_within(Duration::from_secs(400), "GET", &path)
        .await
        .ok(stored(&[EU, US]));
    assert!(
        since.elapsed() >= Duration::from_secs(290),
        "{:?}",
        since.elapsed()
    );
    cancel.cancel();
    task.await.expect("writer stops");
    api.done().await;
}

// (d) API 500 → failed, counted and reported; retried with backoff → created
#[tokio::test(start_paused = true)]
async fn an_api_error_is_retried() {
    let cfg = cfg(|_| {});
    let (client, mut api) = client();
    let (_live_tx, live_rx) = watch::channel(tags(&["us", "ap"]));
    let (sink, mut outcomes) = StatusSink::new();
    let metrics = Arc::new(Metrics::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(extdns::run_extdns(
        client,
        cfg.clone(),
        live_rx,
        own_ips(&cfg),
        sink,
        metrics.clone(),
        cancel.clone(),
    ));
    let path = format!("{EP_PATH}/{EP_NAME}");
    let started = tokio::time::Instant::now();
    api.expect("GET", &path).await.respond(
        500,
        failure(500, "InternalError", "etcdserver: request timed out"),
    );
    outcomes.changed().await.expect("an outcome");
    match outcomes.borrow_and_update()["cloud.example.com"].clone() {
        DelegationOutcome::Failed { reason, message } => {
            assert_eq!(reason, Reason::KubernetesApiError);
            assert!(message.contains("etcdserver: request timed out"), "{message}");
            assert!(
                message.contains(&format!("DNSEndpoint k8gb/{EP_NAME}")),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(metric(&metrics, "failed"), 1);

    api.expect("GET", &path).await.respond(404, not_found(EP_NAME));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "backoff, not the 300 s period: {waited:?}"
    );
    let post = api.expect("POST", EP_PATH).await;
    let created = post.body.clone();
    post.respond(201, created);
    outcomes.changed().await.expect("an outcome");
    assert!(matches!(
        outcomes.borrow()["cloud.example.com"],
        DelegationOutcome::Delegated { .. }
    ));
    assert_eq!(metric(&metrics, "updated"), 1);
    cancel.cancel();
    task.await.expect("writer stops");
    api.done().await;
}

// the DNSEndpoint CRD missing: a failure that says so
#[tokio::test]
async fn a_missing_crd_is_named() {
    let cfg = cfg(|_| {});
    let (client, mut api) = client();
    let (sink, outcomes) = StatusSink::new();
    let metrics = Metrics::default();
    let writer = tokio::spawn(async move {
        let eps: Api<DNSEndpoint> = Api::namespaced(client, "k8gb");
        extdns::sync_all(
            &eps,
            &cfg,
            &cfg.exposed_dns_ips(),
            &BTreeSet::new(),
            &sink,
            &metrics,
        )
        .await
    });
    let crd_missing = failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    api.expect("GET", &format!("{EP_PATH}/{EP_NAME}"))
        .await
        .respond(404, crd_missing.clone());
    api.expect("POST", EP_PATH).await.respond(404, crd_missing);
    assert!(!writer.await.expect("writer"), "a failed pass");
    api.done().await;
    let DelegationOutcome::Failed { message, .. } = outcomes.borrow()["cloud.example.com"].clone() else {
        panic!("failed expected")
    };
    assert!(message.contains("DNSEndpoint CRD"), "{message}");
}

// finalization: the last cluster deletes its DNSEndpoint; with peers left,
// only our NS name and glue go
#[tokio::test(start_paused = true)]
async fn finalize_on_shutdown() {
    for (live, last) in [(tags(&[]), true), (tags(&["us"]), false)] {
        let cfg = cfg(|a| a.delegation_finalize = Some("true".into()));
        let (client, mut api) = client();
        let (_live_tx, live_rx) = watch::channel(live);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(extdns::run_extdns(
            client,
            cfg.clone(),
            live_rx,
            own_ips(&cfg),
            StatusSink::discard(),
            Arc::new(Metrics::default()),
            cancel.clone(),
        ));
        let path = format!("{EP_PATH}/{EP_NAME}");
        let ns = if last { vec![EU] } else { vec![EU, US] };
        api.expect("GET", &path).await.ok(stored(&ns));
        cancel.cancel();
        if last {
            let del = api.expect("DELETE", &path).await;
            del.ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}));
        } else {
            api.expect("GET", &path).await.ok(stored(&ns));
            let patch = api.expect("PATCH", &path).await;
            assert_eq!(
                patch.body["spec"],
                json!({"endpoints": [ns_endpoint(&[US])]}),
                "our NS name and glue removed, the peer's NS name kept"
            );
            patch.ok(stored(&[US]));
        }
        task.await.expect("writer stops");
        api.done().await;
    }
}

fn zd_stored(status: Option<Value>) -> Value {
    let mut zd = json!({
        "apiVersion": "k8gb.io/v1beta1",
        "kind": "ZoneDelegation",
        "metadata": {"name": "cloud-example-com", "uid": "6b1f0c1e-0000-4000-8000-000000000002",
                     "resourceVersion": "77", "generation": 1, "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"loadBalancedZone": "cloud.example.com", "parentZone": "example.com",
                 "dnsZoneNegTTL": 30, "doFinalize": false}
    });
    if let Some(s) = status {
        zd["status"] = s;
    }
    zd
}

fn zd_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "k8gb.io/v1beta1", "kind": "ZoneDelegationList",
           "metadata": {"resourceVersion": "80"}, "items": items})
}

fn peer_addresses(list: &[(&str, &str)]) -> PeerAddresses {
    let mut m: PeerAddresses = BTreeMap::new();
    for (t, ip) in list {
        m.entry(GeoTag::parse(t).expect("geotag"))
            .or_default()
            .push(ip.parse::<IpAddr>().expect("ip"));
    }
    m
}

async fn status_pass(
    client: kube::Client,
    cfg: Config,
    outcomes: k8gb::delegation::Outcomes,
    peers: PeerAddresses,
    now: &'static str,
) -> tokio::task::JoinHandle<Result<usize, kube::Error>> {
    tokio::spawn(async move {
        let zds: Api<ZoneDelegation> = Api::all(client);
        status::sync_status(&zds, &cfg, &cfg.exposed_dns_ips(), &outcomes, &peers, now).await
    })
}

// (e) ZoneDelegation: created when missing, status written, then an
// unchanged pass writes nothing
#[tokio::test]
async fn zone_delegation_created_and_status_written_once() {
    let cfg = cfg(|_| {});
    let peers = peer_addresses(&[("us", "198.51.100.7")]);
    let outcomes: k8gb::delegation::Outcomes = [(
        "cloud.example.com".to_string(),
        DelegationOutcome::delegated(&format!("ExternalDNS (DNSEndpoint k8gb/{EP_NAME})")),
    )]
    .into();
    let (client, mut api) = client();
    let pass = status_pass(
        client.clone(),
        cfg.clone(),
        outcomes.clone(),
        peers.clone(),
        "2025-01-02T03:04:05Z",
    )
    .await;
    api.expect("GET", ZD_PATH).await.ok(zd_list(vec![]));
    let post = api.expect("POST", ZD_PATH).await;
    assert_eq!(
        post.body,
        json!({"apiVersion": "k8gb.io/v1beta1", "kind": "ZoneDelegation",
               "metadata": {"name": "cloud-example-com"},
               "spec": {"loadBalancedZone": "cloud.example.com", "parentZone": "example.com",
                        "dnsZoneNegTTL": 30, "doFinalize": false}})
    );
    post.respond(201, zd_stored(None));
    let patch = api
        .expect("PATCH", &format!("{ZD_PATH}/cloud-example-com/status"))
        .await;
    assert_eq!(patch.content_type, "application/merge-patch+json");
    let status = json!({
        "dnsServers": [
            {"name": EU, "address": "192.0.2.1"},
            {"name": EU, "address": "2001:db8::1"},
            {"name": US, "address": "198.51.100.7"}
        ],
        "conditions": [{
            "type": "Delegated", "status": "True", "reason": "Delegated",
            "message": format!("delegated via ExternalDNS (DNSEndpoint k8gb/{EP_NAME})"),
            "lastTransitionTime": "2025-01-02T03:04:05Z", "observedGeneration": 1
        }]
    });
    assert_eq!(patch.body, json!({"status": status}));
    patch.ok(zd_stored(Some(status.clone())));
    assert_eq!(pass.await.expect("pass").expect("ok"), 1);

    // unchanged (the API server may return the list in any order): no PATCH
    let mut reordered = status.clone();
    if let Some(a) = reordered["dnsServers"].as_array_mut() {
        a.reverse();
    }
    let pass = status_pass(
        client.clone(),
        cfg.clone(),
        outcomes,
        peers,
        "2025-01-02T03:09:05Z",
    )
    .await;
    api.expect("GET", ZD_PATH)
        .await
        .ok(zd_list(vec![zd_stored(Some(reordered))]));
    assert_eq!(pass.await.expect("pass").expect("ok"), 0);
    drop(client);
    api.done().await;
}

// an existing ZoneDelegation for the zone (any name) wins: none is created
#[tokio::test]
async fn an_existing_zone_delegation_wins() {
    let cfg = cfg(|_| {});
    let (client, mut api) = client();
    let pass = status_pass(
        client,
        cfg,
        BTreeMap::new(),
        BTreeMap::new(),
        "2025-01-02T03:04:05Z",
    )
    .await;
    let mut mine = zd_stored(None);
    mine["metadata"]["name"] = json!("my-zone");
    mine["spec"]["doFinalize"] = json!(true);
    api.expect("GET", ZD_PATH).await.ok(zd_list(vec![mine.clone()]));
    let patch = api.expect("PATCH", &format!("{ZD_PATH}/my-zone/status")).await;
    assert_eq!(
        patch.body["status"]["conditions"][0]["reason"], "Pending",
        "no outcome yet"
    );
    assert!(patch.body.get("spec").is_none(), "the spec is the user's");
    patch.ok(mine);
    pass.await.expect("pass").expect("ok");
    api.done().await;
}

// (f) an RFC 2136 failure reported through the sink → Delegated=False with
// its reason; the transition time moves on the flip only
#[tokio::test(start_paused = true)]
async fn rfc2136_failure_sets_the_condition_false() {
    let cfg = cfg(|a| {
        a.extdns_enabled = None;
        a.rfc2136_tsig_key_name = Some("k8gb-edge".into());
        a.rfc2136_tsig_secret = Some("ZWRnZS1rZXktc2VjcmV0LWZvci1rOGdiLXRlc3RzLTMyYg==".into());
    });
    let (sink, outcomes) = StatusSink::new();
    let (peers_tx, peers_rx) = watch::channel(PeerAddresses::new());
    let (client, mut api) = client();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(status::run_status(
        client,
        cfg.clone(),
        outcomes,
        peers_rx,
        own_ips(&cfg),
        cancel.clone(),
    ));
    let delegated = json!({
        "dnsServers": [{"name": EU, "address": "192.0.2.1"}, {"name": EU, "address": "2001:db8::1"}],
        "conditions": [{"type": "Delegated", "status": "True", "reason": "Delegated",
                        "message": "delegated via RFC 2136 at edge 192.0.2.53:53",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}]
    });
    api.expect("GET", ZD_PATH)
        .await
        .ok(zd_list(vec![zd_stored(Some(delegated.clone()))]));
    api.quiet(Duration::from_secs(1)).await;

    // the edge rejects our key
    let err = "edge rejected our TSIG signature (BADSIG): check RFC2136_TSIG_KEY_NAME and the secret";
    sink.report(
        "cloud.example.com",
        DelegationOutcome::failed(Reason::TsigBadSig, err),
    );
    api.expect("GET", ZD_PATH)
        .await
        .ok(zd_list(vec![zd_stored(Some(delegated.clone()))]));
    let patch = api
        .expect("PATCH", &format!("{ZD_PATH}/cloud-example-com/status"))
        .await;
    let cond = &patch.body["status"]["conditions"][0];
    assert_eq!(cond["type"], "Delegated");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "TsigBadSig");
    assert_eq!(cond["message"], err);
    assert_ne!(
        cond["lastTransitionTime"], "2025-01-01T00:00:00Z",
        "the status flipped"
    );
    assert_eq!(patch.body["status"]["dnsServers"], delegated["dnsServers"]);
    let failed = patch.body["status"].clone();
    patch.ok(zd_stored(Some(failed.clone())));

    // still failing, another class: the reason changes, the time stays;
    // a peer coming up adds its server
    sink.report(
        "cloud.example.com",
        DelegationOutcome::failed(Reason::EdgeTimeout, "edge 192.0.2.53:53: timed out after 5s"),
    );
    peers_tx
        .send(peer_addresses(&[("ap", "203.0.113.9")]))
        .expect("status task listens");
    api.expect("GET", ZD_PATH)
        .await
        .ok(zd_list(vec![zd_stored(Some(failed.clone()))]));
    let patch = api
        .expect("PATCH", &format!("{ZD_PATH}/cloud-example-com/status"))
        .await;
    let cond = &patch.body["status"]["conditions"][0];
    assert_eq!(cond["reason"], "EdgeTimeout");
    assert_eq!(
        cond["lastTransitionTime"],
        failed["conditions"][0]["lastTransitionTime"]
    );
    assert_eq!(
        patch.body["status"]["dnsServers"][0],
        json!({"name": AP, "address": "203.0.113.9"})
    );
    let latest = patch.body["status"].clone();
    patch.ok(zd_stored(Some(latest)));
    // both changes were seen in one pass: nothing more to write
    api.quiet(Duration::from_secs(1)).await;
    cancel.cancel();
    task.await.expect("status task stops");
}

// upstream-shaped objects deserialize and round-trip unchanged
#[test]
fn upstream_objects_round_trip() {
    let zd: ZoneDelegation = serde_yaml_ng::from_str(
        "apiVersion: k8gb.io/v1beta1
kind: ZoneDelegation
metadata:
  name: cloud-example-com
spec:
  loadBalancedZone: cloud.example.com
  parentZone: example.com
  dnsZoneNegTTL: 30
status:
  dnsServers:
  - name: gslb-ns-eu-cloud.example.com
    address: 172.18.0.6
  - name: gslb-ns-us-cloud.example.com
    address: 172.18.0.10
",
    )
    .expect("ZoneDelegation");
    assert!(!zd.spec.do_finalize, "doFinalize defaults to false");
    assert_eq!(zd.status.as_ref().map(|s| s.dns_servers.len()), Some(2));
    let again: ZoneDelegation =
        serde_json::from_value(serde_json::to_value(&zd).expect("json")).expect("back");
    assert_eq!(zd, again);

    let ep: DNSEndpoint = serde_yaml_ng::from_str(
        "apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata:
  name: weighted
  namespace: demo
spec:
  endpoints:
  - dnsName: app.example.com
    recordType: A
    recordTTL: 60
    setIdentifier: eu
    targets: [192.0.2.1]
    labels: {strategy: roundRobin}
    providerSpecific:
    - name: aws/weight
      value: \"10\"
status:
  observedGeneration: 2
",
    )
    .expect("DNSEndpoint");
    let e = &ep.spec.endpoints[0];
    assert_eq!(
        (
            e.set_identifier.as_str(),
            e.record_ttl,
            e.provider_specific[0].value.as_str()
        ),
        ("eu", Some(60), "10")
    );
    let again: DNSEndpoint = serde_json::from_value(serde_json::to_value(&ep).expect("json")).expect("back");
    assert_eq!(ep, again);
}

// Kubernetes mode: our addresses are discovered after the start; nothing is
// written until they are, then the DNSEndpoint is created at once
#[tokio::test(start_paused = true)]
async fn glue_addresses_found_later_are_published_at_once() {
    let cfg = cfg(|a| a.cluster_exposed_ips = None);
    assert!(cfg.exposed_dns_ips().is_empty());
    let (client, mut api) = client();
    let (_live_tx, live_rx) = watch::channel(tags(&["us"]));
    let (ips_tx, ips_rx) = watch::channel(Vec::<IpAddr>::new());
    let (sink, mut outcomes) = StatusSink::new();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(extdns::run_extdns(
        client,
        cfg,
        live_rx,
        ips_rx,
        sink,
        Arc::new(Metrics::default()),
        cancel.clone(),
    ));
    outcomes.changed().await.expect("an outcome");
    assert!(matches!(
        outcomes.borrow_and_update()["cloud.example.com"],
        DelegationOutcome::Failed {
            reason: Reason::NoExposedAddress,
            ..
        }
    ));
    api.quiet(Duration::from_secs(10)).await;

    ips_tx
        .send(vec!["203.0.113.5".parse().expect("ip")])
        .expect("writer listens");
    api.expect("GET", &format!("{EP_PATH}/{EP_NAME}"))
        .await
        .respond(404, not_found(EP_NAME));
    let post = api.expect("POST", EP_PATH).await;
    assert_eq!(
        post.body["spec"]["endpoints"][1],
        json!({"dnsName": EU, "recordType": "A", "recordTTL": 30, "targets": ["203.0.113.5"]})
    );
    let created = post.body.clone();
    post.respond(201, created);
    cancel.cancel();
    task.await.expect("writer stops");
    api.done().await;
}
