//! The Helm chart and the demo, checked offline: the chart is linted and
//! rendered with Helm 4 as a library (`tests/support/chart.py`, PyPI
//! `helm-python-sdk`) for the default values, two regions of the demo and
//! every optional feature; the manifests are validated against the
//! Kubernetes schemas (`kubernetes-validate`, strict), scanned by `checkov`,
//! and their environment is run through `k8gb check-config`. The demo's
//! scripts pass `shellcheck`, its YAML parses and its BIND edge passes
//! `named-checkconf`.
//!
//! Missing tools fail the tests with what to install (`bash scripts/test.sh`
//! installs all of them); nothing is skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

const NAMESPACE: &str = "k8gb";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("chart/k8gb")
}

/// Runs `tests/support/chart.py`; a missing Python module fails with the
/// packages to install.
fn chart_py(args: &[&str]) -> std::process::Output {
    let out = Command::new("python3")
        .arg(root().join("tests/support/chart.py"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): the chart tests need Python 3.10+"));
    if out.status.code() == Some(3) {
        panic!(
            "{} -- the chart tests need the PyPI packages helm-python-sdk and kubernetes-validate: \
             run `pip install helm-python-sdk kubernetes-validate` (or `bash scripts/test.sh`, which installs them)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out
}

/// One rendering of the chart.
struct Render {
    name: &'static str,
    objects: Vec<Value>,
    invalid: Vec<String>,
    lint: Vec<Value>,
    notes: String,
}

impl Render {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.name))
    }

    fn deployment(&self) -> &Value {
        let d = self.all("Deployment");
        assert_eq!(d.len(), 1, "{}: one Deployment", self.name);
        d[0]
    }

    fn container(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]["containers"][0]
    }

    /// The container's environment; the downward-API namespace as "k8gb".
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for e in self.container()["env"].as_array().expect("env") {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match (&e["value"], &e["valueFrom"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::Object(_)) => {
                    assert_eq!(
                        e["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace",
                        "{}: {name}: only POD_NAMESPACE comes from the downward API",
                        self.name
                    );
                    NAMESPACE.to_string()
                }
                _ => panic!("{}: env {name} has no string value: {e}", self.name),
            };
            assert!(
                env.insert(name.clone(), value).is_none(),
                "{}: env {name} is set twice",
                self.name
            );
        }
        env
    }
}

/// The values files and JSON overrides of each rendering.
fn scenario(name: &str) -> (Vec<String>, Vec<String>) {
    let demo = |platform: &str, region: &str, node: &str| {
        (
            vec![
                "kind-configs/values-demo.yaml".to_string(),
                format!("kind-configs/values-{platform}.yaml"),
                format!("kind-configs/values-{region}.yaml"),
            ],
            // what e2e/demo.sh passes with --set: the addresses Docker assigned
            vec![
                json!({"k8gb": {"edgeDNSServers": ["172.18.0.2:53"], "clusterExposedIPs": [node]}})
                    .to_string(),
            ],
        )
    };
    match name {
        "default" => (vec![], vec![]),
        "full" => (vec!["chart/k8gb/ci/full-values.yaml".into()], vec![]),
        "extdns" => (vec!["chart/k8gb/ci/extdns-values.yaml".into()], vec![]),
        "migrated" => (vec!["tests/fixtures/chart/migrated-values.yaml".into()], vec![]),
        "kind-eu" => demo("kind", "eu", "172.18.0.3"),
        "kind-us" => demo("kind", "us", "172.18.0.4"),
        "k3d-eu" => demo("k3d", "eu", "172.18.0.3"),
        "k3d-us" => demo("k3d", "us", "172.18.0.4"),
        other => panic!("no scenario {other}"),
    }
}

const SCENARIOS: [&str; 8] = [
    "default", "full", "extdns", "migrated", "kind-eu", "kind-us", "k3d-eu", "k3d-us",
];

fn render_uncached(name: &'static str) -> Render {
    let (files, sets) = scenario(name);
    let chart = chart_dir();
    let mut args = vec!["render", chart.to_str().unwrap()];
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    for s in &sets {
        args.extend(["--set-json", s.as_str()]);
    }
    let out = chart_py(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: chart.py render printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "{name}: the chart does not lint or render: {:#}\n{}",
        report["errors"],
        String::from_utf8_lossy(&out.stderr)
    );
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut objects: Vec<Value> = report["objects"].as_array().unwrap().clone();
    for o in &mut objects {
        o.as_object_mut().unwrap().remove("__source");
    }
    Render {
        name,
        objects,
        invalid: strings(&report["invalid"]),
        lint: report["lint"].as_array().unwrap().clone(),
        notes: report["notes"].as_str().unwrap_or_default().to_string(),
    }
}

