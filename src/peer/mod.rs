//! Peer exchange: every peer cluster's `localtargets-<host>` records, asked
//! of its DNS server, kept per peer with liveness, and NOTIFY in both
//! directions.
//!
//! One task per peer:
//! - a heartbeat (an SOA query every `PEER_HEARTBEAT_SECONDS`) tells whether
//!   the peer answers, and its serial tells when its data changed;
//! - a sync (A and AAAA of `localtargets-<host>` for every served host) runs
//!   when the peer notifies us, when its serial changes, when the peer comes
//!   back, and every `RECONCILE_REQUEUE_SECONDS` as a safety net;
//! - the hosts asked are the ones the engine publishes as served, whatever
//!   their source (config file, Kubernetes, legacy Gslbs): a host that
//!   appears is asked of every live peer at once, a host that goes is
//!   forgotten, and a host whose query failed is asked again at the next
//!   heartbeat;
//! - after `PEER_GRACE_ATTEMPTS` failed checks in a row the peer's targets
//!   leave the answers; a single lost packet is absorbed by retries and by
//!   the grace, so it changes nothing.
//!
//! Outgoing NOTIFY: the engine names the zones whose local targets changed
//! and the manager notifies every peer.

pub mod client;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType, TSigner};
use rustls::pki_types::ServerName;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Peer, PeerTransport};
use crate::core::names::{self, GeoTag};
use crate::dns::server::{NotifyIn, PeerAuth};
use crate::engine::{Event, ServedHosts};
use crate::metrics::Metrics;
use client::{Endpoint, ExchangeError, PeerClient};

/// Numbers peer tasks, so that the engine can ignore a replaced task's updates.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What one peer currently contributes to the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUpdate {
    pub geo_tag: GeoTag,
    /// Which task sent it: a replaced task's late update is ignored.
    pub generation: u64,
    /// False once the peer failed its grace: its targets leave the answers.
    pub up: bool,
    /// host → the peer's `localtargets-<host>` addresses (A and AAAA).
    pub targets: BTreeMap<String, Vec<IpAddr>>,
    /// The address the peer's DNS server answered on (for delegation status).
    pub address: Option<IpAddr>,
}

/// Shared by the manager and the peer tasks.
struct Ctx {
    events: mpsc::Sender<Event>,
    auth: Arc<PeerAuth>,
    metrics: Arc<Metrics>,
    tls: Option<TlsConnector>,
    tsig: Option<TSigner>,
    endpoints: Mutex<BTreeMap<GeoTag, Endpoint>>,
}

impl Ctx {
    fn set_endpoint(&self, tag: &GeoTag, ep: Option<Endpoint>) {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        match ep {
            Some(ep) => map.insert(tag.clone(), ep),
            None => map.remove(tag),
        };
        let sources: HashMap<IpAddr, GeoTag> = map
            .iter()
            .flat_map(|(t, e)| [(e.dns.ip(), t.clone()), (e.dot.ip(), t.clone())])
            .collect();
        self.auth.sources.store(Arc::new(sources));
    }

    fn endpoint(&self, tag: &GeoTag) -> Option<Endpoint> {
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tag)
            .cloned()
    }
}

/// The endpoint of a peer with a static address.
fn static_endpoint(cfg: &Config, p: &Peer) -> Option<Endpoint> {
    let dns = p.address?;
    let dot = p
        .dot_address
        .unwrap_or(SocketAddr::new(dns.ip(), cfg.peer_exchange.dot_port));
    let server_name = match &p.server_name {
        Some(n) => ServerName::try_from(n.clone()).ok()?,
        None => ServerName::IpAddress(dot.ip().into()),
    };
    Some(Endpoint {
        dns,
        dot,
        server_name,
    })
}

/// Runs the peer tasks until `cancel`; reconciles them when the config changes.
/// The channels the peer manager works with.
pub struct Channels {
    /// The current configuration (peers, zones, exchange settings).
    pub config: watch::Receiver<Arc<Config>>,
    /// The hosts the engine serves now (what peers are asked about).
    pub hosts: watch::Receiver<ServedHosts>,
    /// NOTIFY accepted by the DNS server.
    pub notify_in: mpsc::Receiver<NotifyIn>,
    /// Zones whose local targets changed (from the engine).
    pub notify_out: mpsc::Receiver<Vec<String>>,
    /// Peer updates to the engine.
    pub events: mpsc::Sender<Event>,
}

