//! The query path: parse a query, look the name up in the current
//! [`Snapshot`], and assemble the response from precomputed records.
//!
//! Hand-written on purpose: hickory-server's handler API builds every response
//! from `Record` values and serializes it per query, which is the cost that
//! puts the stock hickory server at about 0.6x Knot (shared/DESIGN.md,
//! "Performance"). Here the per-query work is a header, a copy of the
//! question, copies of stored records and the query-dependent choices
//! (rotation, weighted order, GeoIP filter). The parser reads only what an
//! authoritative server needs (header, one question, the OPT record) and
//! never follows compression pointers, so malformed input cannot loop.
//! Correctness is checked against hickory-proto and dig in the tests.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use rand::Rng;

use super::snapshot::{CLASS_IN, NameEntry, RRset, RecordOrder, Snapshot, TYPE_A, TYPE_AAAA, TYPE_OPT};
use crate::geoip::GeoDb;

pub const RCODE_NOERROR: u16 = 0;
pub const RCODE_FORMERR: u16 = 1;
pub const RCODE_SERVFAIL: u16 = 2;
pub const RCODE_NXDOMAIN: u16 = 3;
pub const RCODE_NOTIMP: u16 = 4;
pub const RCODE_REFUSED: u16 = 5;
pub const RCODE_BADVERS: u16 = 16;

const TYPE_TSIG: u16 = 250;
const TYPE_IXFR: u16 = 251;
const OPCODE_QUERY: u16 = 0;
const OPCODE_NOTIFY: u16 = 4;
pub const RCODE_NOTAUTH: u16 = 9;
const TYPE_AXFR: u16 = 252;
const TYPE_ANY: u16 = 255;
const OPT_ECS: u16 = 8;
/// The UDP payload size we advertise and honour at most (DNS flag day 2020).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
const MAX_NAME: usize = 255;

/// The transport a query arrived on (decides the size limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Per-call context.
#[derive(Debug, Clone, Copy)]
pub struct QueryCtx {
    pub client: IpAddr,
    pub transport: Transport,
    /// Bytes to leave free under the size limit (a TSIG added after us).
    pub reserve: usize,
}

/// What happened, for metrics and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds a response.
    Reply { qtype: u16, rcode: u16 },
    /// A NOTIFY for served zone `zone` (index into the snapshot's zones);
    /// `out` holds the NOERROR acknowledgement. The caller decides whether
    /// the sender may notify us (and turns the reply into REFUSED if not).
    Notify { zone: u16 },
    /// Nothing to send (too short to answer, or not a query).
    Drop,
}

/// Reusable per-worker buffers, so the query path does not allocate.
#[derive(Default)]
pub struct Scratch {
    order: Vec<u16>,
    regions: Vec<u16>,
}

/// EDNS Client Subnet as received.
#[derive(Clone, Copy)]
struct Ecs {
    family: u16,
    source_prefix: u8,
    addr: [u8; 16],
    addr_len: usize,
}

impl Ecs {
    fn ip(&self) -> IpAddr {
        if self.family == 1 {
            IpAddr::from([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])
        } else {
            IpAddr::from(self.addr)
        }
    }
}

struct Edns {
    payload: u16,
    version: u8,
    ecs: Option<Ecs>,
}

struct Query {
    id: [u8; 2],
    flags: u16,
    opcode: u16,
    /// The last additional record is a TSIG.
    tsig: bool,
    /// End of the question section.
    q_end: usize,
    qtype: u16,
    qclass: u16,
    /// Lower-case wire name.
    key: [u8; MAX_NAME],
    key_len: usize,
    edns: Option<Edns>,
}

enum ParseError {
    /// Too short to even echo a header.
    Drop,
    /// Answerable with this code (header echoed, maybe the question).
    Reply {
        rcode: u16,
        with_question: Option<usize>,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

/// Skips a possibly compressed name; returns the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += len + 1,
            0xC0 => return (at + 2 <= b.len()).then_some(at + 2),
            _ => return None,
        }
    }
}

