//! The zone snapshot: everything the DNS server answers, precomputed in wire
//! format by the engine and swapped in atomically. Immutable once built; the
//! query path ([`super::wire`]) only looks names up and copies records.
//!
//! Records whose owner is the query name are stored with the owner as a
//! compression pointer to the question (`0xC00C`), so the answer echoes the
//! name exactly as asked and a record can be copied without rewriting.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::AtomicU32;

use crate::core::strategy::{Answer, Order};
use crate::geoip::{GeoDb, Location};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;
/// Pointer to the question name at offset 12.
const OWNER_PTR: [u8; 2] = [0xC0, 0x0C];

/// A DNS name in presentation form → lower-case wire format. Names reaching
/// here were validated by the config layer; an empty label is skipped.
pub fn name_to_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let bytes = label.as_bytes();
        let len = bytes.len().min(63);
        out.push(len as u8);
        out.extend(bytes[..len].iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// How the records of an RRset are ordered or filtered per query.
#[derive(Debug)]
pub enum RecordOrder {
    /// Always in stored order (SOA, NS, glue).
    Fixed,
    /// Rotated by one position on every query.
    Rotate,
    /// A weighted random order of regions; `region[i]` is the index of
    /// record i's region in `weights`.
    Weighted { region: Box<[u16]>, weights: Box<[u32]> },
    /// Filtered by the client's location; `locations[i]` is record i's.
    GeoIp { locations: Box<[Location]> },
}

/// One RRset, records in wire format (owner = pointer to the question).
#[derive(Debug)]
pub struct RRset {
    pub rtype: u16,
    /// Concatenated records.
    pub data: Box<[u8]>,
    /// `offsets[i]..offsets[i+1]` is record i; `len() == count + 1`.
    pub offsets: Box<[u32]>,
    pub order: RecordOrder,
    /// Additional-section records (glue for NS), full owner names.
    pub additional: Box<[u8]>,
    pub additional_count: u16,
}

impl RRset {
    pub fn count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn record(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// A name the server knows.
#[derive(Debug)]
pub struct NameEntry {
    /// The served zone it belongs to (`None` for out-of-zone glue names).
    pub zone: Option<u16>,
    pub rrsets: Vec<RRset>,
}

impl NameEntry {
    pub fn rrset(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// A served zone.
#[derive(Debug)]
pub struct ZoneData {
    pub name: String,
    pub serial: u32,
    /// The SOA record with its full owner name, for the authority section.
    pub soa_authority: Box<[u8]>,
}

/// Everything served, at one generation.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub names: HashMap<Box<[u8]>, NameEntry>,
    pub zone_index: HashMap<Box<[u8]>, u16>,
    pub zones: Vec<ZoneData>,
    /// Drives answer rotation; relaxed increments from every query.
    pub rotation: AtomicU32,
}

/// One served zone as the engine describes it.
#[derive(Debug, Clone)]
pub struct ZoneInput {
    pub name: String,
    /// This server's NS name (SOA mname).
    pub mname: String,
    /// Every cluster's NS name, sorted.
    pub ns_names: Vec<String>,
    pub ns_ttl: u32,
    pub neg_ttl: u32,
}

/// One host (`<host>` and `localtargets-<host>`), computed by the strategy engine.
#[derive(Debug, Clone)]
pub struct HostInput {
    pub host: String,
    pub localtargets: String,
    pub answer: Answer,
}

/// Addresses of an NS name (glue).
#[derive(Debug, Clone)]
pub struct GlueInput {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub ttl: u32,
}

/// What the engine knows about a zone's previous version, for the serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZoneVersion {
    pub content_hash: u64,
    pub serial: u32,
}

fn push_record(out: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

fn ip_rdata(ip: &IpAddr) -> (u16, Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
        IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
    }
}

fn rrset(rtype: u16, ttl: u32, rdatas: &[Vec<u8>], order: RecordOrder) -> RRset {
    let mut data = Vec::new();
    let mut offsets = vec![0u32];
    for rd in rdatas {
        push_record(&mut data, &OWNER_PTR, rtype, ttl, rd);
        offsets.push(data.len() as u32);
    }
    RRset {
        rtype,
        data: data.into(),
        offsets: offsets.into(),
        order,
        additional: Box::new([]),
        additional_count: 0,
    }
}

/// Chooses the per-query order of a family's records.
type OrderFn<'a> = &'a dyn Fn(&[(IpAddr, usize)]) -> RecordOrder;

/// Builds the A and AAAA RRsets for addresses with a per-record order.
fn address_rrsets(ips: &[(IpAddr, usize)], ttl: u32, order_of: OrderFn<'_>) -> Vec<RRset> {
    let mut out = Vec::new();
    for want in [TYPE_A, TYPE_AAAA] {
        let family: Vec<(IpAddr, usize)> = ips
            .iter()
            .filter(|(ip, _)| ip_rdata(ip).0 == want)
            .copied()
            .collect();
        if family.is_empty() {
            continue;
        }
        let rdatas: Vec<Vec<u8>> = family.iter().map(|(ip, _)| ip_rdata(ip).1).collect();
        out.push(rrset(want, ttl, &rdatas, order_of(&family)));
    }
    out
}

/// Builds a snapshot. `previous` holds each zone's last content hash and
/// serial; a zone whose content changed gets `max(serial + 1, now)`.
/// Returns the snapshot and the new zone versions.
pub fn build(
    generation: u64,
    zones: &[ZoneInput],
    hosts: &[HostInput],
    glue: &[GlueInput],
    geo: Option<&GeoDb>,
    previous: &BTreeMap<String, ZoneVersion>,
    now_secs: u32,
) -> (Snapshot, BTreeMap<String, ZoneVersion>) {
    let mut snap = Snapshot {
        generation,
        ..Snapshot::default()
    };
    let zone_keys: Vec<Vec<u8>> = zones.iter().map(|z| name_to_wire(&z.name)).collect();
    for (i, k) in zone_keys.iter().enumerate() {
        snap.zone_index.insert(k.clone().into(), i as u16);
    }
    // which zone a wire name belongs to: the longest zone suffix
    let zone_of = |wire: &[u8]| -> Option<u16> {
        let mut pos = 0;
        while pos < wire.len() {
            if let Some(z) = snap.zone_index.get(&wire[pos..]) {
                return Some(*z);
            }
            let len = wire[pos] as usize;
            if len == 0 {
                break;
            }
            pos += len + 1;
        }
        None
    };
    let mut names: HashMap<Box<[u8]>, NameEntry> = HashMap::new();
    let mut hashers: Vec<DefaultHasher> = zones.iter().map(|_| DefaultHasher::new()).collect();

    let glue_map: HashMap<String, &GlueInput> = glue.iter().map(|g| (g.name.clone(), g)).collect();
    for g in glue {
        let key = name_to_wire(&g.name);
        let zone = zone_of(&key);
        let ips: Vec<(IpAddr, usize)> = g.ips.iter().map(|ip| (*ip, 0)).collect();
        let rrsets = address_rrsets(&ips, g.ttl, &|_| RecordOrder::Fixed);
        if let Some(z) = zone {
            (g.name.as_str(), &g.ips, g.ttl).hash(&mut hashers[z as usize]);
        }
        names.insert(key.into(), NameEntry { zone, rrsets });
    }

    for h in hosts {
        let key = name_to_wire(&h.host);
        let Some(zone) = zone_of(&key) else { continue };
        let hasher = &mut hashers[zone as usize];
        let ttl = h.answer.ttl;
        if !h.answer.targets.is_empty() {
            let regions: Vec<&str> = {
                let mut r: Vec<&str> = h.answer.targets.iter().map(|t| t.region.as_str()).collect();
                r.dedup();
                r
            };
            let ips: Vec<(IpAddr, usize)> = h
                .answer
                .targets
                .iter()
                .map(|t| {
                    (
                        t.ip,
                        regions.iter().position(|r| *r == t.region.as_str()).unwrap_or(0),
                    )
                })
                .collect();
            let order_of = |family: &[(IpAddr, usize)]| -> RecordOrder {
                match &h.answer.order {
                    Order::Shuffle => RecordOrder::Rotate,
                    Order::Weighted(weights) => RecordOrder::Weighted {
                        region: family.iter().map(|(_, r)| *r as u16).collect(),
                        weights: regions
                            .iter()
                            .map(|r| {
                                weights
                                    .iter()
                                    .find(|(t, _)| t.as_str() == *r)
                                    .map(|(_, w)| *w)
                                    .unwrap_or(0)
                            })
                            .collect(),
                    },
                    Order::GeoIp => RecordOrder::GeoIp {
                        locations: family
                            .iter()
                            .map(|(ip, _)| geo.map(|g| g.locate(*ip)).unwrap_or_default())
                            .collect(),
                    },
                }
            };
            let rrsets = address_rrsets(&ips, ttl, &order_of);
            (&h.host, &h.answer.targets, ttl, format!("{:?}", h.answer.order)).hash(hasher);
            names.insert(
                key.clone().into(),
                NameEntry {
                    zone: Some(zone),
                    rrsets,
                },
            );
        }
        if !h.answer.local_targets.is_empty() {
            let lt_key = name_to_wire(&h.localtargets);
            let ips: Vec<(IpAddr, usize)> = h.answer.local_targets.iter().map(|ip| (*ip, 0)).collect();
            let rrsets = address_rrsets(&ips, ttl, &|_| RecordOrder::Rotate);
            (&h.localtargets, &h.answer.local_targets, ttl).hash(hasher);
            names.insert(
                lt_key.into(),
                NameEntry {
                    zone: Some(zone),
                    rrsets,
                },
            );
        }
    }

    // empty non-terminals between every name and its zone apex exist (NODATA)
    let keys: Vec<Box<[u8]>> = names.keys().cloned().collect();
    for key in keys {
        let Some(zone) = names.get(&key).and_then(|e| e.zone) else {
            continue;
        };
        let apex_len = zone_keys[zone as usize].len();
        let mut pos = 0;
        while key.len() - pos > apex_len {
            pos += key[pos] as usize + 1;
            if key.len() - pos <= apex_len {
                break;
            }
            names.entry(key[pos..].into()).or_insert_with(|| NameEntry {
                zone: Some(zone),
                rrsets: Vec::new(),
            });
        }
    }

    let mut versions = BTreeMap::new();
    for (i, z) in zones.iter().enumerate() {
        let mut hasher = hashers[i].clone();
        (&z.ns_names, z.ns_ttl, z.neg_ttl, &z.mname).hash(&mut hasher);
        let content_hash = hasher.finish();
        let serial = match previous.get(&z.name) {
            Some(prev) if prev.content_hash == content_hash => prev.serial,
            Some(prev) => prev.serial.wrapping_add(1).max(now_secs),
            None => now_secs.max(1),
        };
        versions.insert(z.name.clone(), ZoneVersion { content_hash, serial });

        let apex = zone_keys[i].clone();
        let mut soa_rdata = name_to_wire(&z.mname);
        soa_rdata.extend(name_to_wire(&format!("hostmaster.{}", z.name)));
        for v in [serial, 7200, 1800, 86400, z.neg_ttl] {
            soa_rdata.extend_from_slice(&v.to_be_bytes());
        }
        let mut soa_authority = Vec::new();
        push_record(&mut soa_authority, &apex, TYPE_SOA, z.neg_ttl, &soa_rdata);

        let ns_rdatas: Vec<Vec<u8>> = z.ns_names.iter().map(|n| name_to_wire(n)).collect();
        let mut ns = rrset(TYPE_NS, z.ns_ttl, &ns_rdatas, RecordOrder::Fixed);
        let mut additional = Vec::new();
        let mut additional_count = 0u16;
        for n in &z.ns_names {
            if let Some(g) = glue_map.get(n) {
                let owner = name_to_wire(n);
                for ip in &g.ips {
                    let (t, rd) = ip_rdata(ip);
                    push_record(&mut additional, &owner, t, g.ttl, &rd);
                    additional_count += 1;
                }
            }
        }
        ns.additional = additional.into();
        ns.additional_count = additional_count;
        let soa = rrset(TYPE_SOA, z.neg_ttl, &[soa_rdata], RecordOrder::Fixed);
        let entry = names.entry(apex.clone().into()).or_insert_with(|| NameEntry {
            zone: Some(i as u16),
            rrsets: Vec::new(),
        });
        entry.zone = Some(i as u16);
        entry.rrsets.retain(|r| r.rtype != TYPE_SOA && r.rtype != TYPE_NS);
        entry.rrsets.push(soa);
        entry.rrsets.push(ns);
        snap.zones.push(ZoneData {
            name: z.name.clone(),
            serial,
            soa_authority: soa_authority.into(),
        });
    }
    snap.names = names;
    (snap, versions)
}
