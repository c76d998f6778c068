//! Delegation through ExternalDNS, for cloud edges (Route 53, Cloudflare,
//! Azure, Google, NS1): one `DNSEndpoint` per zone, as upstream's delegation
//! DNSEndpoint (reference §1.4): `k8gb-ns-extdns-<zone dots→dashes>` in
//! `POD_NAMESPACE`, labelled `k8gb.io/dnstype=extdns` (and the legacy
//! `k8gb.absa.oss/dnstype=extdns`), holding the zone's NS RRset (every
//! active cluster's NS name, sorted) and this cluster's glue, all with TTL
//! `NS_RECORD_TTL`. Unlike upstream, IPv6 addresses are published as AAAA
//! glue instead of being dropped.
//!
//! The builder is pure and deterministic; the writer reads the object and
//! writes only when its spec or our labels differ, and never touches any
//! other DNSEndpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::status::{self, DelegationOutcome, Reason, StatusSink};
use crate::api::{DNSEndpoint, DNSEndpointSpec, Endpoint};
use crate::config::{Config, Zone};
use crate::core::names::GeoTag;
use crate::metrics::Metrics;

/// The label ExternalDNS filters on (`--label-filter=k8gb.io/dnstype=extdns`).
pub const DNSTYPE_LABEL: &str = "k8gb.io/dnstype";
/// The same label in upstream's legacy group, written too.
pub const LEGACY_DNSTYPE_LABEL: &str = "k8gb.absa.oss/dnstype";
pub const DNSTYPE_EXTDNS: &str = "extdns";

/// `k8gb-ns-extdns-<loadBalancedZone with dots as dashes>`.
pub fn endpoint_name(zone: &Zone) -> String {
    format!("k8gb-ns-extdns-{}", zone.name.replace('.', "-"))
}

fn labels() -> BTreeMap<String, String> {
    [DNSTYPE_LABEL, LEGACY_DNSTYPE_LABEL]
        .into_iter()
        .map(|k| (k.to_string(), DNSTYPE_EXTDNS.to_string()))
        .collect()
}

/// The DNSEndpoint delegating `zone` to this cluster (with `own_ips` as its
/// glue) and to every live peer: NS → sorted NS names of this cluster and
/// each peer in `live_peers`; this cluster's NS name A → its IPv4
/// addresses and AAAA → its IPv6 addresses, sorted. Equal inputs give equal
/// objects.
pub fn build(cfg: &Config, zone: &Zone, own_ips: &[IpAddr], live_peers: &BTreeSet<GeoTag>) -> DNSEndpoint {
    let mut ns: BTreeSet<String> = peer_ns_names(cfg, zone, live_peers);
    let own = cfg.ns_name(&cfg.geo_tag, zone);
    ns.insert(own.clone());
    endpoint(cfg, zone, ns, Some((&own, own_ips)))
}

/// What a cluster leaves behind when it withdraws while peers remain (as
/// upstream's ExternalDNS finalization): its NS name and glue removed, the
/// peers' NS names kept.
pub fn build_withdrawn(cfg: &Config, zone: &Zone, live_peers: &BTreeSet<GeoTag>) -> DNSEndpoint {
    endpoint(cfg, zone, peer_ns_names(cfg, zone, live_peers), None)
}

fn peer_ns_names(cfg: &Config, zone: &Zone, live_peers: &BTreeSet<GeoTag>) -> BTreeSet<String> {
    live_peers
        .iter()
        .filter(|t| **t != cfg.geo_tag)
        .map(|t| cfg.ns_name(t, zone))
        .collect()
}

