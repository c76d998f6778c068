//! The admin HTTP server on METRICS_ADDRESS: `/healthz`, `/readyz` (ready once
//! the first snapshot is published) and `/metrics`.
//!
//! HTTP/1 only, one task per connection. Slow or idle clients cannot pin a
//! connection: the request head must arrive within a timeout (which also
//! closes idle keep-alive connections), every connection has a maximum age,
//! and at most [`AdminOptions::max_connections`] are served at once. On
//! cancel the listener closes at once, open connections finish their
//! in-flight request, and whatever is still running after
//! [`AdminOptions::shutdown_grace`] is dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The content type of `/metrics`: the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Limits of the admin server; [`serve`] uses the defaults.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Time a client has to send a request head, counted from the moment the
    /// server waits for one (so it also bounds idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// A connection older than this is closed after its in-flight request.
    pub max_connection_age: Duration,
    /// Connections served at once; further clients wait in the backlog.
    pub max_connections: usize,
    /// How long open connections may take to finish after cancel.
    pub shutdown_grace: Duration,
}

impl Default for AdminOptions {
    fn default() -> AdminOptions {
        AdminOptions {
            header_read_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(120),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// Serves until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, metrics, ready, cancel, AdminOptions::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
    options: AdminOptions,
) -> std::io::Result<()> {
    let state = Arc::new(State { metrics, ready });
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set only holds live ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::trace!(%peer, "admin connection");
                let (state, cancel, options) = (state.clone(), cancel.clone(), options.clone());
                connections.spawn(connection(stream, state, cancel, options, permit));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "admin server: accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    // Connections saw the same cancel and are shutting down gracefully; give
    // them their grace (and a little slack), then drop the stragglers.
    let drain = async { while connections.join_next().await.is_some() {} };
    let slack = Duration::from_millis(500);
    if tokio::time::timeout(options.shutdown_grace + slack, drain)
        .await
        .is_err()
    {
        tracing::debug!(left = connections.len(), "admin server: aborting connections");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

struct State {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn connection(
    stream: TcpStream,
    state: Arc<State>,
    cancel: CancellationToken,
    options: AdminOptions,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&req, &state);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "admin connection ended");
            }
            return;
        }
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(options.max_connection_age) => {}
    }
    // Finish the in-flight request (if any), then close; bounded.
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(options.shutdown_grace, conn).await.is_err() {
        tracing::debug!("admin connection did not finish in time; dropped");
    }
}

fn respond(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let route = match req.uri().path() {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match route {
        Route::Healthz => text(StatusCode::OK, "ok"),
        Route::Readyz if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready"),
        Route::Readyz => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        Route::Metrics => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.encode())));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            r
        }
    }
}

enum Route {
    Healthz,
    Readyz,
    Metrics,
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
