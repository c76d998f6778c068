//! The DNS listeners. UDP runs on dedicated threads, one `SO_REUSEPORT`
//! socket per worker, with blocking receive: the lowest-overhead loop for the
//! bulk of DNS traffic. TCP and DNS-over-TLS run on tokio, one task per
//! connection, with idle, read and write timeouts and a connection limit, so
//! slow or hostile clients cannot pin the listener. Every transport answers
//! through [`wire::respond`] from the current snapshot; nothing here awaits
//! while holding a snapshot.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::rr::{TSigResponseContext, TSigner};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::snapshot::Snapshot;
use super::wire::{self, Outcome, QueryCtx, Scratch, Transport};
use crate::core::names::GeoTag;
use crate::geoip::SharedGeoDb;
use crate::metrics::{self, DnsStats, Metrics};

/// What every listener reads.
#[derive(Clone)]
pub struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub geo: SharedGeoDb,
    pub metrics: Arc<Metrics>,
    pub peers: Arc<PeerAuth>,
}

/// A NOTIFY accepted from a peer: re-query it (or every peer when only the
/// TSIG key, not the source address, identifies the sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyIn {
    pub zone: String,
    pub from: IpAddr,
    pub peer: Option<GeoTag>,
}

/// Who may send us NOTIFY and peer queries.
#[derive(Default)]
pub struct PeerAuth {
    /// Peer addresses (static and discovered), kept current by the peer manager.
    pub sources: ArcSwap<HashMap<IpAddr, GeoTag>>,
    /// When set, `localtargets-` queries and NOTIFY must be signed with it,
    /// and signed messages get signed replies.
    pub tsig: Option<TSigner>,
    /// Where accepted NOTIFY messages go.
    pub notify_tx: Option<mpsc::Sender<NotifyIn>>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks a TSIG-signed message. Returns the request MAC for signing the reply.
fn verify_tsig(signer: &TSigner, query: &[u8]) -> Result<Vec<u8>, (bool, String)> {
    let (mac, _time, valid) = signer.verify_message_byte(query, None, true).map_err(|e| {
        let wrong_key = matches!(e, hickory_proto::dnssec::DnsSecError::TsigWrongKey);
        (wrong_key, e.to_string())
    })?;
    if !valid.contains(&unix_now()) {
        return Err((false, "signature time outside the fudge window".into()));
    }
    Ok(mac)
}

/// Appends the unsigned TSIG error record RFC 8945 §5.2 asks for: BADKEY
/// for a key we do not have, BADSIG otherwise.
fn append_tsig_error(signer: &TSigner, query: &[u8], wrong_key: bool, out: &mut Vec<u8>) {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    if out.len() < 12 {
        return;
    }
    let id = u16::from_be_bytes([out[0], out[1]]);
    let ctx = if wrong_key {
        let Some(name) = hickory_proto::op::Message::from_vec(query)
            .ok()
            .and_then(|m| m.signature().map(|s| s.name.clone()))
        else {
            return;
        };
        TSigResponseContext::unknown_key(id, unix_now(), name)
    } else {
        TSigResponseContext::bad_signature(id, unix_now(), signer.clone())
    };
    let Ok(record) = ctx.sign(out) else { return };
    let mut buf = Vec::new();
    if record.emit(&mut BinEncoder::new(&mut buf)).is_ok() {
        out.extend_from_slice(&buf);
        let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
        out[10..12].copy_from_slice(&ar.to_be_bytes());
    }
}

/// Appends a TSIG record signing `out` (a reply to a signed request).
fn sign_reply(signer: &TSigner, request_mac: Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    let id = u16::from_be_bytes([out[0], out[1]]);
    let ctx = TSigResponseContext::new(id, unix_now(), signer.clone(), request_mac, None);
    let record = ctx.sign(out).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    record
        .emit(&mut BinEncoder::new(&mut buf))
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&buf);
    let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
    Ok(())
}

/// Timeouts and limits of the stream transports.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Close a connection idle this long between queries (RFC 7766 §6.2.3).
    pub idle: Duration,
    /// A started message must arrive completely within this time.
    pub read: Duration,
    pub write: Duration,
    pub handshake: Duration,
    pub max_connections: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            idle: Duration::from_secs(10),
            read: Duration::from_secs(5),
            write: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
            max_connections: 1024,
        }
    }
}

