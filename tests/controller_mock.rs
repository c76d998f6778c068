//! The controller against a mocked API server (`tower_test`): realistic
//! Kubernetes JSON in, the exact requests it makes (Ingress creation, status
//! patches) and the DNS answers the engine then serves, out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use k8gb::config::{self, ConfigArgs};
use k8gb::controller::sources::SourceKind;
use k8gb::controller::store::Stores;
use k8gb::controller::{Context, reconcile};
use k8gb::dns::snapshot::Snapshot;
use k8gb::engine::{Engine, Event, Outputs};
use k8gb::metrics::Metrics;
use k8gb::probe::Prober;
use kube::client::Body;
use kube::core::DynamicObject;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One request the controller made (events excluded).
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
}

/// A tiny API server behind the mock: objects by path, merge patches,
/// creates; every request but Events is logged.
#[derive(Default)]
struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<Seen>>,
}

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn status_json(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

impl FakeApi {
    fn handle(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        if path.contains("/events") {
            return (201, body);
        }
        self.log.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.to_owned(),
            body: body.clone(),
        });
        let mut objects = self.objects.lock().unwrap();
        let object_path = path.trim_end_matches("/status").to_owned();
        match method {
            Method::GET => match objects.get(&object_path) {
                Some(o) => (200, o.clone()),
                None => (404, status_json(404, "NotFound")),
            },
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or("x").to_owned();
                let key = format!("{path}/{name}");
                if objects.contains_key(&key) {
                    return (409, status_json(409, "AlreadyExists"));
                }
                let mut o = body.clone();
                o["metadata"]["uid"] = json!(format!("uid-{name}"));
                o["metadata"]["resourceVersion"] = json!("1");
                objects.insert(key, o.clone());
                (201, o)
            }
            Method::PATCH => match objects.get_mut(&object_path) {
                Some(o) => {
                    merge(o, &body);
                    let rv: u64 = o["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1);
                    o["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                    (200, o.clone())
                }
                None => (404, status_json(404, "NotFound")),
            },
            _ => (405, status_json(405, "MethodNotAllowed")),
        }
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// A client whose requests `api` answers.
fn mock_client(api: Arc<FakeApi>) -> kube::Client {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, out) = api.handle(method, &path, body);
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&out).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    kube::Client::new(svc, "default")
}

struct Harness {
    api: Arc<FakeApi>,
    ctx: Arc<Context>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    _cancel: tokio_util::sync::DropGuard,
}

fn test_config() -> Arc<config::Config> {
    let args = ConfigArgs {
        cluster_geo_tag: Some("eu".into()),
        dns_zones: Some("example.com:cloud.example.com:30".into()),
        reconcile_requeue_seconds: Some("3600".into()),
        ..Default::default()
    };
    Arc::new(config::load(&args).expect("test config"))
}

fn harness(objects: Vec<(SourceKind, Value)>, gslbs: &[Value]) -> Harness {
    let api = Arc::new(FakeApi::default());
    for g in gslbs {
        let path = gslb_path(g);
        api.objects.lock().unwrap().insert(path, g.clone());
    }
    let cfg = test_config();
    let cancel = CancellationToken::new();
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Metrics::new("eu", "k8gb");
    let (health_tx, _health_rx) = mpsc::channel(8);
    let engine = Engine::new(
        (*cfg).clone(),
        Outputs {
            snapshot: snapshot.clone(),
            geo: Arc::new(ArcSwapOption::empty()),
            metrics: metrics.clone(),
            ready: Default::default(),
        },
        Prober::new(health_tx, cancel.child_token()),
        None,
    );
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(engine.run(rx, cancel.clone()));
    let stores = Stores::from_objects(objects.into_iter().map(|(k, v)| (k, obj(v))));
    let ctx = Context::new(mock_client(api.clone()), cfg, stores, tx, metrics, None);
    Harness {
        api,
        ctx: Arc::new(ctx),
        snapshot,
        _cancel: cancel.drop_guard(),
    }
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("object JSON")
}

