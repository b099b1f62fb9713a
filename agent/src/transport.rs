//! The agent's link to the controller (warren-wire over SSH), in a thread of
//! its own. It never touches live state: plans and confirmations go into the
//! state directory's inbox for the engine loop, reports come out of its
//! outbox, keys are read from the key files. Whichever side dials, the
//! protocol after `Hello` is the same.

use crate::config::{Config, Link};
use crate::keys::WgKeys;
use crate::store::Store;
use anyhow::{anyhow, Result};
use std::time::Duration;
use warren_wire::{Connection, Message};

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

/// One session: hello, keys, then plans and confirmations in, reports out.
async fn session(conn: Connection, host: &str, dir: &std::path::Path) -> Result<()> {
    let store = Store::open(dir)?;
    let mut conn = conn;
    let peer = conn.hello(host).await?;
    tracing::info!(peer, "session up");
    // The identity is constant; only WireGuard keys appear over time.
    let identity = crate::keys::ensure_identity(dir)?;
    let wg_keys = WgKeys::in_state_dir(dir);
    let wg = wg_keys.all()?;
    let mut sent_keys = wg.clone();
    conn.send(Message::Keys {
        identity: identity.clone(),
        wireguard: wg,
    })
    .await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            msg = conn.recv() => {
                match msg? {
                    None => return Err(anyhow!("the controller closed the session")),
                    Some(Message::Plan(sp)) => {
                        let serial = sp.envelope.serial;
                        store.deliver(&format!("{serial:020}.plan.json"), &warren_plan::canonical(&*sp))?;
                        tracing::info!(serial, "plan received");
                    }
                    Some(Message::Confirm { serial }) => store.deliver(&format!("confirm-{serial}"), b"")?,
                    Some(Message::Bye { reason }) => return Err(anyhow!("the controller said bye: {reason}")),
                    Some(other) => tracing::debug!("ignoring {other:?}"),
                }
            }
            _ = tick.tick() => {
                for f in store.outbox() {
                    let Ok(bytes) = std::fs::read(&f) else { continue };
                    let Ok(r) = serde_json::from_slice::<warren_wire::Report>(&bytes) else {
                        let _ = std::fs::remove_file(&f);
                        continue;
                    };
                    conn.send(Message::Report(Box::new(r))).await?;
                    let _ = std::fs::remove_file(&f);
                }
                let wg = wg_keys.all()?;
                if wg != sent_keys {
                    conn.send(Message::Keys { identity: identity.clone(), wireguard: wg.clone() }).await?;
                    sent_keys = wg;
                }
            }
        }
    }
}
