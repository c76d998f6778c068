//! Upstream k8gb's lifecycle scenarios on two real control planes (eu, us)
//! with the chart installed and k8gb running with the chart's
//! ServiceAccount and environment, checked with `dig` and kubectl:
//!
//! 1. an embedded `spec.ingress` creates its Ingress (label, owner) and the
//!    status says Healthy / Unhealthy / NotFound per host (upstream's
//!    `embedded-ingress-creation`, `TestK8gbBasicAppExample`);
//! 2. the API server refuses broken Gslbs (CRD schema); what upstream's CRD
//!    accepts too is refused by the controller, in the `Ready` condition;
//! 3. legacy `k8gb.absa.oss` Gslbs (embedded ingress, LoadBalancer Service
//!    with `k8gb.io/hostname`) are served and migrate to `k8gb.io` without
//!    an unanswered moment (`legacy-migration-embedded`,
//!    `legacy-service-annotation`);
//! 4. an Ingress annotated with `k8gb.io/strategy` gets a Gslb, which goes
//!    with the Ingress (`ingress-playground-resourceref`,
//!    `TestK8gbIngressAnnotationFailover`);
//! 5. `kubectl get gslb` shows upstream's printer columns;
//! 6. no 403 with the chart's ClusterRole; with a rule removed the failure
//!    is visible (status condition, log line naming resource and verb), and
//!    putting the rule back heals without a restart.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{Value, json};

use common::product::{APPS, Mesh, RELEASE, Region, WITHIN, app_yaml, scale};

const EU_TARGET: &str = "192.0.2.81";
const US_TARGET: &str = "192.0.2.82";

fn target(r: &Region) -> &'static str {
    if r.tag == "eu" { EU_TARGET } else { US_TARGET }
}

// ---------------------------------------------------------------- helpers

/// `kubectl get <args> -o json`, parsed; `None` when kubectl fails (not found).
fn get_json(r: &Region, args: &[&str]) -> Option<Value> {
    let out = r
        .cluster
        .kubectl()
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("run kubectl");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits until `kubectl get <args>` returns an object satisfying `ok`; returns it.
fn wait_json(r: &Region, args: &[&str], what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = None;
    let found = common::eventually(WITHIN, || {
        last = get_json(r, args);
        last.as_ref().is_some_and(&ok)
    });
    assert!(
        found,
        "{}: {what}: kubectl get {} is\n{}\nk8gb log tail:\n{}",
        r.tag,
        args.join(" "),
        serde_json::to_string_pretty(&last).unwrap_or_default(),
        r.log_tail(60)
    );
    last.expect("found")
}

/// Waits until `kubectl get <args>` says NotFound.
fn wait_gone(r: &Region, args: &[&str], what: &str) {
    let gone = common::eventually(WITHIN, || get_json(r, args).is_none());
    assert!(gone, "{}: {what} still exists\n{}", r.tag, r.log_tail(40));
}

fn gslb(r: &Region, name: &str) -> Option<Value> {
    get_json(r, &["-n", APPS, "get", "gslbs.k8gb.io", name])
}

/// The Gslb's `Ready` condition.
fn ready(v: &Value) -> Option<&Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

fn ready_is(v: &Value, status: &str, reason: &str) -> bool {
    ready(v).is_some_and(|c| c["status"] == status && c["reason"] == reason)
}

/// The Gslb's status as upstream shows it: the four maps/strings without
/// our `conditions`.
fn upstream_status(v: &Value) -> Value {
    let s = &v["status"];
    json!({
        "serviceHealth": s["serviceHealth"],
        "healthyRecords": sorted_records(&s["healthyRecords"]),
        "geoTag": s["geoTag"],
        "hosts": s["hosts"],
        "loadBalancer": s["loadBalancer"],
        "servers": s["servers"],
    })
}

/// healthyRecords with each host's targets sorted (the answer rotates).
fn sorted_records(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (host, ips) in v.as_object().into_iter().flatten() {
        let mut ips: Vec<String> = ips
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect();
        ips.sort();
        out.insert(host.clone(), json!(ips));
    }
    Value::Object(out)
}

/// Is `host` NXDOMAIN at this region's DNS?
fn nxdomain(r: &Region, host: &str) -> bool {
    common::dig(r.dns(), &["A", host]).contains("status: NXDOMAIN")
}

fn wait_nxdomain(r: &Region, host: &str) {
    let ok = common::eventually(WITHIN, || nxdomain(r, host));
    assert!(
        ok,
        "{}: {host} is not NXDOMAIN:\n{}\nk8gb log tail:\n{}",
        r.tag,
        common::dig(r.dns(), &["A", host]),
        r.log_tail(60)
    );
}

/// `kubectl apply -f -` that must fail; returns its stderr. The object must
/// not have been stored.
fn apply_refused(r: &Region, name: &str, yaml: &str) -> String {
    let out = r.cluster.apply_output(yaml);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{}: the API server accepted a broken Gslb:\n{yaml}\n{}",
        r.tag,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        gslb(r, name).is_none(),
        "{}: Gslb {name} was stored although apply failed",
        r.tag
    );
    stderr
}

/// The events (events.k8s.io/v1) about `kind`/`name` in the apps'
/// namespace: (type, reason, note).
fn events(r: &Region, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let Some(list) = get_json(r, &["-n", APPS, "get", "events.events.k8s.io"]) else {
        return Vec::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("type"), s("reason"), s("note"))
        })
        .collect()
}

