//! `POST /webhook`: signed push and pull request events from GitHub, Gitea or
//! Forgejo. A push makes the repo watcher fetch at once; a pull request event
//! is parsed into a [`crate::forge::PrEvent`] for the serve loop.
//!
//! [`check`] is the whole verdict on a received request, as a pure function of
//! its headers, its body, the replay memory and the secret: no I/O, no clock,
//! no logging. [`Webhook::handle`] is the thin async shell around it: it reads
//! the body (bounded in size and time), calls [`check`], logs, and sends the
//! pushed ref to the repo watcher. Routing and the server live in the parent
//! module; this one must not learn about other paths.
//!
//! The checks run in this order: size, signature, delivery id (replay), event
//! type, JSON. Which forge sent the request is told first, from the headers
//! alone ([`crate::forge::events::forge_of`]: `X-Forgejo-Event` or
//! `X-Gitea-Event` means Gitea, which also sends GitHub's headers). It picks
//! the order in which the headers are read: for Gitea and Forgejo their own
//! `X-Forgejo-*`/`X-Gitea-*` headers first (the signature as bare hex), then
//! GitHub's; for GitHub, `X-Hub-Signature-256` (`sha256=<hex>`) first. The
//! first signature header present decides; a malformed one is not rescued by
//! another. Events: `push` gives its `ref`; `pull_request` gives a
//! [`crate::forge::PrEvent`], or is ignored for an action Warren does not act
//! on, or is refused (400, with the reason) when malformed; any other event is
//! acknowledged and ignored. A delivery id is remembered only once its signature verified,
//! so unsigned requests cannot fill the replay memory. Note that forges do not
//! sign the delivery header, only the body: replay protection stops a naive
//! resend, not an attacker who rewrites the header. The worst a replayed push
//! can do is make the controller fetch once more, which is idempotent.

use super::{empty, refuse, text};
use crate::forge::events::{forge_of, parse_pull_request};
use crate::forge::ForgeKind;
use anyhow::{bail, Result};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// The largest webhook body accepted (1 MiB); larger ones get 413.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
/// How many delivery ids are remembered for replay detection.
pub const REPLAY_MEMORY: usize = 4096;
/// Delivery ids longer than this are refused (400); forges send UUIDs.
const MAX_DELIVERY_ID: usize = 200;
/// How long a client may take to send a webhook body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The path, as it appears in refusal logs.
const PATH: &str = "/webhook";

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
pub struct ReplayMemory {
    cap: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl ReplayMemory {
    /// Remembers at most `cap` ids (at least one), forgetting the oldest first.
    pub fn new(cap: usize) -> Self {
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

/// Why a webhook request is refused: the HTTP status, and the reason that is
/// both logged and sent back as the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A push: fetch `git_ref` (for example `refs/heads/main`).
    Push { delivery: String, git_ref: String },
    /// A pull request was opened, updated, merged or closed.
    PullRequest {
        delivery: String,
        pr: crate::forge::PrEvent,
    },
    /// Another event (a ping, say), or a pull request action Warren does not
    /// act on (`edited`, `labeled`, …): acknowledged, nothing to do.
    Ignored { delivery: String, event: String },
}

/// The verdict on one received webhook request; see the module doc for the
/// order of the checks. Remembers the delivery id in `replay` once the
/// signature verified.
pub fn check(
    headers: &HeaderMap,
    body: &[u8],
    replay: &mut ReplayMemory,
    config: &WebhookConfig,
) -> Result<Event, Refusal> {
    // 1. Size (the reader stops at the limit already; this keeps the rule whole).
    if body.len() > MAX_WEBHOOK_BODY {
        return Err(over_limit());
    }
    let forge = forge_of(headers);
    // 2. Signature.
    verify_signature(forge, headers, body, config)?;
    // 3. Delivery id: refuse replays.
    let delivery = delivery_id(forge, headers)?;
    if !replay.insert(delivery) {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("delivery {delivery} already seen (replay)"),
        ));
    }
    let delivery = delivery.to_string();
    // 4. Event: pushes and pull requests; the rest is acknowledged.
    let event = match header(headers, &by_forge(forge, "event")) {
        Some(Ok(e)) if !e.is_empty() => e,
        _ => return Err(Refusal::new(StatusCode::BAD_REQUEST, "missing event type")),
    };
    // 5. The body of the events Warren reads.
    match event {
        "push" => {
            let git_ref = pushed_ref(body)?;
            Ok(Event::Push { delivery, git_ref })
        }
        // Gitea names the sync kind `pull_request_sync` in its event-type
        // header; taken here too in case a version sends it as the event.
        "pull_request" | "pull_request_sync" => match parse_pull_request(forge, body) {
            Ok(Some(pr)) => Ok(Event::PullRequest { delivery, pr }),
            Ok(None) => Ok(Event::Ignored {
                delivery,
                event: event.to_string(),
            }),
            Err(reason) => Err(Refusal::new(StatusCode::BAD_REQUEST, reason)),
        },
        _ => Ok(Event::Ignored {
            delivery,
            event: event.to_string(),
        }),
    }
}

