//! The Kubernetes API: `Gslb` in `k8gb.io/v1beta1` and the legacy
//! `k8gb.absa.oss/v1beta1` Gslb, `ZoneDelegation` in `k8gb.io/v1beta1`, all
//! field-for-field compatible with upstream k8gb, plus the CRD manifests
//! generated from these types (`k8gb crd`); and ExternalDNS's `DNSEndpoint`
//! (type only: its CRD belongs to ExternalDNS).
//!
//! Pure data: no client, no I/O.

pub mod dnsendpoint;
pub mod types;
pub mod zonedelegation;

pub use dnsendpoint::{DNSEndpoint, DNSEndpointSpec, DNSEndpointStatus, Endpoint, ProviderSpecificProperty};
pub use types::*;
pub use zonedelegation::{DnsServer, ZoneDelegation, ZoneDelegationSpec, ZoneDelegationStatus};

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// `Gslb` in `k8gb.io/v1beta1`: the canonical API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "k8gb.io",
    version = "v1beta1",
    kind = "Gslb",
    plural = "gslbs",
    singular = "gslb",
    namespaced,
    status = "GslbStatus",
    derive = "PartialEq",
    doc = "Gslb is the Schema for the gslbs API",
    printcolumn = r#"{"name":"strategy","type":"string","jsonPath":".spec.strategy.type"}"#,
    printcolumn = r#"{"name":"geoTag","type":"string","jsonPath":".status.geoTag"}"#,
    printcolumn = r#"{"name":"hosts","type":"string","jsonPath":".status.hosts","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
/// GslbSpec defines the desired state of Gslb.
pub struct GslbSpec {
    /// Embedded Ingress spec, used when resourceRef is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Load balancing strategy.
    pub strategy: Strategy,
    /// Reference to the traffic source (Ingress, Service, route, VirtualService).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ref: Option<ResourceRef>,
    /// How several Services behind one host combine: Any (default) or All.
    #[serde(default)]
    pub service_health_policy: ServiceHealthPolicy,
}

/// The legacy API group, served until users migrate.
pub mod legacy {
    use super::*;

    // `Gslb` in `k8gb.absa.oss/v1beta1`: as k8gb.io minus `serviceHealthPolicy`
    // (the legacy runtime always behaves as `Any`).
    #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "k8gb.absa.oss",
        version = "v1beta1",
        kind = "Gslb",
        plural = "gslbs",
        singular = "gslb",
        namespaced,
        status = "GslbStatus",
        derive = "PartialEq",
        doc = "Gslb is the Schema for the gslbs API",
        printcolumn = r#"{"name":"strategy","type":"string","jsonPath":".spec.strategy.type"}"#,
        printcolumn = r#"{"name":"geoTag","type":"string","jsonPath":".status.geoTag"}"#,
        printcolumn = r#"{"name":"hosts","type":"string","jsonPath":".status.hosts","priority":1}"#
    )]
    #[serde(rename_all = "camelCase")]
    /// GslbSpec defines the desired state of a legacy Gslb.
    pub struct GslbSpec {
        /// Embedded Ingress spec, used when resourceRef is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ingress: Option<IngressSpec>,
        /// Load balancing strategy.
        pub strategy: Strategy,
        /// Reference to the traffic source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resource_ref: Option<ResourceRef>,
    }

    impl From<GslbSpec> for super::GslbSpec {
        /// The k8gb.io view of a legacy spec, as upstream's legacy runtime uses it.
        fn from(s: GslbSpec) -> Self {
            super::GslbSpec {
                ingress: s.ingress,
                strategy: s.strategy,
                resource_ref: s.resource_ref,
                service_health_policy: ServiceHealthPolicy::Any,
            }
        }
    }
}

/// One generated CRD: the file name the chart uses and the YAML.
pub struct CrdManifest {
    pub file_name: &'static str,
    pub yaml: String,
}

/// The CRDs this binary serves, as YAML documents, in a stable order.
pub fn crds() -> Result<Vec<CrdManifest>, serde_yaml_ng::Error> {
    Ok(vec![
        CrdManifest {
            file_name: "k8gb.io_gslbs.yaml",
            yaml: serde_yaml_ng::to_string(&Gslb::crd())?,
        },
        CrdManifest {
            file_name: "k8gb.absa.oss_gslbs.yaml",
            yaml: serde_yaml_ng::to_string(&legacy::Gslb::crd())?,
        },
        CrdManifest {
            file_name: "k8gb.io_zonedelegation.yaml",
            yaml: serde_yaml_ng::to_string(&ZoneDelegation::crd())?,
        },
    ])
}
