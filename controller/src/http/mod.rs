//! The controller's HTTP surface: `GET /healthz`, `GET /metrics` (Prometheus
//! text format 0.0.4) and `POST /webhook` (signed push events from GitHub,
//! Gitea or Forgejo that make the repo watcher fetch at once).
//!
//! Plain hyper 1 over tokio, HTTP/1.1 only. Nothing here panics on any input;
//! every refusal is logged with `tracing` and a reason.
//!
//! This module owns the server and the routing only. The metrics themselves
//! are [`crate::metrics`]; the webhook's checks are [`webhook`], where the
//! order of the checks is documented. Nothing here decides what a request
//! means beyond its method and path.
//!
//! Status codes:
//!
//! | request                                              | status |
//! |------------------------------------------------------|--------|
//! | `GET`/`HEAD /healthz`, healthy                       | 200 `ok\n` |
//! | `GET`/`HEAD /healthz`, unhealthy                     | 503 `unhealthy\n` |
//! | `GET`/`HEAD /metrics`                                | 200, `text/plain; version=0.0.4` |
//! | `POST /webhook`, valid push                          | 202 (the fetch happens asynchronously) |
//! | `POST /webhook`, valid pull request event            | 202 queued for the forge worker (204 without `--forge`; ignored actions 204) |
//! | `POST /webhook`, malformed pull request payload      | 400, naming the missing field |
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

mod webhook;

#[cfg(test)]
mod test_support;

use crate::metrics::Metrics;
pub use webhook::WebhookConfig;

use anyhow::{bail, Context, Result};
use http_body_util::Full;
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use webhook::Webhook;

/// How long a client may take to send the request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;

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
        self.webhook = Some(Webhook::new(config, trigger));
        self
    }

    /// Pull request events go to the forge worker (after [`HttpState::with_webhook`]).
    pub fn with_prs(mut self, prs: std::sync::mpsc::SyncSender<crate::serve::forge::ForgeMsg>) -> Self {
        self.webhook = self.webhook.map(|w| w.with_prs(prs));
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
            Some(w) => w.handle(req, peer).await,
        },
        _ => refuse(StatusCode::NOT_FOUND, peer, &path, "not found"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::test_support::{github, request, start, PUSH};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

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

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format() {
        let f = start().await;
        f.metrics
            .record_reconcile(crate::metrics::ReconcileOutcome::Applied);
        f.metrics.set_connected_agents(2);
        let r = request(f.addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(r.body, f.metrics.render());
        assert!(r
            .body
            .contains("warren_reconciles_total{outcome=\"applied\"} 1\n"));
        assert!(r.body.contains("warren_connected_agents 2\n"));
        let r = request(f.addr, "HEAD", "/metrics", &[], b"").await;
        assert_eq!((r.status, r.body.as_str()), (200, ""));
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
        assert_eq!(request(f.addr, "GET", "/healthz", &[], b"").await.status, 200);
    }
}