pub async fn run(
    ch: Channels,
    auth: Arc<PeerAuth>,
    metrics: Arc<Metrics>,
    tls: Option<TlsConnector>,
    cancel: CancellationToken,
) {
    let Channels {
        config: mut cfg_rx,
        hosts: hosts_rx,
        mut notify_in,
        mut notify_out,
        events,
    } = ch;
    let ctx = Arc::new(Ctx {
        events,
        tsig: auth.tsig.clone(),
        auth,
        metrics,
        tls,
        endpoints: Mutex::new(BTreeMap::new()),
    });
    let mut tasks: BTreeMap<GeoTag, (CancellationToken, mpsc::Sender<()>)> = BTreeMap::new();
    let mut cfg = cfg_rx.borrow().clone();
    reconcile(&cfg, &cfg_rx, &hosts_rx, &mut tasks, &ctx, &cancel);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = cfg_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                cfg = cfg_rx.borrow().clone();
                reconcile(&cfg, &cfg_rx, &hosts_rx, &mut tasks, &ctx, &cancel);
            }
            Some(n) = notify_in.recv() => {
                let targets: Vec<&GeoTag> = match &n.peer {
                    Some(t) => tasks.keys().filter(|k| *k == t).collect(),
                    None => tasks.keys().collect(),
                };
                tracing::debug!(from = %n.from, zone = n.zone, peers = targets.len(), "NOTIFY received");
                for t in targets {
                    if let Some((_, poke)) = tasks.get(t) {
                        let _ = poke.try_send(());
                    }
                }
            }
            Some(zones) = notify_out.recv() => {
                if cfg.peer_exchange.notify {
                    send_notifies(&cfg, &ctx, zones, None);
                }
            }
        }
    }
    for (_, (token, _)) in tasks {
        token.cancel();
    }
}

fn reconcile(
    cfg: &Arc<Config>,
    cfg_rx: &watch::Receiver<Arc<Config>>,
    hosts_rx: &watch::Receiver<ServedHosts>,
    tasks: &mut BTreeMap<GeoTag, (CancellationToken, mpsc::Sender<()>)>,
    ctx: &Arc<Ctx>,
    cancel: &CancellationToken,
) {
    let wanted: BTreeSet<&GeoTag> = cfg.peers.iter().map(|p| &p.geo_tag).collect();
    tasks.retain(|tag, (token, _)| {
        let keep = wanted.contains(tag);
        if !keep {
            token.cancel();
            ctx.set_endpoint(tag, None);
        }
        keep
    });
    for p in &cfg.peers {
        if tasks.contains_key(&p.geo_tag) {
            continue;
        }
        let token = cancel.child_token();
        let (poke_tx, poke_rx) = mpsc::channel(1);
        tasks.insert(p.geo_tag.clone(), (token.clone(), poke_tx));
        tokio::spawn(peer_task(
            p.geo_tag.clone(),
            cfg_rx.clone(),
            hosts_rx.clone(),
            poke_rx,
            ctx.clone(),
            token,
        ));
    }
}

/// Sends NOTIFY for `zones` to every peer with a known address (or only to `only`).
fn send_notifies(cfg: &Config, ctx: &Arc<Ctx>, zones: Vec<String>, only: Option<&GeoTag>) {
    for p in cfg.peers.iter().filter(|p| only.is_none_or(|t| *t == p.geo_tag)) {
        let Some(ep) = ctx.endpoint(&p.geo_tag) else {
            continue;
        };
        for zone in &zones {
            let Ok(name) = Name::from_ascii(format!("{zone}.")) else {
                continue;
            };
            let mut client = PeerClient::new(&cfg.peer_exchange, ctx.tls.clone(), ctx.tsig.clone());
            let ctx = ctx.clone();
            let ep = ep.clone();
            let tag = p.geo_tag.clone();
            tokio::spawn(async move {
                match client.notify(&ep, &name).await {
                    Ok(m) => {
                        // upstream k8gb answers NOTIFY with an error; any reply is an acknowledgement
                        tracing::debug!(peer = %tag, zone = %name, rcode = ?m.metadata.response_code, "NOTIFY sent");
                        ctx.metrics.notify_sent(true);
                    }
                    Err(e) => {
                        tracing::debug!(peer = %tag, zone = %name, "NOTIFY failed: {e}");
                        ctx.metrics.notify_sent(false);
                    }
                }
            });
        }
    }
}

