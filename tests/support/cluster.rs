//! Real Kubernetes control planes for integration tests, without Docker.
//!
//! Each [`Cluster`] runs etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok (the fake kubelet) as child processes of the test,
//! all bound to one loopback address chosen by the test (127.0.0.21,
//! 127.0.0.22, ...), with data, PKI and logs in a temporary directory. The
//! binaries come from `bash scripts/build-k8s.sh` (or `$K8GB_K8S_BIN`); a
//! missing binary fails the test, it never skips.
//!
//! Per cluster on `ip`: etcd client `ip:2379` and peer `ip:2380`,
//! kube-apiserver `https://ip:6443`, kwok `ip:10247`; the controller-manager
//! and the scheduler serve no port (`--secure-port=0`). Pod CIDR
//! `10.<last octet>.0.0/17`, Service CIDR `10.<last octet>.128.0/20`, so pod
//! and Service IPs differ between clusters. Pod IPs are data only: nothing
//! ever connects to them.
//!
//! The apiserver enforces RBAC and accepts the admin client certificate
//! (`O=system:masters`), a static admin bearer token ([`Cluster::admin_token`])
//! and ServiceAccount tokens (TokenRequest: [`Cluster::token_kubeconfig`]).
//! One fake Node ([`NODE_NAME`], annotation `kwok.x-k8s.io/node=fake`, no
//! taint, cpu 32 / memory 256Gi / pods 110) is Ready before
//! [`Cluster::start`] returns, so Deployments get Running, Ready pods with IPs
//! and Services get EndpointSlices.
//!
//! API:
//! * [`k8s_bin`], [`Cluster::start`] (blocking, bounded waits; fine inside a
//!   `#[tokio::test]` body), [`Cluster::start_times`];
//! * accessors: `name`, `ip`, `server`, `dir`, `kubeconfig`, `ca_file`,
//!   `admin_token`, `pod_cidr`, `service_cidr`, `in_pod_cidr`, `log_tail`;
//! * `kubectl`, `kubectl_ok`, `apply`, `client` (async), [`client_for`];
//! * `token_kubeconfig` (ServiceAccount token, what the product uses out of
//!   cluster);
//! * `set_ingress_status`, `set_ingress_status_hostnames`,
//!   `set_service_lb_status`, `set_service_lb_status_hostnames` (what an
//!   ingress controller or a cloud load balancer would write);
//! * faults: `stop_apiserver`, `start_apiserver`, `restart_etcd`,
//!   `stop_control_plane`, `start_control_plane`, `check_alive`.
//!
//! Processes: every child is killed by PID on drop (SIGTERM, bounded wait,
//! SIGKILL), also when the test panics, and is spawned with
//! `PR_SET_PDEATHSIG=SIGKILL` so it dies with the test process. The kernel
//! sends that signal when the *thread* that spawned the child exits: start
//! and restart clusters from the test's own thread (not from a short-lived
//! `spawn_blocking` task). Set `K8GB_KEEP_CLUSTER_DIR=1` to keep the
//! temporary directories (logs, etcd data) after the test.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// kube-apiserver's secure port on the cluster's address.
pub const APISERVER_PORT: u16 = 6443;
const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
const KWOK_PORT: u16 = 10247;
/// The fake Node every cluster has.
pub const NODE_NAME: &str = "kwok-node-0";
const BINARIES: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
];
const CONTROLLERS: &str = "deployment-controller,replicaset-controller,endpointslice-controller,\
endpointslice-mirroring-controller,serviceaccount-controller,serviceaccount-token-controller,\
namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM grace for the fault injections (`stop_apiserver`, `restart_etcd`):
/// kube-apiserver does not exit while other components hold watches, and etcd
/// waits about 7 s for the apiserver's gRPC streams to close.
const FAULT_GRACE: Duration = Duration::from_secs(2);
/// Environment variables that could route the children's traffic elsewhere.
const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "KUBECONFIG",
];

