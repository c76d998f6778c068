//! `k8gb demo`: a three-cluster mesh (eu, us, ap) on loopback addresses,
//! each cluster a `k8gb run` process with a small HTTP backend as its target
//! and active probes on it. It shows the answers, takes eu's backend down,
//! measures how long every cluster takes to answer the new set, brings it
//! back (fail-back), and exits. No Kubernetes, Docker or root needed.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::peer::client::{Endpoint, PeerClient};

const TAGS: [&str; 3] = ["eu", "us", "ap"];
const HOSTS: [&str; 3] = ["roundrobin", "failover", "weighted"];
const DNS_PORT: u16 = 5353;

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Keep the mesh running after the scenario, until Ctrl-C.
    pub keep: bool,
    /// First loopback address's last octet group: clusters at 127.0.0.{base,base+1,base+2}.
    pub base: u8,
    /// Failover/fail-back cycles to run and time (benchmark mode prints one JSON line each).
    pub cycles: u32,
    /// Send NOTIFY on changes (off: peers notice by their heartbeat poll).
    pub notify: bool,
    /// Seconds between peer heartbeats.
    pub heartbeat: f64,
    /// Peer exchange over DNS-over-TLS with this CA, certificate and key
    /// (one certificate whose SANs cover the three cluster addresses).
    pub dot: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Print one JSON object per cycle instead of tables.
    pub json: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            keep: false,
            base: 11,
            cycles: 1,
            notify: true,
            heartbeat: 0.25,
            dot: None,
            json: false,
        }
    }
}

fn dns_ip(i: usize, o: &DemoOptions) -> IpAddr {
    IpAddr::from([127, 0, 0, o.base + i as u8])
}

fn backend_ip(i: usize, o: &DemoOptions) -> IpAddr {
    IpAddr::from([127, 0, 0, o.base + 10 + i as u8])
}

fn config(i: usize, o: &DemoOptions, backend_port: u16) -> String {
    let peers: String = (0..3)
        .filter(|j| *j != i)
        .map(|j| {
            format!(
                "  - {{geoTag: {}, address: \"{}:{DNS_PORT}\"}}\n",
                TAGS[j],
                dns_ip(j, o)
            )
        })
        .collect();
    let target = backend_ip(i, o);
    format!(
        r#"# k8gb demo: cluster {tag}
clusterGeoTag: {tag}
dnsAddress: "{dns}:{DNS_PORT}"
metricsAddress: "{dns}:0"
log: {{level: warn}}
dnsZones: [{{parentZone: example.com, loadBalancedZone: cloud.example.com, dnsZoneNegTTL: 5}}]
peerExchange: {{heartbeatSeconds: {hb}, graceAttempts: 3, timeoutSeconds: 0.25, notify: {notify}{dot_peer}}}
{dot_server}peers:
{peers}gslbs:
  - name: roundrobin
    hosts: [roundrobin.cloud.example.com]
    strategy: {{type: roundRobin, dnsTtlSeconds: 5}}
    probe: &probe {{type: http, port: {backend_port}, path: /healthz, intervalSeconds: 0.1, timeoutSeconds: 0.25, failureThreshold: 2}}
    targets: [{{address: {target}}}]
  - name: failover
    hosts: [failover.cloud.example.com]
    strategy: {{type: failover, primaryGeoTag: eu, dnsTtlSeconds: 5}}
    probe: *probe
    targets: [{{address: {target}}}]
  - name: weighted
    hosts: [weighted.cloud.example.com]
    strategy: {{type: roundRobin, weight: {{eu: 60, us: 30, ap: 10}}, dnsTtlSeconds: 5}}
    probe: *probe
    targets: [{{address: {target}}}]
"#,
        tag = TAGS[i],
        dns = dns_ip(i, o),
        hb = o.heartbeat,
        notify = o.notify,
        dot_peer = match &o.dot {
            Some((ca, cert, key)) => format!(
                ", transport: dot, dotPort: 8853, tls: {{caFile: \"{}\", certFile: \"{}\", keyFile: \"{}\"}}",
                ca.display(),
                cert.display(),
                key.display()
            ),
            None => String::new(),
        },
        dot_server = match &o.dot {
            Some((ca, cert, key)) => format!(
                "dot: {{address: \"{}:8853\", certFile: \"{}\", keyFile: \"{}\", clientCaFile: \"{}\"}}\n",
                dns_ip(i, o),
                cert.display(),
                key.display(),
                ca.display()
            ),
            None => String::new(),
        },
    )
}

/// A tiny HTTP backend: 200 while `up`, else 503.
async fn backend(listener: TcpListener, up: Arc<AtomicBool>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let up = up.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
            let reply: &[u8] = if up.load(Ordering::Relaxed) {
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\ndown\n"
            };
            let _ = s.write_all(reply).await;
        });
    }
}

