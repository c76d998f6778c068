//! The engine: the single writer. It owns the configuration and every
//! target's health, computes each host's answer with the pure core, builds a
//! zone snapshot and publishes it with one atomic swap. Sources (the config
//! file, probes, the GeoIP database, peers, the Kubernetes controller) only
//! send it events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, GslbConfig};
use crate::core::health::{self, Health, ServiceHealth};
use crate::core::names::{self, GeoTag};
use crate::core::strategy::{self, Kind, Strategy};
use crate::dns::snapshot::{self, GlueInput, HostInput, Snapshot, ZoneInput, ZoneVersion};
use crate::geoip::SharedGeoDb;
use crate::metrics::{GslbReport, HostReport, Metrics};
use crate::peer::PeerUpdate;
use crate::probe::{HealthEvent, Prober, TargetKey};

/// Something changed; the engine recomputes after draining what is queued.
#[derive(Debug)]
pub enum Event {
    /// A new, validated configuration (file reload).
    Config(Box<Config>),
    /// A probed target's health changed.
    Health(HealthEvent),
    /// The GeoIP database was reloaded (target locations may differ).
    GeoReloaded,
    /// What a peer publishes changed, or it left the answers.
    Peer(PeerUpdate),
    /// The Kubernetes controller resolved, removed or re-listed Gslbs.
    Kube(KubeChange),
    /// This cluster's DNS addresses as found in Kubernetes (§5.4): the glue
    /// of its own NS name.
    ClusterIps(Vec<IpAddr>),
}

/// A Gslb resolved by the Kubernetes controller: its served hosts, each
/// host's local health and the application's exposed addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeGslb {
    /// Identity across API groups: `<group>/<namespace>/<name>`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub hosts: Vec<String>,
    pub strategy: Strategy,
    /// Health of each host (a host without an entry is NotFound).
    pub health: BTreeMap<String, Health>,
    /// Local targets of a healthy host.
    pub exposed: Vec<IpAddr>,
}

/// A change from the controller.
#[derive(Debug)]
pub enum KubeChange {
    /// Add or replace one Gslb; `reply` gets its report once published.
    Upsert(Box<KubeGslb>, Option<oneshot::Sender<GslbReport>>),
    /// The Gslb is gone, or no longer served (invalid, migrated).
    Remove(String),
    /// After a re-list: every key not in the set is gone.
    Retain(BTreeSet<String>),
}

/// Where the engine publishes.
#[derive(Clone)]
pub struct Outputs {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub geo: SharedGeoDb,
    pub metrics: Arc<Metrics>,
    /// Set once the first snapshot is published (readiness).
    pub ready: Arc<AtomicBool>,
}

/// The computed state for one configuration and health map: pure.
pub struct Computed {
    pub zones: Vec<ZoneInput>,
    pub hosts: Vec<HostInput>,
    pub glue: Vec<GlueInput>,
    pub reports: Vec<GslbReport>,
}

fn gslb_id(g: &GslbConfig) -> String {
    format!("{}/{}", g.namespace, g.name)
}

/// Health of each target of a Gslb: the probe's verdict (unhealthy until the
/// first one arrives) or the static value.
fn target_health(g: &GslbConfig, health: &HashMap<TargetKey, bool>) -> Vec<(IpAddr, bool)> {
    let id = gslb_id(g);
    g.targets
        .iter()
        .map(|t| {
            let ok = match &t.probe {
                Some(_) => health
                    .get(&TargetKey {
                        gslb: id.clone(),
                        address: t.address,
                    })
                    .copied()
                    .unwrap_or(false),
                None => t.healthy,
            };
            (t.address, ok)
        })
        .collect()
}

/// One Gslb as the answer computation sees it, whatever its source.
struct GslbInput<'a> {
    namespace: &'a str,
    name: &'a str,
    hosts: &'a [String],
    strategy: &'a Strategy,
    health: &'a dyn Fn(&str) -> Health,
    /// Healthy local targets (used for a healthy host only).
    local: &'a [IpAddr],
}

/// Adds the hosts of one Gslb to `hosts` and returns its report.
fn add_gslb(
    cfg: &Config,
    g: &GslbInput<'_>,
    peers: &HashMap<String, BTreeMap<GeoTag, Vec<IpAddr>>>,
    hosts: &mut Vec<HostInput>,
) -> GslbReport {
    let no_peers = BTreeMap::new();
    let mut host_reports = Vec::new();
    for host in g.hosts {
        let host_health = (g.health)(host);
        let peer_targets = peers.get(host).unwrap_or(&no_peers);
        let answer = strategy::answer(g.strategy, &cfg.geo_tag, host_health, g.local, peer_targets);
        host_reports.push(HostReport {
            host: host.clone(),
            health: host_health,
            answer: answer.ips().collect(),
            local_targets: answer.local_targets.clone(),
        });
        let localtargets = names::localtargets_name(host).unwrap_or_else(|_| format!("localtargets-{host}"));
        hosts.push(HostInput {
            host: host.clone(),
            localtargets,
            answer,
        });
    }
    GslbReport {
        namespace: g.namespace.to_owned(),
        name: g.name.to_owned(),
        strategy: g.strategy.kind,
        is_primary: g.strategy.kind == Kind::Failover && g.strategy.primary.as_ref() == Some(&cfg.geo_tag),
        hosts: host_reports,
    }
}

