//! What a signed plan may ask of this host. A good signature only says the
//! controller sent it; a stolen controller key must not make every agent
//! write arbitrary files as root or take over what Warren does not own. So
//! before anything is applied (and for `diff`), a plan may only:
//! - set the sysctls a network plan needs ([`SYSCTLS`], values plain digits);
//! - name interfaces and devices that are valid Linux names
//!   ([`valid_ifname`]: they become file paths and `/proc/sys` directories);
//! - use the nft table [`warren_plan::nft::TABLE`], iptables chains named
//!   `WARREN-*` jumped to from built-in chains, and routing tables other
//!   than 0 and 253-255 (`default`, `main`, `local`);
//! - open foreign firewalls only with rules that accept;
//! - manage a WireGuard interface only if Warren created it or it does not
//!   exist yet (adopting an existing one is not supported).
//!
//! It reads live state (does an interface exist?) but changes nothing.

use crate::keys::valid_ifname;
use crate::store::Store;
use crate::sys::Sys;
use std::collections::BTreeSet;
use warren_plan::ipt::{IptRuleset, CHAIN_PREFIX};
use warren_plan::nft::{Match, Rule, Stmt, TABLE};
use warren_plan::{Firewall, Plan, VerifyError};

/// Sysctls a plan may set; `*` is one interface name (or `all`).
pub const SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.ipv4.conf.*.rp_filter"];

/// Routing tables a plan may not use: unspec, default, main, local.
const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

/// Refuse `plan` unless everything in it is something a network plan
/// needs and nothing in it takes over what Warren does not own.
pub fn admit(plan: &Plan, sys: &dyn Sys, store: &Store) -> Result<(), VerifyError> {
    content(plan).map_err(VerifyError::Refused)?;
    let owned = store
        .owned()
        .map_err(|e| VerifyError::Refused(format!("cannot tell what Warren owns: {e:#}")))?;
    foreign_interfaces(plan, sys, &owned.interfaces).map_err(VerifyError::Refused)
}

/// The checks on the plan alone.
pub fn content(plan: &Plan) -> Result<(), String> {
    for (key, value) in &plan.sysctls {
        sysctl(key, value)?;
    }
    for name in device_names(plan) {
        if !valid_ifname(name) {
            return Err(format!(
                "interface name {name:?} is not valid (1-15 of A-Z a-z 0-9 _ . -, not starting with -, not . or ..)"
            ));
        }
    }
    let tables = plan.routes.iter().map(|r| r.table);
    for table in tables.chain(plan.rules.iter().map(|r| r.table)) {
        if RESERVED_TABLES.contains(&table) {
            return Err(format!(
                "routing table {table} is reserved (0 unspec, 253 default, 254 main, 255 local); Warren uses its own tables"
            ));
        }
    }
    openings(plan)?;
    match &plan.firewall {
        Firewall::Nftables(t) if t.name != TABLE => Err(format!(
            "nft table {:?} is not Warren's; a plan may only replace table ip {TABLE}",
            t.name
        )),
        Firewall::Iptables(r) => iptables_chains(r),
        Firewall::Nftables(_) | Firewall::None => Ok(()),
    }
}

/// A sysctl key from [`SYSCTLS`] with a plain number as its value.
fn sysctl(key: &str, value: &str) -> Result<(), String> {
    let allowed = key == "net.ipv4.ip_forward"
        || key
            .strip_prefix("net.ipv4.conf.")
            .and_then(|rest| rest.strip_suffix(".rp_filter"))
            .is_some_and(|iface| iface == "all" || valid_ifname(iface));
    if !allowed {
        return Err(format!(
            "sysctl {key:?} is not one a network plan needs (allowed: {})",
            SYSCTLS.join(", ")
        ));
    }
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "sysctl {key} = {value:?}: the value must be a plain number"
        ));
    }
    Ok(())
}

/// Every interface or device name in the plan.
fn device_names(plan: &Plan) -> Vec<&str> {
    let mut names: Vec<&str> = plan.wireguard.iter().map(|i| i.name.as_str()).collect();
    names.extend(plan.routes.iter().map(|r| r.dev.as_str()));
    let mut rules: Vec<&Rule> = Vec::new();
    match &plan.firewall {
        Firewall::Nftables(t) => rules.extend(t.chains.iter().flat_map(|c| &c.rules)),
        Firewall::Iptables(r) => rules.extend(r.chains.iter().flat_map(|c| &c.rules)),
        Firewall::None => {}
    }
    rules.extend(&plan.openings.input);
    rules.extend(&plan.openings.forward);
    names.extend(rule_interfaces(rules));
    names
}