fn client_ip(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

fn metric_transport(t: Transport) -> metrics::Transport {
    match t {
        Transport::Udp => metrics::Transport::Udp,
        Transport::Tcp => metrics::Transport::Tcp,
        Transport::Tls => metrics::Transport::Tls,
    }
}

/// Answers one message, recording metrics. Returns false when it was dropped.
fn answer(
    shared: &Shared,
    stats: &DnsStats,
    query: &[u8],
    ctx: &QueryCtx,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> bool {
    let start = Instant::now();
    let auth = &shared.peers;
    // TSIG, when configured: verify signed messages, refuse unsigned peer traffic
    let mut request_mac = None;
    if let Some(signer) = &auth.tsig
        && let Some(class) = wire::classify(query)
    {
        if class.tsig {
            match verify_tsig(signer, query) {
                Ok(mac) => request_mac = Some(mac),
                Err((wrong_key, e)) => {
                    tracing::debug!(client = %ctx.client, "TSIG verification failed: {e}");
                    let o = wire::reply_with_rcode(query, wire::RCODE_NOTAUTH, out);
                    append_tsig_error(signer, query, wrong_key, out);
                    return finish(o, stats, ctx, start);
                }
            }
        } else if class.localtargets || class.notify {
            tracing::debug!(client = %ctx.client, "unsigned peer message refused (TSIG required)");
            if class.notify {
                shared.metrics.notify_received(false);
            }
            let o = wire::reply_with_rcode(query, wire::RCODE_REFUSED, out);
            return finish(o, stats, ctx, start);
        }
    }
    let snap = shared.snapshot.load();
    let geo = shared.geo.load();
    // leave room for the TSIG record we append to a signed reply (RFC 8945 §5.3)
    let signed_ctx;
    let ctx = match (&auth.tsig, &request_mac) {
        (Some(signer), Some(_)) => {
            signed_ctx = QueryCtx {
                reserve: signer.signer_name().to_ascii().len() + 130,
                ..*ctx
            };
            &signed_ctx
        }
        _ => ctx,
    };
    let mut outcome = wire::respond(&snap, geo.as_deref(), query, ctx, scratch, out);
    if let Outcome::Notify { zone } = outcome {
        let zone = snap
            .zones
            .get(zone as usize)
            .map(|z| z.name.clone())
            .unwrap_or_default();
        let peer = auth.sources.load().get(&ctx.client).cloned();
        let known = peer.is_some() || request_mac.is_some();
        shared.metrics.notify_received(known);
        if known {
            if let Some(tx) = &auth.notify_tx {
                // never wait on the query path: a full queue means a sync is already due
                let _ = tx.try_send(NotifyIn {
                    zone,
                    from: ctx.client,
                    peer,
                });
            }
        } else {
            tracing::debug!(client = %ctx.client, zone, "NOTIFY from an unknown source ignored");
            wire::set_rcode(out, wire::RCODE_REFUSED);
        }
        outcome = Outcome::Reply {
            qtype: super::snapshot::TYPE_SOA,
            rcode: if known {
                wire::RCODE_NOERROR
            } else {
                wire::RCODE_REFUSED
            },
        };
    }
    if let (Some(signer), Some(mac), Outcome::Reply { .. }) = (&auth.tsig, request_mac, outcome)
        && let Err(e) = sign_reply(signer, mac, out)
    {
        tracing::warn!("cannot sign a TSIG reply: {e}");
    }
    finish(outcome, stats, ctx, start)
}

fn finish(outcome: Outcome, stats: &DnsStats, ctx: &QueryCtx, start: Instant) -> bool {
    match outcome {
        Outcome::Reply { qtype, rcode } => {
            stats.record(metric_transport(ctx.transport), qtype, rcode, start.elapsed());
            true
        }
        Outcome::Notify { .. } => true,
        Outcome::Drop => {
            stats.dropped(metric_transport(ctx.transport));
            false
        }
    }
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // a larger receive buffer absorbs bursts; the kernel caps it quietly
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket.into())
}

/// Binds `workers` UDP sockets on `addr` (all on the same port, even when
/// `addr` asks for port 0) and returns them with the bound address.
pub fn bind_udp(addr: SocketAddr, workers: usize) -> io::Result<(Vec<UdpSocket>, SocketAddr)> {
    let first = udp_socket(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(udp_socket(bound)?);
    }
    Ok((sockets, bound))
}

/// Runs one thread per socket until `stop` is set (checked at least every 200 ms).
pub fn spawn_udp(
    sockets: Vec<UdpSocket>,
    shared: Shared,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let shared = shared.clone();
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || udp_worker(sock, shared, stop))?;
        handles.push(handle);
    }
    Ok(handles)
}

