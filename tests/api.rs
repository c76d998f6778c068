//! Upstream-shaped Gslb manifests deserialize unchanged into our API types,
//! survive a round trip, and their strategies validate.

use std::path::{Path, PathBuf};

use k8gb::api::{self, HealthStatus, ServiceHealthPolicy};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gslb");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "fixtures missing in {}", dir.display());
    files
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).expect("read fixture");
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn api_version(path: &Path) -> String {
    let v: serde_yaml_ng::Value = load(path);
    v["apiVersion"].as_str().expect("apiVersion").to_string()
}

#[test]
fn every_fixture_deserializes_round_trips_and_validates() {
    for path in fixtures() {
        match api_version(&path).as_str() {
            "k8gb.io/v1beta1" => {
                let g: api::Gslb = load(&path);
                let again: api::Gslb = serde_json::from_value(serde_json::to_value(&g).expect("serialize"))
                    .expect("deserialize");
                assert_eq!(g, again, "{}", path.display());
                g.spec
                    .strategy
                    .validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            "k8gb.absa.oss/v1beta1" => {
                let g: api::legacy::Gslb = load(&path);
                let again: api::legacy::Gslb =
                    serde_json::from_value(serde_json::to_value(&g).expect("serialize"))
                        .expect("deserialize");
                assert_eq!(g, again, "{}", path.display());
                let view: api::GslbSpec = g.spec.into();
                assert_eq!(view.service_health_policy, ServiceHealthPolicy::Any);
                view.strategy.validate().expect("legacy strategy");
            }
            other => panic!("{}: unexpected apiVersion {other}", path.display()),
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gslb")
        .join(name)
}

#[test]
fn readme_example_fields() {
    let g: api::Gslb = load(&fixture("readme-failover.yaml"));
    let r = g.spec.resource_ref.as_ref().expect("resourceRef");
    assert_eq!(r.kind.as_deref(), Some("Ingress"));
    assert_eq!(r.name.as_deref(), Some("test-gslb-failover"));
    let s = g.spec.strategy.validate().expect("valid");
    assert_eq!(s.primary.expect("primary").as_str(), "eu-west-1");
    assert_eq!(s.ttl, 30, "omitted dnsTtlSeconds means 30");
    assert_eq!(
        g.spec.service_health_policy,
        ServiceHealthPolicy::Any,
        "CRD default"
    );
}

#[test]
fn embedded_ingress_keeps_upstream_names() {
    let g: api::Gslb = load(&fixture("embedded-roundrobin.yaml"));
    let ing = g.spec.ingress.as_ref().expect("ingress");
    let backend = ing.backend.as_ref().expect("`backend` key");
    assert_eq!(backend.service.as_ref().expect("service").name, "default-backend");
    assert_eq!(ing.rules.len(), 2);
    assert_eq!(ing.rules[0].http.paths[0].path_type, "Prefix");
    assert!(ing.rules[1].http.paths[0].backend.resource.is_some());
    assert_eq!(
        g.spec.strategy.split_brain_threshold_seconds,
        Some(300),
        "accepted, ignored"
    );
    let json = serde_json::to_value(&g.spec).expect("json");
    assert!(
        json["ingress"]["backend"].is_object(),
        "serialized as `backend`: {json}"
    );
}

#[test]
fn weights_and_selectors() {
    let g: api::Gslb = load(&fixture("weighted.yaml"));
    let s = g.spec.strategy.validate().expect("valid");
    assert_eq!(s.weights.values().copied().collect::<Vec<_>>(), vec![50, 30, 20]);
    assert_eq!(s.ttl, 5);
    let g: api::Gslb = load(&fixture("geoip-matchexpressions.yaml"));
    let exprs = g
        .spec
        .resource_ref
        .expect("ref")
        .match_expressions
        .expect("exprs");
    assert_eq!(
        exprs[0].values.as_deref(),
        Some(&["geoip".to_string(), "geo".to_string()][..])
    );
    assert_eq!(exprs[1].operator, "Exists");
    let g: api::Gslb = load(&fixture("httproute-all.yaml"));
    assert_eq!(g.spec.service_health_policy, ServiceHealthPolicy::All);
}

#[test]
fn status_as_upstream_writes_it() {
    let g: api::Gslb = load(&fixture("with-status.yaml"));
    let st = g.status.expect("status");
    assert_eq!(st.geo_tag, "eu");
    assert_eq!(
        st.service_health["unhealthy.cloud.example.com"],
        HealthStatus::Unhealthy
    );
    assert_eq!(
        st.service_health["notfound.cloud.example.com"],
        HealthStatus::NotFound
    );
    assert_eq!(st.healthy_records["roundrobin.cloud.example.com"].len(), 2);
    assert_eq!(st.load_balancer.exposed_ips, ["172.18.0.2"]);
    assert_eq!(st.servers[0].services[0].name, "frontend-podinfo");
    assert!(st.conditions.is_empty());
}

#[test]
fn broken_specs_are_rejected() {
    // as the API server rejects them with upstream's CRD: a rule without http
    let no_http = r#"
apiVersion: k8gb.io/v1beta1
kind: Gslb
metadata: {name: broken}
spec:
  ingress:
    rules:
      - host: broken.cloud.example.com
  strategy: {type: roundRobin}
"#;
    assert!(serde_yaml_ng::from_str::<api::Gslb>(no_http).is_err());
    let no_strategy = "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {name: x}\nspec: {}\n";
    assert!(serde_yaml_ng::from_str::<api::Gslb>(no_strategy).is_err());
    let wrong_type = "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {name: x}\nspec: {strategy: {type: roundRobin, dnsTtlSeconds: thirty}}\n";
    assert!(serde_yaml_ng::from_str::<api::Gslb>(wrong_type).is_err());
}