/// A host and its A and AAAA query results.
type HostResults = (
    String,
    Result<Message, ExchangeError>,
    Result<Message, ExchangeError>,
);

struct PeerState {
    generation: u64,
    up: bool,
    failures: u32,
    targets: BTreeMap<String, Vec<IpAddr>>,
    /// Served hosts not yet asked of this peer, or whose last query failed.
    pending: BTreeSet<String>,
    /// The serial seen at the last heartbeat before a successful sync.
    synced_serial: Option<u64>,
    last_serial: Option<u64>,
    warned_refused: bool,
    warned_auth: bool,
}

async fn peer_task(
    tag: GeoTag,
    mut cfg_rx: watch::Receiver<Arc<Config>>,
    mut hosts_rx: watch::Receiver<ServedHosts>,
    mut poke: mpsc::Receiver<()>,
    ctx: Arc<Ctx>,
    cancel: CancellationToken,
) {
    let mut cfg = cfg_rx.borrow().clone();
    let mut client = PeerClient::new(&cfg.peer_exchange, ctx.tls.clone(), ctx.tsig.clone());
    let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut state = PeerState {
        generation,
        up: false,
        failures: 0,
        targets: BTreeMap::new(),
        pending: BTreeSet::new(),
        synced_serial: None,
        last_serial: None,
        warned_refused: false,
        warned_auth: false,
    };
    let mut heartbeat = tokio::time::interval(cfg.peer_exchange.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let requeue = match cfg.reconcile_requeue_seconds {
        0 => Duration::from_secs(86_400 * 365),
        n => Duration::from_secs(n),
    };
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + requeue, requeue);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let static_peer = |cfg: &Config| cfg.peers.iter().find(|p| p.geo_tag == tag).cloned();
    if let Some(p) = static_peer(&cfg) {
        ctx.set_endpoint(&tag, static_endpoint(&cfg, &p));
    }
    ctx.metrics.peer_up(tag.as_str(), false);
    let mut hosts: ServedHosts = hosts_rx.borrow_and_update().clone();
    loop {
        // `sync`: the peer just showed it answers (heartbeat, discovery, its
        // NOTIFY): sync even if it is out of the answers. `sync_if_up`: config, safety net:
        // only for a peer that is up, so a dead peer costs one check per period.
        // `sync_pending`: ask a live peer only the hosts in `state.pending`.
        let mut sync = false;
        let mut sync_if_up = false;
        let mut sync_pending = false;
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = hosts_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = hosts_rx.borrow_and_update().clone();
                state.pending.extend(new.difference(&hosts).cloned());
                state.pending.retain(|h| new.contains(h));
                let before = state.targets.len();
                state.targets.retain(|h, _| new.contains(h));
                hosts = new;
                if state.targets.len() != before && state.up {
                    publish(&tag, &ctx, &state).await;
                }
                sync_pending = !state.pending.is_empty();
            }
            changed = cfg_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                cfg = cfg_rx.borrow().clone();
                let Some(p) = static_peer(&cfg) else { break };
                client = PeerClient::new(&cfg.peer_exchange, ctx.tls.clone(), ctx.tsig.clone());
                if p.address.is_some() {
                    ctx.set_endpoint(&tag, static_endpoint(&cfg, &p));
                }
                sync_if_up = true;
            }
            // a NOTIFY from the peer is proof it answers: sync even if it is out
            Some(()) = poke.recv() => sync = true,
            _ = heartbeat.tick() => {
                if ctx.endpoint(&tag).is_none()
                    && let Some(p) = static_peer(&cfg).filter(|p| p.address.is_some())
                {
                    ctx.set_endpoint(&tag, static_endpoint(&cfg, &p));
                }
                if ctx.endpoint(&tag).is_none() {
                    match discover(&cfg, &tag).await {
                        Ok(ep) => {
                            tracing::info!(peer = %tag, address = %ep.dns, "peer found through the edge DNS");
                            ctx.set_endpoint(&tag, Some(ep));
                            sync = true;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %tag, "cannot find the peer: {e}");
                            fail(&tag, &cfg, &ctx, &mut state, &e).await;
                            continue;
                        }
                    }
                }
                match heartbeat_check(&cfg, &ctx, &tag, &mut client).await {
                    Ok(serial) => {
                        state.failures = 0;
                        state.warned_auth = false;
                        state.last_serial = serial;
                        if !state.up && hosts.is_empty() {
                            // liveness comes from the heartbeat: with no host
                            // to ask, the peer is up (its NS and glue count)
                            // but no sync is claimed
                            state.synced_serial = serial;
                            mark_up(&tag, &cfg, &ctx, &mut state, 0).await;
                        } else if !state.up || serial != state.synced_serial {
                            sync = true;
                        }
                        sync_pending = !state.pending.is_empty();
                    }
                    Err(e) => {
                        // a peer that does not answer its heartbeat is not
                        // asked for its targets in the same breath
                        sync = false;
                        if matches!(e, ExchangeError::Tls(_) | ExchangeError::Tsig(_)) && !state.warned_auth {
                            // misconfiguration, not an outage: say so once, loudly
                            state.warned_auth = true;
                            tracing::warn!(peer = %tag, "peer exchange refused: {e}");
                        }
                        fail(&tag, &cfg, &ctx, &mut state, &e.to_string()).await;
                    }
                }
            }
            _ = resync.tick() => sync_if_up = true,
        }
        let full = sync || (sync_if_up && state.up);
        let partial = !full && sync_pending && state.up;
        if (full || partial) && ctx.endpoint(&tag).is_some() {
            // bounded, and cancellable: a peer that stops answering mid-sync
            // must not hold up the heartbeat or shutdown for long
            let limit =
                (cfg.peer_exchange.heartbeat * cfg.peer_exchange.grace_attempts).max(Duration::from_secs(5));
            let ask: Vec<String> = if full {
                hosts.iter().cloned().collect()
            } else {
                state.pending.iter().cloned().collect()
            };
            let job = do_sync(&tag, &cfg, &ctx, &mut client, &mut state, &hosts, &ask, full);
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = tokio::time::timeout(limit, job) => {
                    if r.is_err() {
                        state.pending.extend(ask);
                        if full {
                            fail(&tag, &cfg, &ctx, &mut state, &format!("sync did not finish within {limit:?}")).await;
                        }
                    }
                }
            }
        }
    }
    // the manager owns the endpoint map and the replacement task the metric;
    // only withdraw what this task contributed
    if state.up {
        let _ = ctx.events.try_send(Event::Peer(PeerUpdate {
            geo_tag: tag.clone(),
            generation: state.generation,
            up: false,
            targets: BTreeMap::new(),
            address: None,
        }));
    }
    tracing::debug!(peer = %tag, "peer task stopped");
}

