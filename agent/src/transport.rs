//! The agent's link to the controller (warren-wire over SSH), in a thread of
//! its own. It never touches live state: plans and confirmations go into the
//! state directory's inbox for the engine loop, reports come out of its
//! outbox, keys are read from the key files. Whichever side dials, the
//! protocol after `Hello` is the same.
//!
//! Delivery is at-least-once: every session sends every outbox report the
//! controller has not acknowledged (oldest first, each with its outbox
//! `seq`), and a report leaves the outbox only when an `Ack` covers it.
//! `Status` (replay floor, running plan, confirmed, the doctor's findings)
//! goes out after `Keys`,
//! whenever it changes and at least every `STATUS_HEARTBEAT_SECS`.

use crate::config::{Config, Link};
use crate::keys::WgKeys;
use crate::store::Store;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warren_wire::{AgentStatus, Connection, Message, Running, STATUS_HEARTBEAT_SECS};

/// Start the transport thread if the configuration names a controller.
pub fn spawn(cfg: &Config) -> Result<()> {
    let Some(link) = cfg.controller.clone() else {
        return Ok(());
    };
    let key = crate::keys::identity_signing_key(&cfg.state_dir)?;
    let trusted = cfg.trusted()?;
    let host = cfg.host.clone();
    let dir = cfg.state_dir.clone();
    std::thread::Builder::new()
        .name("transport".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("transport: no runtime: {e}");
                    return;
                }
            };
            rt.block_on(run(link, key, trusted, host, dir));
        })?;
    Ok(())
}

/// Who we are and whom we trust, for every session.
struct Identity {
    key: ed25519_dalek::SigningKey,
    trusted: Vec<ed25519_dalek::VerifyingKey>,
    host: String,
    dir: std::path::PathBuf,
}

async fn run(
    link: Link,
    key: ed25519_dalek::SigningKey,
    trusted: Vec<ed25519_dalek::VerifyingKey>,
    host: String,
    dir: std::path::PathBuf,
) {
    let me = Identity {
        key,
        trusted,
        host,
        dir,
    };
    match link {
        Link::Listen(addr) => listen(addr, &me).await,
        Link::Dial(addr) => dial(&addr, &me).await,
    }
}

fn backoff() -> warren_wire::Backoff {
    warren_wire::Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
}

/// The controller dials us: serve one session at a time, for ever.
async fn listen(addr: std::net::SocketAddr, me: &Identity) {
    let mut backoff = backoff();
    let t = me.trusted.clone();
    let authorize = move |k: &ed25519_dalek::VerifyingKey| t.contains(k).then(|| "controller".to_string());
    let listener = loop {
        match warren_wire::listen(addr, me.key.clone(), authorize.clone()).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!("transport: cannot listen on {addr}: {e}");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    };
    tracing::info!(%addr, "waiting for the controller");
    loop {
        match listener.accept().await {
            Ok(conn) => {
                if let Err(e) = session(conn, &me.host, &me.dir).await {
                    tracing::warn!("transport: session ended: {e:#}");
                }
            }
            Err(e) => {
                tracing::error!("transport: listener stopped: {e}");
                return;
            }
        }
    }
}

