//! The query path against hickory-proto as an independent encoder/decoder.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;
use crate::core::health::Health;
use crate::core::names::GeoTag;
use crate::core::strategy::{self, Strategy, StrategySpec};
use crate::dns::snapshot::{self, GlueInput, HostInput, ZoneInput};

fn tag(s: &str) -> GeoTag {
    GeoTag::parse(s).unwrap()
}

fn host(
    name: &str,
    kind: &str,
    weights: &[(&str, i64)],
    local: &[&str],
    peers: &[(&str, &[&str])],
) -> HostInput {
    let w: BTreeMap<String, i64> = weights.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let s = Strategy::validate(StrategySpec {
        type_: kind,
        weight: Some(&w),
        primary_geo_tag: None,
        dns_ttl_seconds: Some(7),
    })
    .unwrap();
    let local: Vec<IpAddr> = local.iter().map(|a| a.parse().unwrap()).collect();
    let peers: BTreeMap<GeoTag, Vec<IpAddr>> = peers
        .iter()
        .map(|(t, ips)| (tag(t), ips.iter().map(|a| a.parse().unwrap()).collect()))
        .collect();
    HostInput {
        host: name.into(),
        localtargets: format!("localtargets-{name}"),
        answer: strategy::answer(&s, &tag("eu"), Health::Healthy, &local, &peers),
    }
}

