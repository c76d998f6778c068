//! The product as users install it, on real control planes: a BIND edge,
//! N clusters ([`super::cluster::Cluster`]), `helm install` of `chart/k8gb`
//! into each with values that differ only in the region, and `k8gb run`
//! out of cluster with the chart's ServiceAccount token and the environment
//! the chart rendered into its Deployment.
//!
//! What stands in for the kubelet when `k8gb` runs out of cluster: the
//! container's `env` is read from the installed Deployment; `fieldRef`s are
//! filled as the kubelet would (`metadata.namespace`, `metadata.name`);
//! Secret volumes are written into a directory and file paths under their
//! mount points point there; the pod's wildcard listen addresses
//! (`0.0.0.0:<port>`) become the cluster's own loopback address, the
//! equivalent of the pod's network namespace. Nothing else is changed.
//!
//! What stands in for a cloud: the harness writes the chart's DNS
//! Service's `status.loadBalancer` (the cluster's loopback address), as a
//! cloud load balancer controller would, and the apps' Ingress statuses.
//!
//! Every cluster's DNS listens on `<ip>:5353` (the chart's `dnsPort`), and
//! peers are asked there (`peerExchange.port: 5353` in the common values):
//! out of cluster there is no Service mapping 53 to 5353.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::bind::{self, Bind, SECRET};
use super::cluster::{Cluster, k8s_bin};
use super::{Server, dig_short, eventually};

/// The chart's release name and namespace in every cluster.
pub const RELEASE: &str = "k8gb";
pub const NAMESPACE: &str = "k8gb";
/// The namespace the apps of the scenarios live in.
pub const APPS: &str = "demo";

/// How long a change may take to show everywhere before a test fails
/// (bounded waits, not a timing claim: benchmarks measure).
pub const WITHIN: Duration = Duration::from_secs(30);

/// One region: its control plane and its k8gb.
pub struct Region {
    pub tag: String,
    /// Declared before `cluster`, so it stops first on drop (the API
    /// server exits promptly once no client holds a watch).
    pub k8gb: Option<Server>,
    pub cluster: Cluster,
    /// The environment `k8gb` runs with (from the chart, kubelet-mapped).
    pub env: Vec<(String, String)>,
    /// The ServiceAccount kubeconfig `k8gb` runs with.
    pub kubeconfig: PathBuf,
    dir: PathBuf,
}

/// The mesh: an edge and the regions, in the order given.
pub struct Mesh {
    pub regions: Vec<Region>,
    pub edge: Bind,
    /// Values common to every region (the test's `values-common.yaml`).
    pub common_values: PathBuf,
    dir: tempfile::TempDir,
}

/// The repository's chart.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/k8gb")
}

/// The loopback address of region `i` of a mesh whose first address is `base`.
fn region_ip(base: Ipv4Addr, i: usize) -> Ipv4Addr {
    let o = base.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] + i as u8)
}

/// The values every region shares; `extra` (YAML, merged by helm as a
/// later `-f`) adds to them.
fn common_values(tags: &[&str], edge: SocketAddr) -> String {
    format!(
        r#"k8gb:
  dnsZones:
    - parentZone: example.com
      loadBalancedZone: cloud.example.com
      dnsZoneNegTTL: 5
  edgeDNSServers: ["{edge}"]
  extGslbClustersGeoTags: "{tags}"
  reconcileRequeueSeconds: 30
  zoneDelegationReconcileRequeueSeconds: 5
  nsRecordTTL: 5
  log:
    format: json
    level: debug
  peerExchange:
    port: 5353
  delegation:
    rfc2136:
      enabled: true
      keyName: k8gb-edge
      secretName: edge-tsig
"#,
        tags = tags.join(",")
    )
}

impl Mesh {
    /// Starts the edge on 127.0.0.1:`edge_port`, then one cluster per tag on
    /// `base`, `base+1`, …, installs the chart in each and starts k8gb.
    pub fn start(tags: &[&str], base: Ipv4Addr, edge_port: u16) -> Mesh {
        Mesh::start_with(tags, base, edge_port, "", &[])
    }

