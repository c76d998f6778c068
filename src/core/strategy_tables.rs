//! Table tests: every row of `k8gb-behaviour.md` §4.1–§4.4, run once with
//! IPv4 targets and once with IPv6 targets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::health::Health::{self, *};
use super::names::GeoTag;
use super::strategy::*;

#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

fn tag(s: &str) -> GeoTag {
    GeoTag::parse(s).expect("test geotag")
}

/// The targets a region exposes in a family: eu has two, the others one.
fn region_ips(f: Family, region: &str) -> Vec<IpAddr> {
    let n: u8 = match region {
        "eu" => 1,
        "us" => 2,
        "ap" => 3,
        other => panic!("no addresses for test region {other}"),
    };
    let count = if region == "eu" { 2 } else { 1 };
    (1..=count)
        .map(|host| match f {
            Family::V4 => IpAddr::from([10, n, 0, host]),
            Family::V6 => IpAddr::from([0x2001, 0xdb8, n as u16, 0, 0, 0, 0, host as u16]),
        })
        .collect()
}

fn concat(f: Family, regions: &[&str]) -> Vec<IpAddr> {
    regions.iter().flat_map(|r| region_ips(f, r)).collect()
}

fn strategy(kind: &str, primary: Option<&str>, weights: &[(&str, i64)]) -> Strategy {
    let weight: BTreeMap<String, i64> = weights.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Strategy::validate(StrategySpec {
        type_: kind,
        weight: Some(&weight),
        primary_geo_tag: primary,
        dns_ttl_seconds: None,
    })
    .expect("valid test strategy")
}

/// One table row: this cluster `me` with `health`, peers that publish
/// targets, and the regions expected in the answer, in order.
struct Row {
    what: &'static str,
    me: &'static str,
    health: Health,
    peers: &'static [&'static str],
    expect: &'static [&'static str],
}

fn run(strategy: &Strategy, rows: &[Row]) {
    for f in FAMILIES {
        for row in rows {
            let me = tag(row.me);
            let local = region_ips(f, row.me);
            let peers: BTreeMap<GeoTag, Vec<IpAddr>> =
                row.peers.iter().map(|p| (tag(p), region_ips(f, p))).collect();
            let got = answer(strategy, &me, row.health, &local, &peers);
            let ctx = format!("{} {:?} [{}] {:?}", strategy.kind, strategy.primary, row.what, f);
            assert_eq!(
                got.ips().collect::<Vec<_>>(),
                concat(f, row.expect),
                "{ctx}: answer"
            );
            let regions: Vec<&str> = got.targets.iter().map(|t| t.region.as_str()).collect();
            let want_regions: Vec<&str> = row
                .expect
                .iter()
                .flat_map(|r| std::iter::repeat_n(*r, region_ips(f, r).len()))
                .collect();
            assert_eq!(regions, want_regions, "{ctx}: regions");
            let want_local = if row.health == Healthy { local } else { vec![] };
            assert_eq!(got.local_targets, want_local, "{ctx}: localtargets");
            assert_eq!(got.ttl, DEFAULT_TTL, "{ctx}: ttl");
        }
    }
}

/// §4.1, shared by roundRobin and geoip.
const ROUND_ROBIN_ROWS: &[Row] = &[
    Row {
        what: "healthy, peers",
        me: "eu",
        health: Healthy,
        peers: &["us", "ap"],
        expect: &["eu", "ap", "us"],
    },
    Row {
        what: "healthy, no peers",
        me: "eu",
        health: Healthy,
        peers: &[],
        expect: &["eu"],
    },
    Row {
        what: "unhealthy, peers",
        me: "eu",
        health: Unhealthy,
        peers: &["us", "ap"],
        expect: &["ap", "us"],
    },
    Row {
        what: "notfound, peers",
        me: "eu",
        health: NotFound,
        peers: &["us"],
        expect: &["us"],
    },
    Row {
        what: "unhealthy, no peers",
        me: "eu",
        health: Unhealthy,
        peers: &[],
        expect: &[],
    },
    Row {
        what: "notfound, no peers",
        me: "eu",
        health: NotFound,
        peers: &[],
        expect: &[],
    },
];

