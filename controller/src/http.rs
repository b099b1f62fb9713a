//! The controller's HTTP surface: `GET /healthz`, `GET /metrics` (Prometheus
//! text format 0.0.4) and `POST /webhook` (signed push events from GitHub,
//! Gitea or Forgejo that make the repo watcher fetch at once).
//!
//! Plain hyper 1 over tokio, HTTP/1.1 only. Nothing here panics on any input;
//! every refusal is logged with `tracing` and a reason.
//!
//! Status codes:
//!
//! | request                                              | status |
//! |------------------------------------------------------|--------|
//! | `GET`/`HEAD /healthz`, healthy                       | 200 `ok\n` |
//! | `GET`/`HEAD /healthz`, unhealthy                     | 503 `unhealthy\n` |
//! | `GET`/`HEAD /metrics`                                | 200, `text/plain; version=0.0.4` |
//! | `POST /webhook`, valid push                          | 202 (the fetch happens asynchronously) |
//! | `POST /webhook`, valid signature, other event (ping) | 204, nothing triggered |
//! | `POST /webhook`, body over 1 MiB                     | 413 |
//! | `POST /webhook`, signature missing or wrong          | 401 |
//! | `POST /webhook`, missing event or delivery header    | 400 |
//! | `POST /webhook`, delivery id already seen (replay)   | 409 |
//! | `POST /webhook`, push body not JSON / no `ref`       | 400 |
//! | `POST /webhook`, body not received within 10 s       | 408 |
//! | `POST /webhook`, the controller's loop has stopped   | 503 |
//! | `/webhook` when no webhook secret is configured      | 404 |
//! | a known path with another method                     | 405 with `Allow` |
//! | any other path                                       | 404 |
//!
//! The checks run in this order: size, signature, delivery id (replay), event
//! type, JSON. A delivery id is remembered only once its signature verified,
//! so unsigned requests cannot fill the replay memory. Note that forges do not
//! sign the delivery header, only the body: replay protection stops a naive
//! resend, not an attacker who rewrites the header. The worst a replayed push
//! can do is make the controller fetch once more, which is idempotent.

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

/// The largest webhook body accepted (1 MiB); larger ones get 413.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
/// How many delivery ids are remembered for replay detection.
pub const REPLAY_MEMORY: usize = 4096;
/// Delivery ids longer than this are refused (400); forges send UUIDs.
const MAX_DELIVERY_ID: usize = 200;
/// How long a client may take to send the request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a webhook body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;

/// Upper bounds (seconds) of the `warren_push_to_applied_seconds` buckets.
pub const PUSH_TO_APPLIED_BUCKETS: [f64; 12] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data
    // half-updated in a way that matters; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- metrics --

/// How one reconcile (one commit through the pipeline) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// Compiled, signed and handed out.
    Applied,
    /// The desired state had errors; nothing compiled.
    Invalid,
    /// Fetching, compiling or storing failed.
    Failed,
}

impl ReconcileOutcome {
    pub const ALL: [ReconcileOutcome; 3] = [
        ReconcileOutcome::Applied,
        ReconcileOutcome::Invalid,
        ReconcileOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileOutcome::Applied => "applied",
            ReconcileOutcome::Invalid => "invalid",
            ReconcileOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug)]
struct HistogramData {
    /// Per bucket (not cumulative); one more than the bounds, for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A Prometheus histogram with fixed buckets.
#[derive(Debug)]
struct Histogram {
    bounds: Vec<f64>,
    data: Mutex<HistogramData>,
}

impl Histogram {
    /// `bounds` are the bucket upper bounds; they are sorted, and non-finite
    /// values and duplicates dropped (`+Inf` is always implied).
    fn new(bounds: &[f64]) -> Self {
        let mut b: Vec<f64> = bounds.iter().copied().filter(|x| x.is_finite()).collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        let n = b.len() + 1;
        Histogram {
            bounds: b,
            data: Mutex::new(HistogramData {
                counts: vec![0; n],
                sum: 0.0,
                count: 0,
            }),
        }
    }