    /// Like [`Mesh::start`] with `extra` common values (YAML), and `crds`
    /// (manifest files) applied in every cluster before the chart.
    pub fn start_with(tags: &[&str], base: Ipv4Addr, edge_port: u16, extra: &str, crds: &[&Path]) -> Mesh {
        let dir = tempfile::tempdir().expect("tempdir");
        let edge_dir = dir.path().join("edge");
        std::fs::create_dir_all(&edge_dir).expect("edge dir");
        let edge = bind::start(&edge_dir, "127.0.0.1", edge_port, "");
        let common = dir.path().join("values-common.yaml");
        std::fs::write(&common, common_values(tags, edge.addr)).expect("write values");
        let extra_file = dir.path().join("values-extra.yaml");
        std::fs::write(&extra_file, extra).expect("write values");
        let mut regions = Vec::new();
        for (i, tag) in tags.iter().enumerate() {
            let ip = region_ip(base, i);
            let cluster = Cluster::start(tag, ip);
            for f in crds {
                apply_crds(&cluster, f);
            }
            let rdir = dir.path().join(tag);
            std::fs::create_dir_all(&rdir).expect("region dir");
            let mut r = Region {
                tag: tag.to_string(),
                k8gb: None,
                cluster,
                env: Vec::new(),
                kubeconfig: rdir.join("k8gb.kubeconfig"),
                dir: rdir,
            };
            r.install(&common, &extra_file);
            regions.push(r);
        }
        for r in &mut regions {
            r.start_k8gb();
        }
        Mesh {
            regions,
            edge,
            common_values: common,
            dir,
        }
    }

    pub fn region(&self, tag: &str) -> &Region {
        self.regions
            .iter()
            .find(|r| r.tag == tag)
            .unwrap_or_else(|| panic!("no region {tag}"))
    }

