//! Upstream k8gb's strategy scenarios on three real control planes (eu, us,
//! ap) with the chart installed and k8gb running with the chart's
//! ServiceAccount and environment, each checked with `dig` in every region:
//!
//! 1. round robin over three clusters (terratest `TestFullRoundRobin`):
//!    apps scaled down one by one shrink every region's answer, scaled up
//!    they grow it again;
//! 2. split failover (terratest `TestK8gbSplitFailoverExample`): the same
//!    host with a different `primaryGeoTag` per cluster, each cluster
//!    following its own primary (`k8gb-behaviour.md` §4.4);
//! 3. weighted round robin (§4.2): every healthy region's targets, grouped
//!    by region, the heaviest region drawn first most often;
//! 4. `CLUSTER_EXPOSED_IPS` (chainsaw `cluster-exposed-ips`, §5.2, §5.4):
//!    the app records and the NS glue at the edge become the exposed IPs,
//!    and the per-Gslb `k8gb.io/exposed-ip-addresses` annotation still wins.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use common::product::{APPS, Mesh, NAMESPACE, RELEASE, Region, WITHIN, app_yaml, ingress_yaml, scale};

const EU: &str = "192.0.2.51";
const US: &str = "192.0.2.52";
const AP: &str = "192.0.2.53";

/// Each region's Ingress address.
fn target(r: &Region) -> &'static str {
    match r.tag.as_str() {
        "eu" => EU,
        "us" => US,
        "ap" => AP,
        other => panic!("no target for {other}"),
    }
}

/// A second Ingress address per region (the weighted scenario's load
/// balancers have two), to check that a region's addresses stay together.
fn second_target(r: &Region) -> &'static str {
    match r.tag.as_str() {
        "eu" => "198.51.100.51",
        "us" => "198.51.100.52",
        "ap" => "198.51.100.53",
        other => panic!("no target for {other}"),
    }
}

/// In `r`: Deployment + Service `name`, an Ingress for
/// `<name>.cloud.example.com` with load balancer `ips`, and a Gslb
/// referencing the Ingress by name with `strategy` (a flow mapping).
fn referenced_gslb(r: &Region, name: &str, ips: &[&str], strategy: &str) {
    let host = format!("{name}.cloud.example.com");
    r.apply(&app_yaml(name, 1));
    r.apply(&ingress_yaml(name, &host, name, &format!("app: {name}")));
    r.cluster.set_ingress_status(APPS, name, ips);
    r.apply(&format!(
        "apiVersion: k8gb.io/v1beta1\nkind: Gslb\nmetadata: {{name: {name}, namespace: {APPS}}}\n\
         spec:\n  resourceRef: {{apiVersion: networking.k8s.io/v1, kind: Ingress, name: {name}}}\n  \
         strategy: {strategy}\n"
    ));
}