#[test]
fn round_robin_4_1() {
    let s = strategy("roundRobin", None, &[]);
    run(&s, ROUND_ROBIN_ROWS);
    let a = answer(
        &s,
        &tag("eu"),
        Healthy,
        &region_ips(Family::V4, "eu"),
        &BTreeMap::new(),
    );
    assert_eq!(a.order, Order::Shuffle);
}

#[test]
fn geoip_target_set_4_3() {
    let s = strategy("geoip", None, &[]);
    run(&s, ROUND_ROBIN_ROWS);
    let a = answer(
        &s,
        &tag("eu"),
        Healthy,
        &region_ips(Family::V6, "eu"),
        &BTreeMap::new(),
    );
    assert_eq!(a.order, Order::GeoIp);
}

#[test]
fn weighted_round_robin_4_2() {
    let s = strategy("roundRobin", None, &[("eu", 50), ("us", 30), ("ap", 20)]);
    run(&s, ROUND_ROBIN_ROWS);
    for f in FAMILIES {
        let peers = BTreeMap::from([(tag("us"), region_ips(f, "us"))]);
        let a = answer(&s, &tag("eu"), Healthy, &region_ips(f, "eu"), &peers);
        // only the regions that have targets carry a weight
        assert_eq!(
            a.order,
            Order::Weighted(BTreeMap::from([(tag("eu"), 50), (tag("us"), 30)])),
            "{f:?}"
        );
        let a = answer(&s, &tag("eu"), Unhealthy, &region_ips(f, "eu"), &peers);
        assert_eq!(
            a.order,
            Order::Weighted(BTreeMap::from([(tag("us"), 30)])),
            "{f:?}"
        );
    }
}

#[test]
fn weighted_zero_weight_kept_4_2() {
    let s = strategy("roundRobin", None, &[("eu", 0), ("us", 100)]);
    let peers = BTreeMap::from([(tag("us"), region_ips(Family::V4, "us"))]);
    let a = answer(&s, &tag("eu"), Healthy, &region_ips(Family::V4, "eu"), &peers);
    assert_eq!(a.ips().count(), 3, "zero-weight regions stay in the answer");
    assert_eq!(
        a.order,
        Order::Weighted(BTreeMap::from([(tag("eu"), 0), (tag("us"), 100)]))
    );
}

#[test]
fn weighted_region_without_weight_skips_reordering_4_2() {
    // upstream: answer IPs that do not all carry weight labels are not reordered
    let s = strategy("roundRobin", None, &[("eu", 50)]);
    for f in FAMILIES {
        let peers = BTreeMap::from([(tag("us"), region_ips(f, "us"))]);
        let a = answer(&s, &tag("eu"), Healthy, &region_ips(f, "eu"), &peers);
        assert_eq!(a.ips().collect::<Vec<_>>(), concat(f, &["eu", "us"]));
        assert_eq!(a.order, Order::Shuffle);
    }
}

/// §4.4 with primary eu, seen from the primary and from a secondary.
const FAILOVER_ROWS: &[Row] = &[
    Row {
        what: "primary healthy ignores peers",
        me: "eu",
        health: Healthy,
        peers: &["us", "ap"],
        expect: &["eu"],
    },
    Row {
        what: "primary unhealthy serves every peer",
        me: "eu",
        health: Unhealthy,
        peers: &["us", "ap"],
        expect: &["ap", "us"],
    },
    Row {
        what: "primary notfound serves every peer",
        me: "eu",
        health: NotFound,
        peers: &["us"],
        expect: &["us"],
    },
    Row {
        what: "primary unhealthy, no peers",
        me: "eu",
        health: Unhealthy,
        peers: &[],
        expect: &[],
    },
    Row {
        what: "primary healthy, no peers",
        me: "eu",
        health: Healthy,
        peers: &[],
        expect: &["eu"],
    },
    Row {
        what: "secondary healthy, primary present",
        me: "us",
        health: Healthy,
        peers: &["eu", "ap"],
        expect: &["eu"],
    },
    Row {
        what: "secondary unhealthy, primary present",
        me: "us",
        health: Unhealthy,
        peers: &["eu"],
        expect: &["eu"],
    },
    Row {
        what: "secondary healthy, primary absent",
        me: "us",
        health: Healthy,
        peers: &["ap"],
        expect: &["us", "ap"],
    },
    Row {
        what: "secondary unhealthy, primary absent",
        me: "us",
        health: Unhealthy,
        peers: &["ap"],
        expect: &["ap"],
    },
    Row {
        what: "secondary notfound, primary absent",
        me: "us",
        health: NotFound,
        peers: &["ap"],
        expect: &["ap"],
    },
    Row {
        what: "secondary unhealthy, no peers",
        me: "us",
        health: Unhealthy,
        peers: &[],
        expect: &[],
    },
    Row {
        what: "secondary healthy, no peers",
        me: "us",
        health: Healthy,
        peers: &[],
        expect: &["us"],
    },
];

