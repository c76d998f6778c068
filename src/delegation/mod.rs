//! Native zone delegation: keeps this cluster's NS record and glue in the
//! edge (parent) zone with RFC 2136 dynamic updates signed with TSIG.
//! Reads what the edge holds, plans the difference with the pure planner
//! (`core::delegation`) and sends it as one update whose prerequisite is the
//! NS RRset as read; when another cluster changed it meanwhile, the update
//! fails (YXRRSET/NXRRSET) and we read and plan again. Failures are retried
//! with backoff and never remove records.
//!
//! [`extdns`] is the other provider: a `DNSEndpoint` per zone for
//! ExternalDNS. Both report each zone's outcome into a [`StatusSink`];
//! [`status`] keeps the ZoneDelegation resources and their status.

pub mod extdns;
pub mod status;

pub use status::{DelegationOutcome, Outcomes, PeerAddresses, Reason, StatusSink};

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA, NS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Zone};
use crate::core::delegation::{self, Change, Desired, EdgeView, Plan};

/// Why talking to the edge failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EdgeError {
    #[error("edge {0}: {1}")]
    Transport(SocketAddr, String),
    #[error("edge {0}: timed out after {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("edge refused the update: {0}")]
    Refused(String),
    #[error(
        "edge answered NOTAUTH: it is not authoritative for the parent zone, or does not accept our key (check RFC2136_TSIG_KEY_NAME)"
    )]
    NotAuth,
    #[error("edge rejected our TSIG signature ({1}): check RFC2136_TSIG_KEY_NAME and the secret")]
    Tsig(TsigFailure, String),
    #[error("the NS RRset changed while we updated it")]
    Concurrent,
}

/// The TSIG error class of a rejected exchange (RFC 8945 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigFailure {
    /// BADKEY: the edge does not know our key name or algorithm.
    BadKey,
    /// BADSIG: the key name is known, the secret differs.
    BadSig,
    /// BADTIME: our clock and the edge's differ by more than the fudge.
    BadTime,
    /// Signing failed here, or the edge's reply is not signed with our key.
    Other,
}

impl EdgeError {
    /// The status condition reason of this failure.
    pub fn reason(&self) -> Reason {
        match self {
            EdgeError::Transport(..) => Reason::EdgeUnreachable,
            EdgeError::Timeout(..) => Reason::EdgeTimeout,
            EdgeError::Refused(_) => Reason::EdgeRefused,
            EdgeError::NotAuth => Reason::EdgeNotAuth,
            EdgeError::Tsig(TsigFailure::BadKey, _) => Reason::TsigBadKey,
            EdgeError::Tsig(TsigFailure::BadSig, _) => Reason::TsigBadSig,
            EdgeError::Tsig(TsigFailure::BadTime, _) => Reason::TsigBadTime,
            EdgeError::Tsig(TsigFailure::Other, _) => Reason::TsigError,
            EdgeError::Concurrent => Reason::PrerequisiteFailed,
        }
    }
}

/// NOTAUTH: with a TSIG error in the reply, our key was rejected; without,
/// the edge is not authoritative (or ignores the key).
fn not_auth(reply: &Message) -> EdgeError {
    use hickory_proto::rr::rdata::tsig::TsigError;
    match reply.signature().and_then(|s| s.data.error) {
        Some(TsigError::BadKey) => EdgeError::Tsig(TsigFailure::BadKey, "BADKEY".into()),
        Some(TsigError::BadSig) => EdgeError::Tsig(TsigFailure::BadSig, "BADSIG".into()),
        Some(TsigError::BadTime) => EdgeError::Tsig(TsigFailure::BadTime, "BADTIME".into()),
        Some(other) => EdgeError::Tsig(TsigFailure::Other, format!("{other:?}")),
        None => EdgeError::NotAuth,
    }
}

/// A client for the edge server.
pub struct Edge {
    pub server: SocketAddr,
    pub signer: TSigner,
    pub timeout: Duration,
}

