//! `k8gb crd` prints valid CustomResourceDefinitions, and the chart's copies
//! are exactly what it prints (regenerate with `just crds`).

use std::path::Path;
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

fn k8gb_crd(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_k8gb"))
        .arg("crd")
        .args(args)
        .output()
        .expect("run k8gb crd");
    assert!(
        out.status.success(),
        "k8gb crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn parse_all(yaml: &str) -> Vec<CustomResourceDefinition> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| CustomResourceDefinition::deserialize(doc).expect("a CustomResourceDefinition"))
        .collect()
}

#[test]
fn crd_output_is_a_valid_crd_and_matches_the_chart() {
    let out = k8gb_crd(&[]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let crds = parse_all(&text);
    assert_eq!(crds.len(), 3);

    let names: Vec<&str> = crds
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["gslbs.k8gb.io", "gslbs.k8gb.absa.oss", "zonedelegations.k8gb.io"]
    );
    for crd in &crds[..2] {
        assert_eq!(crd.spec.names.kind, "Gslb");
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1beta1");
        assert!(v.served && v.storage);
        assert!(
            v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "status subresource"
        );
        let cols: Vec<(&str, &str, Option<i32>)> = v
            .additional_printer_columns
            .as_ref()
            .expect("printer columns")
            .iter()
            .map(|c| (c.name.as_str(), c.json_path.as_str(), c.priority))
            .collect();
        assert_eq!(
            cols,
            [
                ("strategy", ".spec.strategy.type", None),
                ("geoTag", ".status.geoTag", None),
                ("hosts", ".status.hosts", Some(1))
            ]
        );
        let schema = serde_json::to_value(&v.schema).expect("schema json");
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["strategy"]));
        assert_eq!(
            spec["properties"]["strategy"]["required"],
            serde_json::json!(["type"])
        );
        assert_eq!(
            spec["properties"]["resourceRef"]["x-kubernetes-map-type"],
            "atomic"
        );
        let rules = &spec["properties"]["ingress"]["properties"]["rules"]["items"];
        assert_eq!(
            rules["required"],
            serde_json::json!(["http"]),
            "rules without http are rejected"
        );
        let has_policy = spec["properties"].get("serviceHealthPolicy").is_some();
        assert_eq!(
            has_policy,
            crd.spec.group == "k8gb.io",
            "serviceHealthPolicy only in k8gb.io"
        );
    }
    let policy = &serde_json::to_value(&crds[0].spec.versions[0].schema).expect("json")["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["serviceHealthPolicy"];
    assert_eq!(policy["default"], "Any");
    assert_eq!(policy["enum"], serde_json::json!(["Any", "All"]));
    zone_delegation(&crds[2]);

    // the chart's copies are the same bytes as --out-dir writes
    let dir = tempfile::tempdir().expect("tempdir");
    k8gb_crd(&["--out-dir", dir.path().to_str().expect("utf-8 path")]);
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/k8gb/crds");
    let mut concatenated = String::new();
    for file in [
        "k8gb.io_gslbs.yaml",
        "k8gb.absa.oss_gslbs.yaml",
        "k8gb.io_zonedelegation.yaml",
    ] {
        let fresh = std::fs::read_to_string(dir.path().join(file)).expect("generated file");
        let copy = std::fs::read_to_string(chart.join(file)).unwrap_or_default();
        assert!(
            fresh == copy,
            "chart/k8gb/crds/{file} differs from `k8gb crd` output: run `just crds` and commit"
        );
        concatenated.push_str("---\n");
        concatenated.push_str(&fresh);
    }
    assert_eq!(concatenated, text, "stdout and --out-dir agree");
}

/// ZoneDelegation as upstream's CRD: cluster-scoped, `zd`, status
/// subresource, the printer columns and the two CEL rules.
fn zone_delegation(crd: &CustomResourceDefinition) {
    assert_eq!(crd.spec.group, "k8gb.io");
    assert_eq!(crd.spec.names.kind, "ZoneDelegation");
    assert_eq!(crd.spec.names.short_names, Some(vec!["zd".to_string()]));
    assert_eq!(crd.spec.scope, "Cluster");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1beta1");
    assert!(v.served && v.storage);
    assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    let cols: Vec<(&str, &str, &str)> = v
        .additional_printer_columns
        .as_ref()
        .expect("printer columns")
        .iter()
        .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        cols,
        [
            ("LoadBalancedZone", "string", ".spec.loadBalancedZone"),
            ("ParentZone", "string", ".spec.parentZone"),
            ("NegTTL", "integer", ".spec.dnsZoneNegTTL")
        ]
    );
    let schema = serde_json::to_value(&v.schema).expect("schema json");
    let props = &schema["openAPIV3Schema"]["properties"];
    let spec = &props["spec"];
    assert_eq!(
        spec["required"],
        serde_json::json!(["dnsZoneNegTTL", "loadBalancedZone", "parentZone"])
    );
    assert_eq!(spec["properties"]["doFinalize"]["default"], false);
    assert_eq!(
        spec["x-kubernetes-validations"],
        serde_json::json!([
            {"rule": "self.loadBalancedZone != self.parentZone", "message": "loadBalancedZone must not equal parentZone"},
            {"rule": "self.loadBalancedZone.endsWith('.' + self.parentZone)", "message": "loadBalancedZone must be subdomain"}
        ])
    );
    let server = &props["status"]["properties"]["dnsServers"]["items"];
    assert_eq!(server["required"], serde_json::json!(["address", "name"]));
    assert_eq!(
        props["status"]["properties"]["conditions"]["x-kubernetes-list-type"],
        "map"
    );
}