/// The directory with the control-plane binaries: `$K8GB_K8S_BIN`, else what
/// `bash scripts/build-k8s.sh --print-bin` prints. Panics when a binary is
/// missing.
pub fn k8s_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = match std::env::var_os("K8GB_K8S_BIN") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let root = Path::new(env!("CARGO_MANIFEST_DIR"));
                let out = Command::new("bash")
                    .arg(root.join("scripts/build-k8s.sh"))
                    .arg("--print-bin")
                    .current_dir(root)
                    .output()
                    .expect("run `bash scripts/build-k8s.sh --print-bin`");
                assert!(
                    out.status.success(),
                    "`bash scripts/build-k8s.sh --print-bin` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                PathBuf::from(
                    text.lines()
                        .last()
                        .expect("`bash scripts/build-k8s.sh --print-bin` printed nothing")
                        .trim(),
                )
            }
        };
        let missing: Vec<&str> = BINARIES
            .iter()
            .copied()
            .filter(|b| !dir.join(b).is_file())
            .collect();
        assert!(
            missing.is_empty(),
            "the Kubernetes control-plane binaries {missing:?} are missing from {}: run \
             `bash scripts/build-k8s.sh` (about 20 minutes the first time) or set K8GB_K8S_BIN",
            dir.display()
        );
        dir
    })
    .clone()
}

/// How long [`Cluster::start`] took, from the first process spawned (the
/// PKI is generated before).
#[derive(Clone, Copy, Debug, Default)]
pub struct StartTimes {
    /// etcd answers `/health`.
    pub etcd: Duration,
    /// kube-apiserver answers `/readyz` with `ok`.
    pub readyz: Duration,
    /// The `default` ServiceAccount exists (controller-manager works).
    pub default_sa: Duration,
    /// The fake Node is Ready (kwok works); this is the whole start.
    pub node_ready: Duration,
}

/// One child process with its log file.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Sends SIGTERM to each, waits up to `grace` for all, then SIGKILLs the
/// rest. Only PIDs of children we hold (and have not reaped) are signalled.
fn stop_procs(mut procs: Vec<Proc>, grace: Duration) {
    for p in &mut procs {
        if matches!(p.child.try_wait(), Ok(None)) {
            let pid = libc::pid_t::try_from(p.child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) on the PID of a child we own and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + grace;
    for p in &mut procs {
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    if grace >= STOP_TIMEOUT {
                        eprintln!(
                            "{} (pid {}) still running {grace:?} after SIGTERM: SIGKILL",
                            p.name,
                            p.child.id()
                        );
                    }
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// The last lines of a log file (bounded), for panic messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(40)..].join("\n");
    if out.len() > 8000 {
        let mut cut = out.len() - 8000;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("...{}", &out[cut..]);
    }
    out
}

/// A plain HTTP GET on a loopback address; `None` on any failure.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn b64(data: &[u8]) -> String {
    data_encoding::BASE64.encode(data)
}

/// A kubeconfig with the CA and one user (`user_yaml` is the indented body
/// of `user:`).
fn kubeconfig_text(name: &str, server: &str, ca_pem: &str, user_name: &str, user_yaml: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user_name}\n  user:\n{user_yaml}contexts:\n\
         - name: {name}\n  context:\n    cluster: {name}\n    user: {user_name}\ncurrent-context: {name}\n",
        ca = b64(ca_pem.as_bytes()),
    )
}

/// A kube client from any kubeconfig file (admin or a token kubeconfig);
/// never uses a proxy.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", kubeconfig.display()));
    let mut config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("load kubeconfig {}: {e}", kubeconfig.display()));
    config.proxy_url = None;
    kube::Client::try_from(config).expect("build kube client")
}