fn name(s: &str) -> Result<Name, EdgeError> {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.')))
        .map_err(|e| EdgeError::Refused(format!("invalid name {s:?}: {e}")))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Edge {
    /// One exchange over TCP (updates and answers can be large).
    async fn exchange(&self, mut msg: Message, sign: bool) -> Result<Message, EdgeError> {
        let t = |e: String| EdgeError::Transport(self.server, e);
        msg.metadata.id = rand::random();
        let mut verifier = None;
        if sign {
            let (rec, v) = self
                .signer
                .sign_message(&msg, unix_now())
                .map_err(|e| EdgeError::Tsig(TsigFailure::Other, e.to_string()))?;
            msg.set_signature(rec);
            verifier = v;
        }
        let bytes = msg.to_vec().map_err(|e| t(e.to_string()))?;
        let io = async {
            let mut s = TcpStream::connect(self.server).await?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            s.write_all(&framed).await?;
            let n = s.read_u16().await? as usize;
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let raw = tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| EdgeError::Timeout(self.server, self.timeout))?
            .map_err(|e| t(e.to_string()))?;
        let reply = Message::from_vec(&raw).map_err(|e| t(e.to_string()))?;
        if reply.metadata.id != msg.metadata.id || reply.metadata.message_type != MessageType::Response {
            return Err(t("reply does not match the request".into()));
        }
        if reply.metadata.response_code == ResponseCode::NotAuth {
            return Err(not_auth(&reply));
        }
        if let Some(v) = &mut verifier
            && reply.metadata.response_code == ResponseCode::NoError
        {
            v.verify(&raw).map_err(|e| {
                EdgeError::Tsig(
                    TsigFailure::Other,
                    format!("the edge's reply is not signed with our key: {e}"),
                )
            })?;
        }
        Ok(reply)
    }

    async fn query(&self, qname: &Name, rtype: RecordType) -> Result<Message, EdgeError> {
        let mut m = Message::query();
        m.metadata.recursion_desired = false;
        m.add_query(Query::query(qname.clone(), rtype));
        self.exchange(m, false).await
    }

    /// What the edge holds for `zone` and our NS name.
    pub async fn read(&self, zone: &Zone, own_ns: &str) -> Result<EdgeView, EdgeError> {
        let zname = name(&zone.name)?;
        let m = self.query(&zname, RecordType::NS).await?;
        let ns: BTreeSet<String> = m
            .answers
            .iter()
            .chain(m.authorities.iter())
            .filter(|r| r.name == zname)
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(n.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let own = name(own_ns)?;
        let mut own_glue = BTreeSet::new();
        for t in [RecordType::A, RecordType::AAAA] {
            let m = self.query(&own, t).await?;
            for r in m.answers.iter().filter(|r| r.name == own) {
                match &r.data {
                    RData::A(a) => own_glue.insert(IpAddr::V4(a.0)),
                    RData::AAAA(a) => own_glue.insert(IpAddr::V6(a.0)),
                    _ => false,
                };
            }
        }
        Ok(EdgeView { ns, own_glue })
    }

    /// Sends a plan as one signed update with its prerequisite.
    pub async fn apply(&self, zone: &Zone, own_ns: &str, plan: &Plan, ttl: u32) -> Result<(), EdgeError> {
        let zname = name(&zone.name)?;
        let own = name(own_ns)?;
        let mut m = Message::new(0, MessageType::Query, OpCode::Update);
        let mut z = Query::new();
        z.set_name(name(&zone.parent)?)
            .set_query_type(RecordType::SOA)
            .set_query_class(DNSClass::IN);
        m.add_zone(z);
        if plan.expect_ns.is_empty() {
            // RFC 2136 §2.4.3: RRset does not exist
            let mut r = Record::update0(zname.clone(), 0, RecordType::NS);
            r.dns_class = DNSClass::NONE;
            m.add_pre_requisite(r);
        } else {
            // §2.4.2: RRset exists, value dependent (exactly as read)
            for n in &plan.expect_ns {
                m.add_pre_requisite(Record::from_rdata(zname.clone(), 0, RData::NS(NS(name(n)?))));
            }
        }
        let glue = |ip: &IpAddr| match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        for c in &plan.changes {
            let r = match c {
                Change::AddNs(n) => Record::from_rdata(zname.clone(), ttl, RData::NS(NS(name(n)?))),
                Change::RemoveNs(n) => {
                    let mut r = Record::from_rdata(zname.clone(), 0, RData::NS(NS(name(n)?)));
                    r.dns_class = DNSClass::NONE;
                    r
                }
                Change::RemoveDelegation => {
                    let mut r = Record::update0(zname.clone(), 0, RecordType::NS);
                    r.dns_class = DNSClass::ANY;
                    r
                }
                Change::AddGlue(ip) => Record::from_rdata(own.clone(), ttl, glue(ip)),
                Change::RemoveGlue(ip) => {
                    let mut r = Record::from_rdata(own.clone(), 0, glue(ip));
                    r.dns_class = DNSClass::NONE;
                    r
                }
            };
            m.add_update(r);
        }
        let reply = self.exchange(m, true).await?;
        match reply.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::YXRRSet
            | ResponseCode::NXRRSet
            | ResponseCode::YXDomain
            | ResponseCode::NXDomain => Err(EdgeError::Concurrent),
            other => Err(EdgeError::Refused(format!("{other:?}"))),
        }
    }
}

/// What this cluster wants at the edge for `zone`. Every cluster maintains
/// its own NS record and glue, so the NS RRset holds every active cluster's
/// name; nobody adds or removes records for another cluster, so a cluster
/// that crashed or is partitioned away is never deleted by the others, and a
/// withdrawn cluster is not re-added by a peer that has not noticed yet.
pub fn desired(cfg: &Config, zone: &Zone) -> Desired {
    desired_with(cfg, zone, &cfg.exposed_dns_ips())
}

/// [`desired`] with `own_ips` as the glue (addresses found at run time).
pub fn desired_with(cfg: &Config, zone: &Zone, own_ips: &[IpAddr]) -> Desired {
    let own_ns = cfg.ns_name(&cfg.geo_tag, zone);
    let active_ns: BTreeSet<String> = [own_ns.clone()].into();
    Desired {
        own_ns,
        active_ns,
        own_glue: own_ips.iter().copied().collect(),
    }
}

/// Reads, plans and applies until the edge matches, re-reading when the
/// prerequisite fails (another cluster updated at the same time).
pub async fn reconcile_zone(
    edge: &Edge,
    zone: &Zone,
    want: &Desired,
    ttl: u32,
    withdraw: bool,
) -> Result<usize, EdgeError> {
    for _ in 0..5 {
        let view = edge.read(zone, &want.own_ns).await?;
        let plan = if withdraw {
            delegation::plan_withdraw(&view, want)
        } else {
            delegation::plan(&view, want)
        };
        if plan.is_empty() {
            return Ok(0);
        }
        match edge.apply(zone, &want.own_ns, &plan, ttl).await {
            Ok(()) => return Ok(plan.changes.len()),
            Err(EdgeError::Concurrent) => {
                tracing::debug!(zone = zone.name, "NS RRset changed concurrently, re-reading");
                tokio::time::sleep(Duration::from_millis(rand::random_range(10..100))).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(EdgeError::Concurrent)
}

/// Keeps the delegation of every zone until `cancel`; withdraws on the way
/// out when finalization is enabled. Outcomes are not reported: see
/// [`run_with_status`].
pub async fn run(
    cfg: Config,
    edge: Edge,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    cancel: CancellationToken,
) {
    let (_keep, own_ips) = tokio::sync::watch::channel(cfg.exposed_dns_ips());
    run_with_status(cfg, edge, own_ips, metrics, StatusSink::discard(), cancel).await
}

/// [`run`], with this cluster's addresses from `own_ips` (in Kubernetes
/// mode as discovered; a change re-checks at once), reporting each zone's
/// outcome into `status` after every check.
pub async fn run_with_status(
    cfg: Config,
    edge: Edge,
    mut own_ips: tokio::sync::watch::Receiver<Vec<IpAddr>>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    status: StatusSink,
    cancel: CancellationToken,
) {
    let Some(dcfg) = cfg.delegation.clone() else {
        return;
    };
    let via = format!("RFC 2136 at edge {}", edge.server);
    let period = Duration::from_secs(cfg.zone_delegation_reconcile_requeue_seconds.max(1));
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build();
    let mut ips_open = true;
    loop {
        let mut ok = true;
        let ips = own_ips.borrow_and_update().clone();
        for zone in &cfg.zones {
            let want = desired_with(&cfg, zone, &ips);
            if want.own_glue.is_empty() {
                tracing::warn!(zone = zone.name, "{}", status::NO_ADDRESS);
                status.report(&zone.name, DelegationOutcome::no_address());
                continue;
            }
            match reconcile_zone(&edge, zone, &want, cfg.ns_record_ttl, false).await {
                Ok(0) => {
                    metrics.delegation(&zone.name, "unchanged");
                    tracing::debug!(zone = zone.name, "delegation up to date");
                    status.report(&zone.name, DelegationOutcome::delegated(&via));
                }
                Ok(n) => {
                    metrics.delegation(&zone.name, "updated");
                    tracing::info!(zone = zone.name, changes = n, edge = %edge.server, "delegation updated");
                    status.report(&zone.name, DelegationOutcome::delegated(&via));
                }
                Err(e) => {
                    metrics.delegation(&zone.name, "failed");
                    ok = false;
                    tracing::error!(
                        zone = zone.name,
                        "delegation not updated, records left as they are: {e}"
                    );
                    status.report(&zone.name, DelegationOutcome::failed(e.reason(), e.to_string()));
                }
            }
        }
        let wait = if ok {
            backoff = ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(60))
                .with_jitter()
                .without_max_times()
                .build();
            period
        } else {
            backoff.next().unwrap_or(period).min(period)
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = own_ips.changed(), if ips_open => ips_open = r.is_ok(),
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if dcfg.finalize {
        let ips = own_ips.borrow().clone();
        for zone in &cfg.zones {
            let want = desired_with(&cfg, zone, &ips);
            match reconcile_zone(&edge, zone, &want, cfg.ns_record_ttl, true).await {
                Ok(n) => tracing::info!(zone = zone.name, changes = n, "delegation withdrawn"),
                Err(e) => tracing::error!(zone = zone.name, "delegation not withdrawn: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};

    fn notauth_reply(error: Option<TsigError>) -> Message {
        let mut m = Message::new(7, MessageType::Response, OpCode::Update);
        m.metadata.response_code = ResponseCode::NotAuth;
        if let Some(e) = error {
            let rdata = TSIG::new(
                TsigAlgorithm::HmacSha256,
                1,
                300,
                Vec::new(),
                7,
                Some(e),
                Vec::new(),
            );
            m.signature = Some(Box::new(make_tsig_record(
                Name::from_ascii("k8gb-edge.").unwrap(),
                rdata,
            )));
        }
        // as received: through the wire format
        Message::from_vec(&m.to_vec().unwrap()).unwrap()
    }

    #[test]
    fn notauth_is_classified_by_its_tsig_error() {
        let reason = |e| not_auth(&notauth_reply(e)).reason();
        assert_eq!(reason(Some(TsigError::BadKey)), Reason::TsigBadKey);
        assert_eq!(reason(Some(TsigError::BadSig)), Reason::TsigBadSig);
        assert_eq!(reason(Some(TsigError::BadTime)), Reason::TsigBadTime);
        assert_eq!(reason(None), Reason::EdgeNotAuth);
        let e = not_auth(&notauth_reply(Some(TsigError::BadSig)));
        assert!(
            e.to_string().contains("rejected our TSIG signature (BADSIG)"),
            "{e}"
        );
    }

    #[test]
    fn every_edge_error_has_a_reason() {
        let a: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let cases = [
            (
                EdgeError::Transport(a, "connection refused".into()),
                "EdgeUnreachable",
            ),
            (EdgeError::Timeout(a, Duration::from_secs(5)), "EdgeTimeout"),
            (EdgeError::Refused("Refused".into()), "EdgeRefused"),
            (EdgeError::NotAuth, "EdgeNotAuth"),
            (EdgeError::Tsig(TsigFailure::Other, "x".into()), "TsigError"),
            (EdgeError::Concurrent, "PrerequisiteFailed"),
        ];
        for (e, r) in cases {
            assert_eq!(e.reason().as_str(), r, "{e}");
        }
        assert_eq!(
            EdgeError::Timeout(a, Duration::from_secs(5)).to_string(),
            "edge 192.0.2.53:53: timed out after 5s"
        );
    }

    #[tokio::test]
    async fn run_reports_an_unreachable_edge() {
        // a port nobody listens on
        let server = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let args = crate::config::ConfigArgs {
            cluster_geo_tag: Some("eu".into()),
            dns_zones: Some("example.com:cloud.example.com:30".into()),
            edge_dns_servers: Some(server.to_string()),
            cluster_exposed_ips: Some("192.0.2.1".into()),
            rfc2136_tsig_key_name: Some("k8gb-edge".into()),
            rfc2136_tsig_secret: Some("ZWRnZS1rZXktc2VjcmV0LWZvci1rOGdiLXRlc3RzLTMyYg==".into()),
            ..Default::default()
        };
        let cfg = crate::config::build(&args, None, None).unwrap();
        let signer = crate::peer::client::tsigner(&cfg.delegation.as_ref().unwrap().tsig).unwrap();
        let edge = Edge {
            server,
            signer,
            timeout: Duration::from_secs(2),
        };
        let (sink, mut rx) = StatusSink::new();
        let cancel = CancellationToken::new();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let (_ips_tx, ips) = tokio::sync::watch::channel(cfg.exposed_dns_ips());
        let task = tokio::spawn(run_with_status(cfg, edge, ips, metrics, sink, cancel.clone()));
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("an outcome in time")
            .unwrap();
        let got = rx.borrow()["cloud.example.com"].clone();
        cancel.cancel();
        task.await.unwrap();
        match got {
            DelegationOutcome::Failed { reason, message } => {
                assert_eq!(reason, Reason::EdgeUnreachable, "{message}");
                assert!(message.contains(&server.to_string()), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
