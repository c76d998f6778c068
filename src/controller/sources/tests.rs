//! Resolution against realistic `kubectl get -o json` fixtures
//! (`tests/fixtures/k8s/*.json`, one `List` per scenario).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::*;
use crate::api::{self, Gslb, LabelSelectorRequirement, ResourceRef};
use crate::core::health::{Health, Policy, ServiceHealth};

const NS: &str = "test-gslb";

struct Scenario {
    gslb: Option<Gslb>,
    legacy: Option<api::legacy::Gslb>,
    lookup: MemLookup,
}

fn load(file: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let list: Value = serde_json::from_str(&text).expect("fixture is JSON");
    assert_eq!(list["kind"], "List", "{file}");
    let mut s = Scenario {
        gslb: None,
        legacy: None,
        lookup: MemLookup::new(),
    };
    for item in list["items"].as_array().expect("items") {
        match item["apiVersion"].as_str().expect("apiVersion") {
            "k8gb.io/v1beta1" => s.gslb = Some(serde_json::from_value(item.clone()).expect("Gslb")),
            "k8gb.absa.oss/v1beta1" => {
                s.legacy = Some(serde_json::from_value(item.clone()).expect("legacy Gslb"))
            }
            _ => {
                let obj: DynamicObject = serde_json::from_value(item.clone()).expect("object");
                s.lookup.insert_object(obj).expect("known kind");
            }
        }
    }
    s
}

impl Scenario {
    fn gslb(&self) -> Gslb {
        self.gslb.clone().expect("scenario has a Gslb")
    }

    fn resolve(&self) -> Result<Resolved, Unresolved> {
        resolve(&self.lookup, &self.gslb())
    }

    fn ok(&self) -> Resolved {
        self.resolve()
            .unwrap_or_else(|e| panic!("resolve failed: {e} ({})", e.reason()))
    }

    fn err(&self) -> Unresolved {
        match self.resolve() {
            Ok(r) => panic!("resolved unexpectedly: {r:?}"),
            Err(e) => e,
        }
    }

    fn obj(&self, kind: SourceKind, ns: &str, name: &str) -> DynamicObject {
        let o = self.lookup.get(kind, ns, name).expect("served").expect("present");
        (*o).clone()
    }

    /// Edits an object's data in place.
    fn edit(&mut self, kind: SourceKind, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut o = self.obj(kind, ns, name);
        f(&mut o.data);
        self.lookup.insert(kind, o);
    }

    fn edit_gslb(&mut self, f: impl FnOnce(&mut Gslb)) {
        let g = self.gslb.as_mut().expect("scenario has a Gslb");
        f(g);
    }
}

fn svc(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name)
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("ip")).collect()
}

fn dep(kind: SourceKind, ns: &str, name: &str) -> Dependency {
    Dependency::object(kind, ns, name)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// --- SourceKind ---

#[test]
fn kinds_candidates_and_names() {
    let tls: Vec<String> = SourceKind::TlsRoute
        .candidates()
        .iter()
        .map(|r| r.api_version.clone())
        .collect();
    assert_eq!(
        tls,
        strings(&[
            "gateway.networking.k8s.io/v1",
            "gateway.networking.k8s.io/v1alpha3",
            "gateway.networking.k8s.io/v1alpha2"
        ])
    );
    let vs = SourceKind::VirtualService.candidates();
    assert_eq!(vs[0].api_version, "networking.istio.io/v1");
    assert_eq!(vs[1].api_version, "networking.istio.io/v1beta1");
    assert_eq!(vs[0].plural, "virtualservices");
    let svc = &SourceKind::Service.candidates()[0];
    assert_eq!(
        (svc.group.as_str(), svc.api_version.as_str(), svc.plural.as_str()),
        ("", "v1", "services")
    );
    assert_eq!(
        SourceKind::EndpointSlice.candidates()[0].api_version,
        "discovery.k8s.io/v1"
    );
    assert_eq!(SourceKind::IstioGateway.candidates()[0].kind, "Gateway");

    for k in SourceKind::ALL {
        assert!(!k.candidates().is_empty(), "{k:?}");
        let core = matches!(
            k,
            SourceKind::Ingress | SourceKind::Service | SourceKind::EndpointSlice
        );
        assert_eq!(k.optional(), !core, "{k:?}");
        for r in k.candidates() {
            assert_eq!(SourceKind::from_type(&r.api_version, &r.kind), Some(k), "{r:?}");
        }
    }
    assert_eq!(SourceKind::HttpRoute.name(), "HTTPRoute");
    assert_eq!(SourceKind::IstioGateway.name(), "Gateway (networking.istio.io)");
    assert_eq!(SourceKind::Gateway.name(), "Gateway");
    assert_eq!(SourceKind::from_type("apps/v1", "Deployment"), None);
}

// --- Ingress ---

#[test]
fn embedded_ingress() {
    let s = load("ingress-embedded.json");
    let r = s.ok();
    assert_eq!(r.source, (SourceKind::Ingress, NS.to_string(), "app".to_string()));
    // Normalized (case, trailing dot), de-duplicated, in rule order.
    assert_eq!(
        r.hosts,
        strings(&["app.cloud.example.com", "api.cloud.example.com"])
    );
    assert_eq!(
        r.servers,
        vec![
            (
                "app.cloud.example.com".to_string(),
                vec![svc(NS, "backend-podinfo"), svc(NS, "frontend-podinfo")]
            ),
            (
                "api.cloud.example.com".to_string(),
                vec![svc(NS, "backend-podinfo")]
            ),
        ]
    );
    // IPv6 kept; hostnames left to resolve.
    assert_eq!(r.addresses.ips, ips(&["172.18.0.5", "fd00:10::5"]));
    assert_eq!(r.addresses.hostnames, strings(&["lb-123.elb.example.net"]));
    let mut want = vec![dep(SourceKind::Ingress, NS, "app")];
    for name in ["backend-podinfo", "frontend-podinfo"] {
        want.extend(svc(NS, name).dependencies());
    }
    want.sort();
    assert_eq!(r.depends, want);
}

#[test]
fn embedded_ingress_not_created_yet_depends_on_it() {
    let mut s = load("ingress-embedded.json");
    s.lookup
        .remove(SourceKind::Ingress, NS, "app")
        .expect("was there");
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::NotFound {
            kind: SourceKind::Ingress,
            namespace: NS.to_string(),
            name: "app".to_string()
        }
    );
    assert_eq!(e.reason(), "NotFound");
    assert_eq!(e.to_string(), "Ingress test-gslb/app not found");
    assert_eq!(e.depends, vec![dep(SourceKind::Ingress, NS, "app")]);
}