fn rule_interfaces(rules: Vec<&Rule>) -> impl Iterator<Item = &str> {
    let matches = rules.into_iter().flat_map(|r| &r.matches);
    matches.filter_map(|m| match m {
        Match::Iif(i) | Match::NotIif(i) | Match::Oif(i) => Some(i.as_str()),
        Match::CtNew
        | Match::CtMark(_)
        | Match::DportIn(..)
        | Match::TcpSyn
        | Match::MssAbove(_)
        | Match::DaddrIs(_)
        | Match::SaddrIs(_)
        | Match::Dport(..)
        | Match::Sport(..)
        | Match::CtEstablished
        | Match::CtDnat => None,
    })
}

/// Built-in chains an owned iptables chain may be jumped to from.
const IPT_BUILTIN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Warren's iptables chains: only `WARREN-*` names (valid iptables chain
/// names), jumped to from a built-in chain, with rules iptables can say.
fn iptables_chains(r: &IptRuleset) -> Result<(), String> {
    for c in &r.chains {
        let valid = c.name.len() <= 28
            && c.name.starts_with(CHAIN_PREFIX)
            && c.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!(
                "iptables chain {:?} is not Warren's; a plan may only write chains named {CHAIN_PREFIX}… (at most 28 of A-Z a-z 0-9 - _)",
                c.name
            ));
        }
        if !IPT_BUILTIN.contains(&c.from.as_str()) {
            return Err(format!(
                "iptables chain {} is jumped to from {:?}, which is not a built-in chain ({})",
                c.name,
                c.from,
                IPT_BUILTIN.join(", ")
            ));
        }
        for rule in &c.rules {
            warren_plan::ipt::rule_args(rule).map_err(|e| format!("iptables chain {}: {e}", c.name))?;
        }
    }
    Ok(())
}

/// Openings accept; they never drop, mark or rewrite a packet.
fn openings(plan: &Plan) -> Result<(), String> {
    let rules = plan.openings.input.iter().chain(&plan.openings.forward);
    for r in rules {
        if r.stmts.iter().any(|s| !matches!(s, Stmt::Accept | Stmt::Counter)) {
            return Err(format!(
                "an opening may only accept packets, this one does `{}`",
                r.render()
            ));
        }
    }
    Ok(())
}

