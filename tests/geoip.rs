//! GeoIP against databases written by mmdb-writer (`tests/support/make_mmdb.py`,
//! needs `pip install mmdb-writer`; `bash scripts/test.sh` installs it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8gb::geoip::{GeoDb, GeoIpError, Location, SharedGeoDb, load_into, watch};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Fails (never skips) when python3 cannot import mmdb_writer.
fn require_mmdb_writer() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import mmdb_writer, netaddr"])
            .output()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(stderr.lines().last().unwrap_or("failed").trim().to_string())
        }
    });
    if let Err(e) = check {
        panic!(
            "the geoip tests build their databases with the PyPI package mmdb-writer, \
             which python3 cannot import ({e}): run `pip install mmdb-writer` \
             (or `bash scripts/test.sh`, which installs it)"
        );
    }
}

/// Writes a database from a make_mmdb.py spec into `dir/name`.
fn make_db(dir: &Path, name: &str, spec: &Value) -> PathBuf {
    require_mmdb_writer();
    let path = dir.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/make_mmdb.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(spec.to_string())
        .output()
        .expect("run python3 tests/support/make_mmdb.py");
    assert!(
        out.status.success(),
        "make_mmdb.py failed (pip install mmdb-writer?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Two datacenters, both families, IPv4 at ::/96 of an IPv6 database.
fn world() -> Value {
    json!([
        {"network": "10.1.0.0/16", "data": {
            "datacenter": "eu", "country": {"iso_code": "DE", "names": {"en": "Germany"}},
            "asn": 64512, "big": 5_000_000_000u64, "neg": -3, "ratio": 1.5, "anycast": true,
            "tags": ["a", "b"]}},
        {"network": "10.2.0.0/16", "data": {"datacenter": "us", "country": {"iso_code": "US"}}},
        {"network": "10.3.4.0/24", "data": {"datacenter": "us", "region": "us-east"}},
        {"network": "2001:db8:1::/48", "data": {"datacenter": "eu", "country": {"iso_code": "FR"}}},
        {"network": "2001:db8:2::/48", "data": {"datacenter": "us"}},
    ])
}

fn strings(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

fn open(spec: &Value, f: &[&str]) -> (tempfile::TempDir, GeoDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_db(dir.path(), "geo.mmdb", spec);
    let db = GeoDb::open(&path, &strings(f)).unwrap_or_else(|e| panic!("open: {e}"));
    (dir, db)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn values(loc: &Location) -> Vec<Option<&str>> {
    loc.values.iter().map(|v| v.as_deref()).collect()
}

fn open_error(path: &Path) -> String {
    match GeoDb::open(path, &strings(&["datacenter"])) {
        Ok(db) => panic!("{} opened: {db:?}", path.display()),
        Err(GeoIpError::Open { path: p, reason }) => {
            assert_eq!(p, path.display().to_string());
            assert!(!reason.is_empty());
            format!("{p}: {reason}")
        }
    }
}

#[test]
fn ipv4_and_ipv6_clients_get_their_values() {
    let (_dir, db) = open(&world(), &["datacenter"]);
    for (addr, dc, prefix) in [
        ("10.1.2.3", "eu", 16),
        ("10.2.255.255", "us", 16),
        ("10.3.4.200", "us", 24),
        ("2001:db8:1::5", "eu", 48),
        ("2001:db8:2:ffff::1", "us", 48),
    ] {
        let loc = db.locate(ip(addr));
        assert_eq!(values(&loc), [Some(dc)], "{addr}");
        assert_eq!(loc.prefix_len, prefix, "{addr}");
    }
}

#[test]
fn nested_field() {
    let (_dir, db) = open(&world(), &["country.iso_code", "country.names.en", "country"]);
    assert_eq!(
        values(&db.locate(ip("10.1.0.1"))),
        [Some("DE"), Some("Germany"), None]
    );
    assert_eq!(values(&db.locate(ip("2001:db8:1::1"))), [Some("FR"), None, None]);
    // No country at all, and a key into a string.
    let (_dir, db) = open(&world(), &["region.name", "datacenter.x"]);
    assert_eq!(values(&db.locate(ip("10.3.4.1"))), [None, None]);
}

#[test]
fn integer_and_other_scalar_fields() {
    let f = ["asn", "big", "neg", "ratio", "anycast", "tags"];
    let (_dir, db) = open(&world(), &f);
    assert_eq!(
        values(&db.locate(ip("10.1.0.1"))),
        [
            Some("64512"),
            Some("5000000000"),
            Some("-3"),
            Some("1.5"),
            Some("true"),
            None
        ]
    );
}

#[test]
fn first_field_missing_second_present() {
    let (_dir, db) = open(&world(), &["region", "datacenter"]);
    assert_eq!(values(&db.locate(ip("10.1.0.1"))), [None, Some("eu")]);
    assert_eq!(values(&db.locate(ip("10.3.4.1"))), [Some("us-east"), Some("us")]);
}

#[test]
fn unknown_address_has_no_values_and_the_empty_networks_prefix() {
    let (_dir, db) = open(&world(), &["region", "datacenter"]);
    // 192.0.2.1 leaves 10.0.0.0/8's side of the IPv4 tree at the first bit.
    assert_eq!(
        db.locate(ip("192.0.2.1")),
        Location {
            values: vec![None, None],
            prefix_len: 1
        }
    );
    // 3000::/4 is empty (2001:db8:: is 0010…, 3000:: is 0011…).
    assert_eq!(
        db.locate(ip("3000::1")),
        Location {
            values: vec![None, None],
            prefix_len: 4
        }
    );
    // Inside 10.3.0.0/16 but outside 10.3.4.0/24.
    let loc = db.locate(ip("10.3.5.1"));
    assert_eq!(values(&loc), [None, None]);
    assert_eq!(loc.prefix_len, 24);
}

#[test]
fn ipv4_prefix_len_in_an_ipv6_database() {
    let (_dir, db) = open(&world(), &["datacenter"]);
    assert_eq!(db.locate(ip("10.1.2.3")).prefix_len, 16);
    assert_eq!(db.locate(ip("10.3.4.5")).prefix_len, 24);
    // IPv4-mapped: looked up as IPv4, prefix in IPv6 terms.
    let mapped = db.locate(ip("::ffff:10.3.4.5"));
    assert_eq!((values(&mapped), mapped.prefix_len), (vec![Some("us")], 120));
    // IPv4-compatible (::a.b.c.d) is where the database keeps IPv4.
    let compat = db.locate(ip("::10.1.2.3"));
    assert_eq!((values(&compat), compat.prefix_len), (vec![Some("eu")], 112));
}

#[test]
fn ipv4_only_database() {
    let spec = json!({"ip_version": 4, "networks": [
        {"network": "10.1.0.0/16", "data": {"datacenter": "eu"}},
        {"network": "10.2.0.0/16", "data": {"datacenter": "us"}},
    ]});
    let (_dir, db) = open(&spec, &["datacenter"]);
    let loc = db.locate(ip("10.2.3.4"));
    assert_eq!((values(&loc), loc.prefix_len), (vec![Some("us")], 16));
    let mapped = db.locate(ip("::ffff:10.1.3.4"));
    assert_eq!((values(&mapped), mapped.prefix_len), (vec![Some("eu")], 112));
    assert_eq!(
        db.locate(ip("2001:db8:1::1")),
        Location {
            values: vec![None],
            prefix_len: 0
        }
    );
}

#[test]
fn locate_stays_in_range_for_any_address() {
    let (_dir, v6) = open(&world(), &["datacenter", "country.iso_code"]);
    let spec4 =
        json!({"ip_version": 4, "networks": [{"network": "10.1.0.0/16", "data": {"datacenter": "eu"}}]});
    let (_dir4, v4) = open(&spec4, &["datacenter", "country.iso_code"]);
    let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let addr = match i % 3 {
            0 => IpAddr::from(Ipv4Addr::from(u32::try_from(x >> 96).expect("32 bits"))),
            1 => IpAddr::from(Ipv6Addr::from(x)),
            // IPv4-mapped and IPv4-compatible.
            _ => IpAddr::from(Ipv6Addr::from(
                x & 0xffff_ffff | ((u128::from(i % 2) * 0xffff) << 32),
            )),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        for db in [&v6, &v4] {
            let loc = db.locate(addr);
            assert_eq!(loc.values.len(), 2, "{addr}");
            assert!(loc.prefix_len <= max, "{addr}: {loc:?}");
        }
    }
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open_error(&dir.path().join("absent.mmdb"));
    assert!(e.contains("absent.mmdb: cannot read the database"), "{e}");
    assert!(e.contains("No such file"), "{e}");
    let e = open_error(dir.path());
    assert!(e.contains("cannot read the database"), "{e}");
}

#[test]
fn random_bytes_are_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()
    };
    let bytes: Vec<u8> = (0..4096).flat_map(|_| noise()).collect();
    let path = dir.path().join("random.mmdb");
    std::fs::write(&path, &bytes).expect("write");
    let e = open_error(&path);
    assert!(e.contains("no metadata section"), "{e}");
    // Random bytes around a real metadata marker.
    let mut marked = bytes.clone();
    marked.splice(2000..2000, b"\xab\xcd\xefMaxMind.com".iter().copied());
    std::fs::write(&path, &marked).expect("write");
    let e = open_error(&path);
    assert!(e.contains("not a usable MaxMind database"), "{e}");
}

#[test]
fn truncated_database_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = make_db(dir.path(), "good.mmdb", &world());
    let bytes = std::fs::read(&good).expect("read");
    let cut = dir.path().join("cut.mmdb");
    for len in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..len]).expect("write");
        let e = open_error(&cut);
        assert!(e.contains("not a usable MaxMind database"), "{len}: {e}");
    }
    // The search tree cut out of the middle, metadata intact.
    let mut hole = bytes[..64].to_vec();
    hole.extend_from_slice(&bytes[bytes.len() - 400..]);
    std::fs::write(&cut, &hole).expect("write");
    let e = open_error(&cut);
    assert!(e.contains("not a usable MaxMind database"), "{e}");
}

