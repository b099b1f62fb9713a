//! The reconcile engine: verify -> observe -> pure diff -> apply -> remember.
//!
//! It owns the order of those steps, routes each operation to the backend
//! of its subsystem (one exhaustive `match`, [`dispatch`]), records what
//! Warren owns and writes the typed reports. It does not run commands
//! itself (backends do, through [`Sys`]) and knows nothing of the wire.
//! Only applying creates keys: a diff reads them and nothing else.

use crate::backend::{self, Backend, Backends, Claim, Scope};
use crate::config::Config;
use crate::keys::{self, WgKeys};
use crate::store::{Applied, Journal, Owned, Store};
use crate::sys::{Live, Sys};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use warren_host::unix_now;
use warren_plan::diff::{IptOp, NftOp, OwnKey};
use warren_plan::{Change, Context, Firewall, NftMemory, Op, Plan, Platform, SignedPlan, State, VerifyError};
use warren_wire::{Outcome, Report};

pub struct Engine<S: Sys = Live> {
    pub cfg: Config,
    pub store: Store,
    pub sys: S,
    backends: Backends,
    keys: WgKeys,
    /// The confirm window of the plan being converged (seconds): how long
    /// a RouterOS router waits before its own rollback fires.
    window_secs: u32,
    /// What the RouterOS backend noted during the last converge, for the
    /// report.
    ros_notes: Vec<String>,
}

/// Why an apply did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Refused before anything was touched.
    #[error("plan rejected: {0}")]
    Rejected(VerifyError),
    /// Something failed part-way (or the state directory did).
    #[error("apply failed: {0:#}")]
    Failed(anyhow::Error),
}

/// This host's public keys.
#[derive(Debug)]
pub struct PublicKeys {
    /// The identity, as an OpenSSH line.
    pub identity: String,
    /// One WireGuard key per interface that has one.
    pub wireguard: BTreeMap<String, String>,
}

/// Route one operation to the backend of its subsystem.
fn dispatch(backends: &mut Backends, sys: &mut dyn Sys, op: &Op) -> Result<Option<Claim>> {
    match op {
        Op::Wg(op) => backends.wireguard.apply(sys, op),
        Op::Sysctl(op) => backends.sysctl.apply(sys, op),
        Op::Routing(op) => backends.routing.apply(sys, op),
        Op::Nft(op) => backends.nft.apply(sys, op),
        Op::Ipt(op) => backends.iptables.apply(sys, op),
        Op::Foreign(op) => backends.foreign.apply(sys, op),
        Op::Ros(op) => backends.routeros.apply(sys, op),
    }
}

/// Remember what an operation changed in what Warren owns.
fn record(owned: &mut Owned, claim: Claim) {
    match claim {
        Claim::Created(name) => {
            owned.interfaces.insert(name);
        }
        Claim::Deleted(name) => {
            owned.interfaces.remove(&name);
        }
        Claim::SysctlOriginal { key, value } => {
            // The first original is the one teardown restores.
            owned.sysctl_orig.entry(key).or_insert(value);
        }
    }
}

impl Engine<Live> {
    pub fn new(cfg: Config) -> Result<Engine> {
        Engine::with_sys(cfg, Live::default())
    }
}

impl<S: Sys> Engine<S> {
    pub fn with_sys(cfg: Config, sys: S) -> Result<Engine<S>> {
        let store = Store::open(&cfg.state_dir)?;
        let keys = WgKeys::in_state_dir(&cfg.state_dir);
        let mut backends = Backends::new(cfg.wireguard, keys.clone());
        if let Some(r) = &cfg.routeros {
            backends.routeros = backend::routeros::RouterOs::live(r.password_file.clone());
        }
        Ok(Engine {
            cfg,
            store,
            sys,
            backends,
            keys,
            window_secs: 300,
            ros_notes: Vec::new(),
        })
    }

    /// For a RouterOS plan, the router's rows read now over REST (or why
    /// not), for the doctor; `None` for a Linux plan.
    pub fn read_router(&self, plan: &Plan) -> Option<Result<warren_plan::RosState, String>> {
        let access = &plan.routeros.as_ref()?.access;
        Some(self.backends.routeros.probe(access).map_err(|e| format!("{e:#}")))
    }

    /// Writes to live state that succeeded so far.
    pub fn writes(&self) -> usize {
        self.sys.writes() + self.backends.routeros.writes()
    }

    /// Whether this agent drives a RouterOS router (`[routeros]`).
    pub fn drives_router(&self) -> bool {
        self.cfg.routeros.is_some()
    }

    pub fn verify(&self, sp: &SignedPlan, check_serial: bool) -> Result<(), VerifyError> {
        let trusted = self.cfg.trusted().unwrap_or_default();
        let last = if check_serial {
            self.store.max_serial().ok().flatten()
        } else {
            None
        };
        warren_plan::verify(sp, &trusted, &self.cfg.host, last)?;
        crate::admit::admit(&sp.plan, &self.sys, &self.store, self.drives_router())
    }

    pub fn observe(&self, plans: &[&Plan]) -> Result<State> {
        let owned = self.store.owned()?;
        let scope = Scope {
            plans: plans.to_vec(),
            owned_interfaces: &owned.interfaces,
        };
        self.backends.observe(&self.sys, &scope)
    }

    /// The identity and WireGuard public keys, creating the identity and a
    /// key for each of `interfaces` if missing.
    /// An agent that drives a router creates no WireGuard key: it lists the
    /// router's own public keys, as last observed.
    pub fn public_keys(&self, interfaces: &[String]) -> Result<PublicKeys> {
        let identity = keys::ensure_identity(&self.cfg.state_dir)?;
        if self.drives_router() {
            return Ok(PublicKeys {
                identity,
                wireguard: self.store.routeros_keys()?,
            });
        }
        for i in interfaces {
            self.keys.ensure(i)?;
        }
        Ok(PublicKeys {
            identity,
            wireguard: self.keys.all()?,
        })
    }

