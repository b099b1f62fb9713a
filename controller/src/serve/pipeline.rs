//! From a commit to signed plans: validate, compile with the keys agents
//! reported (and those pinned in the YAML), refuse disagreeing keys, sign
//! each changed plan with the host's next serial. An invalid commit is
//! recorded with its diagnostics and changes nothing: agents keep their plan.

use super::repo::Snapshot;
use super::store::{CommitRecord, Store};
use anyhow::Result;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use warren_compiler::KeyBook;
use warren_model::model::Role;
use warren_plan::SignedPlan;

pub struct Outcome {
    pub record: CommitRecord,
    /// Plans to send, in rollout order.
    pub plans: Vec<(String, SignedPlan)>,
    pub config: Option<warren_model::Config>,
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

pub fn process(
    store: &Store,
    key: &SigningKey,
    snap: &Snapshot,
    confirm_secs: u32,
    now: u64,
) -> Result<Outcome> {
    let mut record = CommitRecord {
        commit: snap.commit.clone(),
        summary: snap.summary.clone(),
        at: now,
        outcome: String::new(),
        diagnostics: vec![],
        pushed: BTreeMap::new(),
    };
    store.set_last_commit(&snap.commit)?;
    let done = |mut record: CommitRecord, outcome: &str, diags: Vec<String>| -> Result<Outcome> {
        record.outcome = outcome.to_string();
        record.diagnostics = diags;
        store.record(&record)?;
        store.snapshot(now)?;
        for d in &record.diagnostics {
            tracing::warn!(commit = %record.commit, "{d}");
        }
        Ok(Outcome {
            record,
            plans: vec![],
            config: None,
        })
    };
    let Some(text) = &snap.text else {
        return done(
            record,
            "invalid",
            vec![format!("commit {} has no {}", snap.commit, crate::source::FILE)],
        );
    };
    let name = format!(
        "{}:{}",
        &snap.commit[..snap.commit.len().min(12)],
        crate::source::FILE
    );
    let (cfg, diags) = warren_model::load_str(text, &name);
    let Some(cfg) = cfg else {
        return done(record, "invalid", diags.iter().map(|d| d.to_string()).collect());
    };
    // Keys: what agents reported, checked against what the YAML pins.
    let mut kb = KeyBook::pinned(&cfg);
    let mut mismatches = Vec::new();
    for (host, rec) in store.hosts()? {
        for (iface, reported) in &rec.wireguard {
            match kb.0.get(&(host.clone(), iface.clone())) {
                Some(pinned) if pinned != reported => mismatches.push(format!(
                    "host {host:?} interface {iface}: the YAML pins WireGuard key {pinned} but the agent reports {reported}; fix the pin (or the agent) before anything is applied"
                )),
                Some(_) => {}
                None => kb.insert(&host, iface, reported),
            }
        }
        if let (Some(reported), Some(pinned)) = (
            &rec.identity,
            cfg.hosts
                .get(&host)
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
    if !mismatches.is_empty() {
        return done(record, "key-mismatch", mismatches);
    }
    let plans = match warren_compiler::compile(&cfg, &kb) {
        Ok(p) => p,
        Err(e) => return done(record, "error", vec![e.to_string()]),
    };
    let mut out = Vec::new();
    let mut order: Vec<String> = plans.keys().cloned().collect();
    rollout_order(&cfg, &mut order);
    for host in order {
        let plan = &plans[&host];
        let rec = store.host(&host)?;
        let hash = warren_plan::hash_hex(plan);
        if rec
            .desired
            .as_ref()
            .is_some_and(|d| d.envelope.plan_sha256 == hash)
        {
            continue; // unchanged: agents are not re-applied needlessly
        }
        let serial = store.next_serial(&host)?;
        let sp = warren_plan::sign(plan.clone(), serial, &snap.commit, confirm_secs, now, key);
        store.update_host(&host, |h| {
            h.desired = Some(sp.clone());
            h.error = None;
        })?;
        record.pushed.insert(host.clone(), serial);
        out.push((host, sp));
    }
    store.set_good_commit(&snap.commit)?;
    record.outcome = if out.is_empty() {
        "unchanged".into()
    } else {
        "compiled".into()
    };
    store.record(&record)?;
    store.snapshot(now)?;
    tracing::info!(commit = %snap.commit, outcome = %record.outcome, hosts = ?record.pushed, "commit processed");
    Ok(Outcome {
        record,
        plans: out,
        config: Some(cfg),
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
        assert_eq!(o.record.outcome, "compiled");
        let hosts: Vec<&str> = o.plans.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["router", "gateway"], "the far side first");
        assert!(o
            .plans
            .iter()
            .all(|(_, p)| p.envelope.serial == 1 && p.envelope.commit == "c1"));
        // Same content at a new commit: nothing to send.
        let o = process(&store, &key, &snap("c2", &seed()), 60, 2).unwrap();
        assert_eq!(o.record.outcome, "unchanged");
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
        assert_eq!(o.record.outcome, "invalid");
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
        assert_eq!(o.record.outcome, "key-mismatch");
        assert!(o.plans.is_empty());
        assert!(
            o.record.diagnostics[0].contains("the YAML pins WireGuard key QkFE"),
            "{:?}",
            o.record.diagnostics
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