#[test]
fn load_into_keeps_the_old_database_on_a_bad_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_db(dir.path(), "geo.mmdb", &world());
    let shared = SharedGeoDb::default();
    let f = strings(&["datacenter"]);
    load_into(&shared, &path, &f).expect("load");
    let dc = |shared: &SharedGeoDb| {
        let db = shared.load_full().expect("a database");
        db.locate(ip("10.1.2.3")).values[0].clone()
    };
    assert_eq!(dc(&shared).as_deref(), Some("eu"));

    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let e = load_into(&shared, &path, &f).expect_err("truncated");
    assert!(e.to_string().contains("geo.mmdb"), "{e}");
    assert_eq!(dc(&shared).as_deref(), Some("eu"));

    std::fs::remove_file(&path).expect("remove");
    load_into(&shared, &path, &f).expect_err("missing");
    assert_eq!(dc(&shared).as_deref(), Some("eu"));

    let swapped = json!([{"network": "10.1.0.0/16", "data": {"datacenter": "ap"}}]);
    make_db(dir.path(), "geo.mmdb", &swapped);
    load_into(&shared, &path, &f).expect("reload");
    assert_eq!(dc(&shared).as_deref(), Some("ap"));
}

#[tokio::test]
async fn watch_reloads_after_the_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_db(dir.path(), "geo.mmdb", &world());
    let f = strings(&["datacenter"]);
    let shared = SharedGeoDb::default();
    load_into(&shared, &path, &f).expect("load");
    let (tx, mut rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watch(path.clone(), f, Arc::clone(&shared), tx, cancel.clone()));

    // Replace it as deployments do: write aside, then rename over it.
    let swapped = json!([{"network": "10.1.0.0/16", "data": {"datacenter": "ap"}}]);
    let aside = make_db(dir.path(), "geo.mmdb.new", &swapped);
    std::fs::rename(&aside, &path).expect("rename");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let note = tokio::time::timeout_at(deadline, rx.recv()).await;
    assert_eq!(note.expect("reload within 30 s"), Some(()));
    let db = shared.load_full().expect("a database");
    assert_eq!(values(&db.locate(ip("10.1.2.3"))), [Some("ap")]);
    assert_eq!(values(&db.locate(ip("10.2.0.1"))), [None]);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("watch returns on cancel")
        .expect("watch did not panic");
}
