//! A fixed snapshot for fuzzing and tests: every kind of name the server
//! serves (hosts with rotation, weights and geoip, localtargets, apex SOA and
//! NS with glue, empty non-terminals, a big RRset that needs truncation).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::snapshot::{self, GlueInput, HostInput, Snapshot, ZoneInput};
use crate::core::health::Health;
use crate::core::names::GeoTag;
use crate::core::strategy::{self, Strategy, StrategySpec};

fn host(
    name: &str,
    kind: &str,
    weights: &[(&str, i64)],
    local: &[IpAddr],
    peer: &[IpAddr],
) -> Option<HostInput> {
    let w: BTreeMap<String, i64> = weights.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let primary = (kind == "failover").then_some("eu");
    let s = Strategy::validate(StrategySpec {
        type_: kind,
        weight: Some(&w),
        primary_geo_tag: primary,
        dns_ttl_seconds: Some(30),
    })
    .ok()?;
    let me = GeoTag::parse("eu").ok()?;
    let mut peers = BTreeMap::new();
    peers.insert(GeoTag::parse("us").ok()?, peer.to_vec());
    Some(HostInput {
        host: name.to_string(),
        localtargets: format!("localtargets-{name}"),
        answer: strategy::answer(&s, &me, Health::Healthy, local, &peers),
    })
}

/// The sample snapshot.
pub fn sample_snapshot() -> Snapshot {
    let v4 = |a: u8, b: u8| IpAddr::from([10, 0, a, b]);
    let v6 = |a: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, a]);
    let big: Vec<IpAddr> = (1..=80).map(|i| v4(9, i)).collect();
    let hosts: Vec<HostInput> = [
        host(
            "app.cloud.example.com",
            "roundRobin",
            &[],
            &[v4(0, 1), v4(0, 2), v6(1)],
            &[v4(1, 1)],
        ),
        host(
            "w.cloud.example.com",
            "roundRobin",
            &[("eu", 70), ("us", 30)],
            &[v4(0, 3)],
            &[v4(1, 3)],
        ),
        host("geo.cloud.example.com", "geoip", &[], &[v4(0, 4)], &[v4(1, 4)]),
        host("fo.cloud.example.com", "failover", &[], &[v4(0, 5)], &[v4(1, 5)]),
        host("a.b.c.cloud.example.com", "roundRobin", &[], &[v6(2)], &[]),
        host("big.cloud.example.com", "roundRobin", &[], &big, &[]),
    ]
    .into_iter()
    .flatten()
    .collect();
    let zones = vec![ZoneInput {
        name: "cloud.example.com".into(),
        mname: "gslb-ns-eu-cloud.example.com".into(),
        ns_names: vec![
            "gslb-ns-eu-cloud.example.com".into(),
            "gslb-ns-us-cloud.example.com".into(),
        ],
        ns_ttl: 30,
        neg_ttl: 30,
    }];
    let glue = vec![GlueInput {
        name: "gslb-ns-eu-cloud.example.com".into(),
        ips: vec![IpAddr::from([127, 0, 0, 11]), v6(53)],
        ttl: 30,
    }];
    snapshot::build(1, &zones, &hosts, &glue, None, &BTreeMap::new(), 1_700_000_000).0
}

/// What the query path answers for `name` (A, or AAAA when `aaaa`): the
/// addresses in the answer section, sorted. For tests of the controller
/// and the engine that need the served answer without a socket.
pub fn answer_of(snap: &Snapshot, name: &str, aaaa: bool) -> Vec<IpAddr> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let Ok(qname) = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) else {
        return Vec::new();
    };
    let rtype = if aaaa { RecordType::AAAA } else { RecordType::A };
    let mut q = Message::query();
    q.add_query(Query::query(qname, rtype));
    let Ok(bytes) = q.to_vec() else {
        return Vec::new();
    };
    let ctx = super::wire::QueryCtx {
        client: IpAddr::from([127, 0, 0, 1]),
        transport: super::wire::Transport::Tcp,
        reserve: 0,
    };
    let mut out = Vec::new();
    super::wire::respond(snap, None, &bytes, &ctx, &mut Default::default(), &mut out);
    let Ok(m) = Message::from_vec(&out) else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}
