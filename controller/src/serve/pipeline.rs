//! From a commit to signed plans: validate, compile with the keys agents
//! reported (and those pinned in the YAML), refuse disagreeing keys, sign
//! each changed plan with the host's next serial. An invalid commit is
//! recorded with its diagnostics and changes nothing: agents keep their plan.
//!
//! [`decide`] is the policy (what the commit amounts to, given the host
//! records) and writes nothing; [`process`] performs it on the store: it
//! reserves serials, signs, and records the commit.

use super::repo::Snapshot;
use super::store::{CommitOutcome, CommitRecord, HostRecord, Store};
use anyhow::Result;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use warren_compiler::KeyBook;
use warren_model::model::Role;
use warren_plan::{Plan, SignedPlan};

/// What processing a commit did.
pub struct Processed {
    pub record: CommitRecord,
    /// Plans to send, in rollout order.
    pub plans: Vec<(String, SignedPlan)>,
    pub config: Option<warren_model::Config>,
}

/// What a commit amounts to, decided from its text and the host records.
#[derive(Debug)]
pub enum Decision {
    /// Nothing is sent: agents keep their plan.
    Refused {
        outcome: CommitOutcome,
        diagnostics: Vec<String>,
    },
    /// The commit is good. `changed` are the hosts whose plan differs from
    /// their desired one, in rollout order (possibly none). `held` are the
    /// hosts that keep their current plan because their keys, or a peer's,
    /// were refused (host -> why); `bad_keys` the hosts whose own reported
    /// keys were refused.
    Accepted {
        config: Box<warren_model::Config>,
        changed: Vec<(String, Plan)>,
        held: BTreeMap<String, String>,
        bad_keys: std::collections::BTreeSet<String>,
    },
}

/// Rollout order: hosts reached through the WAN VPN (the router, agent
/// hosts) first, the gateway last, so that a change that breaks the tunnel
/// is caught and rolled back on the far side before the near side changes.
pub fn rollout_order(cfg: &warren_model::Config, hosts: &mut [String]) {
    hosts.sort_by_key(|h| {
        let role = cfg.hosts.get(h).map(|x| x.role);
        (matches!(role, Some(Role::Gateway)), h.clone())
    });
}

fn refused(outcome: CommitOutcome, diagnostics: Vec<String>) -> Decision {
    Decision::Refused { outcome, diagnostics }
}

/// Validate, check keys, compile, and keep the plans that changed.
pub fn decide(snap: &Snapshot, hosts: &BTreeMap<String, HostRecord>) -> Decision {
    let Some(text) = &snap.text else {
        let missing = format!("commit {} has no {}", snap.commit, crate::source::FILE);
        return refused(CommitOutcome::Invalid, vec![missing]);
    };
    let name = format!(
        "{}:{}",
        &snap.commit[..snap.commit.len().min(12)],
        crate::source::FILE
    );
    let (cfg, diags) = warren_model::load_str(text, &name);
    let Some(cfg) = cfg else {
        return refused(
            CommitOutcome::Invalid,
            diags.iter().map(|d| d.to_string()).collect(),
        );
    };
    let (kb, bad_keys) = keybook(&cfg, hosts);
    let mut plans = match warren_compiler::compile(&cfg, &kb) {
        Ok(p) => p,
        Err(e) => return refused(CommitOutcome::Error, vec![e.to_string()]),
    };
    let held = held_back(&plans, &bad_keys);
    plans.retain(|h, _| !held.contains_key(h));
    let changed = changed_plans(&cfg, plans, hosts);
    Decision::Accepted {
        config: Box::new(cfg),
        changed,
        held,
        bad_keys: bad_keys.into_keys().collect(),
    }
}

/// The prefix of a host error recorded because its reported keys were
/// refused; such an error is cleared once the keys are good again.
pub const KEY_ERROR: &str = "keys refused: ";