fn wait_event(r: &Region, kind: &str, name: &str, type_: &str, reason: &str) -> String {
    let mut note = None;
    let ok = common::eventually(WITHIN, || {
        note = events(r, kind, name)
            .into_iter()
            .find(|(t, re, _)| t == type_ && re == reason)
            .map(|(_, _, n)| n);
        note.is_some()
    });
    assert!(
        ok,
        "{}: no {type_} event {reason} on {kind} {name}; events: {:?}\n{}",
        r.tag,
        events(r, kind, name),
        r.log_tail(40)
    );
    note.expect("found")
}

fn uid(v: &Value) -> String {
    v["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

/// The k8gb log lines of `r` at WARN or ERROR that contain every one of `needles`.
fn log_lines(r: &Region, needles: &[&str]) -> Vec<String> {
    r.server()
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .cloned()
        .collect()
}

fn wait_log_line(r: &Region, needles: &[&str], within: Duration) -> String {
    let mut found = Vec::new();
    let ok = common::eventually(within, || {
        found = log_lines(r, needles);
        !found.is_empty()
    });
    assert!(
        ok,
        "{}: no k8gb log line with {needles:?}\n{}",
        r.tag,
        r.log_tail(80)
    );
    found.remove(0)
}

// ---------------------------------------------------- 1. embedded Ingress

const ROUNDROBIN: &str = "roundrobin.cloud.example.com";
const UNHEALTHY: &str = "unhealthy.cloud.example.com";
const NOTFOUND: &str = "notfound.cloud.example.com";

fn rule(host: &str, service: &str) -> String {
    format!(
        "      - host: {host}\n        http:\n          paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}]\n"
    )
}

/// Upstream's basic app: three hosts, one per health (`roundrobin` has
/// ready endpoints, `unhealthy` a Service scaled to 0, `notfound` no
/// Service at all).
fn embedded_ingress_and_statuses(mesh: &Mesh) {
    let spec = format!(
        "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {{name: embedded, namespace: {APPS}}}\nspec:\n  ingress:\n    rules:\n{}{}{}  strategy: {{type: roundRobin, dnsTtlSeconds: 5}}\n",
        rule(ROUNDROBIN, "frontend"),
        rule(UNHEALTHY, "unhealthy"),
        rule(NOTFOUND, "non-existing-app"),
    );
    for r in &mesh.regions {
        r.apply(&app_yaml("frontend", 1));
        r.apply(&app_yaml("unhealthy", 0));
        r.apply(&spec);
    }
    for r in &mesh.regions {
        let g = gslb(r, "embedded").expect("the Gslb was applied");
        let ing = wait_json(
            r,
            &["-n", APPS, "get", "ingress", "embedded"],
            "the embedded Ingress",
            |_| true,
        );
        assert_eq!(
            ing["metadata"]["labels"]["app.k8gb.io/managed-by"], "gslb",
            "{}: {ing}",
            r.tag
        );
        let owners = ing["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(owners.len(), 1, "{}: {owners:?}", r.tag);
        let o = &owners[0];
        assert_eq!(
            (&o["apiVersion"], &o["kind"], &o["name"], &o["controller"]),
            (
                &json!("k8gb.io/v1beta1"),
                &json!("Gslb"),
                &json!("embedded"),
                &json!(true)
            ),
            "{}: {o}",
            r.tag
        );
        assert_eq!(
            o["uid"], g["metadata"]["uid"],
            "{}: owner is not this Gslb",
            r.tag
        );
        let hosts: Vec<&str> = ing["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["host"].as_str())
            .collect();
        assert_eq!(hosts, [ROUNDROBIN, UNHEALTHY, NOTFOUND], "{}", r.tag);
        assert_eq!(
            ing["spec"]["rules"][2]["http"]["paths"][0]["backend"]["service"]["name"], "non-existing-app",
            "{}: {ing}",
            r.tag
        );
        // the ingress controller's part
        r.cluster.set_ingress_status(APPS, "embedded", &[target(r)]);
    }

    // answers: the healthy host from both regions, the others nothing
    mesh.wait_answers(ROUNDROBIN, &[EU_TARGET, US_TARGET]);
    for r in &mesh.regions {
        wait_nxdomain(r, UNHEALTHY);
        wait_nxdomain(r, NOTFOUND);
    }

    // the status, as upstream writes it, plus our Ready condition
    for r in &mesh.regions {
        let want = json!({
            "serviceHealth": {ROUNDROBIN: "Healthy", UNHEALTHY: "Unhealthy", NOTFOUND: "NotFound"},
            "healthyRecords": {ROUNDROBIN: [EU_TARGET, US_TARGET]},
            "geoTag": r.tag,
            "hosts": format!("{ROUNDROBIN}, {UNHEALTHY}, {NOTFOUND}"),
            "loadBalancer": {"exposedIps": [target(r)]},
            "servers": [
                {"host": ROUNDROBIN, "services": [{"name": "frontend", "namespace": APPS}]},
                {"host": UNHEALTHY, "services": [{"name": "unhealthy", "namespace": APPS}]},
                {"host": NOTFOUND, "services": [{"name": "non-existing-app", "namespace": APPS}]},
            ],
        });
        let g = wait_json(
            r,
            &["-n", APPS, "get", "gslbs.k8gb.io", "embedded"],
            "upstream's status fields",
            |g| upstream_status(g) == want,
        );
        let c = ready(&g).expect("a Ready condition");
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("True"), &json!("Served")),
            "{}: {c}",
            r.tag
        );
        assert_eq!(
            c["observedGeneration"], g["metadata"]["generation"],
            "{}: {c}",
            r.tag
        );
        assert!(
            c["message"].as_str().is_some_and(|m| m.contains("3 host(s)")),
            "{}: {c}",
            r.tag
        );
    }

    // the unhealthy app scaled up in eu: Healthy there, answered by both
    let eu = mesh.region("eu");
    scale(eu, "unhealthy", 1);
    wait_json(
        eu,
        &["-n", APPS, "get", "gslbs.k8gb.io", "embedded"],
        "unhealthy turned Healthy",
        |g| g["status"]["serviceHealth"][UNHEALTHY] == "Healthy",
    );
    mesh.wait_answers(UNHEALTHY, &[EU_TARGET]);
    scale(eu, "unhealthy", 0);
    wait_json(
        eu,
        &["-n", APPS, "get", "gslbs.k8gb.io", "embedded"],
        "unhealthy turned Unhealthy again",
        |g| {
            g["status"]["serviceHealth"][UNHEALTHY] == "Unhealthy"
                && g["status"]["healthyRecords"].get(UNHEALTHY).is_none()
        },
    );
    for r in &mesh.regions {
        wait_nxdomain(r, UNHEALTHY);
    }
}

// ------------------------------------------------ 2. broken specs refused

fn gslb_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {{name: {name}, namespace: {APPS}}}\nspec:\n{spec}"
    )
}