    /// This host's public key per planned interface, without creating any:
    /// a missing one is [`OwnKey::ToGenerate`].
    fn own_keys(&self, plan: &Plan) -> Result<BTreeMap<String, OwnKey>> {
        if plan.platform == Platform::Routeros {
            // The router generates its own keys.
            return Ok(BTreeMap::new());
        }
        plan.wireguard
            .iter()
            .map(|i| {
                let key = self.keys.public(&i.name)?;
                Ok((i.name.clone(), key.map_or(OwnKey::ToGenerate, OwnKey::Public)))
            })
            .collect()
    }

    /// Like [`Engine::own_keys`], generating the missing keys.
    fn generate_keys(&self, plan: &Plan) -> Result<BTreeMap<String, OwnKey>> {
        if plan.platform == Platform::Routeros {
            return Ok(BTreeMap::new());
        }
        plan.wireguard
            .iter()
            .map(|i| Ok((i.name.clone(), OwnKey::Public(self.keys.ensure(&i.name)?))))
            .collect()
    }

    /// What it would take to make the live state match `plan`. Read-only:
    /// it creates no key (see [`OwnKey::ToGenerate`]).
    pub fn changes(&self, plan: &Plan, mem: Option<&NftMemory>) -> Result<Vec<Change>> {
        self.changes_with(plan, mem, self.own_keys(plan)?)
    }

    fn changes_with(
        &self,
        plan: &Plan,
        mem: Option<&NftMemory>,
        own_keys: BTreeMap<String, OwnKey>,
    ) -> Result<Vec<Change>> {
        Ok(self.changes_and_state(plan, mem, own_keys)?.0)
    }

    /// The changes, and the live state they were computed from.
    fn changes_and_state(
        &self,
        plan: &Plan,
        mem: Option<&NftMemory>,
        own_keys: BTreeMap<String, OwnKey>,
    ) -> Result<(Vec<Change>, State)> {
        // Observe what the running plan and a journaled apply may have set
        // too, so that converging away from them sees it.
        let mut plans = vec![plan];
        let applied = self.running()?;
        if let Some(a) = &applied {
            plans.push(&a.signed.plan);
        }
        let journal = self.store.pending().ok().flatten();
        if let Some(j) = &journal {
            plans.push(&j.plan.plan);
        }
        let live = self.observe(&plans)?;
        if let Some(r) = &live.routeros {
            self.remember_router_keys(r);
        }
        let owned = self.store.owned()?;
        let cx = Context {
            own_keys,
            owned_interfaces: owned.interfaces,
            nft_memory: mem,
        };
        Ok((warren_plan::diff(plan, &live, &cx), live))
    }

    /// Record the router's WireGuard public keys when they changed (the
    /// transport sends them to the controller).
    fn remember_router_keys(&self, live: &warren_plan::RosState) {
        let keys = backend::routeros::router_keys(live);
        match self.store.routeros_keys() {
            Ok(old) if old == keys => {}
            Ok(_) | Err(_) => {
                tracing::info!(
                    interfaces = keys.len(),
                    "routeros: recording the router's WireGuard public keys"
                );
                if let Err(e) = self.store.set_routeros_keys(&keys) {
                    tracing::error!("{e:#}");
                }
            }
        }
    }

    /// Converge a RouterOS plan: the ops go to the router under its dead
    /// man's switch (armed only when something changes).
    fn converge_routeros(&mut self, plan: &Plan) -> Result<(Vec<Change>, Option<NftMemory>)> {
        let (changes, live) = self.changes_and_state(plan, None, BTreeMap::new())?;
        self.ros_notes.clear();
        if changes.is_empty() {
            return Ok((changes, None));
        }
        let live = live.routeros.unwrap_or_default();
        let notes =
            self.backends
                .routeros
                .converge(&changes, &live, plan.routeros.as_ref(), self.window_secs)?;
        self.ros_notes = notes;
        Ok((changes, None))
    }

    /// Apply whatever differs; return the changes made and the nft memory.
    pub fn converge(
        &mut self,
        plan: &Plan,
        mem: Option<&NftMemory>,
    ) -> Result<(Vec<Change>, Option<NftMemory>)> {
        if plan.platform == Platform::Routeros {
            return self.converge_routeros(plan);
        }
        let own_keys = self.generate_keys(plan)?;
        let changes = self.changes_with(plan, mem, own_keys)?;
        self.apply_changes(&changes)?;
        let memory = self.nft_memory(plan, mem, &changes)?;
        Ok((changes, memory))
    }

    /// Apply `changes` in order, remembering after each one what Warren owns
    /// (also when it failed: what came before it stays owned).
    fn apply_changes(&mut self, changes: &[Change]) -> Result<()> {
        let mut owned = self.store.owned()?;
        for c in changes {
            tracing::info!(change = %c, "applying");
            let result = dispatch(&mut self.backends, &mut self.sys, &c.op);
            if let Ok(Some(claim)) = &result {
                record(&mut owned, claim.clone());
            }
            self.store.set_owned(&owned)?;
            result.map_err(|e| anyhow!("{}: {e:#}", c.resource))?;
        }
        Ok(())
    }

    /// What to remember of the nft table after converging to `plan`: the
    /// previous memory if the same table is still untouched, else the
    /// kernel's read-back now.
    fn nft_memory(
        &self,
        plan: &Plan,
        mem: Option<&NftMemory>,
        changes: &[Change],
    ) -> Result<Option<NftMemory>> {
        let digest = match &plan.firewall {
            Firewall::Nftables(t) => warren_plan::hash_hex(t),
            Firewall::Iptables(r) => warren_plan::hash_hex(r),
            Firewall::None => return Ok(None),
        };
        let replaced = changes.iter().any(|c| {
            matches!(
                c.op,
                Op::Nft(NftOp::ReplaceTable { .. }) | Op::Ipt(IptOp::ReplaceChains { .. })
            )
        });
        if let Some(m) = mem.filter(|m| m.digest == digest && !replaced) {
            return Ok(Some(m.clone()));
        }
        let normalized = match &plan.firewall {
            Firewall::Iptables(_) => self.backends.iptables.read(&self.sys)?.map(|s| s.normalized),
            Firewall::Nftables(_) | Firewall::None => backend::nft::read(&self.sys)?.map(|s| s.normalized),
        };
        Ok(normalized.map(|normalized| NftMemory { digest, normalized }))
    }

