//! Delegation status: the `ZoneDelegation` resources of the configured zones
//! and their status.
//!
//! For every `DNS_ZONES` entry a ZoneDelegation exists (created when missing,
//! named after the zone with dots as dashes; an existing one for the same
//! zone wins, as upstream's bootstrap controller does). Its status lists the
//! zone's authoritative servers (`dnsServers`: this cluster's NS name × each
//! exposed address, and each live peer's NS name × each address it is known
//! by) and a `Delegated` condition from the outcomes the delegation writers
//! (RFC 2136, ExternalDNS) report into a [`StatusSink`]. Status is written
//! only when it changed; `lastTransitionTime` moves only when the condition's
//! status flips.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::zonedelegation::DELEGATED;
use crate::api::{Condition, DnsServer, ZoneDelegation, ZoneDelegationSpec, ZoneDelegationStatus};
use crate::config::{Config, Zone};
use crate::core::names::GeoTag;

/// Live peers and the DNS addresses each is known by (the addresses its NS
/// name stands for). Only peers that are up belong in the map; a peer with
/// no known address contributes no `dnsServers` entry.
pub type PeerAddresses = BTreeMap<GeoTag, Vec<IpAddr>>;

/// The latest outcome per zone (normalized zone name).
pub type Outcomes = BTreeMap<String, DelegationOutcome>;

/// Why a zone is (not) delegated: the `reason` of the `Delegated` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The edge delegates the zone to this cluster (True).
    Delegated,
    /// No outcome reported yet (Unknown).
    Pending,
    /// Neither ExternalDNS nor RFC 2136 is configured (False).
    NotConfigured,
    /// This cluster has no address to publish as glue (False).
    NoExposedAddress,
    /// The edge answered REFUSED (or another error rcode).
    EdgeRefused,
    /// The edge answered NOTAUTH without a TSIG error: not authoritative.
    EdgeNotAuth,
    /// The edge does not know our TSIG key (BADKEY).
    TsigBadKey,
    /// The edge knows the key name but the secret differs (BADSIG).
    TsigBadSig,
    /// The clocks differ by more than the TSIG fudge (BADTIME).
    TsigBadTime,
    /// Signing failed, or the edge's reply is not signed with our key.
    TsigError,
    /// The edge did not answer in time.
    EdgeTimeout,
    /// The edge could not be reached (connection refused, reset, bad reply).
    EdgeUnreachable,
    /// The NS RRset kept changing under our updates (concurrent clusters).
    PrerequisiteFailed,
    /// The Kubernetes API refused or failed a DNSEndpoint read or write.
    KubernetesApiError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Delegated => "Delegated",
            Reason::Pending => "Pending",
            Reason::NotConfigured => "NotConfigured",
            Reason::NoExposedAddress => "NoExposedAddress",
            Reason::EdgeRefused => "EdgeRefused",
            Reason::EdgeNotAuth => "EdgeNotAuth",
            Reason::TsigBadKey => "TsigBadKey",
            Reason::TsigBadSig => "TsigBadSig",
            Reason::TsigBadTime => "TsigBadTime",
            Reason::TsigError => "TsigError",
            Reason::EdgeTimeout => "EdgeTimeout",
            Reason::EdgeUnreachable => "EdgeUnreachable",
            Reason::PrerequisiteFailed => "PrerequisiteFailed",
            Reason::KubernetesApiError => "KubernetesApiError",
        }
    }
}

/// The log line and condition message when there is no glue address.
pub const NO_ADDRESS: &str =
    "no cluster address to publish as glue (set CLUSTER_EXPOSED_IPS or a specific DNS_ADDRESS)";

/// The result of a zone's latest delegation check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegationOutcome {
    /// The edge (or the DNSEndpoint for ExternalDNS) is current; `via`
    /// names it, e.g. `RFC 2136 at edge 192.0.2.53:53`.
    Delegated { via: String },
    /// Not current; records were left as they are.
    Failed { reason: Reason, message: String },
}