/// We dial the controller (under any trusted key), with backoff, for ever.
async fn dial(addr: &str, me: &Identity) {
    let mut backoff = backoff();
    loop {
        let mut connected = None;
        for k in &me.trusted {
            match warren_wire::dial(addr, me.key.clone(), *k).await {
                Ok(c) => {
                    connected = Some(c);
                    break;
                }
                Err(e) => tracing::debug!("transport: dial {addr}: {e}"),
            }
        }
        match connected {
            Some(conn) => {
                backoff.reset();
                tracing::info!(%addr, "connected to the controller");
                if let Err(e) = session(conn, &me.host, &me.dir).await {
                    tracing::warn!("transport: session ended: {e:#}");
                }
            }
            None => tracing::warn!(%addr, "transport: cannot reach the controller; retrying"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Most outbox reports sent per tick, so that incoming messages (acks,
/// plans) are read between batches even with a full outbox.
const REPORT_BATCH: usize = 16;

/// One session: hello, keys, status, then plans, confirmations and acks
/// in; reports and status out.
async fn session(conn: Connection, host: &str, dir: &std::path::Path) -> Result<()> {
    let mut conn = conn;
    let peer = conn.hello(host).await?;
    tracing::info!(peer, "session up");
    let mut s = Session::start(dir)?;
    s.send_keys(&conn, true).await?;
    s.send_status(&conn, true).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            msg = conn.recv() => s.handle(msg?)?,
            _ = tick.tick() => {
                s.send_reports(&conn).await?;
                s.send_keys(&conn, false).await?;
                s.send_status(&conn, false).await?;
            }
        }
    }
}

/// What one session has told the controller so far.
struct Session {
    store: Store,
    wg_keys: WgKeys,
    /// The identity is constant; only WireGuard keys appear over time.
    identity: String,
    sent_keys: Option<BTreeMap<String, String>>,
    /// Highest outbox `seq` sent in this session: every new session starts
    /// again from the oldest un-acknowledged report.
    sent_upto: u64,
    status: Option<AgentStatus>,
    status_at: Instant,
    /// The state files `status` was read from, as they were then: the
    /// running plan can be megabytes, so it is parsed again only when a
    /// file changed, not on every tick.
    status_from: Option<crate::store::Stamp>,
}

impl Session {
    fn start(dir: &std::path::Path) -> Result<Session> {
        Ok(Session {
            store: Store::open(dir)?,
            wg_keys: WgKeys::in_state_dir(dir),
            identity: crate::keys::ensure_identity(dir)?,
            sent_keys: None,
            sent_upto: 0,
            status: None,
            status_at: Instant::now(),
            status_from: None,
        })
    }

    /// A message from the controller.
    fn handle(&mut self, msg: Option<Message>) -> Result<()> {
        match msg {
            None => Err(anyhow!("the controller closed the session")),
            Some(Message::Plan(sp)) => {
                let serial = sp.envelope.serial;
                let name = format!("{serial:020}.plan.json");
                self.store.deliver(&name, &warren_plan::canonical(&*sp))?;
                tracing::info!(serial, "plan received");
                Ok(())
            }
            Some(Message::Confirm { serial }) => self.store.deliver(&format!("confirm-{serial}"), b""),
            Some(Message::Ack { seq }) => {
                // Only what this session sent can have been recorded.
                self.store.ack(seq.min(self.sent_upto));
                Ok(())
            }
            Some(Message::Bye { reason }) => Err(anyhow!("the controller said bye: {reason}")),
            Some(other) => {
                tracing::debug!("ignoring {other:?}");
                Ok(())
            }
        }
    }

    /// Outbox reports not yet sent in this session, oldest first; they stay
    /// in the outbox until acknowledged.
    async fn send_reports(&mut self, conn: &Connection) -> Result<()> {
        let from = self.sent_upto;
        let unsent = self.store.outbox().into_iter().filter(|(seq, _)| *seq > from);
        for (seq, f) in unsent.take(REPORT_BATCH) {
            self.sent_upto = seq;
            let Ok(bytes) = std::fs::read(&f) else { continue };
            let Ok(r) = serde_json::from_slice::<warren_wire::Report>(&bytes) else {
                tracing::warn!(file = %f.display(), "dropping an unreadable report");
                let _ = std::fs::remove_file(&f);
                continue;
            };
            // The file name is the truth (reports queued by an older agent
            // carry seq 0 inside).
            let r = warren_wire::Report { seq, ..r };
            conn.send(Message::Report(Box::new(r))).await?;
        }
        Ok(())
    }

    /// The WireGuard public keys, at session start and when they change:
    /// this host's own, and those a RouterOS router this agent drives
    /// generated itself (the router's name is this agent's `host`).
    async fn send_keys(&mut self, conn: &Connection, first: bool) -> Result<()> {
        let mut wg = self.wg_keys.all()?;
        match self.store.routeros_keys() {
            Ok(router) => wg.extend(router),
            Err(e) => tracing::warn!("cannot read the router's public keys: {e:#}"),
        }
        if first || self.sent_keys.as_ref() != Some(&wg) {
            let identity = self.identity.clone();
            conn.send(Message::Keys {
                identity,
                wireguard: wg.clone(),
            })
            .await?;
            self.sent_keys = Some(wg);
        }
        Ok(())
    }

    /// Where the agent stands: at session start, on every change (a new
    /// plan, a confirmation, a rollback) and as a heartbeat.
    async fn send_status(&mut self, conn: &Connection, first: bool) -> Result<()> {
        let due = self.status_at.elapsed() >= Duration::from_secs(STATUS_HEARTBEAT_SECS);
        let stamp = self.store.status_stamp();
        // The heartbeat always reads the files again: a stamp is a cheap
        // signal, not a proof (file times are coarse).
        let cached = self
            .status
            .clone()
            .filter(|_| !due && self.status_from == Some(stamp));
        let now = match cached.map_or_else(|| agent_status(&self.store), Ok) {
            Ok(st) => {
                self.status_from = Some(stamp);
                st
            }
            Err(e) => {
                tracing::warn!("cannot read the agent's state for status: {e:#}");
                match &self.status {
                    Some(st) => st.clone(),
                    None => return Ok(()),
                }
            }
        };
        if first || due || self.status.as_ref() != Some(&now) {
            conn.send(Message::Status(now.clone())).await?;
            self.status = Some(now);
            self.status_at = Instant::now();
        }
        Ok(())
    }
}

/// The replay floor, the running plan and the doctor's findings, from the
/// state directory.
fn agent_status(store: &Store) -> Result<AgentStatus> {
    let running = store.applied()?.map(|a| Running {
        serial: a.signed.envelope.serial,
        commit: a.signed.envelope.commit.clone(),
        plan_sha256: a.signed.envelope.plan_sha256.clone(),
        confirmed: a.confirmed,
    });
    // Unreadable findings must not hold back the rest of the status.
    let findings = store.findings().unwrap_or_else(|e| {
        tracing::warn!("cannot read the doctor's findings: {e:#}");
        vec![]
    });
    Ok(AgentStatus {
        max_serial: store.max_serial()?,
        running,
        findings,
    })
}
