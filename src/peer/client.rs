//! Talking to one peer's DNS server: a query or a NOTIFY over UDP (TCP when
//! truncated) or DNS-over-TLS, optionally TSIG-signed, retried with backoff
//! and jitter. Messages are built and parsed with hickory-proto; the
//! transports are small and ours so that the source address, the TLS
//! configuration (private CA, client certificate) and connection reuse are
//! under our control.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RecordType, TSigner};
use rustls::pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{PeerExchange, PeerTransport, TsigAlgorithm as CfgAlg, TsigKey};

/// Why an exchange failed. Only transport failures count against liveness.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("bad response: {0}")]
    BadResponse(String),
    #[error("TSIG: {0}")]
    Tsig(String),
}

/// Where a peer answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// UDP/TCP address.
    pub dns: SocketAddr,
    /// DoT address and the name its certificate must carry.
    pub dot: SocketAddr,
    pub server_name: ServerName<'static>,
}

/// Builds the TSIG signer for a configured key.
pub fn tsigner(key: &TsigKey) -> Result<TSigner, String> {
    let alg = match key.algorithm {
        CfgAlg::HmacSha256 => TsigAlgorithm::HmacSha256,
        CfgAlg::HmacSha512 => TsigAlgorithm::HmacSha512,
    };
    let name = Name::from_ascii(&key.name).map_err(|e| format!("TSIG key name {:?}: {e}", key.name))?;
    TSigner::new(key.secret.clone(), alg, name, 300).map_err(|e| format!("TSIG key {:?}: {e}", key.name))
}

