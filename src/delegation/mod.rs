//! Native zone delegation: keeps this cluster's NS record and glue in the
//! edge (parent) zone with RFC 2136 dynamic updates signed with TSIG.
//! Reads what the edge holds, plans the difference with the pure planner
//! (`core::delegation`) and sends it as one update whose prerequisite is the
//! NS RRset as read; when another cluster changed it meanwhile, the update
//! fails (YXRRSET/NXRRSET) and we read and plan again. Failures are retried
//! with backoff and never remove records.

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
    #[error("edge refused the update: {0}")]
    Refused(String),
    #[error("edge rejected our TSIG signature ({0}): check RFC2136_TSIG_KEY_NAME and the secret")]
    Tsig(String),
    #[error("the NS RRset changed while we updated it")]
    Concurrent,
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
                .map_err(|e| EdgeError::Tsig(e.to_string()))?;
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
            .map_err(|_| t(format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| t(e.to_string()))?;
        let reply = Message::from_vec(&raw).map_err(|e| t(e.to_string()))?;
        if reply.metadata.id != msg.metadata.id || reply.metadata.message_type != MessageType::Response {
            return Err(t("reply does not match the request".into()));
        }
        if reply.metadata.response_code == ResponseCode::NotAuth {
            return Err(EdgeError::Tsig(format!("{:?}", reply.metadata.response_code)));
        }
        if let Some(v) = &mut verifier
            && reply.metadata.response_code == ResponseCode::NoError
        {
            v.verify(&raw)
                .map_err(|e| EdgeError::Tsig(format!("the edge's reply is not signed with our key: {e}")))?;
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
    let own_ns = cfg.ns_name(&cfg.geo_tag, zone);
    let active_ns: BTreeSet<String> = [own_ns.clone()].into();
    Desired {
        own_ns,
        active_ns,
        own_glue: cfg.exposed_dns_ips().into_iter().collect(),
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
/// out when finalization is enabled.
pub async fn run(
    cfg: Config,
    edge: Edge,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    cancel: CancellationToken,
) {
    let Some(dcfg) = cfg.delegation.clone() else {
        return;
    };
    let period = Duration::from_secs(cfg.zone_delegation_reconcile_requeue_seconds.max(1));
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let mut ok = true;
        for zone in &cfg.zones {
            let want = desired(&cfg, zone);
            if want.own_glue.is_empty() {
                tracing::warn!(
                    zone = zone.name,
                    "no cluster address to publish as glue (set CLUSTER_EXPOSED_IPS or a specific DNS_ADDRESS)"
                );
                continue;
            }
            match reconcile_zone(&edge, zone, &want, cfg.ns_record_ttl, false).await {
                Ok(0) => {
                    metrics.delegation(&zone.name, "unchanged");
                    tracing::debug!(zone = zone.name, "delegation up to date");
                }
                Ok(n) => {
                    metrics.delegation(&zone.name, "updated");
                    tracing::info!(zone = zone.name, changes = n, edge = %edge.server, "delegation updated")
                }
                Err(e) => {
                    metrics.delegation(&zone.name, "failed");
                    ok = false;
                    tracing::error!(
                        zone = zone.name,
                        "delegation not updated, records left as they are: {e}"
                    );
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
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if dcfg.finalize {
        for zone in &cfg.zones {
            let want = desired(&cfg, zone);
            match reconcile_zone(&edge, zone, &want, cfg.ns_record_ttl, true).await {
                Ok(n) => tracing::info!(zone = zone.name, changes = n, "delegation withdrawn"),
                Err(e) => tracing::error!(zone = zone.name, "delegation not withdrawn: {e}"),
            }
        }
    }
}