/// Computes zones, hosts and glue from the configuration, the probes' view
/// and what each peer published (`peers`: host → geotag → targets).
pub fn compute(
    cfg: &Config,
    health: &HashMap<TargetKey, bool>,
    peers: &HashMap<String, BTreeMap<GeoTag, Vec<IpAddr>>>,
    kube: &BTreeMap<String, KubeGslb>,
) -> Computed {
    let mesh: Vec<&GeoTag> = std::iter::once(&cfg.geo_tag)
        .chain(cfg.peers.iter().map(|p| &p.geo_tag))
        .collect();
    let mut zones = Vec::new();
    let mut glue = Vec::new();
    let own_ips = cfg.exposed_dns_ips();
    for z in &cfg.zones {
        let mut ns_names: Vec<String> = mesh.iter().map(|t| cfg.ns_name(t, z)).collect();
        ns_names.sort();
        let mname = cfg.ns_name(&cfg.geo_tag, z);
        if !own_ips.is_empty() {
            glue.push(GlueInput {
                name: mname.clone(),
                ips: own_ips.clone(),
                ttl: cfg.ns_record_ttl,
            });
        }
        for p in &cfg.peers {
            if let Some(addr) = p.address {
                glue.push(GlueInput {
                    name: cfg.ns_name(&p.geo_tag, z),
                    ips: vec![addr.ip()],
                    ttl: cfg.ns_record_ttl,
                });
            }
        }
        zones.push(ZoneInput {
            name: z.name.clone(),
            mname,
            ns_names,
            ns_ttl: cfg.ns_record_ttl,
            neg_ttl: z.neg_ttl,
        });
    }

    let mut hosts = Vec::new();
    let mut reports = Vec::new();
    for g in &cfg.gslbs {
        let targets = target_health(g, health);
        let services: Vec<ServiceHealth> = targets
            .iter()
            .map(|(_, ok)| {
                if *ok {
                    ServiceHealth::Healthy
                } else {
                    ServiceHealth::Unhealthy
                }
            })
            .collect();
        let host_health = health::combine(g.policy, &services);
        let local: Vec<IpAddr> = targets.iter().filter(|(_, ok)| *ok).map(|(ip, _)| *ip).collect();
        let input = GslbInput {
            namespace: &g.namespace,
            name: &g.name,
            hosts: &g.hosts,
            strategy: &g.strategy,
            health: &|_| host_health,
            local: &local,
        };
        reports.push(add_gslb(cfg, &input, peers, &mut hosts));
    }
    for k in kube.values() {
        let health = |h: &str| k.health.get(h).copied().unwrap_or(Health::NotFound);
        let input = GslbInput {
            namespace: &k.namespace,
            name: &k.name,
            hosts: &k.hosts,
            strategy: &k.strategy,
            health: &health,
            local: &k.exposed,
        };
        reports.push(add_gslb(cfg, &input, peers, &mut hosts));
    }
    Computed {
        zones,
        hosts,
        glue,
        reports,
    }
}

/// The single writer.
pub struct Engine {
    cfg: Config,
    health: HashMap<TargetKey, bool>,
    peer_views: BTreeMap<GeoTag, PeerUpdate>,
    /// Zones whose local targets changed go here (outgoing NOTIFY).
    notify_out: Option<mpsc::Sender<Vec<String>>>,
    /// Fingerprint of each zone's local targets at the last publish.
    local_fingerprints: BTreeMap<String, u64>,
    versions: BTreeMap<String, ZoneVersion>,
    generation: u64,
    out: Outputs,
    prober: Prober,
    /// Gslbs resolved by the Kubernetes controller, by key.
    kube: BTreeMap<String, KubeGslb>,
    /// Replies owed after the next publish.
    replies: Vec<(String, oneshot::Sender<GslbReport>)>,
    /// The last report of each Kubernetes Gslb, to tell the controller
    /// when an answer changed without it (a peer came or went).
    kube_reports: BTreeMap<String, GslbReport>,
    answers_changed: Option<mpsc::Sender<String>>,
    /// Live peers and the address each answered on.
    live_peers: Option<tokio::sync::watch::Sender<BTreeMap<GeoTag, Vec<IpAddr>>>>,
    /// Every host served now, whatever its source (config file, Kubernetes,
    /// legacy Gslbs): the peer manager asks peers about exactly these.
    served_hosts: tokio::sync::watch::Sender<ServedHosts>,
}