    /// Record one observation. NaN and infinities are ignored; negative
    /// values (a clock stepping back) count as 0.
    fn observe(&self, v: f64) {
        if !v.is_finite() {
            tracing::debug!(value = v, "histogram: ignoring a non-finite observation");
            return;
        }
        let v = v.max(0.0);
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        let mut d = lock(&self.data);
        if let Some(c) = d.counts.get_mut(i) {
            *c += 1;
        }
        d.sum += v;
        d.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let (counts, sum, count) = {
            let d = lock(&self.data);
            (d.counts.clone(), d.sum, d.count)
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut acc = 0u64;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            match self.bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {acc}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The controller's metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    push_to_applied: Histogram,
    reconciles: [AtomicU64; 3],
    drifted_resources: AtomicU64,
    connected_agents: AtomicU64,
    commits: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            push_to_applied: Histogram::new(&PUSH_TO_APPLIED_BUCKETS),
            reconciles: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            drifted_resources: AtomicU64::new(0),
            connected_agents: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    /// `warren_push_to_applied_seconds`: from a commit reaching the controller
    /// to an agent reporting its plan applied.
    pub fn observe_push_to_applied(&self, seconds: f64) {
        self.push_to_applied.observe(seconds);
    }

    /// `warren_reconciles_total{outcome=...}` += 1.
    pub fn record_reconcile(&self, outcome: ReconcileOutcome) {
        let i = outcome as usize;
        if let Some(c) = self.reconciles.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `warren_drifted_resources`: resources the agents currently report drifted.
    pub fn set_drifted_resources(&self, n: u64) {
        self.drifted_resources.store(n, Ordering::Relaxed);
    }

    /// `warren_connected_agents`: agent sessions currently up.
    pub fn set_connected_agents(&self, n: u64) {
        self.connected_agents.store(n, Ordering::Relaxed);
    }

    /// `warren_commits_total` += 1: a new commit was processed.
    pub fn inc_commits(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything, in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        self.push_to_applied.render(
            &mut out,
            "warren_push_to_applied_seconds",
            "Seconds from a commit reaching the controller to an agent reporting its plan applied.",
        );
        out.push_str("# HELP warren_reconciles_total Commits processed, by outcome.\n");
        out.push_str("# TYPE warren_reconciles_total counter\n");
        for o in ReconcileOutcome::ALL {
            let v = self
                .reconciles
                .get(o as usize)
                .map(|c| c.load(Ordering::Relaxed))
                .unwrap_or(0);
            let _ = writeln!(out, "warren_reconciles_total{{outcome=\"{}\"}} {v}", o.as_str());
        }
        let simple: [(&str, &str, &str, &AtomicU64); 3] = [
            (
                "warren_drifted_resources",
                "gauge",
                "Resources the agents currently report drifted from their plan.",
                &self.drifted_resources,
            ),
            (
                "warren_connected_agents",
                "gauge",
                "Agent sessions currently connected.",
                &self.connected_agents,
            ),
            (
                "warren_commits_total",
                "counter",
                "Commits the controller has processed.",
                &self.commits,
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

// ---------------------------------------------------------------- webhook --

/// The shared secret of the forge's webhook (HMAC-SHA256 key).
#[derive(Clone)]
pub struct WebhookConfig {
    secret: Vec<u8>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl WebhookConfig {
    /// Refuses an empty secret (anyone could sign with it).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.is_empty() {
            bail!("the webhook secret is empty");
        }
        Ok(WebhookConfig { secret })
    }

    /// Does `signature_hex` (lower or upper case hex, no prefix) equal
    /// HMAC-SHA256(secret, body)? Compared in constant time.
    pub fn verify(&self, body: &[u8], signature_hex: &str) -> bool {
        let Some(sig) = decode_hex(signature_hex) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    s.chunks_exact(2)
        .map(|p| Some(nib(*p.first()?)? << 4 | nib(*p.get(1)?)?))
        .collect()
}

/// Remembers the last `cap` delivery ids.
#[derive(Debug)]
struct ReplayMemory {
    cap: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl ReplayMemory {
    fn new(cap: usize) -> Self {
        ReplayMemory {
            cap: cap.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// False if `id` was seen before; otherwise remember it.
    fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

#[derive(Debug)]
struct Webhook {
    config: WebhookConfig,
    trigger: mpsc::Sender<String>,
    replay: Mutex<ReplayMemory>,
}

// ------------------------------------------------------------------ state --

/// What the HTTP server shares with the rest of the controller.
#[derive(Debug)]
pub struct HttpState {
    metrics: Arc<Metrics>,
    healthy: AtomicBool,
    webhook: Option<Webhook>,
}

impl HttpState {
    /// Healthy at first; without [`HttpState::with_webhook`], `/webhook` is 404.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        HttpState {
            metrics,
            healthy: AtomicBool::new(true),
            webhook: None,
        }
    }

    /// Enable `POST /webhook`: each valid push sends its `ref` (for example
    /// `refs/heads/main`) on `trigger`. A full channel is fine (a fetch is
    /// already queued); a closed one makes the webhook answer 503.
    pub fn with_webhook(mut self, config: WebhookConfig, trigger: mpsc::Sender<String>) -> Self {
        self.webhook = Some(Webhook {
            config,
            trigger,
            replay: Mutex::new(ReplayMemory::new(REPLAY_MEMORY)),
        });
        self
    }

    /// What `/healthz` answers: 200 when true, 503 when false.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

// ----------------------------------------------------------------- server --

/// A bound, not yet running, HTTP server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<HttpState>,
}

/// Bind `addr` (port 0 picks a free port; see [`Server::local_addr`]).
pub async fn bind(addr: SocketAddr, state: Arc<HttpState>) -> Result<Server> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Server { listener, state })
}

impl Server {
    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("cannot read the HTTP listener's address")
    }

    /// Accept connections forever (until the task is dropped or aborted).
    pub async fn run(self) -> Result<()> {
        match self.local_addr() {
            Ok(a) => {
                tracing::info!(addr = %a, webhook = self.state.webhook.is_some(), "HTTP server listening")
            }
            Err(e) => tracing::warn!("{e:#}"),
        }
        let Server { listener, state } = self;
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = match slots.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => bail!("HTTP connection semaphore closed"),
            };
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin or die.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
            });
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Log a refusal and build its response (the reason is also the body).
fn refuse(status: StatusCode, peer: SocketAddr, path: &str, reason: &str) -> Response<Full<Bytes>> {
    if status.is_server_error() || status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED
    {
        tracing::info!(%peer, path, status = status.as_u16(), reason, "HTTP request refused");
    } else {
        tracing::warn!(%peer, path, status = status.as_u16(), reason, "HTTP request refused");
    }
    text(status, format!("{reason}\n"))
}

fn method_not_allowed(
    peer: SocketAddr,
    path: &str,
    method: &Method,
    allow: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        peer,
        path,
        &format!("method {method} not allowed"),
    );
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Route one request. Generic over the body so tests can call it directly.
pub async fn handle<B>(state: &HttpState, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let get_like = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/healthz" if get_like => {
            if state.is_healthy() {
                text(StatusCode::OK, "ok\n")
            } else {
                tracing::debug!(%peer, "healthz: unhealthy");
                text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
            }
        }
        "/metrics" if get_like => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/healthz" | "/metrics" => method_not_allowed(peer, &path, &method, "GET, HEAD"),
        "/webhook" => match &state.webhook {
            None => refuse(StatusCode::NOT_FOUND, peer, &path, "webhook not configured"),
            Some(_) if method != Method::POST => method_not_allowed(peer, &path, &method, "POST"),
            Some(w) => webhook(w, req, peer).await,
        },
        _ => refuse(StatusCode::NOT_FOUND, peer, &path, "not found"),
    }
}

/// The first of `names` present in `headers`; `Err` if it is not text.
fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<Result<&'a str, ()>> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .map(|v| v.to_str().map(str::trim).map_err(|_| ()))
}

async fn webhook<B>(w: &Webhook, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const P: &str = "/webhook";
    let (parts, body) = req.into_parts();
    let h = &parts.headers;

    // 1. Size: refuse a declared oversize body before reading any of it.
    if let Some(len) = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_WEBHOOK_BODY as u64 {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                peer,
                P,
                &format!("body of {len} bytes is over the {MAX_WEBHOOK_BODY}-byte limit"),
            );
        }
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_WEBHOOK_BODY).collect()).await
    {
        Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, peer, P, "body not received in time"),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                peer,
                P,
                &format!("body is over the {MAX_WEBHOOK_BODY}-byte limit"),
            )
        }
        Ok(Err(e)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                peer,
                P,
                &format!("cannot read the body: {e}"),
            )
        }
        Ok(Ok(c)) => c.to_bytes(),
    };

    // 2. Signature (GitHub's prefixed header first, then Forgejo's, Gitea's).
    let sig = match header(h, &["x-hub-signature-256"]) {
        Some(Ok(v)) => match v.strip_prefix("sha256=") {
            Some(hex) => Some(Ok(hex)),
            None => Some(Err(())),
        },
        Some(Err(())) => Some(Err(())),
        None => header(h, &["x-forgejo-signature", "x-gitea-signature"]),
    };
    match sig {
        None => return refuse(StatusCode::UNAUTHORIZED, peer, P, "missing signature"),
        Some(Err(())) => return refuse(StatusCode::UNAUTHORIZED, peer, P, "malformed signature header"),
        Some(Ok(hex)) if !w.config.verify(&body, hex) => {
            return refuse(StatusCode::UNAUTHORIZED, peer, P, "wrong signature")
        }
        Some(Ok(_)) => {}
    }

    // 3. Delivery id: refuse replays.
    let delivery = match header(
        h,
        &["x-github-delivery", "x-forgejo-delivery", "x-gitea-delivery"],
    ) {
        Some(Ok(d)) if !d.is_empty() && d.len() <= MAX_DELIVERY_ID => d,
        Some(Ok(d)) if !d.is_empty() => {
            return refuse(StatusCode::BAD_REQUEST, peer, P, "delivery id too long")
        }
        _ => return refuse(StatusCode::BAD_REQUEST, peer, P, "missing delivery id"),
    };
    if !lock(&w.replay).insert(delivery) {
        return refuse(
            StatusCode::CONFLICT,
            peer,
            P,
            &format!("delivery {delivery} already seen (replay)"),
        );
    }

    // 4. Event: only pushes trigger a fetch.
    let event = match header(h, &["x-github-event", "x-forgejo-event", "x-gitea-event"]) {
        Some(Ok(e)) if !e.is_empty() => e,
        _ => return refuse(StatusCode::BAD_REQUEST, peer, P, "missing event type"),
    };
    if event != "push" {
        tracing::info!(%peer, delivery, event, "webhook: ignoring a non-push event");
        return empty(StatusCode::NO_CONTENT);
    }

    // 5. The push itself.
    let git_ref = match serde_json::from_slice::<serde_json::Value>(&body) {
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                peer,
                P,
                &format!("body is not JSON: {e}"),
            )
        }
        Ok(v) => match v.get("ref").and_then(|r| r.as_str()) {
            Some(r) => r.to_string(),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    peer,
                    P,
                    "push event without a \"ref\" string",
                )
            }
        },
    };
    match w.trigger.try_send(git_ref.clone()) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::debug!(
                delivery,
                "webhook: trigger queue full; a fetch is already pending"
            );
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                peer,
                P,
                "the controller is not accepting triggers",
            );
        }
    }
    tracing::info!(%peer, delivery, git_ref, "webhook: push received; fetching");
    text(StatusCode::ACCEPTED, "fetch triggered\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const SECRET: &[u8] = b"it's a secret to everybody";
    const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    struct Fixture {
        addr: SocketAddr,
        state: Arc<HttpState>,
        metrics: Arc<Metrics>,
        rx: mpsc::Receiver<String>,
        task: tokio::task::JoinHandle<Result<()>>,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start() -> Fixture {
        let (tx, rx) = mpsc::channel(16);
        let metrics = Arc::new(Metrics::new());
        let state =
            Arc::new(HttpState::new(metrics.clone()).with_webhook(WebhookConfig::new(SECRET).unwrap(), tx));
        let server = bind("127.0.0.1:0".parse().unwrap(), state.clone()).await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(server.run());
        Fixture {
            addr,
            state,
            metrics,
            rx,
            task,
        }
    }

    struct Reply {
        status: u16,
        headers: BTreeMap<String, String>,
        body: String,
    }

    /// One HTTP/1.1 request over a raw socket; `Connection: close`.
    async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut buf = vec![];
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        raw(addr, &head, body).await
    }

    async fn github(addr: SocketAddr, event: &str, delivery: &str, body: &[u8]) -> Reply {
        let sig = format!("sha256={}", sign(body));
        let h = [
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
        ];
        request(addr, "POST", "/webhook", &h, body).await
    }

    #[tokio::test]
    async fn healthz_follows_the_flag() {
        let f = start().await;
        let r = request(f.addr, "GET", "/healthz", &[], b"").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        f.state.set_healthy(false);
        assert_eq!(request(f.addr, "GET", "/healthz", &[], b"").await.status, 503);
        f.state.set_healthy(true);
        assert_eq!(request(f.addr, "GET", "/healthz", &[], b"").await.status, 200);
    }

    #[tokio::test]
    async fn routing_404_and_405() {
        let f = start().await;
        assert_eq!(request(f.addr, "GET", "/nope", &[], b"").await.status, 404);
        assert_eq!(request(f.addr, "GET", "/", &[], b"").await.status, 404);
        let r = request(f.addr, "POST", "/healthz", &[], b"").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.headers.get("allow").map(String::as_str), Some("GET, HEAD"));
        assert_eq!(request(f.addr, "DELETE", "/metrics", &[], b"").await.status, 405);
        let r = request(f.addr, "GET", "/webhook", &[], b"").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.headers.get("allow").map(String::as_str), Some("POST"));
        // Query strings do not change the route.
        assert_eq!(request(f.addr, "GET", "/healthz?x=1", &[], b"").await.status, 200);
    }

    #[tokio::test]
    async fn webhook_is_404_when_not_configured() {
        let state = Arc::new(HttpState::new(Arc::new(Metrics::new())));
        let server = bind("127.0.0.1:0".parse().unwrap(), state).await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(server.run());
        assert_eq!(github(addr, "push", "d-1", PUSH.as_bytes()).await.status, 404);
        task.abort();
    }

    /// A small parser of the text format: checks its structure and returns
    /// every sample as (name with labels, value).
    fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
        let mut help = HashSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').unwrap();
                assert!(!doc.is_empty());
                assert!(help.insert(name.to_string()), "two HELP lines for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(help.contains(name), "TYPE before HELP for {name}");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none());
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let (key, value) = line.rsplit_once(' ').unwrap();
                let name = key.split('{').next().unwrap();
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                    "{line}"
                );
                if let Some(labels) = key.strip_prefix(name) {
                    if !labels.is_empty() {
                        assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                        let inner = &labels[1..labels.len() - 1];
                        for pair in inner.split(',') {
                            let (k, v) = pair.split_once('=').unwrap();
                            assert!(!k.is_empty() && v.starts_with('"') && v.ends_with('"'), "{line}");
                        }
                    }
                }
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                    })
                    .unwrap_or(name);
                assert!(types.contains_key(family), "sample before its TYPE: {line}");
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
                assert!(
                    samples.insert(key.to_string(), v).is_none(),
                    "duplicate sample {key}"
                );
            }
        }
        samples
    }

    #[tokio::test]
    async fn metrics_render_and_parse() {
        let f = start().await;
        let m = &f.metrics;
        for v in [0.01, 0.05, 0.3, 0.3, 2.0, 59.0, 61.0, 1e6, -1.0] {
            m.observe_push_to_applied(v);
        }
        m.observe_push_to_applied(f64::NAN); // ignored
        m.observe_push_to_applied(f64::INFINITY); // ignored
        m.record_reconcile(ReconcileOutcome::Applied);
        m.record_reconcile(ReconcileOutcome::Applied);
        m.record_reconcile(ReconcileOutcome::Invalid);
        m.set_drifted_resources(3);
        m.set_connected_agents(2);
        m.inc_commits();
        m.inc_commits();

        let r = request(f.addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("text/plain; version=0.0.4")
        );
        let s = parse_exposition(&r.body);
        for name in [
            "warren_push_to_applied_seconds",
            "warren_reconciles_total",
            "warren_drifted_resources",
            "warren_connected_agents",
            "warren_commits_total",
        ] {
            assert!(r.body.contains(&format!("# HELP {name} ")), "{name}");
            assert!(r.body.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(r
            .body
            .contains("# TYPE warren_push_to_applied_seconds histogram\n"));

        // Buckets: in order, cumulative, +Inf last and equal to _count.
        let buckets: Vec<(String, f64)> = r
            .body
            .lines()
            .filter(|l| l.starts_with("warren_push_to_applied_seconds_bucket{"))
            .map(|l| {
                let le = l
                    .split("le=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string();
                (le, l.rsplit_once(' ').unwrap().1.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), PUSH_TO_APPLIED_BUCKETS.len() + 1);
        let mut prev_le = f64::NEG_INFINITY;
        let mut prev_n = 0.0;
        for (le, n) in &buckets {
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            assert!(le > prev_le && *n >= prev_n, "not cumulative: {buckets:?}");
            (prev_le, prev_n) = (le, *n);
        }
        assert_eq!(buckets.last().unwrap().0, "+Inf");
        let count = s["warren_push_to_applied_seconds_count"];
        assert_eq!(count, 9.0);
        assert_eq!(buckets.last().unwrap().1, count);
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"0.05\"}"], 3.0); // 0.01, 0.05, -1 → 0
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"0.5\"}"], 5.0);
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"60\"}"], 7.0);
        let sum = s["warren_push_to_applied_seconds_sum"];
        assert!(
            (sum - (0.01 + 0.05 + 0.6 + 2.0 + 59.0 + 61.0 + 1e6)).abs() < 1e-6,
            "{sum}"
        );

        assert_eq!(s["warren_reconciles_total{outcome=\"applied\"}"], 2.0);
        assert_eq!(s["warren_reconciles_total{outcome=\"invalid\"}"], 1.0);
        assert_eq!(s["warren_reconciles_total{outcome=\"failed\"}"], 0.0);
        assert_eq!(s["warren_drifted_resources"], 3.0);
        assert_eq!(s["warren_connected_agents"], 2.0);
        assert_eq!(s["warren_commits_total"], 2.0);
    }

    #[test]
    fn empty_metrics_parse_too() {
        let s = parse_exposition(&Metrics::new().render());
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"+Inf\"}"], 0.0);
        assert_eq!(s["warren_push_to_applied_seconds_count"], 0.0);
    }

    #[tokio::test]
    async fn signed_github_push_triggers_once() {
        let mut f = start().await;
        let r = github(
            f.addr,
            "push",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            PUSH.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(f.rx.try_recv().unwrap(), "refs/heads/main");
        assert!(f.rx.try_recv().is_err(), "triggered more than once");
    }

    #[tokio::test]
    async fn signed_gitea_and_forgejo_pushes_trigger() {
        let mut f = start().await;
        let body = br#"{"ref":"refs/heads/dev","before":"a","after":"b"}"#;
        let sig = sign(body);
        let h = [
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "g-1"),
            ("X-Gitea-Signature", sig.as_str()),
        ];
        let r = request(f.addr, "POST", "/webhook", &h, body).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(f.rx.try_recv().unwrap(), "refs/heads/dev");
        assert!(f.rx.try_recv().is_err());

        let upper = sig.to_ascii_uppercase();
        let h = [
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Delivery", "f-1"),
            ("X-Forgejo-Signature", upper.as_str()),
        ];
        let r = request(f.addr, "POST", "/webhook", &h, body).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(f.rx.try_recv().unwrap(), "refs/heads/dev");
    }

    #[tokio::test]
    async fn wrong_or_missing_signature_is_401() {
        let mut f = start().await;
        let body = PUSH.as_bytes();
        // Signed with another secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"not the secret").unwrap();
        mac.update(body);
        let other: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let good = sign(body);
        let tampered = sign(br#"{"ref":"refs/heads/evil"}"#);
        let cases: Vec<Vec<(&str, String)>> = vec![
            vec![("X-Hub-Signature-256", format!("sha256={other}"))],
            vec![("X-Hub-Signature-256", format!("sha256={tampered}"))],
            vec![("X-Hub-Signature-256", good.clone())], // no prefix
            vec![("X-Hub-Signature-256", "sha256=zz".into())],
            vec![("X-Hub-Signature-256", "sha256=".into())],
            vec![("X-Hub-Signature-256", format!("sha256={}", &good[..62]))],
            vec![("X-Gitea-Signature", other.clone())],
            vec![("X-Gitea-Signature", format!("sha256={good}"))],
            vec![("X-Forgejo-Signature", "".into())],
            vec![], // missing
        ];
        for (i, sig) in cases.into_iter().enumerate() {
            let delivery = format!("bad-{i}");
            let mut h = vec![
                ("X-GitHub-Event", "push".to_string()),
                ("X-GitHub-Delivery", delivery),
            ];
            h.extend(sig.into_iter());
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = request(f.addr, "POST", "/webhook", &h, body).await;
            assert_eq!(r.status, 401, "case {i}: {}", r.body);
        }
        let r = request(
            f.addr,
            "POST",
            "/webhook",
            &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "m")],
            body,
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (401, "missing signature\n"));
        assert!(f.rx.try_recv().is_err(), "a refused request triggered");
        // A refused delivery id is not remembered: the real one still works.
        assert_eq!(github(f.addr, "push", "bad-0", body).await.status, 202);
        assert!(f.rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn replayed_delivery_is_409() {
        let mut f = start().await;
        let body = PUSH.as_bytes();
        assert_eq!(github(f.addr, "push", "same-id", body).await.status, 202);
        let r = github(f.addr, "push", "same-id", body).await;
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(f.rx.try_recv().unwrap(), "refs/heads/main");
        assert!(f.rx.try_recv().is_err(), "the replay triggered");
        // The same id through another forge's header is still a replay.
        let sig = sign(body);
        let h = [
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "same-id"),
            ("X-Gitea-Signature", sig.as_str()),
        ];
        assert_eq!(request(f.addr, "POST", "/webhook", &h, body).await.status, 409);
        // Missing delivery id.
        let sig = format!("sha256={sig}");
        let h = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", sig.as_str())];
        assert_eq!(request(f.addr, "POST", "/webhook", &h, body).await.status, 400);
        assert!(f.rx.try_recv().is_err());
    }

    #[test]
    fn replay_memory_is_bounded() {
        let mut m = ReplayMemory::new(3);
        assert!(m.insert("a") && m.insert("b") && m.insert("c"));
        assert!(!m.insert("a"));
        assert!(m.insert("d")); // evicts "a"
        assert_eq!((m.seen.len(), m.order.len()), (3, 3));
        assert!(m.insert("a"));
        assert!(!m.insert("d"));
        let mut big = ReplayMemory::new(REPLAY_MEMORY);
        for i in 0..REPLAY_MEMORY * 3 {
            assert!(big.insert(&i.to_string()));
        }
        assert_eq!(big.seen.len(), REPLAY_MEMORY);
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let mut f = start().await;
        // Declared too large: refused from the header, before any body is read.
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\
             X-GitHub-Event: push\r\nX-GitHub-Delivery: big-1\r\nX-Hub-Signature-256: sha256={}\r\n\r\n",
            MAX_WEBHOOK_BODY + 1,
            sign(b"")
        );
        let r = raw(f.addr, &head, b"").await;
        assert_eq!(r.status, 413, "{}", r.body);

        // Exactly the limit is fine.
        let mut body = PUSH.as_bytes()[..PUSH.len() - 1].to_vec();
        body.extend_from_slice(b",\"pad\":\"");
        body.resize(MAX_WEBHOOK_BODY - 2, b'x');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), MAX_WEBHOOK_BODY);
        let r = github(f.addr, "push", "big-2", &body).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(f.rx.try_recv().unwrap(), "refs/heads/main");

        // No Content-Length (a streamed body): the read stops at the limit.
        body.push(b' ');
        let sig = format!("sha256={}", sign(&body));
        let req = Request::builder()
            .method("POST")
            .uri("/webhook")
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "big-3")
            .header("X-Hub-Signature-256", sig)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let r = handle(&f.state, req, "127.0.0.1:1".parse().unwrap()).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(f.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn signed_garbage_is_400() {
        let mut f = start().await;
        for (i, body) in [&b"{not json"[..], b"", b"[1,2]", br#"{"ref":7}"#, b"\xff\xfe"]
            .iter()
            .enumerate()
        {
            let r = github(f.addr, "push", &format!("garbage-{i}"), body).await;
            assert_eq!(r.status, 400, "case {i}: {}", r.body);
        }
        assert!(f.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn ping_and_other_events_do_not_trigger() {
        let mut f = start().await;
        let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        let r = github(f.addr, "ping", "ping-1", ping).await;
        assert_eq!(r.status, 204, "{}", r.body);
        let r = github(f.addr, "issues", "issue-1", PUSH.as_bytes()).await;
        assert_eq!(r.status, 204);
        // An unsigned ping is refused like anything else.
        let h = [("X-GitHub-Event", "ping"), ("X-GitHub-Delivery", "ping-2")];
        assert_eq!(request(f.addr, "POST", "/webhook", &h, ping).await.status, 401);
        // A signed request without an event header.
        let sig = format!("sha256={}", sign(PUSH.as_bytes()));
        let h = [
            ("X-GitHub-Delivery", "noevent-1"),
            ("X-Hub-Signature-256", sig.as_str()),
        ];
        assert_eq!(
            request(f.addr, "POST", "/webhook", &h, PUSH.as_bytes())
                .await
                .status,
            400
        );
        assert!(f.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn closed_trigger_channel_is_503_and_full_one_is_fine() {
        let (tx, rx) = mpsc::channel(1);
        let state =
            HttpState::new(Arc::new(Metrics::new())).with_webhook(WebhookConfig::new(SECRET).unwrap(), tx);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let push = |d: &str| {
            Request::builder()
                .method("POST")
                .uri("/webhook")
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", d)
                .header("X-Hub-Signature-256", format!("sha256={}", sign(PUSH.as_bytes())))
                .body(Full::new(Bytes::from_static(PUSH.as_bytes())))
                .unwrap()
        };
        assert_eq!(
            handle(&state, push("a"), peer).await.status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(
            handle(&state, push("b"), peer).await.status(),
            StatusCode::ACCEPTED
        ); // queue full
        drop(rx);
        assert_eq!(
            handle(&state, push("c"), peer).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn config_and_hex() {
        assert!(WebhookConfig::new(Vec::new()).is_err());
        let c = WebhookConfig::new(SECRET).unwrap();
        assert!(!format!("{c:?}").contains("secret to everybody"));
        assert!(c.verify(b"x", &sign(b"x")));
        assert!(!c.verify(b"x", &sign(b"y")));
        assert!(!c.verify(b"x", "é"));
        assert!(!c.verify(b"x", "abc"));
        assert_eq!(decode_hex("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(decode_hex(""), Some(vec![]));
    }

    #[tokio::test]
    async fn garbage_requests_do_not_kill_the_server() {
        let f = start().await;
        for junk in [
            &b"\x00\x01\x02\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"POST /webhook HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: \xff\r\n\r\n",
            b"",
        ] {
            let mut s = TcpStream::connect(f.addr).await.unwrap();
            let _ = s.write_all(junk).await;
            let _ = s.shutdown().await;
            let mut buf = vec![];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        }
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            HeaderValue::from_bytes(b"sha256=\xff").unwrap(),
        );
        assert_eq!(header(&h, &["x-hub-signature-256"]), Some(Err(())));
        assert_eq!(request(f.addr, "GET", "/healthz", &[], b"").await.status, 200);
    }
}
