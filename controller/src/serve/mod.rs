//! `warren-controller serve`: watch the repo (poll, filesystem events,
//! webhook), compile and sign every new commit, push plans to agents over
//! SSH in rollout order, confirm them once the agent reports back healthy,
//! and remember everything in the store.
//!
//! This module is the I/O shell: it owns the event loop, the store, the
//! sessions' channels and the metrics, and performs what
//! [`rollout::Rollout`] decides. Rollout rules belong in `rollout.rs`,
//! commit policy in `pipeline.rs`, host states in `status.rs`; none of them
//! belong here.

pub mod forge;
pub mod pipeline;
pub mod repo;
pub mod rollout;
pub mod status;
pub mod store;
pub mod sync;
pub mod transport;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use rollout::{Metric, Output};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warren_host::unix_now;
use warren_plan::SignedPlan;
use warren_wire::{AgentStatus, Report};

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
    /// Where to post previews, apply results and drift (`--forge`).
    pub forge: Option<forge::ForgeOptions>,
    /// The signing key from a file (`--signing-key-file`) instead of
    /// `controller.key` in the state directory.
    pub signing_key_file: Option<PathBuf>,
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
    /// Once a second: pick up `sync` requests (see [`sync`]).
    Tick,
}

/// What the controller sends an agent.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Plan(Box<SignedPlan>),
    Confirm(u64),
    /// The agent's reports up to this seq are recorded.
    Ack(u64),
}

/// What an agent sends the controller.
#[derive(Debug, Clone)]
pub enum FromAgent {
    Keys {
        identity: String,
        wireguard: BTreeMap<String, String>,
    },
    Report(Box<Report>),
    /// Where the agent stands; also its heartbeat.
    Status(warren_wire::AgentStatus),
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

/// `warren_reconciles_total` for a processed commit (accepted commits count
/// when their agents report).
fn reconcile_metric(outcome: store::CommitOutcome) -> Option<crate::metrics::ReconcileOutcome> {
    use store::CommitOutcome::*;
    match outcome {
        Compiled | Unchanged => None,
        Invalid | KeyMismatch => Some(crate::metrics::ReconcileOutcome::Invalid),
        Error => Some(crate::metrics::ReconcileOutcome::Failed),
    }
}

struct Service {
    metrics: Arc<crate::metrics::Metrics>,
    opts: Options,
    store: store::Store,
    repo: repo::Repo,
    key: SigningKey,
    /// Where to send each connected host's messages. Who is connected, and
    /// what to send, is the rollout's to decide.
    outboxes: BTreeMap<String, mpsc::Sender<Outgoing>>,
    config: Option<warren_model::Config>,
    rollout: rollout::Rollout,
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

    /// A fetch ended: process the branch's newest commit if it is new.
    fn fetched(&mut self, snap: repo::Snapshot) -> Result<()> {
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
        let out = pipeline::process(&self.store, &self.key, snap, self.opts.confirm_secs, unix_now())?;
        self.metrics.inc_commits();
        if let Some(m) = reconcile_metric(out.record.outcome) {
            self.metrics.record_reconcile(m);
        }
        if let Some(cfg) = out.config {
            self.agents.update(&cfg);
            self.config = Some(cfg);
        }
        if !out.plans.is_empty() {
            let hosts = self.store.hosts()?;
            let changed: Vec<String> = out.plans.into_iter().map(|(h, _)| h).collect();
            let order = self.rollout_order();
            self.rollout
                .handle_compiled(&changed, &order, &hosts, Instant::now());
            self.perform()?;
        }
        Ok(())
    }

    /// Every host of the current config, in rollout order.
    fn rollout_order(&self) -> Vec<String> {
        let Some(cfg) = &self.config else {
            return vec![];
        };
        let mut order: Vec<String> = cfg.hosts.keys().cloned().collect();
        pipeline::rollout_order(cfg, &mut order);
        order
    }

