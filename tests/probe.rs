//! Active probes against tiny servers on loopback: HTTP status, connection
//! refused, recovery on the same port, TCP, timeouts, and reconcile.
//!
//! Waits are bounded (`tokio::time::timeout`, 5 s); absence of events is
//! checked after the server has seen further probes, never after a race.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8gb::config::{ProbeConfig, ProbeKind};
use k8gb::probe::{HealthEvent, ProbeFailure, Prober, TargetKey, check};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(5);
const INTERVAL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// Test servers
// ---------------------------------------------------------------------------

/// A minimal HTTP/1.1 server answering every request with a switchable status.
struct HttpServer {
    port: u16,
    status: Arc<AtomicU16>,
    /// Complete requests seen.
    hits: Arc<AtomicUsize>,
    /// The head of the last request.
    last_request: Arc<Mutex<String>>,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    async fn start(status: u16) -> HttpServer {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let mut server = HttpServer {
            port,
            status: Arc::new(AtomicU16::new(status)),
            hits: Arc::new(AtomicUsize::new(0)),
            last_request: Arc::new(Mutex::new(String::new())),
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let status = Arc::clone(&self.status);
        let hits = Arc::clone(&self.hits);
        let last = Arc::clone(&self.last_request);
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(
                    stream,
                    Arc::clone(&status),
                    Arc::clone(&hits),
                    Arc::clone(&last),
                ));
            }
        }));
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener: connections are refused from now on.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        let addr = SocketAddr::new(LOOPBACK, self.port);
        let mut last_err = None;
        for _ in 0..50 {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    self.serve(listener);
                    return;
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        panic!("rebind {addr}: {last_err:?}");
    }

    /// Waits (bounded) until the server has seen at least `n` requests.
    async fn wait_hits(&self, n: usize) {
        let waited = tokio::time::timeout(WAIT, async {
            while self.hits() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "server saw {} of {n} requests", self.hits());
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    last: Arc<Mutex<String>>,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    *last.lock().expect("lock") = String::from_utf8_lossy(&buf).into_owned();
    hits.fetch_add(1, Ordering::SeqCst);
    let status = status.load(Ordering::SeqCst);
    let body = "hello";
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Accepts connections and never answers; holds them open.
async fn silent_server() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            if held.len() < 1000 {
                held.push(stream);
            }
        }
    });
    (port, task)
}

/// A port on which nothing listens (bound, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn http_cfg(port: u16, expect_status: u16) -> ProbeConfig {
    ProbeConfig {
        kind: ProbeKind::Http {
            path: "/healthz".into(),
            host: None,
            expect_status,
        },
        port,
        interval: INTERVAL,
        timeout: Duration::from_secs(1),
        failure_threshold: 2,
        success_threshold: 1,
    }
}

fn tcp_cfg(port: u16) -> ProbeConfig {
    ProbeConfig {
        kind: ProbeKind::Tcp,
        port,
        interval: INTERVAL,
        timeout: Duration::from_secs(1),
        failure_threshold: 1,
        success_threshold: 1,
    }
}

fn key(gslb: &str) -> TargetKey {
    TargetKey {
        gslb: gslb.into(),
        address: LOOPBACK,
    }
}