fn parse(b: &[u8]) -> Result<Query, ParseError> {
    if b.len() < 12 {
        return Err(ParseError::Drop);
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::Drop); // a response: never answer it
    }
    let formerr = ParseError::Reply {
        rcode: RCODE_FORMERR,
        with_question: None,
    };
    let opcode = (flags >> 11) & 0xF;
    let [qd, an, ns, ar] = [4, 6, 8, 10].map(|i| u16::from_be_bytes([b[i], b[i + 1]]));
    if qd != 1 {
        return Err(if opcode != 0 {
            ParseError::Reply {
                rcode: RCODE_NOTIMP,
                with_question: None,
            }
        } else {
            formerr
        });
    }
    let mut key = [0u8; MAX_NAME];
    let mut key_len = 0;
    let mut at = 12;
    loop {
        let Some(&len) = b.get(at) else {
            return Err(formerr);
        };
        let len = len as usize;
        if len & 0xC0 != 0 {
            return Err(formerr); // no compression (or extended labels) in a question
        }
        if key_len + len + 1 > MAX_NAME {
            return Err(formerr);
        }
        let Some(label) = b.get(at..at + len + 1) else {
            return Err(formerr);
        };
        for (i, c) in label.iter().enumerate() {
            key[key_len + i] = if i == 0 { *c } else { c.to_ascii_lowercase() };
        }
        key_len += len + 1;
        at += len + 1;
        if len == 0 {
            break;
        }
    }
    let (Some(qtype), Some(qclass)) = (u16_at(b, at), u16_at(b, at + 2)) else {
        return Err(formerr);
    };
    let q_end = at + 4;
    if opcode != OPCODE_QUERY && opcode != OPCODE_NOTIFY {
        return Err(ParseError::Reply {
            rcode: RCODE_NOTIMP,
            with_question: Some(q_end),
        });
    }
    let with_q = |rcode| ParseError::Reply {
        rcode,
        with_question: Some(q_end),
    };
    // skip answer and authority records (a query should have none)
    let mut at = q_end;
    for _ in 0..(an as usize + ns as usize) {
        let Some(next) = skip_name(b, at) else {
            return Err(with_q(RCODE_FORMERR));
        };
        let Some(rdlen) = u16_at(b, next + 8) else {
            return Err(with_q(RCODE_FORMERR));
        };
        at = next + 10 + rdlen as usize;
        if at > b.len() {
            return Err(with_q(RCODE_FORMERR));
        }
    }
    let mut edns: Option<Edns> = None;
    let mut tsig = false;
    for _ in 0..ar {
        let Some(next) = skip_name(b, at) else {
            return Err(with_q(RCODE_FORMERR));
        };
        let (Some(rtype), Some(class), Some(rdlen)) =
            (u16_at(b, next), u16_at(b, next + 2), u16_at(b, next + 8))
        else {
            return Err(with_q(RCODE_FORMERR));
        };
        let rd_start = next + 10;
        let rd_end = rd_start + rdlen as usize;
        if rd_end > b.len() {
            return Err(with_q(RCODE_FORMERR));
        }
        if tsig {
            // RFC 8945 §5.1: a TSIG must be the last record, and only one
            return Err(with_q(RCODE_FORMERR));
        }
        tsig = rtype == TYPE_TSIG;
        if rtype == TYPE_OPT {
            if edns.is_some() || next != at + 1 || b[at] != 0 {
                return Err(with_q(RCODE_FORMERR)); // two OPTs, or an OPT not owned by the root
            }
            let version = b[next + 5];
            let mut ecs = None;
            let mut o = rd_start;
            while o < rd_end {
                let (Some(code), Some(len)) = (u16_at(b, o), u16_at(b, o + 2)) else {
                    return Err(with_q(RCODE_FORMERR));
                };
                let data_start = o + 4;
                let data_end = data_start + len as usize;
                if data_end > rd_end {
                    return Err(with_q(RCODE_FORMERR));
                }
                if code == OPT_ECS {
                    ecs = Some(parse_ecs(&b[data_start..data_end]).ok_or_else(|| with_q(RCODE_FORMERR))?);
                }
                o = data_end;
            }
            edns = Some(Edns {
                payload: class,
                version,
                ecs,
            });
        }
        at = rd_end;
    }
    Ok(Query {
        id: [b[0], b[1]],
        flags,
        opcode,
        tsig,
        q_end,
        qtype,
        qclass,
        key,
        key_len,
        edns,
    })
}

