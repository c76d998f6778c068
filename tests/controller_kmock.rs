//! The real binary in Kubernetes mode against the `kmock` API emulator
//! (PyPI): watches, event-driven reconciles, a broken Gslb next to good ones,
//! the API server going away and coming back, the legacy migration and the
//! annotation-driven Ingress. Answers are checked with `dig`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::kmock::{api, client, create, start_kmock};
use common::{Server, dig_short, eventually, require};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The kubeconfig of the emulator on `host:port`.
fn kmock_kubeconfig(dir: &Path, host: &str, port: u16) -> PathBuf {
    common::kmock::write_kubeconfig(dir, "kubeconfig", host, port)
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "selector": {"app": name}}})
}

fn slice(service: &str, ready: bool) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x1"), "namespace": "demo", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": ready}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]})
}

fn ingress(name: &str, host: &str, ip: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
}

fn gslb(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "k8gb.io/v1beta1", "kind": "Gslb",
        "metadata": {"name": name, "namespace": "demo"}, "spec": spec})
}

fn ref_ingress(name: &str) -> Value {
    json!({"resourceRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": name},
        "strategy": {"type": "roundRobin", "dnsTtlSeconds": 5}})
}

/// `k8gb run` in Kubernetes mode against the emulator.
fn start_k8gb(dir: &Path, kubeconfig: &Path, ip: &str) -> Server {
    let dns = format!("{ip}:0");
    start_k8gb_env(dir, kubeconfig, &dns)
}

fn start_k8gb_env(dir: &Path, kubeconfig: &Path, dns: &str) -> Server {
    start_k8gb_extra(dir, kubeconfig, dns, &[])
}

fn start_k8gb_extra(dir: &Path, kubeconfig: &Path, dns: &str, extra: &[(&str, &str)]) -> Server {
    let ip = dns.rsplit_once(':').unwrap().0;
    let admin = format!("{ip}:0");
    let mut envs: Vec<(&str, &str)> = vec![
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("CLUSTER_GEO_TAG", "eu"),
        ("DNS_ZONES", "example.com:cloud.example.com:30"),
        ("DNS_ADDRESS", dns),
        ("METRICS_ADDRESS", &admin),
        ("POD_NAMESPACE", "k8gb"),
        // the safety net is far away: every change below is event-driven
        ("RECONCILE_REQUEUE_SECONDS", "3600"),
    ];
    envs.extend_from_slice(extra);
    common::start_with(&["run"], &envs, dir, None)
}

fn answers(s: &Server, host: &str) -> Vec<String> {
    dig_short(s.dns, &["A", host])
}

const WITHIN: Duration = Duration::from_secs(15);