/// kwok v0.8.0 has no built-in stages: these are its `kustomize/stage/node/fast`
/// and `kustomize/stage/pod/fast` Stages, verbatim.
const KWOK_STAGES: &str = r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      {{ $hasInternalIP := false }}
      {{ $hasHostname := false }}
      {{ range .status.addresses }}
        {{ if eq .type "InternalIP" }}
          {{ $hasInternalIP = true }}
        {{ end }}
        {{ if eq .type "Hostname" }}
          {{ $hasHostname = true }}
        {{ end }}
      {{ end }}
      {{ if or (not $hasInternalIP) (not $hasHostname) }}
      addresses:
      {{ end }}
      {{ if not $hasInternalIP }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ end }}
      {{ if not $hasHostname }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID `""` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID `""` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage `""` }}
        systemUUID: {{ or $nodeInfo.systemUUID `""` }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      {{ $origin := index $root.status.containerStatuses $index }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"#;

/// One control plane; every process is stopped on drop.
pub struct Cluster {
    name: String,
    ip: Ipv4Addr,
    bin: PathBuf,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    kubeconfig: PathBuf,
    ca_pem: String,
    admin_token: String,
    times: StartTimes,
    etcd: Option<Proc>,
    apiserver: Option<Proc>,
    controller_manager: Option<Proc>,
    scheduler: Option<Proc>,
    kwok: Option<Proc>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_control_plane();
        if std::env::var_os("K8GB_KEEP_CLUSTER_DIR").is_some_and(|v| !v.is_empty())
            && let Some(dir) = self.dir.take()
        {
            eprintln!("cluster {}: kept {}", self.name, dir.keep().display());
        }
    }
}

impl Cluster {
    /// Starts a control plane on `ip` (a 127.0.0.x address the caller keeps
    /// distinct per cluster) and waits (bounded) until the apiserver is
    /// ready, the `default` ServiceAccount exists and the fake Node is Ready.
    /// Start clusters one after another.
    pub fn start(name: &str, ip: Ipv4Addr) -> Cluster {
        assert!(
            ip.octets()[..3] == [127, 0, 0] && ip.octets()[3] > 1 && ip.octets()[3] != 255,
            "cluster {name}: {ip} is not a usable 127.0.0.x address"
        );
        assert!(
            !name.is_empty()
                && name.len() <= 40
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "cluster name {name:?} must be a short DNS label"
        );
        let bin = k8s_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("k8gb-k8s-{name}-"))
            .tempdir()
            .expect("create the cluster's temporary directory");
        let root = dir.path().to_path_buf();
        for sub in ["pki", "logs", "etcd", "home"] {
            std::fs::create_dir_all(root.join(sub)).expect("create cluster subdirectory");
        }
        let mut cluster = Cluster {
            name: name.to_string(),
            ip,
            bin,
            dir: Some(dir),
            kubeconfig: root.join("admin.kubeconfig"),
            root,
            ca_pem: String::new(),
            admin_token: format!("admin-{:032x}", rand::random::<u128>()),
            times: StartTimes::default(),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            scheduler: None,
            kwok: None,
        };
        cluster.write_files();
        let t0 = cluster.start_components();
        cluster.create_node();
        cluster.wait_node_ready();
        cluster.times.node_ready = t0.elapsed();
        let t = cluster.times;
        eprintln!(
            "cluster {name} on {ip}: etcd {:.1?}, /readyz {:.1?}, default SA {:.1?}, node Ready {:.1?}",
            t.etcd, t.readyz, t.default_sa, t.node_ready
        );
        cluster
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `https://<ip>:6443`.
    pub fn server(&self) -> String {
        format!("https://{}:{APISERVER_PORT}", self.ip)
    }

    /// The cluster's temporary directory (pki/, logs/, etcd/).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The admin kubeconfig (client certificate, `O=system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the apiserver's serving certificate (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.root.join("pki/ca.crt")
    }

    /// A static bearer token of an admin (`system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The pod CIDR (kwok assigns pod IPs from it): `10.<n>.0.0/17`.
    pub fn pod_cidr(&self) -> (Ipv4Addr, u8) {
        (Ipv4Addr::new(10, self.ip.octets()[3], 0, 0), 17)
    }

    /// The Service CIDR: `10.<n>.128.0/20`.
    pub fn service_cidr(&self) -> (Ipv4Addr, u8) {
        (Ipv4Addr::new(10, self.ip.octets()[3], 128, 0), 20)
    }

    /// Whether `ip` is in this cluster's pod CIDR.
    pub fn in_pod_cidr(&self, ip: IpAddr) -> bool {
        let (net, len) = self.pod_cidr();
        match ip {
            IpAddr::V4(v4) => u32::from(v4) >> (32 - len) == u32::from(net) >> (32 - len),
            IpAddr::V6(_) => false,
        }
    }

    pub fn start_times(&self) -> StartTimes {
        self.times
    }

    /// The last lines of a component's log: `etcd`, `kube-apiserver`,
    /// `kube-controller-manager`, `kube-scheduler` or `kwok`.
    pub fn log_tail(&self, component: &str) -> String {
        tail(&self.root.join("logs").join(format!("{component}.log")))
    }

    fn cidr_text((net, len): (Ipv4Addr, u8)) -> String {
        format!("{net}/{len}")
    }

    /// PKI, tokens, kubeconfig and component configs.
    fn write_files(&mut self) {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let pki = self.root.join("pki");
        let write = |file: &str, text: &str| {
            std::fs::write(pki.join(file), text).unwrap_or_else(|e| panic!("write pki/{file}: {e}"))
        };

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("k8gb-test-k8s-ca-{}", self.name));
        let ca_key = KeyPair::generate().expect("generate CA key");
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign CA");
        self.ca_pem = ca.pem();
        write("ca.crt", &self.ca_pem);
        write("ca.key", &ca_key_pem);

        let (svc_net, _) = self.service_cidr();
        let first_service_ip = Ipv4Addr::from(u32::from(svc_net) + 1);
        let mut srv = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])
        .expect("serving cert params");
        srv.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(self.ip)));
        srv.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(first_service_ip)));
        srv.is_ca = IsCa::ExplicitNoCa;
        srv.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        srv.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        let srv_key = KeyPair::generate().expect("generate serving key");
        let srv_cert = srv.signed_by(&srv_key, &ca).expect("sign serving cert");
        write("apiserver.crt", &srv_cert.pem());
        write("apiserver.key", &srv_key.serialize_pem());

        let mut cli = CertificateParams::new(Vec::<String>::new()).expect("client cert params");
        cli.is_ca = IsCa::ExplicitNoCa;
        cli.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        cli.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        cli.distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        cli.distinguished_name.push(DnType::CommonName, "k8gb-test-admin");
        let cli_key = KeyPair::generate().expect("generate admin key");
        let cli_cert = cli.signed_by(&cli_key, &ca).expect("sign admin cert");
        write("admin.crt", &cli_cert.pem());
        write("admin.key", &cli_key.serialize_pem());

        // ServiceAccount token signing key (ES256).
        let sa_key = KeyPair::generate().expect("generate ServiceAccount signing key");
        write("sa.key", &sa_key.serialize_pem());
        write("sa.pub", &sa_key.public_key_pem());

        write(
            "tokens.csv",
            &format!(
                "{},k8gb-test-admin-token,uid-admin,\"system:masters\"\n",
                self.admin_token
            ),
        );

        let user = format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cli_cert.pem().as_bytes()),
            b64(cli_key.serialize_pem().as_bytes())
        );
        let text = kubeconfig_text(&self.name, &self.server(), &self.ca_pem, "admin", &user);
        std::fs::write(&self.kubeconfig, text).expect("write admin.kubeconfig");

        std::fs::write(
            self.root.join("kube-scheduler.yaml"),
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {}\nleaderElection:\n  leaderElect: false\n",
                self.kubeconfig.display()
            ),
        )
        .expect("write kube-scheduler.yaml");
        std::fs::write(self.root.join("kwok.yaml"), KWOK_STAGES).expect("write kwok.yaml");
    }

    fn spawn(&self, name: &'static str, args: Vec<String>) -> Proc {
        let log = self.root.join("logs").join(format!("{name}.log"));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let program = self.bin.join(name);
        let _ = writeln!(file, "=== {} {}", program.display(), args.join(" "));
        let stderr = file.try_clone().expect("clone log file handle");
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .current_dir(&self.root)
            .env("HOME", self.root.join("home"))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The test died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cluster {}: start {}: {e}", self.name, program.display()));
        Proc { name, child, log }
    }

    /// Panics (with the log tail) if a running component has exited.
    pub fn check_alive(&mut self) {
        let name = self.name.clone();
        for p in [
            &mut self.etcd,
            &mut self.apiserver,
            &mut self.controller_manager,
            &mut self.scheduler,
            &mut self.kwok,
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!(
                    "cluster {name}: {} exited with {status}; last lines of {}:\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log)
                );
            }
        }
    }

    /// Polls `f` every 200 ms until it returns true, checking the processes;
    /// panics after `within` with the tail of `log`.
    fn wait_for(&mut self, what: &str, log: &str, within: Duration, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if f(self) {
                return;
            }
            self.check_alive();
            if Instant::now() >= deadline {
                panic!(
                    "cluster {}: {what} not within {within:?}; last lines of {log}.log:\n{}",
                    self.name,
                    self.log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn etcd_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.ip)
    }

    fn start_etcd(&mut self) {
        let args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.root.join("etcd").display()),
            format!("--listen-client-urls={}", self.etcd_url(ETCD_CLIENT_PORT)),
            format!("--advertise-client-urls={}", self.etcd_url(ETCD_CLIENT_PORT)),
            format!("--listen-peer-urls={}", self.etcd_url(ETCD_PEER_PORT)),
            format!("--initial-advertise-peer-urls={}", self.etcd_url(ETCD_PEER_PORT)),
            format!(
                "--initial-cluster={}={}",
                self.name,
                self.etcd_url(ETCD_PEER_PORT)
            ),
            "--unsafe-no-fsync".to_string(),
            "--quota-backend-bytes=1073741824".to_string(),
            "--log-level=warn".to_string(),
        ];
        self.etcd = Some(self.spawn("etcd", args));
        let addr = SocketAddr::from((self.ip, ETCD_CLIENT_PORT));
        self.wait_for("etcd /health", "etcd", Duration::from_secs(30), |_| {
            http_get(addr, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
        });
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = self.root.join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        vec![
            format!("--etcd-servers={}", self.etcd_url(ETCD_CLIENT_PORT)),
            format!("--bind-address={}", self.ip),
            format!("--secure-port={APISERVER_PORT}"),
            format!("--cert-dir={}", pki.display()),
            "--endpoint-reconciler-type=none".to_string(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--authorization-mode=RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!(
                "--service-cluster-ip-range={}",
                Self::cidr_text(self.service_cidr())
            ),
            "--allow-privileged=true".to_string(),
            "--enable-priority-and-fairness=false".to_string(),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ]
    }

    /// `kubectl get --raw=/readyz` says `ok`.
    fn apiserver_ready(&self) -> bool {
        self.kubectl()
            .args(["get", "--raw=/readyz", "--request-timeout=5s"])
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok")
    }

    /// Starts kube-apiserver (same flags every time) and waits for /readyz.
    pub fn start_apiserver(&mut self) {
        assert!(
            self.apiserver.is_none(),
            "cluster {}: apiserver already running",
            self.name
        );
        self.apiserver = Some(self.spawn("kube-apiserver", self.apiserver_args()));
        self.wait_for(
            "kube-apiserver /readyz",
            "kube-apiserver",
            READY_TIMEOUT,
            Self::apiserver_ready,
        );
    }

    /// Stops kube-apiserver: SIGTERM, then SIGKILL after 2 s. It stops
    /// listening at once, but while the other components keep their watch
    /// connections open it does not exit by itself (seen with v1.36.3).
    pub fn stop_apiserver(&mut self) {
        stop_procs(self.apiserver.take().into_iter().collect(), FAULT_GRACE);
    }

    /// Stops etcd (SIGTERM, SIGKILL after 2 s; with `--unsafe-no-fsync` the
    /// data is in the page cache, so nothing is lost) and starts it again on
    /// the same data directory, then waits until the apiserver (if running)
    /// is ready again.
    pub fn restart_etcd(&mut self) {
        let t0 = Instant::now();
        stop_procs(self.etcd.take().into_iter().collect(), FAULT_GRACE);
        let stopped = t0.elapsed();
        self.start_etcd();
        let healthy = t0.elapsed();
        if self.apiserver.is_some() {
            self.wait_for(
                "kube-apiserver /readyz after the etcd restart",
                "kube-apiserver",
                READY_TIMEOUT,
                Self::apiserver_ready,
            );
        }
        eprintln!(
            "cluster {}: etcd restart: stopped {stopped:.1?}, healthy {healthy:.1?}, apiserver ready {:.1?}",
            self.name,
            t0.elapsed()
        );
    }

    /// Stops every component (kwok, scheduler, controller-manager,
    /// apiserver, etcd); the data directory stays.
    /// etcd goes last: kube-apiserver does not finish its graceful
    /// termination once etcd is gone.
    pub fn stop_control_plane(&mut self) {
        // the apiserver's clients first: with their watches gone it exits
        // promptly instead of waiting out the grace
        let clients = [
            self.kwok.take(),
            self.scheduler.take(),
            self.controller_manager.take(),
        ];
        stop_procs(clients.into_iter().flatten().collect(), STOP_TIMEOUT);
        stop_procs(self.apiserver.take().into_iter().collect(), STOP_TIMEOUT);
        stop_procs(self.etcd.take().into_iter().collect(), STOP_TIMEOUT);
    }

    /// Starts every component that is not running, in order, and waits until
    /// the apiserver is ready and the `default` ServiceAccount exists.
    pub fn start_control_plane(&mut self) {
        self.start_components();
    }

    /// [`Cluster::start_control_plane`]; returns when it began.
    fn start_components(&mut self) -> Instant {
        let t0 = Instant::now();
        if self.etcd.is_none() {
            self.start_etcd();
        }
        self.times.etcd = t0.elapsed();
        if self.apiserver.is_none() {
            self.start_apiserver();
        }
        self.times.readyz = t0.elapsed();
        let kc = self.kubeconfig.display().to_string();
        if self.controller_manager.is_none() {
            let pki = self.root.join("pki");
            let args = vec![
                format!("--kubeconfig={kc}"),
                "--leader-elect=false".to_string(),
                format!("--bind-address={}", self.ip),
                "--secure-port=0".to_string(),
                format!("--controllers={CONTROLLERS}"),
                format!(
                    "--service-account-private-key-file={}",
                    pki.join("sa.key").display()
                ),
                format!("--root-ca-file={}", pki.join("ca.crt").display()),
                "--v=1".to_string(),
            ];
            self.controller_manager = Some(self.spawn("kube-controller-manager", args));
        }
        if self.scheduler.is_none() {
            let args = vec![
                format!("--config={}", self.root.join("kube-scheduler.yaml").display()),
                format!("--bind-address={}", self.ip),
                "--secure-port=0".to_string(),
                "--v=1".to_string(),
            ];
            self.scheduler = Some(self.spawn("kube-scheduler", args));
        }
        if self.kwok.is_none() {
            let args = vec![
                format!("--kubeconfig={kc}"),
                format!("--config={}", self.root.join("kwok.yaml").display()),
                "--manage-all-nodes=false".to_string(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".to_string(),
                format!("--cidr={}", Self::cidr_text(self.pod_cidr())),
                format!("--node-ip={}", self.ip),
                format!("--node-port={KWOK_PORT}"),
                format!("--server-address={}:{KWOK_PORT}", self.ip),
            ];
            self.kwok = Some(self.spawn("kwok", args));
        }
        self.wait_for(
            "the default ServiceAccount",
            "kube-controller-manager",
            READY_TIMEOUT,
            |c| {
                c.kubectl()
                    .args(["-n", "default", "get", "serviceaccount", "default", "-o", "name"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
        self.times.default_sa = t0.elapsed();
        t0
    }

    fn create_node(&self) {
        let cidr = Self::cidr_text(self.pod_cidr());
        self.apply(&format!(
            r#"apiVersion: v1
kind: Node
metadata:
  name: {NODE_NAME}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: {NODE_NAME}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
spec:
  podCIDR: {cidr}
  podCIDRs: [{cidr}]
status:
  allocatable: {{cpu: "32", memory: 256Gi, pods: "110"}}
  capacity: {{cpu: "32", memory: 256Gi, pods: "110"}}
"#
        ));
    }

    /// Waits until kwok reports the fake Node Ready, then removes the
    /// `node.kubernetes.io/not-ready:NoSchedule` taint that the apiserver's
    /// TaintNodesByCondition admission adds to every new Node (no
    /// node-lifecycle controller runs to remove it).
    fn wait_node_ready(&mut self) {
        self.wait_for("the fake Node Ready", "kwok", Duration::from_secs(60), |c| {
            c.kubectl()
                .args([
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
                ])
                .output()
                .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "True")
        });
        self.kubectl_ok(&[
            "patch",
            "node",
            NODE_NAME,
            "--type=merge",
            "-p",
            r#"{"spec":{"taints":null}}"#,
        ]);
        let taints = self.kubectl_ok(&["get", "node", NODE_NAME, "-o", "jsonpath={.spec.taints}"]);
        assert!(
            taints.trim().is_empty(),
            "cluster {}: node still tainted: {taints}",
            self.name
        );
    }

    /// The built kubectl with `--kubeconfig` (admin) and a private cache dir.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.root.join("kubectl-cache").display()
            ))
            .env("HOME", self.root.join("home"))
            .stdin(Stdio::null());
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        cmd
    }

    fn checked(&self, what: &str, out: std::io::Result<Output>) -> String {
        let out = out.unwrap_or_else(|e| panic!("cluster {}: run kubectl {what}: {e}", self.name));
        assert!(
            out.status.success(),
            "cluster {}: kubectl {what} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `args`; panics with its output on failure, returns
    /// stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.checked(&args.join(" "), self.kubectl().args(args).output())
    }

    /// `kubectl apply -f -` with `yaml` on stdin; panics on failure.
    pub fn apply(&self, yaml: &str) {
        let out = self.apply_output(yaml);
        self.checked(&format!("apply -f - <<\n{yaml}"), Ok(out));
    }

    /// `kubectl apply -f -` with `yaml` on stdin, whatever its outcome.
    pub fn apply_output(&self, yaml: &str) -> Output {
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cluster {}: run kubectl apply: {e}", self.name));
        child
            .stdin
            .take()
            .expect("kubectl stdin")
            .write_all(yaml.as_bytes())
            .expect("write yaml to kubectl apply");
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cluster {}: kubectl apply: {e}", self.name))
    }

    /// A kube client with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }

    /// Writes to `path` a kubeconfig that authenticates as
    /// `namespace/service_account` with a TokenRequest token (2 h) and trusts
    /// the cluster CA; returns the token.
    pub fn token_kubeconfig(&self, namespace: &str, service_account: &str, path: &Path) -> String {
        let token = self
            .kubectl_ok(&[
                "-n",
                namespace,
                "create",
                "token",
                service_account,
                "--duration=2h",
            ])
            .trim()
            .to_string();
        assert!(!token.is_empty(), "cluster {}: empty token", self.name);
        let user = format!("    token: {token}\n");
        let name = format!("{namespace}-{service_account}");
        let text = kubeconfig_text(&self.name, &self.server(), &self.ca_pem, &name, &user);
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        token
    }

    fn patch_lb_status(&self, resource: &str, ns: &str, name: &str, ingress: Vec<serde_json::Value>) {
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
        self.kubectl_ok(&[
            "-n",
            ns,
            "patch",
            resource,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
    }

    fn entries(key: &str, values: &[&str]) -> Vec<serde_json::Value> {
        values.iter().map(|v| serde_json::json!({ key: v })).collect()
    }

    /// Sets an Ingress's `.status.loadBalancer.ingress` to `ips`, as an
    /// ingress controller would (an empty slice clears it).
    pub fn set_ingress_status(&self, ns: &str, name: &str, ips: &[&str]) {
        self.patch_lb_status("ingress.networking.k8s.io", ns, name, Self::entries("ip", ips));
    }

    /// Like [`Cluster::set_ingress_status`] with hostnames.
    pub fn set_ingress_status_hostnames(&self, ns: &str, name: &str, hostnames: &[&str]) {
        self.patch_lb_status(
            "ingress.networking.k8s.io",
            ns,
            name,
            Self::entries("hostname", hostnames),
        );
    }

    /// Sets a `type: LoadBalancer` Service's `.status.loadBalancer.ingress`
    /// to `ips`, as a cloud load balancer controller would.
    pub fn set_service_lb_status(&self, ns: &str, name: &str, ips: &[&str]) {
        self.patch_lb_status("service", ns, name, Self::entries("ip", ips));
    }

    /// Like [`Cluster::set_service_lb_status`] with hostnames.
    pub fn set_service_lb_status_hostnames(&self, ns: &str, name: &str, hostnames: &[&str]) {
        self.patch_lb_status("service", ns, name, Self::entries("hostname", hostnames));
    }
}