/// Binds the three backends on one port (their addresses differ).
async fn bind_backends(o: &DemoOptions) -> Result<(Vec<TcpListener>, u16), String> {
    for _ in 0..20 {
        let first = TcpListener::bind((backend_ip(0, o), 0))
            .await
            .map_err(|e| format!("cannot bind a backend on {}: {e}", backend_ip(0, o)))?;
        let port = first.local_addr().map_err(|e| e.to_string())?.port();
        let mut all = vec![first];
        for i in 1..3 {
            match TcpListener::bind((backend_ip(i, o), port)).await {
                Ok(l) => all.push(l),
                Err(_) => break,
            }
        }
        if all.len() == 3 {
            return Ok((all, port));
        }
    }
    Err("cannot find a free port for the backends".into())
}

struct Cluster {
    child: Child,
    log: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(exe: &Path, config: &Path, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["run", "--config"])
        .arg(config)
        .env_remove("K8GB_CONFIG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))
}

/// Every cluster's answer for every host, as sorted address lists.
async fn answers(o: &DemoOptions) -> Vec<Vec<Vec<IpAddr>>> {
    let mut out = Vec::new();
    for i in 0..3 {
        let ep = Endpoint {
            dns: SocketAddr::new(dns_ip(i, o), DNS_PORT),
            dot: SocketAddr::new(dns_ip(i, o), DNS_PORT),
            server_name: rustls::pki_types::ServerName::IpAddress(dns_ip(i, o).into()),
        };
        let mut row = Vec::new();
        for h in HOSTS {
            let mut client = PeerClient::plain(Duration::from_millis(300), Vec::new());
            let mut ips = match Name::from_ascii(format!("{h}.cloud.example.com.")) {
                Ok(name) => match client.query(&ep, &name, RecordType::A, false).await {
                    // an A query: the answer holds only IPv4 addresses
                    Ok(m) => crate::peer::addresses(&m),
                    Err(_) => Vec::new(),
                },
                Err(_) => Vec::new(),
            };
            ips.sort();
            row.push(ips);
        }
        out.push(row);
    }
    out
}

fn region_of(ip: &IpAddr, o: &DemoOptions) -> &'static str {
    (0..3)
        .find(|i| backend_ip(*i, o) == *ip)
        .map(|i| TAGS[i])
        .unwrap_or("?")
}

fn table(a: &[Vec<Vec<IpAddr>>], o: &DemoOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "    {:<14} {:<30} {:<30} {:<30}",
        "cluster", "roundrobin", "failover (primary eu)", "weighted 60/30/10"
    );
    for (i, row) in a.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .map(|ips| {
                if ips.is_empty() {
                    "NXDOMAIN".to_string()
                } else {
                    ips.iter()
                        .map(|ip| region_of(ip, o))
                        .collect::<Vec<_>>()
                        .join(",")
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "    {:<14} {:<30} {:<30} {:<30}",
            format!("{} {}", TAGS[i], dns_ip(i, o)),
            cells[0],
            cells[1],
            cells[2]
        );
    }
    s
}

