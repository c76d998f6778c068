//! Active health probes for standalone targets: TCP connect or HTTP GET with
//! an expected status, with interval, timeout and failure/success thresholds.
//! Each probe runs as its own task and reports health changes to the engine.
//!
//! The decision logic is the pure [`ProbeState`] (Kubernetes-style
//! thresholds); [`check`] runs one probe; [`Prober`] keeps one task per
//! target in line with the configuration and sends a [`HealthEvent`] on every
//! transition, the first decision included.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::{ProbeConfig, ProbeKind};

/// Which target a probe watches: the Gslb (`namespace/name`) and the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub gslb: String,
    pub address: IpAddr,
}

/// A target's health changed (or was first established).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub key: TargetKey,
    pub healthy: bool,
}

// ---------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------

/// Health decided from consecutive probe results, like Kubernetes probes.
///
/// Starts unknown (not healthy). `success_threshold` consecutive successes
/// make it healthy, `failure_threshold` consecutive failures make it
/// unhealthy; a single opposite result resets the streak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    success_threshold: u32,
    failure_threshold: u32,
    /// `None` until the first decision.
    healthy: Option<bool>,
    /// Direction of the current streak (`true`: successes).
    streak_ok: bool,
    /// Length of the current streak of `streak_ok` results.
    streak: u32,
}

impl ProbeState {
    /// A state in Unknown. Thresholds below 1 count as 1.
    pub fn new(success_threshold: u32, failure_threshold: u32) -> ProbeState {
        ProbeState {
            success_threshold: success_threshold.max(1),
            failure_threshold: failure_threshold.max(1),
            healthy: None,
            streak_ok: false,
            streak: 0,
        }
    }

    /// A state with the thresholds of `cfg`.
    pub fn for_config(cfg: &ProbeConfig) -> ProbeState {
        ProbeState::new(cfg.success_threshold, cfg.failure_threshold)
    }

    /// The current decision: `None` while unknown.
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Records one probe result. Returns the new health on a transition
    /// (including the first decision from Unknown), otherwise `None`.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if self.streak > 0 && self.streak_ok == ok {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.streak_ok = ok;
            self.streak = 1;
        }
        if self.healthy == Some(ok) {
            return None;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.streak >= threshold {
            self.healthy = Some(ok);
            Some(ok)
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------
// One check
// ---------------------------------------------------------------------------

/// Why one probe check failed. Displayed as a short reason for logs, e.g.
/// `connection refused`, `timeout after 1s`, `status 503, expected 200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// No answer within the probe timeout.
    Timeout(Duration),
    /// The TCP connection did not open.
    Connect(String),
    /// The HTTP exchange failed (bad response, connection closed, ...).
    Http(String),
    /// The HTTP answer had another status.
    Status { got: u16, expected: u16 },
    /// The request could not be built from the configuration.
    InvalidRequest(String),
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeFailure::Timeout(d) => write!(f, "timeout after {d:?}"),
            ProbeFailure::Connect(e) => f.write_str(e),
            ProbeFailure::Http(e) => write!(f, "http: {e}"),
            ProbeFailure::Status { got, expected } => {
                write!(f, "status {got}, expected {expected}")
            }
            ProbeFailure::InvalidRequest(e) => write!(f, "invalid request: {e}"),
        }
    }
}

impl std::error::Error for ProbeFailure {}

/// A short reason for a connect error: the error kind for the usual network
/// failures ("connection refused"), the full error otherwise.
fn connect_reason(e: &io::Error) -> ProbeFailure {
    use io::ErrorKind::*;
    let reason = match e.kind() {
        k @ (ConnectionRefused | ConnectionReset | ConnectionAborted | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable | TimedOut) => k.to_string(),
        _ => e.to_string(),
    };
    ProbeFailure::Connect(reason)
}

/// Upper bound on response body bytes read (and ignored) per HTTP check.
const MAX_DRAIN_BYTES: usize = 64 * 1024;
/// Upper bound on body frames read per HTTP check.
const MAX_DRAIN_FRAMES: usize = 256;