fn prober() -> (Prober, mpsc::Receiver<HealthEvent>, CancellationToken) {
    let (tx, rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    (Prober::new(tx, cancel.clone()), rx, cancel)
}

async fn next_event(rx: &mut mpsc::Receiver<HealthEvent>) -> HealthEvent {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("event channel closed"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

async fn expect_event(rx: &mut mpsc::Receiver<HealthEvent>, key: &TargetKey, healthy: bool) {
    let ev = next_event(rx).await;
    assert_eq!(
        ev,
        HealthEvent {
            key: key.clone(),
            healthy
        }
    );
}

fn assert_no_event(rx: &mut mpsc::Receiver<HealthEvent>) {
    match rx.try_recv() {
        Err(mpsc::error::TryRecvError::Empty) => {}
        other => panic!("unexpected event: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http_status_switches_health() {
    let server = HttpServer::start(200).await;
    let (mut prober, mut rx, _cancel) = prober();
    let k = key("ns/web");
    prober.reconcile(&[(k.clone(), http_cfg(server.port, 200))]);
    assert_eq!(prober.len(), 1);
    assert!(!prober.is_empty());

    expect_event(&mut rx, &k, true).await;
    let head = server.last_request.lock().expect("lock").to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("\r\nuser-agent: k8gb-probe\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");

    server.set_status(503);
    expect_event(&mut rx, &k, false).await;
    server.set_status(200);
    expect_event(&mut rx, &k, true).await;
}

#[tokio::test]
async fn http_failure_threshold_counts_consecutive_failures() {
    let server = HttpServer::start(200).await;
    let (mut prober, mut rx, _cancel) = prober();
    let k = key("ns/web");
    let mut cfg = http_cfg(server.port, 200);
    cfg.failure_threshold = 3;
    prober.reconcile(&[(k.clone(), cfg)]);
    expect_event(&mut rx, &k, true).await;

    let before = server.hits();
    server.set_status(503);
    expect_event(&mut rx, &k, false).await;
    assert!(
        server.hits() >= before + 3,
        "unhealthy after {} failed probes",
        server.hits() - before
    );
}

#[tokio::test]
async fn http_refused_then_back_on_same_port() {
    let mut server = HttpServer::start(200).await;
    let (mut prober, mut rx, _cancel) = prober();
    let k = key("ns/web");
    prober.reconcile(&[(k.clone(), http_cfg(server.port, 200))]);
    expect_event(&mut rx, &k, true).await;

    server.stop().await;
    expect_event(&mut rx, &k, false).await;

    server.restart().await;
    expect_event(&mut rx, &k, true).await;
}

#[tokio::test]
async fn tcp_open_and_closed_port() {
    let open = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let open_port = open.local_addr().expect("local addr").port();
    let closed = closed_port().await;

    let (mut prober, mut rx, _cancel) = prober();
    let k_open = key("ns/open");
    let k_closed = key("ns/closed");
    prober.reconcile(&[
        (k_open.clone(), tcp_cfg(open_port)),
        (k_closed.clone(), tcp_cfg(closed)),
    ]);
    assert_eq!(prober.len(), 2);

    let mut seen = vec![next_event(&mut rx).await, next_event(&mut rx).await];
    seen.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        seen,
        [
            HealthEvent {
                key: k_closed,
                healthy: false
            },
            HealthEvent {
                key: k_open,
                healthy: true
            },
        ]
    );
    drop(open);
}

#[tokio::test]
async fn http_timeout_when_server_never_answers() {
    let (port, server) = silent_server().await;
    let (mut prober, mut rx, _cancel) = prober();
    let k = key("ns/slow");
    let mut cfg = http_cfg(port, 200);
    cfg.timeout = Duration::from_millis(100);
    prober.reconcile(&[(k.clone(), cfg)]);
    expect_event(&mut rx, &k, false).await;
    server.abort();
}

#[tokio::test]
async fn check_reports_failure_reasons() {
    let server = HttpServer::start(503).await;
    assert_eq!(
        check(LOOPBACK, &http_cfg(server.port, 200)).await,
        Err(ProbeFailure::Status {
            got: 503,
            expected: 200
        })
    );
    assert_eq!(check(LOOPBACK, &http_cfg(server.port, 503)).await, Ok(()));

    let closed = closed_port().await;
    let refused = check(LOOPBACK, &http_cfg(closed, 200))
        .await
        .expect_err("closed port");
    assert_eq!(refused.to_string(), "connection refused");
    let refused = check(LOOPBACK, &tcp_cfg(closed)).await.expect_err("closed port");
    assert_eq!(refused.to_string(), "connection refused");

    let (port, silent) = silent_server().await;
    let mut cfg = http_cfg(port, 200);
    cfg.timeout = Duration::from_millis(100);
    let slow = check(LOOPBACK, &cfg).await.expect_err("silent server");
    assert_eq!(slow, ProbeFailure::Timeout(Duration::from_millis(100)));
    assert_eq!(slow.to_string(), "timeout after 100ms");
    silent.abort();
}

#[tokio::test]
async fn http_host_header_from_config() {
    let server = HttpServer::start(200).await;
    let mut cfg = http_cfg(server.port, 200);
    cfg.kind = ProbeKind::Http {
        path: "/ready?x=1".into(),
        host: Some("app.example.com".into()),
        expect_status: 200,
    };
    assert_eq!(check(LOOPBACK, &cfg).await, Ok(()));
    let head = server.last_request.lock().expect("lock").to_ascii_lowercase();
    assert!(head.starts_with("get /ready?x=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: app.example.com\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removed_target_stops_its_events() {
    let a = HttpServer::start(200).await;
    let b = HttpServer::start(200).await;
    let (mut prober, mut rx, _cancel) = prober();
    let ka = key("ns/a");
    let kb = key("ns/b");
    let mut cfg_a = http_cfg(a.port, 200);
    cfg_a.failure_threshold = 1;
    let cfg_b = http_cfg(b.port, 200);
    prober.reconcile(&[(ka.clone(), cfg_a), (kb.clone(), cfg_b.clone())]);

    let mut seen = vec![next_event(&mut rx).await, next_event(&mut rx).await];
    seen.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(
        seen,
        [
            HealthEvent {
                key: ka.clone(),
                healthy: true
            },
            HealthEvent {
                key: kb.clone(),
                healthy: true
            },
        ]
    );

    prober.reconcile(&[(kb.clone(), cfg_b)]);
    assert_eq!(prober.len(), 1);
    // A running probe of `a` would now report it unhealthy.
    a.set_status(503);
    let a_hits = a.hits();
    // Let `b` be probed ten more times: `a` would have been probed as often.
    b.wait_hits(b.hits() + 10).await;
    assert_no_event(&mut rx);
    assert!(
        a.hits() <= a_hits + 1,
        "removed target still probed: {} -> {}",
        a_hits,
        a.hits()
    );

    prober.reconcile(&[]);
    assert!(prober.is_empty());
}

#[tokio::test]
async fn reconcile_unchanged_keeps_state_and_changed_restarts() {
    let server = HttpServer::start(200).await;
    let (mut prober, mut rx, _cancel) = prober();
    let k = key("ns/web");
    let cfg = http_cfg(server.port, 200);
    prober.reconcile(&[(k.clone(), cfg.clone())]);
    expect_event(&mut rx, &k, true).await;

    // Same config: the task keeps running with its state, so no new event.
    prober.reconcile(&[(k.clone(), cfg.clone())]);
    assert_eq!(prober.len(), 1);
    server.wait_hits(server.hits() + 5).await;
    assert_no_event(&mut rx);

    // Changed interval: restarted from Unknown, so healthy is reported again.
    let mut faster = cfg.clone();
    faster.interval = Duration::from_millis(40);
    prober.reconcile(&[(k.clone(), faster)]);
    assert_eq!(prober.len(), 1);
    expect_event(&mut rx, &k, true).await;

    // Changed expected status: the new config is what is probed.
    let mut other_status = cfg;
    other_status.kind = ProbeKind::Http {
        path: "/healthz".into(),
        host: None,
        expect_status: 204,
    };
    prober.reconcile(&[(k.clone(), other_status)]);
    assert_eq!(prober.len(), 1);
    expect_event(&mut rx, &k, false).await;
}

#[tokio::test]
async fn cancel_stops_all_tasks() {
    let server = HttpServer::start(200).await;
    let (mut prober, mut rx, cancel) = prober();
    let k1 = key("ns/one");
    let k2 = key("ns/two");
    prober.reconcile(&[
        (k1.clone(), http_cfg(server.port, 200)),
        (k2.clone(), tcp_cfg(server.port)),
    ]);
    next_event(&mut rx).await;
    next_event(&mut rx).await;
    assert_eq!(prober.active(), 2);

    cancel.cancel();
    let stopped = tokio::time::timeout(WAIT, async {
        while prober.active() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "{} tasks still running", prober.active());

    // Once the prober is gone too, every sender is dropped.
    drop(prober);
    let closed = tokio::time::timeout(WAIT, rx.recv()).await;
    assert_eq!(closed.ok(), Some(None));
}
