//! Serde views of the few fields we read from each kind. Every field is
//! optional (absent and `null` read as absent) and unknown fields are
//! ignored; a field of the wrong type is reported with its path.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ResolveError, SourceKind};

/// `namespace/name` of an object, for messages.
pub(super) fn id(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    )
}

pub(super) fn namespace(obj: &DynamicObject) -> &str {
    obj.metadata.namespace.as_deref().unwrap_or_default()
}

pub(super) fn name(obj: &DynamicObject) -> &str {
    obj.metadata.name.as_deref().unwrap_or_default()
}

pub(super) fn labels(obj: &DynamicObject) -> BTreeMap<String, String> {
    obj.metadata.labels.clone().unwrap_or_default()
}

pub(super) fn malformed(kind: SourceKind, obj: &DynamicObject, detail: impl Into<String>) -> ResolveError {
    ResolveError::Malformed {
        kind,
        name: id(obj),
        detail: detail.into(),
    }
}

/// Reads `obj.data` (spec, status, …) as `T`.
pub(super) fn parse<T: DeserializeOwned>(kind: SourceKind, obj: &DynamicObject) -> Result<T, ResolveError> {
    serde_path_to_error::deserialize(&obj.data).map_err(|e| {
        let path = e.path().to_string();
        malformed(kind, obj, format!("{path}: {}", e.into_inner()))
    })
}

/// An object's spec and status.
#[derive(Deserialize, Debug)]
pub(super) struct Doc<S, T> {
    pub spec: Option<S>,
    pub status: Option<T>,
}

// --- status.loadBalancer (Ingress and Service) ---

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct LbStatus {
    pub load_balancer: Option<LbStatusInner>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct LbStatusInner {
    pub ingress: Option<Vec<LbIngress>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct LbIngress {
    pub ip: Option<String>,
    pub hostname: Option<String>,
}

// --- Ingress ---

#[derive(Deserialize, Debug, Default)]
pub(super) struct IngressSpec {
    pub rules: Option<Vec<IngressRule>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IngressRule {
    pub host: Option<String>,
    pub http: Option<IngressHttp>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IngressHttp {
    pub paths: Option<Vec<IngressPath>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IngressPath {
    pub backend: Option<IngressBackend>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IngressBackend {
    pub service: Option<NameRef>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct NameRef {
    pub name: Option<String>,
}

// --- Service ---

#[derive(Deserialize, Debug, Default)]
pub(super) struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

// --- EndpointSlice (no spec: endpoints are top level) ---

#[derive(Deserialize, Debug, Default)]
pub(super) struct EndpointSlice {
    pub endpoints: Option<Vec<Endpoint>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct Endpoint {
    pub addresses: Option<Vec<String>>,
    pub conditions: Option<EndpointConditions>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct EndpointConditions {
    pub ready: Option<bool>,
}

// --- Gateway API routes and Gateway ---

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteSpec {
    pub hostnames: Option<Vec<String>>,
    pub parent_refs: Option<Vec<ObjectRef>>,
    pub rules: Option<Vec<RouteRule>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteRule {
    pub backend_refs: Option<Vec<ObjectRef>>,
}

/// A parentRef or backendRef: the fields we read.
#[derive(Deserialize, Debug, Default)]
pub(super) struct ObjectRef {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct GatewayStatus {
    pub addresses: Option<Vec<GatewayAddress>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct GatewayAddress {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub value: Option<String>,
}

// --- Istio ---

#[derive(Deserialize, Debug, Default)]
pub(super) struct VirtualServiceSpec {
    pub hosts: Option<Vec<String>>,
    pub gateways: Option<Vec<String>>,
    pub http: Option<Vec<IstioRoutes>>,
    pub tls: Option<Vec<IstioRoutes>>,
    pub tcp: Option<Vec<IstioRoutes>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IstioRoutes {
    pub route: Option<Vec<IstioRoute>>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IstioRoute {
    pub destination: Option<IstioDestination>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IstioDestination {
    pub host: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
pub(super) struct IstioGatewaySpec {
    pub selector: Option<BTreeMap<String, String>>,
}