/// `host` A from `r`, in the order the server sent them.
fn answers_in_order(r: &Region, host: &str) -> Vec<String> {
    common::dig(r.dns(), &["+short", "A", host])
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

/// Waits until each region answers what `want` gives for it (sorted).
fn wait_each(mesh: &Mesh, host: &str, want: impl Fn(&Region) -> Vec<&'static str>) {
    for r in &mesh.regions {
        r.wait_answers(host, &want(r));
    }
}

/// Scenario 1: Round robin: every cluster answers every healthy cluster's target;
/// apps scaled to 0 one by one leave, scaled back they return.
fn round_robin(mesh: &Mesh) {
    let host = "roundrobin.cloud.example.com";
    for r in &mesh.regions {
        referenced_gslb(
            r,
            "roundrobin",
            &[target(r)],
            "{type: roundRobin, dnsTtlSeconds: 5}",
        );
    }
    mesh.wait_answers(host, &[EU, US, AP]);
    // each cluster publishes only its own target as localtargets
    for r in &mesh.regions {
        r.wait_answers(&format!("localtargets-{host}"), &[target(r)]);
    }
    scale(mesh.region("eu"), "roundrobin", 0);
    mesh.wait_answers(host, &[US, AP]);
    mesh.region("eu")
        .wait_answers(&format!("localtargets-{host}"), &[]);
    scale(mesh.region("us"), "roundrobin", 0);
    mesh.wait_answers(host, &[AP]);
    scale(mesh.region("eu"), "roundrobin", 1);
    mesh.wait_answers(host, &[EU, AP]);
    scale(mesh.region("us"), "roundrobin", 1);
    mesh.wait_answers(host, &[EU, US, AP]);
}

/// Scenario 2: Split failover: one host, a different `primaryGeoTag` per cluster
/// (eu → eu, us → us, ap → eu). `primaryGeoTag` is a single geotag (a
/// string in the CRD, as upstream); each cluster applies §4.4 with its own:
/// a primary that is Healthy serves itself only, an unhealthy primary serves
/// every peer, a secondary serves its primary while that one publishes
/// targets, else itself and every peer.
fn split_failover(mesh: &Mesh) {
    let host = "split.cloud.example.com";
    let primary = |r: &Region| if r.tag == "us" { "us" } else { "eu" };
    for r in &mesh.regions {
        referenced_gslb(
            r,
            "split",
            &[target(r)],
            &format!(
                "{{type: failover, primaryGeoTag: {}, dnsTtlSeconds: 5}}",
                primary(r)
            ),
        );
    }
    // each primary serves itself; ap follows its primary eu
    wait_each(mesh, host, |r| match r.tag.as_str() {
        "us" => vec![US],
        _ => vec![EU],
    });

    // eu down: eu (primary, unhealthy) serves every peer; us (its own
    // primary) still itself; ap (its primary gone) itself and every peer
    scale(mesh.region("eu"), "split", 0);
    wait_each(mesh, host, |r| match r.tag.as_str() {
        "eu" => vec![US, AP],
        "us" => vec![US],
        _ => vec![US, AP],
    });
    scale(mesh.region("eu"), "split", 1);
    wait_each(mesh, host, |r| match r.tag.as_str() {
        "us" => vec![US],
        _ => vec![EU],
    });

    // us down: us (primary, unhealthy) serves every peer; eu and ap follow eu
    scale(mesh.region("us"), "split", 0);
    wait_each(mesh, host, |r| match r.tag.as_str() {
        "us" => vec![EU, AP],
        _ => vec![EU],
    });
    scale(mesh.region("us"), "split", 1);

    // ap down: a secondary whose primary is present serves the primary
    // whatever its own health, so nothing changes anywhere
    scale(mesh.region("ap"), "split", 0);
    mesh.region("ap")
        .wait_answers(&format!("localtargets-{host}"), &[]);
    wait_each(mesh, host, |r| match r.tag.as_str() {
        "us" => vec![US],
        _ => vec![EU],
    });
    // ap healthy again, eu down: ap serves itself and us again
    scale(mesh.region("ap"), "split", 1);
    mesh.region("ap")
        .wait_answers(&format!("localtargets-{host}"), &[AP]);
    scale(mesh.region("eu"), "split", 0);
    mesh.region("ap").wait_answers(host, &[US, AP]);
    scale(mesh.region("eu"), "split", 1);
    wait_each(mesh, host, |r| match r.tag.as_str() {
        "us" => vec![US],
        _ => vec![EU],
    });
}

/// Draws `n` answers for `host` from `r` and counts, per region, how often
/// that region's addresses came first. Every answer must hold exactly
/// `want` (any order) with each region's addresses next to each other.
fn first_regions(
    r: &Region,
    host: &str,
    want: &[&str],
    region_of: &BTreeMap<&str, &str>,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut want_sorted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want_sorted.sort();
    let mut firsts = BTreeMap::new();
    for _ in 0..n {
        let got = answers_in_order(r, host);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, want_sorted, "{}: {host} answered {got:?}", r.tag);
        // the regions in answer order, each appearing in one run
        let mut runs: Vec<&str> = Vec::new();
        for ip in &got {
            let region = region_of[ip.as_str()];
            if runs.last() != Some(&region) {
                assert!(
                    !runs.contains(&region),
                    "{}: {host} answered {got:?}: the addresses of {region} are not together",
                    r.tag
                );
                runs.push(region);
            }
        }
        *firsts.entry(runs[0].to_string()).or_insert(0) += 1;
    }
    eprintln!("{}: {host}: first region over {n} answers: {firsts:?}", r.tag);
    firsts
}

