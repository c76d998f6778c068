//! The strategy engine: from a host's local targets and health, the targets
//! each peer published and the Gslb's strategy, the answer set this cluster
//! serves. Reproduces upstream's tables (`k8gb-behaviour.md` §4.1–§4.4) for
//! IPv4 and IPv6 alike, and rejects the specs upstream silently misreads.
//!
//! Addresses of both families go through one decision: a peer counts as
//! "present" when it published any target, A or AAAA, and the chosen set is
//! then split by family by the DNS layer. So a failover secondary that sees an
//! IPv4-only primary answers AAAA queries with no data rather than sending
//! IPv6 clients to itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::health::Health;
use super::names::{GeoTag, NameError};

/// TTL of `<host>` and `localtargets-<host>` when `dnsTtlSeconds` is 0 or absent.
pub const DEFAULT_TTL: u32 = 30;
/// Largest weight upstream accepts for a region.
pub const MAX_WEIGHT: i64 = 1000;
/// Largest TTL a resolver must honour (RFC 2181 §8).
pub const MAX_TTL: i64 = i32::MAX as i64;

/// `spec.strategy.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RoundRobin,
    Failover,
    GeoIp,
}

impl Kind {
    /// Parses upstream's spelling exactly (`roundRobin`, `failover`, `geoip`).
    pub fn parse(s: &str) -> Result<Kind, StrategyError> {
        match s {
            "roundRobin" => Ok(Kind::RoundRobin),
            "failover" => Ok(Kind::Failover),
            "geoip" => Ok(Kind::GeoIp),
            other => Err(StrategyError::UnknownType(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RoundRobin => "roundRobin",
            Kind::Failover => "failover",
            Kind::GeoIp => "geoip",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy spec as found in a Gslb or the config file, before validation.
/// Integers are wide so that out-of-range input is reported, not truncated.
#[derive(Debug, Clone, Copy)]
pub struct StrategySpec<'a> {
    pub type_: &'a str,
    pub weight: Option<&'a BTreeMap<String, i64>>,
    pub primary_geo_tag: Option<&'a str>,
    pub dns_ttl_seconds: Option<i64>,
}

/// Why a strategy spec was rejected. Each names the field, so a one-line
/// message can be built from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("type: unknown strategy type {0:?} (expected roundRobin, failover or geoip)")]
    UnknownType(String),
    #[error("primaryGeoTag: required for the failover strategy (upstream would silently act as roundRobin)")]
    FailoverWithoutPrimary,
    #[error("primaryGeoTag: {value:?} {reason}")]
    BadPrimaryGeoTag { value: String, reason: NameError },
    #[error("weight: only allowed with type roundRobin, not {0}")]
    WeightRequiresRoundRobin(Kind),
    #[error("weight.{key}: {reason}")]
    BadWeightKey { key: String, reason: NameError },
    #[error("weight.{geotag}: {weight} is out of range 0..=1000")]
    WeightOutOfRange { geotag: String, weight: i64 },
    #[error("dnsTtlSeconds: {0} is out of range 0..=2147483647")]
    TtlOutOfRange(i64),
}

/// A validated strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    pub kind: Kind,
    /// Region weights, only with `roundRobin`.
    pub weights: BTreeMap<GeoTag, u32>,
    /// The primary region, always set for `failover`.
    pub primary: Option<GeoTag>,
    /// TTL of the host's records; 0 or absent in the spec becomes 30.
    pub ttl: u32,
}

impl Strategy {
    /// Validates a spec the way upstream's operator does, plus the checks
    /// upstream lacks (failover needs a primary; see `docs/compatibility.md`).
    pub fn validate(spec: StrategySpec<'_>) -> Result<Strategy, StrategyError> {
        let kind = Kind::parse(spec.type_)?;
        let ttl = match spec.dns_ttl_seconds {
            None | Some(0) => DEFAULT_TTL,
            Some(t) if (1..=MAX_TTL).contains(&t) => t as u32,
            Some(t) => return Err(StrategyError::TtlOutOfRange(t)),
        };
        let mut weights = BTreeMap::new();
        if let Some(w) = spec.weight.filter(|w| !w.is_empty()) {
            if kind != Kind::RoundRobin {
                return Err(StrategyError::WeightRequiresRoundRobin(kind));
            }
            for (key, &weight) in w {
                let tag = GeoTag::parse(key).map_err(|reason| StrategyError::BadWeightKey {
                    key: key.clone(),
                    reason,
                })?;
                if !(0..=MAX_WEIGHT).contains(&weight) {
                    return Err(StrategyError::WeightOutOfRange {
                        geotag: key.clone(),
                        weight,
                    });
                }
                weights.insert(tag, weight as u32);
            }
        }
        let primary = match spec.primary_geo_tag.filter(|p| !p.is_empty()) {
            Some(p) => Some(
                GeoTag::parse(p).map_err(|reason| StrategyError::BadPrimaryGeoTag {
                    value: p.to_string(),
                    reason,
                })?,
            ),
            None => None,
        };
        if kind == Kind::Failover && primary.is_none() {
            return Err(StrategyError::FailoverWithoutPrimary);
        }
        Ok(Strategy {
            kind,
            weights,
            primary,
            ttl,
        })
    }
}

/// One address of the final answer and the region it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub ip: IpAddr,
    pub region: GeoTag,
}

/// How the DNS layer orders (or filters) the answer on each query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Plain round robin: rotate or shuffle on every query.
    Shuffle,
    /// Weighted round robin (upstream's `loadbalance weight`): draw a
    /// weighted-random order of the regions, zero weights kept, and return
    /// every address region by region. Only when every region in the answer
    /// has a weight; otherwise upstream skips the reordering and so do we.
    Weighted(BTreeMap<GeoTag, u32>),
    /// geoip: keep the targets whose location matches the client's; all of
    /// them when none matches.
    GeoIp,
}