impl DelegationOutcome {
    pub fn delegated(via: &str) -> Self {
        DelegationOutcome::Delegated { via: via.to_string() }
    }

    pub fn failed(reason: Reason, message: impl Into<String>) -> Self {
        DelegationOutcome::Failed {
            reason,
            message: message.into(),
        }
    }

    pub fn no_address() -> Self {
        DelegationOutcome::failed(Reason::NoExposedAddress, NO_ADDRESS)
    }
}

/// Where the delegation writers report each zone's outcome. Cheap to clone;
/// receivers wake only when an outcome actually changed.
#[derive(Clone, Debug)]
pub struct StatusSink(Arc<watch::Sender<Outcomes>>);

impl StatusSink {
    /// A sink and the receiver [`run_status`] consumes.
    pub fn new() -> (StatusSink, watch::Receiver<Outcomes>) {
        let (tx, rx) = watch::channel(Outcomes::new());
        (StatusSink(Arc::new(tx)), rx)
    }

    /// A sink nobody reads (no ZoneDelegation status).
    pub fn discard() -> StatusSink {
        StatusSink::new().0
    }

    /// Records `zone`'s latest outcome.
    pub fn report(&self, zone: &str, outcome: DelegationOutcome) {
        self.0.send_if_modified(|m| {
            if m.get(zone) == Some(&outcome) {
                return false;
            }
            m.insert(zone.to_string(), outcome);
            true
        });
    }

    /// Another receiver of the outcomes.
    pub fn subscribe(&self) -> watch::Receiver<Outcomes> {
        self.0.subscribe()
    }
}

/// The ZoneDelegation name for a config zone: dots as dashes.
pub fn zd_name(zone: &Zone) -> String {
    zone.name.replace('.', "-")
}

/// The ZoneDelegation created for a config zone when none exists.
pub fn new_zone_delegation(zone: &Zone) -> ZoneDelegation {
    ZoneDelegation::new(
        &zd_name(zone),
        ZoneDelegationSpec {
            load_balanced_zone: zone.name.clone(),
            parent_zone: zone.parent.clone(),
            dns_zone_neg_ttl: i64::from(zone.neg_ttl),
            do_finalize: false,
        },
    )
}

/// `status.dnsServers`: our NS name × each exposed address, each live
/// peer's NS name × its addresses; sorted by name, then address, no
/// duplicates.
pub fn dns_servers(cfg: &Config, zone: &Zone, own_ips: &[IpAddr], peers: &PeerAddresses) -> Vec<DnsServer> {
    let mut set: BTreeSet<(String, IpAddr)> = BTreeSet::new();
    let own = cfg.ns_name(&cfg.geo_tag, zone);
    set.extend(own_ips.iter().map(|ip| (own.clone(), *ip)));
    for (tag, ips) in peers.iter().filter(|(t, _)| **t != cfg.geo_tag) {
        let ns = cfg.ns_name(tag, zone);
        set.extend(ips.iter().map(|ip| (ns.clone(), *ip)));
    }
    set.into_iter()
        .map(|(name, ip)| DnsServer {
            name,
            address: ip.to_string(),
        })
        .collect()
}

/// The `Delegated` condition for an outcome. `previous` is the condition
/// currently stored: its `lastTransitionTime` is kept unless the status flips.
pub fn delegated_condition(
    outcome: Option<&DelegationOutcome>,
    provider_configured: bool,
    previous: Option<&Condition>,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let (status, reason, message) = match outcome {
        Some(DelegationOutcome::Delegated { via }) => {
            ("True", Reason::Delegated, format!("delegated via {via}"))
        }
        Some(DelegationOutcome::Failed { reason, message }) => ("False", *reason, message.clone()),
        // not checked yet since we started: what is stored stands
        None if provider_configured && previous.is_some() => {
            return previous.cloned().unwrap_or_default();
        }
        None if provider_configured => (
            "Unknown",
            Reason::Pending,
            "waiting for the first delegation check".to_string(),
        ),
        None => (
            "False",
            Reason::NotConfigured,
            "no delegation provider: set EXTDNS_ENABLED=true or RFC2136_TSIG_KEY_NAME".to_string(),
        ),
    };
    let last_transition_time = match previous {
        Some(p) if p.status == status && !p.last_transition_time.is_empty() => p.last_transition_time.clone(),
        _ => now.to_string(),
    };
    Condition {
        type_: DELEGATED.to_string(),
        status: status.to_string(),
        last_transition_time,
        reason: reason.as_str().to_string(),
        message,
        observed_generation: generation,
    }
}