/// The names of one header (`event`, `delivery`) in the order they are read
/// for `forge`: its own first. Signatures: [`verify_signature`].
fn by_forge(forge: ForgeKind, what: &str) -> [String; 3] {
    let prefixes = match forge {
        ForgeKind::Gitea => ["x-forgejo", "x-gitea", "x-github"],
        ForgeKind::Github => ["x-github", "x-forgejo", "x-gitea"],
    };
    prefixes.map(|p| format!("{p}-{what}"))
}

fn over_limit() -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body is over the {MAX_WEBHOOK_BODY}-byte limit"),
    )
}

/// The first of `names` present in `headers`; `Err` if it is not text.
fn header<'a, S: AsRef<str>>(headers: &'a HeaderMap, names: &[S]) -> Option<Result<&'a str, ()>> {
    names
        .iter()
        .find_map(|n| headers.get(n.as_ref()))
        .map(|v| v.to_str().map(str::trim).map_err(|_| ()))
}

/// From GitHub: its prefixed header first, then Forgejo's, then Gitea's.
/// From Gitea or Forgejo: Forgejo's, then Gitea's (bare hex), then GitHub's
/// prefixed one. The first present decides.
fn verify_signature(
    forge: ForgeKind,
    headers: &HeaderMap,
    body: &[u8],
    config: &WebhookConfig,
) -> Result<(), Refusal> {
    let github = || match header(headers, &["x-hub-signature-256"]) {
        Some(Ok(v)) => match v.strip_prefix("sha256=") {
            Some(hex) => Some(Ok(hex)),
            None => Some(Err(())),
        },
        other => other,
    };
    let bare = || header(headers, &["x-forgejo-signature", "x-gitea-signature"]);
    let sig = match forge {
        ForgeKind::Github => github().or_else(bare),
        ForgeKind::Gitea => bare().or_else(github),
    };
    let unauthorized = |reason| Err(Refusal::new(StatusCode::UNAUTHORIZED, reason));
    match sig {
        None => unauthorized("missing signature"),
        Some(Err(())) => unauthorized("malformed signature header"),
        Some(Ok(hex)) if !config.verify(body, hex) => unauthorized("wrong signature"),
        Some(Ok(_)) => Ok(()),
    }
}

fn delivery_id(forge: ForgeKind, headers: &HeaderMap) -> Result<&str, Refusal> {
    match header(headers, &by_forge(forge, "delivery")) {
        Some(Ok(d)) if !d.is_empty() && d.len() <= MAX_DELIVERY_ID => Ok(d),
        Some(Ok(d)) if !d.is_empty() => Err(Refusal::new(StatusCode::BAD_REQUEST, "delivery id too long")),
        _ => Err(Refusal::new(StatusCode::BAD_REQUEST, "missing delivery id")),
    }
}

fn pushed_ref(body: &[u8]) -> Result<String, Refusal> {
    let v = serde_json::from_slice::<serde_json::Value>(body)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    match v.get("ref").and_then(|r| r.as_str()) {
        Some(r) => Ok(r.to_string()),
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "push event without a \"ref\" string",
        )),
    }
}

