//! The reconcile engine: verify -> observe -> pure diff -> apply -> remember.

use crate::backend::{self, Backend, Scope};
use crate::config::Config;
use crate::store::{Applied, Report, Store};
use crate::sys::Sys;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use warren_plan::{Change, Context, Firewall, NftMemory, Plan, SignedPlan, State, VerifyError};

pub struct Engine {
    pub cfg: Config,
    pub store: Store,
    pub sys: Sys,
    backends: Vec<Box<dyn Backend>>,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why an apply did not happen or did not finish.
#[derive(Debug)]
pub enum ApplyError {
    Rejected(VerifyError),
    Failed(anyhow::Error),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Rejected(e) => write!(f, "plan rejected: {e}"),
            ApplyError::Failed(e) => write!(f, "apply failed: {e:#}"),
        }
    }
}

impl Engine {
    pub fn new(cfg: Config) -> Result<Engine> {
        let store = Store::open(&cfg.state_dir)?;
        let backends = backend::all(cfg.wireguard);
        Ok(Engine {
            cfg,
            store,
            sys: Sys::default(),
            backends,
        })
    }

    pub fn verify(&self, sp: &SignedPlan, check_serial: bool) -> Result<(), VerifyError> {
        let trusted = self.cfg.trusted().unwrap_or_default();
        let last = if check_serial {
            self.store.max_serial().ok().flatten()
        } else {
            None
        };
        warren_plan::verify(sp, &trusted, &self.cfg.host, last)
    }

    pub fn observe(&self, plans: &[&Plan]) -> Result<State> {
        let owned = self.store.owned()?;
        let scope = Scope {
            plans: plans.to_vec(),
            owned: &owned,
        };
        let mut st = State::default();
        for b in &self.backends {
            b.observe(&self.sys, &scope, &mut st)
                .map_err(|e| anyhow!("observing {}: {e:#}", b.name()))?;
        }
        Ok(st)
    }

    fn own_keys(&self, plan: &Plan) -> Result<BTreeMap<String, String>> {
        plan.wireguard
            .iter()
            .map(|i| {
                Ok((
                    i.name.clone(),
                    crate::keys::ensure_wg(&self.cfg.state_dir, &i.name)?,
                ))
            })
            .collect()
    }

    /// What it would take to make the live state match `plan`.
    pub fn changes(&self, plan: &Plan, mem: Option<&NftMemory>) -> Result<Vec<Change>> {
        let mut plans = vec![plan];
        let applied = self.store.applied()?;
        if let Some(a) = &applied {
            plans.push(&a.signed.plan);
        }
        let live = self.observe(&plans)?;
        let owned = self.store.owned()?;
        let cx = Context {
            own_keys: self.own_keys(plan)?,
            owned_interfaces: owned.interfaces,
            nft_memory: mem,
        };
        Ok(warren_plan::diff(plan, &live, &cx))
    }

    /// Apply whatever differs; return the changes made and the nft memory.
    pub fn converge(
        &mut self,
        plan: &Plan,
        mem: Option<&NftMemory>,
    ) -> Result<(Vec<Change>, Option<NftMemory>)> {
        let changes = self.changes(plan, mem)?;
        let mut owned = self.store.owned()?;
        for c in &changes {
            tracing::info!(change = %c, "applying");
            let b = self
                .backends
                .iter_mut()
                .find(|b| b.handles(&c.op))
                .ok_or_else(|| anyhow!("no backend for {:?}", c.op))?;
            let r = b.apply(&mut self.sys, &mut owned, &self.cfg.state_dir, &c.op);
            self.store.set_owned(&owned)?;
            r.map_err(|e| anyhow!("{}: {e:#}", c.resource))?;
        }
        let memory = match &plan.firewall {
            Firewall::Nftables(t) => {
                let digest = warren_plan::hash_hex(t);
                let unchanged = mem.filter(|m| {
                    m.digest == digest
                        && changes
                            .iter()
                            .all(|c| !matches!(c.op, warren_plan::Op::ReplaceTable { .. }))
                });
                match unchanged {
                    Some(m) => Some(m.clone()),
                    None => backend::nft::read(&self.sys)?.map(|s| NftMemory {
                        digest,
                        normalized: s.normalized,
                    }),
                }
            }
            Firewall::None => None,
        };
        Ok((changes, memory))
    }