/// Each scenario is rendered once per test process.
fn render(name: &'static str) -> &'static Render {
    static CACHE: OnceLock<BTreeMap<&'static str, OnceLock<Render>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| SCENARIOS.iter().map(|s| (*s, OnceLock::new())).collect());
    cache
        .get(name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
        .get_or_init(|| render_uncached(SCENARIOS.iter().find(|s| **s == name).unwrap()))
}

fn all_renders() -> Vec<&'static Render> {
    SCENARIOS.iter().map(|s| render(s)).collect()
}

#[test]
fn chart_lints_without_warnings_and_renders_every_scenario() {
    for r in all_renders() {
        let serious: Vec<&Value> = r
            .lint
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(0) >= 2)
            .collect();
        assert!(serious.is_empty(), "{}: helm lint --strict: {serious:?}", r.name);
        for kind in [
            "Deployment",
            "Service",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ] {
            assert!(!r.all(kind).is_empty(), "{}: no {kind}", r.name);
        }
        assert!(
            r.notes.contains("kubectl -n k8gb rollout status"),
            "{}: NOTES",
            r.name
        );
        for o in &r.objects {
            let cluster_scoped = matches!(o["kind"].as_str(), Some("ClusterRole" | "ClusterRoleBinding"));
            assert_eq!(
                o["metadata"]["namespace"].as_str(),
                (!cluster_scoped).then_some(NAMESPACE),
                "{}: namespace of {} {}",
                r.name,
                o["kind"],
                o["metadata"]["name"]
            );
        }
    }
    let full = render("full");
    for kind in ["ServiceMonitor", "ConfigMap"] {
        assert_eq!(full.all(kind).len(), 1, "full values: one {kind}");
    }
    assert_eq!(
        full.all("Service").len(),
        2,
        "full values: DNS and metrics Services"
    );
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    for r in all_renders() {
        assert!(
            r.invalid.is_empty(),
            "{}: invalid manifests:\n{}",
            r.name,
            r.invalid.join("\n")
        );
    }
    // the CRDs shipped in crds/ and the demo's own manifests, Gslbs included
    let mut files: Vec<String> = Vec::new();
    for dir in ["chart/k8gb/crds", "e2e/manifests"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p.to_str().unwrap().to_string());
            }
        }
    }
    files.sort();
    let crds = chart_dir().join("crds");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--crds", crds.to_str().unwrap()]);
    let out = chart_py(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["checked"].as_u64().unwrap() >= 10, "validated {report}");
    assert_eq!(report["invalid"], json!([]), "invalid manifests");
}

/// Paths (a.b.0.c) where two JSON values differ.
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(p, q, &format!("{path}.{i}"), out);
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// The environment variables a region's values may change.
const REGION_ENV: [&str; 3] = [
    "CLUSTER_GEO_TAG",
    "EXT_GSLB_CLUSTERS_GEO_TAGS",
    "CLUSTER_EXPOSED_IPS",
];

#[test]
fn regions_render_identically_except_the_region_values() {
    for platform in ["kind", "k3d"] {
        let eu = render(if platform == "kind" { "kind-eu" } else { "k3d-eu" });
        let us = render(if platform == "kind" { "kind-us" } else { "k3d-us" });
        assert_eq!(eu.objects.len(), us.objects.len(), "{platform}: object count");
        for (a, b) in eu.objects.iter().zip(&us.objects) {
            let what = format!("{platform}: {} {}", a["kind"], a["metadata"]["name"]);
            assert_eq!(
                (&a["kind"], &a["metadata"]["name"]),
                (&b["kind"], &b["metadata"]["name"]),
                "{what}: same objects in the same order"
            );
            let mut paths = Vec::new();
            diff(a, b, "", &mut paths);
            for p in paths {
                // only the value of a region variable may differ
                let env_value = p
                    .strip_prefix(".spec.template.spec.containers.0.env.")
                    .and_then(|rest| rest.strip_suffix(".value"))
                    .and_then(|i| i.parse::<usize>().ok());
                let name = env_value
                    .map(|i| a["spec"]["template"]["spec"]["containers"][0]["env"][i]["name"].clone());
                assert!(
                    a["kind"] == "Deployment"
                        && name
                            .as_ref()
                            .and_then(Value::as_str)
                            .is_some_and(|n| REGION_ENV.contains(&n)),
                    "{what}: {p} differs between regions ({} vs {})",
                    pointer(a, &p),
                    pointer(b, &p)
                );
            }
        }
        let (e, u) = (eu.env(), us.env());
        assert_eq!(
            (e["CLUSTER_GEO_TAG"].as_str(), u["CLUSTER_GEO_TAG"].as_str()),
            ("eu", "us")
        );
        assert_eq!(e["CLUSTER_EXPOSED_IPS"], "172.18.0.3");
        assert_eq!(u["CLUSTER_EXPOSED_IPS"], "172.18.0.4");
        assert_eq!(
            e["EXT_GSLB_CLUSTERS_GEO_TAGS"], "eu,us",
            "the whole mesh, the same everywhere"
        );
    }
    // a region's values file holds nothing but region values
    for region in ["eu", "us"] {
        let path = root().join(format!("kind-configs/values-{region}.yaml"));
        let v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut keys = Vec::new();
        leaf_keys(&v, "", &mut keys);
        for k in &keys {
            assert!(
                [
                    "k8gb.clusterGeoTag",
                    "k8gb.extGslbClustersGeoTags",
                    "k8gb.clusterExposedIPs"
                ]
                .contains(&k.as_str()),
                "{}: {k} is not a region value; put it in values-demo.yaml",
                path.display()
            );
        }
    }
}

fn pointer<'a>(v: &'a Value, dotted: &str) -> &'a Value {
    v.pointer(&dotted.replace('.', "/")).unwrap_or(&Value::Null)
}