const REF: &str = "  resourceRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: embedded}\n";

fn broken_specs_refused(mesh: &Mesh) {
    let eu = mesh.region("eu");
    // (name, spec, what the API server's message must say)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("no-strategy", REF.to_owned(), vec!["spec.strategy", "Required value"]),
        (
            "no-type",
            format!("{REF}  strategy: {{dnsTtlSeconds: 5}}\n"),
            vec!["spec.strategy.type", "Required value"],
        ),
        (
            "ttl-string",
            format!("{REF}  strategy: {{type: roundRobin, dnsTtlSeconds: \"30s\"}}\n"),
            vec!["spec.strategy.dnsTtlSeconds", "must be of type integer"],
        ),
        (
            "ttl-float",
            format!("{REF}  strategy: {{type: roundRobin, dnsTtlSeconds: 2.5}}\n"),
            vec!["spec.strategy.dnsTtlSeconds", "must be of type integer"],
        ),
        (
            "type-number",
            format!("{REF}  strategy: {{type: 7}}\n"),
            vec!["spec.strategy.type", "must be of type string"],
        ),
        (
            "weight-string",
            format!("{REF}  strategy: {{type: roundRobin, weight: {{eu: heavy}}}}\n"),
            vec!["spec.strategy.weight.eu", "must be of type integer"],
        ),
        (
            "bad-policy",
            format!("{REF}  serviceHealthPolicy: Most\n  strategy: {{type: roundRobin}}\n"),
            vec!["spec.serviceHealthPolicy", "Unsupported value", "\"Any\"", "\"All\""],
        ),
        (
            // upstream's broken-gslb: `https` instead of `http`
            "https-key",
            "  ingress:\n    rules:\n      - host: broken.cloud.example.com\n        https:\n          paths: [{path: /, pathType: Prefix, backend: {service: {name: frontend, port: {number: 80}}}}]\n  strategy: {type: roundRobin}\n".to_owned(),
            vec!["spec.ingress.rules[0].https"],
        ),
        (
            // upstream's other broken-gslb: a rule without `http`
            "no-http",
            "  ingress:\n    rules:\n      - host: broken.cloud.example.com\n  strategy: {type: roundRobin}\n".to_owned(),
            vec!["spec.ingress.rules[0].http", "Required value"],
        ),
        (
            "no-paths",
            "  ingress:\n    rules:\n      - host: broken.cloud.example.com\n        http: {}\n  strategy: {type: roundRobin}\n".to_owned(),
            vec!["spec.ingress.rules[0].http.paths", "Required value"],
        ),
        (
            "no-path-type",
            "  ingress:\n    rules:\n      - host: broken.cloud.example.com\n        http:\n          paths: [{path: /, backend: {service: {name: frontend}}}]\n  strategy: {type: roundRobin}\n".to_owned(),
            vec!["spec.ingress.rules[0].http.paths[0].pathType", "Required value"],
        ),
        (
            "no-backend-name",
            "  ingress:\n    rules:\n      - host: broken.cloud.example.com\n        http:\n          paths: [{path: /, pathType: Prefix, backend: {service: {port: {number: 80}}}}]\n  strategy: {type: roundRobin}\n".to_owned(),
            vec!["spec.ingress.rules[0].http.paths[0].backend.service.name", "Required value"],
        ),
        (
            "no-operator",
            "  resourceRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, matchExpressions: [{key: app}]}\n  strategy: {type: roundRobin}\n".to_owned(),
            vec!["spec.resourceRef.matchExpressions[0].operator", "Required value"],
        ),
        (
            "unknown-field",
            format!("{REF}  strategy: {{type: roundRobin, ttl: 5}}\n"),
            vec!["spec.strategy.ttl", "unknown field"],
        ),
    ];
    for (name, spec, needles) in &cases {
        let err = apply_refused(eu, name, &gslb_yaml(name, spec));
        for n in needles {
            assert!(
                err.contains(n),
                "{name}: the API server's refusal does not say {n:?}:\n{err}"
            );
        }
    }

    // Upstream's CRD accepts these too (no enum, no minimum: its operator
    // validates them, log and counter only). Ours refuses them in the
    // controller: Ready=False InvalidStrategy naming the field, a Warning
    // event, and nothing answered.
    let controller_refused = [
        (
            "bad-type",
            "badtype",
            "{type: weightRoundRobin}",
            "spec.strategy: type",
        ),
        (
            "negative-ttl",
            "negative",
            "{type: roundRobin, dnsTtlSeconds: -5}",
            "spec.strategy: dnsTtlSeconds",
        ),
        (
            "no-primary",
            "noprimary",
            "{type: failover}",
            "spec.strategy: primaryGeoTag",
        ),
        (
            "weight-failover",
            "weightfailover",
            "{type: failover, primaryGeoTag: eu, weight: {eu: 5, us: 5}}",
            "spec.strategy: weight",
        ),
        (
            "weight-range",
            "weightrange",
            "{type: roundRobin, weight: {eu: 5000}}",
            "spec.strategy: weight.eu",
        ),
    ];
    for (name, app, strategy, field) in controller_refused {
        eu.apply(&app_yaml(app, 1));
        let host = format!("{app}.cloud.example.com");
        eu.apply(&gslb_yaml(
            name,
            &format!(
                "  ingress:\n    rules:\n{}  strategy: {strategy}\n",
                rule(&host, app)
            ),
        ));
        let g = wait_json(
            eu,
            &["-n", APPS, "get", "gslbs.k8gb.io", name],
            "Ready=False InvalidStrategy",
            |g| ready_is(g, "False", "InvalidStrategy"),
        );
        let msg = ready(&g).unwrap()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(msg.starts_with(field), "{name}: {msg:?} does not name {field}");
        let note = wait_event(eu, "Gslb", name, "Warning", "InvalidStrategy");
        assert!(note.starts_with(field), "{name}: event {note:?}");
        // not served: no Ingress made, no answer
        assert!(
            get_json(eu, &["-n", APPS, "get", "ingress", name]).is_none(),
            "{name}: an Ingress was made for a refused Gslb"
        );
        assert!(nxdomain(eu, &host), "{name}: {host} is answered");
        eu.kubectl_ok(&["-n", APPS, "delete", "gslbs.k8gb.io", name]);
    }
}