/// Counts a failed check; after the grace the peer leaves the answers.
async fn fail(tag: &GeoTag, cfg: &Config, ctx: &Ctx, state: &mut PeerState, why: &str) {
    state.failures += 1;
    tracing::debug!(peer = %tag, failures = state.failures, "peer check failed: {why}");
    if state.failures >= cfg.peer_exchange.grace_attempts {
        if state.up {
            state.up = false;
            state.synced_serial = None;
            // the first sync after recovery must not republish pre-outage targets
            state.targets.clear();
            tracing::warn!(
                peer = %tag,
                failures = state.failures,
                "peer left the answers: it did not answer {} checks in a row ({why})",
                state.failures
            );
            ctx.metrics.peer_up(tag.as_str(), false);
            let _ = ctx
                .events
                .send(Event::Peer(PeerUpdate {
                    geo_tag: tag.clone(),
                    generation: state.generation,
                    up: false,
                    targets: BTreeMap::new(),
                    address: None,
                }))
                .await;
        }
        // a discovered address may have moved: look it up again
        if cfg.peers.iter().any(|p| &p.geo_tag == tag && p.address.is_none()) {
            ctx.set_endpoint(tag, None);
        }
    }
}

/// An SOA query per zone, one attempt each; returns a fingerprint of the
/// peer's serials (a missing SOA counts as 0), `None` without zones.
async fn heartbeat_check(
    cfg: &Config,
    ctx: &Ctx,
    tag: &GeoTag,
    client: &mut PeerClient,
) -> Result<Option<u64>, ExchangeError> {
    let Some(ep) = ctx.endpoint(tag) else {
        return Err(ExchangeError::Io("no address".into()));
    };
    if cfg.zones.is_empty() {
        return Ok(None);
    }
    let mut fingerprint: u64 = 0;
    for zone in &cfg.zones {
        let name = Name::from_ascii(format!("{}.", zone.name))
            .map_err(|e| ExchangeError::BadResponse(e.to_string()))?;
        let m = client.query_once(&ep, &name, RecordType::SOA).await?;
        let serial = m
            .answers
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(s) => Some(s.serial),
                _ => None,
            })
            .unwrap_or(0);
        fingerprint = fingerprint
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(serial));
    }
    Ok(Some(fingerprint))
}

