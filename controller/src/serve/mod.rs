//! `warren-controller serve`: watch the repo (poll, filesystem events,
//! webhook), compile and sign every new commit, push plans to agents over
//! SSH in rollout order, confirm them once the agent reports back healthy,
//! and remember everything in the store.

pub mod pipeline;
pub mod repo;
pub mod store;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use warren_plan::SignedPlan;

/// How the service is set up (from the command line).
#[derive(Debug, Clone)]
pub struct Options {
    pub source: String,
    pub branch: String,
    pub state_dir: PathBuf,
    pub poll: Duration,
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub webhook_secret: Option<Vec<u8>>,
    pub confirm_secs: u32,
    pub fs_watch: bool,
    pub access: repo::Access,
}

/// Everything the main loop reacts to.
#[derive(Debug)]
pub enum Event {
    /// Something says the repo may have changed (poll, fs, webhook).
    Trigger(&'static str),
    /// An agent session is up: its host name and where to send messages.
    Connected {
        host: String,
        tx: mpsc::Sender<Outgoing>,
        id: u64,
    },
    /// A message from an agent.
    FromAgent {
        host: String,
        msg: FromAgent,
    },
    Disconnected {
        host: String,
        id: u64,
        reason: String,
    },
}

/// What the controller sends an agent.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Plan(Box<SignedPlan>),
    Confirm(u64),
}

/// What an agent sends the controller.
#[derive(Debug, Clone)]
pub enum FromAgent {
    Keys {
        identity: String,
        wireguard: BTreeMap<String, String>,
    },
    Report(serde_json::Value),
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn controller_key(dir: &std::path::Path) -> Result<SigningKey> {
    let p = dir.join("controller.key");
    if p.exists() {
        crate::keys::load(&p)
    } else {
        let k = crate::keys::generate(&p)?;
        tracing::info!(public = %crate::keys::public_b64(&k), "created the controller key");
        Ok(k)
    }
}

struct Service {
    metrics: std::sync::Arc<crate::http::Metrics>,
    /// When the commit being rolled out was first seen (push-to-applied).
    seen_at: Option<std::time::Instant>,
    opts: Options,
    store: store::Store,
    repo: repo::Repo,
    key: SigningKey,
    sessions: BTreeMap<String, (u64, mpsc::Sender<Outgoing>)>,
    config: Option<warren_model::Config>,
    /// Hosts waiting for their turn in the current rollout.
    rollout: Vec<String>,
    /// Who may connect and whom to dial, from the last good config.
    agents: transport::Agents,
}

impl Service {
    /// Load the last good commit's config (who may connect, whom to dial)
    /// without recording anything: what the service runs after a restart.
    fn load_good(&mut self) -> Result<()> {
        let Some(good) = self.store.good_commit()? else {
            return Ok(());
        };
        let snap = self.repo.at(&good)?;
        if let Some(text) = &snap.text {
            if let (Some(cfg), _) = warren_model::load_str(text, "warren.yaml") {
                self.agents.update(&cfg);
                self.config = Some(cfg);
            }
        }
        Ok(())
    }

    /// A new commit on the branch?
    fn fetch_and_process(&mut self) -> Result<()> {
        let snap = self.repo.fetch()?;
        if self.store.last_commit()?.as_deref() == Some(snap.commit.as_str()) {
            return Ok(());
        }
        self.process(&snap)
    }

    /// Recompile the last good commit (new agent keys arrived).
    fn recompile_good(&mut self) -> Result<()> {
        let Some(good) = self.store.good_commit()? else {
            return Ok(());
        };
        let snap = self.repo.at(&good)?;
        self.process(&snap)
    }

    fn process(&mut self, snap: &repo::Snapshot) -> Result<()> {
        let out = pipeline::process(&self.store, &self.key, snap, self.opts.confirm_secs, now())?;
        self.metrics.inc_commits();
        match out.record.outcome.as_str() {
            "compiled" | "unchanged" => {}
            "invalid" | "key-mismatch" => self
                .metrics
                .record_reconcile(crate::http::ReconcileOutcome::Invalid),
            _ => self
                .metrics
                .record_reconcile(crate::http::ReconcileOutcome::Failed),
        }
        if !out.plans.is_empty() {
            self.seen_at = Some(std::time::Instant::now());
        }
        if let Some(cfg) = out.config {
            self.agents.update(&cfg);
            self.config = Some(cfg);
        }
        if !out.plans.is_empty() {
            self.rollout = out.plans.into_iter().map(|(h, _)| h).collect();
            self.advance_rollout();
        }
        Ok(())
    }

