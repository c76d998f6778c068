//! Upstream k8gb's failover playground on two real control planes (eu, us)
//! with the chart installed and k8gb running with the chart's
//! ServiceAccount and environment: both clusters answer eu; eu's app is
//! scaled to 0; both answer us; scaled back; eu again. For every traffic
//! source upstream's scenarios cover: an embedded Ingress, an Ingress
//! referenced by name and by labels, an Istio VirtualService and a Gateway
//! API HTTPRoute (their CRDs applied from the modules' published YAML).

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::product::{APPS, Mesh, Region, app_yaml, ingress_yaml, scale};

const EU_TARGET: &str = "192.0.2.41";
const US_TARGET: &str = "192.0.2.42";

fn target(r: &Region) -> &'static str {
    if r.tag == "eu" { EU_TARGET } else { US_TARGET }
}

/// eu primary; scale eu's `deployment` to 0 and back, checking every
/// region's answer for `host` at each step.
fn playground(mesh: &Mesh, host: &str, deployment: &str) {
    mesh.wait_answers(host, &[EU_TARGET]);
    scale(mesh.region("eu"), deployment, 0);
    mesh.wait_answers(host, &[US_TARGET]);
    scale(mesh.region("eu"), deployment, 1);
    mesh.wait_answers(host, &[EU_TARGET]);
}

const FAILOVER: &str = "strategy: {type: failover, primaryGeoTag: eu, dnsTtlSeconds: 5}";

fn embedded(mesh: &Mesh) {
    for r in &mesh.regions {
        r.apply(&app_yaml("embedded", 1));
        r.apply(&format!(
            r#"apiVersion: k8gb.io/v1beta1
kind: Gslb
metadata: {{name: embedded, namespace: {APPS}}}
spec:
  ingress:
    rules:
      - host: embedded.cloud.example.com
        http:
          paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: embedded, port: {{number: 80}}}}}}}}]
  {FAILOVER}
"#
        ));
    }
    // k8gb creates the Ingress; the (absent) ingress controller's part:
    for r in &mesh.regions {
        let ok = common::eventually(common::product::WITHIN, || {
            r.cluster
                .kubectl()
                .args(["-n", APPS, "get", "ingress", "embedded"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(
            ok,
            "{}: the embedded Ingress was not created\n{}",
            r.tag,
            r.log_tail(40)
        );
        r.cluster.set_ingress_status(APPS, "embedded", &[target(r)]);
    }
    playground(mesh, "embedded.cloud.example.com", "embedded");
}

fn referenced(mesh: &Mesh, name: &str, by_labels: bool) {
    let host = format!("{name}.cloud.example.com");
    for r in &mesh.regions {
        r.apply(&app_yaml(name, 1));
        r.apply(&ingress_yaml(name, &host, name, &format!("app: {name}")));
        r.cluster.set_ingress_status(APPS, name, &[target(r)]);
        let sel = if by_labels {
            format!("matchLabels: {{app: {name}}}")
        } else {
            format!("name: {name}")
        };
        r.apply(&format!(
            "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {{name: {name}, namespace: {APPS}}}\n\
             spec:\n  resourceRef: {{apiVersion: networking.k8s.io/v1, kind: Ingress, {sel}}}\n  {FAILOVER}\n"
        ));
    }
    playground(mesh, &host, name);
}

fn istio(mesh: &Mesh) {
    // the Istio CRDs were applied before k8gb started
    for r in &mesh.regions {
        r.kubectl_ok(&["create", "namespace", "istio-ingress"]);
        r.apply(&app_yaml("bookinfo", 1));
        r.apply(
            r#"apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-ingress, labels: {istio: ingressgateway}}
spec:
  type: LoadBalancer
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: istio-ingress}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*.cloud.example.com"]}]
"#,
        );
        r.cluster
            .set_service_lb_status("istio-ingress", "istio-ingressgateway", &[target(r)]);
        r.apply(&format!(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo, namespace: {APPS}}}
spec:
  hosts: [bookinfo.cloud.example.com]
  gateways: [istio-ingress/bookinfo-gateway]
  http: [{{route: [{{destination: {{host: bookinfo, port: {{number: 80}}}}}}]}}]
---
apiVersion: k8gb.io/v1beta1
kind: Gslb
metadata: {{name: bookinfo, namespace: {APPS}}}
spec:
  resourceRef: {{apiVersion: networking.istio.io/v1, kind: VirtualService, name: bookinfo}}
  {FAILOVER}
"#
        ));
    }
    playground(mesh, "bookinfo.cloud.example.com", "bookinfo");
}