#[test]
fn neither_reference_nor_embedded_ingress() {
    let mut s = load("ingress-embedded.json");
    s.edit_gslb(|g| g.spec.ingress = None);
    assert_eq!(s.err().error, ResolveError::NoSource);
    // An all-empty resourceRef is absent, as upstream.
    s.edit_gslb(|g| g.spec.resource_ref = Some(ResourceRef::default()));
    assert_eq!(s.err().error, ResolveError::NoSource);
    // A kind without name or selector.
    s.edit_gslb(|g| {
        g.spec.resource_ref = Some(ResourceRef {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            ..ResourceRef::default()
        })
    });
    let e = s.err();
    assert_eq!(e.error, ResolveError::NoReference);
    assert_eq!(
        e.to_string(),
        "neither name nor label selector specified in ResourceRef"
    );
    assert!(e.depends.is_empty());
}

#[test]
fn referenced_ingress_by_name_in_another_namespace() {
    let s = load("ingress-referenced.json");
    let r = s.ok();
    assert_eq!(
        r.source,
        (SourceKind::Ingress, "shop-prod".to_string(), "shop".to_string())
    );
    // The rule without a host is skipped; so is the resource backend.
    assert_eq!(r.hosts, strings(&["shop.cloud.example.com"]));
    assert_eq!(
        r.servers,
        vec![(
            "shop.cloud.example.com".to_string(),
            vec![svc("shop-prod", "shop-frontend")]
        )]
    );
    assert_eq!(r.addresses.ips, ips(&["172.18.0.6"]));
    assert!(r.depends.contains(&dep(SourceKind::Ingress, "shop-prod", "shop")));
}

#[test]
fn referenced_ingress_namespace_defaults_to_the_gslbs() {
    let mut s = load("ingress-referenced.json");
    s.edit_gslb(|g| g.spec.resource_ref.as_mut().expect("ref").namespace = None);
    let r = s.ok();
    assert_eq!(r.source.1, NS);
    assert_eq!(r.hosts, strings(&["wrong-namespace.cloud.example.com"]));
}

#[test]
fn missing_referenced_ingress_then_created() {
    let mut s = load("ingress-referenced.json");
    let ing = s.obj(SourceKind::Ingress, "shop-prod", "shop");
    s.lookup.remove(SourceKind::Ingress, "shop-prod", "shop");
    let e = s.err();
    assert_eq!(e.reason(), "NotFound");
    assert_eq!(e.depends, vec![dep(SourceKind::Ingress, "shop-prod", "shop")]);
    // The dependency is what the controller watches; once created, it resolves.
    s.lookup.insert(SourceKind::Ingress, ing);
    assert_eq!(s.ok().hosts, strings(&["shop.cloud.example.com"]));
}

#[test]
fn ingress_by_selector_one_match_in_gslb_namespace_only() {
    let s = load("ingress-selector.json");
    let r = s.ok();
    assert_eq!(
        r.source,
        (SourceKind::Ingress, NS.to_string(), "web-frontend".to_string())
    );
    assert_eq!(r.hosts, strings(&["web.cloud.example.com"]));
    assert!(r.depends.contains(&Dependency::Namespace {
        kind: SourceKind::Ingress,
        namespace: NS.to_string()
    }));
}

#[test]
fn ingress_by_selector_zero_and_two_matches() {
    let mut s = load("ingress-selector.json");
    s.edit_gslb(|g| {
        let r = g.spec.resource_ref.as_mut().expect("ref");
        r.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: Some(vec!["backend".into()]),
        }]);
    });
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::SeveralFound {
            kind: SourceKind::Ingress,
            count: 0
        }
    );
    assert_eq!(e.reason(), "NotFound");
    assert_eq!(
        e.to_string(),
        "exactly 1 Ingress resource expected but 0 were found"
    );
    // A later matching Ingress in the namespace must trigger a reconcile.
    assert_eq!(
        e.depends,
        vec![Dependency::Namespace {
            kind: SourceKind::Ingress,
            namespace: NS.to_string()
        }]
    );

    s.edit_gslb(|g| g.spec.resource_ref.as_mut().expect("ref").match_expressions = None);
    let e = s.err();
    assert_eq!(
        e.to_string(),
        "exactly 1 Ingress resource expected but 2 were found"
    );
    assert_eq!(e.reason(), "SeveralFound");

    // matchExpressions alone, with NotIn and Exists.
    s.edit_gslb(|g| {
        let r = g.spec.resource_ref.as_mut().expect("ref");
        r.match_labels = None;
        r.match_expressions = Some(vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["frontend".into()]),
            },
            LabelSelectorRequirement {
                key: "app".into(),
                operator: "Exists".into(),
                values: None,
            },
        ]);
    });
    assert_eq!(s.ok().hosts, strings(&["canary.cloud.example.com"]));
}

