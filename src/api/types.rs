//! Types shared by both Gslb API groups. Field names and JSON shapes follow
//! upstream's Go types (`api/v1beta1io`), so upstream manifests deserialize
//! unchanged.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::strategy::{Strategy as CoreStrategy, StrategyError, StrategySpec};

/// `spec.strategy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Load balancing strategy type: roundRobin, failover or geoip.
    #[serde(rename = "type")]
    pub type_: String,
    /// Weights per geotag, for weighted round robin (roundRobin only), 0..1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<BTreeMap<String, i64>>,
    /// Primary geotag, required for failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_geo_tag: Option<String>,
    /// TTL of the load-balanced records in seconds; 0 or absent means 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ttl_seconds: Option<i64>,
    /// Deprecated and ignored, as upstream; kept so old manifests still apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain_threshold_seconds: Option<i64>,
}

impl Strategy {
    /// Validates into the core strategy (see `core::strategy`).
    pub fn validate(&self) -> Result<CoreStrategy, StrategyError> {
        CoreStrategy::validate(StrategySpec {
            type_: &self.type_,
            weight: self.weight.as_ref(),
            primary_geo_tag: self.primary_geo_tag.as_deref(),
            dns_ttl_seconds: self.dns_ttl_seconds,
        })
    }
}

/// `spec.ingress`: upstream's copy of `networking.k8s.io/v1` IngressSpec.
/// Note the default backend's JSON name is `backend`, not `defaultBackend`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Name of the IngressClass cluster resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Backend for requests that match no rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<IngressBackend>,
    /// TLS configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
    /// Host rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<IngressRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// A host rule. Unlike core Ingress, `http` is required (as in upstream's CRD).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub http: HttpIngressRuleValue,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressRuleValue {
    pub paths: Vec<HttpIngressPath>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Exact, Prefix or ImplementationSpecific.
    pub path_type: String,
    pub backend: IngressBackend,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressBackend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<IngressServiceBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<TypedLocalObjectReference>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressServiceBackend {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<ServiceBackendPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackendPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    pub kind: String,
    pub name: String,
}

/// `spec.resourceRef`: an ObjectReference and a LabelSelector inline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct ResourceRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

impl ResourceRef {
    /// Upstream treats an all-empty resourceRef as absent (embedded mode).
    pub fn is_empty(&self) -> bool {
        self == &ResourceRef::default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// `spec.serviceHealthPolicy` (k8gb.io only).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceHealthPolicy {
    #[default]
    Any,
    All,
}

impl From<ServiceHealthPolicy> for crate::core::health::Policy {
    fn from(p: ServiceHealthPolicy) -> Self {
        match p {
            ServiceHealthPolicy::Any => crate::core::health::Policy::Any,
            ServiceHealthPolicy::All => crate::core::health::Policy::All,
        }
    }
}

/// `status.serviceHealth` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    NotFound,
}

impl From<crate::core::health::Health> for HealthStatus {
    fn from(h: crate::core::health::Health) -> Self {
        use crate::core::health::Health;
        match h {
            Health::Healthy => HealthStatus::Healthy,
            Health::Unhealthy => HealthStatus::Unhealthy,
            Health::NotFound => HealthStatus::NotFound,
        }
    }
}

/// Gslb status: upstream's fields plus `conditions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GslbStatus {
    /// Health of each host in this cluster.
    #[serde(default)]
    pub service_health: BTreeMap<String, HealthStatus>,
    /// Targets of each host's global answer.
    #[serde(default)]
    pub healthy_records: BTreeMap<String, Vec<String>>,
    /// This cluster's geotag.
    #[serde(default)]
    pub geo_tag: String,
    /// The hosts, joined with ", ".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hosts: String,
    /// The application's exposed addresses.
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
    /// Hosts in a served zone and the Services behind them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Observations of the Gslb's state; `Ready` says whether it is served and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ips: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<NamespacedName>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

/// A status condition with the JSON shape of `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
    /// CamelCase reason for the last transition.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
