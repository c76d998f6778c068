//! Gslbs made from other objects: the legacy annotation-driven Ingress
//! (upstream §5.3, `controllers/handlers.go`) and the legacy
//! `k8gb.absa.oss` Gslb migrated to `k8gb.io` (§2.3).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::DynamicObject;

use super::{ANNOTATION_DNS_TTL, ANNOTATION_EXPOSED_IPS, ANNOTATION_PRIMARY_GEOTAG, ANNOTATION_STRATEGY};
use crate::api::{Gslb, GslbSpec, ResourceRef, ServiceHealthPolicy, Strategy};
use crate::core::strategy::DEFAULT_TTL;

const INGRESS_API_VERSION: &str = "networking.k8s.io/v1";

fn ingress_ref(name: &str, namespace: Option<&str>) -> ResourceRef {
    ResourceRef {
        api_version: Some(INGRESS_API_VERSION.to_string()),
        kind: Some("Ingress".to_string()),
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..ResourceRef::default()
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The Gslb an Ingress annotated with `k8gb.io/strategy` asks for.
///
/// `Ok(None)` when the Ingress has no `k8gb.io/strategy` annotation or is
/// owned by a Gslb. Otherwise the Gslb of the Ingress's name and namespace,
/// built on `existing` (the current Gslb of that name, if any, whose metadata
/// is kept): `spec.resourceRef` → the Ingress by name; the strategy type,
/// `primaryGeoTag` (required for failover) and `dnsTtlSeconds` (an integer,
/// default 30) from the annotations; the existing `weight` and
/// `serviceHealthPolicy` preserved (upstream keeps only `weight`); the
/// Ingress's `k8gb.io/exposed-ip-addresses` copied onto the Gslb; and the
/// Ingress as controller owner, so deleting the Ingress deletes the Gslb.
///
/// Errors are one-line messages for an event on the Ingress: a bad
/// annotation, an Ingress without a uid, or an `existing` Gslb controlled by
/// another object.
pub fn annotated_ingress_gslb(
    ingress: &DynamicObject,
    existing: Option<&Gslb>,
) -> Result<Option<Gslb>, String> {
    let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
    let Some(strategy_type) = annotations.get(ANNOTATION_STRATEGY) else {
        return Ok(None);
    };
    let owners = ingress.metadata.owner_references.as_deref().unwrap_or_default();
    if owners.iter().any(|o| o.kind == "Gslb") {
        return Ok(None);
    }
    let name = ingress.metadata.name.clone().unwrap_or_default();
    let namespace = ingress.metadata.namespace.clone();
    let id = format!("{}/{name}", namespace.as_deref().unwrap_or_default());

    let dns_ttl_seconds = match annotations.get(ANNOTATION_DNS_TTL) {
        None => i64::from(DEFAULT_TTL),
        Some(v) => v.trim().parse::<i64>().map_err(|_| {
            format!("Ingress {id}: can't parse annotation value {v:?} to int for key {ANNOTATION_DNS_TTL}")
        })?,
    };
    let primary_geo_tag = annotations
        .get(ANNOTATION_PRIMARY_GEOTAG)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if strategy_type == "failover" && primary_geo_tag.is_none() {
        return Err(format!(
            "Ingress {id}: failover strategy requires annotation {ANNOTATION_PRIMARY_GEOTAG}"
        ));
    }
    let uid = ingress
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("Ingress {id} has no uid: cannot own a Gslb"))?;

    let mut gslb = existing.cloned().unwrap_or_else(|| Gslb {
        metadata: ObjectMeta::default(),
        spec: GslbSpec {
            ingress: None,
            strategy: Strategy::default(),
            resource_ref: None,
            service_health_policy: ServiceHealthPolicy::Any,
        },
        status: None,
    });
    gslb.metadata.name = Some(name.clone());
    gslb.metadata.namespace = namespace;
    if let Some(ips) = annotations.get(ANNOTATION_EXPOSED_IPS) {
        gslb.metadata
            .annotations
            .get_or_insert_default()
            .insert(ANNOTATION_EXPOSED_IPS.to_string(), ips.clone());
    }
    gslb.spec = GslbSpec {
        ingress: None,
        strategy: Strategy {
            type_: strategy_type.clone(),
            weight: gslb.spec.strategy.weight.take(),
            primary_geo_tag,
            dns_ttl_seconds: Some(dns_ttl_seconds),
            split_brain_threshold_seconds: None,
        },
        resource_ref: Some(ingress_ref(&name, None)),
        service_health_policy: gslb.spec.service_health_policy,
    };

    // controllerutil.SetControllerReference: refuse another controller,
    // replace a previous reference to the same Ingress.
    let owner = OwnerReference {
        api_version: INGRESS_API_VERSION.to_string(),
        kind: "Ingress".to_string(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let same = |o: &OwnerReference| {
        group_of(&o.api_version) == group_of(&owner.api_version)
            && o.kind == owner.kind
            && o.name == owner.name
    };
    let refs = gslb.metadata.owner_references.get_or_insert_default();
    if let Some(other) = refs.iter().find(|o| o.controller == Some(true) && !same(o)) {
        return Err(format!(
            "Gslb {id} is already controlled by {} {}: not taking it over for the annotated Ingress",
            other.kind, other.name
        ));
    }
    refs.retain(|o| !same(o));
    refs.push(owner);
    Ok(Some(gslb))
}

/// The `k8gb.io` Gslb made from a legacy `k8gb.absa.oss` one (§2.3): same
/// name and namespace, annotations cloned, spec copied (policy `Any`). An
/// embedded ingress becomes `resourceRef` → the `networking.k8s.io/v1`
/// Ingress of the same name and namespace (the one the legacy runtime
/// created), and `spec.ingress` is cleared.
pub fn migrate_legacy(legacy: &crate::api::legacy::Gslb) -> Gslb {
    let mut spec: GslbSpec = legacy.spec.clone().into();
    let ref_empty = spec.resource_ref.as_ref().is_none_or(ResourceRef::is_empty);
    let has_ingress = spec.ingress.as_ref().is_some_and(|i| *i != Default::default());
    if ref_empty && has_ingress {
        let name = legacy.metadata.name.as_deref().unwrap_or_default();
        spec.resource_ref = Some(ingress_ref(name, legacy.metadata.namespace.as_deref()));
        spec.ingress = None;
    }
    Gslb {
        metadata: ObjectMeta {
            name: legacy.metadata.name.clone(),
            namespace: legacy.metadata.namespace.clone(),
            annotations: legacy.metadata.annotations.clone(),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}
