//! Agent sessions over SSH (warren-wire). The controller dials agents that
//! have `agent.address` in the YAML (pinning `agent.identity` as their host
//! key) and accepts agents that dial `--listen` (authorizing them by the
//! `agent.identity` the YAML lists). After `Hello` both directions are the
//! same: sessions turn messages into [`Event`]s for the main loop.
//!
//! It moves messages and decides nothing about them: what to send, and
//! what a report means, is the rollout's business. It does bound what an
//! agent may send (frame size, the shape of `Keys`) and binds the identity
//! in `Keys` to the key the SSH session authenticated with: whatever the
//! agent writes there is ignored.
//!
//! Sessions follow the config: a dial task whose host's address or identity
//! changed, or whose host is gone, stops and is replaced; a live session
//! whose key the config no longer lists is closed.

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
        for (name, h) in agent_hosts(cfg) {
            let Some(a) = &h.agent else { continue };
            let Some(key) = a
                .identity
                .as_deref()
                .and_then(|k| warren_wire::parse_public_key(k).ok())
            else {
                continue;
            };
            inner.identities.insert(key.to_bytes(), name.clone());
            if let Some((ip, port)) = a.address {
                inner
                    .dial
                    .insert(name.clone(), (SocketAddr::from((ip, port)), key));
            }
        }
        if let Ok(mut g) = self.0.write() {
            *g = inner;
        }
    }
    fn host_of(&self, k: &VerifyingKey) -> Option<String> {
        self.0.read().ok()?.identities.get(&k.to_bytes()).cloned()
    }
    fn dial_target(&self, host: &str) -> Option<(SocketAddr, VerifyingKey)> {
        self.0.read().ok()?.dial.get(host).copied()
    }
    fn dial_targets(&self) -> BTreeMap<String, (SocketAddr, VerifyingKey)> {
        self.0.read().map(|g| g.dial.clone()).unwrap_or_default()
    }
}

/// Each plan-carrying host with the host whose agent serves it: itself, or,
/// for a RouterOS router, its `managed_by` agent host, whose agent then
/// speaks for the router (its session is the router's, and the agent host
/// itself carries no plan).
fn agent_hosts(cfg: &warren_model::Config) -> Vec<(String, &warren_model::model::Host)> {
    use warren_model::model::Platform;
    let managers: std::collections::BTreeSet<&str> = cfg
        .hosts
        .values()
        .filter(|h| h.platform == Platform::Routeros)
        .filter_map(|h| h.managed_by.as_deref())
        .collect();
    let mut v = Vec::new();
    for h in cfg.hosts.values() {
        if h.platform == Platform::Routeros {
            if let Some(m) = h.managed_by.as_deref().and_then(|m| cfg.hosts.get(m)) {
                v.push((h.name.clone(), m));
            }
        } else if !managers.contains(h.name.as_str()) {
            v.push((h.name.clone(), h));
        }
    }
    v
}

static SESSION: AtomicU64 = AtomicU64::new(1);

/// Largest frame an agent may send: 4 MiB. The largest legitimate message
/// is a drift report carrying the whole nft table: 1.0 MB for 10 000
/// forwards (measured), and the YAML's 1 MiB cap allows about twice that.
/// Plans (controller -> agent) keep warren-wire's 8 MiB.
pub const AGENT_FRAME_MAX: usize = 4 * 1024 * 1024;
/// At most this many WireGuard interfaces in `Keys`.
const MAX_KEYS: usize = 64;
/// How often a live session checks that the config still lists its key.
const RECHECK: Duration = Duration::from_secs(1);

fn wire_options() -> warren_wire::Options {
    warren_wire::Options {
        max_frame_in: AGENT_FRAME_MAX,
        ..warren_wire::Options::default()
    }
}

pub async fn start(opts: &Options, key: &SigningKey, tx: mpsc::Sender<Event>) -> Result<Agents> {
    let agents = Agents::default();
    if let Some(addr) = opts.listen {
        let a = agents.clone();
        let authorize = move |k: &VerifyingKey| a.host_of(k);
        let listener = warren_wire::listen_with(addr, key.clone(), authorize, wire_options()).await?;
        tracing::info!(%addr, "listening for agents");
        tokio::spawn(accept_loop(listener, agents.clone(), tx.clone()));
    }
    tokio::spawn(dial_manager(agents.clone(), key.clone(), tx));
    Ok(agents)
}

/// Agents that dial us: one session task each.
async fn accept_loop(listener: warren_wire::Listener, agents: Agents, tx: mpsc::Sender<Event>) {
    loop {
        match listener.accept().await {
            Ok(conn) => {
                let t = tx.clone();
                let a = agents.clone();
                tokio::spawn(async move { session(conn, None, a, t).await });
            }
            Err(e) => {
                tracing::error!("agent listener stopped: {e}");
                return;
            }
        }
    }
}