fn leaf_keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(x, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// (apiGroup, resource, verb) granted by the chart's ClusterRole.
fn grants(r: &Render) -> BTreeSet<(String, String, String)> {
    let roles = r.all("ClusterRole");
    assert_eq!(roles.len(), 1, "{}: one ClusterRole", r.name);
    let mut out = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or_else(|| panic!("{}: rule without {k}: {rule}", r.name))
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        for key in ["resourceNames", "nonResourceURLs"] {
            assert!(rule.get(key).is_none(), "{}: {key} in {rule}", r.name);
        }
        for g in list("apiGroups") {
            for res in list("resources") {
                for v in list("verbs") {
                    for s in [&g, &res, &v] {
                        assert!(!s.contains('*'), "{}: wildcard in {rule}", r.name);
                    }
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn expected_grants(extdns: bool, istio: bool, gateway_api: bool) -> BTreeSet<(String, String, String)> {
    const READ: &[&str] = &["get", "list", "watch"];
    const WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch"];
    const STATUS: &[&str] = &["get", "patch", "update"];
    let mut rules: Vec<(&str, &str, &[&str])> = vec![
        ("k8gb.io", "gslbs", WRITE),
        ("k8gb.io", "gslbs/status", STATUS),
        ("k8gb.io", "gslbs/finalizers", &["update"]),
        ("k8gb.io", "zonedelegations", WRITE),
        ("k8gb.io", "zonedelegations/status", STATUS),
        (
            "k8gb.absa.oss",
            "gslbs",
            &["get", "list", "watch", "update", "patch"],
        ),
        ("k8gb.absa.oss", "gslbs/status", STATUS),
        ("k8gb.absa.oss", "gslbs/finalizers", &["update"]),
        ("networking.k8s.io", "ingresses", WRITE),
        ("", "services", READ),
        ("discovery.k8s.io", "endpointslices", READ),
        ("", "events", &["create", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    if gateway_api {
        for res in [
            "httproutes",
            "grpcroutes",
            "tlsroutes",
            "tcproutes",
            "udproutes",
            "gateways",
        ] {
            rules.push(("gateway.networking.k8s.io", res, READ));
        }
    }
    if istio {
        rules.push(("networking.istio.io", "virtualservices", READ));
        rules.push(("networking.istio.io", "gateways", READ));
    }
    if extdns {
        rules.push((
            "externaldns.k8s.io",
            "dnsendpoints",
            &["get", "list", "watch", "create", "update", "patch", "delete"],
        ));
    }
    let mut out = BTreeSet::new();
    for (g, r, verbs) in rules {
        for v in verbs {
            out.insert((g.to_string(), r.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn rbac_is_least_privilege() {
    for r in all_renders() {
        let got = grants(r);
        let extdns = r.name == "extdns";
        let want = expected_grants(extdns, !extdns, true);
        let extra: Vec<_> = got.difference(&want).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{}: ClusterRole grants more than needed {extra:?} or less {missing:?}",
            r.name
        );
        assert!(
            r.all("Role").is_empty() && r.all("RoleBinding").is_empty(),
            "{}: no namespaced roles",
            r.name
        );
        let binding = r.all("ClusterRoleBinding");
        assert_eq!(binding.len(), 1);
        let role = &r.all("ClusterRole")[0]["metadata"]["name"];
        assert_eq!(
            binding[0]["roleRef"]["name"], *role,
            "{}: binding to the ClusterRole",
            r.name
        );
        let sa = &r.all("ServiceAccount")[0]["metadata"]["name"];
        assert_eq!(
            binding[0]["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]),
            "{}: bound to the ServiceAccount only",
            r.name
        );
        assert_eq!(
            r.deployment()["spec"]["template"]["spec"]["serviceAccountName"],
            *sa
        );
    }
}

#[test]
fn pod_runs_non_root_read_only_without_capabilities() {
    for r in all_renders() {
        let pod = &r.deployment()["spec"]["template"]["spec"];
        let name = r.name;
        for key in ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"] {
            assert!(pod.get(key).is_none_or(|v| v == false), "{name}: {key}");
        }
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}: pod runAsNonRoot");
        assert!(
            psc["runAsUser"].as_i64().unwrap() >= 10000,
            "{name}: pod runs with a high UID"
        );
        assert_eq!(
            psc["seccompProfile"]["type"], "RuntimeDefault",
            "{name}: pod seccomp"
        );
        assert!(pod.get("initContainers").is_none(), "{name}: no init containers");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}: one container");
        let c = &containers[0];
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}: runAsNonRoot");
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}: allowPrivilegeEscalation"
        );
        assert_eq!(sc["privileged"], false, "{name}: privileged");
        assert_eq!(
            sc["capabilities"],
            json!({"drop": ["ALL"]}),
            "{name}: capabilities"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}: seccomp");
        for kind in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(
                    !c["resources"][kind][res].is_null(),
                    "{name}: resources.{kind}.{res}"
                );
            }
        }
        let image = c["image"].as_str().unwrap();
        assert!(
            !image.ends_with(":latest") && image.contains([':', '@']),
            "{name}: image {image}"
        );
        assert_eq!(c["args"], json!(["run"]), "{name}: the container runs `k8gb run`");

        // probes on the admin port, which is METRICS_ADDRESS's
        let env = r.env();
        let metrics_port: i64 = env["METRICS_ADDRESS"]
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(port_of(c, "admin", "TCP"), metrics_port, "{name}: admin port");
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(
                c[probe]["httpGet"],
                json!({"path": path, "port": "admin"}),
                "{name}: {probe}"
            );
        }
        // every volume is a Secret or ConfigMap, mounted read-only
        for v in pod["volumes"].as_array().into_iter().flatten() {
            assert!(
                v.get("secret").is_some() || v.get("configMap").is_some(),
                "{name}: volume {v} is not a Secret or ConfigMap"
            );
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            assert_eq!(m["readOnly"], true, "{name}: mount {m} is not read-only");
        }
    }
}

fn port_of(container: &Value, name: &str, protocol: &str) -> i64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["protocol"] == protocol)
        .unwrap_or_else(|| panic!("no {name}/{protocol} container port"))["containerPort"]
        .as_i64()
        .unwrap()
}

#[test]
fn dns_service_maps_53_and_853_to_the_unprivileged_listeners() {
    for r in all_renders() {
        let name = r.name;
        let c = r.container();
        let env = r.env();
        let svc = r.one("Service", "k8gb-dns");
        let ports = svc["spec"]["ports"].as_array().unwrap();
        let dns_port: i64 = env["DNS_ADDRESS"].rsplit(':').next().unwrap().parse().unwrap();
        assert!(dns_port >= 1024, "{name}: DNS listens on an unprivileged port");
        for (port_name, protocol) in [("dns-udp", "UDP"), ("dns-tcp", "TCP")] {
            let p = ports.iter().find(|p| p["name"] == port_name).unwrap();
            assert_eq!(
                (p["port"].as_i64(), p["protocol"].as_str()),
                (Some(53), Some(protocol)),
                "{name}"
            );
            assert_eq!(p["targetPort"], port_name, "{name}");
            assert_eq!(
                port_of(c, port_name, protocol),
                dns_port,
                "{name}: {port_name} is DNS_ADDRESS"
            );
        }
        let dot = ports.iter().find(|p| p["name"] == "dot");
        match env.get("DOT_ADDRESS") {
            Some(addr) => {
                let dot = dot.unwrap_or_else(|| panic!("{name}: DoT on but not in the Service"));
                assert_eq!(
                    (dot["port"].as_i64(), dot["protocol"].as_str()),
                    (Some(853), Some("TCP"))
                );
                let listen: i64 = addr.rsplit(':').next().unwrap().parse().unwrap();
                assert!(listen >= 1024, "{name}: DoT listens on an unprivileged port");
                assert_eq!(port_of(c, "dot", "TCP"), listen, "{name}: dot is DOT_ADDRESS");
            }
            None => assert!(dot.is_none(), "{name}: DoT off but in the Service"),
        }
        assert_eq!(
            svc["spec"]["selector"],
            r.deployment()["spec"]["selector"]["matchLabels"],
            "{name}: the Service selects the pods"
        );
        assert_eq!(
            env["COREDNS_SERVICE_TYPE"],
            svc["spec"]["type"].as_str().unwrap(),
            "{name}"
        );
    }
    // kind: peers query each other's NodePort
    for name in ["kind-eu", "kind-us"] {
        let r = render(name);
        let svc = r.one("Service", "k8gb-dns");
        assert_eq!(svc["spec"]["type"], "NodePort");
        let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert_eq!(
            r.env()["PEER_DNS_PORT"],
            node_port.to_string(),
            "{name}: peers use the NodePort"
        );
        assert_eq!(node_port, 30053, "{name}: the port kind-configs/kind-*.yaml map");
    }
    // the metrics Service and the ServiceMonitor point at the admin port
    let full = render("full");
    let metrics = full.one("Service", "k8gb-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "admin");
    let sm = &full.all("ServiceMonitor")[0];
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        metrics["spec"]["ports"][0]["name"]
    );
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            metrics["metadata"]["labels"][k], *v,
            "the ServiceMonitor selects the metrics Service"
        );
    }
}