/// Loads the DoT client configuration: the CA that signs peers' certificates
/// and, for mutual TLS, our client certificate.
pub fn tls_connector(cfg: &crate::config::PeerTls) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cas =
        CertificateDer::pem_file_iter(&cfg.ca_file).map_err(|e| format!("{}: {e}", cfg.ca_file.display()))?;
    for ca in cas {
        let ca = ca.map_err(|e| format!("{}: {e}", cfg.ca_file.display()))?;
        roots
            .add(ca)
            .map_err(|e| format!("{}: {e}", cfg.ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate found", cfg.ca_file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &cfg.client_cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"dot".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A client for one peer, owned by that peer's task (it caches one DoT connection).
pub struct PeerClient {
    transport: PeerTransport,
    timeout: Duration,
    source_ips: Vec<IpAddr>,
    tls: Option<TlsConnector>,
    tsig: Option<TSigner>,
    dot_conn: Option<TlsStream<TcpStream>>,
}

/// Our source address for `target`: the first configured one of its family.
fn source_for(target: SocketAddr, sources: &[IpAddr]) -> Option<IpAddr> {
    sources
        .iter()
        .copied()
        .find(|ip| ip.is_ipv4() == target.is_ipv4())
}

fn local_for(target: SocketAddr, sources: &[IpAddr]) -> SocketAddr {
    match (source_for(target, sources), target) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        (None, SocketAddr::V6(_)) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

impl PeerClient {
    pub fn new(cfg: &PeerExchange, tls: Option<TlsConnector>, tsig: Option<TSigner>) -> PeerClient {
        PeerClient {
            transport: cfg.transport,
            timeout: cfg.timeout,
            source_ips: cfg.source_ips.clone(),
            tls,
            tsig,
            dot_conn: None,
        }
    }

    /// A plain UDP client without TLS or TSIG (for the edge DNS).
    pub fn plain(timeout: Duration, source_ips: Vec<IpAddr>) -> PeerClient {
        PeerClient {
            transport: PeerTransport::Udp,
            timeout,
            source_ips,
            tls: None,
            tsig: None,
            dot_conn: None,
        }
    }

    /// One query, retried (two more attempts, 25–250 ms apart with jitter)
    /// on transport failures. DNS error codes are answers, not failures.
    pub async fn query(
        &mut self,
        ep: &Endpoint,
        name: &Name,
        rtype: RecordType,
        rd: bool,
    ) -> Result<Message, ExchangeError> {
        let make = || {
            let mut msg = Message::query();
            msg.metadata.recursion_desired = rd;
            msg.add_query(Query::query(name.clone(), rtype));
            msg
        };
        self.with_retries(ep, make).await
    }

    /// One attempt, no retry: a heartbeat, where a lost packet is one missed
    /// check (absorbed by the grace) and must not stretch the period.
    pub async fn query_once(
        &mut self,
        ep: &Endpoint,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Message, ExchangeError> {
        let mut msg = Message::query();
        msg.add_query(Query::query(name.clone(), rtype));
        self.exchange_once_owned(ep.clone(), msg).await
    }

    /// Sends a NOTIFY for `zone` (RFC 1996), retried like a query.
    pub async fn notify(&mut self, ep: &Endpoint, zone: &Name) -> Result<Message, ExchangeError> {
        let make = || {
            let mut msg = Message::new(0, MessageType::Query, OpCode::Notify);
            msg.metadata.authoritative = true;
            msg.add_query(Query::query(zone.clone(), RecordType::SOA));
            msg
        };
        self.with_retries(ep, make).await
    }

    /// Runs attempts with backon's exponential backoff and jitter. We drive
    /// the backoff iterator ourselves rather than `Retryable`, because every
    /// attempt borrows the client mutably (it may reuse its DoT connection).
    /// TLS and TSIG failures are not retried: they will not heal in 250 ms.
    async fn with_retries(
        &mut self,
        ep: &Endpoint,
        make: impl Fn() -> Message,
    ) -> Result<Message, ExchangeError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_millis(250))
            .with_max_times(2)
            .with_jitter()
            .build();
        loop {
            let r = self.exchange_once_owned(ep.clone(), make()).await;
            match &r {
                Ok(_) | Err(ExchangeError::Tsig(_)) | Err(ExchangeError::Tls(_)) => return r,
                Err(_) => match delays.next() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return r,
                },
            }
        }
    }

    async fn exchange_once_owned(
        &mut self,
        ep: Endpoint,
        mut msg: Message,
    ) -> Result<Message, ExchangeError> {
        msg.metadata.id = rand::random();
        let mut verifier = None;
        if let Some(signer) = &self.tsig {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (record, v) = signer
                .sign_message(&msg, now)
                .map_err(|e| ExchangeError::Tsig(e.to_string()))?;
            msg.set_signature(record);
            verifier = v;
        }
        let bytes = msg
            .to_vec()
            .map_err(|e| ExchangeError::BadResponse(e.to_string()))?;
        let raw = match self.transport {
            PeerTransport::Udp => {
                let raw = self.udp(ep.dns, &bytes).await?;
                let truncated = raw.len() > 2 && raw[2] & 0x02 != 0;
                if truncated {
                    self.tcp(ep.dns, &bytes).await?
                } else {
                    raw
                }
            }
            PeerTransport::Dot => self.dot(&ep, &bytes).await?,
        };
        let response = match &mut verifier {
            Some(v) => {
                v.verify(&raw)
                    .map_err(|e| ExchangeError::Tsig(format!("reply not signed with our key: {e}")))?;
                Message::from_vec(&raw).map_err(|e| ExchangeError::BadResponse(e.to_string()))?
            }
            None => Message::from_vec(&raw).map_err(|e| ExchangeError::BadResponse(e.to_string()))?,
        };
        if response.metadata.id != msg.metadata.id || response.metadata.message_type != MessageType::Response
        {
            return Err(ExchangeError::BadResponse("id or QR mismatch".into()));
        }
        if response.queries.first().map(|q| q.name()) != msg.queries.first().map(|q| q.name()) {
            return Err(ExchangeError::BadResponse("question mismatch".into()));
        }
        Ok(response)
    }

    async fn udp(&self, to: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        let io = |e: std::io::Error| ExchangeError::Io(format!("{to}: {e}"));
        let sock = UdpSocket::bind(local_for(to, &self.source_ips))
            .await
            .map_err(io)?;
        sock.connect(to).await.map_err(io)?;
        sock.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 65_535];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
                .await
                .map_err(|_| ExchangeError::Timeout(self.timeout))?
                .map_err(io)?;
            // ignore stray datagrams with another ID
            if n >= 12 && buf[..2] == bytes[..2] {
                return Ok(buf[..n].to_vec());
            }
        }
    }

    async fn connect_tcp(&self, to: SocketAddr) -> Result<TcpStream, ExchangeError> {
        let io = |e: std::io::Error| ExchangeError::Io(format!("{to}: {e}"));
        let socket = if to.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(io)?;
        if let Some(ip) = source_for(to, &self.source_ips) {
            socket.bind(SocketAddr::new(ip, 0)).map_err(io)?;
        }
        let stream = tokio::time::timeout(self.timeout, socket.connect(to))
            .await
            .map_err(|_| ExchangeError::Timeout(self.timeout))?
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn tcp(&self, to: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        let mut stream = self.connect_tcp(to).await?;
        tokio::time::timeout(self.timeout, framed_exchange(&mut stream, bytes))
            .await
            .map_err(|_| ExchangeError::Timeout(self.timeout))?
            .map_err(|e| ExchangeError::Io(format!("{to}: {e}")))
    }

    async fn dot(&mut self, ep: &Endpoint, bytes: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        // reuse the cached connection; on any failure, reconnect once
        if let Some(mut conn) = self.dot_conn.take()
            && let Ok(Ok(raw)) = tokio::time::timeout(self.timeout, framed_exchange(&mut conn, bytes)).await
        {
            self.dot_conn = Some(conn);
            return Ok(raw);
        }
        let connector = self
            .tls
            .clone()
            .ok_or_else(|| ExchangeError::Tls("no TLS configuration".into()))?;
        let tcp = self.connect_tcp(ep.dot).await?;
        let mut conn = tokio::time::timeout(self.timeout * 4, connector.connect(ep.server_name.clone(), tcp))
            .await
            .map_err(|_| ExchangeError::Timeout(self.timeout * 4))?
            .map_err(|e| {
                ExchangeError::Tls(format!("{} ({}): {e}", ep.dot, server_name_str(&ep.server_name)))
            })?;
        let raw = tokio::time::timeout(self.timeout, framed_exchange(&mut conn, bytes))
            .await
            .map_err(|_| ExchangeError::Timeout(self.timeout))?
            .map_err(|e| ExchangeError::Io(format!("{}: {e}", ep.dot)))?;
        self.dot_conn = Some(conn);
        Ok(raw)
    }
}

fn server_name_str(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => "?".to_string(),
    }
}

async fn framed_exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(bytes.len()).map_err(|_| std::io::Error::other("message too long"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    loop {
        let n = stream.read_u16().await? as usize;
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).await?;
        if buf.len() >= 2 && buf[..2] == bytes[..2] {
            return Ok(buf);
        }
    }
}