/// Runs one check of `address` as `cfg` says, bounded by `cfg.timeout`.
pub async fn check(address: IpAddr, cfg: &ProbeConfig) -> Result<(), ProbeFailure> {
    let deadline = Instant::now() + cfg.timeout;
    match &cfg.kind {
        ProbeKind::Tcp => match tokio::time::timeout_at(deadline, tcp_connect(address, cfg.port)).await {
            Ok(r) => r.map(drop),
            Err(_) => Err(ProbeFailure::Timeout(cfg.timeout)),
        },
        ProbeKind::Http {
            path,
            host,
            expect_status,
        } => {
            let host = match host {
                Some(h) => h.clone(),
                None => match address {
                    IpAddr::V4(a) => a.to_string(),
                    IpAddr::V6(a) => format!("[{a}]"),
                },
            };
            http_check(
                address,
                cfg.port,
                path,
                &host,
                *expect_status,
                deadline,
                cfg.timeout,
            )
            .await
        }
    }
}

async fn tcp_connect(address: IpAddr, port: u16) -> Result<TcpStream, ProbeFailure> {
    TcpStream::connect((address, port))
        .await
        .map_err(|e| connect_reason(&e))
}

async fn http_check(
    address: IpAddr,
    port: u16,
    path: &str,
    host: &str,
    expect_status: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let timed_out = |_| ProbeFailure::Timeout(timeout);
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, "k8gb-probe")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeFailure::InvalidRequest(e.to_string()))?;

    let open = async {
        let stream = tcp_connect(address, port).await?;
        // Latency hint only; a failure here does not matter.
        let _ = stream.set_nodelay(true);
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProbeFailure::Http(e.to_string()))
    };
    let (mut sender, conn) = tokio::time::timeout_at(deadline, open)
        .await
        .map_err(timed_out)??;

    // The connection is driven here, not spawned, so that everything is
    // dropped with this future (timeout, cancellation).
    let driver = async move {
        if let Err(e) = conn.await {
            tracing::trace!(error = %e, "probe connection ended");
        }
        std::future::pending::<Result<(), ProbeFailure>>().await
    };
    let exchange = async move {
        let response = tokio::time::timeout_at(deadline, sender.send_request(request))
            .await
            .map_err(timed_out)?
            .map_err(|e| ProbeFailure::Http(e.to_string()))?;
        let status = response.status().as_u16();
        // The body is read and ignored, best effort: the status decides.
        let _ = tokio::time::timeout_at(deadline, drain(response.into_body())).await;
        if status == expect_status {
            Ok(())
        } else {
            Err(ProbeFailure::Status {
                got: status,
                expected: expect_status,
            })
        }
    };
    tokio::select! {
        r = exchange => r,
        r = driver => r,
    }
}

/// Reads and drops a response body, up to a bounded size.
async fn drain(mut body: Incoming) {
    let mut bytes = 0usize;
    for _ in 0..MAX_DRAIN_FRAMES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes = bytes.saturating_add(data.len());
                    if bytes >= MAX_DRAIN_BYTES {
                        return;
                    }
                }
            }
            Some(Err(_)) | None => return,
        }
    }
}

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

/// One running probe task.
struct Task {
    cfg: ProbeConfig,
    cancel: CancellationToken,
    /// Held while a task sends an event and while it is stopped, so that no
    /// event of a stopped task can be sent after [`Task::stop`] returns.
    gate: Arc<Mutex<()>>,
    handle: JoinHandle<()>,
}

impl Task {
    fn stop(&self) {
        {
            let _g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            self.cancel.cancel();
        }
        self.handle.abort();
    }
}

/// Runs one probe task per target and keeps the set in line with the config.
///
/// Every task stops when the `cancel` token given to [`Prober::new`] fires,
/// and when the `Prober` is dropped.
pub struct Prober {
    events: mpsc::Sender<HealthEvent>,
    cancel: CancellationToken,
    tasks: HashMap<TargetKey, Task>,
}