/// Where the environment names a file, the file is in a mounted volume; the
/// test creates it under a temporary root (real certificates, a valid TSIG
/// secret) and runs `k8gb check-config` with that environment.
#[test]
fn the_binary_accepts_the_rendered_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::make_certs(tmp.path(), "mesh");
    for r in all_renders() {
        let name = r.name;
        let files_root = tmp.path().join(name);
        let c = r.container();
        let mounts: Vec<(String, String)> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let volumes = &r.deployment()["spec"]["template"]["spec"]["volumes"];
        let mut env = r.env();
        for (var, path) in env.iter_mut() {
            if !(var.ends_with("_FILE") || var == "GEOIP_DATABASE") {
                continue;
            }
            let (dir, volume) = mounts
                .iter()
                .find(|(dir, _)| path.starts_with(&format!("{dir}/")))
                .unwrap_or_else(|| panic!("{name}: {var}={path} is not in a mounted volume"));
            let file = &path[dir.len() + 1..];
            let v = volumes
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == volume.as_str())
                .unwrap();
            if let Some(items) = v["secret"]["items"].as_array() {
                assert!(
                    items.iter().any(|i| i["path"] == file),
                    "{name}: {var}: {file} is not an item of volume {volume}"
                );
            } else if v.get("secret").is_some() {
                assert!(
                    ["tls.crt", "tls.key", "ca.crt"].contains(&file),
                    "{name}: {var}: {file} is not a key of a kubernetes.io/tls Secret"
                );
            }
            let local = files_root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            let content = if var.contains("TSIG") {
                "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==\n".to_string()
            } else if file == "ca.crt" {
                std::fs::read_to_string(&ca).unwrap()
            } else if file == "tls.crt" {
                std::fs::read_to_string(&cert).unwrap()
            } else if file == "tls.key" {
                std::fs::read_to_string(&key).unwrap()
            } else {
                String::new()
            };
            std::fs::write(&local, content).unwrap();
            *path = local.to_str().unwrap().to_string();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_k8gb"))
            .arg("check-config")
            .env_clear()
            .envs(&env)
            .output()
            .expect("run k8gb check-config");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("config OK"),
            "{name}: k8gb check-config rejects the chart's environment: {}{stdout}\nenv: {env:#?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Bad values and the words their rejection must name.
#[test]
fn schema_and_template_checks_reject_bad_values() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "geotag with a space",
            json!({"k8gb": {"clusterGeoTag": "eu west"}}),
            "clusterGeoTag",
        ),
        (
            "geotag with a dot",
            json!({"k8gb": {"clusterGeoTag": "eu.1"}}),
            "clusterGeoTag",
        ),
        (
            "peer geotag list",
            json!({"k8gb": {"extGslbClustersGeoTags": "eu;us"}}),
            "extGslbClustersGeoTags",
        ),
        (
            "unknown top-level key",
            json!({"coredns": {"serviceType": "LoadBalancer"}}),
            "coredns",
        ),
        (
            "unknown k8gb key",
            json!({"k8gb": {"deployCrds": true}}),
            "deployCrds",
        ),
        (
            "misspelt key",
            json!({"k8gb": {"dnsZone": "cloud.example.com"}}),
            "dnsZone",
        ),
        (
            "bad zone name",
            json!({"k8gb": {"dnsZones": [{"parentZone": "example.com", "loadBalancedZone": "cloud..example.com"}]}}),
            "loadBalancedZone",
        ),
        (
            "unknown zone key",
            json!({"k8gb": {"dnsZones": [{"parentZone": "example.com", "loadBalancedZone": "c.example.com", "extraPlugins": []}]}}),
            "extraPlugins",
        ),
        (
            "bad exposed IP",
            json!({"k8gb": {"clusterExposedIPs": ["300.1.1.1"]}}),
            "clusterExposedIPs",
        ),
        (
            "bad edge server",
            json!({"k8gb": {"edgeDNSServers": ["dns server"]}}),
            "edgeDNSServers",
        ),
        (
            "log level upstream has",
            json!({"k8gb": {"log": {"level": "fatal"}}}),
            "level",
        ),
        (
            "negative requeue",
            json!({"k8gb": {"reconcileRequeueSeconds": -1}}),
            "reconcileRequeueSeconds",
        ),
        ("privileged DNS port", json!({"k8gb": {"dnsPort": 53}}), "dnsPort"),
        (
            "root",
            json!({"k8gb": {"securityContext": {"runAsNonRoot": false}}}),
            "runAsNonRoot",
        ),
        (
            "DoT without a certificate",
            json!({"k8gb": {"dot": {"enabled": true}}}),
            "secretName",
        ),
        (
            "DoT peers without a CA",
            json!({"k8gb": {"dot": {"enabled": true, "secretName": "c"}, "peerExchange": {"transport": "dot"}}}),
            "caSecretName",
        ),
        (
            "DoT peers without our DoT listener",
            json!({"k8gb": {"peerExchange": {"transport": "dot", "tls": {"caSecretName": "ca"}}}}),
            "k8gb.dot.enabled",
        ),
        (
            "TSIG without its secret",
            json!({"k8gb": {"peerExchange": {"tsig": {"keyName": "k"}}}}),
            "secretName",
        ),
        (
            "TSIG algorithm",
            json!({"k8gb": {"peerExchange": {"tsig": {"keyName": "k", "secretName": "s", "algorithm": "hmac-md5"}}}}),
            "algorithm",
        ),
        (
            "RFC 2136 without a key",
            json!({"k8gb": {"delegation": {"rfc2136": {"enabled": true}}}}),
            "keyName",
        ),
        (
            "two delegation providers",
            json!({"extdns": {"enabled": true}, "k8gb": {"delegation": {"rfc2136": {"enabled": true, "keyName": "k", "secretName": "s"}}}}),
            "exclude each other",
        ),
        (
            "ExternalDNS settings",
            json!({"extdns": {"enabled": true, "provider": "aws"}}),
            "provider",
        ),
        (
            "extraEnv overriding the chart",
            json!({"k8gb": {"extraEnv": [{"name": "CLUSTER_GEO_TAG", "value": "us"}]}}),
            "is set by the chart",
        ),
        (
            "mount of an unknown volume",
            json!({"k8gb": {"extraVolumeMounts": [{"name": "geoip", "mountPath": "/geoip"}]}}),
            "not a k8gb.extraVolumes entry",
        ),
        (
            "writable extra mount",
            json!({"k8gb": {"extraVolumes": [{"name": "g", "configMap": {"name": "g"}}], "extraVolumeMounts": [{"name": "g", "mountPath": "/g", "readOnly": false}]}}),
            "readOnly",
        ),
        (
            "hostPath volume",
            json!({"k8gb": {"extraVolumes": [{"name": "h", "hostPath": {"path": "/"}}]}}),
            "hostPath",
        ),
        (
            "toleration Exists with a value",
            json!({"k8gb": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}),
            "tolerations",
        ),
        (
            "no RBAC and no ServiceAccount",
            json!({"k8gb": {"deployRbac": false}}),
            "serviceAccountName",
        ),
        (
            "metrics on the DNS port",
            json!({"k8gb": {"metricsAddress": "0.0.0.0:5353"}}),
            "metricsAddress",
        ),
    ];
    let chart = chart_dir();
    for (what, values, needle) in cases {
        let set = values.to_string();
        let out = chart_py(&["expect-fail", chart.to_str().unwrap(), "--set-json", &set]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{what}: the chart accepts {set}");
        assert!(
            text.contains(needle),
            "{what}: the error does not name {needle:?}: {text}"
        );
    }
}