// -------------------------------------------------------- 3. legacy paths

const LEGACY_HOST: &str = "legacy.cloud.example.com";
const LB_HOST: &str = "lb.cloud.example.com";

fn legacy(r: &Region, name: &str) -> Option<Value> {
    get_json(r, &["-n", APPS, "get", "gslbs.k8gb.absa.oss", name])
}

fn legacy_migration(mesh: &Mesh) {
    for r in &mesh.regions {
        let crd = get_json(r, &["get", "crd", "gslbs.k8gb.absa.oss"]);
        assert!(
            crd.is_some(),
            "{}: the chart's crds/ did not install the legacy CRD",
            r.tag
        );
    }
    for r in &mesh.regions {
        r.apply(&app_yaml("legacy", 1));
        r.apply(&format!(
            "apiVersion: k8gb.absa.oss/v1beta1\nkind: Gslb\nmetadata: {{name: legacy, namespace: {APPS}}}\nspec:\n  ingress:\n    rules:\n{}  strategy: {{type: roundRobin, dnsTtlSeconds: 5}}\n",
            rule(LEGACY_HOST, "legacy")
        ));
        // a LoadBalancer Service source: the host from `k8gb.io/hostname`
        r.apply(&format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: legacy-lb, namespace: {APPS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: legacy-lb}}}}
  template:
    metadata: {{labels: {{app: legacy-lb}}}}
    spec:
      containers: [{{name: app, image: "registry.invalid/legacy-lb:1", ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: legacy-lb, namespace: {APPS}}}
spec:
  type: LoadBalancer
  selector: {{app: legacy-lb}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: k8gb.absa.oss/v1beta1
kind: Gslb
metadata:
  name: legacy-lb
  namespace: {APPS}
  annotations: {{k8gb.io/hostname: {LB_HOST}}}
spec:
  resourceRef: {{apiVersion: v1, kind: Service, name: legacy-lb}}
  strategy: {{type: roundRobin, dnsTtlSeconds: 5}}
"#
        ));
        r.cluster.set_service_lb_status(APPS, "legacy-lb", &[target(r)]);
    }
    // the legacy runtime: the Ingress owned by the legacy Gslb, answers, status
    for r in &mesh.regions {
        let old = legacy(r, "legacy").expect("legacy Gslb applied");
        let ing = wait_json(
            r,
            &["-n", APPS, "get", "ingress", "legacy"],
            "the legacy Gslb's Ingress",
            |_| true,
        );
        let o = &ing["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&o["apiVersion"], &o["kind"], &o["uid"]),
            (
                &json!("k8gb.absa.oss/v1beta1"),
                &json!("Gslb"),
                &old["metadata"]["uid"]
            ),
            "{}: {ing}",
            r.tag
        );
        assert_eq!(ing["metadata"]["labels"]["app.k8gb.io/managed-by"], "gslb");
        r.cluster.set_ingress_status(APPS, "legacy", &[target(r)]);
    }
    mesh.wait_answers(LEGACY_HOST, &[EU_TARGET, US_TARGET]);
    mesh.wait_answers(LB_HOST, &[EU_TARGET, US_TARGET]);
    for r in &mesh.regions {
        for name in ["legacy", "legacy-lb"] {
            wait_json(
                r,
                &["-n", APPS, "get", "gslbs.k8gb.absa.oss", name],
                "the legacy status",
                |g| ready_is(g, "True", "Served") && g["status"]["geoTag"] == r.tag.as_str(),
            );
            let note = wait_event(r, "Gslb", name, "Warning", "LegacyDeprecated");
            assert!(note.contains("k8gb.io/migration-requested=true"), "{note}");
        }
        let g = legacy(r, "legacy-lb").unwrap();
        assert_eq!(g["status"]["serviceHealth"][LB_HOST], "Healthy", "{}: {g}", r.tag);
    }

    for r in &mesh.regions {
        assert_row(r, "gslbs.k8gb.absa.oss", "legacy", "roundRobin", LEGACY_HOST);
        assert_row(r, "gslbs.k8gb.absa.oss", "legacy-lb", "roundRobin", LB_HOST);
    }

    // migration requested; every answer meanwhile is the full set
    let legacy_uids: BTreeMap<(String, &str), String> = mesh
        .regions
        .iter()
        .flat_map(|r| {
            ["legacy", "legacy-lb"].map(|n| ((r.tag.clone(), n), uid(&legacy(r, n).expect("legacy Gslb"))))
        })
        .collect();
    for r in &mesh.regions {
        for name in ["legacy", "legacy-lb"] {
            r.kubectl_ok(&[
                "-n",
                APPS,
                "label",
                "gslbs.k8gb.absa.oss",
                name,
                "k8gb.io/migration-requested=true",
            ]);
        }
    }
    let migrated = |r: &Region, name: &str| {
        let (Some(old), Some(new)) = (legacy(r, name), gslb(r, name)) else {
            return false;
        };
        old["metadata"]["labels"]["k8gb.io/migrated-to-k8gb-io"] == "true"
            && ready_is(&old, "False", "Migrated")
            && ready_is(&new, "True", "Served")
    };
    let mut wrong = Vec::new();
    let done = common::eventually(WITHIN, || {
        for r in &mesh.regions {
            for host in [LEGACY_HOST, LB_HOST] {
                let a = r.answers(host);
                if a != [EU_TARGET, US_TARGET] {
                    wrong.push(format!("{}: {host} answered {a:?}", r.tag));
                }
            }
        }
        mesh.regions
            .iter()
            .all(|r| migrated(r, "legacy") && migrated(r, "legacy-lb"))
    });
    assert!(done, "migration not finished\n{}", mesh.region("eu").log_tail(60));
    assert!(
        wrong.is_empty(),
        "answers changed during the migration: {wrong:?}"
    );

    for r in &mesh.regions {
        // the embedded ingress became a resourceRef to the same Ingress
        let g = gslb(r, "legacy").unwrap();
        assert_eq!(
            g["spec"]["resourceRef"],
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "legacy", "namespace": APPS}),
            "{}: {g}",
            r.tag
        );
        assert!(
            g["spec"].get("ingress").is_none_or(Value::is_null),
            "{}: {g}",
            r.tag
        );
        assert_eq!(
            g["spec"]["strategy"],
            json!({"type": "roundRobin", "dnsTtlSeconds": 5})
        );
        assert!(
            g["metadata"]["labels"]
                .get("k8gb.io/migration-requested")
                .is_none(),
            "{}: {g}",
            r.tag
        );
        // the LoadBalancer one keeps its hostname annotation and Service ref
        let lb = gslb(r, "legacy-lb").unwrap();
        assert_eq!(
            lb["metadata"]["annotations"]["k8gb.io/hostname"], LB_HOST,
            "{}: {lb}",
            r.tag
        );
        assert_eq!(
            lb["spec"]["resourceRef"],
            json!({"apiVersion": "v1", "kind": "Service", "name": "legacy-lb"})
        );
        assert_eq!(
            lb["status"]["serviceHealth"][LB_HOST], "Healthy",
            "{}: {lb}",
            r.tag
        );
        assert_eq!(
            sorted_records(&lb["status"]["healthyRecords"]),
            json!({LB_HOST: [EU_TARGET, US_TARGET]})
        );
        // the legacy objects: finalizer, label, events; the Ingress detached
        for name in ["legacy", "legacy-lb"] {
            let old = legacy(r, name).unwrap();
            let fins = old["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                fins.contains(&json!("k8gb.io/legacy-migration-protection")),
                "{}: {old}",
                r.tag
            );
            wait_event(r, "Gslb", name, "Normal", "LegacyMigrated");
        }
        let legacy_uid = &legacy_uids[&(r.tag.clone(), "legacy")];
        wait_json(
            r,
            &["-n", APPS, "get", "ingress", "legacy"],
            "the Ingress detached from the legacy Gslb",
            |i| {
                !i["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["uid"] == legacy_uid.as_str())
            },
        );
    }

    // deleting the legacy objects keeps the Ingress and the answers
    for r in &mesh.regions {
        r.kubectl_ok(&[
            "-n",
            APPS,
            "delete",
            "gslbs.k8gb.absa.oss",
            "legacy",
            "legacy-lb",
            "--timeout=30s",
        ]);
    }
    for r in &mesh.regions {
        wait_gone(
            r,
            &["-n", APPS, "get", "gslbs.k8gb.absa.oss", "legacy"],
            "the legacy Gslb",
        );
        wait_gone(
            r,
            &["-n", APPS, "get", "gslbs.k8gb.absa.oss", "legacy-lb"],
            "the legacy LB Gslb",
        );
    }
    // the garbage collector had its chance: the Ingress has no owner left to follow
    for r in &mesh.regions {
        assert!(
            get_json(r, &["-n", APPS, "get", "ingress", "legacy"]).is_some(),
            "{}: deleting the migrated legacy Gslb deleted its Ingress",
            r.tag
        );
        assert!(gslb(r, "legacy").is_some() && gslb(r, "legacy-lb").is_some());
    }
    mesh.wait_answers(LEGACY_HOST, &[EU_TARGET, US_TARGET]);
    mesh.wait_answers(LB_HOST, &[EU_TARGET, US_TARGET]);
}