/// The status we want for `zd` (whose current status is read for the
/// condition's transition time).
pub fn desired_status(
    cfg: &Config,
    zone: &Zone,
    zd: &ZoneDelegation,
    own_ips: &[IpAddr],
    peers: &PeerAddresses,
    outcome: Option<&DelegationOutcome>,
    now: &str,
) -> ZoneDelegationStatus {
    let previous = zd
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == DELEGATED));
    let configured = cfg.extdns_enabled || cfg.delegation.is_some();
    let mut conditions: Vec<Condition> = zd
        .status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != DELEGATED)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.push(delegated_condition(
        outcome,
        configured,
        previous,
        zd.metadata.generation,
        now,
    ));
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    ZoneDelegationStatus {
        dns_servers: dns_servers(cfg, zone, own_ips, peers),
        conditions,
    }
}

/// Equal up to the order of `dnsServers` and `conditions`.
pub fn same_status(current: Option<&ZoneDelegationStatus>, want: &ZoneDelegationStatus) -> bool {
    let empty = ZoneDelegationStatus::default();
    let cur = current.unwrap_or(&empty);
    let sorted = |v: &[DnsServer]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let conds = |v: &[Condition]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.type_.cmp(&b.type_));
        v
    };
    sorted(&cur.dns_servers) == sorted(&want.dns_servers) && conds(&cur.conditions) == conds(&want.conditions)
}

/// The merge patch writing `status` (lists are replaced whole; empty lists
/// are sent so stale entries go).
pub fn status_patch(status: &ZoneDelegationStatus) -> serde_json::Value {
    serde_json::json!({
        "status": {
            "dnsServers": status.dns_servers,
            "conditions": status.conditions,
        }
    })
}

/// RFC 3339 time, whole seconds (as `metav1.Time`).
pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// One pass: ensures each zone's ZoneDelegation and writes its status when
/// it changed. Returns how many status writes were made.
pub async fn sync_status(
    api: &Api<ZoneDelegation>,
    cfg: &Config,
    own_ips: &[IpAddr],
    outcomes: &Outcomes,
    peers: &PeerAddresses,
    now: &str,
) -> Result<usize, kube::Error> {
    let existing = api.list(&ListParams::default()).await?;
    let mut writes = 0;
    let mut first_err = None;
    for zone in &cfg.zones {
        let name = zd_name(zone);
        // an existing ZoneDelegation for the zone wins: ours by name, else any
        let for_zone =
            |z: &&ZoneDelegation| crate::core::names::normalize(&z.spec.load_balanced_zone) == zone.name;
        let found = existing
            .items
            .iter()
            .filter(for_zone)
            .find(|z| z.metadata.name.as_deref() == Some(name.as_str()))
            .or_else(|| existing.items.iter().find(for_zone));
        let zd = match found {
            Some(zd) => zd.clone(),
            None => match api
                .create(&PostParams::default(), &new_zone_delegation(zone))
                .await
            {
                Ok(zd) => {
                    tracing::info!(zone = zone.name, name, "ZoneDelegation created");
                    zd
                }
                Err(e) => {
                    tracing::warn!(zone = zone.name, name, "cannot create ZoneDelegation: {e}");
                    first_err.get_or_insert(e);
                    continue;
                }
            },
        };
        let zd_name = zd.metadata.name.clone().unwrap_or(name);
        let want = desired_status(cfg, zone, &zd, own_ips, peers, outcomes.get(&zone.name), now);
        if same_status(zd.status.as_ref(), &want) {
            continue;
        }
        match api
            .patch_status(
                &zd_name,
                &PatchParams::default(),
                &Patch::Merge(status_patch(&want)),
            )
            .await
        {
            Ok(_) => {
                writes += 1;
                tracing::debug!(zone = zone.name, name = zd_name, "ZoneDelegation status written");
            }
            Err(e) => {
                tracing::warn!(
                    zone = zone.name,
                    name = zd_name,
                    "cannot write ZoneDelegation status: {e}"
                );
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(writes),
    }
}

/// The live peers' geotags (what [`super::extdns::run_extdns`] takes),
/// following a `watch` of their addresses: for callers that publish only
/// [`PeerAddresses`]. Spawns a task that ends with `cancel` or the sender.
pub fn live_geotags(
    mut peers: watch::Receiver<PeerAddresses>,
    cancel: CancellationToken,
) -> watch::Receiver<BTreeSet<GeoTag>> {
    let tags = |p: &PeerAddresses| p.keys().cloned().collect::<BTreeSet<GeoTag>>();
    let (tx, rx) = watch::channel(tags(&peers.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = peers.changed() => if r.is_err() { return },
            }
            let now = tags(&peers.borrow_and_update());
            tx.send_if_modified(|t| {
                let changed = *t != now;
                *t = now;
                changed
            });
        }
    });
    rx
}