    /// Send the next plan of the rollout whose predecessor is confirmed (or
    /// whose host is not connected: it gets its plan when it connects).
    fn advance_rollout(&mut self) {
        while let Some(host) = self.rollout.first().cloned() {
            let rec = match self.store.host(&host) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("store: {e:#}");
                    return;
                }
            };
            let Some(desired) = rec.desired.clone() else {
                self.rollout.remove(0);
                continue;
            };
            let serial = desired.envelope.serial;
            if rec.confirmed_serial >= Some(serial) {
                self.rollout.remove(0);
                continue;
            }
            match self.sessions.get(&host) {
                Some((_, tx)) => {
                    if rec.applied_serial < Some(serial) {
                        let _ = tx.try_send(Outgoing::Plan(Box::new(desired)));
                        tracing::info!(host, serial, "plan sent; waiting for the agent's report");
                    }
                    return; // wait for its report before the next host
                }
                None => {
                    tracing::warn!(
                        host,
                        serial,
                        "agent not connected; it gets the plan when it connects"
                    );
                    self.rollout.remove(0);
                }
            }
        }
    }

    fn on_connected(&mut self, host: String, tx: mpsc::Sender<Outgoing>, id: u64) -> Result<()> {
        tracing::info!(host, "agent connected");
        self.sessions.insert(host.clone(), (id, tx.clone()));
        self.metrics.set_connected_agents(self.sessions.len() as u64);
        let rec = self.store.update_host(&host, |h| {
            h.connected = true;
            h.last_seen = Some(now());
        })?;
        if let Some(d) = rec.desired {
            if rec.applied_serial < Some(d.envelope.serial)
                && !self.rollout.iter().skip(1).any(|h| h == &host)
            {
                let _ = tx.try_send(Outgoing::Plan(Box::new(d)));
            }
        }
        self.store.snapshot(now())
    }

    fn on_message(&mut self, host: String, msg: FromAgent) -> Result<()> {
        match msg {
            FromAgent::Keys { identity, wireguard } => {
                let before = self.store.host(&host)?;
                let changed = before.wireguard != wireguard;
                self.store.update_host(&host, |h| {
                    h.identity = Some(identity);
                    h.wireguard = wireguard;
                    h.last_seen = Some(now());
                })?;
                if changed {
                    tracing::info!(host, "agent reported new WireGuard keys; recompiling");
                    self.recompile_good()?;
                }
            }
            FromAgent::Report(r) => {
                let serial = r.get("serial").and_then(|s| s.as_u64());
                let outcome = r
                    .get("outcome")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_string();
                let commit = r.get("commit").and_then(|s| s.as_str()).map(str::to_string);
                let drift: Vec<String> = if outcome == "drift" {
                    r.get("changes")
                        .and_then(|c| c.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| {
                                    c.get("resource").and_then(|x| x.as_str()).map(str::to_string)
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    vec![]
                };
                let rec = self.store.update_host(&host, |h| {
                    h.last_seen = Some(now());
                    h.last_report = Some(r.clone());
                    match outcome.as_str() {
                        "applied" | "unchanged" | "healed" | "in_sync" => {
                            if outcome != "in_sync" && outcome != "healed" {
                                h.applied_serial = serial;
                                h.applied_commit = commit.clone();
                            }
                            h.drift.clear();
                            h.error = None;
                        }
                        "drift" => h.drift = drift.clone(),
                        "rejected" | "failed" => {
                            h.error = r
                                .get("message")
                                .and_then(|m| m.as_str())
                                .map(|m| format!("{outcome}: {m}"))
                        }
                        "rolled_back" => {
                            h.applied_serial = serial;
                            h.applied_commit = commit.clone();
                            h.error = r
                                .get("message")
                                .and_then(|m| m.as_str())
                                .map(|m| format!("rolled back: {m}"));
                        }
                        _ => {}
                    }
                })?;
                // The agent reached us after applying: it is reachable and
                // healthy, so confirm (the agent rolls back otherwise).
                if matches!(outcome.as_str(), "applied" | "unchanged") {
                    self.metrics
                        .record_reconcile(crate::http::ReconcileOutcome::Applied);
                    if let (Some(t), true) = (
                        self.seen_at,
                        rec.desired.as_ref().map(|d| d.envelope.serial) == serial,
                    ) {
                        self.metrics.observe_push_to_applied(t.elapsed().as_secs_f64());
                    }
                    if let (Some(s), Some(d)) = (serial, rec.desired.as_ref()) {
                        if s == d.envelope.serial && rec.confirmed_serial < Some(s) {
                            if let Some((_, tx)) = self.sessions.get(&host) {
                                let _ = tx.try_send(Outgoing::Confirm(s));
                                self.store.update_host(&host, |h| h.confirmed_serial = Some(s))?;
                                tracing::info!(host, serial = s, "confirmed");
                            }
                        }
                    }
                    if self.rollout.first() == Some(&host) {
                        self.rollout.remove(0);
                        self.advance_rollout();
                    }
                }
                if matches!(outcome.as_str(), "rejected" | "failed" | "rolled_back") {
                    self.metrics
                        .record_reconcile(crate::http::ReconcileOutcome::Failed);
                }
                let drifted: usize = self.store.hosts()?.values().map(|h| h.drift.len()).sum();
                self.metrics.set_drifted_resources(drifted as u64);
                if matches!(outcome.as_str(), "rejected" | "failed" | "rolled_back")
                    && self.rollout.first() == Some(&host)
                {
                    tracing::warn!(host, "rollout stopped: {outcome}");
                    self.rollout.clear();
                }
            }
        }
        self.store.snapshot(now())
    }

    fn on_disconnected(&mut self, host: String, id: u64, reason: String) -> Result<()> {
        if self.sessions.get(&host).is_some_and(|(i, _)| *i == id) {
            self.sessions.remove(&host);
            self.metrics.set_connected_agents(self.sessions.len() as u64);
            tracing::warn!(host, reason, "agent disconnected");
            self.store.update_host(&host, |h| h.connected = false)?;
            self.store.snapshot(now())?;
        }
        Ok(())
    }
}

pub async fn serve(opts: Options) -> Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create {}", opts.state_dir.display()))?;
    let key = controller_key(&opts.state_dir)?;
    let store = store::Store::open(&opts.state_dir)?;
    // Nothing is connected at start-up, whatever the store says.
    for (h, _) in store.hosts()? {
        store.update_host(&h, |r| r.connected = false)?;
    }
    let repo = repo::Repo::open(
        &opts.state_dir.join("mirror.git"),
        &opts.source,
        &opts.branch,
        opts.access.clone(),
    )?;
    let (tx, mut rx) = mpsc::channel::<Event>(1024);

    // Polling.
    let t = tx.clone();
    let poll = opts.poll;
    tokio::spawn(async move {
        loop {
            if t.send(Event::Trigger("poll")).await.is_err() {
                return;
            }
            tokio::time::sleep(poll).await;
        }
    });
    // Filesystem events on a local source.
    let _watcher = match repo.local_path().filter(|_| opts.fs_watch) {
        Some(p) => {
            use notify::Watcher;
            let t = tx.clone();
            // Only changes: reading the repo (our own fetch) must not trigger.
            let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if ev.kind.is_create() || ev.kind.is_modify() || ev.kind.is_remove() {
                        let _ = t.try_send(Event::Trigger("fs"));
                    }
                }
            })?;
            w.watch(&p, notify::RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", p.display()))?;
            Some(w)
        }
        None => None,
    };
    let metrics = std::sync::Arc::new(crate::http::Metrics::new());
    if let Some(addr) = opts.http {
        let mut state = crate::http::HttpState::new(metrics.clone());
        if let Some(secret) = &opts.webhook_secret {
            let (wtx, mut wrx) = mpsc::channel::<String>(16);
            state = state.with_webhook(crate::http::WebhookConfig::new(secret.clone())?, wtx);
            let t = tx.clone();
            tokio::spawn(async move {
                while let Some(r) = wrx.recv().await {
                    tracing::info!(r#ref = %r, "webhook push");
                    if t.send(Event::Trigger("webhook")).await.is_err() {
                        return;
                    }
                }
            });
        }
        let state = std::sync::Arc::new(state);
        state.set_healthy(true);
        let server = crate::http::bind(addr, state).await?;
        tracing::info!(addr = %server.local_addr()?, "http: /healthz /metrics /webhook");
        tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!("http server stopped: {e:#}");
            }
        });
    }
    let agents = transport::start(&opts, &key, tx.clone()).await?;

    let mut svc = Service {
        metrics,
        seen_at: None,
        opts,
        store,
        repo,
        key,
        sessions: BTreeMap::new(),
        config: None,
        rollout: vec![],
        agents,
    };
    if let Err(e) = svc.load_good() {
        tracing::warn!("cannot load the last good commit: {e:#}");
    }
    svc.store.snapshot(now())?;
    while let Some(ev) = rx.recv().await {
        let mut queue = vec![ev];
        if let Event::Trigger(why) = queue[0] {
            tracing::trace!(why, "checking the repo");
            // A burst of triggers compiles the newest commit once: wait a
            // moment, take everything queued, fetch once, then handle the
            // other events in their order (never re-queued behind triggers).
            tokio::time::sleep(Duration::from_millis(50)).await;
            queue.clear();
            while let Ok(e) = rx.try_recv() {
                if !matches!(e, Event::Trigger(_)) {
                    queue.push(e);
                }
            }
            if let Err(e) = svc.fetch_and_process() {
                tracing::error!("{e:#}");
            }
        }
        for ev in queue {
            let r = match ev {
                Event::Trigger(_) => Ok(()),
                Event::Connected { host, tx, id } => svc.on_connected(host, tx, id),
                Event::FromAgent { host, msg } => svc.on_message(host, msg),
                Event::Disconnected { host, id, reason } => svc.on_disconnected(host, id, reason),
            };
            if let Err(e) = r {
                tracing::error!("{e:#}");
            }
        }
    }
    Ok(())
}

pub mod transport;