    /// The running plan: `applied.json`, or, when that cannot be read (a
    /// corrupt file, EIO), the last confirmed plan, which is what the host
    /// falls back to.
    pub fn running(&self) -> Result<Option<Applied>> {
        match self.store.applied() {
            Ok(a) => Ok(a),
            Err(e) => {
                tracing::error!("{e:#}: using the last confirmed plan instead");
                self.store.last_confirmed()
            }
        }
    }

    /// Verify `sp` for applying: everything [`warren_plan::verify`] checks,
    /// and a serial above the high-water mark, except for the re-delivery of
    /// the running plan (same serial, same hash), which is converged again.
    fn verify_for_apply(&self, sp: &SignedPlan, running: Option<&Applied>) -> Result<(), VerifyError> {
        self.verify(sp, false)?;
        if is_redelivery(sp, running) {
            return Ok(());
        }
        // The running serial is a floor too, should `serial.json` be lost.
        let floor = [
            self.store.max_serial().ok().flatten(),
            running.map(|a| a.signed.envelope.serial),
        ]
        .into_iter()
        .flatten()
        .max();
        match floor {
            Some(last) if sp.envelope.serial <= last => Err(VerifyError::OldSerial {
                got: sp.envelope.serial,
                last,
            }),
            _ => Ok(()),
        }
    }

    /// Verify and apply a signed plan, journaled: on any failure the host
    /// goes back to the last confirmed plan at once. `confirmed`: the plan
    /// needs no confirmation (`apply`); a re-delivery keeps the running
    /// plan's confirmation.
    pub fn apply_signed(&mut self, sp: SignedPlan, confirmed: bool) -> Result<Vec<Change>, ApplyError> {
        let running = self.running().map_err(ApplyError::Failed)?;
        self.verify_for_apply(&sp, running.as_ref()).map_err(|e| {
            self.report(Some(&sp), Outcome::Rejected, &e.to_string(), vec![]);
            ApplyError::Rejected(e)
        })?;
        let confirmed = confirmed
            || (is_redelivery(&sp, running.as_ref()) && running.as_ref().is_some_and(|a| a.confirmed));
        let fallback = self.store.last_confirmed().map_err(ApplyError::Failed)?;
        // The serial is spent as soon as we start: a failed or rolled-back
        // plan can never be replayed.
        self.store
            .raise_serial(sp.envelope.serial)
            .map_err(ApplyError::Failed)?;
        let journal = Journal { plan: sp, fallback };
        self.store
            .set_pending(Some(&journal))
            .map_err(ApplyError::Failed)?;
        let mem = running.and_then(|a| a.nft);
        self.finish(journal, mem.as_ref(), confirmed, "")
    }

    /// Converge to the journaled plan and record it, or, if anything fails,
    /// restore the journal's fallback and report `failed`. The journal is
    /// removed either way. `note` starts the report's message.
    fn finish(
        &mut self,
        journal: Journal,
        mem: Option<&NftMemory>,
        confirmed: bool,
        note: &str,
    ) -> Result<Vec<Change>, ApplyError> {
        self.window_secs = journal.plan.envelope.confirm_secs;
        let result = self
            .converge(&journal.plan.plan, mem)
            .and_then(|(changes, nft)| self.remember(journal.plan.clone(), nft, confirmed, changes, note));
        if let Err(e) = &result {
            self.undo(&journal, e);
        }
        if let Err(e) = self.store.set_pending(None) {
            tracing::error!("cannot remove the apply journal: {e:#}");
        }
        result.map_err(ApplyError::Failed)
    }

    /// After a failed apply of the journaled plan: restore the last
    /// confirmed plan and report `failed`, naming what failed.
    fn undo(&mut self, journal: &Journal, err: &anyhow::Error) {
        let fallback = journal.fallback.as_ref();
        let restored = match self.restore(fallback) {
            Ok(c) => format!("restored {} ({} changes)", describe(fallback), c.len()),
            Err(e) => format!("restoring {} failed too: {e:#}", describe(fallback)),
        };
        self.report(
            Some(&journal.plan),
            Outcome::Failed,
            &format!("{err:#}; {restored}"),
            vec![],
        );
    }

    /// Converge to `target` (a confirmed plan) and record it as running and
    /// confirmed; with no target, remove everything Warren owns.
    fn restore(&mut self, target: Option<&Applied>) -> Result<Vec<Change>> {
        let Some(t) = target else {
            let c = self.teardown()?;
            self.store.set_applied(None)?;
            return Ok(c);
        };
        self.window_secs = t.signed.envelope.confirm_secs;
        let (changes, nft) = self.converge(&t.signed.plan.clone(), t.nft.as_ref())?;
        let a = Applied {
            nft,
            confirmed: true,
            applied_at: unix_now(),
            ..t.clone()
        };
        self.store.set_applied(Some(&a))?;
        self.store.set_last_confirmed(Some(&a))?;
        Ok(changes)
    }