/// A declared oversize body is refused before any of it is read; an
/// undeclared one is read up to the limit, within [`BODY_TIMEOUT`].
async fn read_body<B>(headers: &HeaderMap, body: B) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_WEBHOOK_BODY as u64 {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body of {len} bytes is over the {MAX_WEBHOOK_BODY}-byte limit"),
            ));
        }
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_WEBHOOK_BODY).collect()).await {
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(over_limit()),
        Ok(Err(e)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// The configured webhook: its secret, where pushes go, what it remembers.
#[derive(Debug)]
pub struct Webhook {
    config: WebhookConfig,
    trigger: mpsc::Sender<String>,
    replay: Mutex<ReplayMemory>,
    /// Where pull request events go (the forge worker), when a forge is set.
    prs: Option<std::sync::mpsc::SyncSender<crate::serve::forge::ForgeMsg>>,
}

impl Webhook {
    /// Each valid push sends its `ref` on `trigger`.
    pub fn new(config: WebhookConfig, trigger: mpsc::Sender<String>) -> Self {
        Webhook {
            config,
            trigger,
            replay: Mutex::new(ReplayMemory::new(REPLAY_MEMORY)),
            prs: None,
        }
    }

    /// Send pull request events to the forge worker.
    pub fn with_prs(mut self, prs: std::sync::mpsc::SyncSender<crate::serve::forge::ForgeMsg>) -> Self {
        self.prs = Some(prs);
        self
    }

    /// Answer one `POST /webhook`. Generic over the body so tests can call it
    /// directly.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let verdict = match read_body(&parts.headers, body).await {
            // A panic while holding the lock cannot leave the replay memory
            // half-updated in a way that matters; keep serving.
            Ok(body) => check(
                &parts.headers,
                &body,
                &mut self.replay.lock().unwrap_or_else(PoisonError::into_inner),
                &self.config,
            ),
            Err(refusal) => Err(refusal),
        };
        match verdict {
            Err(r) => refuse(r.status, peer, PATH, &r.reason),
            Ok(Event::Ignored { delivery, event }) => {
                tracing::info!(%peer, delivery, event, "webhook: ignoring an event Warren does not act on");
                empty(StatusCode::NO_CONTENT)
            }
            Ok(Event::Push { delivery, git_ref }) => self.fetch(peer, &delivery, git_ref),
            Ok(Event::PullRequest { delivery, pr }) => {
                tracing::info!(
                    %peer,
                    delivery,
                    forge = pr.forge.as_str(),
                    repo = pr.repo,
                    number = pr.number,
                    action = ?pr.action,
                    head = pr.head_sha,
                    "webhook: pull request event"
                );
                self.pull_request(pr)
            }
        }
    }

    /// Hand a verified pull request event to the forge worker. Without a
    /// forge configured it is acknowledged and dropped; a full queue (the
    /// worker is behind by 64 events) drops it too: the next event for that
    /// PR plans its newest head anyway.
    fn pull_request(&self, pr: crate::forge::PrEvent) -> Response<Full<Bytes>> {
        let Some(tx) = &self.prs else {
            return empty(StatusCode::NO_CONTENT);
        };
        match tx.try_send(crate::serve::forge::ForgeMsg::Pr(pr)) {
            Ok(()) => text(StatusCode::ACCEPTED, "pull request queued\n"),
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                tracing::warn!("webhook: forge queue full; dropping a pull request event");
                text(StatusCode::ACCEPTED, "forge busy; dropped\n")
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "the forge worker has stopped\n")
            }
        }
    }

    /// Hand a verified push to the repo watcher. A full queue is fine (a
    /// fetch is already pending); a closed one means the loop has stopped.
    fn fetch(&self, peer: SocketAddr, delivery: &str, git_ref: String) -> Response<Full<Bytes>> {
        match self.trigger.try_send(git_ref.clone()) {
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
                    PATH,
                    "the controller is not accepting triggers",
                );
            }
        }
        tracing::info!(%peer, delivery, git_ref, "webhook: push received; fetching");
        text(StatusCode::ACCEPTED, "fetch triggered\n")
    }
}