/// What the transport layer needs to know about a message before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Classified {
    /// A NOTIFY (opcode 4).
    pub notify: bool,
    /// A query for a `localtargets-` name (peer exchange).
    pub localtargets: bool,
    /// The message carries a TSIG record.
    pub tsig: bool,
}

/// Classifies a message without answering it; `None` when it does not parse.
pub fn classify(query: &[u8]) -> Option<Classified> {
    let q = parse(query).ok()?;
    let first = &q.key[..q.key_len];
    let label_len = *first.first()? as usize;
    let label = first.get(1..1 + label_len)?;
    Some(Classified {
        notify: q.opcode == OPCODE_NOTIFY,
        localtargets: label.starts_with(crate::core::names::LOCALTARGETS_PREFIX.as_bytes()),
        tsig: q.tsig,
    })
}

/// Writes a header-and-question reply with `rcode` (e.g. REFUSED for an
/// unsigned peer query when TSIG is required).
pub fn reply_with_rcode(query: &[u8], rcode: u16, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    match parse(query) {
        Ok(q) => finish_simple(out, &q, query, rcode, false),
        Err(ParseError::Drop) => Outcome::Drop,
        Err(ParseError::Reply { rcode, with_question }) => error_reply(query, rcode, with_question, out),
    }
}

/// A reply to a message that did not parse as a query: the header echoed
/// (ID, opcode, RD), and the question when it was readable.
fn error_reply(query: &[u8], rcode: u16, with_question: Option<usize>, out: &mut Vec<u8>) -> Outcome {
    let flags = u16::from_be_bytes([query[2], query[3]]);
    let qd = u16::from(with_question.is_some());
    write_header(
        out,
        [query[0], query[1]],
        response_flags(flags, false, rcode),
        [qd, 0, 0, 0],
    );
    let mut qtype = 0;
    if let Some(end) = with_question {
        out.extend_from_slice(&query[12..end]);
        qtype = u16_at(query, end - 4).unwrap_or(0);
    }
    Outcome::Reply { qtype, rcode }
}

/// Sets the response code of a reply in place (used to refuse a NOTIFY).
pub fn set_rcode(out: &mut [u8], rcode: u16) {
    if out.len() >= 4 {
        out[3] = (out[3] & 0xF0) | (rcode & 0xF) as u8;
        out[2] &= !0x04; // no longer authoritative
    }
}

/// RFC 7871 §6: family 1 or 2, source prefix within the family, address of
/// exactly ceil(prefix/8) bytes, scope 0 in queries.
fn parse_ecs(d: &[u8]) -> Option<Ecs> {
    let family = u16_at(d, 0)?;
    let source_prefix = *d.get(2)?;
    let scope = *d.get(3)?;
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    let addr_bytes = &d[4..];
    if source_prefix > max || scope != 0 || addr_bytes.len() != (source_prefix as usize).div_ceil(8) {
        return None;
    }
    let mut addr = [0u8; 16];
    addr[..addr_bytes.len()].copy_from_slice(addr_bytes);
    Some(Ecs {
        family,
        source_prefix,
        addr,
        addr_len: addr_bytes.len(),
    })
}

