//! The admin HTTP server over loopback: endpoints, readiness, metrics,
//! slow clients and shutdown. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8gb::admin::{self, AdminOptions};
use k8gb::metrics::{Metrics, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(options: Option<AdminOptions>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new("eu", "k8gb");
        let ready = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let (m, r, c) = (metrics.clone(), ready.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            match options {
                Some(o) => admin::serve_with(listener, m, r, c, o).await,
                None => admin::serve(listener, m, r, c).await,
            }
        });
        Server {
            addr,
            metrics,
            ready,
            cancel,
            task,
        }
    }

    /// Cancels and checks that `serve` returns, in bounded time, with Ok.
    async fn stop(self) {
        self.cancel.cancel();
        let joined = timeout(BOUND, self.task)
            .await
            .expect("serve did not return after cancel");
        joined.unwrap().unwrap();
    }
}

/// A client connection speaking HTTP/1.1 through hyper.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    /// Ends when the server closes the connection.
    conn: JoinHandle<Result<(), hyper::Error>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = timeout(BOUND, TcpStream::connect(addr)).await.unwrap().unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        Client { sender, conn }
    }

    async fn send(&mut self, method: Method, path: &str) -> (StatusCode, HeaderMap, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost")
            .body(Empty::new())
            .unwrap();
        timeout(BOUND, async {
            let resp = self.sender.send_request(req).await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, String::from_utf8(body.to_vec()).unwrap())
        })
        .await
        .expect("no response in time")
    }
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, String) {
    Client::connect(addr).await.send(Method::GET, path).await
}

#[tokio::test]
async fn healthz_is_ok() {
    let s = Server::start(None).await;
    let (status, _, body) = get(s.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    s.stop().await;
}

#[tokio::test]
async fn readyz_flips_from_503_to_200() {
    let s = Server::start(None).await;
    let (status, _, body) = get(s.addr, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    );
    s.ready.store(true, Ordering::Release);
    let (status, _, body) = get(s.addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));
    s.ready.store(false, Ordering::Release);
    let (status, _, _) = get(s.addr, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    s.stop().await;
}

#[tokio::test]
async fn metrics_exposes_runtime_info_and_dns_queries() {
    let s = Server::start(None).await;
    let worker = s.metrics.dns_worker();
    worker.record(Transport::Udp, 28, 3, Duration::from_micros(42));
    let (status, headers, body) = get(s.addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(CONTENT_TYPE).unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(body.contains("# TYPE k8gb_runtime_info gauge\n"), "{body}");
    assert!(body.contains("k8gb_runtime_info{namespace=\"k8gb\""), "{body}");
    assert!(
        body.contains("k8gb_dns_queries_total{transport=\"udp\",qtype=\"AAAA\",rcode=\"NXDOMAIN\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("k8gb_gslb_errors_total{namespace=\"k8gb\",name=\"init\"} 0\n"),
        "{body}"
    );
    // A query string does not change the route.
    let (status, _, _) = get(s.addr, "/metrics?debug=1").await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    let s = Server::start(None).await;
    for path in ["/", "/metrics/", "/healthz/x", "/nope"] {
        let (status, _, _) = get(s.addr, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_and_head_works() {
    let s = Server::start(None).await;
    let mut c = Client::connect(s.addr).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            let (status, headers, _) = c.send(method.clone(), path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(headers.get(ALLOW).unwrap(), "GET, HEAD");
        }
    }
    let (status, _, _) = c.send(Method::POST, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = c.send(Method::HEAD, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    s.stop().await;
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests() {
    let s = Server::start(None).await;
    s.ready.store(true, Ordering::Release);
    let mut c = Client::connect(s.addr).await;
    for _ in 0..3 {
        for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let (status, _, body) = c.send(Method::GET, path).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, want));
        }
        let (status, _, body) = c.send(Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("k8gb_runtime_info"));
    }
    s.stop().await;
}

/// Reads until the server closes the connection (EOF or reset).
async fn wait_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = timeout(BOUND, stream.read_to_end(&mut got))
        .await
        .expect("server kept a slow client's connection open");
    got
}

#[tokio::test]
async fn slow_client_is_disconnected() {
    let options = AdminOptions {
        header_read_timeout: Duration::from_millis(200),
        ..AdminOptions::default()
    };
    let s = Server::start(Some(options)).await;
    // Half a request head, then silence.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let got = wait_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "));
    // A client that connects and sends nothing is closed too.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    wait_closed(&mut idle).await;
    // The server still answers.
    let (status, _, _) = get(s.addr, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let options = AdminOptions {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 1,
        ..AdminOptions::default()
    };
    let s = Server::start(Some(options)).await;
    // Holds the only slot until its header timeout frees it.
    let _silent = TcpStream::connect(s.addr).await.unwrap();
    let (status, _, body) = get(s.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    s.stop().await;
}

#[tokio::test]
async fn serve_returns_after_cancel_with_open_connections() {
    let s = Server::start(None).await;
    // An idle keep-alive connection, and one stuck mid-head.
    let mut c = Client::connect(s.addr).await;
    let (status, _, _) = c.send(Method::GET, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let mut stuck = TcpStream::connect(s.addr).await.unwrap();
    stuck.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    s.stop().await;
    // Both connections were closed.
    wait_closed(&mut stuck).await;
    // The sender stays alive: only the server can end this connection.
    let Client {
        sender: _sender,
        conn,
    } = c;
    timeout(BOUND, conn)
        .await
        .expect("keep-alive connection left open")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_returns_after_cancel_when_idle() {
    let s = Server::start(None).await;
    s.stop().await;
}
