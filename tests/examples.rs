//! The manifests in `docs/examples/` stay true: every document parses (each
//! Gslb into our API types, every other object as a kind traffic sources
//! read), and each example's Gslb resolves, against the other documents, to
//! the hosts its `# Hosts:` header line promises.

use std::path::{Path, PathBuf};

use k8gb::api::{self, Gslb, IngressSpec};
use k8gb::controller::sources::{
    ANNOTATION_STRATEGY, MemLookup, SourceKind, annotated_ingress_gslb, migrate_legacy, resolve,
};
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_json::{Value, json};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("docs/examples")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "examples missing in {}", dir.display());
    files
}

/// The `# Hosts: a, b` line of an example.
fn promised_hosts(path: &Path, text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# Hosts:"))
        .unwrap_or_else(|| panic!("{}: no '# Hosts:' line", path.display()));
    line.split(',').map(|h| h.trim().to_string()).collect()
}

fn documents(path: &Path, text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let yaml =
                serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The Ingress k8gb creates from an embedded `spec.ingress` (the default
/// backend's JSON name is `backend` in the Gslb, `defaultBackend` in an Ingress).
fn ingress_from_embedded(name: &str, namespace: &str, spec: &IngressSpec) -> DynamicObject {
    let mut spec = serde_json::to_value(spec).expect("serialize");
    if let Some(backend) = spec.as_object_mut().and_then(|m| m.remove("backend")) {
        spec["defaultBackend"] = backend;
    }
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.k8gb.io/managed-by": "gslb"},
        },
        "spec": spec,
    }))
    .expect("Ingress")
}

#[test]
fn every_example_resolves_to_its_hosts() {
    for path in examples() {
        let text = std::fs::read_to_string(&path).expect("read example");
        let want = promised_hosts(&path, &text);
        let mut lookup = MemLookup::new();
        let mut gslbs: Vec<Gslb> = Vec::new();
        let mut ingresses: Vec<DynamicObject> = Vec::new();
        for doc in documents(&path, &text) {
            let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
            match doc["apiVersion"].as_str().unwrap_or_default() {
                "k8gb.io/v1beta1" => {
                    gslbs.push(serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}", at(&e))))
                }
                "k8gb.absa.oss/v1beta1" => {
                    let legacy: api::legacy::Gslb =
                        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}", at(&e)));
                    // The Ingress the legacy runtime created from the embedded spec.
                    if let Some(spec) = &legacy.spec.ingress {
                        let name = legacy.metadata.name.as_deref().unwrap_or_default();
                        let ns = legacy.metadata.namespace.as_deref().unwrap_or_default();
                        lookup.insert(SourceKind::Ingress, ingress_from_embedded(name, ns, spec));
                    }
                    gslbs.push(migrate_legacy(&legacy));
                }
                _ => {
                    let obj: DynamicObject =
                        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}", at(&e)));
                    if lookup
                        .insert_object(obj.clone())
                        .unwrap_or_else(|e| panic!("{}", at(&e)))
                        == SourceKind::Ingress
                    {
                        ingresses.push(obj);
                    }
                }
            }
        }
        for mut ing in ingresses {
            if ing
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_STRATEGY))
            {
                ing.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
                let gslb = annotated_ingress_gslb(&ing, None)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                    .expect("the annotations ask for a Gslb");
                gslbs.push(gslb);
            }
        }
        assert_eq!(gslbs.len(), 1, "{}: one Gslb per example", path.display());
        let gslb = &gslbs[0];
        gslb.spec
            .strategy
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if gslb.spec.resource_ref.is_none() {
            let spec = gslb.spec.ingress.as_ref().expect("embedded ingress");
            let name = gslb.metadata.name.as_deref().unwrap_or_default();
            let ns = gslb.metadata.namespace.as_deref().unwrap_or_default();
            lookup.insert(SourceKind::Ingress, ingress_from_embedded(name, ns, spec));
        }
        let resolved = resolve(&lookup, gslb).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(resolved.hosts, want, "{}", path.display());
        for (host, services) in &resolved.servers {
            assert!(
                !services.is_empty(),
                "{}: no Service behind {host}",
                path.display()
            );
            assert!(host.ends_with(".cloud.example.com"), "{}: {host}", path.display());
        }
    }
}