impl Prober {
    pub fn new(events: mpsc::Sender<HealthEvent>, cancel: CancellationToken) -> Prober {
        Prober {
            events,
            cancel,
            tasks: HashMap::new(),
        }
    }

    /// Starts probes for new targets, stops removed ones, restarts changed ones.
    ///
    /// Unchanged targets keep running with their state. A stopped target sends
    /// no event after this returns. When a key appears more than once, the
    /// last entry wins. Must be called within a Tokio runtime.
    pub fn reconcile(&mut self, targets: &[(TargetKey, ProbeConfig)]) {
        let wanted: HashMap<&TargetKey, &ProbeConfig> = targets.iter().map(|(k, c)| (k, c)).collect();

        self.tasks.retain(|key, task| {
            let keep = wanted.get(key).is_some_and(|cfg| **cfg == task.cfg);
            if !keep {
                task.stop();
                tracing::debug!(gslb = %key.gslb, target = %key.address, "probe stopped");
            }
            keep
        });

        for (key, cfg) in wanted {
            if self.tasks.contains_key(key) {
                continue;
            }
            let task = self.spawn(key.clone(), cfg.clone());
            tracing::debug!(gslb = %key.gslb, target = %key.address, "probe started");
            self.tasks.insert(key.clone(), task);
        }
    }

    /// Number of targets being probed.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no target is probed.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Number of probe tasks still running (they end on cancellation).
    pub fn active(&self) -> usize {
        self.tasks.values().filter(|t| !t.handle.is_finished()).count()
    }

    fn spawn(&self, key: TargetKey, cfg: ProbeConfig) -> Task {
        let cancel = self.cancel.child_token();
        let gate = Arc::new(Mutex::new(()));
        let handle = tokio::spawn(run(
            key,
            cfg.clone(),
            self.events.clone(),
            cancel.clone(),
            Arc::clone(&gate),
        ));
        Task {
            cfg,
            cancel,
            gate,
            handle,
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.stop();
        }
    }
}