// ---------------------------------------------------- 4. annotated Ingress

const SHOP_HOST: &str = "shop.cloud.example.com";

fn shop_ip(r: &Region) -> &'static str {
    if r.tag == "eu" {
        "198.51.100.81"
    } else {
        "198.51.100.82"
    }
}

fn annotated_ingress_yaml(name: &str, host: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {APPS}
  annotations: {{{annotations}}}
spec:
  rules:
{}"#,
        rule(host, name)
            .replace("      - ", "    - ")
            .replace("\n        ", "\n      ")
    )
}

fn annotated_ingress(mesh: &Mesh) {
    for r in &mesh.regions {
        r.apply(&app_yaml("shop", 1));
        r.apply(&annotated_ingress_yaml(
            "shop",
            SHOP_HOST,
            &format!(
                "k8gb.io/strategy: failover, k8gb.io/primary-geotag: eu, k8gb.io/dns-ttl-seconds: \"5\", k8gb.io/exposed-ip-addresses: \"{}\"",
                shop_ip(r)
            ),
        ));
    }
    // failover without a primary: no Gslb, an event on the Ingress
    let eu = mesh.region("eu");
    eu.apply(&app_yaml("noprimary", 1));
    eu.apply(&annotated_ingress_yaml(
        "noprimary",
        "noprimary.cloud.example.com",
        "k8gb.io/strategy: failover",
    ));

    for r in &mesh.regions {
        let ing = get_json(r, &["-n", APPS, "get", "ingress", "shop"]).expect("Ingress applied");
        let g = wait_json(
            r,
            &["-n", APPS, "get", "gslbs.k8gb.io", "shop"],
            "the Gslb made from the annotations",
            |g| ready_is(g, "True", "Served"),
        );
        assert_eq!(
            g["spec"]["resourceRef"],
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "shop"}),
            "{}: {g}",
            r.tag
        );
        assert_eq!(
            g["spec"]["strategy"],
            json!({"type": "failover", "primaryGeoTag": "eu", "dnsTtlSeconds": 5}),
            "{}: {g}",
            r.tag
        );
        assert_eq!(
            g["metadata"]["annotations"]["k8gb.io/exposed-ip-addresses"],
            shop_ip(r)
        );
        let owners = g["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(owners.len(), 1, "{}: {owners:?}", r.tag);
        assert_eq!(
            (
                &owners[0]["kind"],
                &owners[0]["name"],
                &owners[0]["uid"],
                &owners[0]["controller"]
            ),
            (
                &json!("Ingress"),
                &json!("shop"),
                &ing["metadata"]["uid"],
                &json!(true)
            ),
            "{}",
            r.tag
        );
        assert_eq!(
            g["status"]["loadBalancer"]["exposedIps"],
            json!([shop_ip(r)]),
            "{}: the annotation's address is the exposed one",
            r.tag
        );
    }
    // failover, primary eu: everyone answers eu, with the annotation's TTL
    mesh.wait_answers(SHOP_HOST, &["198.51.100.81"]);
    for r in &mesh.regions {
        let out = common::dig(r.dns(), &["+noall", "+answer", "A", SHOP_HOST]);
        let ttl: Vec<u32> = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        assert!(
            !ttl.is_empty() && ttl.iter().all(|t| *t <= 5),
            "{}: TTL not from k8gb.io/dns-ttl-seconds: {out}",
            r.tag
        );
    }
    let note = wait_event(eu, "Ingress", "noprimary", "Warning", "AnnotationError");
    assert!(note.contains("k8gb.io/primary-geotag"), "{note}");
    assert!(
        gslb(eu, "noprimary").is_none(),
        "a failover Gslb without primary was made"
    );
    assert!(nxdomain(eu, "noprimary.cloud.example.com"));

    // the Ingress goes in eu: its Gslb goes (garbage collector, ownerReference),
    // eu stops answering and us, the secondary, answers itself
    eu.kubectl_ok(&["-n", APPS, "delete", "ingress", "shop"]);
    wait_gone(
        eu,
        &["-n", APPS, "get", "gslbs.k8gb.io", "shop"],
        "the annotated Ingress's Gslb",
    );
    wait_nxdomain(eu, SHOP_HOST);
    mesh.region("us").wait_answers(SHOP_HOST, &["198.51.100.82"]);
    let us = mesh.region("us");
    us.kubectl_ok(&["-n", APPS, "delete", "ingress", "shop"]);
    wait_gone(
        us,
        &["-n", APPS, "get", "gslbs.k8gb.io", "shop"],
        "the annotated Ingress's Gslb",
    );
    for r in &mesh.regions {
        wait_nxdomain(r, SHOP_HOST);
    }
    eu.kubectl_ok(&["-n", APPS, "delete", "ingress", "noprimary"]);
}

