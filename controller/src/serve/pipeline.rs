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
    /// their desired one, in rollout order (possibly none).
    Accepted {
        config: Box<warren_model::Config>,
        changed: Vec<(String, Plan)>,
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
    let kb = match keybook(&cfg, hosts) {
        Ok(kb) => kb,
        Err(mismatches) => return refused(CommitOutcome::KeyMismatch, mismatches),
    };
    let plans = match warren_compiler::compile(&cfg, &kb) {
        Ok(p) => p,
        Err(e) => return refused(CommitOutcome::Error, vec![e.to_string()]),
    };
    let changed = changed_plans(&cfg, plans, hosts);
    Decision::Accepted {
        config: Box::new(cfg),
        changed,
    }
}

/// The keys to compile with: what agents reported, checked against what the
/// YAML pins. Any disagreement refuses the commit (one message each).
fn keybook(cfg: &warren_model::Config, hosts: &BTreeMap<String, HostRecord>) -> Result<KeyBook, Vec<String>> {
    let mut kb = KeyBook::pinned(cfg);
    let mut mismatches = Vec::new();
    for (host, rec) in hosts {
        for (iface, reported) in &rec.wireguard {
            match kb.0.get(&(host.clone(), iface.clone())) {
                Some(pinned) if pinned != reported => mismatches.push(format!(
                    "host {host:?} interface {iface}: the YAML pins WireGuard key {pinned} but the agent reports {reported}; fix the pin (or the agent) before anything is applied"
                )),
                Some(_) => {}
                None => kb.insert(host, iface, reported),
            }
        }
        if let (Some(reported), Some(pinned)) = (
            &rec.identity,
            cfg.hosts
                .get(host)
                .and_then(|h| h.agent.as_ref())
                .and_then(|a| a.identity.as_ref()),
        ) {
            if reported != pinned {
                mismatches.push(format!(
                    "host {host:?}: the YAML pins agent identity {pinned} but the agent presented {reported}"
                ));
            }
        }
    }
    if mismatches.is_empty() {
        Ok(kb)
    } else {
        Err(mismatches)
    }
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
    let (config, changed) = match decide(snap, &store.hosts()?) {
        Decision::Refused { outcome, diagnostics } => {
            record.outcome = outcome;
            record.diagnostics = diagnostics;
            return refuse(store, record, now);
        }
        Decision::Accepted { config, changed } => (config, changed),
    };
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
    store.record(&record)?;
    store.snapshot(now)?;
    tracing::info!(commit = %snap.commit, outcome = %record.outcome, hosts = ?record.pushed, "commit processed");
    Ok(Processed {
        record,
        plans,
        config: Some(*config),
    })
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
        assert!(o.plans.is_empty());
        assert!(
            o.record.diagnostics[0].contains("the YAML pins WireGuard key QkFE"),
            "{:?}",
            o.record.diagnostics
        );
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
        let Decision::Refused { outcome, diagnostics } = decide(&snap("c3", &pinned), &hosts) else {
            panic!("a disagreeing pin must be refused");
        };
        assert_eq!(outcome, CommitOutcome::KeyMismatch);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    }
}