/// The probe loop of one target; ends on cancellation or when the engine's
/// receiver is gone.
async fn run(
    key: TargetKey,
    cfg: ProbeConfig,
    events: mpsc::Sender<HealthEvent>,
    cancel: CancellationToken,
    gate: Arc<Mutex<()>>,
) {
    let mut state = ProbeState::for_config(&cfg);
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = check(key.address, &cfg) => r,
        };
        let transition = state.observe(result.is_ok());
        let Some(healthy) = transition else {
            if let Err(reason) = &result {
                tracing::debug!(
                    gslb = %key.gslb,
                    target = %key.address,
                    port = cfg.port,
                    %reason,
                    "probe failed"
                );
            }
            continue;
        };
        match &result {
            Ok(()) => tracing::info!(
                gslb = %key.gslb,
                target = %key.address,
                port = cfg.port,
                "probe: target healthy"
            ),
            Err(reason) => tracing::info!(
                gslb = %key.gslb,
                target = %key.address,
                port = cfg.port,
                %reason,
                "probe: target unhealthy"
            ),
        }
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            p = events.reserve() => match p {
                Ok(p) => p,
                Err(_) => return, // the engine is gone
            },
        };
        {
            let _g = gate.lock().unwrap_or_else(|p| p.into_inner());
            if cancel.is_cancelled() {
                return;
            }
            permit.send(HealthEvent {
                key: key.clone(),
                healthy,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_seq(state: &mut ProbeState, seq: &[bool]) -> Vec<Option<bool>> {
        seq.iter().map(|&ok| state.observe(ok)).collect()
    }

    #[test]
    fn starts_unknown() {
        let s = ProbeState::new(1, 3);
        assert_eq!(s.healthy(), None);
    }

    #[test]
    fn unknown_to_healthy_threshold_1() {
        let mut s = ProbeState::new(1, 3);
        assert_eq!(s.observe(true), Some(true));
        assert_eq!(s.healthy(), Some(true));
        assert_eq!(s.observe(true), None);
    }

    #[test]
    fn unknown_to_healthy_threshold_3() {
        let mut s = ProbeState::new(3, 3);
        assert_eq!(run_seq(&mut s, &[true, true]), [None, None]);
        assert_eq!(s.healthy(), None);
        assert_eq!(s.observe(true), Some(true));
        assert_eq!(s.observe(true), None);
    }

    #[test]
    fn unknown_to_unhealthy_threshold_1() {
        let mut s = ProbeState::new(1, 1);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.healthy(), Some(false));
        assert_eq!(s.observe(false), None);
    }

    #[test]
    fn unknown_to_unhealthy_threshold_3() {
        let mut s = ProbeState::new(1, 3);
        assert_eq!(run_seq(&mut s, &[false, false]), [None, None]);
        assert_eq!(s.healthy(), None);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.observe(false), None);
    }

    #[test]
    fn healthy_to_unhealthy() {
        let mut s = ProbeState::new(1, 3);
        s.observe(true);
        assert_eq!(run_seq(&mut s, &[false, false]), [None, None]);
        assert_eq!(s.healthy(), Some(true));
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.healthy(), Some(false));
    }

    #[test]
    fn healthy_to_unhealthy_threshold_1() {
        let mut s = ProbeState::new(1, 1);
        s.observe(true);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.observe(true), Some(true));
        assert_eq!(s.observe(false), Some(false));
    }

    #[test]
    fn unhealthy_to_healthy() {
        let mut s = ProbeState::new(2, 1);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.observe(true), None);
        assert_eq!(s.healthy(), Some(false));
        assert_eq!(s.observe(true), Some(true));
        assert_eq!(s.healthy(), Some(true));
    }

    #[test]
    fn failure_streak_reset_by_success() {
        let mut s = ProbeState::new(1, 3);
        s.observe(true);
        // two failures, a success, two failures: never three in a row
        assert_eq!(run_seq(&mut s, &[false, false, true, false, false]), [None; 5]);
        assert_eq!(s.healthy(), Some(true));
        assert_eq!(s.observe(false), Some(false));
    }

    #[test]
    fn success_streak_reset_by_failure() {
        let mut s = ProbeState::new(3, 1);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(run_seq(&mut s, &[true, true, false, true, true]), [None; 5]);
        assert_eq!(s.healthy(), Some(false));
        assert_eq!(s.observe(true), Some(true));
    }

    #[test]
    fn streak_reset_from_unknown() {
        let mut s = ProbeState::new(2, 2);
        assert_eq!(run_seq(&mut s, &[true, false, true, false]), [None; 4]);
        assert_eq!(s.healthy(), None);
        assert_eq!(s.observe(false), Some(false));
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let mut s = ProbeState::new(0, 0);
        assert_eq!(s.observe(false), Some(false));
        assert_eq!(s.observe(true), Some(true));
    }

    #[test]
    fn long_streaks_do_not_overflow() {
        let mut s = ProbeState::new(1, 1);
        s.streak_ok = true;
        s.streak = u32::MAX;
        s.healthy = Some(true);
        assert_eq!(s.observe(true), None);
        assert_eq!(s.observe(false), Some(false));
    }

    #[test]
    fn failure_reasons() {
        assert_eq!(
            ProbeFailure::Timeout(Duration::from_secs(1)).to_string(),
            "timeout after 1s"
        );
        assert_eq!(
            ProbeFailure::Timeout(Duration::from_millis(200)).to_string(),
            "timeout after 200ms"
        );
        assert_eq!(
            ProbeFailure::Status {
                got: 503,
                expected: 200
            }
            .to_string(),
            "status 503, expected 200"
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_reason(&refused).to_string(), "connection refused");
    }
}
