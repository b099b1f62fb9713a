//! What the HTTP tests share: a server on a free port with a webhook, and
//! raw HTTP/1.1 requests over a socket (so the tests see exactly what a forge
//! or Prometheus would). Test code only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{bind, HttpState, Metrics, WebhookConfig};
use anyhow::Result;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub const SECRET: &[u8] = b"it's a secret to everybody";
pub const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Fixture {
    pub addr: SocketAddr,
    pub state: Arc<HttpState>,
    pub metrics: Arc<Metrics>,
    pub rx: mpsc::Receiver<String>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> Fixture {
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

pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// One HTTP/1.1 request over a raw socket; `Connection: close`.
pub async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
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

pub async fn request(
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

pub async fn github(addr: SocketAddr, event: &str, delivery: &str, body: &[u8]) -> Reply {
    let sig = format!("sha256={}", sign(body));
    let h = [
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", &sig),
    ];
    request(addr, "POST", "/webhook", &h, body).await
}