fn endpoint(
    cfg: &Config,
    zone: &Zone,
    ns: BTreeSet<String>,
    glue: Option<(&String, &[IpAddr])>,
) -> DNSEndpoint {
    let ttl = Some(i64::from(cfg.ns_record_ttl));
    let mut endpoints = vec![Endpoint {
        dns_name: zone.name.clone(),
        targets: ns.into_iter().collect(),
        record_type: "NS".into(),
        record_ttl: ttl,
        ..Endpoint::default()
    }];
    if let Some((own, ips)) = glue {
        let ips: BTreeSet<IpAddr> = ips.iter().copied().collect();
        for (rtype, v4) in [("A", true), ("AAAA", false)] {
            let targets: Vec<String> = ips
                .iter()
                .filter(|ip| ip.is_ipv4() == v4)
                .map(|ip| ip.to_string())
                .collect();
            if !targets.is_empty() {
                endpoints.push(Endpoint {
                    dns_name: own.clone(),
                    targets,
                    record_type: rtype.into(),
                    record_ttl: ttl,
                    ..Endpoint::default()
                });
            }
        }
    }
    DNSEndpoint {
        metadata: ObjectMeta {
            name: Some(endpoint_name(zone)),
            namespace: Some(cfg.pod_namespace.clone()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: DNSEndpointSpec { endpoints },
        status: None,
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    Unchanged,
}

/// Does `current` already say what `want` says (spec, and our labels)?
pub fn up_to_date(current: &DNSEndpoint, want: &DNSEndpoint) -> bool {
    let have = current.metadata.labels.as_ref();
    let labels_ok = want
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v));
    labels_ok && current.spec == want.spec
}

/// Writes `want` (named and namespaced) if it differs from what the API
/// holds: creates it when missing, else a merge patch of its spec and our
/// labels (other labels and annotations stay).
pub async fn apply(api: &Api<DNSEndpoint>, want: &DNSEndpoint) -> Result<Written, kube::Error> {
    let name = want.metadata.name.clone().unwrap_or_default();
    let current = match api.get(&name).await {
        Ok(o) => Some(o),
        // by code: not every server says reason NotFound
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e),
    };
    match current {
        None => {
            api.create(&PostParams::default(), want).await?;
            Ok(Written::Created)
        }
        Some(current) if up_to_date(&current, want) => Ok(Written::Unchanged),
        Some(_) => {
            let patch = serde_json::json!({
                "metadata": { "labels": want.metadata.labels },
                "spec": want.spec,
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            Ok(Written::Updated)
        }
    }
}

/// Deletes the zone's DNSEndpoint (the last cluster withdrawing); a missing
/// one is fine.
pub async fn remove(api: &Api<DNSEndpoint>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn describe(cfg: &Config, zone: &Zone) -> String {
    format!("DNSEndpoint {}/{}", cfg.pod_namespace, endpoint_name(zone))
}

/// An API error as a one-line message, with a hint when the CRD is missing.
fn api_error(what: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            format!("{what}: {e} (is ExternalDNS's DNSEndpoint CRD, externaldns.k8s.io/v1alpha1, installed?)")
        }
        _ => format!("{what}: {e}"),
    }
}

/// One pass over every zone. Returns false when a write failed (retry soon).
pub async fn sync_all(
    api: &Api<DNSEndpoint>,
    cfg: &Config,
    own_ips: &[IpAddr],
    live_peers: &BTreeSet<GeoTag>,
    status: &StatusSink,
    metrics: &Metrics,
) -> bool {
    let mut ok = true;
    for zone in &cfg.zones {
        if own_ips.is_empty() {
            tracing::warn!(zone = zone.name, "{}", status::NO_ADDRESS);
            status.report(&zone.name, DelegationOutcome::no_address());
            continue;
        }
        let want = build(cfg, zone, own_ips, live_peers);
        let what = describe(cfg, zone);
        match apply(api, &want).await {
            Ok(w) => {
                let result = if w == Written::Unchanged {
                    tracing::debug!(zone = zone.name, "{what} up to date");
                    "unchanged"
                } else {
                    let ns = want.spec.endpoints.first().map(|e| e.targets.join(","));
                    tracing::info!(zone = zone.name, ns = ns.unwrap_or_default(), "{what} {w:?}");
                    "updated"
                };
                metrics.delegation(&zone.name, result);
                status.report(
                    &zone.name,
                    DelegationOutcome::delegated(&format!("ExternalDNS ({what})")),
                );
            }
            Err(e) => {
                ok = false;
                let msg = api_error(&what, &e);
                metrics.delegation(&zone.name, "failed");
                tracing::error!(
                    zone = zone.name,
                    "delegation not updated, records left as they are: {msg}"
                );
                status.report(
                    &zone.name,
                    DelegationOutcome::failed(Reason::KubernetesApiError, msg),
                );
            }
        }
    }
    ok
}

/// Withdraws on shutdown: the last cluster (no live peer) deletes each
/// zone's DNSEndpoint, so ExternalDNS removes the delegation; otherwise our
/// NS name and glue leave it and the peers' NS names stay.
pub async fn finalize(api: &Api<DNSEndpoint>, cfg: &Config, live_peers: &BTreeSet<GeoTag>) {
    let others = live_peers.iter().any(|t| *t != cfg.geo_tag);
    for zone in &cfg.zones {
        let what = describe(cfg, zone);
        let result = if others {
            apply(api, &build_withdrawn(cfg, zone, live_peers))
                .await
                .map(|_| "our NS name and glue removed")
        } else {
            remove(api, &endpoint_name(zone))
                .await
                .map(|_| "deleted (last cluster)")
        };
        match result {
            Ok(done) => tracing::info!(zone = zone.name, "delegation withdrawn: {what} {done}"),
            Err(e) => tracing::error!(
                zone = zone.name,
                "delegation not withdrawn: {}",
                api_error(&what, &e)
            ),
        }
    }
}

/// Keeps each zone's delegation DNSEndpoint until `cancel`. Rewrites
/// promptly when the live peers change, checks every
/// `ZONE_DELEGATION_RECONCILE_REQUEUE_SECONDS`, retries a failed write with
/// backoff and jitter (1 s to 60 s). With `DELEGATION_FINALIZE`, withdraws
/// on the way out (see [`finalize`]).
///
/// `live_peers`: the geotags of the peers that are up now (our own tag, if
/// present, is ignored). `own_ips`: this cluster's DNS addresses (the glue;
/// in Kubernetes mode as discovered, else `Config::exposed_dns_ips`); a
/// change rewrites at once. Outcomes go to `status`; checks are counted in
/// `k8gb_delegation_reconciles_total{zone,result}`.
pub async fn run_extdns(
    client: kube::Client,
    cfg: Config,
    mut live_peers: watch::Receiver<BTreeSet<GeoTag>>,
    mut own_ips: watch::Receiver<Vec<IpAddr>>,
    status: StatusSink,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let api: Api<DNSEndpoint> = Api::namespaced(client, &cfg.pod_namespace);
    let period = Duration::from_secs(cfg.zone_delegation_reconcile_requeue_seconds.max(1));
    let mut backoff = status::retry_backoff();
    let (mut open, mut ips_open) = (true, true);
    loop {
        let live = live_peers.borrow_and_update().clone();
        let ips = own_ips.borrow_and_update().clone();
        let wait = if sync_all(&api, &cfg, &ips, &live, &status, &metrics).await {
            backoff = status::retry_backoff();
            period
        } else {
            backoff.next().unwrap_or(period).min(period)
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = live_peers.changed(), if open => open = r.is_ok(),
            r = own_ips.changed(), if ips_open => ips_open = r.is_ok(),
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if cfg.delegation_finalize {
        let live = live_peers.borrow().clone();
        finalize(&api, &cfg, &live).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigArgs;

    fn cfg(exposed: &str) -> Config {
        let args = ConfigArgs {
            cluster_geo_tag: Some("eu".into()),
            ext_gslb_clusters_geo_tags: Some("eu,us,ap".into()),
            dns_zones: Some("example.com:cloud.example.com:30;example.org:app.team.example.org:60".into()),
            edge_dns_servers: Some("192.0.2.53".into()),
            cluster_exposed_ips: Some(exposed.into()),
            ns_record_ttl: Some("45".into()),
            pod_namespace: Some("k8gb-system".into()),
            ..ConfigArgs::default()
        };
        crate::config::build(&args, None, None).expect("test config")
    }

    fn tags(list: &[&str]) -> BTreeSet<GeoTag> {
        list.iter().map(|t| GeoTag::parse(t).unwrap()).collect()
    }

    #[test]
    fn name_namespace_labels_and_records_as_upstream() {
        let c = cfg("192.0.2.1");
        let zone = &c.zones[0];
        let ep = build(&c, zone, &c.exposed_dns_ips(), &tags(&["us", "ap"]));
        assert_eq!(
            ep.metadata.name.as_deref(),
            Some("k8gb-ns-extdns-cloud-example-com")
        );
        assert_eq!(ep.metadata.namespace.as_deref(), Some("k8gb-system"));
        let labels = ep.metadata.labels.clone().unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["k8gb.io/dnstype"], "extdns");
        assert_eq!(labels["k8gb.absa.oss/dnstype"], "extdns");
        let json = serde_json::to_value(&ep).unwrap();
        assert_eq!(json["apiVersion"], "externaldns.k8s.io/v1alpha1");
        assert_eq!(json["kind"], "DNSEndpoint");
        assert_eq!(
            json["spec"],
            serde_json::json!({"endpoints": [
                {"dnsName": "cloud.example.com", "recordType": "NS", "recordTTL": 45, "targets": [
                    "gslb-ns-ap-cloud.example.com",
                    "gslb-ns-eu-cloud.example.com",
                    "gslb-ns-us-cloud.example.com"]},
                {"dnsName": "gslb-ns-eu-cloud.example.com", "recordType": "A", "recordTTL": 45,
                 "targets": ["192.0.2.1"]}
            ]})
        );
        // nested zone: upstream's NS naming (the part below the parent, dots as dashes)
        let ep = build(&c, &c.zones[1], &c.exposed_dns_ips(), &BTreeSet::new());
        assert_eq!(
            ep.metadata.name.as_deref(),
            Some("k8gb-ns-extdns-app-team-example-org")
        );
        assert_eq!(ep.spec.endpoints[0].targets, ["gslb-ns-eu-app-team.example.org"]);
        assert_eq!(ep.spec.endpoints[0].record_ttl, Some(45));
    }

    #[test]
    fn only_active_clusters_are_in_the_ns_rrset() {
        let c = cfg("192.0.2.1");
        let zone = &c.zones[0];
        let ns = |live: &[&str]| {
            build(&c, zone, &c.exposed_dns_ips(), &tags(live)).spec.endpoints[0]
                .targets
                .clone()
        };
        assert_eq!(ns(&[]), ["gslb-ns-eu-cloud.example.com"], "alone: just us");
        assert_eq!(
            ns(&["us"]),
            ["gslb-ns-eu-cloud.example.com", "gslb-ns-us-cloud.example.com"]
        );
        assert_eq!(
            ns(&["us", "eu"]),
            ns(&["us"]),
            "our own tag in the live set changes nothing"
        );
    }

    #[test]
    fn ipv6_becomes_aaaa_and_addresses_are_sorted() {
        let c = cfg("2001:db8::2,192.0.2.10,192.0.2.9,2001:db8::1");
        let ep = build(&c, &c.zones[0], &c.exposed_dns_ips(), &BTreeSet::new());
        let glue: Vec<(&str, &str, Vec<String>)> = ep.spec.endpoints[1..]
            .iter()
            .map(|e| (e.dns_name.as_str(), e.record_type.as_str(), e.targets.clone()))
            .collect();
        assert_eq!(
            glue,
            [
                (
                    "gslb-ns-eu-cloud.example.com",
                    "A",
                    vec!["192.0.2.9".to_string(), "192.0.2.10".to_string()]
                ),
                (
                    "gslb-ns-eu-cloud.example.com",
                    "AAAA",
                    vec!["2001:db8::1".to_string(), "2001:db8::2".to_string()]
                ),
            ]
        );
        let v6only = cfg("2001:db8::1");
        let ep = build(
            &v6only,
            &v6only.zones[0],
            &v6only.exposed_dns_ips(),
            &BTreeSet::new(),
        );
        let types: Vec<&str> = ep.spec.endpoints.iter().map(|e| e.record_type.as_str()).collect();
        assert_eq!(types, ["NS", "AAAA"], "no empty A endpoint");
    }

    #[test]
    fn deterministic_whatever_the_input_order() {
        let a = cfg("192.0.2.1,2001:db8::1,192.0.2.2");
        let b = cfg("192.0.2.2,192.0.2.1,2001:db8::1");
        let one = build(&a, &a.zones[0], &a.exposed_dns_ips(), &tags(&["us", "ap"]));
        let two = build(&b, &b.zones[0], &b.exposed_dns_ips(), &tags(&["ap", "us"]));
        assert_eq!(
            serde_json::to_vec(&one).unwrap(),
            serde_json::to_vec(&two).unwrap(),
            "byte-equal"
        );
        assert!(up_to_date(&one, &two));
    }

    #[test]
    fn up_to_date_compares_spec_and_our_labels_only() {
        let c = cfg("192.0.2.1");
        let want = build(&c, &c.zones[0], &c.exposed_dns_ips(), &tags(&["us"]));
        let mut current = want.clone();
        current.metadata.resource_version = Some("42".into());
        current
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "dns".into());
        current.metadata.annotations = Some([("note".to_string(), "x".to_string())].into());
        current.status = Some(crate::api::DNSEndpointStatus {
            observed_generation: Some(3),
        });
        assert!(
            up_to_date(&current, &want),
            "foreign labels, annotations, status are fine"
        );
        let mut stale = current.clone();
        stale.spec.endpoints[0].targets.pop();
        assert!(!up_to_date(&stale, &want), "a peer left or joined");
        let mut unlabelled = current.clone();
        unlabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove("k8gb.io/dnstype");
        assert!(!up_to_date(&unlabelled, &want), "ExternalDNS would not see it");
    }

    #[test]
    fn withdrawn_keeps_only_the_peers() {
        let c = cfg("192.0.2.1,2001:db8::1");
        let ep = build_withdrawn(&c, &c.zones[0], &tags(&["us", "ap", "eu"]));
        assert_eq!(ep.spec.endpoints.len(), 1, "no glue of ours");
        assert_eq!(
            ep.spec.endpoints[0].targets,
            ["gslb-ns-ap-cloud.example.com", "gslb-ns-us-cloud.example.com"]
        );
        assert_eq!(
            ep.metadata.name,
            build(&c, &c.zones[0], &[], &BTreeSet::new()).metadata.name
        );
    }
}
