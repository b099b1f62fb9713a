//! Agent sessions over SSH (warren-wire). The controller dials agents that
//! have `agent.address` in the YAML (pinning `agent.identity` as their host
//! key) and accepts agents that dial `--listen` (authorizing them by the
//! `agent.identity` the YAML lists). After `Hello` both directions are the
//! same: sessions turn messages into [`Event`]s for the main loop.

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
        let t = tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(conn) => {
                        let t = t.clone();
                        tokio::spawn(async move { session(conn, None, t).await });
                    }
                    Err(e) => {
                        tracing::error!("agent listener stopped: {e}");
                        return;
                    }
                }
            }
        });
    }
    // Dial manager: keep one session per dialable agent, with backoff.
    let a = agents.clone();
    let key = key.clone();
    tokio::spawn(async move {
        let mut running: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
        loop {
            running.retain(|_, h| !h.is_finished());
            for (host, (addr, expected)) in a.dial_targets() {
                if running.contains_key(&host) {
                    continue;
                }
                let (key, t, h) = (key.clone(), tx.clone(), host.clone());
                running.insert(
                    host,
                    tokio::spawn(async move {
                        let mut backoff =
                            warren_wire::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
                        loop {
                            match warren_wire::dial(&addr.to_string(), key.clone(), expected).await {
                                Ok(conn) => {
                                    backoff.reset();
                                    session(conn, Some(h.clone()), t.clone()).await;
                                }
                                Err(e) => tracing::debug!(host = %h, %addr, "dial failed: {e}"),
                            }
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                    }),
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Ok(agents)
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
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(16);
    if tx
        .send(Event::Connected {
            host: host.clone(),
            tx: out_tx,
            id,
        })
        .await
        .is_err()
    {
        return;
    }
    let reason = loop {
        tokio::select! {
            m = conn.recv() => match m {
                Ok(Some(Message::Keys { identity, wireguard })) => {
                    let _ = tx.send(Event::FromAgent { host: host.clone(), msg: FromAgent::Keys { identity, wireguard } }).await;
                }
                Ok(Some(Message::Report(r))) => {
                    let _ = tx.send(Event::FromAgent { host: host.clone(), msg: FromAgent::Report(serde_json::to_value(&*r).unwrap_or_default()) }).await;
                }
                Ok(Some(Message::Bye { reason })) => break format!("agent said bye: {reason}"),
                Ok(Some(other)) => tracing::debug!(host, "ignoring {other:?}"),
                Ok(None) => break "closed".to_string(),
                Err(e) => break format!("{e}"),
            },
            o = out_rx.recv() => {
                let msg = match o {
                    Some(Outgoing::Plan(p)) => Message::Plan(p),
                    Some(Outgoing::Confirm(serial)) => Message::Confirm { serial },
                    None => break "replaced by a newer session".to_string(),
                };
                if let Err(e) = conn.send(msg).await {
                    break format!("{e}");
                }
            }
        }
    };
    let _ = tx.send(Event::Disconnected { host, id, reason }).await;
}