fn gslb_path(g: &Value) -> String {
    let group = g["apiVersion"].as_str().unwrap();
    format!(
        "/apis/{group}/namespaces/{}/gslbs/{}",
        g["metadata"]["namespace"].as_str().unwrap(),
        g["metadata"]["name"].as_str().unwrap()
    )
}

fn gslb(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "k8gb.io/v1beta1",
        "kind": "Gslb",
        "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-gslb-{name}"), "resourceVersion": "10", "generation": 1},
        "spec": spec,
    })
}

fn service(name: &str, lb: Option<&str>) -> Value {
    let mut s = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-svc-{name}"), "resourceVersion": "5"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": name}},
        "status": {"loadBalancer": {}},
    });
    if let Some(ip) = lb {
        s["spec"]["type"] = json!("LoadBalancer");
        s["status"]["loadBalancer"] = json!({"ingress": [{"ip": ip, "ipMode": "VIP"}]});
    }
    s
}

fn slice(service: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-abcde"), "namespace": "demo", "uid": format!("uid-eps-{service}"),
            "resourceVersion": "7", "generateName": format!("{service}-"),
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service, "uid": format!("uid-svc-{service}"), "controller": true, "blockOwnerDeletion": true}]
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": ready, "serving": ready, "terminating": false}, "nodeName": "kind-worker", "targetRef": {"kind": "Pod", "namespace": "demo", "name": format!("{service}-7d4b9c-x2x9q")}}],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    })
}

fn ingress(name: &str, host: &str, backend: &str, lb_ip: &str, extra_meta: Value) -> Value {
    let mut i = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-ing-{name}"), "resourceVersion": "3", "generation": 1},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": backend, "port": {"number": 80}}}}]}}]
        },
        "status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}},
    });
    merge(&mut i["metadata"], &extra_meta);
    i
}

async fn run(h: &Harness, g: &Value) {
    let o = Arc::new(obj(g.clone()));
    reconcile(o, h.ctx.clone()).await.expect("reconcile");
}

/// The Gslb as stored by the fake API now (after the controller's patches).
fn stored(h: &Harness, g: &Value) -> Value {
    h.api.objects.lock().unwrap().get(&gslb_path(g)).cloned().unwrap()
}

