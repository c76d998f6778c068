//! Service health from EndpointSlices (upstream §3).

use super::view::{self, parse};
use super::{Lookup, ServiceKey, SourceKind};
use crate::core::health::{Health, Policy, ServiceHealth, combine};

/// Health of one Service: `Missing` if there is no Service object; `Healthy`
/// if an EndpointSlice labelled `kubernetes.io/service-name=<name>` in its
/// namespace has an endpoint with at least one address whose
/// `conditions.ready` is absent or true; else `Unhealthy`. A slice we cannot
/// read counts as having no ready endpoint.
pub fn service_health(lookup: &dyn Lookup, svc: &ServiceKey) -> ServiceHealth {
    match lookup.get(SourceKind::Service, &svc.namespace, &svc.name) {
        Ok(Some(_)) => {}
        Ok(None) | Err(_) => return ServiceHealth::Missing,
    }
    let slices = lookup
        .endpoint_slices(&svc.namespace, &svc.name)
        .unwrap_or_default();
    let ready = slices
        .iter()
        .filter_map(|s| parse::<view::EndpointSlice>(SourceKind::EndpointSlice, s).ok())
        .flat_map(|s| s.endpoints.unwrap_or_default())
        .any(|e| {
            e.addresses.is_some_and(|a| !a.is_empty()) && e.conditions.and_then(|c| c.ready).unwrap_or(true)
        });
    if ready {
        ServiceHealth::Healthy
    } else {
        ServiceHealth::Unhealthy
    }
}

/// Health of a host from the Services behind it, combined by the Gslb's
/// `serviceHealthPolicy` (no Services: `NotFound`).
pub fn host_health(lookup: &dyn Lookup, policy: Policy, services: &[ServiceKey]) -> Health {
    let each: Vec<ServiceHealth> = services.iter().map(|s| service_health(lookup, s)).collect();
    combine(policy, &each)
}
