//! Shared helpers for tests that run the built `k8gb` binary.
#![allow(dead_code)]

pub mod bind;
#[path = "../support/cluster.rs"]
pub mod cluster;
pub mod kmock;
#[path = "../support/product.rs"]
pub mod product;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `k8gb run` process; killed on drop.
pub struct Server {
    pub child: Child,
    pub dns: SocketAddr,
    pub dot: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub config: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits (bounded) until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Rewrites the config file (a new inode, as editors and ConfigMaps do).
    pub fn write_config(&self, text: &str) {
        let tmp = self.config.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }
}

/// Starts `k8gb run` with `config` written to a temp file; waits for the
/// "listening" log line (bounded) and returns the bound addresses.
pub fn start(config: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k8gb.yaml");
    std::fs::write(&path, config).unwrap();
    start_at(&path, Some(dir))
}

pub fn start_at(path: &Path, dir: Option<tempfile::TempDir>) -> Server {
    start_with(&["run", "--config", path.to_str().unwrap()], &[], path, dir)
}

/// Runs `k8gb` with `args` and only `envs` (plus JSON debug logging) in
/// its environment, and waits until it listens.
pub fn start_with(
    args: &[&str],
    envs: &[(&str, &str)],
    path: &Path,
    dir: Option<tempfile::TempDir>,
) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_k8gb"))
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .envs(envs.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start k8gb");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    for reader in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listening = logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("\"listening\""))
            .cloned();
        if let Some(line) = listening {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let f = &v["fields"];
            let dns = f["dns"]
                .as_str()
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let dot = f["dot"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap());
            let admin = f["admin"].as_str().unwrap().parse().unwrap();
            return Server {
                child,
                dns,
                dot,
                admin,
                logs,
                config: path.to_path_buf(),
                _dir: dir,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("k8gb exited with {status}: {}", logs.lock().unwrap().join("\n"));
        }
        assert!(
            Instant::now() < deadline,
            "k8gb did not start: {}",
            logs.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails with an install hint when a command-line tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required: run `bash scripts/test.sh` or `apt-get install {package}`"
    );
}

/// Runs dig against `server` and returns stdout.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    require("dig", "bind9-dnsutils");
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short` lines, sorted.
pub fn dig_short(server: SocketAddr, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    let mut lines: Vec<String> = dig(server, &a)
        .lines()
        .map(str::to_string)
        // dig prints transport errors on stdout too (";; communications error…")
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect();
    lines.sort();
    lines
}

/// Retries `f` until it returns true or the deadline passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private CA and a leaf certificate for `dns.example.test` and
/// 127.0.0.1, written as PEM files into `dir` with the given file prefix.
/// Returns (ca, cert, key) paths.
pub fn make_certs(dir: &Path, prefix: &str) -> (PathBuf, PathBuf, PathBuf) {
    make_certs_for(dir, prefix, &["127.0.0.1"])
}

/// A private CA and a leaf for `dns.example.test` and the given IPs.
pub fn make_certs_for(dir: &Path, prefix: &str, ips: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("k8gb test CA {prefix}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["dns.example.test".to_string()]).unwrap();
    for ip in ips {
        leaf.subject_alt_names
            .push(SanType::IpAddress(ip.parse().unwrap()));
    }
    let leaf_key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&leaf_key, &ca).unwrap();
    let paths = (
        dir.join(format!("{prefix}-ca.pem")),
        dir.join(format!("{prefix}-cert.pem")),
        dir.join(format!("{prefix}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// Runs kdig over DoT against `server`, trusting `ca`; returns (success, stdout+stderr).
pub fn kdig_tls(server: SocketAddr, ca: &Path, hostname: &str, args: &[&str]) -> (bool, String) {
    require("kdig", "knot-dnsutils");
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .arg(format!("+tls-ca={}", ca.display()))
        .arg(format!("+tls-hostname={hostname}"))
        .args(["+time=2", "+retry=0"])
        .args(args)
        .output()
        .expect("run kdig");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("failed"), text)
}

/// Writes a MaxMind-format database with `tests/support/make_mmdb.py`
/// (PyPI `mmdb-writer`); fails with an install hint when it is missing.
pub fn make_mmdb(path: &Path, spec: &serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/make_mmdb.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .arg(spec.to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "building the test database failed (run `pip install mmdb-writer` or `bash scripts/test.sh`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `k8gb run` with a config written to `path` (kept by the caller).
pub fn start_file(path: &Path, config: &str) -> Server {
    std::fs::write(path, config).unwrap();
    start_at(path, None)
}

/// Runs `k8gb run` with `config` in `dir` and expects it to refuse to start:
/// returns (exit code, stderr).
pub fn run_expecting_failure(dir: &Path, config: &str) -> (Option<i32>, String) {
    let cfg = dir.join("k8gb.yaml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_k8gb"))
        .env_clear()
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A plain HTTP/1.1 GET on a loopback admin server; the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        t,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = t.read_to_string(&mut out);
    out
}