/// The set of hosts the engine serves, as published to the peer manager.
pub type ServedHosts = Arc<BTreeSet<String>>;

impl Engine {
    pub fn new(
        cfg: Config,
        out: Outputs,
        prober: Prober,
        notify_out: Option<mpsc::Sender<Vec<String>>>,
    ) -> Engine {
        let mut e = Engine {
            cfg,
            health: HashMap::new(),
            peer_views: BTreeMap::new(),
            notify_out,
            local_fingerprints: BTreeMap::new(),
            versions: BTreeMap::new(),
            generation: 0,
            out,
            prober,
            kube: BTreeMap::new(),
            replies: Vec::new(),
            kube_reports: BTreeMap::new(),
            answers_changed: None,
            live_peers: None,
            served_hosts: tokio::sync::watch::Sender::new(Arc::new(BTreeSet::new())),
        };
        e.reconcile_probes();
        // publish before any listener starts, so no query sees an empty snapshot
        e.publish();
        e
    }

    /// Keys of Kubernetes Gslbs whose answers change without a reconcile
    /// (a peer's targets) are sent here, so their status follows.
    pub fn with_answer_changes(mut self, tx: mpsc::Sender<String>) -> Engine {
        self.answers_changed = Some(tx);
        self
    }

    /// Publishes the live peers (and their DNS addresses) whenever that set
    /// changes: the delegation status and the ExternalDNS writer follow it.
    pub fn with_live_peers(
        mut self,
        tx: tokio::sync::watch::Sender<BTreeMap<GeoTag, Vec<IpAddr>>>,
    ) -> Engine {
        self.live_peers = Some(tx);
        self
    }

    /// Follows the set of served hosts: a new receiver sees the current set
    /// at once, then every change.
    pub fn served_hosts(&self) -> tokio::sync::watch::Receiver<ServedHosts> {
        self.served_hosts.subscribe()
    }