    /// After a successful apply of `sp`: record it as running (and as the
    /// last confirmed plan if it needs no confirmation), and report.
    fn remember(
        &mut self,
        sp: SignedPlan,
        nft: Option<NftMemory>,
        confirmed: bool,
        changes: Vec<Change>,
        note: &str,
    ) -> Result<Vec<Change>> {
        let a = Applied {
            signed: sp,
            nft,
            confirmed,
            applied_at: unix_now(),
        };
        self.store.set_applied(Some(&a))?;
        if confirmed {
            self.store.set_last_confirmed(Some(&a))?;
        }
        let outcome = if changes.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::Applied
        };
        let ros: String = std::mem::take(&mut self.ros_notes)
            .iter()
            .map(|n| format!("; {n}"))
            .collect();
        self.report(
            Some(&a.signed),
            outcome,
            &format!("{note}{} changes{ros}", changes.len()),
            changes.clone(),
        );
        Ok(changes)
    }

    /// Mark the running plan confirmed if its serial is `serial`; whether
    /// it is (now) the confirmed running plan.
    pub fn confirm(&mut self, serial: u64) -> Result<bool> {
        let Some(mut a) = self.running()? else {
            return Ok(false);
        };
        if a.signed.envelope.serial != serial {
            return Ok(false);
        }
        let recorded = self.store.last_confirmed()?.map(|c| c.signed.envelope.serial);
        if a.confirmed && recorded == Some(serial) {
            return Ok(true);
        }
        a.confirmed = true;
        self.store.set_applied(Some(&a))?;
        self.store.set_last_confirmed(Some(&a))?;
        Ok(true)
    }

    /// At start-up, before anything else: finish (or undo) an apply that a
    /// crash interrupted, else bring the live state back to the running
    /// plan whatever the drift policy (after a reboot nothing of it is
    /// left: restoring what Warren owns is not healing someone else's
    /// change). Returns the envelope of a journaled plan, whose leftover
    /// copy in the inbox must not be applied (nor rejected) again.
    pub fn start_up(&mut self) -> Option<warren_plan::Envelope> {
        self.repair_last_confirmed();
        match self.store.pending() {
            Ok(Some(j)) => {
                let envelope = j.plan.envelope.clone();
                self.finish_interrupted(j);
                Some(envelope)
            }
            Ok(None) => {
                self.restore_running();
                None
            }
            Err(e) => {
                let msg = format!("{e:#}: cannot tell what a crash interrupted");
                self.recover(&msg);
                let _ = self.store.set_pending(None);
                None
            }
        }
    }

    /// A confirmed `applied.json` is the last confirmed plan (state written
    /// before `confirmed.json` existed, or a crash between the two writes).
    fn repair_last_confirmed(&mut self) {
        let Ok(Some(a)) = self.store.applied() else {
            return;
        };
        let recorded = self.store.last_confirmed().ok().flatten();
        if a.confirmed && recorded.map(|c| c.signed.envelope.serial) != Some(a.signed.envelope.serial) {
            if let Err(e) = self.store.set_last_confirmed(Some(&a)) {
                tracing::error!("{e:#}");
            }
        }
    }

    /// The agent died mid-apply: finish the journaled apply as unconfirmed
    /// (its window starts now), or undo it if that fails.
    fn finish_interrupted(&mut self, j: Journal) {
        let serial = j.plan.envelope.serial;
        tracing::warn!(serial, "an apply was interrupted: finishing it");
        let mem = self.running().ok().flatten().and_then(|a| a.nft);
        let note = format!("finished the apply of serial {serial} interrupted by a restart: ");
        if let Err(e) = self.finish(j, mem.as_ref(), false, &note) {
            tracing::error!(serial, "{e}");
        }
    }

    /// Converge to the running plan; report `healed` if that changed
    /// anything. An unreadable `applied.json` falls back to the last
    /// confirmed plan.
    fn restore_running(&mut self) {
        let a = match self.store.applied() {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => return self.recover(&format!("{e:#}")),
        };
        self.window_secs = a.signed.envelope.confirm_secs;
        match self.converge(&a.signed.plan.clone(), a.nft.as_ref()) {
            Ok((changes, nft)) => {
                if nft != a.nft {
                    let a = Applied { nft, ..a.clone() };
                    if let Err(e) = self.store.set_applied(Some(&a)) {
                        tracing::error!("{e:#}");
                    }
                }
                if !changes.is_empty() {
                    let msg = format!("restored at start-up: {} changes re-applied", changes.len());
                    self.report(Some(&a.signed), Outcome::Healed, &msg, changes);
                }
            }
            Err(e) => {
                let msg = format!("cannot restore the running plan at start-up: {e:#}");
                self.report(Some(&a.signed), Outcome::Failed, &msg, vec![]);
            }
        }
    }

    /// The state directory cannot say what runs (`why`): restore the last
    /// confirmed plan, and say so loudly.
    fn recover(&mut self, why: &str) {
        let target = match self.store.last_confirmed() {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("{why}; and {e:#}: the host is left as it is");
                return self.report(None, Outcome::Failed, &msg, vec![]);
            }
        };
        let done = match self.restore(target.as_ref()) {
            Ok(c) => format!("restored {} ({} changes)", describe(target.as_ref()), c.len()),
            Err(e) => format!("restoring {} failed: {e:#}", describe(target.as_ref())),
        };
        let sp = target.as_ref().map(|t| &t.signed);
        self.report(sp, Outcome::Failed, &format!("{why}; {done}"), vec![]);
    }

    /// Drift: what no longer matches the running plan.
    pub fn drift(&self) -> Result<Option<(Applied, Vec<Change>)>> {
        let Some(a) = self.running()? else {
            return Ok(None);
        };
        let changes = self.changes(&a.signed.plan, a.nft.as_ref())?;
        Ok(Some((a, changes)))
    }

    /// Re-apply the running plan (heal).
    pub fn heal(&mut self) -> Result<Vec<Change>> {
        let Some(mut a) = self.running()? else {
            return Ok(vec![]);
        };
        self.window_secs = a.signed.envelope.confirm_secs;
        let (changes, nft) = self.converge(&a.signed.plan.clone(), a.nft.as_ref())?;
        a.nft = nft;
        self.store.set_applied(Some(&a))?;
        Ok(changes)
    }

    /// Restore the last confirmed plan (or remove everything if none was
    /// ever confirmed): an unconfirmed plan is never restored, whatever was
    /// applied before it. The serial high-water mark stays where it is.
    pub fn rollback(&mut self) -> Result<Vec<Change>> {
        let bad = self.running()?;
        let target = self.store.last_confirmed()?;
        let changes = self.restore(target.as_ref())?;
        let serial = bad.as_ref().map(|b| b.signed.envelope.serial);
        self.report(
            target.as_ref().map(|p| &p.signed),
            Outcome::RolledBack,
            &format!(
                "serial {} was not confirmed in time; restored {}",
                serial.unwrap_or(0),
                describe(target.as_ref())
            ),
            changes.clone(),
        );
        Ok(changes)
    }

    /// Forget every plan (after a teardown).
    pub fn forget(&mut self) -> Result<()> {
        self.store.set_applied(None)?;
        self.store.set_previous(None)?;
        self.store.set_last_confirmed(None)?;
        self.store.set_pending(None)
    }

    /// Remove everything Warren owns on this host and restore sysctls.
    pub fn teardown(&mut self) -> Result<Vec<Change>> {
        // A router agent tears down the router's rows (found through the
        // running plan), never its own host.
        let empty = if self.drives_router() {
            Plan {
                platform: Platform::Routeros,
                ..Plan::empty(&self.cfg.host)
            }
        } else {
            Plan::empty(&self.cfg.host)
        };
        let (changes, _) = self.converge(&empty, None)?;
        let mut owned = self.store.owned()?;
        for (k, v) in std::mem::take(&mut owned.sysctl_orig) {
            if let Err(e) = backend::sysctl::write(&mut self.sys, &k, &v) {
                tracing::warn!("cannot restore {k}: {e:#}");
            }
        }
        self.store.set_owned(&owned)?;
        Ok(changes)
    }

    /// Log an event and write it as a report (the latest, and the outbox).
    pub fn report(&self, sp: Option<&SignedPlan>, outcome: Outcome, message: &str, changes: Vec<Change>) {
        let r = Report {
            seq: 0,
            host: self.cfg.host.clone(),
            serial: sp.map(|s| s.envelope.serial),
            commit: sp.map(|s| s.envelope.commit.clone()),
            outcome,
            message: message.to_string(),
            changes,
            at: unix_now(),
        };
        let outcome = outcome.as_str();
        if needs_attention(r.outcome) {
            tracing::warn!(outcome, message, "report");
        } else {
            tracing::info!(outcome, message, "report");
        }
        if let Err(e) = self.store.report(&r) {
            tracing::error!("cannot write report: {e:#}");
        }
    }
}