/// The A and AAAA addresses in a message's answer section.
pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The A and the AAAA addresses of a host, or the first error.
fn both(
    a: Result<Vec<IpAddr>, ExchangeError>,
    aaaa: Result<Vec<IpAddr>, ExchangeError>,
) -> Result<Vec<IpAddr>, ExchangeError> {
    let mut x = a?;
    x.extend(aaaa?);
    Ok(x)
}

/// Sends the peer's current view to the engine.
async fn publish(tag: &GeoTag, ctx: &Ctx, state: &PeerState) {
    let address = ctx.endpoint(tag).map(|ep| ep.dns.ip());
    let _ = ctx
        .events
        .send(Event::Peer(PeerUpdate {
            geo_tag: tag.clone(),
            generation: state.generation,
            up: true,
            targets: state.targets.clone(),
            address,
        }))
        .await;
}

/// Queries the `localtargets-` A and AAAA of every host in `ask`. A full
/// sync (`full`: `ask` is every served host in `served`) also forgets hosts
/// no longer served, brings a peer that was out back into the answers, and
/// counts as a failed check when every query fails. A host whose query
/// fails keeps its previous targets and stays pending, to be asked again.
/// Asking nothing proves nothing: a full sync of no host is neither a
/// successful sync nor a reason to log that the peer's targets are in.
#[allow(clippy::too_many_arguments)]
async fn do_sync(
    tag: &GeoTag,
    cfg: &Config,
    ctx: &Arc<Ctx>,
    client: &mut PeerClient,
    state: &mut PeerState,
    served: &BTreeSet<String>,
    ask: &[String],
    full: bool,
) {
    let Some(ep) = ctx.endpoint(tag) else { return };
    let mut queries = Vec::new();
    for h in ask {
        let Ok(lt) = names::localtargets_name(h) else {
            continue;
        };
        let Ok(name) = Name::from_ascii(format!("{lt}.")) else {
            continue;
        };
        queries.push((h.clone(), name));
    }
    let mut results: Vec<(String, Result<Vec<IpAddr>, ExchangeError>)> = Vec::new();
    let mut refused = false;
    let mut ask_one = |m: Result<Message, ExchangeError>| -> Result<Vec<IpAddr>, ExchangeError> {
        let m = m?;
        // upstream: NXDOMAIN, NODATA, SERVFAIL and REFUSED all mean "no targets"
        if matches!(
            m.metadata.response_code,
            ResponseCode::Refused | ResponseCode::NotAuth
        ) {
            refused = true;
        }
        Ok(addresses(&m))
    };
    match cfg.peer_exchange.transport {
        PeerTransport::Dot => {
            // one TLS connection, queries in turn
            for (host, name) in &queries {
                let a = client.query(&ep, name, RecordType::A, true).await;
                let aaaa = client.query(&ep, name, RecordType::AAAA, true).await;
                let merged = both(ask_one(a), ask_one(aaaa));
                results.push((host.clone(), merged));
            }
        }
        PeerTransport::Udp => {
            let pe = &cfg.peer_exchange;
            let raw: Vec<HostResults> =
                futures::stream::iter(queries.clone().into_iter().map(|(host, name)| {
                    let mut c = PeerClient::new(pe, ctx.tls.clone(), ctx.tsig.clone());
                    let ep = ep.clone();
                    async move {
                        let a = c.query(&ep, &name, RecordType::A, true).await;
                        let aaaa = c.query(&ep, &name, RecordType::AAAA, true).await;
                        (host, a, aaaa)
                    }
                }))
                .buffer_unordered(32)
                .collect()
                .await;
            for (host, a, aaaa) in raw {
                let merged = both(ask_one(a), ask_one(aaaa));
                results.push((host, merged));
            }
        }
    }
    if refused && !state.warned_refused {
        state.warned_refused = true;
        tracing::warn!(peer = %tag, "peer refuses our localtargets queries (TSIG key or access mismatch?)");
    }
    if !results.is_empty() && results.iter().all(|(_, r)| r.is_err()) {
        ctx.metrics.peer_sync(tag.as_str(), false);
        state.pending.extend(results.iter().map(|(h, _)| h.clone()));
        let why = results
            .iter()
            .find_map(|(_, r)| r.as_ref().err())
            .map(|e| e.to_string())
            .unwrap_or_default();
        if matches!(
            results[0].1,
            Err(ExchangeError::Tls(_)) | Err(ExchangeError::Tsig(_))
        ) {
            tracing::warn!(peer = %tag, "peer exchange refused: {why}");
        }
        if full {
            fail(tag, cfg, ctx, state, &why).await;
        } else {
            tracing::debug!(peer = %tag, hosts = results.len(), "queries for new hosts failed, asking again at the next heartbeat: {why}");
        }
        return;
    }
    let mut targets = state.targets.clone();
    if full {
        targets.retain(|h, _| served.contains(h));
    }
    let asked = results.len();
    for (host, r) in results {
        match r {
            Ok(mut ips) => {
                ips.sort();
                ips.dedup();
                state.pending.remove(&host);
                targets.insert(host, ips);
            }
            Err(e) => {
                tracing::debug!(peer = %tag, host, "query failed, keeping the last answer and asking again: {e}");
                state.pending.insert(host);
            }
        }
    }
    if asked == 0 {
        // nothing was asked, so nothing was learnt about the peer
        if state.up && targets != state.targets {
            state.targets = targets;
            publish(tag, ctx, state).await;
        }
        return;
    }
    ctx.metrics.peer_sync(tag.as_str(), true);
    if full {
        state.failures = 0;
        state.synced_serial = state.last_serial;
    }
    let changed = targets != state.targets;
    state.targets = targets;
    if !state.up {
        mark_up(tag, cfg, ctx, state, asked).await;
    } else if changed {
        publish(tag, ctx, state).await;
    }
}