/// An upstream values file is refused, naming every key docs/migration.md
/// says to move or drop; the converted file renders (scenario "migrated").
#[test]
fn upstream_values_are_refused_with_the_keys_to_migrate() {
    let chart = chart_dir();
    let out = chart_py(&[
        "expect-fail",
        chart.to_str().unwrap(),
        "-f",
        "tests/fixtures/chart/upstream-values.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the chart accepts upstream's values file");
    for key in [
        "coredns",
        "infoblox",
        "tracing",
        "deployCrds",
        "installLegacyCrds",
        "extraPlugins",
    ] {
        assert!(text.contains(key), "the error does not name {key}: {text}");
    }
    let migration = std::fs::read_to_string(root().join("docs/migration.md")).unwrap();
    for key in [
        "coredns",
        "infoblox",
        "tracing",
        "deployCrds",
        "installLegacyCrds",
        "extraPlugins",
    ] {
        assert!(
            migration.contains(key),
            "docs/migration.md does not say what to do with {key}"
        );
    }
    let migrated = render("migrated");
    assert_eq!(migrated.env()["COREDNS_SERVICE_TYPE"], "LoadBalancer");
    assert_eq!(migrated.env()["RECONCILE_REQUEUE_SECONDS"], "10");
}

#[test]
fn checkov_finds_nothing_outside_the_reasoned_skip_list() {
    let config = root().join(".checkov.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    // every skipped check carries its reason on the comment lines above it
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- CKV") {
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                ".checkov.yaml: {line} has no reason (a comment line above it)"
            );
        }
    }
    // every rendering as manifest files, one directory per scenario
    let renders = all_renders();
    // (not tempfile's default ".tmp…": checkov skips hidden directories)
    let tmp = tempfile::Builder::new()
        .prefix("k8gb-checkov-")
        .tempdir()
        .unwrap();
    for r in &renders {
        let dir = tmp.path().join(r.name);
        std::fs::create_dir(&dir).unwrap();
        for (i, o) in r.objects.iter().enumerate() {
            let file = dir.join(format!(
                "{i:02}-{}.yaml",
                o["kind"].as_str().unwrap().to_lowercase()
            ));
            std::fs::write(file, serde_yaml_ng::to_string(o).unwrap()).unwrap();
        }
    }
    let out = Command::new("checkov")
        .arg("-d")
        .arg(tmp.path())
        .args(["--framework", "kubernetes", "--skip-download", "--quiet", "-o", "json"])
        .arg("--config-file")
        .arg(&config)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run checkov ({e}): run `pip install checkov` (or `bash scripts/test.sh`, which installs it)")
        });
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} ({} in {})",
                c["check_id"], c["check_name"], c["resource"], c["file_path"]
            )
        })
        .collect();
    assert!(
        summary["failed"] == 0 && failed.is_empty(),
        "checkov failed checks ({summary}):\n{}",
        failed.join("\n")
    );
    // every rendering was scanned: about 15 checks per object at least
    let objects: usize = renders.iter().map(|r| r.objects.len()).sum();
    assert!(
        summary["passed"].as_u64().unwrap_or(0) as usize >= 10 * objects,
        "checkov scanned too little ({objects} objects rendered): {summary}"
    );
    assert!(
        summary["resource_count"].as_u64().unwrap_or(0) as usize >= objects,
        "checkov saw fewer resources than the {objects} rendered: {summary}"
    );
}