/// Delay between retries after a failed pass: 1 s doubling to 60 s, jittered.
pub(crate) fn retry_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Keeps the ZoneDelegations of `cfg.zones` and their status until `cancel`.
/// Wakes when an outcome, the live peers or our addresses change, every
/// `ZONE_DELEGATION_RECONCILE_REQUEUE_SECONDS`, and with backoff after an
/// API error.
///
/// `outcomes`: from [`StatusSink::new`], the sink given to the delegation
/// writer. `peers`: live peers and their DNS addresses (see [`PeerAddresses`]).
/// `own_ips`: this cluster's DNS addresses (the glue; in Kubernetes mode as
/// discovered, else `Config::exposed_dns_ips`).
pub async fn run_status(
    client: kube::Client,
    cfg: Config,
    mut outcomes: watch::Receiver<Outcomes>,
    mut peers: watch::Receiver<PeerAddresses>,
    mut own_ips: watch::Receiver<Vec<IpAddr>>,
    cancel: CancellationToken,
) {
    let api: Api<ZoneDelegation> = Api::all(client);
    let period = Duration::from_secs(cfg.zone_delegation_reconcile_requeue_seconds.max(1));
    let mut backoff = retry_backoff();
    let (mut outcomes_open, mut peers_open, mut ips_open) = (true, true, true);
    loop {
        let outs = outcomes.borrow_and_update().clone();
        let live = peers.borrow_and_update().clone();
        let ips = own_ips.borrow_and_update().clone();
        let wait = match sync_status(&api, &cfg, &ips, &outs, &live, &now_rfc3339()).await {
            Ok(_) => {
                backoff = retry_backoff();
                period
            }
            Err(e) => {
                // retried, nothing lost: a warning like the controller's
                // "reconcile failed, retrying" (an API outage is not an error)
                let wait = backoff.next().unwrap_or(period).min(period);
                tracing::warn!("ZoneDelegation status not updated, retrying in {wait:?}: {e}");
                wait
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = outcomes.changed(), if outcomes_open => outcomes_open = r.is_ok(),
            r = peers.changed(), if peers_open => peers_open = r.is_ok(),
            r = own_ips.changed(), if ips_open => ips_open = r.is_ok(),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigArgs;

    fn cfg(extdns: bool) -> Config {
        let args = ConfigArgs {
            cluster_geo_tag: Some("eu".into()),
            ext_gslb_clusters_geo_tags: Some("us,ap".into()),
            dns_zones: Some("example.com:cloud.example.com:30".into()),
            edge_dns_servers: Some("192.0.2.53".into()),
            cluster_exposed_ips: Some("192.0.2.2,192.0.2.1".into()),
            extdns_enabled: Some(extdns.to_string()),
            ..ConfigArgs::default()
        };
        crate::config::build(&args, None, None).expect("test config")
    }

    fn peers(list: &[(&str, &[&str])]) -> PeerAddresses {
        list.iter()
            .map(|(t, ips)| {
                (
                    GeoTag::parse(t).unwrap(),
                    ips.iter().map(|s| s.parse().unwrap()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn dns_servers_sorted_by_name_then_address() {
        let c = cfg(true);
        let p = peers(&[
            ("us", &["198.51.100.7", "2001:db8::7"]),
            ("ap", &[]),
            ("eu", &["203.0.113.1"]),
        ]);
        let got: Vec<(String, String)> = dns_servers(&c, &c.zones[0], &c.exposed_dns_ips(), &p)
            .into_iter()
            .map(|s| (s.name, s.address))
            .collect();
        let want: Vec<(String, String)> = [
            ("gslb-ns-eu-cloud.example.com", "192.0.2.1"),
            ("gslb-ns-eu-cloud.example.com", "192.0.2.2"),
            ("gslb-ns-us-cloud.example.com", "198.51.100.7"),
            ("gslb-ns-us-cloud.example.com", "2001:db8::7"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(
            got, want,
            "a peer without address adds nothing; our own tag is ours only"
        );
    }

    #[test]
    fn condition_transition_time_moves_only_on_a_flip() {
        let ok = DelegationOutcome::delegated("RFC 2136 at edge 192.0.2.53:53");
        let c1 = delegated_condition(Some(&ok), true, None, Some(1), "T1");
        assert_eq!(
            (
                c1.status.as_str(),
                c1.reason.as_str(),
                c1.last_transition_time.as_str()
            ),
            ("True", "Delegated", "T1")
        );
        assert_eq!(c1.message, "delegated via RFC 2136 at edge 192.0.2.53:53");
        assert_eq!(c1.observed_generation, Some(1));
        let same = delegated_condition(Some(&ok), true, Some(&c1), Some(1), "T2");
        assert_eq!(same, c1, "nothing changed: not even the time");
        let bad = DelegationOutcome::failed(Reason::TsigBadSig, "edge rejected our TSIG signature (BADSIG)");
        let c2 = delegated_condition(Some(&bad), true, Some(&c1), Some(1), "T3");
        assert_eq!(
            (
                c2.status.as_str(),
                c2.reason.as_str(),
                c2.last_transition_time.as_str()
            ),
            ("False", "TsigBadSig", "T3")
        );
        let timeout = DelegationOutcome::failed(Reason::EdgeTimeout, "timed out");
        let c3 = delegated_condition(Some(&timeout), true, Some(&c2), Some(1), "T4");
        assert_eq!(
            (c3.reason.as_str(), c3.last_transition_time.as_str()),
            ("EdgeTimeout", "T3"),
            "still False: the reason changes, the time stays"
        );
        let restarted = delegated_condition(None, true, Some(&c3), Some(2), "T5");
        assert_eq!(
            restarted, c3,
            "no outcome yet after a restart: the stored condition stands"
        );
        let pending = delegated_condition(None, true, None, None, "T5");
        assert_eq!(
            (pending.status.as_str(), pending.reason.as_str()),
            ("Unknown", "Pending")
        );
        let none = delegated_condition(None, false, None, None, "T5");
        assert_eq!(
            (none.status.as_str(), none.reason.as_str()),
            ("False", "NotConfigured")
        );
    }

    #[test]
    fn same_status_ignores_order() {
        let c = cfg(true);
        let zd = new_zone_delegation(&c.zones[0]);
        let p = peers(&[("us", &["198.51.100.7"])]);
        let want = desired_status(&c, &c.zones[0], &zd, &c.exposed_dns_ips(), &p, None, "T1");
        let mut shuffled = want.clone();
        shuffled.dns_servers.reverse();
        assert!(same_status(Some(&shuffled), &want));
        assert!(!same_status(None, &want));
        let mut fewer = want.clone();
        fewer.dns_servers.pop();
        assert!(!same_status(Some(&fewer), &want));
    }

    #[test]
    fn new_zone_delegation_as_upstream_bootstrap() {
        let c = cfg(false);
        let zd = new_zone_delegation(&c.zones[0]);
        assert_eq!(
            serde_json::to_value(&zd).unwrap(),
            serde_json::json!({
                "apiVersion": "k8gb.io/v1beta1",
                "kind": "ZoneDelegation",
                "metadata": {"name": "cloud-example-com"},
                "spec": {"loadBalancedZone": "cloud.example.com", "parentZone": "example.com",
                         "dnsZoneNegTTL": 30, "doFinalize": false}
            })
        );
    }

    #[test]
    fn sink_wakes_receivers_only_on_change() {
        let (sink, mut rx) = StatusSink::new();
        sink.report("cloud.example.com", DelegationOutcome::delegated("x"));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        sink.report("cloud.example.com", DelegationOutcome::delegated("x"));
        assert!(!rx.has_changed().unwrap(), "same outcome: no wake-up");
        sink.clone()
            .report("cloud.example.com", DelegationOutcome::no_address());
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            rx.borrow()["cloud.example.com"],
            DelegationOutcome::failed(Reason::NoExposedAddress, NO_ADDRESS)
        );
        StatusSink::discard().report("z", DelegationOutcome::delegated("y"));
    }

    #[tokio::test]
    async fn live_geotags_follow_the_addresses() {
        let (tx, rx) = watch::channel(peers(&[("us", &["198.51.100.7"])]));
        let cancel = CancellationToken::new();
        let mut live = live_geotags(rx, cancel.clone());
        assert_eq!(*live.borrow_and_update(), [GeoTag::parse("us").unwrap()].into());
        tx.send(peers(&[("us", &["198.51.100.8"])])).unwrap();
        tx.send(peers(&[("us", &["198.51.100.8"]), ("ap", &[])])).unwrap();
        live.changed().await.unwrap();
        let want: BTreeSet<GeoTag> = ["ap", "us"].iter().map(|t| GeoTag::parse(t).unwrap()).collect();
        assert_eq!(*live.borrow_and_update(), want);
        tx.send(peers(&[("us", &["198.51.100.9"]), ("ap", &[])])).unwrap();
        tokio::task::yield_now().await;
        assert!(
            !live.has_changed().unwrap(),
            "an address change is not a membership change"
        );
        cancel.cancel();
    }

    /// An unreachable API server (stopped, restarting) is retried and
    /// logged at WARN, never at ERROR.
    #[tokio::test]
    async fn unreachable_api_is_a_warning() {
        let (buf, _guard) = crate::test_logs::capture_logs();
        // a port nothing listens on: connections are refused
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url: http::Uri = format!("http://127.0.0.1:{port}").parse().expect("url");
        let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
        let (_sink, outcomes) = StatusSink::new();
        let (_peers_tx, peers) = watch::channel(PeerAddresses::new());
        let (_ips_tx, ips) = watch::channel(Vec::<IpAddr>::new());
        let cancel = CancellationToken::new();
        let task = run_status(client, cfg(false), outcomes, peers, ips, cancel.clone());
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
        let text = String::from_utf8_lossy(&buf.lock().expect("log buffer")).into_owned();
        let ours: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ZoneDelegation status not updated"))
            .collect();
        assert!(!ours.is_empty(), "nothing logged:\n{text}");
        assert!(
            ours.iter()
                .all(|l| l.contains(" WARN ") && l.contains("retrying in")),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.contains(" ERROR ") && l.contains("k8gb::")),
            "{text}"
        );
    }

    #[test]
    fn now_is_whole_seconds_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2025-01-01T00:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }
}