fn snap() -> Snapshot {
    let zones = vec![ZoneInput {
        name: "cloud.example.com".into(),
        mname: "gslb-ns-eu-cloud.example.com".into(),
        ns_names: vec![
            "gslb-ns-eu-cloud.example.com".into(),
            "gslb-ns-us-cloud.example.com".into(),
        ],
        ns_ttl: 30,
        neg_ttl: 11,
    }];
    let many: Vec<String> = (1..=40).map(|i| format!("10.9.0.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let hosts = vec![
        host(
            "rr.cloud.example.com",
            "roundRobin",
            &[],
            &["10.0.0.1", "10.0.0.2", "2001:db8::1"],
            &[("us", &["10.1.0.1"])],
        ),
        host("v4only.cloud.example.com", "roundRobin", &[], &["10.0.0.5"], &[]),
        host("a.b.cloud.example.com", "roundRobin", &[], &["10.0.0.6"], &[]),
        host(
            "w.cloud.example.com",
            "roundRobin",
            &[("eu", 90), ("us", 10)],
            &["10.0.0.7"],
            &[("us", &["10.1.0.7"])],
        ),
        host("big.cloud.example.com", "roundRobin", &[], &many, &[]),
    ];
    let glue = vec![GlueInput {
        name: "gslb-ns-eu-cloud.example.com".into(),
        ips: vec!["127.0.0.11".parse().unwrap()],
        ttl: 30,
    }];
    snapshot::build(1, &zones, &hosts, &glue, None, &BTreeMap::new(), 1_700_000_000).0
}

fn query(name: &str, rtype: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask_raw(s: &Snapshot, bytes: &[u8], transport: Transport) -> (Outcome, Vec<u8>) {
    let ctx = QueryCtx {
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        transport,
        reserve: 0,
    };
    let mut out = Vec::new();
    let o = respond(s, None, bytes, &ctx, &mut Scratch::default(), &mut out);
    (o, out)
}

fn ask(s: &Snapshot, name: &str, rtype: RecordType) -> Message {
    let (o, out) = ask_raw(s, &query(name, rtype, None), Transport::Udp);
    assert!(matches!(o, Outcome::Reply { .. }));
    Message::from_vec(&out).unwrap()
}

fn ips(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn positive_answer_echoes_the_question() {
    let s = snap();
    let m = ask(&s, "RR.Cloud.EXAMPLE.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative && m.metadata.recursion_desired && !m.metadata.recursion_available);
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.queries[0].name().to_ascii(), "RR.Cloud.EXAMPLE.com.");
    let mut got = ips(&m);
    got.sort();
    assert_eq!(
        got,
        ["10.0.0.1", "10.0.0.2", "10.1.0.1"].map(|a| a.parse::<IpAddr>().unwrap())
    );
    assert_eq!(m.answers[0].ttl, 7);
    assert_eq!(
        m.answers[0].name.to_ascii(),
        "RR.Cloud.EXAMPLE.com.",
        "owner as asked"
    );
    let m = ask(&s, "rr.cloud.example.com.", RecordType::AAAA);
    assert_eq!(ips(&m), ["2001:db8::1".parse::<IpAddr>().unwrap()]);
}

#[test]
fn answers_rotate() {
    let s = snap();
    let firsts: std::collections::BTreeSet<IpAddr> = (0..3)
        .map(|_| ips(&ask(&s, "rr.cloud.example.com.", RecordType::A))[0])
        .collect();
    assert_eq!(firsts.len(), 3, "each query starts at the next record");
}

#[test]
fn nodata_nxdomain_refused() {
    let s = snap();
    let m = ask(&s, "v4only.cloud.example.com.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 11, "negative TTL");
    let m = ask(&s, "nope.cloud.example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].name.to_ascii(), "cloud.example.com.");
    assert!(m.metadata.authoritative);
    // an empty non-terminal exists
    let m = ask(&s, "b.cloud.example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.authorities.len() == 1);
    // a different type at an existing name
    let m = ask(&s, "rr.cloud.example.com.", RecordType::MX);
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );
    let m = ask(&s, "example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    let m = ask(&s, "notcloud.example.com.", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "label suffix, not substring"
    );
}

#[test]
fn apex_soa_ns_and_glue() {
    let s = snap();
    let m = ask(&s, "cloud.example.com.", RecordType::SOA);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("SOA expected")
    };
    assert_eq!(soa.serial, 1_700_000_000);
    assert_eq!(soa.mname.to_ascii(), "gslb-ns-eu-cloud.example.com.");
    assert_eq!(soa.minimum, 11);
    let m = ask(&s, "cloud.example.com.", RecordType::NS);
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.additionals.len(), 1, "glue for our own NS name");
    let m = ask(&s, "gslb-ns-eu-cloud.example.com.", RecordType::A);
    assert_eq!(ips(&m), ["127.0.0.11".parse::<IpAddr>().unwrap()]);
    let m = ask(&s, "localtargets-rr.cloud.example.com.", RecordType::A);
    assert_eq!(ips(&m).len(), 2, "only local targets");
    let m = ask(&s, "rr.cloud.example.com.", RecordType::ANY);
    assert_eq!(ips(&m).len(), 3);
}

#[test]
fn serial_grows_only_on_change() {
    let zones = vec![ZoneInput {
        name: "cloud.example.com".into(),
        mname: "ns.cloud.example.com".into(),
        ns_names: vec!["ns.cloud.example.com".into()],
        ns_ttl: 30,
        neg_ttl: 30,
    }];
    let h1 = vec![host("a.cloud.example.com", "roundRobin", &[], &["10.0.0.1"], &[])];
    let h2 = vec![host("a.cloud.example.com", "roundRobin", &[], &["10.0.0.2"], &[])];
    let (_, v1) = snapshot::build(1, &zones, &h1, &[], None, &BTreeMap::new(), 100);
    let (_, v2) = snapshot::build(2, &zones, &h1, &[], None, &v1, 50);
    assert_eq!(v2["cloud.example.com"].serial, 100, "unchanged");
    let (_, v3) = snapshot::build(3, &zones, &h2, &[], None, &v2, 50);
    assert_eq!(
        v3["cloud.example.com"].serial, 101,
        "changed: +1 even when the clock is behind"
    );
    let (_, v4) = snapshot::build(4, &zones, &h1, &[], None, &v3, 5000);
    assert_eq!(v4["cloud.example.com"].serial, 5000);
}

#[test]
fn edns_truncation_and_badvers() {
    let s = snap();
    let (_, out) = ask_raw(
        &s,
        &query("big.cloud.example.com.", RecordType::A, None),
        Transport::Udp,
    );
    let m = Message::from_vec(&out).unwrap();
    assert!(
        m.metadata.truncation && m.answers.is_empty(),
        "40 A records do not fit 512 bytes"
    );
    let (_, out) = ask_raw(
        &s,
        &query("big.cloud.example.com.", RecordType::A, None),
        Transport::Tcp,
    );
    let m = Message::from_vec(&out).unwrap();
    assert!(
        !m.metadata.truncation && m.answers.len() == 40,
        "TCP has no 512 limit"
    );
    let mut e = Edns::new();
    e.set_max_payload(4096);
    let (_, out) = ask_raw(
        &s,
        &query("big.cloud.example.com.", RecordType::A, Some(e)),
        Transport::Udp,
    );
    let m = Message::from_vec(&out).unwrap();
    assert!(!m.metadata.truncation && m.answers.len() == 40);
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), MAX_UDP_PAYLOAD);
    let mut e = Edns::new();
    e.set_version(1);
    let (o, out) = ask_raw(
        &s,
        &query("rr.cloud.example.com.", RecordType::A, Some(e)),
        Transport::Udp,
    );
    assert_eq!(
        o,
        Outcome::Reply {
            qtype: 1,
            rcode: RCODE_BADVERS
        }
    );
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(
        u16::from(m.metadata.response_code),
        16,
        "BADVERS (hickory names 16 BADSIG)"
    );
    assert!(m.answers.is_empty());
}

#[test]
fn ecs_is_echoed_with_scope_zero_outside_geoip() {
    let s = snap();
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        "192.0.2.0".parse().unwrap(),
        24,
        0,
    )));
    let (_, out) = ask_raw(
        &s,
        &query("rr.cloud.example.com.", RecordType::A, Some(e)),
        Transport::Udp,
    );
    let m = Message::from_vec(&out).unwrap();
    let Some(EdnsOption::Subnet(ecs)) = m.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
        panic!("ECS echoed")
    };
    assert_eq!(ecs.addr(), "192.0.2.0".parse::<IpAddr>().unwrap());
    assert_eq!(ecs.scope_prefix(), 0);
}