    /// Sign `host`'s desired plan again with its next serial (the counter
    /// was already raised to the agent's replay floor), then let the rollout
    /// send it.
    fn resign(&mut self, host: &str) -> Result<()> {
        let Some(d) = self.store.host(host)?.desired else {
            return Ok(());
        };
        let serial = self.store.next_serial(host)?;
        let now = unix_now();
        let commit = d.envelope.commit.clone();
        let sp = warren_plan::sign(d.plan, serial, &commit, self.opts.confirm_secs, now, &self.key);
        self.store.update_host(host, |h| h.desired = Some(sp))?;
        tracing::info!(host, serial, "plan re-signed above the agent's replay floor");
        let hosts = self.store.hosts()?;
        self.rollout.handle_resigned(host, &hosts);
        Ok(())
    }

    /// Do what the rollout asked, in order. After a failed store write the
    /// rest is dropped (as if the handler had stopped there) and the error
    /// returned.
    fn perform(&mut self) -> Result<()> {
        let mut failed = None;
        while let Some(out) = self.rollout.poll_output() {
            if failed.is_some() {
                continue;
            }
            match out {
                Output::Send { host, msg } => {
                    // A full or closed outbox loses the message: delivery is
                    // at-least-once because the next status or report asks
                    // again, not because this send succeeded.
                    if let Some(tx) = self.outboxes.get(&host) {
                        if let Err(e) = tx.try_send(msg) {
                            tracing::warn!(host, "message not sent: {e}");
                        }
                    }
                }
                Output::Persist { host, update } => {
                    if let Err(e) = self.store.update_host(&host, |h| update.apply(h)) {
                        failed = Some(e);
                    }
                }
                Output::Save(saved) => {
                    if let Err(e) = self.store.set_rollout(&saved) {
                        failed = Some(e);
                    }
                }
                Output::Resign { host } => {
                    if let Err(e) = self.resign(&host) {
                        failed = Some(e);
                    }
                }
                Output::Metric(m) => self.record(m),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn record(&self, m: Metric) {
        use crate::metrics::ReconcileOutcome;
        match m {
            Metric::AgentApplied => self.metrics.record_reconcile(ReconcileOutcome::Applied),
            Metric::AgentFailed => self.metrics.record_reconcile(ReconcileOutcome::Failed),
            Metric::PushToApplied(d) => self.metrics.observe_push_to_applied(d.as_secs_f64()),
            Metric::DriftedResources(n) => self.metrics.set_drifted_resources(n),
            Metric::ConnectedAgents(n) => self.metrics.set_connected_agents(n),
        }
    }

    fn handle(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Trigger(_) => Ok(()),
            Event::Tick => self.on_tick(),
            Event::Connected { host, tx, id } => self.on_connected(host, tx, id),
            Event::FromAgent { host, msg } => self.on_message(host, msg),
            Event::Disconnected { host, id, reason } => self.on_disconnected(host, id, reason),
        }
    }

    fn on_connected(&mut self, host: String, tx: mpsc::Sender<Outgoing>, id: u64) -> Result<()> {
        tracing::info!(host, "agent connected");
        let mut hosts = self.store.hosts()?;
        self.outboxes.insert(host.clone(), tx);
        self.rollout.handle_session_up(&host, id, &mut hosts, unix_now());
        self.perform()?;
        self.store.snapshot(unix_now())
    }

    fn on_message(&mut self, host: String, msg: FromAgent) -> Result<()> {
        match msg {
            FromAgent::Keys { identity, wireguard } => self.on_keys(&host, identity, wireguard)?,
            FromAgent::Report(r) => {
                let mut hosts = self.store.hosts()?;
                let now = Instant::now();
                self.rollout.handle_report(&host, &r, &mut hosts, unix_now(), now);
                self.perform()?;
            }
            FromAgent::Status(st) => self.on_status(&host, &st)?,
        }
        self.store.snapshot(unix_now())
    }

    fn on_status(&mut self, host: &str, st: &AgentStatus) -> Result<()> {
        let mut hosts = self.store.hosts()?;
        self.rollout.handle_status(host, st, &mut hosts, unix_now());
        self.perform()
    }

    /// Pick up `warren-controller sync` requests.
    fn on_tick(&mut self) -> Result<()> {
        let Some(names) = sync::take(&self.opts.state_dir)? else {
            return Ok(());
        };
        let names = match names {
            sync::Target::All => self.rollout_order(),
            sync::Target::Hosts(h) => h,
        };
        let hosts = self.store.hosts()?;
        for (host, what) in self.rollout.handle_sync(&names, &hosts) {
            tracing::info!(host, "sync: {what}");
        }
        self.perform()
    }

    /// An agent's keys: remember them, and recompile if its WireGuard keys
    /// changed (peers' plans carry them).
    fn on_keys(&mut self, host: &str, identity: String, wireguard: BTreeMap<String, String>) -> Result<()> {
        let changed = self.store.host(host)?.wireguard != wireguard;
        self.store.update_host(host, |h| {
            // A new identity is a new agent state directory: its report
            // sequence starts again.
            if h.identity.as_ref().is_some_and(|old| *old != identity) {
                h.last_seq = 0;
            }
            h.identity = Some(identity);
            h.wireguard = wireguard;
            h.last_seen = Some(unix_now());
        })?;
        if changed {
            tracing::info!(host, "agent reported new WireGuard keys; recompiling");
            self.recompile_good()?;
        }
        Ok(())
    }

    fn on_disconnected(&mut self, host: String, id: u64, reason: String) -> Result<()> {
        if self.rollout.handle_session_down(&host, id) {
            self.outboxes.remove(&host);
            tracing::warn!(host, reason, "agent disconnected");
            self.perform()?;
            self.store.snapshot(unix_now())?;
        }
        Ok(())
    }

    /// The main loop: one event at a time, until every sender is gone. The
    /// git fetch runs off this loop (see [`repo::Fetcher`]): a slow or
    /// stalled git host never delays an agent's report or its confirm.
    async fn run(&mut self, mut rx: mpsc::Receiver<Event>, mut fetcher: repo::Fetcher) {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(Event::Trigger(why)) => {
                        tracing::trace!(why, "checking the repo");
                        // A burst of triggers while a fetch runs is one more fetch.
                        fetcher.request();
                    }
                    Some(ev) => {
                        if let Err(e) = self.handle(ev) {
                            tracing::error!("{e:#}");
                        }
                    }
                    None => return,
                },
                r = fetcher.done() => {
                    if let Err(e) = r.and_then(|snap| self.fetched(snap)) {
                        tracing::error!("{e:#}");
                    }
                }
            }
        }
    }
}