/// Scenario 3: Weighted round robin: the answer set is §4.1's (every healthy
/// cluster's targets); on each query the regions are drawn by weight and
/// every address returned, region by region (§4.2). Counted over a bounded
/// number of queries: 200 draws with weights 60/30/10 put eu first about
/// 120 times, us about 60 and ap about 20 (each ordering below fails with
/// a probability under 1e-5).
fn weighted(mesh: &Mesh) {
    let host = "weighted.cloud.example.com";
    const DRAWS: usize = 200;
    let mut region_of: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &mesh.regions {
        referenced_gslb(
            r,
            "weighted",
            &[target(r), second_target(r)],
            "{type: roundRobin, dnsTtlSeconds: 5, weight: {eu: 60, us: 30, ap: 10}}",
        );
        region_of.insert(target(r), r.tag.as_str());
        region_of.insert(second_target(r), r.tag.as_str());
    }
    let all: Vec<&str> = mesh
        .regions
        .iter()
        .flat_map(|r| [target(r), second_target(r)])
        .collect();
    mesh.wait_answers(host, &all);
    for r in &mesh.regions {
        let firsts = first_regions(r, host, &all, &region_of, DRAWS);
        let count = |tag: &str| firsts.get(tag).copied().unwrap_or(0);
        assert!(
            count("eu") > count("us") && count("us") > count("ap"),
            "{}: first region counts over {DRAWS} answers {firsts:?}, want eu > us > ap (weights 60/30/10)",
            r.tag
        );
    }

    // us unhealthy: its targets leave every answer; the other two keep
    // their weights (eu first about 6 times in 7)
    scale(mesh.region("us"), "weighted", 0);
    let rest: Vec<&str> = mesh
        .regions
        .iter()
        .filter(|r| r.tag != "us")
        .flat_map(|r| [target(r), second_target(r)])
        .collect();
    mesh.wait_answers(host, &rest);
    for r in &mesh.regions {
        let firsts = first_regions(r, host, &rest, &region_of, DRAWS);
        let count = |tag: &str| firsts.get(tag).copied().unwrap_or(0);
        assert!(
            count("eu") > count("ap") && count("us") == 0,
            "{}: first region counts over {DRAWS} answers {firsts:?}, want eu > ap, no us",
            r.tag
        );
    }
    scale(mesh.region("us"), "weighted", 1);
    mesh.wait_answers(host, &all);
}