/// Refuse a plan that would manage a WireGuard interface that exists on
/// this host but that Warren did not create (wg-quick's `wg0`, say): its
/// key, peers and addresses would be replaced, and rollback could not
/// restore them.
pub fn foreign_interfaces(plan: &Plan, sys: &dyn Sys, owned: &BTreeSet<String>) -> Result<(), String> {
    for name in plan.wireguard.iter().map(|i| &i.name) {
        if owned.contains(name) {
            continue;
        }
        let exists = crate::backend::wireguard::link_exists(sys, name)
            .map_err(|e| format!("cannot tell whether interface {name} exists: {e:#}"))?;
        if exists {
            return Err(format!(
                "interface {name} already exists on this host and Warren did not create it: \
                 Warren will not replace its key, peers or addresses. Either give Warren's \
                 interface another name in warren.yaml (`interface:` of wan_vpn or private_vpn), \
                 or remove {name} (`wg-quick down {name}` / `ip link del {name}`) and let Warren \
                 create it; adopting an existing interface is not supported yet"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use warren_plan::nft::{Chain, ChainType, Hook, NftTable};
    use warren_plan::{Drift, Platform, PolicyRule, Route, WgInterface, FORMAT};

    fn plan() -> Plan {
        Plan {
            format: FORMAT,
            host: "router".into(),
            platform: Platform::Linux,
            drift: Drift::Report,
            sysctls: [
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
                ("net.ipv4.conf.wg0.rp_filter".to_string(), "2".to_string()),
            ]
            .into(),
            wireguard: vec![WgInterface {
                name: "wg0".into(),
                addresses: vec![],
                listen_port: None,
                mtu: 1420,
                peers: vec![],
            }],
            routes: vec![Route {
                table: 100,
                dst: "0.0.0.0/0".parse().unwrap(),
                dev: "wg0".into(),
                via: None,
            }],
            rules: vec![PolicyRule {
                priority: 100,
                fwmark: Some(1),
                from: None,
                table: 100,
            }],
            firewall: Firewall::None,
            openings: Default::default(),
            routeros: None,
            notes: vec![],
        }
    }

    fn refused(p: &Plan) -> String {
        content(p).expect_err("the plan was admitted")
    }

    #[test]
    fn a_compiled_plan_is_admitted() {
        assert_eq!(content(&plan()), Ok(()));
        let mut p = plan();
        p.sysctls.insert("net.ipv4.conf.all.rp_filter".into(), "0".into());
        p.sysctls
            .insert("net.ipv4.conf.eth0.10.rp_filter".into(), "2".into());
        assert_eq!(content(&p), Ok(()));
    }

    /// What the compiler emits for the examples (the snapshots) passes.
    #[test]
    fn the_example_snapshots_are_admitted() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/snapshots");
        let mut n = 0;
        for example in ["seed", "family"] {
            for entry in std::fs::read_dir(root.join(example)).unwrap().flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let p: Plan = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                    assert_eq!(content(&p), Ok(()), "{}", path.display());
                    n += 1;
                }
            }
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn sysctls_outside_the_allow_list_are_refused() {
        for key in [
            "x./var/tmp/pwned",
            "kernel.core_pattern",
            "net.ipv4.conf../../../x.rp_filter",
            "net.ipv4.conf./etc.rp_filter",
            "net.ipv4.conf.wg0.forwarding",
            "net.ipv6.conf.all.forwarding",
            "net.ipv4.ip_forward.x",
        ] {
            let mut p = plan();
            p.sysctls.insert(key.into(), "1".into());
            let e = refused(&p);
            assert!(
                e.contains(&format!("sysctl {key:?} is not one a network plan needs")),
                "{e}"
            );
        }
    }

    #[test]
    fn sysctl_values_are_plain_numbers() {
        for value in ["", "|/bin/sh", "1 2", "-1", "12345678901"] {
            let mut p = plan();
            p.sysctls.insert("net.ipv4.ip_forward".into(), value.into());
            assert!(refused(&p).contains("must be a plain number"), "{value:?}");
        }
    }

    #[test]
    fn bad_interface_names_are_refused_wherever_they_appear() {
        let bad = |e: String| assert!(e.contains("is not valid"), "{e}");
        let mut p = plan();
        p.wireguard[0].name = "../x".into();
        bad(refused(&p));
        let mut p = plan();
        p.routes[0].dev = "-f".into();
        bad(refused(&p));
        let mut p = plan();
        p.firewall = Firewall::Nftables(table(TABLE, "a/b"));
        bad(refused(&p));
    }

    fn table(name: &str, iif: &str) -> NftTable {
        NftTable {
            name: name.into(),
            sets: vec![],
            maps: vec![],
            chains: vec![Chain {
                name: "pre".into(),
                kind: ChainType::Filter,
                hook: Hook::Prerouting,
                priority: 0,
                rules: vec![Rule {
                    matches: vec![Match::Iif(iif.into())],
                    stmts: vec![],
                    comment: String::new(),
                }],
            }],
        }
    }

    #[test]
    fn only_warrens_nft_table() {
        let mut p = plan();
        p.firewall = Firewall::Nftables(table(TABLE, "wg0"));
        assert_eq!(content(&p), Ok(()));
        p.firewall = Firewall::Nftables(table("filter", "wg0"));
        assert!(refused(&p).contains("nft table \"filter\" is not Warren's"));
    }

    #[test]
    fn reserved_routing_tables_are_refused() {
        for t in RESERVED_TABLES {
            let mut p = plan();
            p.routes[0].table = t;
            assert!(refused(&p).contains(&format!("routing table {t} is reserved")));
            let mut p = plan();
            p.rules[0].table = t;
            assert!(refused(&p).contains("is reserved"));
        }
    }

    #[test]
    fn an_existing_interface_warren_did_not_create_is_not_taken_over() {
        let mut sys = Recorder::default();
        let none = BTreeSet::new();
        assert_eq!(foreign_interfaces(&plan(), &sys, &none), Ok(()));
        sys.reads
            .insert("ip -j link show dev wg0".into(), r#"[{"ifname":"wg0"}]"#.into());
        let e = foreign_interfaces(&plan(), &sys, &none).unwrap_err();
        assert!(
            e.contains("interface wg0 already exists on this host and Warren did not create it"),
            "{e}"
        );
        assert!(e.contains("ip link del wg0"), "{e}");
        let owned = BTreeSet::from(["wg0".to_string()]);
        assert_eq!(foreign_interfaces(&plan(), &sys, &owned), Ok(()));
    }
}