/// Whether `sp` is the running plan again (same serial, same hash).
fn is_redelivery(sp: &SignedPlan, running: Option<&Applied>) -> bool {
    running.is_some_and(|a| {
        a.signed.envelope.serial == sp.envelope.serial
            && a.signed.envelope.plan_sha256 == sp.envelope.plan_sha256
    })
}

/// How a report names a restored plan.
fn describe(target: Option<&Applied>) -> String {
    match target {
        Some(t) => format!("the last confirmed plan (serial {})", t.signed.envelope.serial),
        None => "the state before any plan (nothing was ever confirmed)".into(),
    }
}

/// Outcomes logged as warnings: the host is not running what was asked.
fn needs_attention(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Rejected | Outcome::Failed | Outcome::RolledBack | Outcome::Drift => true,
        Outcome::Applied | Outcome::Unchanged | Outcome::Healed | Outcome::InSync => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use crate::testing::{scratch, Scratch};
    use ed25519_dalek::SigningKey;
    use warren_plan::nft::NftTable;
    use warren_plan::{PeerKey, PolicyRule, Route, WgInterface, WgPeer};

    const CONTROLLER: [u8; 32] = [5; 32];

    /// An engine on a pretend host with no WireGuard interface and no nft
    /// table, whose `ip_forward` is 0.
    fn engine(dir: &Scratch) -> Engine<Recorder> {
        crate::testing::pretend_engine(dir, CONTROLLER)
    }

    fn plan() -> Plan {
        let cidr = |s: &str| s.parse().unwrap();
        Plan {
            format: warren_plan::FORMAT,
            host: "router".into(),
            platform: warren_plan::Platform::Linux,
            drift: warren_plan::Drift::Report,
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            wireguard: vec![WgInterface {
                name: "wg0".into(),
                addresses: vec![cidr("10.0.18.2/24")],
                listen_port: Some(51820),
                mtu: 1420,
                peers: vec![WgPeer {
                    name: "gateway".into(),
                    public_key: PeerKey::Known("R0FURQ==".into()),
                    endpoint: Some("203.0.113.10:51820".into()),
                    allowed_ips: vec![cidr("10.0.18.1/32")],
                    persistent_keepalive: Some(25),
                }],
            }],
            routes: vec![Route {
                table: 100,
                dst: cidr("0.0.0.0/0"),
                dev: "wg0".into(),
                via: None,
            }],
            rules: vec![PolicyRule {
                priority: 456,
                fwmark: Some(10),
                from: None,
                table: 100,
            }],
            firewall: Firewall::Nftables(NftTable {
                name: warren_plan::nft::TABLE.into(),
                sets: vec![],
                maps: vec![],
                chains: vec![],
            }),
            openings: Default::default(),
            routeros: None,
            notes: vec![],
        }
    }

    #[test]
    fn a_diff_creates_no_key_and_says_one_will_be_generated() {
        let dir = scratch("engine-diff");
        let e = engine(&dir);
        let changes = e.changes(&plan(), None).unwrap();
        assert!(!dir.join("wg").exists(), "diff created the key directory");
        assert!(
            changes.iter().any(|c| c.to_string()
                == "interface wg0 private key: expected a new key, generated on apply, found no key"),
            "{changes:#?}"
        );
        assert!(e.drift().unwrap().is_none());
        assert!(e.sys.log.is_empty(), "diff wrote {:?}", e.sys.log);
    }

    #[test]
    fn each_op_reaches_its_backend_in_plan_order() {
        let dir = scratch("engine-converge");
        let mut e = engine(&dir);
        let plan = plan();
        let (changes, memory) = e.converge(&plan, None).unwrap();
        assert_eq!(changes.len(), 11, "{changes:#?}");
        let Firewall::Nftables(table) = &plan.firewall else {
            unreachable!()
        };
        let key = dir.join("wg").join("wg0.key");
        assert_eq!(
            e.sys.log,
            [
                "ip link add dev wg0 type wireguard".to_string(),
                format!("wg set wg0 private-key {}", key.display()),
                "wg set wg0 listen-port 51820".into(),
                "ip link set dev wg0 mtu 1420".into(),
                "ip address add 10.0.18.2/24 dev wg0".into(),
                "ip link set dev wg0 up".into(),
                "write /proc/sys/net/ipv4/ip_forward 1".into(),
                "wg set wg0 peer R0FURQ== allowed-ips 10.0.18.1/32 persistent-keepalive 25 endpoint 203.0.113.10:51820".into(),
                "ip -4 route replace default dev wg0 table 100 proto 77".into(),
                "ip -4 rule add priority 456 fwmark 0xa table 100 protocol 77".into(),
                format!("nft -j -f - <<< {}", table.to_json_replace()),
            ]
        );
        assert_eq!(e.sys.writes(), 11);
        assert_eq!(memory, None, "the pretend kernel shows no table to remember");
        let owned = e.store.owned().unwrap();
        assert_eq!(owned.interfaces, ["wg0".to_string()].into());
        assert_eq!(
            owned.sysctl_orig,
            [("net.ipv4.ip_forward".to_string(), "0".to_string())].into()
        );

        // Teardown restores the sysctl and forgets it.
        e.sys.log.clear();
        e.teardown().unwrap();
        assert_eq!(e.sys.log, ["write /proc/sys/net/ipv4/ip_forward 0"]);
        assert!(e.store.owned().unwrap().sysctl_orig.is_empty());
    }

    #[test]
    fn a_failed_op_stops_the_apply_and_keeps_what_was_claimed() {
        let dir = scratch("engine-fail");
        let mut e = engine(&dir);
        e.sys.failing.insert("ip link set dev wg0 mtu 1420".into());
        let err = e.converge(&plan(), None).unwrap_err();
        assert!(format!("{err:#}").starts_with("interface wg0 mtu: "), "{err:#}");
        assert_eq!(e.sys.writes(), 3, "{:?}", e.sys.log);
        assert_eq!(e.store.owned().unwrap().interfaces, ["wg0".to_string()].into());
    }

    #[test]
    fn reports_carry_typed_outcomes() {
        let dir = scratch("engine-report");
        let mut e = engine(&dir);
        let signed = |serial, key: &[u8; 32]| {
            warren_plan::sign(plan(), serial, "c0ffee", 60, 1, &SigningKey::from_bytes(key))
        };
        let outcome = |e: &Engine<Recorder>| e.store.last_report().unwrap().map(|r| r.outcome);

        assert!(matches!(
            e.apply_signed(signed(1, &[6; 32]), true),
            Err(ApplyError::Rejected(VerifyError::BadSignature))
        ));
        assert_eq!(outcome(&e), Some(Outcome::Rejected));
        assert!(e.sys.log.is_empty());

        e.apply_signed(signed(2, &CONTROLLER), true).unwrap();
        assert_eq!(outcome(&e), Some(Outcome::Applied));
        let r = e.store.last_report().unwrap().unwrap();
        assert_eq!((r.serial, r.commit.as_deref()), (Some(2), Some("c0ffee")));

        e.sys.failing.insert("wg set wg0 listen-port 51820".into());
        let err = e.apply_signed(signed(3, &CONTROLLER), true).unwrap_err();
        assert!(err.to_string().starts_with("apply failed: "), "{err}");
        assert_eq!(outcome(&e), Some(Outcome::Failed));
    }

    fn signed(p: Plan, serial: u64) -> SignedPlan {
        warren_plan::sign(p, serial, "c0ffee", 60, 1, &SigningKey::from_bytes(&CONTROLLER))
    }

    /// The test plan with another MTU: a plan that differs in one place.
    fn plan_mtu(mtu: u16) -> Plan {
        let mut p = plan();
        p.wireguard[0].mtu = mtu;
        p
    }

    fn running_serial(e: &Engine<Recorder>) -> Option<u64> {
        e.store.applied().unwrap().map(|a| a.signed.envelope.serial)
    }

    fn last(e: &Engine<Recorder>) -> Report {
        e.store.last_report().unwrap().unwrap()
    }

    #[test]
    fn rollback_restores_the_last_confirmed_plan_never_an_unconfirmed_one() {
        let dir = scratch("engine-rollback-confirmed");
        let mut e = engine(&dir);
        e.apply_signed(signed(plan_mtu(1400), 2), true).unwrap();
        e.apply_signed(signed(plan_mtu(1410), 3), false).unwrap();
        e.apply_signed(signed(plan_mtu(1420), 4), false).unwrap();
        e.sys.log.clear();
        e.rollback().unwrap();
        let a = e.store.applied().unwrap().unwrap();
        assert_eq!((a.signed.envelope.serial, a.confirmed), (2, true));
        assert!(
            e.sys.log.contains(&"ip link set dev wg0 mtu 1400".to_string()),
            "{:?}",
            e.sys.log
        );
        assert_eq!(last(&e).outcome, Outcome::RolledBack);
        // Nothing was ever confirmed: a rollback removes everything.
        let dir = scratch("engine-rollback-none");
        let mut e = engine(&dir);
        e.apply_signed(signed(plan_mtu(1400), 2), false).unwrap();
        e.apply_signed(signed(plan_mtu(1410), 3), false).unwrap();
        e.rollback().unwrap();
        assert_eq!(running_serial(&e), None);
    }

    #[test]
    fn a_failed_apply_restores_the_last_confirmed_plan_at_once() {
        let dir = scratch("engine-failed-apply");
        let mut e = engine(&dir);
        e.apply_signed(signed(plan_mtu(1400), 2), true).unwrap();
        e.apply_signed(signed(plan_mtu(1410), 3), false).unwrap();
        e.sys.log.clear();
        let Firewall::Nftables(table) = plan().firewall else {
            unreachable!()
        };
        let nft = format!("nft -j -f - <<< {}", table.to_json_replace());
        // Serial 4 also moves the policy rule to table 101, which fails.
        let mut p4 = plan_mtu(1420);
        p4.rules[0].table = 101;
        e.sys
            .failing
            .insert("ip -4 rule add priority 456 fwmark 0xa table 101 protocol 77".into());
        let err = e.apply_signed(signed(p4, 4), false).unwrap_err();
        assert!(matches!(err, ApplyError::Failed(_)), "{err}");
        // What ran after the failure is the last confirmed plan again.
        let mtu = e
            .sys
            .log
            .iter()
            .rposition(|l| l == "ip link set dev wg0 mtu 1400");
        let new = e.sys.log.iter().position(|l| l == "ip link set dev wg0 mtu 1420");
        assert!(new.is_some() && mtu > new, "{:#?}", e.sys.log);
        assert!(
            !e.sys.log.contains(&nft) || e.sys.log.last() == Some(&nft),
            "{:#?}",
            e.sys.log
        );
        let a = e.store.applied().unwrap().unwrap();
        assert_eq!((a.signed.envelope.serial, a.confirmed), (2, true));
        let r = last(&e);
        assert_eq!((r.outcome, r.serial), (Outcome::Failed, Some(4)));
        assert!(r.message.contains("table 101"), "{}", r.message);
        assert!(
            r.message.contains("restored the last confirmed plan (serial 2)"),
            "{}",
            r.message
        );
        assert!(!dir.join("pending.json").exists(), "the journal is removed");
    }

    #[test]
    fn the_running_plan_delivered_again_is_converged_not_rejected() {
        let dir = scratch("engine-redelivery");
        let mut e = engine(&dir);
        let sp = signed(plan(), 2);
        e.apply_signed(sp.clone(), false).unwrap();
        e.apply_signed(sp.clone(), false).unwrap();
        let r = last(&e);
        // The pretend host never shows what was applied: `applied` again.
        assert!(
            matches!(r.outcome, Outcome::Applied | Outcome::Unchanged),
            "{r:?}"
        );
        assert_eq!(r.serial, Some(2));
        assert!(
            !e.store.applied().unwrap().unwrap().confirmed,
            "still awaiting its confirm"
        );
        // The same serial with another hash, or a lower one: a replay.
        for (p, serial) in [(plan_mtu(1400), 2), (plan(), 1)] {
            let err = e.apply_signed(signed(p, serial), false).unwrap_err();
            assert!(
                matches!(err, ApplyError::Rejected(VerifyError::OldSerial { .. })),
                "{err}"
            );
        }
        // A confirmed running plan delivered again stays confirmed.
        e.apply_signed(signed(plan(), 3), true).unwrap();
        e.apply_signed(signed(plan(), 3), false).unwrap();
        assert!(e.store.applied().unwrap().unwrap().confirmed);
    }

    #[test]
    fn start_up_restores_the_running_plan_whatever_the_drift_policy() {
        let dir = scratch("engine-start-up");
        let mut e = engine(&dir);
        let sp = signed(plan(), 2);
        assert_eq!(sp.plan.drift, warren_plan::Drift::Report);
        e.apply_signed(sp, true).unwrap();
        e.sys.log.clear();
        assert_eq!(e.start_up(), None);
        assert!(
            e.sys
                .log
                .contains(&"ip link add dev wg0 type wireguard".to_string()),
            "{:?}",
            e.sys.log
        );
        let r = last(&e);
        assert_eq!(r.outcome, Outcome::Healed);
        assert!(r.message.starts_with("restored at start-up"), "{}", r.message);
    }

    #[test]
    fn an_interrupted_apply_is_finished_unconfirmed_or_undone_at_start_up() {
        let dir = scratch("engine-journal");
        let mut e = engine(&dir);
        e.apply_signed(signed(plan_mtu(1400), 2), true).unwrap();
        let fallback = e.store.last_confirmed().unwrap();
        let crashed = Journal {
            plan: signed(plan_mtu(1420), 3),
            fallback,
        };
        e.store.raise_serial(3).unwrap();
        e.store.set_pending(Some(&crashed)).unwrap();
        assert_eq!(e.start_up().map(|env| env.serial), Some(3));
        let a = e.store.applied().unwrap().unwrap();
        assert_eq!((a.signed.envelope.serial, a.confirmed), (3, false));
        assert!(e.store.pending().unwrap().is_none());
        assert_eq!(
            e.store.last_confirmed().unwrap().unwrap().signed.envelope.serial,
            2
        );

        // Finishing fails: undone, back to the last confirmed plan.
        e.store
            .set_pending(Some(&Journal {
                plan: signed(plan_mtu(1410), 4),
                ..crashed
            }))
            .unwrap();
        e.sys.failing.insert("ip link set dev wg0 mtu 1410".into());
        assert_eq!(e.start_up().map(|env| env.serial), Some(4));
        let a = e.store.applied().unwrap().unwrap();
        assert_eq!((a.signed.envelope.serial, a.confirmed), (2, true));
        assert_eq!(last(&e).outcome, Outcome::Failed);
        assert!(e.store.pending().unwrap().is_none());
    }

    #[test]
    fn an_unreadable_applied_json_falls_back_to_the_last_confirmed_plan() {
        let dir = scratch("engine-corrupt");
        let mut e = engine(&dir);
        e.apply_signed(signed(plan_mtu(1400), 2), true).unwrap();
        std::fs::write(dir.join("applied.json"), "{").unwrap();
        assert_eq!(e.running().unwrap().unwrap().signed.envelope.serial, 2);
        e.sys.log.clear();
        assert_eq!(e.start_up(), None);
        assert!(
            e.sys.log.contains(&"ip link set dev wg0 mtu 1400".to_string()),
            "{:?}",
            e.sys.log
        );
        assert_eq!(running_serial(&e), Some(2), "applied.json is readable again");
        let r = last(&e);
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains("applied.json is corrupt"), "{}", r.message);
    }

    fn router_engine(dir: &Scratch) -> (Engine<Recorder>, crate::backend::routeros::fake::Fake) {
        let mut e = engine(dir);
        e.cfg.routeros = Some(crate::config::RouterOs {
            password_file: dir.join("pw"),
        });
        let fake = crate::backend::routeros::fake::Fake::default();
        e.backends.routeros = crate::backend::routeros::RouterOs::with_connector(fake.connector());
        (e, fake)
    }

    fn ros_plan(to: &str) -> Plan {
        use warren_plan::ros::{Place, RosAccess, RosConfig, RosEntry};
        let entry = |menu: &str, tag: &str, kv: &[(&str, &str)]| RosEntry {
            menu: menu.into(),
            tag: tag.into(),
            props: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            place: Place::InOrder,
        };
        Plan {
            platform: warren_plan::Platform::Routeros,
            routeros: Some(RosConfig {
                access: RosAccess {
                    address: "192.168.88.1".parse().unwrap(),
                    port: 443,
                    user: "warren".into(),
                    fingerprint: "0f".repeat(32),
                },
                entries: vec![
                    entry(
                        "interface/wireguard",
                        "if/wg0",
                        &[("name", "wg0"), ("listen-port", "51820")],
                    ),
                    entry(
                        "ip/address",
                        "addr/wg0",
                        &[("address", "10.0.18.2/30"), ("interface", "wg0")],
                    ),
                    entry(
                        "ip/firewall/nat",
                        "nat/minecraft-tcp",
                        &[
                            ("chain", "warren-dstnat"),
                            ("action", "dst-nat"),
                            ("to-addresses", to),
                        ],
                    ),
                ],
            }),
            // The interfaces are still listed for people: no local key for them.
            ..plan()
        }
    }

    #[test]
    fn a_routeros_plan_goes_to_the_router_only_and_a_no_op_writes_nothing() {
        let dir = scratch("engine-ros");
        let (mut e, fake) = router_engine(&dir);
        e.apply_signed(signed(ros_plan("192.168.16.20"), 2), false)
            .unwrap();
        assert_eq!(last(&e).outcome, Outcome::Applied);
        assert!(
            e.sys.log.is_empty(),
            "the agent's own host was changed: {:?}",
            e.sys.log
        );
        assert!(
            !dir.join("wg").exists(),
            "a local WireGuard key was made for the router's interface"
        );
        // Armed (2), three creations, disarmed (2).
        assert_eq!(e.writes(), 7);
        let menus = fake.router().menus.clone();
        assert_eq!(
            menus["ip/firewall/nat"][0].props["comment"],
            "warren:nat/minecraft-tcp"
        );
        assert!(menus["system/scheduler"].is_empty());

        // The router generated its key: recorded on the next observe.
        fake.router().menus.get_mut("interface/wireguard").unwrap()[0]
            .props
            .insert("public-key".into(), "Uk9VVEVS".into());
        let (_, drift) = e.drift().unwrap().unwrap();
        assert_eq!(drift, vec![]);
        assert_eq!(
            e.store.routeros_keys().unwrap(),
            BTreeMap::from([("wg0".to_string(), "Uk9VVEVS".to_string())])
        );

        // The same plan again: nothing written at all.
        fake.router().log.clear();
        e.apply_signed(signed(ros_plan("192.168.16.20"), 3), true)
            .unwrap();
        assert_eq!(last(&e).outcome, Outcome::Unchanged);
        assert_eq!(e.writes(), 7);
        assert!(
            fake.router().log.iter().all(|l| l.starts_with("GET ")),
            "{:?}",
            fake.router().log
        );

        // Drift made "in WinBox" is named per entry.
        fake.router().menus.get_mut("ip/firewall/nat").unwrap()[0]
            .props
            .insert("to-addresses".into(), "192.168.16.21".into());
        let (_, drift) = e.drift().unwrap().unwrap();
        assert_eq!(
            drift.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["routeros ip/firewall/nat warren:nat/minecraft-tcp: expected to-addresses=192.168.16.20, found to-addresses=192.168.16.21"]
        );

        // A failing write: the router's rollback runs at once, and the
        // agent converges back to the last confirmed plan.
        fake.router().failing.push("PUT ip/route".into());
        let mut p4 = ros_plan("192.168.16.30");
        let cfg = p4.routeros.as_mut().unwrap();
        let mut route = cfg.entries[1].clone();
        route.menu = "ip/route".into();
        route.tag = "route/warren-100/0.0.0.0/0".into();
        cfg.entries.push(route);
        let err = e.apply_signed(signed(p4, 4), false).unwrap_err();
        assert!(matches!(err, ApplyError::Failed(_)), "{err}");
        let r = last(&e);
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(
            r.message.contains("ran the router's rollback script"),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains("restored the last confirmed plan (serial 3) (1 changes)"),
            "{}",
            r.message
        );
        assert_eq!(
            fake.router().menus["ip/firewall/nat"][0].props["to-addresses"],
            "192.168.16.20"
        );

        // A Linux plan is refused by an agent that drives a router.
        let err = e.apply_signed(signed(plan(), 5), false).unwrap_err();
        assert!(err.to_string().contains("drives a RouterOS router"), "{err}");
    }

    #[test]
    fn a_router_agent_tears_down_the_routers_rows() {
        let dir = scratch("engine-ros-teardown");
        let (mut e, fake) = router_engine(&dir);
        e.apply_signed(signed(ros_plan("192.168.16.20"), 2), true)
            .unwrap();
        fake.router()
            .menus
            .get_mut("ip/firewall/nat")
            .unwrap()
            .push(warren_plan::ros::RosRow {
                id: "*9".into(),
                props: [("chain".to_string(), "dstnat".to_string())].into(),
            });
        let c = e.teardown().unwrap();
        assert_eq!(c.len(), 3, "{c:#?}");
        let r = fake.router();
        assert!(r.menus["interface/wireguard"].is_empty() && r.menus["ip/address"].is_empty());
        assert_eq!(r.menus["ip/firewall/nat"].len(), 1, "the foreign row stays");
        assert!(e.sys.log.is_empty());
    }

    #[test]
    fn a_confirm_records_the_last_confirmed_plan() {
        let dir = scratch("engine-confirm");
        let mut e = engine(&dir);
        e.apply_signed(signed(plan(), 2), false).unwrap();
        assert!(e.store.last_confirmed().unwrap().is_none());
        assert!(!e.confirm(1).unwrap());
        assert!(e.confirm(2).unwrap());
        assert!(e.store.applied().unwrap().unwrap().confirmed);
        assert_eq!(
            e.store.last_confirmed().unwrap().unwrap().signed.envelope.serial,
            2
        );
    }
}
