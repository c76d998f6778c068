//! `ZoneDelegation` in `k8gb.io/v1beta1`: one per load-balanced zone,
//! cluster-scoped, field-for-field compatible with upstream (its CEL rules,
//! printer columns and short name `zd`), plus our `status.conditions`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// The condition type written on every ZoneDelegation we keep.
pub const DELEGATED: &str = "Delegated";

// ZoneDelegation in k8gb.io/v1beta1.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "k8gb.io",
    version = "v1beta1",
    kind = "ZoneDelegation",
    plural = "zonedelegations",
    singular = "zonedelegation",
    shortname = "zd",
    status = "ZoneDelegationStatus",
    derive = "PartialEq",
    doc = "ZoneDelegation is the Schema for the zonedelegations API",
    printcolumn = r#"{"name":"LoadBalancedZone","type":"string","jsonPath":".spec.loadBalancedZone"}"#,
    printcolumn = r#"{"name":"ParentZone","type":"string","jsonPath":".spec.parentZone"}"#,
    printcolumn = r#"{"name":"NegTTL","type":"integer","jsonPath":".spec.dnsZoneNegTTL"}"#
)]
#[x_kube(
    validation = Rule::new("self.loadBalancedZone != self.parentZone").message("loadBalancedZone must not equal parentZone"),
    validation = Rule::new("self.loadBalancedZone.endsWith('.' + self.parentZone)").message("loadBalancedZone must be subdomain")
)]
#[serde(rename_all = "camelCase")]
/// ZoneDelegationSpec defines the desired state of ZoneDelegation.
pub struct ZoneDelegationSpec {
    /// The DNS zone served by k8gb, e.g. cloud.example.com.
    pub load_balanced_zone: String,
    /// The edge zone that delegates the load-balanced zone, e.g. example.com.
    pub parent_zone: String,
    /// Negative-caching TTL of the zone in seconds.
    #[serde(rename = "dnsZoneNegTTL")]
    pub dns_zone_neg_ttl: i64,
    /// Withdraw the delegation from the edge DNS when this ZoneDelegation is deleted.
    #[serde(default)]
    #[schemars(default = "no")]
    pub do_finalize: bool,
}

fn no() -> bool {
    false
}

/// ZoneDelegationStatus: the zone's authoritative servers and whether the
/// edge delegates to this cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneDelegationStatus {
    /// Every NS name with a known address: this cluster's and each live peer's,
    /// sorted by name, then address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<DnsServer>,
    /// `Delegated`: whether the edge delegation is current, and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One authoritative server of the zone.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
pub struct DnsServer {
    /// NS name of the server (FQDN).
    pub name: String,
    /// Address of the server (IPv4 or IPv6).
    pub address: String,
}