    pub fn region_mut(&mut self, tag: &str) -> &mut Region {
        self.regions
            .iter_mut()
            .find(|r| r.tag == tag)
            .unwrap_or_else(|| panic!("no region {tag}"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until every region answers `want` (sorted) for `host` A.
    pub fn wait_answers(&self, host: &str, want: &[&str]) {
        for r in &self.regions {
            r.wait_answers(host, want);
        }
    }

    /// Every k8gb log line that reports an HTTP 403 from the API server.
    pub fn forbidden_lines(&self) -> Vec<String> {
        self.regions
            .iter()
            .filter_map(|r| r.k8gb.as_ref())
            .flat_map(|s| s.logs.lock().unwrap().clone())
            .filter(|l| {
                // the API server's 403: "…: Forbidden" with "code: 403"
                l.contains("code: 403")
                    || l.contains("403 Forbidden")
                    || l.to_ascii_lowercase().contains("forbidden")
            })
            .collect()
    }
}

impl Region {
    /// The built kubectl on this cluster (admin).
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }

    pub fn apply(&self, yaml: &str) {
        self.cluster.apply(yaml)
    }

    /// The k8gb server (panics when stopped).
    pub fn server(&self) -> &Server {
        self.k8gb.as_ref().expect("k8gb is running")
    }

    /// This region's DNS address.
    pub fn dns(&self) -> SocketAddr {
        SocketAddr::new(self.cluster.ip().into(), 5353)
    }

    /// A answers for `host`, sorted.
    pub fn answers(&self, host: &str) -> Vec<String> {
        let mut v = dig_short(self.dns(), &["A", host]);
        v.sort();
        v
    }

    pub fn wait_answers(&self, host: &str, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let ok = eventually(WITHIN, || self.answers(host) == want);
        assert!(
            ok,
            "{}: {host} answers {:?}, want {want:?}\nk8gb log tail:\n{}",
            self.tag,
            self.answers(host),
            self.log_tail(60)
        );
    }

    /// The last `n` lines of this region's k8gb log.
    pub fn log_tail(&self, n: usize) -> String {
        match &self.k8gb {
            Some(s) => {
                let logs = s.logs.lock().unwrap();
                logs[logs.len().saturating_sub(n)..].join("\n")
            }
            None => "(k8gb not running)".into(),
        }
    }

    /// `helm install` of the chart with the common values and this region's
    /// own (only `k8gb.clusterGeoTag`), then the cloud's part: the DNS
    /// Service's load-balancer address.
    fn install(&mut self, common: &Path, extra: &Path) {
        let region_values = self.dir.join("values-region.yaml");
        std::fs::write(&region_values, format!("k8gb:\n  clusterGeoTag: {}\n", self.tag))
            .expect("write values");
        self.kubectl_ok(&["create", "namespace", NAMESPACE]);
        self.kubectl_ok(&["create", "namespace", APPS]);
        // the edge's TSIG key, as an operator creates it before installing
        self.kubectl_ok(&[
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "edge-tsig",
            &format!("--from-literal=secret={SECRET}"),
        ]);
        self.helm(&[
            "install",
            RELEASE,
            chart_dir().to_str().expect("utf-8 path"),
            "-n",
            NAMESPACE,
            "-f",
            common.to_str().expect("utf-8 path"),
            "-f",
            extra.to_str().expect("utf-8 path"),
            "-f",
            region_values.to_str().expect("utf-8 path"),
        ]);
        let ip = self.cluster.ip().to_string();
        self.cluster
            .set_service_lb_status(NAMESPACE, &format!("{RELEASE}-dns"), &[&ip]);
    }

    /// Runs the built helm against this cluster; panics with its output on failure.
    pub fn helm(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(k8s_bin().join("helm"))
            .arg(format!("--kubeconfig={}", self.cluster.kubeconfig().display()))
            .args(args)
            .env("HOME", self.dir.join("helm-home"))
            .env("HELM_CACHE_HOME", self.dir.join("helm-home/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm-home/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm-home/data"))
            .env_remove("KUBECONFIG")
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "{}: helm {} failed:\n{}{}",
            self.tag,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm upgrade` with the installed values plus `set` (`key=value`),
    /// then k8gb restarted with the new environment (as a rollout would).
    pub fn helm_upgrade_set(&mut self, set: &[&str]) {
        let chart = chart_dir();
        let mut args = vec![
            "upgrade",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "-n",
            NAMESPACE,
            "--reuse-values",
        ];
        for s in set {
            args.push("--set");
            args.push(s);
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.helm(&args);
        self.restart_k8gb();
    }

    /// The chart's Deployment's k8gb container, as stored by the API server.
    fn container(&self) -> (Value, Value) {
        let text = self.kubectl_ok(&["-n", NAMESPACE, "get", "deployment", RELEASE, "-o", "json"]);
        let d: Value = serde_json::from_str(&text).expect("deployment JSON");
        let spec = d["spec"]["template"]["spec"].clone();
        let c = spec["containers"]
            .as_array()
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c["env"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|v| v["name"] == "CLUSTER_GEO_TAG"))
                })
            })
            .cloned()
            .expect("the chart's Deployment has the k8gb container");
        (spec, c)
    }

    /// The container's environment, mapped as the kubelet would map it.
    fn chart_env(&self) -> Vec<(String, String)> {
        let (spec, c) = self.container();
        let volumes = self.dir.join("volumes");
        let _ = std::fs::remove_dir_all(&volumes);
        // Secret volumes → files; mount path → local directory
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or_default();
            let path = m["mountPath"].as_str().unwrap_or_default().to_owned();
            let Some(v) = spec["volumes"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == name))
            else {
                continue;
            };
            let local = volumes.join(name);
            std::fs::create_dir_all(&local).expect("volume dir");
            if let Some(secret) = v["secret"]["secretName"].as_str() {
                let text = self.kubectl_ok(&["-n", NAMESPACE, "get", "secret", secret, "-o", "json"]);
                let s: Value = serde_json::from_str(&text).expect("secret JSON");
                for (k, b64) in s["data"].as_object().into_iter().flatten() {
                    let bytes = data_encoding::BASE64
                        .decode(b64.as_str().unwrap_or_default().as_bytes())
                        .expect("secret data is base64");
                    std::fs::write(local.join(k), bytes).expect("write secret file");
                }
            }
            mounts.push((path, local));
        }
        let ip = self.cluster.ip().to_string();
        let mut env = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_owned()
            } else if let Some(f) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match f {
                    "metadata.namespace" => NAMESPACE.to_owned(),
                    "metadata.name" => format!("{RELEASE}-{}", self.tag),
                    other => panic!("fieldRef {other} not mapped by the harness"),
                }
            } else if e["valueFrom"]["secretKeyRef"].is_object() {
                let r = &e["valueFrom"]["secretKeyRef"];
                let text = self.kubectl_ok(&[
                    "-n",
                    NAMESPACE,
                    "get",
                    "secret",
                    r["name"].as_str().unwrap_or_default(),
                    "-o",
                    "json",
                ]);
                let s: Value = serde_json::from_str(&text).expect("secret JSON");
                let b64 = s["data"][r["key"].as_str().unwrap_or_default()]
                    .as_str()
                    .unwrap_or_default();
                String::from_utf8(data_encoding::BASE64.decode(b64.as_bytes()).expect("base64"))
                    .expect("utf-8 secret")
            } else {
                String::new()
            };
            // the pod's network namespace is this cluster's loopback address
            let value = value.replace("0.0.0.0:", &format!("{ip}:"));
            let value = mounts
                .iter()
                .find(|(p, _)| value.starts_with(&format!("{p}/")))
                .map(|(p, local)| format!("{}{}", local.display(), &value[p.len()..]))
                .unwrap_or(value);
            env.push((name, value));
        }
        env
    }

    /// Starts `k8gb run` with the chart's ServiceAccount token and
    /// environment; waits until it listens and is ready.
    pub fn start_k8gb(&mut self) {
        self.cluster
            .token_kubeconfig(NAMESPACE, RELEASE, &self.kubeconfig.clone());
        self.env = self.chart_env();
        let mut envs: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let kc = self.kubeconfig.to_str().expect("utf-8 path").to_owned();
        envs.push(("KUBECONFIG", &kc));
        let s = super::start_with(&["run"], &envs, &self.dir, None);
        let admin = s.admin;
        self.k8gb = Some(s);
        let ready = eventually(Duration::from_secs(60), || {
            super::http_get(admin, "/readyz").contains(" 200 ")
        });
        assert!(ready, "{}: k8gb never ready\n{}", self.tag, self.log_tail(80));
    }

    /// Stops k8gb (SIGTERM through drop: kill) and starts it again.
    pub fn restart_k8gb(&mut self) {
        self.k8gb = None;
        self.start_k8gb();
    }

    /// The value of `name` in the environment k8gb runs with.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Applies the CRDs in `file` (server-side: some are too large for the
/// last-applied annotation) and waits until they are established.
pub fn apply_crds(cluster: &Cluster, file: &Path) {
    let f = file.to_str().expect("utf-8 path");
    cluster.kubectl_ok(&["apply", "--server-side", "-f", f]);
    cluster.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "-f", f]);
}

/// A Deployment `name` (kwok fakes its pods) and a Service selecting it.
pub fn app_yaml(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {APPS}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: "registry.invalid/{name}:1", ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {APPS}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    )
}

/// An Ingress `name` for `host` backed by the Service `service`.
pub fn ingress_yaml(name: &str, host: &str, service: &str, labels: &str) -> String {
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: {APPS}, labels: {{{labels}}}}}
spec:
  rules:
    - host: {host}
      http:
        paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}]
"#
    )
}

/// `kubectl scale` of a Deployment in the apps' namespace.
pub fn scale(r: &Region, deployment: &str, replicas: u32) {
    r.kubectl_ok(&[
        "-n",
        APPS,
        "scale",
        "deployment",
        deployment,
        &format!("--replicas={replicas}"),
    ]);
}