fn served(h: &Harness, host: &str) -> Vec<IpAddr> {
    k8gb::dns::testing::answer_of(&h.snapshot.load(), host, false)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn embedded_ingress_is_created_then_status_patched_once() {
    let g = gslb(
        "shop",
        json!({
            "ingress": {"ingressClassName": "nginx", "rules": [{"host": "shop.cloud.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop", "port": {"number": 80}}}}]}}]},
            "strategy": {"type": "roundRobin", "dnsTtlSeconds": 30}
        }),
    );
    let h = harness(
        vec![
            (SourceKind::Service, service("shop", None)),
            (SourceKind::EndpointSlice, slice("shop", true)),
        ],
        std::slice::from_ref(&g),
    );
    run(&h, &g).await;
    let seen = h.api.take();
    // 1: the Ingress, labelled and owned by the Gslb
    let create = seen
        .iter()
        .find(|s| s.method == Method::POST)
        .expect("an Ingress create");
    assert_eq!(
        create.path,
        "/apis/networking.k8s.io/v1/namespaces/demo/ingresses"
    );
    assert_eq!(
        create.body["metadata"]["labels"]["app.k8gb.io/managed-by"],
        "gslb"
    );
    let owner = &create.body["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Gslb");
    assert_eq!(owner["uid"], "uid-gslb-shop");
    assert_eq!(owner["controller"], true);
    assert_eq!(create.body["spec"]["rules"][0]["host"], "shop.cloud.example.com");
    // the Ingress is not in the cache yet: the status says so, nothing served locally
    let patch = seen
        .iter()
        .find(|s| s.method == Method::PATCH)
        .expect("a status patch");
    assert_eq!(
        patch.path,
        "/apis/k8gb.io/v1beta1/namespaces/demo/gslbs/shop/status"
    );
    assert_eq!(patch.body["status"]["conditions"][0]["status"], "False");

    // the Ingress appears (with its load balancer), as the watch would deliver it
    let mut created =
        h.api.objects.lock().unwrap()["/apis/networking.k8s.io/v1/namespaces/demo/ingresses/shop"].clone();
    created["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}});
    let h2 = Harness {
        api: h.api.clone(),
        ctx: Arc::new(Context::new(
            mock_client(h.api.clone()),
            h.ctx.cfg.clone(),
            Stores::from_objects(
                [
                    (SourceKind::Ingress, created),
                    (SourceKind::Service, service("shop", None)),
                    (SourceKind::EndpointSlice, slice("shop", true)),
                ]
                .into_iter()
                .map(|(k, v)| (k, obj(v))),
            ),
            h.ctx.engine.clone(),
            h.ctx.metrics.clone(),
            None,
        )),
        snapshot: h.snapshot.clone(),
        _cancel: CancellationToken::new().drop_guard(),
    };
    let now = stored(&h2, &g);
    run(&h2, &now).await;
    let seen = h2.api.take();
    assert!(
        seen.iter().all(|s| s.method != Method::POST),
        "no second create: {seen:?}"
    );
    let patches: Vec<_> = seen.iter().filter(|s| s.method == Method::PATCH).collect();
    assert_eq!(patches.len(), 1, "{seen:?}");
    let status = &stored(&h2, &g)["status"];
    assert_eq!(status["serviceHealth"]["shop.cloud.example.com"], "Healthy");
    assert_eq!(
        status["healthyRecords"]["shop.cloud.example.com"],
        json!(["192.0.2.10"])
    );
    assert_eq!(status["geoTag"], "eu");
    assert_eq!(status["hosts"], "shop.cloud.example.com");
    assert_eq!(status["loadBalancer"]["exposedIps"], json!(["192.0.2.10"]));
    assert_eq!(
        status["servers"][0]["services"][0],
        json!({"namespace": "demo", "name": "shop"})
    );
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(served(&h2, "shop.cloud.example.com"), vec![ip("192.0.2.10")]);

    // unchanged: reconciling the stored object again writes nothing
    let now = stored(&h2, &g);
    run(&h2, &now).await;
    run(&h2, &now).await;
    let seen = h2.api.take();
    assert!(seen.is_empty(), "an unchanged status was written again: {seen:?}");
}

#[tokio::test]
async fn readiness_flip_changes_the_answer_and_the_status() {
    let g = gslb(
        "web",
        json!({
            "resourceRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
            "strategy": {"type": "roundRobin"}
        }),
    );
    let objects = |ready: bool| {
        vec![
            (
                SourceKind::Ingress,
                ingress("web", "web.cloud.example.com", "web", "192.0.2.20", json!({})),
            ),
            (SourceKind::Service, service("web", None)),
            (SourceKind::EndpointSlice, slice("web", ready)),
        ]
    };
    let mut h = harness(objects(true), std::slice::from_ref(&g));
    run(&h, &g).await;
    assert_eq!(served(&h, "web.cloud.example.com"), vec![ip("192.0.2.20")]);
    // the EndpointSlice's change maps to this Gslb through the dependency index
    let unready = obj(slice("web", false));
    let affected = h
        .ctx
        .index
        .lock()
        .unwrap()
        .affected(SourceKind::EndpointSlice, &unready);
    assert_eq!(affected.len(), 1, "the slice change must trigger the Gslb");

    let ctx = Context::new(
        mock_client(h.api.clone()),
        h.ctx.cfg.clone(),
        Stores::from_objects(objects(false).into_iter().map(|(k, v)| (k, obj(v)))),
        h.ctx.engine.clone(),
        h.ctx.metrics.clone(),
        None,
    );
    h.ctx = Arc::new(ctx);
    run(&h, &stored(&h, &g)).await;
    assert_eq!(served(&h, "web.cloud.example.com"), Vec::<IpAddr>::new());
    let status = &stored(&h, &g)["status"];
    assert_eq!(status["serviceHealth"]["web.cloud.example.com"], "Unhealthy");
    assert!(status["healthyRecords"].get("web.cloud.example.com").is_none());
}