#[test]
fn grafana_dashboard_shows_metrics_the_binary_exports() {
    let metrics_rs = std::fs::read_to_string(root().join("src/metrics.rs")).unwrap();
    let exported = registered_families(&metrics_rs);
    assert!(
        exported.len() >= 15,
        "metric names found in src/metrics.rs: {exported:?}"
    );
    let text = std::fs::read_to_string(chart_dir().join("dashboards/k8gb.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            // metric names carry a selector; label names (k8gb_version) do not
            for name in k8gb_names(expr)
                .into_iter()
                .filter(|n| expr.contains(&format!("{n}{{")))
            {
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_string();
                assert!(
                    exported.contains(&family),
                    "the dashboard queries {name}, which k8gb does not export"
                );
                used.insert(family);
            }
        }
    }
    let unused: Vec<_> = exported.difference(&used).collect();
    assert!(unused.is_empty(), "the dashboard shows no panel for {unused:?}");
}

/// The metric families src/metrics.rs registers: the first string after
/// each `registry.register(` and `encode_descriptor(`.
fn registered_families(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for call in ["registry.register(", "encode_descriptor("] {
        for (i, _) in source.match_indices(call) {
            let rest = &source[i + call.len()..];
            let start = rest.find('"').unwrap() + 1;
            let end = start + rest[start..].find('"').unwrap();
            out.insert(rest[start..end].to_string());
        }
    }
    out
}

/// Every `k8gb_…` identifier in a text.
fn k8gb_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("k8gb_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && end > "k8gb_".len() {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn chart_version_is_the_crate_version() {
    let chart: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap()).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    let image = render("default").container()["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        image.ends_with(&format!(":{version}")),
        "default image tag: {image}"
    );
}