/// What this cluster publishes for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `localtargets-<host>`: this cluster's targets while the host is
    /// Healthy, else empty (no record).
    pub local_targets: Vec<IpAddr>,
    /// `<host>`: the global answer. Empty means no record (NXDOMAIN).
    pub targets: Vec<Target>,
    pub order: Order,
    pub ttl: u32,
}

impl Answer {
    /// The addresses of the final answer, in stored order.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.targets.iter().map(|t| t.ip)
    }
}

/// Computes the answer for one host.
///
/// * `me`: this cluster's geotag; a peer entry with the same tag is ignored.
/// * `health`, `local`: this cluster's health for the host and its targets (`L`).
/// * `peers`: what each peer's `localtargets-<host>` returned (`E`); a peer
///   with no targets counts as absent, as upstream.
///
/// Output order is deterministic: local targets first, then peers by geotag,
/// each sorted; duplicates keep their first occurrence.
pub fn answer(
    strategy: &Strategy,
    me: &GeoTag,
    health: Health,
    local: &[IpAddr],
    peers: &BTreeMap<GeoTag, Vec<IpAddr>>,
) -> Answer {
    let local_targets: Vec<IpAddr> = if health.is_healthy() {
        sorted_unique(local.iter().copied())
    } else {
        Vec::new()
    };
    let present: BTreeMap<&GeoTag, Vec<IpAddr>> = peers
        .iter()
        .filter(|(tag, ips)| *tag != me && !ips.is_empty())
        .map(|(tag, ips)| (tag, sorted_unique(ips.iter().copied())))
        .collect();

    let mut out = Collector::default();
    let all_peers = |out: &mut Collector| {
        for (tag, ips) in &present {
            out.extend(tag, ips);
        }
    };
    match strategy.kind {
        Kind::RoundRobin | Kind::GeoIp => {
            out.extend(me, &local_targets);
            all_peers(&mut out);
        }
        Kind::Failover => {
            let primary = strategy.primary.as_ref();
            if present.is_empty() {
                // upstream skips the strategy logic without peer targets
                out.extend(me, &local_targets);
            } else if primary == Some(me) {
                if health.is_healthy() {
                    out.extend(me, &local_targets);
                } else {
                    all_peers(&mut out);
                }
            } else if let Some((tag, ips)) = primary.and_then(|p| present.get_key_value(p)) {
                out.extend(tag, ips);
            } else {
                out.extend(me, &local_targets);
                all_peers(&mut out);
            }
        }
    }

    let order = match strategy.kind {
        Kind::GeoIp => Order::GeoIp,
        Kind::Failover => Order::Shuffle,
        Kind::RoundRobin if strategy.weights.is_empty() => Order::Shuffle,
        Kind::RoundRobin => {
            let regions: BTreeSet<&GeoTag> = out.targets.iter().map(|t| &t.region).collect();
            if regions.iter().all(|r| strategy.weights.contains_key(*r)) {
                Order::Weighted(
                    strategy
                        .weights
                        .iter()
                        .filter(|(tag, _)| regions.contains(tag))
                        .map(|(tag, w)| (tag.clone(), *w))
                        .collect(),
                )
            } else {
                Order::Shuffle
            }
        }
    };
    Answer {
        local_targets,
        targets: out.targets,
        order,
        ttl: strategy.ttl,
    }
}

fn sorted_unique(ips: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> = ips.collect();
    set.into_iter().collect()
}

#[derive(Default)]
struct Collector {
    seen: BTreeSet<IpAddr>,
    targets: Vec<Target>,
}

impl Collector {
    fn extend(&mut self, region: &GeoTag, ips: &[IpAddr]) {
        for ip in ips {
            if self.seen.insert(*ip) {
                self.targets.push(Target {
                    ip: *ip,
                    region: region.clone(),
                });
            }
        }
    }
}