// ---------------------------------------------------- 5. printer columns

/// `kubectl get <args>` as a table: the header and, per row, the cells
/// keyed by header (cut at the header's column offsets, so cells with
/// spaces, like the hosts, stay whole).
fn table(r: &Region, args: &[&str]) -> (Vec<String>, BTreeMap<String, BTreeMap<String, String>>) {
    let text = r.kubectl_ok(args);
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut prev = ' ';
    for (i, c) in head.char_indices() {
        if c != ' ' && prev == ' ' {
            starts.push(i);
        }
        prev = c;
    }
    let header: Vec<String> = head.split_whitespace().map(str::to_owned).collect();
    let mut rows = BTreeMap::new();
    for line in lines {
        let cells: BTreeMap<String, String> = header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let from = starts[i].min(line.len());
                let to = starts.get(i + 1).copied().unwrap_or(line.len()).min(line.len());
                (h.clone(), line[from..to].trim().to_owned())
            })
            .collect();
        rows.insert(cells["NAME"].clone(), cells);
    }
    (header, rows)
}

/// The row of `name` must show `strategy` and this region's geotag (and,
/// `-o wide`, `hosts`). The columns are exactly the CRD's (no AGE: the API
/// server adds none to declared printer columns, upstream's CRD declares none).
fn assert_row(r: &Region, resource: &str, name: &str, strategy: &str, hosts: &str) {
    let (header, rows) = table(r, &["-n", APPS, "get", resource]);
    assert_eq!(header, ["NAME", "STRATEGY", "GEOTAG"], "{}: {resource}", r.tag);
    let row = &rows[name];
    assert_eq!(
        (row["STRATEGY"].as_str(), row["GEOTAG"].as_str()),
        (strategy, r.tag.as_str()),
        "{}: {resource} {name}: {row:?}",
        r.tag
    );
    let (header, rows) = table(r, &["-n", APPS, "get", resource, name, "-o", "wide"]);
    assert_eq!(
        header,
        ["NAME", "STRATEGY", "GEOTAG", "HOSTS"],
        "{}: {resource} -o wide",
        r.tag
    );
    let row = &rows[name];
    assert_eq!(
        (
            row["STRATEGY"].as_str(),
            row["GEOTAG"].as_str(),
            row["HOSTS"].as_str()
        ),
        (strategy, r.tag.as_str(), hosts),
        "{}: {resource} {name} -o wide: {row:?}",
        r.tag
    );
}