pub async fn serve(opts: Options) -> Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create {}", opts.state_dir.display()))?;
    let key = match &opts.signing_key_file {
        Some(f) => {
            let k = crate::keys::load_shared(f)?;
            tracing::info!(public = %crate::keys::public_b64(&k), file = %f.display(), "signing with the given key");
            k
        }
        None => controller_key(&opts.state_dir)?,
    };
    let store = store::Store::open(&opts.state_dir)?;
    // Nothing is connected at start-up, whatever the store says.
    for (h, _) in store.hosts()? {
        store.update_host(&h, |r| r.connected = false)?;
    }
    let mirror = opts.state_dir.join("mirror.git");
    let repo = repo::Repo::open(&mirror, &opts.source, &opts.branch, opts.access.clone())?;
    // A second handle on the same mirror, moved to a blocking thread per fetch.
    let fetcher = repo::Fetcher::new(&mirror, &opts.source, &opts.branch, opts.access.clone())?;
    // Bounded: each event from an agent may carry a frame of up to
    // transport::AGENT_FRAME_MAX, and sessions wait when it is full.
    let (tx, rx) = mpsc::channel::<Event>(256);
    spawn_poller(tx.clone(), opts.poll);
    let _watcher = match repo.local_path().filter(|_| opts.fs_watch) {
        Some(p) => Some(watch(&p, tx.clone())?),
        None => None,
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let prs = match &opts.forge {
        Some(f) => {
            let client = crate::forge::client::ForgeClient::new(f.kind, &f.api_url, &f.repo, &f.token)?;
            tracing::info!(
                forge = f.kind.as_str(),
                api = f.api_url,
                repo = f.repo,
                "forge: posting previews, apply results and drift"
            );
            Some(forge::spawn(
                f.clone(),
                client,
                &mirror,
                &opts.source,
                &opts.branch,
                opts.access.clone(),
                &opts.state_dir,
            )?)
        }
        None => None,
    };
    if let Some(addr) = opts.http {
        start_http(
            addr,
            opts.webhook_secret.as_deref(),
            metrics.clone(),
            tx.clone(),
            prs,
        )
        .await?;
    }
    let agents = transport::start(&opts, &key, tx.clone()).await?;
    spawn_ticker(tx.clone());
    // A rollout in progress before a restart resumes where it stood.
    let saved = store.rollout()?;

    let mut svc = Service {
        metrics,
        opts,
        store,
        repo,
        key,
        outboxes: BTreeMap::new(),
        config: None,
        rollout: rollout::Rollout::resume(saved),
        agents,
    };

    if let Err(e) = svc.load_good() {
        tracing::warn!("cannot load the last good commit: {e:#}");
    }
    svc.store.snapshot(unix_now())?;
    svc.run(rx, fetcher).await;
    Ok(())
}