#[cfg(test)]
mod conformance;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::test_support::{github, raw, request, sign, start, PUSH, SECRET};
    use super::super::{handle, HttpState, Metrics};
    use super::*;
    use hyper::header::HeaderValue;
    use std::sync::Arc;

    // ---- over HTTP, through the server ----

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

    // ---- the pure check, no server ----

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// A GitHub request for `body`, signed with the test secret.
    fn signed(event: &str, delivery: &str, body: &[u8]) -> HeaderMap {
        let sig = format!("sha256={}", sign(body));
        headers(&[
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
        ])
    }

    fn verdict(h: &HeaderMap, body: &[u8], replay: &mut ReplayMemory) -> Result<Event, Refusal> {
        check(h, body, replay, &WebhookConfig::new(SECRET).unwrap())
    }

    fn refused(status: StatusCode, reason: &str) -> Result<Event, Refusal> {
        Err(Refusal::new(status, reason))
    }

    #[test]
    fn pushes_from_each_forge_are_accepted_with_ref_and_delivery() {
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let push = |d: &str| Event::Push {
            delivery: d.into(),
            git_ref: "refs/heads/main".into(),
        };
        let body = PUSH.as_bytes();
        assert_eq!(
            verdict(&signed("push", "gh-1", body), body, &mut m),
            Ok(push("gh-1"))
        );
        let sig = sign(body);
        let gitea = headers(&[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "g-1"),
            ("X-Gitea-Signature", &sig),
        ]);
        assert_eq!(verdict(&gitea, body, &mut m), Ok(push("g-1")));
        let upper = sig.to_ascii_uppercase();
        let forgejo = headers(&[
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Delivery", "f-1"),
            ("X-Forgejo-Signature", &upper),
        ]);
        assert_eq!(verdict(&forgejo, body, &mut m), Ok(push("f-1")));
        let ping = br#"{"zen":"hi"}"#;
        assert_eq!(
            verdict(&signed("ping", "p-1", ping), ping, &mut m),
            Ok(Event::Ignored {
                delivery: "p-1".into(),
                event: "ping".into()
            })
        );
    }

    #[test]
    fn each_refusal_has_its_status_and_reason() {
        use StatusCode as S;
        let body = PUSH.as_bytes();
        let good = sign(body);
        let prefixed = format!("sha256={good}");
        let long = "d".repeat(MAX_DELIVERY_ID + 1);
        let big = vec![b' '; MAX_WEBHOOK_BODY + 1];
        let mut non_text = signed("push", "nt", body);
        non_text.insert(
            "x-hub-signature-256",
            HeaderValue::from_bytes(b"sha256=\xff").unwrap(),
        );
        assert_eq!(header(&non_text, &["x-hub-signature-256"]), Some(Err(())));
        let cases: Vec<(HeaderMap, &[u8], Result<Event, Refusal>)> = vec![
            (
                signed("push", "big", &big),
                &big,
                refused(S::PAYLOAD_TOO_LARGE, "body is over the 1048576-byte limit"),
            ),
            (
                headers(&[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "a")]),
                body,
                refused(S::UNAUTHORIZED, "missing signature"),
            ),
            (
                headers(&[("X-GitHub-Delivery", "a"), ("X-Hub-Signature-256", &good)]),
                body,
                refused(S::UNAUTHORIZED, "malformed signature header"),
            ),
            (
                non_text,
                body,
                refused(S::UNAUTHORIZED, "malformed signature header"),
            ),
            (
                signed("push", "a", b"another body"),
                body,
                refused(S::UNAUTHORIZED, "wrong signature"),
            ),
            (
                headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &prefixed)]),
                body,
                refused(S::BAD_REQUEST, "missing delivery id"),
            ),
            (
                signed("push", "", body),
                body,
                refused(S::BAD_REQUEST, "missing delivery id"),
            ),
            (
                signed("push", &long, body),
                body,
                refused(S::BAD_REQUEST, "delivery id too long"),
            ),
            (
                headers(&[("X-GitHub-Delivery", "e"), ("X-Hub-Signature-256", &prefixed)]),
                body,
                refused(S::BAD_REQUEST, "missing event type"),
            ),
            (
                signed("push", "r", br#"{"ref":7}"#),
                br#"{"ref":7}"#,
                refused(S::BAD_REQUEST, "push event without a \"ref\" string"),
            ),
        ];
        for (i, (h, b, want)) in cases.into_iter().enumerate() {
            let mut m = ReplayMemory::new(REPLAY_MEMORY);
            assert_eq!(verdict(&h, b, &mut m), want, "case {i}");
        }
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let e = verdict(&signed("push", "j", b"{not json"), b"{not json", &mut m).unwrap_err();
        assert_eq!(e.status, S::BAD_REQUEST);
        assert!(e.reason.starts_with("body is not JSON: "), "{}", e.reason);
        let exact = "d".repeat(MAX_DELIVERY_ID);
        assert!(verdict(&signed("push", &exact, body), body, &mut m).is_ok());
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        use StatusCode as S;
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let junk = b"{not json";
        let big = vec![b' '; MAX_WEBHOOK_BODY + 1];
        // Size before signature.
        let e = verdict(&headers(&[]), &big, &mut m).unwrap_err();
        assert_eq!(e.status, S::PAYLOAD_TOO_LARGE);
        // Signature before delivery id, event and JSON.
        assert_eq!(
            verdict(&headers(&[]), junk, &mut m),
            refused(S::UNAUTHORIZED, "missing signature")
        );
        // Delivery id before event and JSON.
        let sig = format!("sha256={}", sign(junk));
        let h = headers(&[("X-Hub-Signature-256", &sig)]);
        assert_eq!(
            verdict(&h, junk, &mut m),
            refused(S::BAD_REQUEST, "missing delivery id")
        );
        // Replay before event: the id is remembered even though the event is missing.
        let h = headers(&[("X-Hub-Signature-256", &sig), ("X-GitHub-Delivery", "x")]);
        assert_eq!(
            verdict(&h, junk, &mut m),
            refused(S::BAD_REQUEST, "missing event type")
        );
        assert_eq!(
            verdict(&signed("ping", "x", junk), junk, &mut m),
            refused(S::CONFLICT, "delivery x already seen (replay)")
        );
        // Event before JSON: an event Warren does not read is never parsed.
        assert!(matches!(
            verdict(&signed("issues", "y", junk), junk, &mut m),
            Ok(Event::Ignored { .. })
        ));
    }

    #[test]
    fn only_verified_deliveries_are_remembered() {
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let body = PUSH.as_bytes();
        let unsigned = headers(&[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "a")]);
        assert!(verdict(&unsigned, body, &mut m).is_err());
        assert!(verdict(&signed("push", "a", b"x"), body, &mut m).is_err());
        assert!(verdict(&signed("push", "a", body), body, &mut m).is_ok());
        let replay = refused(StatusCode::CONFLICT, "delivery a already seen (replay)");
        assert_eq!(verdict(&signed("push", "a", body), body, &mut m), replay);
        // The same id through another forge's header is still a replay.
        let sig = sign(body);
        let gitea = headers(&[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "a"),
            ("X-Gitea-Signature", &sig),
        ]);
        assert_eq!(verdict(&gitea, body, &mut m), replay);
    }

    #[test]
    fn github_signature_header_wins_then_forgejo_then_gitea() {
        let body = PUSH.as_bytes();
        let good = sign(body);
        let bad = sign(b"other");
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let with = |sigs: &[(&str, &str)], d: &str| {
            let mut h = headers(&[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", d)]);
            for (k, v) in headers(sigs) {
                h.insert(k.unwrap(), v);
            }
            h
        };
        // A malformed GitHub header is not rescued by a valid Gitea one.
        let h = with(
            &[("X-Hub-Signature-256", &good), ("X-Gitea-Signature", &good)],
            "1",
        );
        assert_eq!(
            verdict(&h, body, &mut m),
            refused(StatusCode::UNAUTHORIZED, "malformed signature header")
        );
        let h = with(
            &[("X-Forgejo-Signature", &bad), ("X-Gitea-Signature", &good)],
            "2",
        );
        assert_eq!(
            verdict(&h, body, &mut m),
            refused(StatusCode::UNAUTHORIZED, "wrong signature")
        );
        let h = with(
            &[("X-Forgejo-Signature", &good), ("X-Gitea-Signature", &bad)],
            "3",
        );
        assert!(verdict(&h, body, &mut m).is_ok());
    }

    // ---- pull request events ----

    use crate::forge::events::fixtures::{self, HEAD, MERGED, TEST_MERGE};
    use crate::forge::{ForgeKind, PrAction, PrEvent};

    /// The headers Gitea sends with a delivery: its own, the Gogs copies and
    /// GitHub's (event, delivery, both signature forms). Forgejo adds its own.
    fn gitea_headers(event: &str, delivery: &str, body: &[u8], forgejo: bool) -> HeaderMap {
        let hex = sign(body);
        let prefixed = format!("sha256={hex}");
        let mut pairs = vec![
            ("X-Gitea-Event", event),
            ("X-Gitea-Event-Type", event),
            ("X-Gitea-Delivery", delivery),
            ("X-Gitea-Signature", hex.as_str()),
            ("X-Gogs-Event", event),
            ("X-Gogs-Delivery", delivery),
            ("X-Gogs-Signature", hex.as_str()),
            ("X-GitHub-Event", event),
            ("X-GitHub-Event-Type", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", prefixed.as_str()),
            ("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000"),
        ];
        if forgejo {
            pairs.extend([
                ("X-Forgejo-Event", event),
                ("X-Forgejo-Event-Type", event),
                ("X-Forgejo-Delivery", delivery),
                ("X-Forgejo-Signature", hex.as_str()),
            ]);
        }
        headers(&pairs)
    }

    fn pr(forge: ForgeKind, action: PrAction) -> PrEvent {
        let (number, head_ref, repo) = match forge {
            ForgeKind::Github => (7, "wg-keys", "ana/home"),
            ForgeKind::Gitea => (3, "nft", "bo/lan"),
        };
        PrEvent {
            forge,
            action,
            number,
            head_sha: HEAD.into(),
            head_ref: head_ref.into(),
            base_ref: "main".into(),
            repo: repo.into(),
        }
    }

    #[test]
    fn github_pull_requests_become_events() {
        use PrAction as A;
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let merged = A::Merged {
            merge_commit: MERGED.into(),
        };
        let cases = [
            ("opened", false, A::Opened),
            ("reopened", false, A::Opened),
            ("ready_for_review", false, A::Opened),
            ("synchronize", false, A::Synchronized),
            ("closed", true, merged),
            // Not merged, though GitHub filled merge_commit_sha (its test merge).
            ("closed", false, A::Closed),
        ];
        for (i, (action, was_merged, want)) in cases.into_iter().enumerate() {
            let body = fixtures::github(action, was_merged).to_string();
            assert!(body.contains(TEST_MERGE) != was_merged);
            let d = format!("gh-pr-{i}");
            assert_eq!(
                verdict(
                    &signed("pull_request", &d, body.as_bytes()),
                    body.as_bytes(),
                    &mut m
                ),
                Ok(Event::PullRequest {
                    delivery: d,
                    pr: pr(ForgeKind::Github, want)
                }),
                "{action}"
            );
        }
        for (i, action) in [
            "edited",
            "labeled",
            "assigned",
            "review_requested",
            "converted_to_draft",
        ]
        .into_iter()
        .enumerate()
        {
            let body = fixtures::github(action, false).to_string();
            let d = format!("gh-ign-{i}");
            assert_eq!(
                verdict(
                    &signed("pull_request", &d, body.as_bytes()),
                    body.as_bytes(),
                    &mut m
                ),
                Ok(Event::Ignored {
                    delivery: d,
                    event: "pull_request".into()
                }),
                "{action}"
            );
        }
    }

    #[test]
    fn gitea_and_forgejo_pull_requests_are_told_apart_from_github_headers() {
        use PrAction as A;
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let cases = [
            ("opened", false, A::Opened),
            ("reopened", false, A::Opened),
            ("synchronized", false, A::Synchronized),
            (
                "closed",
                true,
                A::Merged {
                    merge_commit: MERGED.into(),
                },
            ),
            ("closed", false, A::Closed),
        ];
        for forgejo in [false, true] {
            for (i, (action, was_merged, want)) in cases.clone().into_iter().enumerate() {
                let body = fixtures::gitea(action, was_merged).to_string();
                let d = format!("gt-{forgejo}-{i}");
                // X-GitHub-Event is there too; the forge is still Gitea.
                let h = gitea_headers("pull_request", &d, body.as_bytes(), forgejo);
                assert_eq!(
                    verdict(&h, body.as_bytes(), &mut m),
                    Ok(Event::PullRequest {
                        delivery: d,
                        pr: pr(ForgeKind::Gitea, want)
                    }),
                    "{action} forgejo={forgejo}"
                );
            }
            let body = fixtures::gitea("label_updated", false).to_string();
            let d = format!("gt-{forgejo}-label");
            let h = gitea_headers("pull_request", &d, body.as_bytes(), forgejo);
            assert!(matches!(
                verdict(&h, body.as_bytes(), &mut m),
                Ok(Event::Ignored { event, .. }) if event == "pull_request"
            ));
        }
        // Gitea's own delivery header wins over the GitHub copy.
        let body = fixtures::gitea("opened", false).to_string();
        let mut h = gitea_headers("pull_request", "gitea-id", body.as_bytes(), false);
        h.insert("x-github-delivery", HeaderValue::from_static("github-id"));
        assert!(matches!(
            verdict(&h, body.as_bytes(), &mut m),
            Ok(Event::PullRequest { delivery, .. }) if delivery == "gitea-id"
        ));
        // So does its event header.
        let mut h = gitea_headers("pull_request", "ev-1", body.as_bytes(), false);
        h.insert("x-github-event", HeaderValue::from_static("push"));
        assert!(matches!(
            verdict(&h, body.as_bytes(), &mut m),
            Ok(Event::PullRequest { .. })
        ));
        // The sync kind as the event name is read as a pull request too.
        let sync = fixtures::gitea("synchronized", false).to_string();
        let h = gitea_headers("pull_request_sync", "sync-1", sync.as_bytes(), false);
        assert!(matches!(
            verdict(&h, sync.as_bytes(), &mut m),
            Ok(Event::PullRequest { pr, .. }) if pr.action == A::Synchronized
        ));
        // A Gitea pull request comment arrives as issue_comment: ignored.
        let h = gitea_headers("issue_comment", "ic-1", body.as_bytes(), false);
        assert!(matches!(
            verdict(&h, body.as_bytes(), &mut m),
            Ok(Event::Ignored { event, .. }) if event == "issue_comment"
        ));
    }

    #[test]
    fn gitea_signature_headers_come_first_for_gitea_deliveries() {
        let body = fixtures::gitea("opened", false).to_string();
        let body = body.as_bytes();
        let good = sign(body);
        let bad = sign(b"other");
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let with = |sigs: &[(&str, String)], d: &str| {
            let mut h = headers(&[
                ("X-Gitea-Event", "pull_request"),
                ("X-GitHub-Event", "pull_request"),
                ("X-Gitea-Delivery", d),
            ]);
            for (k, v) in sigs {
                h.insert(
                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let wrong = refused(StatusCode::UNAUTHORIZED, "wrong signature");
        // Bare hex in Gitea's header; GitHub's prefixed header alone also works.
        assert!(verdict(&with(&[("X-Gitea-Signature", good.clone())], "1"), body, &mut m).is_ok());
        assert!(verdict(&with(&[("X-Forgejo-Signature", good.clone())], "2"), body, &mut m).is_ok());
        let h = with(&[("X-Hub-Signature-256", format!("sha256={good}"))], "3");
        assert!(verdict(&h, body, &mut m).is_ok());
        // Gitea's own header decides: a wrong one is not rescued by GitHub's.
        let h = with(
            &[
                ("X-Gitea-Signature", bad.clone()),
                ("X-Hub-Signature-256", format!("sha256={good}")),
            ],
            "4",
        );
        assert_eq!(verdict(&h, body, &mut m), wrong);
        // And a good one is not spoiled by a stale GitHub copy.
        let h = with(
            &[
                ("X-Gitea-Signature", good.clone()),
                ("X-Hub-Signature-256", format!("sha256={bad}")),
            ],
            "5",
        );
        assert!(verdict(&h, body, &mut m).is_ok());
        // Forgejo's before Gitea's.
        let h = with(
            &[
                ("X-Forgejo-Signature", bad.clone()),
                ("X-Gitea-Signature", good.clone()),
            ],
            "6",
        );
        assert_eq!(verdict(&h, body, &mut m), wrong);
        // Gitea without a secret sends empty signature headers.
        let h = with(
            &[
                ("X-Gitea-Signature", String::new()),
                ("X-Hub-Signature-256", String::new()),
            ],
            "7",
        );
        assert_eq!(verdict(&h, body, &mut m), wrong);
        // The prefix is GitHub's only.
        let h = with(&[("X-Gitea-Signature", format!("sha256={good}"))], "8");
        assert_eq!(verdict(&h, body, &mut m), wrong);
    }

    #[test]
    fn malformed_pull_requests_are_400_with_the_reason() {
        let mut m = ReplayMemory::new(REPLAY_MEMORY);
        let mut no_head = fixtures::github("synchronize", false);
        no_head["pull_request"].as_object_mut().unwrap().remove("head");
        let mut merged_no_sha = fixtures::gitea("closed", true);
        merged_no_sha["pull_request"]["merge_commit_sha"] = serde_json::Value::Null;
        let cases = [
            (
                no_head.to_string(),
                "pull_request event without pull_request.head.sha",
            ),
            (
                merged_no_sha.to_string(),
                "pull_request event without pull_request.merge_commit_sha",
            ),
            (r#"{"number":1}"#.to_string(), "pull_request event without action"),
            ("[]".to_string(), "pull_request body is not a JSON object"),
        ];
        for (i, (body, reason)) in cases.iter().enumerate() {
            let d = format!("bad-pr-{i}");
            assert_eq!(
                verdict(
                    &signed("pull_request", &d, body.as_bytes()),
                    body.as_bytes(),
                    &mut m
                ),
                refused(StatusCode::BAD_REQUEST, reason),
                "case {i}"
            );
        }
        let e = verdict(&signed("pull_request", "nj", b"{"), b"{", &mut m).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.reason.starts_with("pull_request body is not JSON: "),
            "{}",
            e.reason
        );
        // A malformed body is refused only after the signature: unsigned is 401.
        let h = headers(&[("X-GitHub-Event", "pull_request"), ("X-GitHub-Delivery", "u")]);
        assert_eq!(
            verdict(&h, b"{", &mut m),
            refused(StatusCode::UNAUTHORIZED, "missing signature")
        );
    }

    #[tokio::test]
    async fn pull_requests_over_http() {
        let mut f = start().await;
        let body = fixtures::github("opened", false).to_string();
        let r = github(f.addr, "pull_request", "h-1", body.as_bytes()).await;
        assert_eq!(r.status, 204, "{}", r.body);
        assert!(f.rx.try_recv().is_err(), "a pull request triggered a fetch");
        let body = fixtures::gitea("synchronized", false).to_string();
        let sig = sign(body.as_bytes());
        let h = [
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", "h-2"),
            ("X-Gitea-Signature", sig.as_str()),
            ("X-GitHub-Event", "pull_request"),
        ];
        let r = request(f.addr, "POST", "/webhook", &h, body.as_bytes()).await;
        assert_eq!(r.status, 204, "{}", r.body);
        let r = github(f.addr, "pull_request", "h-3", br#"{"action":"opened"}"#).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "pull_request event without number or pull_request.number\n")
        );
        assert!(f.rx.try_recv().is_err());
    }
}
