//! `DNSEndpoint` in `externaldns.k8s.io/v1alpha1`: ExternalDNS's CRD source,
//! with the JSON shape of its Go types (every field omitted when empty). We
//! write these for ExternalDNS; the CRD itself belongs to ExternalDNS and is
//! not part of `k8gb crd`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// DNSEndpoint in externaldns.k8s.io/v1alpha1.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "externaldns.k8s.io",
    version = "v1alpha1",
    kind = "DNSEndpoint",
    plural = "dnsendpoints",
    singular = "dnsendpoint",
    namespaced,
    status = "DNSEndpointStatus",
    derive = "PartialEq",
    doc = "DNSEndpoint is a set of DNS records for ExternalDNS to publish"
)]
#[serde(rename_all = "camelCase")]
pub struct DNSEndpointSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// One RRset: a name, a type and its targets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The owner name, without a trailing dot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dns_name: String,
    /// Record data: addresses for A/AAAA, names for NS/CNAME.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// A, AAAA, NS, CNAME, TXT, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub record_type: String,
    /// Distinguishes records of the same name and type (weighted or geo routing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set_identifier: String,
    /// TTL in seconds; 0 or absent: the provider's default.
    #[serde(rename = "recordTTL", default, skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    /// Labels of the endpoint (not of the object).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Provider-specific settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_specific: Vec<ProviderSpecificProperty>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ProviderSpecificProperty {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DNSEndpointStatus {
    /// The generation ExternalDNS last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
