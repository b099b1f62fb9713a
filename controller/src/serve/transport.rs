//! Agent sessions over SSH (warren-wire). The controller dials agents that
//! have `agent.address` in the YAML (pinning `agent.identity` as their host
//! key) and accepts agents that dial `--listen` (authorizing them by the
//! `agent.identity` the YAML lists). After `Hello` both directions are the
//! same: sessions turn messages into [`Event`]s for the main loop.
//!
//! It moves messages and decides nothing about them: what to send, and
//! what a report means, is the rollout's business.

use super::{Event, FromAgent, Options, Outgoing};
use anyhow::Result;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use warren_wire::Message;

#[derive(Default, Debug)]
struct Inner {
    /// Agent identity -> host name.
    identities: BTreeMap<[u8; 32], String>,
    /// Hosts to dial: address and expected host key.
    dial: BTreeMap<String, (SocketAddr, VerifyingKey)>,
}

/// Who may connect and whom to dial, from the last good config.
#[derive(Clone, Default, Debug)]
pub struct Agents(Arc<RwLock<Inner>>);

impl Agents {
    pub fn update(&self, cfg: &warren_model::Config) {
        let mut inner = Inner::default();
        for h in cfg.hosts.values() {
            let Some(a) = &h.agent else { continue };
            let Some(key) = a
                .identity
                .as_deref()
                .and_then(|k| warren_wire::parse_public_key(k).ok())
            else {
                continue;
            };
            inner.identities.insert(key.to_bytes(), h.name.clone());
            if let Some((ip, port)) = a.address {
                inner
                    .dial
                    .insert(h.name.clone(), (SocketAddr::from((ip, port)), key));
            }
        }
        if let Ok(mut g) = self.0.write() {
            *g = inner;
        }
    }
    fn host_of(&self, k: &VerifyingKey) -> Option<String> {
        self.0.read().ok()?.identities.get(&k.to_bytes()).cloned()
    }
    fn dial_targets(&self) -> BTreeMap<String, (SocketAddr, VerifyingKey)> {
        self.0.read().map(|g| g.dial.clone()).unwrap_or_default()
    }
}

static SESSION: AtomicU64 = AtomicU64::new(1);

pub async fn start(opts: &Options, key: &SigningKey, tx: mpsc::Sender<Event>) -> Result<Agents> {
    let agents = Agents::default();
    if let Some(addr) = opts.listen {
        let a = agents.clone();
        let authorize = move |k: &VerifyingKey| a.host_of(k);
        let listener = warren_wire::listen(addr, key.clone(), authorize).await?;
        tracing::info!(%addr, "listening for agents");
        tokio::spawn(accept_loop(listener, tx.clone()));
    }
    tokio::spawn(dial_manager(agents.clone(), key.clone(), tx));
    Ok(agents)
}

/// Agents that dial us: one session task each.
async fn accept_loop(listener: warren_wire::Listener, tx: mpsc::Sender<Event>) {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                let t = tx.clone();
                tokio::spawn(async move { session(conn, None, t).await });
            }
            Err(e) => {
                tracing::error!("agent listener stopped: {e}");
                return;
            }
        }
    }
}

/// Keep one session per dialable agent (as the last good config lists
/// them), each redialled with backoff.
async fn dial_manager(agents: Agents, key: SigningKey, tx: mpsc::Sender<Event>) {
    let mut running: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        for (host, (addr, expected)) in agents.dial_targets() {
            if running.contains_key(&host) {
                continue;
            }
            let task = redial(host.clone(), addr, expected, key.clone(), tx.clone());
            running.insert(host, tokio::spawn(task));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn redial(
    host: String,
    addr: SocketAddr,
    expected: VerifyingKey,
    key: SigningKey,
    tx: mpsc::Sender<Event>,
) {
    let mut backoff = warren_wire::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        match warren_wire::dial(&addr.to_string(), key.clone(), expected).await {
            Ok(conn) => {
                backoff.reset();
                session(conn, Some(host.clone()), tx.clone()).await;
            }
            Err(e) => tracing::debug!(host = %host, %addr, "dial failed: {e}"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One authenticated session until it ends; never takes the controller down.
async fn session(mut conn: warren_wire::Connection, expected: Option<String>, tx: mpsc::Sender<Event>) {
    let id = SESSION.fetch_add(1, Ordering::Relaxed);
    let host = match conn.hello("controller").await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("session {id}: hello failed: {e}");
            return;
        }
    };
    // The name an agent gives must be the one its key is listed under.
    let authorized = expected.clone().or_else(|| Some(conn.peer().to_string()));
    if authorized.as_deref() != Some(host.as_str()) {
        tracing::warn!(
            id,
            host,
            ?authorized,
            "agent named itself after another host; closing"
        );
        let _ = conn
            .send(Message::Bye {
                reason: format!("you are not {host}"),
            })
            .await;
        return;
    }
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(16);
    let up = Event::Connected {
        host: host.clone(),
        tx: out_tx,
        id,
    };
    if tx.send(up).await.is_err() {
        return;
    }
    let reason = relay(&mut conn, &host, &tx, out_rx).await;
    let _ = tx.send(Event::Disconnected { host, id, reason }).await;
}

/// Messages both ways until the session ends; why it ended.
async fn relay(
    conn: &mut warren_wire::Connection,
    host: &str,
    tx: &mpsc::Sender<Event>,
    mut out_rx: mpsc::Receiver<Outgoing>,
) -> String {
    let from = |msg| Event::FromAgent {
        host: host.to_string(),
        msg,
    };
    loop {
        tokio::select! {
            m = conn.recv() => match m {
                Ok(Some(Message::Keys { identity, wireguard })) => {
                    let _ = tx.send(from(FromAgent::Keys { identity, wireguard })).await;
                }
                Ok(Some(Message::Report(r))) => {
                    let _ = tx.send(from(FromAgent::Report(r))).await;
                }
                Ok(Some(Message::Status(st))) => {
                    let _ = tx.send(from(FromAgent::Status(st))).await;
                }
                Ok(Some(Message::Bye { reason })) => return format!("agent said bye: {reason}"),
                Ok(Some(other)) => tracing::debug!(host, "ignoring {other:?}"),
                Ok(None) => return "closed".to_string(),
                Err(e) => return format!("{e}"),
            },
            o = out_rx.recv() => {
                let msg = match o {
                    Some(Outgoing::Plan(p)) => Message::Plan(p),
                    Some(Outgoing::Confirm(serial)) => Message::Confirm { serial },
                    Some(Outgoing::Ack(seq)) => Message::Ack { seq },
                    None => return "replaced by a newer session".to_string(),
                };
                if let Err(e) = conn.send(msg).await {
                    return format!("{e}");
                }
            }
        }
    }
}