/// The value of a counter (or 0 when absent) in `r`'s /metrics.
fn metric(r: &Region, key: &str) -> u64 {
    let text = common::http_get(r.server().admin, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Scenario 4: `CLUSTER_EXPOSED_IPS` in ap (its own loopback address, so that peers
/// still reach it through the glue): its app records become that address
/// instead of the Ingress status IP, in its localtargets and in every
/// region's answer; the glue of its NS name at the edge is that address,
/// even when the DNS Service's load balancer says otherwise (§5.4); and a
/// Gslb's `k8gb.io/exposed-ip-addresses` still wins over it (§5.2).
fn cluster_exposed_ips(mesh: &mut Mesh) {
    let host = "roundrobin.cloud.example.com";
    let local = format!("localtargets-{host}");
    let ap_ip = mesh.region("ap").cluster.ip().to_string();
    let ap_ip = ap_ip.as_str();
    let glue = "gslb-ns-ap-cloud.example.com";
    mesh.region("ap").wait_answers(&local, &[AP]);

    mesh.region_mut("ap")
        .helm_upgrade_set(&[&format!("k8gb.clusterExposedIPs={{{ap_ip}}}")]);
    assert_eq!(
        mesh.region("ap").env_value("CLUSTER_EXPOSED_IPS"),
        Some(ap_ip),
        "the chart renders CLUSTER_EXPOSED_IPS"
    );
    mesh.region("ap").wait_answers(&local, &[ap_ip]);
    mesh.wait_answers(host, &[EU, US, ap_ip]);
    // the other Gslbs of ap follow too
    mesh.region("ap")
        .wait_answers("localtargets-weighted.cloud.example.com", &[ap_ip]);
    // the other clusters' records are untouched
    mesh.region("eu").wait_answers(&local, &[EU]);
    mesh.region("us").wait_answers(&local, &[US]);

    // the glue: the cloud now reports another address for ap's DNS
    // Service; CLUSTER_EXPOSED_IPS comes first (§5.4). Changed while k8gb
    // is stopped, then checked once k8gb compared the edge with what it wants.
    {
        let ap = mesh.region_mut("ap");
        ap.k8gb = None;
        ap.cluster
            .set_service_lb_status(NAMESPACE, &format!("{RELEASE}-dns"), &["198.51.100.99"]);
        ap.start_k8gb();
    }
    let ap = mesh.region("ap");
    let key = |result: &str| {
        format!("k8gb_delegation_reconciles_total{{zone=\"cloud.example.com\",result=\"{result}\"}} ")
    };
    let checked = common::eventually(WITHIN, || {
        metric(ap, &key("unchanged")) + metric(ap, &key("updated")) > 0
    });
    assert!(
        checked,
        "ap: no delegation check after the restart\n{}",
        ap.log_tail(60)
    );
    assert_eq!(
        common::dig_short(mesh.edge.addr, &["A", glue]),
        vec![ap_ip.to_string()],
        "the edge's glue of ap's NS name is CLUSTER_EXPOSED_IPS"
    );
    // and peers still find ap through it
    mesh.wait_answers(host, &[EU, US, ap_ip]);

    // the per-Gslb annotation wins over CLUSTER_EXPOSED_IPS
    ap.kubectl_ok(&[
        "-n",
        APPS,
        "annotate",
        "gslbs.k8gb.io",
        "roundrobin",
        "k8gb.io/exposed-ip-addresses=198.51.100.77",
    ]);
    ap.wait_answers(&local, &["198.51.100.77"]);
    mesh.wait_answers(host, &[EU, US, "198.51.100.77"]);
    // only that Gslb: the others keep CLUSTER_EXPOSED_IPS
    ap.wait_answers("localtargets-weighted.cloud.example.com", &[ap_ip]);
    // the annotation does not touch the glue
    assert_eq!(
        common::dig_short(mesh.edge.addr, &["A", glue]),
        vec![ap_ip.to_string()]
    );
    // without the annotation, CLUSTER_EXPOSED_IPS again
    ap.kubectl_ok(&[
        "-n",
        APPS,
        "annotate",
        "gslbs.k8gb.io",
        "roundrobin",
        "k8gb.io/exposed-ip-addresses-",
    ]);
    ap.wait_answers(&local, &[ap_ip]);
    mesh.wait_answers(host, &[EU, US, ap_ip]);
}

#[test]
fn strategies_on_three_clusters() {
    common::require("dig", "bind9-dnsutils");
    let mut mesh = Mesh::start(&["eu", "us", "ap"], Ipv4Addr::new(127, 0, 0, 51), 5392);
    round_robin(&mesh);
    split_failover(&mesh);
    weighted(&mesh);
    cluster_exposed_ips(&mut mesh);
    let forbidden = mesh.forbidden_lines();
    assert!(
        forbidden.is_empty(),
        "403s in the k8gb logs:\n{}",
        forbidden.join("\n")
    );
}