fn write_header(out: &mut Vec<u8>, id: [u8; 2], flags: u16, counts: [u16; 4]) {
    out.extend_from_slice(&id);
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

fn set_count(out: &mut [u8], index: usize, value: u16) {
    out[4 + 2 * index..6 + 2 * index].copy_from_slice(&value.to_be_bytes());
}

/// Response flags: QR, the query's opcode and RD, AA when authoritative.
fn response_flags(query_flags: u16, aa: bool, rcode: u16) -> u16 {
    0x8000 | (query_flags & 0x7800) | (query_flags & 0x0100) | if aa { 0x0400 } else { 0 } | (rcode & 0xF)
}

/// Answers one query. `out` is cleared and receives the response.
pub fn respond(
    snap: &Snapshot,
    geo: Option<&GeoDb>,
    query: &[u8],
    ctx: &QueryCtx,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    let q = match parse(query) {
        Ok(q) => q,
        Err(ParseError::Drop) => return Outcome::Drop,
        Err(ParseError::Reply { rcode, with_question }) => {
            return error_reply(query, rcode, with_question, out);
        }
    };
    let key = &q.key[..q.key_len];
    let limit = match (ctx.transport, &q.edns) {
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(e)) => e.payload.clamp(512, MAX_UDP_PAYLOAD) as usize,
        _ => u16::MAX as usize,
    }
    .saturating_sub(ctx.reserve);

    // header + question first; counts are patched below
    let reply = |out: &mut Vec<u8>, rcode: u16, aa: bool| {
        write_header(out, q.id, response_flags(q.flags, aa, rcode), [1, 0, 0, 0]);
        out.extend_from_slice(&query[12..q.q_end]);
    };
    if let Some(e) = &q.edns
        && e.version != 0
    {
        reply(out, RCODE_NOERROR, false);
        push_opt(out, &q, RCODE_BADVERS, 0);
        set_count(out, 3, 1);
        return Outcome::Reply {
            qtype: q.qtype,
            rcode: RCODE_BADVERS,
        };
    }
    if q.qclass != CLASS_IN {
        return finish_simple(out, &q, query, RCODE_REFUSED, false);
    }
    if q.opcode == OPCODE_NOTIFY {
        // RFC 1996: the question names the zone, type SOA; the reply echoes it
        return match snap.zone_index.get(key) {
            Some(&zone) if q.qtype == super::snapshot::TYPE_SOA => {
                finish_simple(out, &q, query, RCODE_NOERROR, true);
                Outcome::Notify { zone }
            }
            _ => finish_simple(out, &q, query, RCODE_NOTAUTH, false),
        };
    }
    if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
        return finish_simple(out, &q, query, RCODE_REFUSED, false);
    }

    let (rcode, entry, zone) = match snap.names.get(key) {
        Some(e) => (RCODE_NOERROR, Some(e), e.zone),
        None => match find_zone(snap, key) {
            Some(z) => (RCODE_NXDOMAIN, None, Some(z)),
            None => return finish_simple(out, &q, query, RCODE_REFUSED, false),
        },
    };
    let rrset = entry.and_then(|e| pick_rrset(e, q.qtype));

    reply(out, rcode, true);
    let mut ancount = 0u16;
    let mut nscount = 0u16;
    let mut arcount = 0u16;
    let mut scope = 0u8;
    match rrset {
        Some(rr) => {
            scope = select(snap, geo, rr, &q, ctx, scratch);
            for &i in &scratch.order {
                out.extend_from_slice(rr.record(i as usize));
            }
            ancount = scratch.order.len() as u16;
            if rr.additional_count > 0 {
                out.extend_from_slice(&rr.additional);
                arcount = rr.additional_count;
            }
        }
        None => {
            if let Some(z) = zone.and_then(|z| snap.zones.get(z as usize)) {
                out.extend_from_slice(&z.soa_authority);
                nscount = 1;
            }
        }
    }
    if q.edns.is_some() {
        push_opt(out, &q, 0, scope);
        arcount += 1;
    }
    if out.len() > limit {
        // does not fit: TC with the question (and OPT) only; the client retries over TCP
        out.clear();
        write_header(
            out,
            q.id,
            response_flags(q.flags, true, rcode) | 0x0200,
            [1, 0, 0, 0],
        );
        out.extend_from_slice(&query[12..q.q_end]);
        if q.edns.is_some() {
            push_opt(out, &q, 0, scope);
            set_count(out, 3, 1);
        }
        return Outcome::Reply {
            qtype: q.qtype,
            rcode,
        };
    }
    set_count(out, 1, ancount);
    set_count(out, 2, nscount);
    set_count(out, 3, arcount);
    Outcome::Reply {
        qtype: q.qtype,
        rcode,
    }
}

fn finish_simple(out: &mut Vec<u8>, q: &Query, query: &[u8], rcode: u16, aa: bool) -> Outcome {
    write_header(out, q.id, response_flags(q.flags, aa, rcode), [1, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.q_end]);
    if q.edns.is_some() {
        push_opt(out, q, 0, 0);
        set_count(out, 3, 1);
    }
    Outcome::Reply {
        qtype: q.qtype,
        rcode,
    }
}