    /// Verify and apply a signed plan; remember it (and the one before it).
    pub fn apply_signed(&mut self, sp: SignedPlan, confirmed: bool) -> Result<Vec<Change>, ApplyError> {
        self.verify(&sp, true).map_err(|e| {
            self.report(Some(&sp), "rejected", &e.to_string(), vec![]);
            ApplyError::Rejected(e)
        })?;
        let current = self.store.applied().map_err(ApplyError::Failed)?;
        let mem = current.as_ref().and_then(|a| a.nft.clone());
        // The serial is spent as soon as we start: a failed or rolled-back
        // plan can never be replayed.
        self.store
            .raise_serial(sp.envelope.serial)
            .map_err(ApplyError::Failed)?;
        match self.converge(&sp.plan, mem.as_ref()) {
            Ok((changes, nft)) => {
                if !changes.is_empty()
                    || current.as_ref().map(|c| c.signed.envelope.serial) != Some(sp.envelope.serial)
                {
                    self.store
                        .set_previous(current.as_ref())
                        .map_err(ApplyError::Failed)?;
                }
                let a = Applied {
                    signed: sp,
                    nft,
                    confirmed,
                    applied_at: now(),
                };
                self.store.set_applied(Some(&a)).map_err(ApplyError::Failed)?;
                let outcome = if changes.is_empty() {
                    "unchanged"
                } else {
                    "applied"
                };
                self.report(
                    Some(&a.signed),
                    outcome,
                    &format!("{} changes", changes.len()),
                    changes.clone(),
                );
                Ok(changes)
            }
            Err(e) => {
                self.report(Some(&sp), "failed", &format!("{e:#}"), vec![]);
                Err(ApplyError::Failed(e))
            }
        }
    }

    /// Drift: what no longer matches the last applied plan.
    pub fn drift(&self) -> Result<Option<(Applied, Vec<Change>)>> {
        let Some(a) = self.store.applied()? else {
            return Ok(None);
        };
        let changes = self.changes(&a.signed.plan, a.nft.as_ref())?;
        Ok(Some((a, changes)))
    }

    /// Re-apply the last applied plan (heal).
    pub fn heal(&mut self) -> Result<Vec<Change>> {
        let Some(mut a) = self.store.applied()? else {
            return Ok(vec![]);
        };
        let (changes, nft) = self.converge(&a.signed.plan.clone(), a.nft.as_ref())?;
        a.nft = nft;
        self.store.set_applied(Some(&a))?;
        Ok(changes)
    }

    /// Restore the state before the last apply (or remove everything if there
    /// was none). The serial high-water mark stays where it is.
    pub fn rollback(&mut self) -> Result<Vec<Change>> {
        let bad = self.store.applied()?;
        let prev = self.store.previous()?;
        let changes = match &prev {
            Some(p) => {
                let mem = bad.as_ref().and_then(|b| b.nft.clone());
                let (changes, nft) = self.converge(&p.signed.plan.clone(), mem.as_ref())?;
                let restored = Applied {
                    nft,
                    confirmed: true,
                    applied_at: now(),
                    ..p.clone()
                };
                self.store.set_applied(Some(&restored))?;
                changes
            }
            None => {
                let c = self.teardown()?;
                self.store.set_applied(None)?;
                c
            }
        };
        self.store.set_previous(None)?;
        let serial = bad.as_ref().map(|b| b.signed.envelope.serial);
        self.report(
            prev.as_ref().map(|p| &p.signed),
            "rolled_back",
            &format!(
                "serial {} was not confirmed in time; restored the previous state",
                serial.unwrap_or(0)
            ),
            changes.clone(),
        );
        Ok(changes)
    }

    /// Remove everything Warren owns on this host and restore sysctls.
    pub fn teardown(&mut self) -> Result<Vec<Change>> {
        let empty = Plan {
            format: warren_plan::FORMAT,
            host: self.cfg.host.clone(),
            platform: warren_plan::Platform::Linux,
            drift: warren_plan::Drift::Report,
            sysctls: BTreeMap::new(),
            wireguard: vec![],
            routes: vec![],
            rules: vec![],
            firewall: Firewall::None,
            notes: vec![],
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

    pub fn report(&self, sp: Option<&SignedPlan>, outcome: &str, message: &str, changes: Vec<Change>) {
        let r = Report {
            host: self.cfg.host.clone(),
            serial: sp.map(|s| s.envelope.serial),
            commit: sp.map(|s| s.envelope.commit.clone()),
            outcome: outcome.to_string(),
            message: message.to_string(),
            changes,
            at: now(),
        };
        match outcome {
            "rejected" | "failed" | "rolled_back" | "drift" => tracing::warn!(outcome, message, "report"),
            _ => tracing::info!(outcome, message, "report"),
        }
        if let Err(e) = self.store.report(&r) {
            tracing::error!("cannot write report: {e:#}");
        }
    }
}