#[test]
fn invalid_selector() {
    let mut s = load("ingress-selector.json");
    s.edit_gslb(|g| {
        g.spec.resource_ref.as_mut().expect("ref").match_expressions = Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "Equals".into(),
            values: Some(vec!["x".into()]),
        }])
    });
    let e = s.err();
    assert_eq!(e.reason(), "InvalidSelector");
    assert!(e.to_string().starts_with("invalid label selector: "), "{e}");
}

#[test]
fn unsupported_kinds() {
    let mut s = load("ingress-referenced.json");
    for (api_version, kind) in [
        ("extensions/v1beta1", "Ingress"),
        ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1", "TCPRoute"),
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("apps/v1", "Deployment"),
    ] {
        s.edit_gslb(|g| {
            let r = g.spec.resource_ref.as_mut().expect("ref");
            r.api_version = Some(api_version.into());
            r.kind = Some(kind.into());
        });
        let e = s.err();
        assert_eq!(
            e.to_string(),
            format!("APIVersion:{api_version}, Kind:{kind} not supported")
        );
        assert_eq!(e.reason(), "UnsupportedKind");
    }
}

#[test]
fn ingress_rule_without_http_is_malformed_not_a_panic() {
    let mut s = load("ingress-referenced.json");
    s.edit(SourceKind::Ingress, "shop-prod", "shop", |d| {
        d["spec"]["rules"] = json!([{"host": "shop.cloud.example.com"}]);
    });
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::Malformed {
            kind: SourceKind::Ingress,
            name: "shop-prod/shop".into(),
            detail: "spec.rules[0].http is missing".into()
        }
    );
    assert_eq!(e.reason(), "Malformed");
    assert!(e.depends.contains(&dep(SourceKind::Ingress, "shop-prod", "shop")));

    // Oddly typed fields are named by path.
    for (patch, path) in [
        (json!({"rules": "everything"}), "spec.rules"),
        (
            json!({"rules": [{"host": 7, "http": {"paths": []}}]}),
            "spec.rules[0].host",
        ),
        (
            json!({"rules": [{"host": "a.cloud.example.com", "http": {"paths": {"path": "/"}}}]}),
            "spec.rules[0].http.paths",
        ),
    ] {
        s.edit(SourceKind::Ingress, "shop-prod", "shop", |d| d["spec"] = patch);
        match s.err().error {
            ResolveError::Malformed { detail, .. } => assert!(detail.starts_with(path), "{detail}"),
            other => panic!("{other:?}"),
        }
    }
    s.edit(SourceKind::Ingress, "shop-prod", "shop", |d| {
        d["spec"] = json!({"rules": [{"host": "a.cloud.example.com", "http": {"paths": []}}]});
        d["status"] = json!({"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}});
    });
    match s.err().error {
        ResolveError::Malformed { detail, .. } => {
            assert_eq!(
                detail,
                "status.loadBalancer.ingress[0].ip: \"not-an-ip\" is not an IP address"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ingress_without_any_host() {
    let mut s = load("ingress-referenced.json");
    s.edit(SourceKind::Ingress, "shop-prod", "shop", |d| {
        d["spec"] = json!({"defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}});
    });
    let e = s.err();
    assert_eq!(e.reason(), "NoHostnames");
    assert_eq!(e.to_string(), "can't find hosts in Ingress shop-prod/shop");
}

// --- Service ---

#[test]
fn lb_service() {
    let s = load("lb-service.json");
    let r = s.ok();
    assert_eq!(
        r.source,
        (SourceKind::Service, NS.to_string(), "lb-service".to_string())
    );
    assert_eq!(r.hosts, strings(&["lb-service.cloud.example.com"]));
    assert_eq!(
        r.servers,
        vec![(
            "lb-service.cloud.example.com".to_string(),
            vec![svc(NS, "lb-service")]
        )]
    );
    assert_eq!(r.addresses.ips, ips(&["10.0.0.1", "2001:db8::1"]));
    assert!(r.addresses.hostnames.is_empty());
    let mut want = svc(NS, "lb-service").dependencies().to_vec();
    want.sort();
    assert_eq!(r.depends, want);
}

#[test]
fn service_not_load_balancer() {
    let mut s = load("lb-service.json");
    s.edit_gslb(|g| g.spec.resource_ref.as_mut().expect("ref").name = Some("cluster-only".into()));
    let e = s.err();
    assert_eq!(e.reason(), "NotLoadBalancer");
    assert_eq!(
        e.to_string(),
        "service test-gslb/cluster-only is not of type LoadBalancer (type ClusterIP)"
    );
    assert_eq!(e.depends, vec![dep(SourceKind::Service, NS, "cluster-only")]);
}

#[test]
fn service_missing_hostname_annotation() {
    let mut s = load("lb-service.json");
    for value in [None, Some("  ")] {
        s.edit_gslb(|g| {
            let a = g.metadata.annotations.get_or_insert_default();
            match value {
                None => a.remove(ANNOTATION_HOSTNAME),
                Some(v) => a.insert(ANNOTATION_HOSTNAME.into(), v.into()),
            };
        });
        let e = s.err();
        assert_eq!(
            e.error,
            ResolveError::MissingHostnameAnnotation {
                kind: SourceKind::Service,
                gslb: "test-gslb/lb-service".into()
            }
        );
        assert_eq!(e.reason(), "MissingHostnameAnnotation");
        assert!(e.to_string().contains("k8gb.io/hostname"), "{e}");
    }
}

// --- Gateway API ---

#[test]
fn httproute() {
    let s = load("httproute.json");
    let r = s.ok();
    assert_eq!(
        r.source,
        (SourceKind::HttpRoute, NS.to_string(), "web".to_string())
    );
    assert_eq!(
        r.hosts,
        strings(&["web.cloud.example.com", "www.cloud.example.com"])
    );
    let backends = vec![svc("canary", "web-v2"), svc(NS, "web-v1")];
    assert_eq!(
        r.servers,
        vec![
            ("web.cloud.example.com".to_string(), backends.clone()),
            ("www.cloud.example.com".to_string(), backends)
        ]
    );
    // Two parentRefs to one Gateway (one per listener) count once.
    assert_eq!(r.addresses.ips, ips(&["172.18.0.10", "2001:db8::10"]));
    assert_eq!(r.addresses.hostnames, strings(&["gw.lb.example.net"]));
    assert!(r.depends.contains(&dep(SourceKind::HttpRoute, NS, "web")));
    assert!(
        r.depends
            .contains(&dep(SourceKind::Gateway, "gateway-system", "shared-gw"))
    );
    assert!(r.depends.contains(&Dependency::EndpointSlices {
        namespace: "canary".into(),
        service: "web-v2".into()
    }));
}

#[test]
fn route_parent_refs() {
    let mut s = load("httproute.json");
    s.edit(SourceKind::HttpRoute, NS, "web", |d| {
        d["spec"]["parentRefs"] = json!([{"name": "gw-a"}, {"name": "gw-b", "kind": "Gateway"}]);
    });
    let e = s.err();
    assert_eq!(e.reason(), "InvalidGatewayRef");
    assert_eq!(
        e.to_string(),
        "expected exactly 1 Gateway to be referenced by the route test-gslb/web but 2 were found"
    );

    s.edit(SourceKind::HttpRoute, NS, "web", |d| {
        d["spec"]["parentRefs"] = json!([{"group": "", "kind": "Service", "name": "web-v1"}]);
    });
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::GatewayRef {
            route: "test-gslb/web".into(),
            count: 0,
            ignored_kinds: vec!["Service".into()]
        }
    );
    assert!(
        e.to_string()
            .ends_with("(parentRefs of kind Service ignored: only Gateway is supported)")
    );

    s.edit(SourceKind::HttpRoute, NS, "web", |d| {
        d["spec"].as_object_mut().expect("spec").remove("parentRefs");
    });
    assert_eq!(s.err().reason(), "InvalidGatewayRef");

    // A parentRef without namespace is in the route's namespace.
    s.edit(SourceKind::HttpRoute, NS, "web", |d| {
        d["spec"]["parentRefs"] = json!([{"name": "shared-gw"}])
    });
    let e = s.err();
    assert_eq!(e.to_string(), "Gateway test-gslb/shared-gw not found");
    assert!(e.depends.contains(&dep(SourceKind::Gateway, NS, "shared-gw")));
    assert!(e.depends.contains(&dep(SourceKind::HttpRoute, NS, "web")));
}

#[test]
fn route_without_hostnames() {
    let mut s = load("httproute.json");
    s.edit(SourceKind::HttpRoute, NS, "web", |d| {
        d["spec"]["hostnames"] = json!([])
    });
    let e = s.err();
    assert_eq!(e.to_string(), "can't find hosts in HTTPRoute test-gslb/web");
    assert_eq!(e.reason(), "NoHostnames");
}

#[test]
fn gateway_address_types() {
    let mut s = load("httproute.json");
    s.edit(SourceKind::Gateway, "gateway-system", "shared-gw", |d| {
        d["status"]["addresses"] = json!([{"type": "example.com/NamedAddress", "value": "pool-a"}]);
    });
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::UnsupportedAddressType {
            gateway: "gateway-system/shared-gw".into(),
            address_type: "example.com/NamedAddress".into()
        }
    );
    s.edit(SourceKind::Gateway, "gateway-system", "shared-gw", |d| {
        d["status"]["addresses"] = json!([{"type": "IPAddress", "value": "gw.example.net"}]);
    });
    assert_eq!(s.err().reason(), "Malformed");
    // A Gateway without status yet: resolved, no addresses.
    s.edit(SourceKind::Gateway, "gateway-system", "shared-gw", |d| {
        d.as_object_mut().expect("data").remove("status");
    });
    assert_eq!(s.ok().addresses, SourceAddresses::default());
}

#[test]
fn route_backend_ref_without_name_is_malformed() {
    let mut s = load("httproute.json");
    s.edit(SourceKind::HttpRoute, NS, "web", |d| {
        d["spec"]["rules"] = json!([{"backendRefs": [{"port": 80}]}]);
    });
    match s.err().error {
        ResolveError::Malformed { detail, .. } => {
            assert_eq!(detail, "spec.rules[0].backendRefs[0].name is missing")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn kind_not_served() {
    let mut s = load("httproute.json");
    s.lookup.set_unavailable(SourceKind::HttpRoute);
    let e = s.err();
    assert_eq!(e.error, ResolveError::KindNotServed(SourceKind::HttpRoute));
    assert_eq!(e.reason(), "KindNotServed");
    assert_eq!(
        e.to_string(),
        "HTTPRoute is not served by this cluster (is its CRD installed?)"
    );
    assert_eq!(e.depends, vec![dep(SourceKind::HttpRoute, NS, "web")]);

    let mut s = load("httproute.json");
    s.lookup.set_unavailable(SourceKind::Gateway);
    assert_eq!(s.err().error, ResolveError::KindNotServed(SourceKind::Gateway));
}

#[test]
fn grpcroute() {
    let s = load("grpcroute.json");
    let r = s.ok();
    assert_eq!(r.source.0, SourceKind::GrpcRoute);
    assert_eq!(r.hosts, strings(&["grpc.cloud.example.com"]));
    assert_eq!(
        r.servers,
        vec![(
            "grpc.cloud.example.com".to_string(),
            vec![svc(NS, "grpc-backend")]
        )]
    );
    // An address without a type is an IP.
    assert_eq!(r.addresses.ips, ips(&["172.18.0.11"]));
}

#[test]
fn tlsroute_every_api_version() {
    let mut s = load("tlsroute.json");
    for v in ["v1alpha2", "v1alpha3", "v1"] {
        s.edit_gslb(|g| {
            g.spec.resource_ref.as_mut().expect("ref").api_version =
                Some(format!("gateway.networking.k8s.io/{v}"))
        });
        let r = s.ok();
        assert_eq!(r.source.0, SourceKind::TlsRoute);
        assert_eq!(r.hosts, strings(&["tls.cloud.example.com"]));
        assert_eq!(
            r.servers,
            vec![("tls.cloud.example.com".to_string(), vec![svc(NS, "tls-backend")])]
        );
        assert_eq!(r.addresses.ips, ips(&["172.18.0.12"]));
    }
}

#[test]
fn tcproute_and_udproute_hosts_from_annotation() {
    let s = load("tcproute.json");
    let r = s.ok();
    assert_eq!(r.source.0, SourceKind::TcpRoute);
    assert_eq!(r.hosts, strings(&["tcp.cloud.example.com"]));
    assert_eq!(
        r.servers,
        vec![("tcp.cloud.example.com".to_string(), vec![svc(NS, "postgres")])]
    );
    assert_eq!(r.addresses.ips, ips(&["172.18.0.13"]));

    let mut s = load("udproute.json");
    let r = s.ok();
    assert_eq!(r.source.0, SourceKind::UdpRoute);
    assert_eq!(r.hosts, strings(&["dns.cloud.example.com"]));
    // backendRef namespace honoured.
    assert_eq!(
        r.servers,
        vec![(
            "dns.cloud.example.com".to_string(),
            vec![svc("dns", "coredns-app")]
        )]
    );

    s.edit_gslb(|g| g.metadata.annotations = None);
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::MissingHostnameAnnotation {
            kind: SourceKind::UdpRoute,
            gslb: "test-gslb/udp".into()
        }
    );
    // Read before the failure: the route and its Gateway.
    assert!(e.depends.contains(&dep(SourceKind::Gateway, NS, "gw")));
}

// --- Istio ---

#[test]
fn istio_virtual_service() {
    let s = load("istio.json");
    let r = s.ok();
    assert_eq!(
        r.source,
        (SourceKind::VirtualService, NS.to_string(), "app".to_string())
    );
    assert_eq!(
        r.hosts,
        strings(&["istio.cloud.example.com", "istio-alt.cloud.example.com"])
    );
    // Short names in the VirtualService namespace; <name>.<ns>.svc.cluster.local read as that Service.
    let backends = vec![svc(NS, "backend"), svc(NS, "db"), svc(NS, "frontend")];
    assert_eq!(
        r.servers,
        vec![
            ("istio.cloud.example.com".to_string(), backends.clone()),
            ("istio-alt.cloud.example.com".to_string(), backends)
        ]
    );
    assert_eq!(r.addresses.ips, ips(&["172.18.0.20"]));
    assert_eq!(r.addresses.hostnames, strings(&["istio-lb.example.net"]));
    assert!(
        r.depends
            .contains(&dep(SourceKind::IstioGateway, "istio-ingress", "app-gateway"))
    );
    assert!(
        r.depends
            .contains(&Dependency::AllNamespaces(SourceKind::Service))
    );
    assert!(
        r.depends
            .contains(&dep(SourceKind::Service, "istio-ingress", "istio-ingressgateway"))
    );

    let mut s = s;
    s.edit_gslb(|g| {
        g.spec.resource_ref.as_mut().expect("ref").api_version = Some("networking.istio.io/v1beta1".into())
    });
    assert_eq!(s.ok().hosts.len(), 2);
}

#[test]
fn istio_gateway_references() {
    let mut s = load("istio.json");
    for (gateways, count) in [
        (json!(["mesh"]), 0),
        (json!(["a/one", "b/two", "mesh"]), 2),
        (json!(null), 0),
    ] {
        s.edit(SourceKind::VirtualService, NS, "app", |d| {
            d["spec"]["gateways"] = gateways
        });
        let e = s.err();
        assert_eq!(
            e.error,
            ResolveError::IstioGatewayRef {
                virtual_service: "test-gslb/app".into(),
                count
            }
        );
        assert_eq!(e.reason(), "InvalidGatewayRef");
    }
    // A bare name is in the VirtualService's namespace (upstream panics on it).
    s.edit(SourceKind::VirtualService, NS, "app", |d| {
        d["spec"]["gateways"] = json!(["app-gateway"])
    });
    assert_eq!(
        s.err().to_string(),
        "Gateway (networking.istio.io) test-gslb/app-gateway not found"
    );
    s.edit(SourceKind::VirtualService, NS, "app", |d| {
        d["spec"]["gateways"] = json!(["a/b/c"])
    });
    assert_eq!(s.err().reason(), "Malformed");
}

#[test]
fn istio_gateway_selector_must_match_one_service() {
    let mut s = load("istio.json");
    let mut second = s.obj(SourceKind::Service, "istio-ingress", "istio-ingressgateway");
    second.metadata.namespace = Some("istio-ingress-2".into());
    s.lookup.insert(SourceKind::Service, second);
    let e = s.err();
    assert_eq!(
        e.error,
        ResolveError::IstioGatewayServices {
            gateway: "istio-ingress/app-gateway".into(),
            count: 2
        }
    );
    assert!(
        e.to_string()
            .starts_with("exactly 1 Service resource expected but 2 were found")
    );
    assert!(
        e.depends
            .contains(&Dependency::AllNamespaces(SourceKind::Service))
    );

    s.lookup
        .remove(SourceKind::Service, "istio-ingress", "istio-ingressgateway");
    s.lookup
        .remove(SourceKind::Service, "istio-ingress-2", "istio-ingressgateway");
    assert_eq!(s.err().reason(), "IstioGatewayService");

    let mut s = load("istio.json");
    s.edit(SourceKind::IstioGateway, "istio-ingress", "app-gateway", |d| {
        d["spec"].as_object_mut().expect("spec").remove("selector");
    });
    assert_eq!(s.err().reason(), "Malformed");
}

#[test]
fn istio_without_hosts() {
    let mut s = load("istio.json");
    s.edit(SourceKind::VirtualService, NS, "app", |d| {
        d["spec"]["hosts"] = json!([])
    });
    assert_eq!(
        s.err().to_string(),
        "can't find hosts in VirtualService test-gslb/app"
    );
}

// --- Health ---

#[test]
fn service_health_from_endpoint_slices() {
    let s = load("endpointslices.json");
    let rows = [
        ("ready", ServiceHealth::Healthy),
        ("ready-nil", ServiceHealth::Healthy),
        ("unready", ServiceHealth::Unhealthy),
        ("no-addresses", ServiceHealth::Unhealthy),
        ("no-slices", ServiceHealth::Unhealthy),
        ("two-slices", ServiceHealth::Healthy),
        ("other-label", ServiceHealth::Unhealthy),
        ("ghost", ServiceHealth::Missing),
        ("never-existed", ServiceHealth::Missing),
    ];
    for (name, want) in rows {
        assert_eq!(service_health(&s.lookup, &svc("health", name)), want, "{name}");
    }
    // Same name, other namespace: slices are per namespace.
    assert_eq!(
        service_health(&s.lookup, &svc("other", "ready")),
        ServiceHealth::Missing
    );
}

#[test]
fn host_health_any_and_all() {
    let s = load("endpointslices.json");
    let h = |n: &str| svc("health", n);
    let rows: &[(&[&str], Health, Health)] = &[
        (&[], Health::NotFound, Health::NotFound),
        (&["ready"], Health::Healthy, Health::Healthy),
        (&["ready", "unready"], Health::Healthy, Health::Unhealthy),
        (&["ready", "ghost"], Health::Healthy, Health::NotFound),
        (&["unready", "ghost"], Health::Unhealthy, Health::NotFound),
        (&["ghost"], Health::NotFound, Health::NotFound),
        (
            &["ready", "two-slices", "ready-nil"],
            Health::Healthy,
            Health::Healthy,
        ),
    ];
    for (names, any, all) in rows {
        let services: Vec<ServiceKey> = names.iter().map(|n| h(n)).collect();
        assert_eq!(
            host_health(&s.lookup, Policy::Any, &services),
            *any,
            "Any {names:?}"
        );
        assert_eq!(
            host_health(&s.lookup, Policy::All, &services),
            *all,
            "All {names:?}"
        );
    }
}

#[test]
fn malformed_endpoint_slice_counts_as_not_ready() {
    let mut s = load("endpointslices.json");
    s.edit(SourceKind::EndpointSlice, "health", "ready-a1b2c", |d| {
        d["endpoints"] = json!("broken")
    });
    assert_eq!(
        service_health(&s.lookup, &svc("health", "ready")),
        ServiceHealth::Unhealthy
    );
}

// --- Exposed addresses ---

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn exposed_precedence() {
    let source = SourceAddresses {
        ips: ips(&["172.18.0.5", "fd00:10::5"]),
        hostnames: strings(&["lb.example.net"]),
    };
    let cluster = ips(&["198.51.100.1", "2001:db8::99"]);
    let both = annotations(&[
        (
            ANNOTATION_EXPOSED_HOSTNAMES,
            "edge-a.example.net, Edge-B.example.net.",
        ),
        (ANNOTATION_EXPOSED_IPS, "203.0.113.1"),
    ]);
    // 1. exposed-hostnames beats everything.
    assert_eq!(
        exposed_plan(&both, &cluster, &source).expect("plan"),
        ExposedPlan {
            ips: vec![],
            resolve: strings(&["edge-a.example.net", "edge-b.example.net"])
        }
    );
    // 2. exposed-ip-addresses beats the cluster IPs and the source; IPv6 kept.
    let ip_ann = annotations(&[(ANNOTATION_EXPOSED_IPS, "203.0.113.1, 2001:db8::1,203.0.113.1")]);
    assert_eq!(
        exposed_plan(&ip_ann, &cluster, &source).expect("plan"),
        ExposedPlan {
            ips: ips(&["203.0.113.1", "2001:db8::1"]),
            resolve: vec![]
        }
    );
    // 3. CLUSTER_EXPOSED_IPS beats the source.
    let none = BTreeMap::new();
    assert_eq!(
        exposed_plan(&none, &cluster, &source).expect("plan"),
        ExposedPlan {
            ips: cluster.clone(),
            resolve: vec![]
        }
    );
    // 4. The source's own addresses.
    assert_eq!(
        exposed_plan(&none, &[], &source).expect("plan"),
        ExposedPlan {
            ips: source.ips.clone(),
            resolve: source.hostnames.clone()
        }
    );
}

#[test]
fn exposed_invalid_annotations() {
    let source = SourceAddresses::default();
    for (key, value) in [
        (ANNOTATION_EXPOSED_IPS, "203.0.113.1,not-an-ip"),
        (ANNOTATION_EXPOSED_IPS, ""),
        (ANNOTATION_EXPOSED_IPS, "203.0.113.1,"),
        (ANNOTATION_EXPOSED_IPS, "203.0.113.300"),
        (ANNOTATION_EXPOSED_HOSTNAMES, " , "),
        (ANNOTATION_EXPOSED_HOSTNAMES, "bad host.example.net"),
    ] {
        let e = exposed_plan(&annotations(&[(key, value)]), &[], &source).expect_err(value);
        assert_eq!(e.reason(), "InvalidAnnotation", "{value}");
        match e {
            ResolveError::InvalidAnnotation { key: k, value: v, .. } => {
                assert_eq!((k.as_str(), v.as_str()), (key, value))
            }
            other => panic!("{other:?}"),
        }
    }
    let e = exposed_plan(
        &annotations(&[(ANNOTATION_EXPOSED_IPS, "10.0.0.1,x")]),
        &[],
        &source,
    )
    .expect_err("x");
    assert_eq!(
        e.to_string(),
        "annotation k8gb.io/exposed-ip-addresses: invalid value \"10.0.0.1,x\": invalid IP address: \"x\""
    );
}

// --- Annotated Ingress (§5.3) ---

fn annotated_ingress() -> DynamicObject {
    load("annotated-ingress.json").obj(SourceKind::Ingress, NS, "legacy-app")
}

fn set_annotation(obj: &mut DynamicObject, key: &str, value: Option<&str>) {
    let a = obj.metadata.annotations.get_or_insert_default();
    match value {
        Some(v) => a.insert(key.into(), v.into()),
        None => a.remove(key),
    };
}

#[test]
fn annotated_ingress_makes_a_gslb() {
    let ing = annotated_ingress();
    let g = annotated_ingress_gslb(&ing, None)
        .expect("ok")
        .expect("asks for a Gslb");
    assert_eq!(g.metadata.name.as_deref(), Some("legacy-app"));
    assert_eq!(g.metadata.namespace.as_deref(), Some(NS));
    let r = g.spec.resource_ref.as_ref().expect("resourceRef");
    assert_eq!(
        (r.api_version.as_deref(), r.kind.as_deref(), r.name.as_deref()),
        (Some("networking.k8s.io/v1"), Some("Ingress"), Some("legacy-app"))
    );
    assert_eq!(g.spec.ingress, None);
    assert_eq!(g.spec.strategy.type_, "failover");
    assert_eq!(g.spec.strategy.primary_geo_tag.as_deref(), Some("eu"));
    assert_eq!(g.spec.strategy.dns_ttl_seconds, Some(60));
    assert_eq!(g.spec.strategy.weight, None);
    g.spec.strategy.validate().expect("valid strategy");
    assert_eq!(
        g.metadata.annotations,
        Some(annotations(&[(
            ANNOTATION_EXPOSED_IPS,
            "203.0.113.10,2001:db8::a"
        )]))
    );
    let owners = g.metadata.owner_references.as_deref().expect("owners");
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "Ingress");
    assert_eq!(owners[0].api_version, "networking.k8s.io/v1");
    assert_eq!(owners[0].name, "legacy-app");
    assert_eq!(Some(&owners[0].uid), ing.metadata.uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));

    // The Gslb resolves against the Ingress it points to.
    let s = load("annotated-ingress.json");
    let resolved = resolve(&s.lookup, &g).expect("resolves");
    assert_eq!(resolved.hosts, strings(&["legacy-app.cloud.example.com"]));
}

#[test]
fn annotated_ingress_defaults_and_non_matches() {
    let mut ing = annotated_ingress();
    set_annotation(&mut ing, ANNOTATION_STRATEGY, Some("roundRobin"));
    set_annotation(&mut ing, ANNOTATION_DNS_TTL, None);
    set_annotation(&mut ing, ANNOTATION_PRIMARY_GEOTAG, None);
    set_annotation(&mut ing, ANNOTATION_EXPOSED_IPS, None);
    let g = annotated_ingress_gslb(&ing, None).expect("ok").expect("some");
    assert_eq!(g.spec.strategy.dns_ttl_seconds, Some(30));
    assert_eq!(g.spec.strategy.primary_geo_tag, None);
    assert_eq!(g.metadata.annotations, None);

    // No strategy annotation: nothing asked for.
    let mut plain = annotated_ingress();
    set_annotation(&mut plain, ANNOTATION_STRATEGY, None);
    assert_eq!(annotated_ingress_gslb(&plain, None), Ok(None));

    // Owned by a Gslb (embedded mode): not an annotated Ingress.
    let mut owned = annotated_ingress();
    owned.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "k8gb.io/v1beta1".into(),
            kind: "Gslb".into(),
            name: "legacy-app".into(),
            uid: "1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    assert_eq!(annotated_ingress_gslb(&owned, None), Ok(None));
}

#[test]
fn annotated_ingress_errors() {
    let mut ing = annotated_ingress();
    set_annotation(&mut ing, ANNOTATION_PRIMARY_GEOTAG, None);
    let e = annotated_ingress_gslb(&ing, None).expect_err("failover without primary");
    assert_eq!(
        e,
        "Ingress test-gslb/legacy-app: failover strategy requires annotation k8gb.io/primary-geotag"
    );

    let mut ing = annotated_ingress();
    set_annotation(&mut ing, ANNOTATION_DNS_TTL, Some("thirty"));
    let e = annotated_ingress_gslb(&ing, None).expect_err("bad ttl");
    assert!(
        e.contains("can't parse annotation value \"thirty\" to int for key k8gb.io/dns-ttl-seconds"),
        "{e}"
    );

    let mut ing = annotated_ingress();
    ing.metadata.uid = None;
    assert!(
        annotated_ingress_gslb(&ing, None)
            .expect_err("no uid")
            .contains("no uid")
    );
}

#[test]
fn annotated_ingress_updates_existing_gslb_keeping_weight() {
    let ing = annotated_ingress();
    let mut ing_rr = ing.clone();
    set_annotation(&mut ing_rr, ANNOTATION_STRATEGY, Some("roundRobin"));
    let first = annotated_ingress_gslb(&ing_rr, None).expect("ok").expect("some");
    let mut existing = first.clone();
    existing.metadata.resource_version = Some("777".into());
    existing
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("team".into(), "payments".into());
    existing.spec.strategy.weight = Some([("eu".to_string(), 70), ("us".to_string(), 30)].into());
    existing.spec.strategy.dns_ttl_seconds = Some(5);
    existing.spec.service_health_policy = api::ServiceHealthPolicy::All;

    let g = annotated_ingress_gslb(&ing_rr, Some(&existing))
        .expect("ok")
        .expect("some");
    assert_eq!(g.spec.strategy.weight, existing.spec.strategy.weight);
    assert_eq!(g.spec.strategy.dns_ttl_seconds, Some(60), "annotations win");
    assert_eq!(g.spec.service_health_policy, api::ServiceHealthPolicy::All);
    assert_eq!(g.metadata.resource_version.as_deref(), Some("777"));
    let ann = g.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(ann.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        ann.get(ANNOTATION_EXPOSED_IPS).map(String::as_str),
        Some("203.0.113.10,2001:db8::a")
    );
    // The owner reference is replaced, not duplicated.
    assert_eq!(g.metadata.owner_references.as_ref().map(Vec::len), Some(1));

    // Controlled by something else: refused.
    let mut foreign = existing.clone();
    foreign.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Application".into(),
            name: "shop".into(),
            uid: "2".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    let e = annotated_ingress_gslb(&ing_rr, Some(&foreign)).expect_err("foreign controller");
    assert!(e.contains("already controlled by Application shop"), "{e}");
}

// --- Legacy migration (§2.3) ---

#[test]
fn migrate_legacy_embedded_ingress() {
    let s = load("legacy-gslb.json");
    let legacy = s.legacy.clone().expect("legacy Gslb");
    let g = migrate_legacy(&legacy);
    assert_eq!(g.metadata.name.as_deref(), Some("legacy"));
    assert_eq!(g.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(g.metadata.annotations, legacy.metadata.annotations);
    assert_eq!(
        g.metadata.labels, None,
        "migration labels stay on the legacy object"
    );
    assert_eq!(g.metadata.uid, None);
    assert_eq!(g.spec.ingress, None);
    let r = g.spec.resource_ref.as_ref().expect("resourceRef");
    assert_eq!(
        (
            r.api_version.as_deref(),
            r.kind.as_deref(),
            r.name.as_deref(),
            r.namespace.as_deref()
        ),
        (
            Some("networking.k8s.io/v1"),
            Some("Ingress"),
            Some("legacy"),
            Some(NS)
        )
    );
    assert_eq!(g.spec.strategy, legacy.spec.strategy);
    assert_eq!(g.spec.service_health_policy, api::ServiceHealthPolicy::Any);

    // A legacy Gslb that already references a source keeps its reference.
    let mut by_ref = legacy.clone();
    by_ref.spec.ingress = None;
    by_ref.spec.resource_ref = Some(ResourceRef {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some("lb".into()),
        ..ResourceRef::default()
    });
    let g = migrate_legacy(&by_ref);
    assert_eq!(g.spec.resource_ref, by_ref.spec.resource_ref);
}