/// A trigger now and every `poll` after.
fn spawn_poller(tx: mpsc::Sender<Event>, poll: Duration) {
    tokio::spawn(async move {
        loop {
            if tx.send(Event::Trigger("poll")).await.is_err() {
                return;
            }
            tokio::time::sleep(poll).await;
        }
    });
}

/// A [`Event::Tick`] every second.
fn spawn_ticker(tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tx.send(Event::Tick).await.is_err() {
                return;
            }
        }
    });
}

/// A trigger on filesystem changes under a local source.
fn watch(path: &std::path::Path, tx: mpsc::Sender<Event>) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    // Only changes: reading the repo (our own fetch) must not trigger.
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.kind.is_create() || ev.kind.is_modify() || ev.kind.is_remove() {
                let _ = tx.try_send(Event::Trigger("fs"));
            }
        }
    })?;
    w.watch(path, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", path.display()))?;
    Ok(w)
}

/// `/healthz`, `/metrics`, and `/webhook` (a trigger per push, pull
/// requests to the forge worker) if a secret is set.
async fn start_http(
    addr: SocketAddr,
    webhook_secret: Option<&[u8]>,
    metrics: Arc<crate::metrics::Metrics>,
    tx: mpsc::Sender<Event>,
    prs: Option<std::sync::mpsc::SyncSender<forge::ForgeMsg>>,
) -> Result<()> {
    let mut state = crate::http::HttpState::new(metrics);
    if let Some(secret) = webhook_secret {
        let (wtx, mut wrx) = mpsc::channel::<String>(16);
        state = state.with_webhook(crate::http::WebhookConfig::new(secret.to_vec())?, wtx);
        if let Some(prs) = prs {
            state = state.with_prs(prs);
        }
        tokio::spawn(async move {
            while let Some(r) = wrx.recv().await {
                tracing::info!(r#ref = %r, "webhook push");
                if tx.send(Event::Trigger("webhook")).await.is_err() {
                    return;
                }
            }
        });
    }
    let state = Arc::new(state);
    state.set_healthy(true);
    let server = crate::http::bind(addr, state).await?;
    tracing::info!(addr = %server.local_addr()?, "http: /healthz /metrics /webhook");
    tokio::spawn(async move {
        if let Err(e) = server.run().await {
            tracing::error!("http server stopped: {e:#}");
        }
    });
    Ok(())
}
