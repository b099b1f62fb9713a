//! The pure diff against compiled plans: from nothing, converged, and drifted.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use warren_compiler::{compile, KeyBook};
use warren_plan::diff::{OwnKey, RoutingOp, WgOp};
use warren_plan::{diff, Context, InterfaceState, NftMemory, NftState, Op, PeerKey, PeerState, Plan, State};

fn seed_plans() -> BTreeMap<String, Plan> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/warren.yaml"
    ))
    .unwrap();
    let (cfg, d) = warren_model::load_str(&text, "seed");
    let cfg = cfg.unwrap_or_else(|| panic!("{d}"));
    let mut kb = KeyBook::pinned(&cfg);
    kb.insert("gateway", "wg0", "R0FURVdBWUdBVEVXQVlHQVRFV0FZR0FURVdBWUdBVEU=");
    kb.insert("router", "wg0", "Uk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk9VVEVSUk8=");
    compile(&cfg, &kb).unwrap()
}

fn own_keys(plan: &Plan) -> BTreeMap<String, OwnKey> {
    plan.wireguard
        .iter()
        .map(|i| (i.name.clone(), OwnKey::Public(format!("own-{}", i.name))))
        .collect()
}

/// The live state exactly as the plan describes it (what a perfect apply leaves).
fn converged(plan: &Plan) -> (State, NftMemory) {
    let mut s = State {
        sysctls: plan.sysctls.clone(),
        routes: plan.routes.clone(),
        rules: plan.rules.clone(),
        ..State::default()
    };
    for i in &plan.wireguard {
        s.interfaces.insert(
            i.name.clone(),
            InterfaceState {
                public_key: Some(format!("own-{}", i.name)),
                listen_port: i.listen_port,
                mtu: i.mtu,
                up: true,
                addresses: i.addresses.clone(),
                peers: i
                    .peers
                    .iter()
                    .filter_map(|p| match &p.public_key {
                        PeerKey::Known(k) => Some(PeerState {
                            public_key: k.clone(),
                            endpoint: p.endpoint.clone(),
                            allowed_ips: p.allowed_ips.iter().rev().copied().collect(),
                            persistent_keepalive: p.persistent_keepalive,
                            latest_handshake: 1,
                        }),
                        PeerKey::Pending { .. } => None,
                    })
                    .collect(),
            },
        );
    }
    let warren_plan::Firewall::Nftables(t) = &plan.firewall else {
        panic!("nft")
    };
    let memory = NftMemory {
        digest: warren_plan::hash_hex(t),
        normalized: "[\"kernel view\"]".into(),
    };
    s.nft = Some(NftState {
        normalized: memory.normalized.clone(),
    });
    (s, memory)
}

fn ops(plan: &Plan, live: &State, mem: Option<&NftMemory>) -> Vec<Op> {
    let cx = Context {
        own_keys: own_keys(plan),
        owned_interfaces: BTreeSet::new(),
        nft_memory: mem,
    };
    diff(plan, live, &cx).into_iter().map(|c| c.op).collect()
}