    fn reconcile_probes(&mut self) {
        let mut wanted = Vec::new();
        for g in &self.cfg.gslbs {
            for t in &g.targets {
                if let Some(p) = &t.probe {
                    wanted.push((
                        TargetKey {
                            gslb: gslb_id(g),
                            address: t.address,
                        },
                        p.clone(),
                    ));
                }
            }
        }
        self.health.retain(|k, _| wanted.iter().any(|(w, _)| w == k));
        self.prober.reconcile(&wanted);
    }

    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Config(cfg) => {
                self.cfg = *cfg;
                // a peer that left the config leaves the answers; if it comes
                // back, its new task starts from nothing
                let peers: Vec<GeoTag> = self.cfg.peers.iter().map(|p| p.geo_tag.clone()).collect();
                self.peer_views.retain(|tag, _| peers.contains(tag));
                self.reconcile_probes();
                tracing::info!(gslbs = self.cfg.gslbs.len(), "configuration applied");
            }
            Event::Health(h) => {
                tracing::info!(gslb = %h.key.gslb, target = %h.key.address, healthy = h.healthy, "target health changed");
                self.health.insert(h.key, h.healthy);
            }
            Event::GeoReloaded => {}
            Event::Peer(update)
                if self
                    .peer_views
                    .get(&update.geo_tag)
                    .is_some_and(|v| v.generation > update.generation) =>
            {
                tracing::debug!(peer = %update.geo_tag, "late update from a replaced peer task ignored");
            }
            Event::Peer(update) => {
                tracing::debug!(peer = %update.geo_tag, up = update.up, hosts = update.targets.len(), "peer update");
                self.peer_views.insert(update.geo_tag.clone(), update);
            }
            Event::Kube(KubeChange::Upsert(g, reply)) => {
                if let Some(reply) = reply {
                    self.replies.push((g.key.clone(), reply));
                }
                if self.kube.get(&g.key) != Some(&g) {
                    tracing::debug!(gslb = %g.key, hosts = g.hosts.len(), "gslb resolved");
                }
                self.kube.insert(g.key.clone(), *g);
            }
            Event::Kube(KubeChange::Remove(key)) => {
                if self.kube.remove(&key).is_some() {
                    tracing::info!(gslb = %key, "gslb no longer served");
                }
                self.kube_reports.remove(&key);
            }
            Event::ClusterIps(ips) => {
                // the engine reads cluster_exposed_ips only for its own glue
                self.cfg.cluster_exposed_ips = ips;
            }
            Event::Kube(KubeChange::Retain(keys)) => {
                self.kube.retain(|k, _| keys.contains(k));
                self.kube_reports.retain(|k, _| keys.contains(k));
            }
        }
    }

    /// Computes and publishes a new snapshot.
    /// host → geotag → targets, from the peers that are up and configured.
    fn peer_targets(&self) -> HashMap<String, BTreeMap<GeoTag, Vec<IpAddr>>> {
        let mut out: HashMap<String, BTreeMap<GeoTag, Vec<IpAddr>>> = HashMap::new();
        for view in self.peer_views.values() {
            if !view.up || !self.cfg.peers.iter().any(|p| p.geo_tag == view.geo_tag) {
                continue;
            }
            for (host, ips) in &view.targets {
                out.entry(host.clone())
                    .or_default()
                    .insert(view.geo_tag.clone(), ips.clone());
            }
        }
        out
    }

    /// Sends the zones whose local targets changed to the notifier.
    fn notify_changes(&mut self, c: &Computed) {
        use std::hash::{Hash, Hasher};
        let mut fps: BTreeMap<String, std::collections::hash_map::DefaultHasher> = self
            .cfg
            .zones
            .iter()
            .map(|z| (z.name.clone(), Default::default()))
            .collect();
        for h in &c.hosts {
            let zone = names::best_zone(&h.host, self.cfg.zones.iter().map(|z| z.name.as_str()));
            if let Some(hasher) = zone.and_then(|z| fps.get_mut(z)) {
                (&h.host, &h.answer.local_targets).hash(hasher);
            }
        }
        let fps: BTreeMap<String, u64> = fps.into_iter().map(|(z, h)| (z, h.finish())).collect();
        let changed: Vec<String> = fps
            .iter()
            .filter(|(z, fp)| self.local_fingerprints.get(*z) != Some(fp))
            .map(|(z, _)| z.clone())
            .collect();
        self.local_fingerprints = fps;
        if !changed.is_empty()
            && let Some(tx) = &self.notify_out
        {
            let _ = tx.try_send(changed);
        }
    }

    pub fn publish(&mut self) {
        let peers = self.peer_targets();
        let c = compute(&self.cfg, &self.health, &peers, &self.kube);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        self.generation += 1;
        let geo = self.out.geo.load();
        let (snap, versions) = snapshot::build(
            self.generation,
            &c.zones,
            &c.hosts,
            &c.glue,
            geo.as_deref(),
            &self.versions,
            now,
        );
        for (zone, v) in &versions {
            if self.versions.get(zone).map(|p| p.serial) != Some(v.serial) {
                tracing::debug!(zone, serial = v.serial, "zone serial");
            }
            self.out.metrics.zone_serial(zone, v.serial);
        }
        self.versions = versions;
        self.out.snapshot.store(Arc::new(snap));
        self.out.metrics.report_gslbs(&c.reports);
        self.out.ready.store(true, Ordering::Release);
        self.notify_changes(&c);
        let hosts: BTreeSet<String> = c.hosts.iter().map(|h| h.host.clone()).collect();
        self.served_hosts.send_if_modified(|cur| {
            if **cur == hosts {
                return false;
            }
            *cur = Arc::new(hosts);
            true
        });
        self.report_kube(&c);
        if let Some(tx) = &self.live_peers {
            let live: BTreeMap<GeoTag, Vec<IpAddr>> = self
                .peer_views
                .values()
                .filter(|v| v.up && self.cfg.peers.iter().any(|p| p.geo_tag == v.geo_tag))
                .map(|v| (v.geo_tag.clone(), v.address.into_iter().collect()))
                .collect();
            tx.send_if_modified(|cur| {
                if *cur == live {
                    return false;
                }
                *cur = live;
                true
            });
        }
    }

    /// Answers the controller's pending upserts and tells it which other
    /// Kubernetes Gslbs' answers changed. Reports follow the order of
    /// `compute`: configured Gslbs first, then `self.kube` by key.
    fn report_kube(&mut self, c: &Computed) {
        let offset = self.cfg.gslbs.len();
        let mut changed = Vec::new();
        for (key, report) in self.kube.keys().zip(&c.reports[offset.min(c.reports.len())..]) {
            if self.kube_reports.get(key) != Some(report) {
                changed.push(key.clone());
                self.kube_reports.insert(key.clone(), report.clone());
            }
        }
        let replies = std::mem::take(&mut self.replies);
        for (key, reply) in replies {
            changed.retain(|k| k != &key);
            if let Some(r) = self.kube_reports.get(&key) {
                let _ = reply.send(r.clone());
            }
        }
        if let Some(tx) = &self.answers_changed {
            for key in changed {
                let _ = tx.try_send(key);
            }
        }
    }

    /// Recomputes on every batch of events until `cancel` (the first
    /// snapshot was published by [`Engine::new`]).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Event>, cancel: CancellationToken) {
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => break,
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            self.apply(ev);
            while let Ok(ev) = rx.try_recv() {
                self.apply(ev);
            }
            self.publish();
        }
        tracing::debug!("engine stopped");
    }
}