/// The peer enters the answers with what `state.targets` holds (after a
/// sync of `asked` hosts, or 0 when there was no host to ask).
async fn mark_up(tag: &GeoTag, cfg: &Config, ctx: &Arc<Ctx>, state: &mut PeerState, asked: usize) {
    if asked > 0 {
        tracing::info!(peer = %tag, hosts = asked, "peer is in the answers");
    } else {
        tracing::info!(peer = %tag, "peer answers; no served host to ask it about yet");
    }
    state.up = true;
    ctx.metrics.peer_up(tag.as_str(), true);
    // tell a peer that just (re)appeared to sync with us: whichever of us
    // started first, both then hold each other's targets without a poll
    if cfg.peer_exchange.notify {
        let zones = cfg.zones.iter().map(|z| z.name.clone()).collect();
        send_notifies(cfg, ctx, zones, Some(tag));
    }
    publish(tag, ctx, state).await;
}

/// Finds a peer by its NS name through the edge DNS servers, as upstream:
/// the peer's NS name of every served zone is looked up in turn (a peer
/// missing from one zone's delegation is still found through another), and
/// the first address found is the peer's.
async fn discover(cfg: &Config, tag: &GeoTag) -> Result<Endpoint, String> {
    if cfg.zones.is_empty() {
        return Err("no zone configured to derive the peer's NS name from".into());
    }
    let (edges, mut last) = edge_endpoints(cfg).await;
    for zone in &cfg.zones {
        let ns = cfg.ns_name(tag, zone);
        let name = Name::from_ascii(format!("{ns}.")).map_err(|e| e.to_string())?;
        for (edge, ep) in &edges {
            let mut c = PeerClient::plain(cfg.peer_exchange.timeout, Vec::new());
            // A first, then AAAA: IPv6-only peers can be found too
            let mut found = None;
            let mut answered = Ok(());
            for rtype in [RecordType::A, RecordType::AAAA] {
                match c.query(ep, &name, rtype, true).await {
                    Ok(m) => {
                        if let Some(ip) = addresses(&m).into_iter().next() {
                            found = Some(ip);
                            break;
                        }
                        last = format!(
                            "edge {edge}: no address for {ns} ({:?})",
                            m.metadata.response_code
                        );
                    }
                    Err(e) => answered = Err(e),
                }
            }
            match (found, answered) {
                (Some(ip), _) => {
                    let server_name =
                        ServerName::try_from(ns.clone()).unwrap_or(ServerName::IpAddress(ip.into()));
                    return Ok(Endpoint {
                        dns: SocketAddr::new(ip, cfg.peer_exchange.port),
                        dot: SocketAddr::new(ip, cfg.peer_exchange.dot_port),
                        server_name,
                    });
                }
                (None, Ok(())) => {}
                (None, Err(e)) => last = format!("edge {edge}: {e}"),
            }
        }
    }
    Err(last)
}