/// Appends our OPT record, echoing ECS with `scope`.
fn push_opt(out: &mut Vec<u8>, q: &Query, ext_rcode: u16, scope: u8) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[(ext_rcode >> 4) as u8, 0, 0, 0]);
    match q.edns.as_ref().and_then(|e| e.ecs) {
        Some(ecs) => {
            let len = 4 + ecs.addr_len as u16;
            out.extend_from_slice(&(len + 4).to_be_bytes());
            out.extend_from_slice(&OPT_ECS.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&ecs.family.to_be_bytes());
            out.push(ecs.source_prefix);
            out.push(scope);
            out.extend_from_slice(&ecs.addr[..ecs.addr_len]);
        }
        None => out.extend_from_slice(&0u16.to_be_bytes()),
    }
}

fn find_zone(snap: &Snapshot, key: &[u8]) -> Option<u16> {
    let mut pos = 0;
    while pos < key.len() {
        if let Some(z) = snap.zone_index.get(&key[pos..]) {
            return Some(*z);
        }
        let len = key[pos] as usize;
        if len == 0 {
            return None;
        }
        pos += len + 1;
    }
    None
}

fn pick_rrset(entry: &NameEntry, qtype: u16) -> Option<&RRset> {
    if qtype == TYPE_ANY {
        // RFC 8482: a subset is a complete answer to ANY
        return entry
            .rrset(TYPE_A)
            .or_else(|| entry.rrset(TYPE_AAAA))
            .or_else(|| entry.rrsets.first());
    }
    entry.rrset(qtype)
}

/// Fills `scratch.order` with the record indices to send; returns the ECS scope.
fn select(
    snap: &Snapshot,
    geo: Option<&GeoDb>,
    rr: &RRset,
    q: &Query,
    ctx: &QueryCtx,
    s: &mut Scratch,
) -> u8 {
    let n = rr.count();
    s.order.clear();
    match &rr.order {
        RecordOrder::Fixed => s.order.extend(0..n as u16),
        RecordOrder::Rotate => rotate_all(snap, n, s),
        RecordOrder::Weighted { region, weights } => {
            // upstream's `loadbalance weight`: a weighted random order of the
            // regions (zero weights kept, last), every address returned
            s.regions.clear();
            s.regions.extend(0..weights.len() as u16);
            let mut rng = rand::rng();
            let mut remaining = s.regions.len();
            while remaining > 0 {
                let total: u64 = s.regions[..remaining]
                    .iter()
                    .map(|r| weights[*r as usize] as u64)
                    .sum();
                let pick = if total == 0 {
                    rng.random_range(0..remaining)
                } else {
                    let mut x = rng.random_range(0..total);
                    let mut idx = 0;
                    for (i, r) in s.regions[..remaining].iter().enumerate() {
                        let w = weights[*r as usize] as u64;
                        if x < w {
                            idx = i;
                            break;
                        }
                        x -= w;
                    }
                    idx
                };
                s.regions.swap(pick, remaining - 1);
                remaining -= 1;
            }
            // s.regions now holds the draw from the back: first drawn is last
            for r in s.regions.iter().rev() {
                s.order
                    .extend((0..n as u16).filter(|i| region[*i as usize] == *r));
            }
        }
        RecordOrder::GeoIp { locations } => {
            let ecs = q.edns.as_ref().and_then(|e| e.ecs);
            let client_ip = ecs.map(|e| e.ip()).unwrap_or(ctx.client);
            let mut scope = 0;
            if let Some(db) = geo {
                let client = db.locate(client_ip);
                for (field, value) in client.values.iter().enumerate() {
                    let Some(value) = value else { continue };
                    s.order.extend((0..n as u16).filter(|i| {
                        locations[*i as usize].values.get(field).and_then(|v| v.as_ref()) == Some(value)
                    }));
                    if !s.order.is_empty() {
                        scope = client.prefix_len;
                        break;
                    }
                }
            }
            if s.order.is_empty() {
                rotate_all(snap, n, s);
            } else {
                let start = snap.rotation.fetch_add(1, Ordering::Relaxed) as usize % s.order.len();
                s.order.rotate_left(start);
            }
            return ecs.map(|e| scope.min(e.source_prefix)).unwrap_or(0);
        }
    }
    0
}

fn rotate_all(snap: &Snapshot, n: usize, s: &mut Scratch) {
    let start = if n > 1 {
        snap.rotation.fetch_add(1, Ordering::Relaxed) as usize % n
    } else {
        0
    };
    s.order.extend((start..n).chain(0..start).map(|i| i as u16));
}

#[cfg(test)]
mod tests;