/// The keys to compile with: those pinned in the YAML, and those agents
/// reported where they are valid WireGuard keys (32 bytes of base64), agree
/// with the pin, and are nobody else's. A host with a bad key is refused
/// (host -> why) and none of its reported keys are used, so only its plan
/// and those of its peers are held back, never the whole commit.
///
/// The identity an agent presented is not compared here: it is the key its
/// SSH session authenticated with, which the config in force authorized.
/// When the YAML pins a new identity, the stored one is merely stale.
fn keybook(
    cfg: &warren_model::Config,
    hosts: &BTreeMap<String, HostRecord>,
) -> (KeyBook, BTreeMap<String, Vec<String>>) {
    let mut kb = KeyBook::pinned(cfg);
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Every key in use, by its bytes: who holds it (pinned or reported).
    let mut owners: BTreeMap<[u8; 32], Vec<(String, String, bool)>> = BTreeMap::new();
    for ((h, i), k) in &kb.0 {
        if let Some(b) = wg_key(k) {
            owners.entry(b).or_default().push((h.clone(), i.clone(), true));
        }
    }
    let mut reported = Vec::new();
    for (host, rec) in hosts.iter().filter(|(h, _)| cfg.hosts.contains_key(*h)) {
        for (iface, key) in &rec.wireguard {
            let pinned = kb.0.get(&(host.clone(), iface.clone()));
            match (wg_key(key), pinned.map(|p| (p, wg_key(p)))) {
                (None, _) => refused.entry(host.clone()).or_default().push(format!(
                    "interface {}: the agent reports {}, which is not a WireGuard key (32 bytes of base64)",
                    shown(iface),
                    shown(key)
                )),
                (Some(b), Some((p, pb))) if pb != Some(b) => refused.entry(host.clone()).or_default().push(format!(
                    "interface {}: the YAML pins WireGuard key {p} but the agent reports {}; fix the pin (or the agent)",
                    shown(iface),
                    shown(key)
                )),
                (Some(_), Some(_)) => {}
                (Some(b), None) => {
                    owners.entry(b).or_default().push((host.clone(), iface.clone(), false));
                    reported.push((host, iface, key));
                }
            }
        }
    }
    let established = established_keys(hosts);
    for (bytes, holders) in owners.iter().filter(|(_, v)| v.len() > 1) {
        // Blame the newcomers: a host whose peers already run with this key
        // as its key keeps it, unless every claimant does.
        let newcomer = |h: &String| !established.contains(&(h.clone(), *bytes));
        let any_newcomer = holders.iter().any(|(h, _, p)| !p && newcomer(h));
        for (h, i, _) in holders
            .iter()
            .filter(|(h, _, p)| !p && (!any_newcomer || newcomer(h)))
        {
            let others: Vec<String> = holders
                .iter()
                .filter(|(oh, oi, _)| (oh, oi) != (h, i))
                .map(|(oh, oi, _)| format!("host {oh:?} interface {}", shown(oi)))
                .collect();
            refused.entry(h.clone()).or_default().push(format!(
                "interface {}: the agent reports the WireGuard key of {}",
                shown(i),
                others.join(", ")
            ));
        }
    }
    for (host, iface, key) in reported {
        if !refused.contains_key(host) {
            kb.insert(host, iface, key);
        }
    }
    (kb, refused)
}

/// (host, key) pairs the hosts' current plans already use: host `h`'s key
/// as a peer of someone else.
fn established_keys(hosts: &BTreeMap<String, HostRecord>) -> std::collections::BTreeSet<(String, [u8; 32])> {
    let plans = hosts.values().filter_map(|r| r.desired.as_ref());
    let peers = plans.flat_map(|d| d.plan.wireguard.iter().flat_map(|i| i.peers.iter()));
    peers
        .filter_map(|p| match &p.public_key {
            warren_plan::PeerKey::Known(k) => Some((p.name.clone(), wg_key(k)?)),
            warren_plan::PeerKey::Pending { .. } => None,
        })
        .collect()
}

