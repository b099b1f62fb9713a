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
use crate::store::{Applied, Owned, Store};
use crate::sys::{Live, Sys};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use warren_host::unix_now;
use warren_plan::diff::{NftOp, OwnKey};
use warren_plan::{Change, Context, Firewall, NftMemory, Op, Plan, SignedPlan, State, VerifyError};
use warren_wire::{Outcome, Report};

pub struct Engine<S: Sys = Live> {
    pub cfg: Config,
    pub store: Store,
    pub sys: S,
    backends: Backends,
    keys: WgKeys,
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
        let backends = Backends::new(cfg.wireguard, keys.clone());
        Ok(Engine {
            cfg,
            store,
            sys,
            backends,
            keys,
        })
    }

    /// Writes to live state that succeeded so far.
    pub fn writes(&self) -> usize {
        self.sys.writes()
    }

    pub fn verify(&self, sp: &SignedPlan, check_serial: bool) -> Result<(), VerifyError> {
        let trusted = self.cfg.trusted().unwrap_or_default();
        let last = if check_serial {
            self.store.max_serial().ok().flatten()
        } else {
            None
        };
        warren_plan::verify(sp, &trusted, &self.cfg.host, last)?;
        crate::admit::admit(&sp.plan, &self.sys, &self.store)
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
    pub fn public_keys(&self, interfaces: &[String]) -> Result<PublicKeys> {
        let identity = keys::ensure_identity(&self.cfg.state_dir)?;
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
        let mut plans = vec![plan];
        let applied = self.store.applied()?;
        if let Some(a) = &applied {
            plans.push(&a.signed.plan);
        }
        let live = self.observe(&plans)?;
        let owned = self.store.owned()?;
        let cx = Context {
            own_keys,
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
        let table = match &plan.firewall {
            Firewall::Nftables(t) => t,
            Firewall::None => return Ok(None),
        };
        let digest = warren_plan::hash_hex(table);
        let replaced = changes
            .iter()
            .any(|c| matches!(c.op, Op::Nft(NftOp::ReplaceTable { .. })));
        if let Some(m) = mem.filter(|m| m.digest == digest && !replaced) {
            return Ok(Some(m.clone()));
        }
        Ok(backend::nft::read(&self.sys)?.map(|s| NftMemory {
            digest,
            normalized: s.normalized,
        }))
    }

    /// Verify and apply a signed plan; remember it (and the one before it).
    pub fn apply_signed(&mut self, sp: SignedPlan, confirmed: bool) -> Result<Vec<Change>, ApplyError> {
        self.verify(&sp, true).map_err(|e| {
            self.report(Some(&sp), Outcome::Rejected, &e.to_string(), vec![]);
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
            Ok((changes, nft)) => self
                .remember(sp, current, nft, confirmed, changes)
                .map_err(ApplyError::Failed),
            Err(e) => {
                self.report(Some(&sp), Outcome::Failed, &format!("{e:#}"), vec![]);
                Err(ApplyError::Failed(e))
            }
        }
    }

    /// After a successful apply of `sp`: keep the plan it replaced (unless
    /// nothing happened), record `sp` as applied, and report.
    fn remember(
        &mut self,
        sp: SignedPlan,
        current: Option<Applied>,
        nft: Option<NftMemory>,
        confirmed: bool,
        changes: Vec<Change>,
    ) -> Result<Vec<Change>> {
        if !changes.is_empty()
            || current.as_ref().map(|c| c.signed.envelope.serial) != Some(sp.envelope.serial)
        {
            self.store.set_previous(current.as_ref())?;
        }
        let a = Applied {
            signed: sp,
            nft,
            confirmed,
            applied_at: unix_now(),
        };
        self.store.set_applied(Some(&a))?;
        let outcome = if changes.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::Applied
        };
        self.report(
            Some(&a.signed),
            outcome,
            &format!("{} changes", changes.len()),
            changes.clone(),
        );
        Ok(changes)
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
                    applied_at: unix_now(),
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
            Outcome::RolledBack,
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
    use crate::backend::wireguard::WgMode;
    use crate::sys::Recorder;
    use crate::testing::{scratch, Scratch};
    use ed25519_dalek::SigningKey;
    use warren_plan::nft::NftTable;
    use warren_plan::{PeerKey, PolicyRule, Route, WgInterface, WgPeer};

    const CONTROLLER: [u8; 32] = [5; 32];

    /// An engine on a pretend host with no WireGuard interface and no nft
    /// table, whose `ip_forward` is 0.
    fn engine(dir: &Scratch) -> Engine<Recorder> {
        let cfg = Config {
            host: "router".into(),
            state_dir: dir.to_path_buf(),
            trusted_controller_keys: vec![warren_wire::key_base64(
                &SigningKey::from_bytes(&CONTROLLER).verifying_key(),
            )],
            wireguard: WgMode::Kernel,
            drift_interval_secs: 30,
            controller: None,
        };
        let mut sys = Recorder::default();
        sys.reads
            .insert("ip -j -4 route show table all proto 77".into(), "[]".into());
        sys.reads.insert("ip -j -4 rule show".into(), "[]".into());
        sys.files
            .insert(backend::sysctl::path("net.ipv4.ip_forward"), "0\n".into());
        Engine::with_sys(cfg, sys).unwrap()
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
}