/// Keep one session per dialable agent (as the last good config lists
/// them), each redialled with backoff. A task whose target changed or went
/// away ends by itself (see [`redial`]) and is replaced here.
async fn dial_manager(agents: Agents, key: SigningKey, tx: mpsc::Sender<Event>) {
    let mut running: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        running.retain(|_, h| !h.is_finished());
        for (host, (addr, expected)) in agents.dial_targets() {
            if running.contains_key(&host) {
                continue;
            }
            let task = redial(
                host.clone(),
                addr,
                expected,
                key.clone(),
                agents.clone(),
                tx.clone(),
            );
            running.insert(host, tokio::spawn(task));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Dial `host` at `addr` expecting `expected`, again and again, for as long
/// as the config still says so.
async fn redial(
    host: String,
    addr: SocketAddr,
    expected: VerifyingKey,
    key: SigningKey,
    agents: Agents,
    tx: mpsc::Sender<Event>,
) {
    let mut backoff = warren_wire::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let opts = wire_options();
    while agents.dial_target(&host) == Some((addr, expected)) {
        match warren_wire::dial_with(&addr.to_string(), key.clone(), expected, &opts).await {
            Ok(conn) => {
                backoff.reset();
                session(conn, Some(host.clone()), agents.clone(), tx.clone()).await;
            }
            Err(e) => tracing::debug!(host = %host, %addr, "dial failed: {e}"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    tracing::info!(host = %host, %addr, "no longer dialling this agent there: the config changed");
}

/// Whether the config in force still wants this session: the host's key
/// is still listed as its identity, and a dialled host is still dialled
/// there.
fn still_wanted(agents: &Agents, host: &str, key: &VerifyingKey, dialled: Option<SocketAddr>) -> bool {
    let listed = agents.host_of(key).as_deref() == Some(host);
    listed && dialled.is_none_or(|a| agents.dial_target(host) == Some((a, *key)))
}

/// What is wrong with an agent's `Keys`, if anything. Their content is
/// judged by the pipeline; here only their size and names.
fn check_keys(wireguard: &BTreeMap<String, String>) -> Result<(), String> {
    if wireguard.len() > MAX_KEYS {
        return Err(format!(
            "Keys lists {} interfaces (at most {MAX_KEYS})",
            wireguard.len()
        ));
    }
    let bad_name = |n: &String| {
        n.is_empty()
            || n.len() > 15
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if let Some(n) = wireguard.keys().find(|n| bad_name(n)) {
        return Err(format!(
            "Keys names interface {:?}, which is not an interface name",
            n.chars().take(32).collect::<String>()
        ));
    }
    if let Some((n, _)) = wireguard.iter().find(|(_, k)| k.len() > 64) {
        return Err(format!(
            "Keys gives interface {n} a {}-byte key",
            wireguard[n].len()
        ));
    }
    Ok(())
}

/// One authenticated session until it ends; never takes the controller down.
async fn session(
    mut conn: warren_wire::Connection,
    expected: Option<String>,
    agents: Agents,
    tx: mpsc::Sender<Event>,
) {
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
    let dialled = expected.is_some().then(|| conn.remote_addr()).flatten();
    let key = *conn.peer_key();
    let wanted = move |h: &str| still_wanted(&agents, h, &key, dialled);
    let reason = relay(&mut conn, &host, &tx, out_rx, wanted).await;
    let _ = tx.send(Event::Disconnected { host, id, reason }).await;
}

/// Say why we close, then close (dropping the connection ends it).
async fn refuse(conn: &mut warren_wire::Connection, host: &str, reason: String) -> String {
    tracing::warn!(host, "closing the session: {reason}");
    let _ = conn
        .send(Message::Bye {
            reason: reason.clone(),
        })
        .await;
    reason
}

/// Messages both ways until the session ends; why it ended.
async fn relay(
    conn: &mut warren_wire::Connection,
    host: &str,
    tx: &mpsc::Sender<Event>,
    mut out_rx: mpsc::Receiver<Outgoing>,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let from = |msg| Event::FromAgent {
        host: host.to_string(),
        msg,
    };
    // The identity is the key this session authenticated with, never what
    // the agent writes in `Keys`.
    let identity = warren_wire::openssh_public_key(conn.peer_key());
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            _ = recheck.tick() => if !wanted(host) {
                return refuse(conn, host, "the config no longer lists this key for this host".into()).await;
            },
            m = conn.recv() => match m {
                Ok(Some(Message::Keys { identity: _, wireguard })) => {
                    if let Err(why) = check_keys(&wireguard) {
                        return refuse(conn, host, why).await;
                    }
                    let identity = identity.clone();
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