#[test]
fn failover_4_4() {
    let s = strategy("failover", Some("eu"), &[]);
    run(&s, FAILOVER_ROWS);
}

#[test]
fn split_failover_4_4() {
    // each cluster names itself primary: each prefers its own targets
    let eu = strategy("failover", Some("eu"), &[]);
    let us = strategy("failover", Some("us"), &[]);
    run(
        &eu,
        &[
            Row {
                what: "eu healthy",
                me: "eu",
                health: Healthy,
                peers: &["us"],
                expect: &["eu"],
            },
            Row {
                what: "eu down",
                me: "eu",
                health: Unhealthy,
                peers: &["us"],
                expect: &["us"],
            },
        ],
    );
    run(
        &us,
        &[
            Row {
                what: "us healthy",
                me: "us",
                health: Healthy,
                peers: &["eu"],
                expect: &["us"],
            },
            Row {
                what: "us healthy, eu down",
                me: "us",
                health: Healthy,
                peers: &[],
                expect: &["us"],
            },
            Row {
                what: "us down",
                me: "us",
                health: Unhealthy,
                peers: &["eu"],
                expect: &["eu"],
            },
        ],
    );
}

#[test]
fn peer_with_no_targets_counts_as_absent() {
    let s = strategy("failover", Some("eu"), &[]);
    let peers = BTreeMap::from([(tag("eu"), vec![]), (tag("ap"), region_ips(Family::V4, "ap"))]);
    let a = answer(&s, &tag("us"), Healthy, &region_ips(Family::V4, "us"), &peers);
    assert_eq!(a.ips().collect::<Vec<_>>(), concat(Family::V4, &["us", "ap"]));
}

#[test]
fn own_geotag_in_peer_map_is_ignored() {
    let s = strategy("roundRobin", None, &[]);
    let peers = BTreeMap::from([(tag("eu"), region_ips(Family::V4, "us"))]);
    let a = answer(&s, &tag("eu"), Unhealthy, &[], &peers);
    assert!(a.targets.is_empty());
}

#[test]
fn failover_decides_across_families() {
    // the primary publishes only IPv4: a dual-stack secondary still defers to
    // it, so AAAA has no data instead of sending IPv6 clients to the secondary
    let s = strategy("failover", Some("eu"), &[]);
    let mut local = region_ips(Family::V4, "us");
    local.extend(region_ips(Family::V6, "us"));
    let peers = BTreeMap::from([(tag("eu"), region_ips(Family::V4, "eu"))]);
    let a = answer(&s, &tag("us"), Healthy, &local, &peers);
    assert_eq!(a.ips().collect::<Vec<_>>(), region_ips(Family::V4, "eu"));
    assert_eq!(a.local_targets.len(), 2, "both families stay in localtargets");
}