/// Waits (bounded) until every cluster answers `want(host)` for every host.
async fn wait_for(o: &DemoOptions, want: &dyn Fn(usize) -> Vec<IpAddr>, limit: Duration) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let a = answers(o).await;
        if a.iter()
            .all(|row| row.iter().enumerate().all(|(h, ips)| *ips == want(h)))
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Waits until eu itself publishes (or withdraws) its local target: the
/// moment of the local health change, seen from outside.
async fn wait_local(o: &DemoOptions, present: bool, limit: Duration) -> Option<Instant> {
    let ep = Endpoint {
        dns: SocketAddr::new(dns_ip(0, o), DNS_PORT),
        dot: SocketAddr::new(dns_ip(0, o), DNS_PORT),
        server_name: rustls::pki_types::ServerName::IpAddress(dns_ip(0, o).into()),
    };
    let name = Name::from_ascii("localtargets-failover.cloud.example.com.").ok()?;
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut client = PeerClient::plain(Duration::from_millis(300), Vec::new());
        if let Ok(m) = client.query(&ep, &name, RecordType::A, false).await
            && m.answers.is_empty() != present
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Prints a cycle's timings: from the backend change (`from`), from eu's own
/// local change (`local`), to every cluster answering the new set.
async fn report(
    o: &DemoOptions,
    cycle: u32,
    what: &str,
    from: Instant,
    local: Option<Instant>,
    converged: Instant,
    verbose: bool,
) {
    let total = converged.saturating_duration_since(from);
    let propagation = local.map(|l| converged.saturating_duration_since(l));
    if o.json {
        println!(
            "{{\"cycle\":{cycle},\"event\":\"{what}\",\"total_ms\":{:.3},\"detect_ms\":{},\"propagation_ms\":{}}}",
            total.as_secs_f64() * 1000.0,
            local
                .map(|l| format!("{:.3}", l.saturating_duration_since(from).as_secs_f64() * 1000.0))
                .unwrap_or("null".into()),
            propagation
                .map(|p| format!("{:.3}", p.as_secs_f64() * 1000.0))
                .unwrap_or("null".into()),
        );
    } else if verbose {
        let prop = propagation
            .map(|p| format!(", {} ms after eu's own answer changed", p.as_millis()))
            .unwrap_or_default();
        let label = if what == "failover" {
            "every cluster answers without eu after"
        } else {
            "fail-back everywhere after"
        };
        println!(
            "   {label} {} ms (probe detection + NOTIFY push{prop}):",
            total.as_millis()
        );
        print!("{}", table(&answers(o).await, o));
    }
}

/// Runs the demo. Errors are one line for the user.
pub fn run(o: DemoOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(demo(o))
}

async fn demo(o: DemoOptions) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the k8gb binary: {e}"))?;
    let dir = tempfile_dir()?;
    let (listeners, port) = bind_backends(&o).await?;
    let ups: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(true))).collect();
    for (l, up) in listeners.into_iter().zip(&ups) {
        tokio::spawn(backend(l, up.clone()));
    }
    println!("k8gb demo: three clusters on loopback, no Kubernetes needed");
    let mut clusters = Vec::new();
    for (i, tag) in TAGS.iter().enumerate() {
        let cfg = dir.join(format!("{tag}.yaml"));
        std::fs::write(&cfg, config(i, &o, port)).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let log = dir.join(format!("{tag}.log"));
        let child = spawn(&exe, &cfg, &log)?;
        println!(
            "  cluster {:<2}  DNS {}:{DNS_PORT}   backend http://{}:{port}/healthz   config {}",
            tag,
            dns_ip(i, &o),
            backend_ip(i, &o),
            cfg.display()
        );
        clusters.push(Cluster { child, log });
    }
    let all: Vec<IpAddr> = (0..3).map(|i| backend_ip(i, &o)).collect();
    let eu = vec![backend_ip(0, &o)];
    let without_eu: Vec<IpAddr> = (1..3).map(|i| backend_ip(i, &o)).collect();
    let healthy = |h: usize| if h == 1 { eu.clone() } else { all.clone() };
    let eu_down = |_: usize| without_eu.clone();

    let started = Instant::now();
    if wait_for(&o, &healthy, Duration::from_secs(20)).await.is_none() {
        let mut why = String::new();
        for c in &mut clusters {
            if let Ok(Some(status)) = c.child.try_wait() {
                let log = std::fs::read_to_string(&c.log).unwrap_or_default();
                let _ = write!(
                    why,
                    " {} exited ({status}): {}",
                    c.log.display(),
                    log.lines().last().unwrap_or("")
                );
            }
        }
        return Err(format!(
            "the mesh did not converge within 20 s.{why} Logs in {}",
            dir.display()
        ));
    }
    println!(
        "\n1. all backends healthy (mesh formed in {:.1} s):",
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&answers(&o).await, &o));

    for cycle in 1..=o.cycles.max(1) {
        let verbose = !o.json && cycle == 1;
        if verbose {
            println!("\n2. eu's backend goes down (its probes fail twice, 100 ms apart)...");
        }
        // a random pause decouples the change from the peers' heartbeat phase
        if o.cycles > 1 {
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..1000))).await;
        }
        let down_at = Instant::now();
        ups[0].store(false, Ordering::Relaxed);
        let local = wait_local(&o, false, Duration::from_secs(20)).await;
        let t = wait_for(&o, &eu_down, Duration::from_secs(20))
            .await
            .ok_or_else(|| format!("failover did not converge within 20 s; logs in {}", dir.display()))?;
        report(&o, cycle, "failover", down_at, local, t, verbose).await;
        if o.cycles > 1 {
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..1000))).await;
        }
        let up_at = Instant::now();
        ups[0].store(true, Ordering::Relaxed);
        if verbose {
            println!("\n3. eu's backend comes back...");
        }
        let local = wait_local(&o, true, Duration::from_secs(20)).await;
        let t = wait_for(&o, &healthy, Duration::from_secs(20))
            .await
            .ok_or_else(|| {
                format!(
                    "fail-back did not converge within 20 s; logs in {}",
                    dir.display()
                )
            })?;
        report(&o, cycle, "failback", up_at, local, t, verbose).await;
    }

    if o.keep {
        println!("\nThe mesh keeps running (Ctrl-C stops it). Try:");
        for i in 0..3 {
            println!(
                "  dig @{} -p {DNS_PORT} failover.cloud.example.com A +short",
                dns_ip(i, &o)
            );
        }
        println!("  dig @{} -p {DNS_PORT} cloud.example.com NS", dns_ip(0, &o));
        println!(
            "  edit {} (e.g. change the weights or remove a target) and watch the answers change",
            dir.join("us.yaml").display()
        );
        println!("  logs: {}", dir.display());
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(clusters);
    println!("\nstopped the three clusters.");
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("k8gb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
