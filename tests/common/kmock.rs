//! The `kmock` API emulator (PyPI) for controller and delegation tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator; killed on drop.
pub struct Kmock(Child);

impl Drop for Kmock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tests/support/kmock_server.py` on `host:port` and waits until it
/// serves; fails with an install hint when the package is missing.
pub fn start_kmock(host: &str, port: u16) -> Kmock {
    let ok = Command::new("python3")
        .args(["-c", "import kmock"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Python package kmock is missing: run `pip install kmock` (scripts/test.sh installs it)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kmock_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([host, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kmock");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100))
            && l.contains("ready")
        {
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("kmock exited with {s}");
        }
        assert!(Instant::now() < deadline, "kmock did not start within 30 s");
    }
    Kmock(child)
}

/// Writes `dir/name`: a kubeconfig for the emulator on `host:port`
/// (namespace `demo`, no credentials).
pub fn write_kubeconfig(dir: &Path, name: &str, host: &str, port: u16) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster:\n    server: http://{host}:{port}\ncontexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: test\n    namespace: demo\ncurrent-context: kmock\nusers:\n- name: test\n  user: {{}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A kube client from `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// The namespaced (`demo`) API of a kind.
pub fn api(
    c: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> kube::Api<kube::core::DynamicObject> {
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let ar = kube::core::ApiResource::from_gvk_with_plural(&gvk, plural);
    kube::Api::namespaced_with(c.clone(), "demo", &ar)
}

/// Creates `v` (a Service, EndpointSlice, Ingress or Gslb) in the emulator,
/// with a resourceVersion (so watches resume) and a uid.
pub async fn create(c: &kube::Client, mut v: serde_json::Value) {
    v["metadata"]["resourceVersion"] = serde_json::json!("1");
    let kind = v["kind"].as_str().unwrap().to_owned();
    let uid = format!("uid-{kind}-{}", v["metadata"]["name"].as_str().unwrap());
    v["metadata"]["uid"] = serde_json::json!(uid);
    let (group, version) = match v["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), v["apiVersion"].as_str().unwrap().to_owned()),
    };
    let plural = match kind.as_str() {
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Ingress" => "ingresses",
        "Gslb" => "gslbs",
        other => panic!("no plural for {other}"),
    };
    let o: kube::core::DynamicObject = serde_json::from_value(v).unwrap();
    api(c, &group, &version, &kind, plural)
        .create(&Default::default(), &o)
        .await
        .unwrap();
}