fn httproute(mesh: &Mesh) {
    // the Gateway API is installed while k8gb runs: it discovers the new
    // kinds (looked for every minute) without a restart
    let crds = common::cluster::k8s_bin().join("crds/gateway-api.yaml");
    for r in &mesh.regions {
        common::product::apply_crds(&r.cluster, &crds);
    }
    for r in &mesh.regions {
        r.kubectl_ok(&["create", "namespace", "gateway-system"]);
        r.apply(&app_yaml("route", 1));
        r.apply(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared-gateway, namespace: gateway-system}
spec:
  gatewayClassName: eg
  listeners: [{name: http, protocol: HTTP, port: 80, allowedRoutes: {namespaces: {from: All}}}]
"#,
        );
        // the gateway controller's part: the Gateway's address
        let patch = format!(
            r#"{{"status":{{"addresses":[{{"type":"IPAddress","value":"{}"}}]}}}}"#,
            target(r)
        );
        r.kubectl_ok(&[
            "-n",
            "gateway-system",
            "patch",
            "gateway.gateway.networking.k8s.io",
            "shared-gateway",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
        r.apply(&format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route, namespace: {APPS}}}
spec:
  hostnames: [route.cloud.example.com]
  parentRefs: [{{name: shared-gateway, namespace: gateway-system, sectionName: http}}]
  rules: [{{backendRefs: [{{name: route, port: 80}}]}}]
---
apiVersion: k8gb.io/v1beta1
kind: Gslb
metadata: {{name: route, namespace: {APPS}}}
spec:
  resourceRef: {{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, name: route}}
  {FAILOVER}
"#
        ));
    }
    let host = "route.cloud.example.com";
    for r in &mesh.regions {
        let ok = common::eventually(Duration::from_secs(90), || r.answers(host) == [EU_TARGET]);
        assert!(
            ok,
            "{}: HTTPRoute not served after the CRDs were added\n{}",
            r.tag,
            r.log_tail(40)
        );
    }
    playground(mesh, host, "route");
}

/// Every object of the chart, the CRDs included, was accepted by the API
/// server (`helm install` succeeded), and every CRD of the chart is
/// established with a structural schema.
fn chart_objects_accepted(mesh: &Mesh) {
    let crds_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/k8gb/crds");
    for r in &mesh.regions {
        let manifest = r.helm(&["get", "manifest", "k8gb", "-n", "k8gb"]);
        assert!(manifest.contains("kind: Deployment"), "{manifest}");
        for f in std::fs::read_dir(&crds_dir).unwrap() {
            let f = f.unwrap().path();
            let text = std::fs::read_to_string(&f).unwrap();
            for doc in text.split("\n---") {
                let Some(name) = doc
                    .lines()
                    .skip_while(|l| !l.starts_with("metadata:"))
                    .find_map(|l| l.trim().strip_prefix("name: "))
                else {
                    continue;
                };
                let conds = r.kubectl_ok(&[
                    "get",
                    "crd",
                    name.trim_matches('"'),
                    "-o",
                    "jsonpath={range .status.conditions[*]}{.type}={.status};{end}",
                ]);
                assert!(conds.contains("Established=True"), "{}: {name}: {conds}", r.tag);
                assert!(
                    !conds.contains("NonStructuralSchema=True"),
                    "{}: {name}: {conds}",
                    r.tag
                );
            }
        }
    }
}

#[test]
fn failover_playground_for_every_source() {
    common::require("dig", "bind9-dnsutils");
    let istio_crds = common::cluster::k8s_bin().join("crds/istio.yaml");
    let mesh = Mesh::start_with(
        &["eu", "us"],
        Ipv4Addr::new(127, 0, 0, 41),
        5391,
        "",
        &[&istio_crds],
    );
    chart_objects_accepted(&mesh);
    embedded(&mesh);
    referenced(&mesh, "byname", false);
    referenced(&mesh, "bylabels", true);
    istio(&mesh);
    httproute(&mesh);
    let forbidden = mesh.forbidden_lines();
    assert!(
        forbidden.is_empty(),
        "403s in the k8gb logs:\n{}",
        forbidden.join("\n")
    );
}