/// Resolves application hostnames (`k8gb.io/exposed-hostnames`, hostname-only
/// load balancers) through the edge DNS servers as upstream does, following
/// CNAMEs up to 8 levels. Every name must give at least one address; A and
/// AAAA are both kept.
pub async fn resolve_via_edge(cfg: &Config, hostnames: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    for host in hostnames {
        let ips = resolve_one_via_edge(cfg, host).await?;
        if ips.is_empty() {
            return Err(format!("{host}: no address at the edge DNS"));
        }
        for ip in ips {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

async fn resolve_one_via_edge(cfg: &Config, host: &str) -> Result<Vec<IpAddr>, String> {
    let (edges, mut last) = edge_endpoints(cfg).await;
    for (edge, ep) in edges {
        let mut c = PeerClient::plain(cfg.peer_exchange.timeout, Vec::new());
        match follow_cnames(&mut c, &ep, host).await {
            Ok(ips) => return Ok(ips),
            Err(e) => last = format!("edge {edge}: {host}: {e}"),
        }
    }
    Err(last)
}

/// Every address of every edge DNS server (`EDGE_DNS_SERVERS`, in order) as
/// a plain DNS endpoint with its server's name for messages, and the error to
/// report when none of them answers.
async fn edge_endpoints(cfg: &Config) -> (Vec<(String, Endpoint)>, String) {
    let mut out = Vec::new();
    let mut last = String::from("no edge DNS server configured (EDGE_DNS_SERVERS)");
    for edge in &cfg.edge_dns_servers {
        match tokio::net::lookup_host((edge.host.as_str(), edge.port)).await {
            Ok(addrs) => out.extend(addrs.map(|addr| {
                let ep = Endpoint {
                    dns: addr,
                    dot: addr,
                    server_name: ServerName::IpAddress(addr.ip().into()),
                };
                (edge.to_string(), ep)
            })),
            Err(e) => last = format!("edge {edge}: {e}"),
        }
    }
    (out, last)
}

/// A and AAAA of `host` at one server, chasing CNAMEs the server returns
/// without their target (8 levels at most).
async fn follow_cnames(c: &mut PeerClient, ep: &Endpoint, host: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        let mut name =
            Name::from_ascii(format!("{}.", host.trim_end_matches('.'))).map_err(|e| e.to_string())?;
        for _ in 0..8 {
            let m = c.query(ep, &name, rtype, true).await.map_err(|e| e.to_string())?;
            let found = addresses(&m);
            if !found.is_empty() {
                ips.extend(found);
                break;
            }
            let cname = m.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(t) if r.name == name => Some(t.0.clone()),
                _ => None,
            });
            match cname {
                Some(target) => name = target,
                None => break,
            }
        }
    }
    Ok(ips)
}