/// A WireGuard public key's 32 bytes, if `s` is one.
fn wg_key(s: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    raw.try_into().ok()
}

/// An agent-supplied string as it may appear in a message: escaped, and cut
/// short.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// Hosts whose plan is held back, and why: refused hosts, and hosts with a
/// peer whose key would come from a refused host.
fn held_back(
    plans: &BTreeMap<String, Plan>,
    refused: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, String> {
    let mut held: BTreeMap<String, String> = refused
        .iter()
        .map(|(h, why)| (h.clone(), why.join("; ")))
        .collect();
    for (host, plan) in plans {
        if held.contains_key(host) {
            continue;
        }
        if let Some((peer, _)) = plan
            .pending_keys()
            .into_iter()
            .find(|(p, _)| refused.contains_key(p))
        {
            held.insert(
                host.clone(),
                format!("waits for valid keys from host {peer:?}; keeps its current plan"),
            );
        }
    }
    held
}

/// The plans whose hash differs from the host's desired plan, in rollout
/// order: unchanged plans are not re-sent, so agents are not re-applied
/// needlessly.
fn changed_plans(
    cfg: &warren_model::Config,
    mut plans: BTreeMap<String, Plan>,
    hosts: &BTreeMap<String, HostRecord>,
) -> Vec<(String, Plan)> {
    let mut order: Vec<String> = plans.keys().cloned().collect();
    rollout_order(cfg, &mut order);
    order
        .into_iter()
        .filter_map(|host| {
            let plan = plans.remove(&host)?;
            let hash = warren_plan::hash_hex(&plan);
            let desired = hosts.get(&host).and_then(|r| r.desired.as_ref());
            let unchanged = desired.is_some_and(|d| d.envelope.plan_sha256 == hash);
            (!unchanged).then_some((host, plan))
        })
        .collect()
}

/// Decide what `snap` amounts to and record it: a good commit's changed
/// plans get the next serial (durably, before they leave) and are signed.
pub fn process(
    store: &Store,
    key: &SigningKey,
    snap: &Snapshot,
    confirm_secs: u32,
    now: u64,
) -> Result<Processed> {
    store.set_last_commit(&snap.commit)?;
    let mut record = CommitRecord {
        commit: snap.commit.clone(),
        summary: snap.summary.clone(),
        at: now,
        outcome: CommitOutcome::Unchanged,
        diagnostics: vec![],
        pushed: BTreeMap::new(),
    };
    let (config, changed, held, bad_keys) = match decide(snap, &store.hosts()?) {
        Decision::Refused { outcome, diagnostics } => {
            record.outcome = outcome;
            record.diagnostics = diagnostics;
            return refuse(store, record, now);
        }
        Decision::Accepted {
            config,
            changed,
            held,
            bad_keys,
        } => (config, changed, held, bad_keys),
    };
    record_key_errors(store, &config, &held, &bad_keys)?;
    let mut plans = Vec::new();
    for (host, plan) in changed {
        let serial = store.next_serial(&host)?;
        let sp = warren_plan::sign(plan, serial, &snap.commit, confirm_secs, now, key);
        store.update_host(&host, |h| {
            h.desired = Some(sp.clone());
            h.error = None;
        })?;
        record.pushed.insert(host.clone(), serial);
        plans.push((host, sp));
    }
    store.set_good_commit(&snap.commit)?;
    if !plans.is_empty() {
        record.outcome = CommitOutcome::Compiled;
    }
    if !held.is_empty() {
        // Accepted (the config is in force) but not every host got its plan.
        record.outcome = CommitOutcome::KeyMismatch;
        record.diagnostics = held.iter().map(|(h, why)| format!("host {h:?}: {why}")).collect();
    }
    store.record(&record)?;
    store.snapshot(now)?;
    tracing::info!(commit = %snap.commit, outcome = %record.outcome, hosts = ?record.pushed, "commit processed");
    Ok(Processed {
        record,
        plans,
        config: Some(*config),
    })
}

/// Show a refused key as its host's error (`status` shows it); clear that
/// error from hosts whose keys are good again.
fn record_key_errors(
    store: &Store,
    cfg: &warren_model::Config,
    held: &BTreeMap<String, String>,
    bad_keys: &std::collections::BTreeSet<String>,
) -> Result<()> {
    for host in cfg.hosts.keys() {
        let old = store.host(host)?.error;
        let stale = old.as_deref().is_some_and(|e| e.starts_with(KEY_ERROR));
        match held.get(host).filter(|_| bad_keys.contains(host)) {
            Some(why) => {
                let error = format!("{KEY_ERROR}{why}");
                if old.as_deref() != Some(error.as_str()) {
                    store.update_host(host, |h| h.error = Some(error))?;
                }
            }
            None if stale => {
                store.update_host(host, |h| h.error = None)?;
            }
            None => {}
        }
    }
    Ok(())
}

/// Record a refused commit; agents keep their plan.
fn refuse(store: &Store, record: CommitRecord, now: u64) -> Result<Processed> {
    store.record(&record)?;
    store.snapshot(now)?;
    for d in &record.diagnostics {
        tracing::warn!(commit = %record.commit, "{d}");
    }
    Ok(Processed {
        record,
        plans: vec![],
        config: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn seed() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/seed/warren.yaml"
        ))
        .unwrap()
    }

    fn setup(tag: &str) -> (Store, SigningKey, std::path::PathBuf) {
        let d = std::env::temp_dir().join(format!("warren-pipe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        (Store::open(&d).unwrap(), SigningKey::from_bytes(&[7; 32]), d)
    }

    fn snap(commit: &str, text: &str) -> Snapshot {
        Snapshot {
            commit: commit.into(),
            summary: "s".into(),
            text: Some(text.into()),
        }
    }

    #[test]
    fn serials_advance_only_for_changed_plans_and_survive_restart() {
        let (store, key, dir) = setup("serial");
        let o = process(&store, &key, &snap("c1", &seed()), 60, 1).unwrap();
        assert_eq!(o.record.outcome, CommitOutcome::Compiled);
        let hosts: Vec<&str> = o.plans.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["router", "gateway"], "the far side first");
        assert!(o
            .plans
            .iter()
            .all(|(_, p)| p.envelope.serial == 1 && p.envelope.commit == "c1"));
        // Same content at a new commit: nothing to send.
        let o = process(&store, &key, &snap("c2", &seed()), 60, 2).unwrap();
        assert_eq!(o.record.outcome, CommitOutcome::Unchanged);
        assert!(o.plans.is_empty());
        // A new forward changes only the router (forward_all).
        let more = seed().replace(
            "forwards:\n",
            "forwards:\n  blog: { port: 8080/tcp, to: 192.168.16.10 }\n",
        );
        drop(store);
        let store = Store::open(&dir).unwrap();
        let o = process(&store, &key, &snap("c3", &more), 60, 3).unwrap();
        assert_eq!(o.plans.len(), 1);
        assert_eq!(
            (o.plans[0].0.as_str(), o.plans[0].1.envelope.serial),
            ("router", 2)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn invalid_commit_is_recorded_and_sends_nothing() {
        let (store, key, dir) = setup("invalid");
        process(&store, &key, &snap("c1", &seed()), 60, 1).unwrap();
        let bad = seed().replace("port: 25565/tcp", "port: 2222/tcp");
        let o = process(&store, &key, &snap("c2", &bad), 60, 2).unwrap();
        assert_eq!(o.record.outcome, CommitOutcome::Invalid);
        assert!(o.plans.is_empty());
        assert!(
            o.record.diagnostics[0].contains("error[forward-lockout]"),
            "{:?}",
            o.record.diagnostics
        );
        assert_eq!(
            store.good_commit().unwrap().as_deref(),
            Some("c1"),
            "agents keep the last good plan"
        );
        assert_eq!(
            store.host("router").unwrap().desired.unwrap().envelope.commit,
            "c1"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reported_keys_fill_plans_and_a_disagreeing_pin_is_refused() {
        let (store, key, dir) = setup("keys");
        let k = "Uk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk8=";
        store
            .update_host("router", |h| {
                h.wireguard.insert("wg0".into(), k.into());
            })
            .unwrap();
        let o = process(&store, &key, &snap("c1", &seed()), 60, 1).unwrap();
        let gw = &o.plans.iter().find(|(h, _)| h == "gateway").unwrap().1;
        assert_eq!(
            gw.plan.wireguard[0].peers[0].public_key,
            warren_plan::PeerKey::Known(k.into())
        );
        let pinned = seed().replace("    uplink: eth0 ", "    wireguard_keys: { wg0: \"QkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkE=\" }\n    uplink: eth0 ");
        let o = process(&store, &key, &snap("c2", &pinned), 60, 2).unwrap();
        assert_eq!(o.record.outcome, CommitOutcome::KeyMismatch);
        // Only the router is held; the gateway follows the pin.
        let hosts: Vec<&str> = o.plans.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["gateway"]);
        assert!(
            o.record.diagnostics[0].contains("the YAML pins WireGuard key QkFE"),
            "{:?}",
            o.record.diagnostics
        );
        let router = store.host("router").unwrap();
        assert!(router.error.unwrap().starts_with(KEY_ERROR));
        assert_eq!(router.desired.unwrap().envelope.commit, "c1", "keeps its plan");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_decision_needs_only_the_records() {
        let mut hosts = BTreeMap::new();
        let Decision::Accepted { changed, .. } = decide(&snap("c1", &seed()), &hosts) else {
            panic!("the seed is valid");
        };
        let names: Vec<&str> = changed.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(names, ["router", "gateway"]);
        // The router already has this plan: only the gateway changes.
        let (_, router) = changed.into_iter().next().unwrap();
        let desired = warren_plan::sign(router, 1, "c1", 60, 1, &SigningKey::from_bytes(&[7; 32]));
        hosts.insert(
            "router".to_string(),
            HostRecord {
                desired: Some(desired),
                ..HostRecord::default()
            },
        );
        let Decision::Accepted { changed, .. } = decide(&snap("c2", &seed()), &hosts) else {
            panic!("the seed is valid");
        };
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].0, "gateway");
        // A reported key that disagrees with the YAML's pin refuses it.
        let pinned = seed().replace("    uplink: eth0 ", "    wireguard_keys: { wg0: \"QkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkE=\" }\n    uplink: eth0 ");
        let router = hosts.get_mut("router").unwrap();
        router.wireguard.insert(
            "wg0".into(),
            "Uk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk8=".into(),
        );
        let Decision::Accepted { held, bad_keys, .. } = decide(&snap("c3", &pinned), &hosts) else {
            panic!("a disagreeing pin holds back one host, not the commit");
        };
        assert_eq!(held.keys().collect::<Vec<_>>(), ["router"], "{held:?}");
        assert!(bad_keys.contains("router"));
    }

    /// The seed with agent identities for both hosts (the router's given).
    fn with_identities(router: &str) -> String {
        let gw = warren_wire::openssh_public_key(&SigningKey::from_bytes(&[1; 32]).verifying_key());
        seed()
            .replace("    management: [2222/tcp]", &format!("    management: [2222/tcp]\n    agent: {{ address: \"127.0.0.1:7700\", identity: \"{gw}\" }}"))
            .replace("    uplink: eth0 ", &format!("    agent: {{ identity: \"{router}\" }}\n    uplink: eth0 "))
    }

    #[test]
    fn a_stored_identity_that_differs_does_not_stop_the_gateway() {
        let (store, key, dir) = setup("stale-identity");
        let old = warren_wire::openssh_public_key(&SigningKey::from_bytes(&[2; 32]).verifying_key());
        let new = warren_wire::openssh_public_key(&SigningKey::from_bytes(&[3; 32]).verifying_key());
        store
            .update_host("router", |h| {
                h.identity = Some(old);
                h.wireguard.insert(
                    "wg0".into(),
                    "Uk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk8=".into(),
                );
            })
            .unwrap();
        let yaml = with_identities(&new);
        let o = process(&store, &key, &snap("c1", &yaml), 60, 1).unwrap();
        assert_eq!(
            o.record.outcome,
            CommitOutcome::Compiled,
            "{:?}",
            o.record.diagnostics
        );
        let hosts: Vec<&str> = o.plans.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["router", "gateway"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_yaml_identity_with_a_comment_compiles() {
        let (store, key, dir) = setup("comment");
        let id = warren_wire::openssh_public_key(&SigningKey::from_bytes(&[4; 32]).verifying_key());
        store
            .update_host("router", |h| h.identity = Some(id.clone()))
            .unwrap();
        let yaml = with_identities(&format!("{id} root@router"));
        let o = process(&store, &key, &snap("c1", &yaml), 60, 1).unwrap();
        assert_eq!(
            o.record.outcome,
            CommitOutcome::Compiled,
            "{:?}",
            o.record.diagnostics
        );
        assert_eq!(o.plans.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_reported_keys_hold_back_only_their_host_and_its_peers() {
        let gw_key = "R0FURVdBWUdBVEVXQVlHQVRFV0FZR0FURVdBWUdBVEU=";
        for (bad, why) in [
            ("not-a-key", "not a WireGuard key"),
            ("AAAA", "not a WireGuard key"),
            (gw_key, "the WireGuard key of host \"gateway\""),
        ] {
            let (store, key, dir) = setup("badkey");
            store
                .update_host("router", |h| {
                    h.wireguard.insert(
                        "wg0".into(),
                        "Uk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk8=".into(),
                    );
                })
                .unwrap();
            store
                .update_host("gateway", |h| {
                    h.wireguard.insert("wg0".into(), gw_key.into());
                })
                .unwrap();
            let o = process(&store, &key, &snap("c1", &seed()), 60, 1).unwrap();
            assert_eq!(o.plans.len(), 2);
            // The router now reports a bad key: nobody gets a new plan, the
            // gateway keeps its own, and the router shows why.
            store
                .update_host("router", |h| {
                    h.wireguard.insert("wg0".into(), bad.into());
                })
                .unwrap();
            let more = seed().replace(
                "forwards:\n",
                "forwards:\n  blog: { port: 8080/tcp, to: 192.168.16.10 }\n",
            );
            let o = process(&store, &key, &snap("c2", &more), 60, 2).unwrap();
            assert!(
                o.plans.is_empty(),
                "{bad}: {:?}",
                o.plans.iter().map(|p| &p.0).collect::<Vec<_>>()
            );
            assert_eq!(o.record.outcome, CommitOutcome::KeyMismatch);
            assert_eq!(
                store.good_commit().unwrap().as_deref(),
                Some("c2"),
                "the config is in force"
            );
            let gw = store.host("gateway").unwrap();
            assert_eq!(
                gw.desired.unwrap().envelope.serial,
                1,
                "the gateway keeps its plan"
            );
            assert_eq!(gw.error, None);
            let err = store.host("router").unwrap().error.unwrap();
            assert!(err.starts_with(KEY_ERROR) && err.contains(why), "{bad}: {err}");
            // A good key again: the error goes, the plans go out.
            store
                .update_host("router", |h| {
                    h.wireguard.insert(
                        "wg0".into(),
                        "Uk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk8=".into(),
                    );
                })
                .unwrap();
            let o = process(&store, &key, &snap("c2", &more), 60, 3).unwrap();
            assert_eq!(o.record.outcome, CommitOutcome::Compiled);
            assert_eq!(store.host("router").unwrap().error, None);
            assert_eq!(
                o.plans.len(),
                1,
                "the router's new forward; the gateway is unchanged"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