#[test]
fn duplicates_and_order_are_stable() {
    let s = strategy("roundRobin", None, &[]);
    let shared: IpAddr = [10, 9, 9, 9].into();
    let local = vec![[10, 1, 0, 2].into(), shared, [10, 1, 0, 1].into(), shared];
    let peers = BTreeMap::from([(tag("us"), vec![shared, [10, 2, 0, 1].into()])]);
    let a = answer(&s, &tag("eu"), Healthy, &local, &peers);
    let ips: Vec<IpAddr> = a.ips().collect();
    let want: Vec<IpAddr> = vec![
        [10, 1, 0, 1].into(),
        [10, 1, 0, 2].into(),
        shared,
        [10, 2, 0, 1].into(),
    ];
    assert_eq!(ips, want);
    assert_eq!(
        a.targets[2].region,
        tag("eu"),
        "a duplicate keeps its first (local) region"
    );
}

#[test]
fn validation() {
    let weight = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let check = |type_: &str, w: &BTreeMap<String, i64>, primary: Option<&str>, ttl: Option<i64>| {
        Strategy::validate(StrategySpec {
            type_,
            weight: Some(w),
            primary_geo_tag: primary,
            dns_ttl_seconds: ttl,
        })
    };
    let none = BTreeMap::new();
    assert_eq!(
        check("weightRoundRobin", &none, None, None),
        Err(StrategyError::UnknownType("weightRoundRobin".into()))
    );
    assert_eq!(
        check("RoundRobin", &none, None, None),
        Err(StrategyError::UnknownType("RoundRobin".into()))
    );
    assert_eq!(
        check("failover", &none, None, None),
        Err(StrategyError::FailoverWithoutPrimary)
    );
    assert_eq!(
        check("failover", &none, Some(""), None),
        Err(StrategyError::FailoverWithoutPrimary)
    );
    assert!(matches!(
        check("failover", &none, Some("eu west"), None),
        Err(StrategyError::BadPrimaryGeoTag { .. })
    ));
    let w = weight(&[("eu", 5)]);
    assert_eq!(
        check("failover", &w, Some("eu"), None),
        Err(StrategyError::WeightRequiresRoundRobin(Kind::Failover))
    );
    assert_eq!(
        check("geoip", &w, None, None),
        Err(StrategyError::WeightRequiresRoundRobin(Kind::GeoIp))
    );
    assert_eq!(
        check("roundRobin", &weight(&[("eu", 1001)]), None, None),
        Err(StrategyError::WeightOutOfRange {
            geotag: "eu".into(),
            weight: 1001
        })
    );
    assert_eq!(
        check("roundRobin", &weight(&[("eu", -1)]), None, None),
        Err(StrategyError::WeightOutOfRange {
            geotag: "eu".into(),
            weight: -1
        })
    );
    assert!(matches!(
        check("roundRobin", &weight(&[("eu_1", 1)]), None, None),
        Err(StrategyError::BadWeightKey { .. })
    ));
    let ok = check("roundRobin", &weight(&[("eu", 0), ("us", 1000)]), None, None).unwrap();
    assert_eq!(ok.weights.len(), 2);
    assert_eq!(
        check("roundRobin", &none, None, Some(-1)),
        Err(StrategyError::TtlOutOfRange(-1))
    );
    assert_eq!(
        check("roundRobin", &none, None, Some(0)).unwrap().ttl,
        DEFAULT_TTL
    );
    assert_eq!(check("roundRobin", &none, None, None).unwrap().ttl, DEFAULT_TTL);
    assert_eq!(check("roundRobin", &none, None, Some(5)).unwrap().ttl, 5);
    // a primary with roundRobin is accepted and ignored, as upstream
    assert!(check("roundRobin", &none, Some("eu"), None).is_ok());
    // an empty weight map is no weight at all
    assert!(check("failover", &none, Some("eu"), None).is_ok());
}

#[test]
fn ttl_is_carried() {
    let s = Strategy::validate(StrategySpec {
        type_: "roundRobin",
        weight: None,
        primary_geo_tag: None,
        dns_ttl_seconds: Some(7),
    })
    .unwrap();
    let a = answer(
        &s,
        &tag("eu"),
        Healthy,
        &region_ips(Family::V4, "eu"),
        &BTreeMap::new(),
    );
    assert_eq!(a.ttl, 7);
}