fn printer_columns(mesh: &Mesh) {
    // the CRDs declare upstream's columns (upstream: api/v1beta1io/gslb_types.go)
    let upstream = json!([
        {"jsonPath": ".spec.strategy.type", "name": "strategy", "type": "string"},
        {"jsonPath": ".status.geoTag", "name": "geoTag", "type": "string"},
        {"jsonPath": ".status.hosts", "name": "hosts", "priority": 1, "type": "string"},
    ]);
    let eu = mesh.region("eu");
    for crd in ["gslbs.k8gb.io", "gslbs.k8gb.absa.oss"] {
        let c = get_json(eu, &["get", "crd", crd]).expect("CRD installed");
        assert_eq!(
            c["spec"]["versions"][0]["additionalPrinterColumns"], upstream,
            "{crd}"
        );
        assert!(
            c["spec"]["names"].get("shortNames").is_none(),
            "{crd}: upstream has no short name"
        );
    }
    // `gslbs.k8gb.io`, not `gslb`: with the legacy CRD installed, kubectl
    // resolves the bare name to k8gb.absa.oss (same priority, sorts first),
    // for upstream's CRDs as for ours
    for r in &mesh.regions {
        let all = format!("{ROUNDROBIN}, {UNHEALTHY}, {NOTFOUND}");
        assert_row(r, "gslbs.k8gb.io", "embedded", "roundRobin", &all);
        assert_row(r, "gslbs.k8gb.io", "legacy", "roundRobin", LEGACY_HOST);
        assert_row(r, "gslbs.k8gb.io", "legacy-lb", "roundRobin", LB_HOST);
    }
}

// ------------------------------------------------------------------ 6. RBAC