#[test]
fn from_nothing_everything_is_created_in_a_workable_order() {
    let plans = seed_plans();
    let router = &plans["router"];
    let changes = diff(
        router,
        &State::default(),
        &Context {
            own_keys: own_keys(router),
            ..Context::default()
        },
    );
    let kinds: Vec<String> = changes
        .iter()
        .map(|c| {
            // `Wg(CreateInterface { .. })`: the operation inside its group.
            format!("{:?}", c.op)
                .split(['(', ' ', '{'])
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    let first_sysctl = kinds.iter().position(|k| k == "SetSysctl").unwrap();
    let last_create = kinds.iter().rposition(|k| k == "CreateInterface").unwrap();
    assert!(
        last_create < first_sysctl,
        "interfaces exist before per-interface sysctls: {kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| *k == "CreateInterface").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| *k == "SetPeer").count(),
        2,
        "gateway peer and phone"
    );
    assert_eq!(kinds.iter().filter(|k| *k == "AddRule").count(), 2);
    assert_eq!(kinds.last().map(String::as_str), Some("ReplaceTable"));
    // The human rendering names the resource.
    assert!(
        changes
            .iter()
            .any(|c| c.to_string()
                == "rule 456: from all fwmark 0xa lookup 100: expected present, found absent")
    );
}

#[test]
fn converged_state_needs_zero_operations() {
    for (host, plan) in seed_plans() {
        let (live, mem) = converged(&plan);
        assert_eq!(ops(&plan, &live, Some(&mem)), vec![], "{host}");
    }
}

#[test]
fn a_roaming_endpoint_is_not_drift() {
    let plans = seed_plans();
    let gw = &plans["gateway"];
    let (mut live, mem) = converged(gw);
    // The router dials from behind CGNAT: the gateway learns whatever endpoint it comes from.
    live.interfaces.get_mut("wg0").unwrap().peers[0].endpoint = Some("192.0.2.2:40123".into());
    assert_eq!(ops(gw, &live, Some(&mem)), vec![]);
}

#[test]
fn changing_a_peer_touches_only_that_peer() {
    let plans = seed_plans();
    let mut router = plans["router"].clone();
    let (live, mem) = converged(&router);
    router.wireguard[1].peers[0]
        .allowed_ips
        .push("192.168.17.70/32".parse().unwrap());
    let o = ops(&router, &live, Some(&mem));
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(matches!(&o[0], Op::Wg(WgOp::SetPeer { interface, .. }) if interface == "wg1"));
}

#[test]
fn deleted_rule_and_flushed_table_are_named() {
    let plans = seed_plans();
    let router = &plans["router"];
    let (mut live, mem) = converged(router);
    live.rules.remove(0);
    live.nft = Some(NftState {
        normalized: "[]".into(),
    });
    let changes = diff(
        router,
        &live,
        &Context {
            own_keys: own_keys(router),
            nft_memory: Some(&mem),
            ..Context::default()
        },
    );
    let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert_eq!(
        text[0],
        "rule 456: from all fwmark 0xa lookup 100: expected present, found absent"
    );
    assert!(
        text[1].starts_with("table ip warren: expected the plan's table"),
        "{text:?}"
    );
}

#[test]
fn foreign_rules_and_routes_are_not_ours_to_see() {
    // observe() only returns proto-77 routes and rules; anything it returns that
    // the plan lacks is Warren's own leftover and is removed.
    let plans = seed_plans();
    let router = &plans["router"];
    let (mut live, mem) = converged(router);
    let mut extra = router.rules[0].clone();
    extra.priority = 999;
    live.rules.push(extra.clone());
    assert_eq!(
        ops(router, &live, Some(&mem)),
        vec![Op::Routing(RoutingOp::DelRule { rule: extra })]
    );
}

#[test]
fn an_interface_warren_created_but_no_longer_plans_is_removed_last() {
    let plans = seed_plans();
    let mut router = plans["router"].clone();
    let (live, mem) = converged(&router);
    router.wireguard.retain(|i| i.name != "wg1");
    router.sysctls.retain(|k, _| !k.contains("wg1"));
    let cx = Context {
        own_keys: own_keys(&router),
        owned_interfaces: ["wg0".to_string(), "wg1".to_string()].into(),
        nft_memory: Some(&mem),
    };
    let o: Vec<Op> = diff(&router, &live, &cx).into_iter().map(|c| c.op).collect();
    assert_eq!(
        o.last(),
        Some(&Op::Wg(WgOp::DeleteInterface { name: "wg1".into() }))
    );
    // Not owned: never deleted.
    let cx = Context {
        owned_interfaces: BTreeSet::new(),
        ..cx
    };
    assert!(!diff(&router, &live, &cx)
        .iter()
        .any(|c| matches!(c.op, Op::Wg(WgOp::DeleteInterface { .. }))));
}