#[tokio::test]
async fn a_broken_gslb_gets_a_condition_and_the_others_are_served() {
    let broken = gslb(
        "broken",
        json!({"strategy": {"type": "roundRobin", "dnsTtlSeconds": "thirty"}, "resourceRef": {"kind": 7}}),
    );
    let good = gslb(
        "lb",
        json!({"resourceRef": {"apiVersion": "v1", "kind": "Service", "name": "lb"}, "strategy": {"type": "failover", "primaryGeoTag": "eu"}}),
    );
    let mut good = good;
    good["metadata"]["annotations"] = json!({"k8gb.io/hostname": "lb.cloud.example.com"});
    let no_primary = gslb(
        "noprimary",
        json!({"resourceRef": {"apiVersion": "v1", "kind": "Service", "name": "lb"}, "strategy": {"type": "failover"}}),
    );
    let h = harness(
        vec![
            (SourceKind::Service, service("lb", Some("198.51.100.7"))),
            (SourceKind::EndpointSlice, slice("lb", true)),
        ],
        &[broken.clone(), good.clone(), no_primary.clone()],
    );
    run(&h, &broken).await;
    run(&h, &no_primary).await;
    run(&h, &good).await;
    let b = &stored(&h, &broken)["status"]["conditions"][0];
    assert_eq!(b["status"], "False");
    assert_eq!(b["reason"], "InvalidSpec");
    assert!(b["message"].as_str().unwrap().contains("spec."), "{b}");
    let n = &stored(&h, &no_primary)["status"]["conditions"][0];
    assert_eq!(n["reason"], "InvalidStrategy");
    assert_eq!(
        stored(&h, &good)["status"]["conditions"][0]["status"],
        "True",
        "{}",
        stored(&h, &good)["status"]
    );
    assert_eq!(served(&h, "lb.cloud.example.com"), vec![ip("198.51.100.7")]);
}