/// Removes the chart ClusterRole's rule for `resource` (group `group`);
/// returns the rule, to be put back with [`add_rule`].
fn remove_rule(r: &Region, group: &str, resource: &str) -> Value {
    let role = get_json(r, &["get", "clusterrole", RELEASE]).expect("the chart's ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    let (i, rule) = rules
        .iter()
        .enumerate()
        .find(|(_, x)| x["apiGroups"] == json!([group]) && x["resources"] == json!([resource]))
        .unwrap_or_else(|| panic!("no rule for {resource} in {role}"));
    let patch = json!([
        {"op": "test", "path": format!("/rules/{i}"), "value": rule},
        {"op": "remove", "path": format!("/rules/{i}")},
    ]);
    r.kubectl_ok(&[
        "patch",
        "clusterrole",
        RELEASE,
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
    rule.clone()
}

fn add_rule(r: &Region, rule: &Value) {
    let patch = json!([{"op": "add", "path": "/rules/-", "value": rule}]);
    r.kubectl_ok(&[
        "patch",
        "clusterrole",
        RELEASE,
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
}

fn rbac(mesh: &mut Mesh) {
    let forbidden = mesh.forbidden_lines();
    assert!(
        forbidden.is_empty(),
        "403s in the k8gb logs with the chart's ClusterRole:\n{}",
        forbidden.join("\n")
    );

    // EndpointSlices not readable: health cannot be known. The log names
    // the resource and the verb, the Gslb's Ready condition says why its
    // hosts count as Unhealthy, and eu's targets leave the answers.
    let slice_rule = remove_rule(mesh.region("eu"), "discovery.k8s.io", "endpointslices");
    mesh.region_mut("eu").restart_k8gb();
    let eu = mesh.region("eu");
    let line = wait_log_line(eu, &["endpointslices", "list"], WITHIN);
    assert!(
        line.contains("discovery.k8s.io") && line.to_ascii_lowercase().contains("forbidden"),
        "the log line does not name the group or the refusal: {line}"
    );
    let g = wait_json(
        eu,
        &["-n", APPS, "get", "gslbs.k8gb.io", "embedded"],
        "Ready=False naming the missing permission",
        |g| {
            ready(g).is_some_and(|c| {
                c["status"] == "False"
                    && c["reason"] == "Forbidden"
                    && c["message"].as_str().is_some_and(|m| {
                        m.contains("list endpointslices.discovery.k8s.io")
                            && m.contains(r#"cannot list resource "endpointslices""#)
                    })
            })
        },
    );
    assert_eq!(g["status"]["serviceHealth"][ROUNDROBIN], "Unhealthy", "{g}");
    let reason = ready(&g).unwrap()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_event(eu, "Gslb", "embedded", "Warning", &reason);
    mesh.wait_answers(ROUNDROBIN, &[US_TARGET]);

    // the rule back: within the rediscovery period (a minute) without a restart
    add_rule(mesh.region("eu"), &slice_rule);
    let eu = mesh.region("eu");
    let healed = common::eventually(Duration::from_secs(90), || {
        gslb(eu, "embedded").is_some_and(|g| {
            ready_is(&g, "True", "Served") && g["status"]["serviceHealth"][ROUNDROBIN] == "Healthy"
        })
    });
    assert!(healed, "not healed after the rule came back\n{}", eu.log_tail(60));
    mesh.wait_answers(ROUNDROBIN, &[EU_TARGET, US_TARGET]);

    // gslbs/status not writable: DNS keeps working, the log names the
    // resource and the verb, and the status catches up once allowed
    let status_rule = remove_rule(mesh.region("eu"), "k8gb.io", "gslbs/status");
    mesh.region_mut("eu").restart_k8gb();
    let eu = mesh.region("eu");
    eu.apply(&app_yaml("late", 1));
    eu.apply(&gslb_yaml(
        "late",
        &format!(
            "  ingress:\n    rules:\n{}  strategy: {{type: roundRobin, dnsTtlSeconds: 5}}\n",
            rule("late.cloud.example.com", "late")
        ),
    ));
    wait_json(
        eu,
        &["-n", APPS, "get", "ingress", "late"],
        "the late Ingress",
        |_| true,
    );
    eu.cluster.set_ingress_status(APPS, "late", &[EU_TARGET]);
    eu.wait_answers("late.cloud.example.com", &[EU_TARGET]);
    let line = wait_log_line(eu, &["gslbs/status", "patch"], WITHIN);
    assert!(line.contains("forbidden"), "{line}");
    assert!(
        gslb(eu, "late").is_some_and(|g| g.get("status").is_none_or(Value::is_null)),
        "a status was written without the permission"
    );
    add_rule(eu, &status_rule);
    wait_json(
        eu,
        &["-n", APPS, "get", "gslbs.k8gb.io", "late"],
        "the status written once permitted",
        |g| {
            ready_is(g, "True", "Served")
                && g["status"]["serviceHealth"]["late.cloud.example.com"] == "Healthy"
        },
    );
}

#[test]
fn gslb_lifecycle_on_real_control_planes() {
    common::require("dig", "bind9-dnsutils");
    let mut mesh = Mesh::start(&["eu", "us"], Ipv4Addr::new(127, 0, 0, 81), 5393);
    embedded_ingress_and_statuses(&mesh);
    broken_specs_refused(&mesh);
    legacy_migration(&mesh);
    annotated_ingress(&mesh);
    printer_columns(&mesh);
    rbac(&mut mesh);
}