/// Tracked-looking files under `dir` (recursively) with one of `exts`.
fn files_under(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn scripts_pass_shellcheck() {
    common::require("shellcheck", "shellcheck");
    let mut scripts: Vec<PathBuf> = Vec::new();
    for dir in ["e2e", "scripts", ".ci", "bench", "kind-configs"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let first = text.lines().next().unwrap_or("");
            if p.is_file() && first.starts_with("#!") && (first.contains("bash") || first.ends_with("/sh")) {
                scripts.push(p);
            }
        }
    }
    scripts.sort();
    assert!(scripts.len() >= 7, "scripts found: {scripts:?}");
    let out = Command::new("shellcheck")
        .args(["-x", "--severity=style"])
        .args(&scripts)
        .current_dir(root())
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in &scripts {
        let text = std::fs::read_to_string(s).unwrap();
        let sourced = s.file_name().unwrap() == "lib.sh";
        assert!(
            sourced || text.contains("set -euo pipefail"),
            "{}: no `set -euo pipefail`",
            s.display()
        );
    }
}

#[test]
fn yaml_and_json_files_parse() {
    let mut count = 0;
    for dir in ["kind-configs", ".github", "docs/examples", "e2e", "chart/k8gb"] {
        for p in files_under(dir, &["yaml", "yml"]) {
            if p.starts_with(chart_dir().join("templates")) {
                continue; // Go templates, checked by rendering
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
            count += 1;
        }
        for p in files_under(dir, &["json"]) {
            serde_json::from_str::<Value>(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            count += 1;
        }
    }
    assert!(count >= 20, "YAML and JSON files checked: {count}");
}

use serde::Deserialize;

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(root().join(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn demo_clusters_have_distinct_ports_and_map_dns() {
    let mut api_ports = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (region, dns_host_port) in [("eu", 5053), ("us", 5054)] {
        let kind = yaml(&format!("kind-configs/kind-{region}.yaml"));
        assert_eq!(kind["kind"], "Cluster");
        assert_eq!(
            kind["name"],
            format!("k8gb-{region}"),
            "e2e/lib.sh names the clusters k8gb-<region>"
        );
        assert!(api_ports.insert(kind["networking"]["apiServerPort"].as_i64().unwrap()));
        let maps = kind["nodes"][0]["extraPortMappings"].as_array().unwrap();
        for protocol in ["UDP", "TCP"] {
            assert!(
                maps.iter().any(|m| m["containerPort"] == 30053
                    && m["hostPort"] == dns_host_port
                    && m["protocol"] == protocol),
                "kind-{region}: DNS {protocol} NodePort 30053 on host port {dns_host_port}"
            );
        }
        for m in maps {
            assert!(host_ports.insert((m["hostPort"].as_i64().unwrap(), m["protocol"].to_string())));
        }
        let k3d = yaml(&format!("kind-configs/k3d-{region}.yaml"));
        assert_eq!(k3d["kind"], "Simple");
        assert_eq!(k3d["metadata"]["name"], format!("k8gb-{region}"));
        assert_eq!(k3d["network"], "k8gb-demo", "e2e/lib.sh's NETWORK");
        assert!(api_ports.insert(k3d["kubeAPI"]["hostPort"].as_str().unwrap().parse().unwrap()));
        let ports: Vec<&str> = k3d["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_str().unwrap())
            .collect();
        for protocol in ["udp", "tcp"] {
            let want = format!("127.0.0.1:{dns_host_port}:53/{protocol}");
            assert!(ports.contains(&want.as_str()), "k3d-{region}: {want}");
        }
    }
    let lib = std::fs::read_to_string(root().join("e2e/lib.sh")).unwrap();
    assert!(
        lib.contains("E2E_DNS_PORT_EU:-5053") && lib.contains("E2E_DNS_PORT_US:-5054"),
        "e2e/lib.sh's dns_port"
    );
}

#[test]
fn demo_edge_is_a_valid_bind_configuration() {
    common::require("named-checkconf", "bind9-utils");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("tsig.key");
    std::fs::write(
        &key,
        "key \"k8gb-edge\" { algorithm hmac-sha256; secret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0\"; };\n",
    )
    .unwrap();
    let conf = std::fs::read_to_string(root().join("kind-configs/edge/named.conf")).unwrap();
    assert!(
        conf.contains("include \"/etc/bind/demo/tsig.key\";"),
        "named.conf includes the generated key"
    );
    assert!(
        conf.contains("grant k8gb-edge zonesub ANY;"),
        "updates only with the key"
    );
    let local = tmp.path().join("named.conf");
    std::fs::write(
        &local,
        conf.replace("/etc/bind/demo/tsig.key", key.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("named-checkconf")
        .arg(&local)
        .output()
        .expect("run named-checkconf");
    assert!(
        out.status.success(),
        "named-checkconf: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new("named-checkzone")
        .args(["example.com"])
        .arg(root().join("kind-configs/edge/example.com.zone"))
        .output()
        .expect("run named-checkzone");
    assert!(
        out.status.success(),
        "named-checkzone: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn justfile_recipes_are_commented_and_the_demo_is_there() {
    let text = std::fs::read_to_string(root().join("Justfile")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut recipes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_recipe = line.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && line.contains(':')
            && !line.contains(":=");
        if is_recipe {
            let name = line.split([' ', ':']).next().unwrap().to_string();
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "Justfile: recipe {name} has no comment line (just --list shows it)"
            );
            recipes.push(name);
        }
    }
    for want in [
        "demo-kind-up",
        "demo-k3d-up",
        "demo-load-image",
        "demo-install",
        "demo-app",
        "demo-failover",
        "e2e",
        "demo-down",
    ] {
        assert!(recipes.iter().any(|r| r == want), "Justfile: no recipe {want}");
    }
}

#[test]
fn image_runs_what_the_chart_expects() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last_from = text.lines().rfind(|l| l.starts_with("FROM ")).unwrap();
    assert!(
        last_from.contains("distroless/static"),
        "the final stage is distroless/static: {last_from}"
    );
    let pod = &render("default").deployment()["spec"]["template"]["spec"];
    let uid = pod["securityContext"]["runAsUser"].as_i64().unwrap();
    let gid = pod["securityContext"]["runAsGroup"].as_i64().unwrap();
    assert!(
        text.contains(&format!("\nUSER {uid}:{gid}\n")),
        "the image's USER is the chart's {uid}:{gid}"
    );
    assert!(
        text.contains("ENTRYPOINT [\"/k8gb\"]"),
        "the chart's args [run] go to /k8gb"
    );
    let env = render("full").env();
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_string();
    let expose = text.lines().find(|l| l.starts_with("EXPOSE ")).unwrap();
    for p in [
        format!("{}/udp", port(&env["DNS_ADDRESS"])),
        format!("{}/tcp", port(&env["DNS_ADDRESS"])),
        format!("{}/tcp", port(&env["DOT_ADDRESS"])),
        format!("{}/tcp", port(&env["METRICS_ADDRESS"])),
    ] {
        assert!(
            expose.split_whitespace().any(|x| x == p),
            "Dockerfile EXPOSE lacks the chart's {p}"
        );
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "*"),
        ".dockerignore admits only what the build needs"
    );
}

#[test]
fn workflows_run_ci_and_sign_and_verify_releases() {
    let ci = yaml(".github/workflows/ci.yml");
    let steps = ci["jobs"]["ci"]["steps"]
        .as_array()
        .expect("ci.yml: jobs.ci.steps");
    assert!(
        steps.iter().any(|s| s["run"] == "bash .ci/run"),
        "ci.yml runs `bash .ci/run`, as developers do"
    );
    let release = yaml(".github/workflows/release.yml");
    assert!(
        release["on"]["push"]["tags"].is_array(),
        "release.yml runs on version tags"
    );
    let text = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    assert!(text.contains("linux/amd64,linux/arm64"), "multi-arch image");
    for (sign, verify) in [
        (
            "cosign sign --yes --recursive",
            "cosign verify --key cosign.pub \"$REF\"",
        ),
        ("cosign attest", "cosign verify-attestation --key cosign.pub"),
        ("cosign sign-blob", "cosign verify-blob --key cosign.pub"),
        ("helm push", "cosign verify --key cosign.pub \"$ref\""),
    ] {
        assert!(
            text.contains(sign) && text.contains(verify),
            "release.yml: {sign} checked by {verify}"
        );
    }
    assert!(
        text.contains("spdx-json") && text.contains("cargo cyclonedx"),
        "release.yml: SBOMs"
    );
}

/// The e2e scripts' assertions (`e2e/lib.sh`) against a real k8gb: a local
/// standalone server stands in for the demo's eu region.
#[test]
fn e2e_helpers_read_real_answers() {
    common::require("dig", "bind9-dnsutils");
    let config = |extra: &str| {
        format!(
            r#"
clusterGeoTag: eu
dnsAddress: 127.0.0.1:0
metricsAddress: 127.0.0.1:0
dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com}}]
gslbs:
  - name: roundrobin
    hosts: [roundrobin.cloud.example.com]
    strategy: {{type: roundRobin, dnsTtlSeconds: 1}}
    targets: [{{address: 10.0.1.2}}, {{address: 10.0.1.1}}{extra}]
  - name: down
    hosts: [down.cloud.example.com]
    strategy: {{type: roundRobin}}
    targets: [{{address: 10.0.2.1, healthy: false}}]
"#
        )
    };
    let server = common::start(&config(""));
    let script = r#"
set -euo pipefail
source e2e/lib.sh
expect_answer eu roundrobin.cloud.example.com 10.0.1.1 10.0.1.2
expect_answer eu localtargets-roundrobin.cloud.example.com 10.0.1.2 10.0.1.1
expect_answer eu down.cloud.example.com
[[ "$(answer_unsorted eu roundrobin.cloud.example.com | wc -l)" == 2 ]]
if (TIMEOUT=1; expect_answer eu roundrobin.cloud.example.com 10.0.1.1) 2>/dev/null; then
  echo "a wrong expectation passed"; exit 1
fi
echo ready-for-change
# the config gains a target while this waits: the wait polls until it shows
expect_answer eu roundrobin.cloud.example.com 10.0.1.1 10.0.1.2 10.0.1.3
echo helpers-ok
"#;
    let mut child = Command::new("bash")
        .args(["-c", script])
        .current_dir(root())
        .env("K8GB_DEMO_PLATFORM", "kind")
        .env("E2E_DNS_HOST", server.dns.ip().to_string())
        .env("E2E_DNS_PORT_EU", server.dns.port().to_string())
        .env("E2E_TIMEOUT", "20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bash");
    // change the config once the script waits for the new target
    let stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        if line == "ready-for-change" {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            server.write_config(&config(", {address: 10.0.1.3}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success() && out.contains("helpers-ok"),
        "e2e/lib.sh helpers: {out}{err}"
    );
    assert!(
        err.contains("eu: roundrobin.cloud.example.com -> 10.0.1.1 10.0.1.2 10.0.1.3"),
        "{err}"
    );
}
