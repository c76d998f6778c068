//! `k8gb check-config` run as a process: a good configuration passes, and
//! each kind of mistake exits non-zero with one line naming field and value.

use std::io::Write;
use std::process::{Command, Output};

/// Runs the binary with a clean environment plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_k8gb"));
    cmd.env_clear().arg("check-config").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run k8gb check-config")
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

/// Asserts failure with exit code 2 and exactly one stderr line containing every needle.
fn rejected(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in: {stderr}");
    }
}

const GOOD_ENV: &[(&str, &str)] = &[
    ("CLUSTER_GEO_TAG", "eu"),
    ("EXT_GSLB_CLUSTERS_GEO_TAGS", "eu,us"),
    ("DNS_ZONES", "example.com:cloud.example.com:30"),
    ("EDGE_DNS_SERVERS", "127.0.0.1:1053"),
];

#[test]
fn good_environment_passes() {
    let out = run(&[], GOOD_ENV);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.starts_with("config OK: mode=kubernetes geotag=eu zones=1 peers=1"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("k8gb starting") && stderr.contains("version="),
        "start-up line: {stderr}"
    );
}

#[test]
fn bad_geotag_characters() {
    let out = run(&[], &[("CLUSTER_GEO_TAG", "eu_west")]);
    rejected(
        &out,
        &["CLUSTER_GEO_TAG", "\"eu_west\"", "letters, digits and '-'"],
    );
    let out = run(&["--cluster-geo-tag", "eu west"], &[]);
    rejected(&out, &["--cluster-geo-tag", "\"eu west\""]);
}

#[test]
fn malformed_dns_zones() {
    let out = run(
        &[],
        &[
            ("CLUSTER_GEO_TAG", "eu"),
            ("DNS_ZONES", "example.com:cloud.example.com"),
        ],
    );
    rejected(
        &out,
        &[
            "DNS_ZONES",
            "\"example.com:cloud.example.com\"",
            "exactly three parts",
        ],
    );
    let out = run(
        &[],
        &[
            ("CLUSTER_GEO_TAG", "eu"),
            ("DNS_ZONES", "example.com:cloud.example.org:30"),
        ],
    );
    rejected(
        &out,
        &[
            "DNS_ZONES",
            "\"cloud.example.org\" is not a subdomain of \"example.com\"",
        ],
    );
}

#[test]
fn duplicate_edge_servers() {
    let out = run(
        &[],
        &[
            ("CLUSTER_GEO_TAG", "eu"),
            ("EDGE_DNS_SERVERS", "10.0.0.53:53,10.0.0.53"),
        ],
    );
    rejected(&out, &["EDGE_DNS_SERVERS", "\"10.0.0.53\" is listed twice"]);
}

#[test]
fn weight_out_of_range() {
    let f = file(
        "clusterGeoTag: eu\n\
         dnsZones: [{parentZone: example.com, loadBalancedZone: cloud.example.com}]\n\
         gslbs:\n  - name: app\n    hosts: [app.cloud.example.com]\n    strategy: {type: roundRobin, weight: {eu: 1001}}\n",
    );
    let out = run(&["--config", f.path().to_str().expect("path")], &[]);
    rejected(
        &out,
        &["gslbs[0].strategy", "weight.eu: 1001 is out of range 0..=1000"],
    );
}

#[test]
fn unknown_file_key() {
    let f = file("clusterGeoTag: eu\ndnsZone: cloud.example.com\n");
    let out = run(&["--config", f.path().to_str().expect("path")], &[]);
    rejected(&out, &[".yaml: dnsZone: unknown key"]);
}

#[test]
fn failover_without_primary() {
    let f = file(
        "clusterGeoTag: eu\n\
         dnsZones: [{parentZone: example.com, loadBalancedZone: cloud.example.com}]\n\
         gslbs: [{name: app, hosts: [app.cloud.example.com], strategy: {type: failover}}]\n",
    );
    let out = run(&["-c", f.path().to_str().expect("path")], &[]);
    rejected(
        &out,
        &["gslbs[0].strategy: primaryGeoTag: required for the failover strategy"],
    );
}

#[test]
fn more_mistakes() {
    rejected(
        &run(&[], &[("CLUSTER_GEO_TAG", "eu"), ("NS_RECORD_TTL", "0")]),
        &["NS_RECORD_TTL", "0 is out of range 1.."],
    );
    rejected(
        &run(&[], &[("CLUSTER_GEO_TAG", "eu"), ("LOG_LEVEL", "loud")]),
        &["LOG_LEVEL", "\"loud\""],
    );
    rejected(&run(&[], &[]), &["CLUSTER_GEO_TAG", "required"]);
    rejected(
        &run(&["--config", "/nonexistent/k8gb.yaml"], &[]),
        &["/nonexistent/k8gb.yaml", "cannot read config file"],
    );
    let f = file("clusterGeoTag: [eu\n");
    rejected(
        &run(&["--config", f.path().to_str().expect("path")], &[]),
        &[".yaml"],
    );
}

#[test]
fn deprecated_settings_warn_but_pass() {
    let out = run(
        &[],
        &[
            ("CLUSTER_GEO_TAG", "eu"),
            ("EDGE_DNS_SERVER", "127.0.0.1"),
            ("EDGE_DNS_SERVER_PORT", "1053"),
            ("LOG_FORMAT", "json"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warn = stdout
        .lines()
        .find(|l| l.contains("deprecated"))
        .unwrap_or_else(|| panic!("deprecation warning in json logs: {stdout}"));
    let v: serde_json::Value = serde_json::from_str(warn).expect("json log line");
    assert_eq!(v["level"], "WARN");
}

#[test]
fn shipped_examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let out = run(&["--config", path.to_str().expect("path")], &[]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no example configs found");
}