fn udp_worker(sock: UdpSocket, shared: Shared, stop: Arc<AtomicBool>) {
    let stats = shared.metrics.dns_worker();
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    let mut scratch = Scratch::default();
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        let ctx = QueryCtx {
            client: client_ip(src),
            transport: Transport::Udp,
            reserve: 0,
        };
        if answer(&shared, &stats, &buf[..n], &ctx, &mut scratch, &mut out)
            && let Err(e) = sock.send_to(&out, src)
        {
            tracing::debug!(client = %src, "udp send: {e}");
        }
    }
}

/// Binds a TCP listener (used for plain TCP and for DoT).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts connections until `cancel` fires, at most `limits.max_connections`
/// at once (more are closed at once), and hands each to `serve`.
async fn accept_loop<F>(
    listener: TcpListener,
    what: &'static str,
    limits: StreamLimits,
    cancel: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("{what} accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(client = %peer, "{what} connection limit reached, closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        serve(stream, peer, permit);
    }
}

/// Serves DNS over TCP until `cancel` fires.
pub async fn serve_tcp(
    listener: TcpListener,
    shared: Shared,
    limits: StreamLimits,
    cancel: CancellationToken,
) {
    // one recorder for all connections: registering one per connection would grow without bound
    let stats = shared.metrics.dns_worker();
    let stop = cancel.clone();
    accept_loop(listener, "tcp", limits, stop, move |stream, peer, permit| {
        let (shared, cancel, stats) = (shared.clone(), cancel.clone(), stats.clone());
        tokio::spawn(async move {
            serve_stream(stream, &stats, peer, Transport::Tcp, &shared, limits, &cancel).await;
            drop(permit);
        });
    })
    .await;
}

/// Serves DNS over TLS until `cancel` fires; the configuration is read per
/// connection, so a reloaded certificate applies to new connections.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ArcSwap<rustls::ServerConfig>>,
    shared: Shared,
    limits: StreamLimits,
    cancel: CancellationToken,
) {
    let stats = shared.metrics.dns_worker();
    let stop = cancel.clone();
    accept_loop(listener, "tls", limits, stop, move |stream, peer, permit| {
        let acceptor = tokio_rustls::TlsAcceptor::from(config.load_full());
        let (shared, cancel, stats) = (shared.clone(), cancel.clone(), stats.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(limits.handshake, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    serve_stream(tls, &stats, peer, Transport::Tls, &shared, limits, &cancel).await
                }
                Ok(Err(e)) => tracing::debug!(client = %peer, "tls handshake failed: {e}"),
                Err(_) => tracing::debug!(client = %peer, "tls handshake timed out"),
            }
            drop(permit);
        });
    })
    .await;
}

/// RFC 1035 §4.2.2 framing: a two-byte length, then the message; several
/// queries per connection, answered in order.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    stats: &DnsStats,
    peer: SocketAddr,
    transport: Transport,
    shared: &Shared,
    limits: StreamLimits,
    cancel: &CancellationToken,
) {
    let ctx = QueryCtx {
        client: client_ip(peer),
        transport,
        reserve: 0,
    };
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(1024);
    let mut scratch = Scratch::default();
    loop {
        let len = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(limits.idle, stream.read_u16()) => match r {
                Ok(Ok(len)) => len as usize,
                _ => break, // idle, closed or broken
            },
        };
        buf.resize(len, 0);
        match tokio::time::timeout(limits.read, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => break, // a length prefix the client does not honour
        }
        if !answer(shared, stats, &buf, &ctx, &mut scratch, &mut out) {
            break;
        }
        let Ok(len) = u16::try_from(out.len()) else {
            break; // cannot be framed (a signed reply at the 64 KiB limit)
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&out);
        match tokio::time::timeout(limits.write, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}