#[test]
fn weighted_order_follows_weights() {
    let s = snap();
    let mut eu_first = 0;
    for _ in 0..1000 {
        let got = ips(&ask(&s, "w.cloud.example.com.", RecordType::A));
        assert_eq!(got.len(), 2, "every address is returned");
        if got[0] == "10.0.0.7".parse::<IpAddr>().unwrap() {
            eu_first += 1;
        }
    }
    // weights 90/10: eu comes first about 900 times in 1000
    assert!((800..=970).contains(&eu_first), "eu first {eu_first} times");
}

fn hdr(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

const QNAME: &[u8] = b"\x02rr\x05cloud\x07example\x03com\x00";

fn rcode_of(out: &[u8]) -> u16 {
    u16::from_be_bytes([out[2], out[3]]) & 0xF
}

#[test]
fn hostile_input() {
    let s = snap();
    let udp = Transport::Udp;
    // too short, and responses, are dropped
    assert_eq!(ask_raw(&s, &[0u8; 11], udp).0, Outcome::Drop);
    assert_eq!(ask_raw(&s, &[], udp).0, Outcome::Drop);
    let mut resp = hdr(1, 0x8000, [1, 0, 0, 0]);
    resp.extend_from_slice(QNAME);
    resp.extend_from_slice(&[0, 1, 0, 1]);
    assert_eq!(ask_raw(&s, &resp, udp).0, Outcome::Drop);

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("no question", hdr(1, 0, [0, 0, 0, 0]), RCODE_FORMERR),
        (
            "two questions",
            {
                let mut v = hdr(1, 0, [2, 0, 0, 0]);
                for _ in 0..2 {
                    v.extend_from_slice(QNAME);
                    v.extend_from_slice(&[0, 1, 0, 1]);
                }
                v
            },
            RCODE_FORMERR,
        ),
        ("header only, count lies", hdr(1, 0, [1, 0, 0, 0]), RCODE_FORMERR),
        (
            "truncated name",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(&QNAME[..7]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "no qtype",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(QNAME);
                v.push(0);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "compression loop in question",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "pointer after label",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(&[1, b'a', 0xC0, 12, 0, 1, 0, 1]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "name over 255",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                for _ in 0..5 {
                    v.push(63);
                    v.extend_from_slice(&[b'a'; 63]);
                }
                v.extend_from_slice(&[0, 0, 1, 0, 1]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "extended label type",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "additional count lies",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 5]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 1, 0, 1]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "answer count lies",
            {
                let mut v = hdr(1, 0, [1, 3, 0, 0]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 1, 0, 1]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "rdlength past the end",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 1]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "two OPT records",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 2]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 1, 0, 1]);
                for _ in 0..2 {
                    v.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
                }
                v
            },
            RCODE_FORMERR,
        ),
        (
            "bad ECS family",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 1]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[
                    0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 9, 24, 0, 1, 2, 3,
                ]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "ECS address longer than its prefix",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 1]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[
                    0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 10, 0, 8, 0, 6, 0, 1, 8, 0, 1, 2,
                ]);
                v
            },
            RCODE_FORMERR,
        ),
        (
            "unknown opcode",
            {
                let mut v = hdr(1, 2 << 11, [1, 0, 0, 0]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 1, 0, 1]);
                v
            },
            RCODE_NOTIMP,
        ),
        (
            "update opcode",
            {
                let mut v = hdr(1, 5 << 11, [1, 0, 0, 0]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 6, 0, 1]);
                v
            },
            RCODE_NOTIMP,
        ),
        (
            "chaos class",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 16, 0, 3]);
                v
            },
            RCODE_REFUSED,
        ),
        (
            "axfr over udp",
            {
                let mut v = hdr(1, 0, [1, 0, 0, 0]);
                v.extend_from_slice(QNAME);
                v.extend_from_slice(&[0, 252, 0, 1]);
                v
            },
            RCODE_REFUSED,
        ),
    ];
    for (what, bytes, want) in cases {
        let (o, out) = ask_raw(&s, &bytes, udp);
        assert!(
            matches!(o, Outcome::Reply { rcode, .. } if rcode == want),
            "{what}: {o:?}"
        );
        assert_eq!(rcode_of(&out), want, "{what}");
        assert_eq!(&out[..2], &bytes[..2], "{what}: id echoed");
        assert!(out[2] & 0x80 != 0, "{what}: QR set");
        Message::from_vec(&out).unwrap_or_else(|e| panic!("{what}: reply must parse: {e}"));
    }
    // a valid query with trailing garbage is still answered
    let mut v = query("rr.cloud.example.com.", RecordType::A, None);
    v.extend_from_slice(&[1, 2, 3]);
    let (o, _) = ask_raw(&s, &v, udp);
    assert_eq!(
        o,
        Outcome::Reply {
            qtype: 1,
            rcode: RCODE_NOERROR
        }
    );
    let _ = OpCode::Query;
}