#[tokio::test]
async fn unresolvable_sources_get_reasons() {
    let several = gslb(
        "several",
        json!({"resourceRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "matchLabels": {"app": "x"}}, "strategy": {"type": "roundRobin"}}),
    );
    let unsupported = gslb(
        "unsupported",
        json!({"resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}, "strategy": {"type": "roundRobin"}}),
    );
    let missing = gslb(
        "missing",
        json!({"resourceRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "nope"}, "strategy": {"type": "roundRobin"}}),
    );
    let outside = gslb(
        "outside",
        json!({"resourceRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "elsewhere"}, "strategy": {"type": "roundRobin"}}),
    );
    let h = harness(
        vec![
            (
                SourceKind::Ingress,
                ingress(
                    "a",
                    "a.cloud.example.com",
                    "a",
                    "192.0.2.1",
                    json!({"labels": {"app": "x"}}),
                ),
            ),
            (
                SourceKind::Ingress,
                ingress(
                    "b",
                    "b.cloud.example.com",
                    "b",
                    "192.0.2.2",
                    json!({"labels": {"app": "x"}}),
                ),
            ),
            (
                SourceKind::Ingress,
                ingress("elsewhere", "app.example.org", "a", "192.0.2.3", json!({})),
            ),
        ],
        &[
            several.clone(),
            unsupported.clone(),
            missing.clone(),
            outside.clone(),
        ],
    );
    for g in [&several, &unsupported, &missing, &outside] {
        run(&h, g).await;
    }
    let reason = |g: &Value| stored(&h, g)["status"]["conditions"][0]["reason"].clone();
    let message = |g: &Value| stored(&h, g)["status"]["conditions"][0]["message"].clone();
    assert!(
        message(&several).as_str().unwrap().contains("exactly 1"),
        "{}",
        message(&several)
    );
    assert_eq!(reason(&unsupported), "UnsupportedKind");
    assert_eq!(stored(&h, &missing)["status"]["conditions"][0]["status"], "False");
    assert_eq!(reason(&outside), "HostOutsideZones");
}

/// Every source kind, from kubectl-shaped fixtures: one reconcile makes one
/// status patch, and each healthy host is served with the exposed addresses.
#[tokio::test]
async fn every_source_kind_fixture_is_reconciled_and_served() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s");
    let mut table = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let list: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let items = list["items"].as_array().unwrap();
        let gslbs: Vec<Value> = items
            .iter()
            .filter(|i| i["apiVersion"] == "k8gb.io/v1beta1" && i["kind"] == "Gslb")
            .cloned()
            .collect();
        if gslbs.is_empty() {
            continue;
        }
        let objects: Vec<(SourceKind, Value)> = items
            .iter()
            .filter(|i| i["kind"] != "Gslb")
            .map(|i| {
                let kind =
                    SourceKind::from_type(i["apiVersion"].as_str().unwrap(), i["kind"].as_str().unwrap())
                        .unwrap_or_else(|| panic!("{}: unknown kind {}", path.display(), i["kind"]));
                (kind, i.clone())
            })
            .collect();
        let h = harness(objects, &gslbs);
        for g in &gslbs {
            run(&h, g).await;
            let seen = h.api.take();
            let patches: Vec<_> = seen.iter().filter(|s| s.method == Method::PATCH).collect();
            assert_eq!(patches.len(), 1, "{}: {seen:?}", path.display());
            assert!(patches[0].path.ends_with("/status"));
            let st = stored(&h, g)["status"].clone();
            let cond = &st["conditions"][0];
            assert_eq!(cond["type"], "Ready");
            let exposed: Vec<IpAddr> = st["loadBalancer"]["exposedIps"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
                .unwrap_or_default();
            let mut v4: Vec<IpAddr> = exposed.iter().filter(|i| i.is_ipv4()).copied().collect();
            v4.sort();
            for (host, health) in st["serviceHealth"].as_object().cloned().unwrap_or_default() {
                let want = if health == "Healthy" {
                    v4.clone()
                } else {
                    Vec::new()
                };
                assert_eq!(served(&h, &host), want, "{}: {host} ({health})", path.display());
            }
            table.push(format!(
                "{}: {} {} {}",
                path.file_name().unwrap().to_string_lossy(),
                cond["status"].as_str().unwrap(),
                cond["reason"].as_str().unwrap(),
                st["hosts"]
            ));
        }
    }
    table.sort();
    println!("{}", table.join("\n"));
    // hostname addresses need the edge DNS, which this test has none of
    let want = [
        "grpcroute.json: True Served \"grpc.cloud.example.com\"",
        "httproute.json: False ExposedAddressesUnresolved \"web.cloud.example.com, www.cloud.example.com\"",
        "ingress-embedded.json: False ExposedAddressesUnresolved \"app.cloud.example.com, api.cloud.example.com\"",
        "ingress-referenced.json: True Served \"shop.cloud.example.com\"",
        "ingress-selector.json: True Served \"web.cloud.example.com\"",
        "istio.json: False ExposedAddressesUnresolved \"istio.cloud.example.com, istio-alt.cloud.example.com\"",
        "lb-service.json: True Served \"lb-service.cloud.example.com\"",
        "tcproute.json: True Served \"tcp.cloud.example.com\"",
        "tlsroute.json: True Served \"tls.cloud.example.com\"",
        "udproute.json: True Served \"dns.cloud.example.com\"",
    ];
    assert_eq!(table, want);
}

/// The watch wiring: a Gslb from the first list is served; a re-list that
/// no longer has it removes it and reconciles the new one (which the
/// InitApply triggers could not, the cache being swapped only at InitDone);
/// a Delete removes a Gslb from the answers.
#[tokio::test]
async fn relist_and_delete_reach_the_engine() {
    use futures::StreamExt;
    use k8gb::controller::store::Group;
    use kube::runtime::watcher::Event as W;
    use kube::runtime::{WatchStreamExt, reflector};

    let spec = |name: &str| {
        let mut g = gslb(
            name,
            json!({"resourceRef": {"apiVersion": "v1", "kind": "Service", "name": name}, "strategy": {"type": "roundRobin"}}),
        );
        g["metadata"]["annotations"] = json!({"k8gb.io/hostname": format!("{name}.cloud.example.com")});
        g
    };
    let (a, b) = (spec("a"), spec("b"));
    let h = harness(
        vec![
            (SourceKind::Service, service("a", Some("192.0.2.1"))),
            (SourceKind::EndpointSlice, slice("a", true)),
            (SourceKind::Service, service("b", Some("192.0.2.2"))),
            (SourceKind::EndpointSlice, slice("b", true)),
        ],
        &[a.clone(), b.clone()],
    );
    let ar = h.ctx.canonical.clone();
    let writer = reflector::store::Writer::new(ar);
    let reader = writer.as_reader();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Result<W<DynamicObject>, kube::runtime::watcher::Error>>();
    let events = futures::stream::poll_fn({
        let mut rx = ev_rx;
        move |cx| rx.poll_recv(cx)
    })
    .reflect(writer)
    .boxed();
    // a context whose cache is that reader
    let mut ctx = Context::new(
        mock_client(h.api.clone()),
        h.ctx.cfg.clone(),
        Stores::from_objects(
            [
                (SourceKind::Service, service("a", Some("192.0.2.1"))),
                (SourceKind::EndpointSlice, slice("a", true)),
                (SourceKind::Service, service("b", Some("192.0.2.2"))),
                (SourceKind::EndpointSlice, slice("b", true)),
            ]
            .into_iter()
            .map(|(k, v)| (k, obj(v))),
        ),
        h.ctx.engine.clone(),
        h.ctx.metrics.clone(),
        None,
    );
    ctx.gslb_readers.push((Group::Canonical, reader.clone()));
    let ctx = Arc::new(ctx);
    let (trig_tx, trig_rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(k8gb::controller::controller_run(
        ctx,
        Group::Canonical,
        events,
        reader,
        trig_rx,
        trig_tx,
        cancel.clone(),
    ));
    let wait = |host: &'static str, want: Vec<IpAddr>| {
        let snap = h.snapshot.clone();
        async move {
            for _ in 0..200 {
                if k8gb::dns::testing::answer_of(&snap.load(), host, false) == want {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            false
        }
    };
    for e in [W::Init, W::InitApply(obj(a.clone())), W::InitDone] {
        ev_tx.send(Ok(e)).unwrap();
    }
    assert!(
        wait("a.cloud.example.com", vec![ip("192.0.2.1")]).await,
        "a not served"
    );
    // re-list: a is gone, b is new
    for e in [W::Init, W::InitApply(obj(b.clone())), W::InitDone] {
        ev_tx.send(Ok(e)).unwrap();
    }
    assert!(
        wait("b.cloud.example.com", vec![ip("192.0.2.2")]).await,
        "b not reconciled after the re-list"
    );
    assert!(
        wait("a.cloud.example.com", vec![]).await,
        "a still served after the re-list"
    );
    // a watch Delete
    ev_tx.send(Ok(W::Delete(obj(b.clone())))).unwrap();
    assert!(
        wait("b.cloud.example.com", vec![]).await,
        "b still served after its deletion"
    );
    cancel.cancel();
    let _ = run.await;
}