async fn status_of(c: &Client, name: &str) -> Value {
    let o = api(c, "k8gb.io", "v1beta1", "Gslb", "gslbs")
        .get(name)
        .await
        .unwrap();
    o.data.get("status").cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_change_flips_the_answer_without_a_requeue() {
    require("dig", "bind9-dnsutils");
    let dir = tempfile::tempdir().unwrap();
    let _api = start_kmock("127.0.0.61", 18061);
    let kc = kmock_kubeconfig(dir.path(), "127.0.0.61", 18061);
    let c = client(&kc).await;
    create(&c, service("web")).await;
    create(&c, slice("web", true)).await;
    create(&c, ingress("web", "web.cloud.example.com", "192.0.2.61")).await;
    create(&c, gslb("web", ref_ingress("web"))).await;
    let s = tokio::task::block_in_place(|| start_k8gb(dir.path(), &kc, "127.0.0.61"));
    let host = "web.cloud.example.com";
    assert!(
        eventually(WITHIN, || answers(&s, host) == ["192.0.2.61"]),
        "{:?}\n{}",
        answers(&s, host),
        s.log_text()
    );
    let st = status_of(&c, "web").await;
    assert_eq!(st["conditions"][0]["status"], "True", "{st}");
    assert_eq!(st["serviceHealth"][host], "Healthy");

    let slices = api(&c, "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices");
    let unready = json!({"endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": false}}]});
    slices
        .patch("web-x1", &PatchParams::default(), &Patch::Merge(&unready))
        .await
        .unwrap();
    assert!(
        eventually(WITHIN, || answers(&s, host).is_empty()),
        "not withdrawn: {:?}",
        answers(&s, host)
    );
    let ready = json!({"endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}]});
    slices
        .patch("web-x1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    assert!(eventually(WITHIN, || answers(&s, host) == ["192.0.2.61"]));
    let st = status_of(&c, "web").await;
    assert_eq!(st["healthyRecords"][host], json!(["192.0.2.61"]), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_gslb_does_not_stall_the_others() {
    require("dig", "bind9-dnsutils");
    let dir = tempfile::tempdir().unwrap();
    let _api = start_kmock("127.0.0.62", 18062);
    let kc = kmock_kubeconfig(dir.path(), "127.0.0.62", 18062);
    let c = client(&kc).await;
    // wrong field types: this list item would break a typed list-watch
    create(
        &c,
        gslb(
            "broken",
            json!({"strategy": {"type": 42, "dnsTtlSeconds": "soon"}, "resourceRef": "nope"}),
        ),
    )
    .await;
    create(&c, service("a")).await;
    create(&c, slice("a", true)).await;
    create(&c, ingress("a", "a.cloud.example.com", "192.0.2.62")).await;
    create(&c, gslb("a", ref_ingress("a"))).await;
    let s = tokio::task::block_in_place(|| start_k8gb(dir.path(), &kc, "127.0.0.62"));
    assert!(
        eventually(WITHIN, || answers(&s, "a.cloud.example.com") == ["192.0.2.62"]),
        "{}",
        s.log_text()
    );
    // a Gslb created after the broken one is served too (the watch goes on)
    create(&c, service("b")).await;
    create(&c, slice("b", true)).await;
    create(&c, ingress("b", "b.cloud.example.com", "192.0.2.63")).await;
    create(&c, gslb("b", ref_ingress("b"))).await;
    assert!(eventually(WITHIN, || answers(&s, "b.cloud.example.com") == ["192.0.2.63"]));
    let st = status_of(&c, "broken").await;
    assert_eq!(st["conditions"][0]["reason"], "InvalidSpec", "{st}");
    assert!(s.log_text().contains("InvalidSpec"));

    // a deleted Gslb leaves the answers
    api(&c, "k8gb.io", "v1beta1", "Gslb", "gslbs")
        .delete("a", &Default::default())
        .await
        .unwrap();
    assert!(
        eventually(WITHIN, || answers(&s, "a.cloud.example.com").is_empty()),
        "{}",
        s.log_text()
    );
    assert_eq!(answers(&s, "b.cloud.example.com"), ["192.0.2.63"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_goes_away_and_comes_back() {
    require("dig", "bind9-dnsutils");
    let dir = tempfile::tempdir().unwrap();
    let kc = kmock_kubeconfig(dir.path(), "127.0.0.63", 18063);
    let api1 = start_kmock("127.0.0.63", 18063);
    let c = client(&kc).await;
    create(&c, service("web")).await;
    create(&c, slice("web", true)).await;
    create(&c, ingress("web", "web.cloud.example.com", "192.0.2.71")).await;
    create(&c, gslb("web", ref_ingress("web"))).await;
    let s = tokio::task::block_in_place(|| start_k8gb(dir.path(), &kc, "127.0.0.63"));
    let host = "web.cloud.example.com";
    assert!(
        eventually(WITHIN, || answers(&s, host) == ["192.0.2.71"]),
        "{}",
        s.log_text()
    );

    drop(api1);
    // DNS keeps answering from what it knows while the API is away
    assert!(
        eventually(WITHIN, || s.log_text().contains("watch failed")),
        "{}",
        s.log_text()
    );
    assert_eq!(answers(&s, host), ["192.0.2.71"]);
    assert!(s.child.id() > 0);

    // the emulator restarts empty and a new Gslb appears
    let _api2 = start_kmock("127.0.0.63", 18063);
    let c = client(&kc).await;
    create(&c, service("new")).await;
    create(&c, slice("new", true)).await;
    create(&c, ingress("new", "new.cloud.example.com", "192.0.2.72")).await;
    create(&c, gslb("new", ref_ingress("new"))).await;
    assert!(
        eventually(Duration::from_secs(60), || answers(&s, "new.cloud.example.com")
            == ["192.0.2.72"]),
        "{:?}\n{}",
        answers(&s, "new.cloud.example.com"),
        s.log_text()
    );
    // ("web" vanished with the emulator's memory: a real API server reports
    // that as a DELETED event or a 410 and a re-list; kmock resumes the
    // watch without either, so that case is not observable here)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_migration_and_annotated_ingress() {
    require("dig", "bind9-dnsutils");
    let dir = tempfile::tempdir().unwrap();
    let _api = start_kmock("127.0.0.64", 18064);
    let kc = kmock_kubeconfig(dir.path(), "127.0.0.64", 18064);
    let c = client(&kc).await;
    // a legacy Gslb with an embedded ingress, served by the legacy runtime
    create(&c, service("old")).await;
    create(&c, slice("old", true)).await;
    let legacy = json!({"apiVersion": "k8gb.absa.oss/v1beta1", "kind": "Gslb",
        "metadata": {"name": "old", "namespace": "demo", "uid": "uid-legacy-old", "resourceVersion": "1"},
        "spec": {"ingress": {"rules": [{"host": "old.cloud.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "old", "port": {"number": 80}}}}]}}]},
            "strategy": {"type": "roundRobin"}}});
    let o: DynamicObject = serde_json::from_value(legacy).unwrap();
    let legacy_api = api(&c, "k8gb.absa.oss", "v1beta1", "Gslb", "gslbs");
    legacy_api.create(&PostParams::default(), &o).await.unwrap();
    // an Ingress with the upstream strategy annotations
    let mut ann = ingress("shop", "shop.cloud.example.com", "192.0.2.81");
    ann["metadata"]["annotations"] = json!({"k8gb.io/strategy": "failover", "k8gb.io/primary-geotag": "eu"});
    create(&c, service("shop")).await;
    create(&c, slice("shop", true)).await;
    create(&c, ann).await;

    let s = tokio::task::block_in_place(|| start_k8gb(dir.path(), &kc, "127.0.0.64"));
    // the legacy runtime creates the Ingress, owned by the legacy Gslb
    let ingresses = api(&c, "networking.k8s.io", "v1", "Ingress", "ingresses");
    let mut made_ingress = None;
    for _ in 0..150 {
        if let Ok(i) = ingresses.get("old").await {
            made_ingress = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made_ingress =
        made_ingress.unwrap_or_else(|| panic!("no Ingress from the legacy Gslb\n{}", s.log_text()));
    let owners = made_ingress.metadata.owner_references.clone().unwrap_or_default();
    assert!(owners.iter().any(|o| o.uid == "uid-legacy-old"), "{owners:?}");
    // its load balancer gets an address
    ingresses
        .patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.80"}]}}})),
        )
        .await
        .unwrap();
    assert!(
        eventually(WITHIN, || answers(&s, "old.cloud.example.com") == ["192.0.2.80"]),
        "{}",
        s.log_text()
    );

    // migration requested
    legacy_api
        .patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"k8gb.io/migration-requested": "true"}}})),
        )
        .await
        .unwrap();
    let gslbs = api(&c, "k8gb.io", "v1beta1", "Gslb", "gslbs");
    let mut migrated = None;
    for _ in 0..150 {
        if let Ok(g) = gslbs.get("old").await {
            migrated = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let migrated = migrated.unwrap_or_else(|| panic!("no k8gb.io Gslb from the migration\n{}", s.log_text()));
    assert_eq!(migrated.data["spec"]["resourceRef"]["kind"], "Ingress");
    assert_eq!(migrated.data["spec"]["resourceRef"]["name"], "old");
    assert!(migrated.data["spec"].get("ingress").is_none_or(Value::is_null));
    let mut done = false;
    for _ in 0..150 {
        let old = legacy_api.get("old").await.unwrap();
        let labelled = old
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("k8gb.io/migrated-to-k8gb-io"))
            .map(String::as_str)
            == Some("true");
        let finalized = old
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"k8gb.io/legacy-migration-protection".to_owned());
        let i = ingresses.get("old").await.unwrap();
        let detached = !i
            .metadata
            .owner_references
            .unwrap_or_default()
            .iter()
            .any(|o| o.uid == "uid-legacy-old");
        if labelled && finalized && detached {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "legacy not labelled/finalized/detached\n{}", s.log_text());
    // still served, now through the k8gb.io Gslb
    assert!(eventually(WITHIN, || answers(&s, "old.cloud.example.com") == ["192.0.2.80"]));

    // the annotated Ingress got its Gslb, owned by the Ingress, and is served
    let mut made = None;
    for _ in 0..150 {
        if let Ok(g) = gslbs.get("shop").await {
            made = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = made.unwrap_or_else(|| panic!("no Gslb from the annotations\n{}", s.log_text()));
    assert_eq!(made.data["spec"]["strategy"]["type"], "failover");
    assert_eq!(made.data["spec"]["strategy"]["primaryGeoTag"], "eu");
    let owner = &made.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Ingress", Some(true)));
    assert!(
        eventually(WITHIN, || answers(&s, "shop.cloud.example.com") == ["192.0.2.81"]),
        "{}",
        s.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extdns_mode_writes_the_delegation_endpoint_and_zone_status() {
    let dir = tempfile::tempdir().unwrap();
    let _api = start_kmock("127.0.0.65", 18065);
    let kc = kmock_kubeconfig(dir.path(), "127.0.0.65", 18065);
    let c = client(&kc).await;
    let s = tokio::task::block_in_place(|| {
        start_k8gb_extra(
            dir.path(),
            &kc,
            "127.0.0.65:0",
            &[("EXTDNS_ENABLED", "true"), ("CLUSTER_EXPOSED_IPS", "192.0.2.53")],
        )
    });
    let endpoints: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "k8gb",
        &ar("externaldns.k8s.io", "v1alpha1", "DNSEndpoint", "dnsendpoints"),
    );
    let zds: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ar("k8gb.io", "v1beta1", "ZoneDelegation", "zonedelegations"),
    );
    let mut found = (None, None);
    for _ in 0..200 {
        let ep = endpoints.get("k8gb-ns-extdns-cloud-example-com").await.ok();
        let zd = zds.get("cloud-example-com").await.ok();
        let delegated = zd.as_ref().is_some_and(|z| {
            z.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Delegated" && c["status"] == "True")
            })
        });
        if ep.is_some() && delegated {
            found = (ep, zd);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (Some(ep), Some(zd)) = found else {
        panic!("no DNSEndpoint or no Delegated ZoneDelegation\n{}", s.log_text());
    };
    assert_eq!(
        ep.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("k8gb.io/dnstype")
            .map(String::as_str),
        Some("extdns")
    );
    let eps = ep.data["spec"]["endpoints"].as_array().unwrap();
    let ns = eps.iter().find(|e| e["recordType"] == "NS").unwrap();
    assert_eq!(ns["dnsName"], "cloud.example.com");
    assert_eq!(ns["targets"], json!(["gslb-ns-eu-cloud.example.com"]));
    let glue = eps.iter().find(|e| e["recordType"] == "A").unwrap();
    assert_eq!(glue["targets"], json!(["192.0.2.53"]));
    assert_eq!(
        zd.data["status"]["dnsServers"],
        json!([{"name": "gslb-ns-eu-cloud.example.com", "address": "192.0.2.53"}])
    );
}

/// `/readyz` stays unready while the API server cannot be reached, and
/// turns ready only once the first list of Gslbs is applied: at that
/// moment every listed Gslb is already answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_the_first_list_of_gslbs_is_applied() {
    require("dig", "bind9-dnsutils");
    let dir = tempfile::tempdir().unwrap();
    let kc = kmock_kubeconfig(dir.path(), "127.0.0.66", 18066);
    // no API server yet
    let s = tokio::task::block_in_place(|| start_k8gb(dir.path(), &kc, "127.0.0.66"));
    let retried = || {
        s.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("Kubernetes API not usable yet"))
            .count()
    };
    assert!(
        eventually(WITHIN, || retried() >= 4),
        "no retries logged\n{}",
        s.log_text()
    );
    let readyz = || common::http_get(s.admin, "/readyz");
    assert!(
        readyz().contains(" 503 "),
        "ready without an API server: {}",
        readyz()
    );

    let _api = start_kmock("127.0.0.66", 18066);
    let c = client(&kc).await;
    for i in 0..5 {
        let name = format!("app{i}");
        create(&c, service(&name)).await;
        create(&c, slice(&name, true)).await;
        let host = format!("{name}.cloud.example.com");
        create(&c, ingress(&name, &host, &format!("192.0.2.{}", 100 + i))).await;
        create(&c, gslb(&name, ref_ingress(&name))).await;
    }
    tokio::task::block_in_place(|| {
        assert!(
            eventually(Duration::from_secs(60), || readyz().contains(" 200 ")),
            "never ready: {}\n{}",
            readyz(),
            s.log_text()
        );
        // ready means served: no listed Gslb is still missing
        for i in 0..5 {
            let host = format!("app{i}.cloud.example.com");
            assert_eq!(answers(&s, &host), [format!("192.0.2.{}", 100 + i)], "{host}");
        }
    });
}
