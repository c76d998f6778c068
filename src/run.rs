//! `k8gb run`: wires the engine, the sources and the listeners together and
//! runs until SIGTERM or SIGINT, then stops every task within the grace period.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigArgs};
use crate::dns::server::{self, Shared, StreamLimits};
use crate::dns::snapshot::Snapshot;
use crate::dns::tls;
use crate::engine::{Engine, Event, Outputs};
use crate::filewatch::FileStamp;
use crate::geoip::{self, SharedGeoDb};
use crate::metrics::Metrics;
use crate::probe::Prober;

/// A start-up failure: one line for the operator, and the exit code.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub code: u8,
}

fn start_err(code: u8, message: impl Into<String>) -> StartError {
    StartError {
        message: message.into(),
        code,
    }
}

/// How often reloadable files are checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// The addresses actually bound (useful when a port was 0).
#[derive(Debug, Clone)]
pub struct Bound {
    pub dns: Vec<SocketAddr>,
    pub dot: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// Runs the server with the configuration from `args` until a signal.
pub fn run(args: ConfigArgs) -> Result<(), StartError> {
    let cfg = config::load(&args).map_err(|e| start_err(2, e.to_string()))?;
    crate::logging::init(&cfg.log);
    crate::logging::startup("run", &cfg);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("k8gb")
        .build()
        .map_err(|e| start_err(1, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(args, cfg))
}

async fn serve(args: ConfigArgs, cfg: Config) -> Result<(), StartError> {
    let cancel = CancellationToken::new();
    let metrics = Metrics::new(cfg.geo_tag.as_str(), &cfg.pod_namespace);

    // GeoIP: a configured database must open now
    let geo: SharedGeoDb = Arc::new(ArcSwapOption::empty());
    if let Some(path) = &cfg.geoip.database {
        geoip::load_into(&geo, path, &cfg.geoip.fields)
            .map_err(|e| start_err(1, format!("GEOIP_DATABASE: {e}")))?;
    }
    // DoT: the certificate must load now
    let tls_config = match &cfg.dot {
        Some(d) => Some(Arc::new(ArcSwap::new(
            tls::load_server_config(&d.cert_file, &d.key_file, d.client_ca_file.as_deref())
                .map_err(|e| start_err(1, format!("DoT: {e}")))?,
        ))),
        None => None,
    };

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let ready = Arc::new(AtomicBool::new(false));
    // peer exchange material: a bad key or CA is a start-up error
    let tsig = match &cfg.peer_exchange.tsig {
        Some(k) => Some(crate::peer::client::tsigner(k).map_err(|e| start_err(1, format!("TSIG: {e}")))?),
        None => None,
    };
    let peer_tls = match &cfg.peer_exchange.tls {
        Some(t) => {
            Some(crate::peer::client::tls_connector(t).map_err(|e| start_err(1, format!("peer TLS: {e}")))?)
        }
        None => None,
    };
    let (notify_in_tx, notify_in_rx) = mpsc::channel(256);
    let (notify_out_tx, notify_out_rx) = mpsc::channel(64);
    let auth = Arc::new(crate::dns::server::PeerAuth {
        sources: Default::default(),
        tsig,
        notify_tx: Some(notify_in_tx),
    });
    let shared = Shared {
        snapshot: snapshot.clone(),
        geo: geo.clone(),
        metrics: metrics.clone(),
        peers: auth.clone(),
    };

    // bind everything before starting anything, so a taken port fails fast
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut bound = Bound {
        dns: Vec::new(),
        dot: None,
        admin: cfg.metrics_address,
    };
    for addr in &cfg.dns_addresses {
        // UDP and TCP share one port. With port 0 the kernel picks it for UDP,
        // and TCP may find it taken: pick again (a few times) in that case.
        let attempts = if addr.port() == 0 { 10 } else { 1 };
        let mut attempt = 0;
        let (sockets, b, listener) = loop {
            attempt += 1;
            let (sockets, b) = server::bind_udp(*addr, workers)
                .map_err(|e| start_err(1, format!("DNS_ADDRESS: cannot bind UDP {addr}: {e}")))?;
            match server::bind_tcp(b) {
                Ok(l) => break (sockets, b, l),
                Err(e) if attempt < attempts && e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(start_err(1, format!("DNS_ADDRESS: cannot bind TCP {b}: {e}"))),
            }
        };
        udp.extend(sockets);
        tcp.push(tokio::net::TcpListener::from_std(listener).map_err(|e| start_err(1, e.to_string()))?);
        bound.dns.push(b);
    }
    let dot_listener = match &cfg.dot {
        Some(d) => {
            let l = server::bind_tcp(d.address)
                .map_err(|e| start_err(1, format!("DOT_ADDRESS: cannot bind {}: {e}", d.address)))?;
            bound.dot = l.local_addr().ok();
            Some(tokio::net::TcpListener::from_std(l).map_err(|e| start_err(1, e.to_string()))?)
        }
        None => None,
    };
    let admin = tokio::net::TcpListener::bind(cfg.metrics_address)
        .await
        .map_err(|e| {
            start_err(
                1,
                format!("METRICS_ADDRESS: cannot bind {}: {e}", cfg.metrics_address),
            )
        })?;
    bound.admin = admin.local_addr().unwrap_or(cfg.metrics_address);

    // Kubernetes mode (no config file): the API client must work now
    let kube_client = if cfg.config_file.is_none() {
        Some(kube::Client::try_default().await.map_err(|e| {
            start_err(
                1,
                format!("Kubernetes mode (no --config): cannot build an API client from the in-cluster config or KUBECONFIG: {e}"),
            )
        })?)
    } else {
        None
    };

    // the engine and its sources
    let (tx, rx) = mpsc::channel::<Event>(1024);
    let (answers_tx, answers_rx) = mpsc::channel::<String>(1024);
    let (live_peers_tx, live_peers_rx) = tokio::sync::watch::channel(crate::delegation::PeerAddresses::new());
    let (delegation_sink, outcomes_rx) = crate::delegation::StatusSink::new();
    if cfg.extdns_enabled && kube_client.is_none() {
        tracing::warn!(
            "EXTDNS_ENABLED needs Kubernetes mode (DNSEndpoint resources); ignored in standalone mode"
        );
    }
    let (health_tx, mut health_rx) = mpsc::channel(1024);
    let prober = Prober::new(health_tx, cancel.child_token());
    // standalone: ready once the first snapshot is out; Kubernetes mode:
    // once the controller has applied the first complete list of Gslbs
    let engine_ready = match kube_client {
        Some(_) => Arc::new(AtomicBool::new(false)),
        None => ready.clone(),
    };
    let engine = Engine::new(
        cfg.clone(),
        Outputs {
            snapshot,
            geo: geo.clone(),
            metrics: metrics.clone(),
            ready: engine_ready,
        },
        prober,
        Some(notify_out_tx),
    )
    .with_answer_changes(answers_tx)
    .with_live_peers(live_peers_tx);
    let served_hosts = engine.served_hosts();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(engine.run(rx, cancel.clone()));
    {
        let tx = tx.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = health_rx.recv() => ev,
                };
                let Some(ev) = ev else { return };
                if tx.send(Event::Health(ev)).await.is_err() {
                    return;
                }
            }
        });
    }
    let (cfg_tx, cfg_rx) = tokio::sync::watch::channel(Arc::new(cfg.clone()));
    tasks.spawn(crate::peer::run(
        crate::peer::Channels {
            config: cfg_rx,
            hosts: served_hosts,
            notify_in: notify_in_rx,
            notify_out: notify_out_rx,
            events: tx.clone(),
        },
        auth.clone(),
        metrics.clone(),
        peer_tls,
        cancel.clone(),
    ));
    if let Some(path) = cfg.config_file.clone() {
        tasks.spawn(watch_config(
            args,
            path,
            cfg.clone(),
            tx.clone(),
            cfg_tx,
            metrics.clone(),
            cancel.clone(),
        ));
    }
    let (cluster_ips_tx, cluster_ips_rx) = tokio::sync::watch::channel(cfg.exposed_dns_ips());
    if let Some(client) = kube_client.clone() {
        // ZoneDelegation status, and the ExternalDNS writer when enabled
        tasks.spawn(crate::delegation::status::run_status(
            client.clone(),
            cfg.clone(),
            outcomes_rx,
            live_peers_rx.clone(),
            cluster_ips_rx.clone(),
            cancel.clone(),
        ));
        if cfg.extdns_enabled {
            let live = crate::delegation::status::live_geotags(live_peers_rx.clone(), cancel.clone());
            tasks.spawn(crate::delegation::extdns::run_extdns(
                client.clone(),
                cfg.clone(),
                live,
                cluster_ips_rx.clone(),
                delegation_sink.clone(),
                metrics.clone(),
                cancel.clone(),
            ));
        }
    }
    if let Some(client) = kube_client {
        let cfg = Arc::new(cfg.clone());
        let tx = tx.clone();
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        let io = crate::controller::Io {
            engine: tx,
            answers: answers_rx,
            cluster_ips: cluster_ips_tx,
            ready: ready.clone(),
        };
        tasks.spawn(async move {
            if let Err(e) = crate::controller::run(client, cfg, io, metrics, cancel.clone()).await {
                // without the controller nothing is served right: stop
                tracing::error!("Kubernetes controller: {e}");
                cancel.cancel();
            }
        });
    }
    if let Some(path) = cfg.geoip.database.clone() {
        let (geo_tx, mut geo_rx) = mpsc::channel(4);
        tasks.spawn(geoip::watch(
            path,
            cfg.geoip.fields.clone(),
            geo.clone(),
            geo_tx,
            cancel.clone(),
        ));
        let tx = tx.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            loop {
                let got = tokio::select! {
                    _ = cancel.cancelled() => return,
                    got = geo_rx.recv() => got,
                };
                if got.is_none() || tx.send(Event::GeoReloaded).await.is_err() {
                    return;
                }
            }
        });
    }
    if let Some(d) = &cfg.delegation {
        let signer =
            crate::peer::client::tsigner(&d.tsig).map_err(|e| start_err(1, format!("RFC 2136 TSIG: {e}")))?;
        let first = &cfg.edge_dns_servers[0];
        let server = tokio::net::lookup_host((first.host.as_str(), first.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| start_err(1, format!("EDGE_DNS_SERVERS: cannot resolve {first}")))?;
        let edge = crate::delegation::Edge {
            server,
            signer,
            timeout: std::time::Duration::from_secs(5),
        };
        tasks.spawn(crate::delegation::run_with_status(
            cfg.clone(),
            edge,
            cluster_ips_rx.clone(),
            metrics.clone(),
            delegation_sink.clone(),
            cancel.clone(),
        ));
    }
    let limits = StreamLimits::default();
    for l in tcp {
        tasks.spawn(server::serve_tcp(l, shared.clone(), limits, cancel.clone()));
    }
    if let (Some(l), Some(tc), Some(d)) = (dot_listener, tls_config, &cfg.dot) {
        tasks.spawn(tls::watch(
            d.cert_file.clone(),
            d.key_file.clone(),
            d.client_ca_file.clone(),
            tc.clone(),
            POLL,
            cancel.clone(),
        ));
        tasks.spawn(server::serve_tls(l, tc, shared.clone(), limits, cancel.clone()));
    }
    {
        let metrics = metrics.clone();
        let ready = ready.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::admin::serve(admin, metrics, ready, cancel).await {
                tracing::error!("admin server stopped: {e}");
            }
        });
    }
    let stop_udp = Arc::new(AtomicBool::new(false));
    let udp_threads = server::spawn_udp(udp, shared, stop_udp.clone())
        .map_err(|e| start_err(1, format!("cannot start UDP workers: {e}")))?;
    drop(tx);
    let list = |v: &[SocketAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    tracing::info!(
        dns = %list(&bound.dns),
        dot = %bound.dot.map(|a| a.to_string()).unwrap_or_default(),
        admin = %bound.admin,
        "listening"
    );

    tokio::select! {
        _ = wait_for_signal() => {}
        // a task that cannot go on (the controller) cancelled everything
        _ = cancel.cancelled() => {}
    }
    let failed = cancel.is_cancelled();
    tracing::info!(grace = ?cfg.shutdown_grace, "shutting down");
    ready.store(false, Ordering::Release);
    cancel.cancel();
    stop_udp.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + cfg.shutdown_grace;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    remaining = tasks.len(),
                    "grace period over, aborting the remaining tasks"
                );
                tasks.abort_all();
                break;
            }
        }
    }
    let udp_join = tokio::task::spawn_blocking(move || {
        for t in udp_threads {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), udp_join).await;
    tracing::info!("stopped");
    if failed {
        return Err(start_err(1, "stopped after a fatal error (see the log above)"));
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Settings that only apply at start-up.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.dns_addresses != new.dns_addresses {
        out.push("dnsAddress");
    }
    if old.dot != new.dot {
        out.push("dot");
    }
    if old.metrics_address != new.metrics_address {
        out.push("metricsAddress");
    }
    if old.log != new.log {
        out.push("log");
    }
    if old.geoip != new.geoip {
        out.push("geoip");
    }
    // peer tasks, the TLS connector and the TSIG key are built at start-up
    let (a, b) = (&old.peer_exchange, &new.peer_exchange);
    if a.transport != b.transport || a.tls != b.tls || a.tsig != b.tsig {
        out.push("peerExchange transport, tls or tsig");
    }
    if a.heartbeat != b.heartbeat || old.reconcile_requeue_seconds != new.reconcile_requeue_seconds {
        out.push("peerExchange.heartbeatSeconds / reconcileRequeueSeconds");
    }
    if old.delegation != new.delegation || old.edge_dns_servers != new.edge_dns_servers {
        out.push("delegation / edgeDNSServers");
    }
    out
}

/// Re-reads the config file when it changes; a broken edit is logged and the
/// last good configuration keeps serving.
async fn watch_config(
    args: ConfigArgs,
    path: PathBuf,
    mut current: Config,
    tx: mpsc::Sender<Event>,
    cfg_tx: tokio::sync::watch::Sender<Arc<Config>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut last = FileStamp::of(&path);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = FileStamp::of(&path);
        if now == last {
            continue;
        }
        last = now;
        match config::load(&args) {
            Ok(cfg) => {
                let ignored = restart_only_changes(&current, &cfg);
                if !ignored.is_empty() {
                    tracing::warn!(settings = ?ignored, "changed settings take effect only after a restart");
                }
                for w in &cfg.warnings {
                    tracing::warn!("{w}");
                }
                metrics.config_reload(true);
                tracing::info!(file = %path.display(), "config file reloaded");
                current = cfg.clone();
                cfg_tx.send_replace(Arc::new(cfg.clone()));
                if tx.send(Event::Config(Box::new(cfg))).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                metrics.config_reload(false);
                tracing::error!("config reload rejected, keeping the last good configuration: {e}");
            }
        }
    }
}
