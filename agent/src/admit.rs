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
//! A RouterOS plan ([`routeros`]) may only write rows of Warren's menus
//! ([`warren_plan::ros::MENUS`]), tagged with tags and values the router's
//! console and REST API cannot misread; an agent takes RouterOS plans only
//! when it is configured to drive a router, and then no Linux plan.
//!
//! It reads live state (does an interface exist?) but changes nothing.

use crate::keys::valid_ifname;
use crate::store::Store;
use crate::sys::Sys;
use std::collections::BTreeSet;
use warren_plan::ipt::{IptRuleset, CHAIN_PREFIX};
use warren_plan::nft::{Match, Rule, Stmt, TABLE};
use warren_plan::ros::MENUS;
use warren_plan::{Firewall, Plan, Platform, VerifyError};

/// Sysctls a plan may set; `*` is one interface name (or `all`).
pub const SYSCTLS: &[&str] = &["net.ipv4.ip_forward", "net.ipv4.conf.*.rp_filter"];

/// Routing tables a plan may not use: unspec, default, main, local.
const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

/// Refuse `plan` unless everything in it is something a network plan
/// needs and nothing in it takes over what Warren does not own.
pub fn admit(plan: &Plan, sys: &dyn Sys, store: &Store, drives_router: bool) -> Result<(), VerifyError> {
    match (plan.platform, drives_router) {
        (Platform::Routeros, true) => return routeros(plan).map_err(VerifyError::Refused),
        (Platform::Routeros, false) => {
            return Err(VerifyError::Refused(
                "a RouterOS plan, but this agent has no [routeros] section in its configuration: \
                 it does not drive a router"
                    .into(),
            ))
        }
        (Platform::Linux, true) => {
            return Err(VerifyError::Refused(
                "a Linux plan, but this agent drives a RouterOS router ([routeros] in its \
                 configuration): it does not change its own host"
                    .into(),
            ))
        }
        (Platform::Linux, false) => {}
    }
    content(plan).map_err(VerifyError::Refused)?;
    let owned = store
        .owned()
        .map_err(|e| VerifyError::Refused(format!("cannot tell what Warren owns: {e:#}")))?;
    foreign_interfaces(plan, sys, &owned.interfaces).map_err(VerifyError::Refused)
}

/// A RouterOS plan: its objects exist, each in one of Warren's menus, with
/// a tag and values that cannot break out of a console quote or a REST
/// path, and the router's certificate pinned by a SHA-256 fingerprint.
pub fn routeros(plan: &Plan) -> Result<(), String> {
    let Some(cfg) = &plan.routeros else {
        return Err("a RouterOS plan without its RouterOS objects (`routeros` is missing)".into());
    };
    let fp = &cfg.access.fingerprint;
    if fp.len() != 64
        || !fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "the router's certificate fingerprint {fp:?} is not a SHA-256 in lowercase hex (64 of 0-9 a-f)"
        ));
    }
    if cfg.access.user.is_empty() || cfg.access.user.chars().any(|c| c.is_control() || c == ':') {
        return Err(format!(
            "RouterOS user {:?} is not a valid user name",
            cfg.access.user
        ));
    }
    let mut seen = BTreeSet::new();
    for e in &cfg.entries {
        if !MENUS.contains(&e.menu.as_str()) {
            return Err(format!(
                "RouterOS menu {:?} is not one Warren writes ({})",
                e.menu,
                MENUS.join(", ")
            ));
        }
        let bad_tag = e.tag.is_empty()
            || e.tag.len() > 200
            || e.tag.chars().any(|c| c.is_control() || c == '"' || c == '\\');
        if bad_tag {
            return Err(format!(
                "RouterOS tag {:?} in {} must be 1-200 characters without quotes, backslashes or control characters",
                e.tag, e.menu
            ));
        }
        if !seen.insert((e.menu.as_str(), e.tag.as_str())) {
            return Err(format!("RouterOS tag {:?} appears twice in {}", e.tag, e.menu));
        }
        for (k, v) in &e.props {
            let bad_key = k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                || matches!(k.as_str(), "comment" | "place-before" | "copy-from");
            if bad_key {
                return Err(format!(
                    "{} {}: property {k:?} is not one a plan may set (a-z 0-9 -; not comment, place-before or copy-from)",
                    e.menu, e.tag
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(format!(
                    "{} {}: the value of {k} contains a control character",
                    e.menu, e.tag
                ));
            }
        }
    }
    Ok(())
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

    fn ros_plan() -> Plan {
        use warren_plan::ros::{Place, RosAccess, RosConfig, RosEntry};
        Plan {
            platform: Platform::Routeros,
            routeros: Some(RosConfig {
                access: RosAccess {
                    address: "192.168.88.1".parse().unwrap(),
                    port: 443,
                    user: "warren".into(),
                    fingerprint: "0f".repeat(32),
                },
                entries: vec![RosEntry {
                    menu: "ip/firewall/nat".into(),
                    tag: "nat/minecraft-tcp".into(),
                    props: [("chain".to_string(), "warren-dstnat".to_string())].into(),
                    place: Place::InOrder,
                }],
            }),
            ..Plan::empty("router")
        }
    }

    #[test]
    fn routeros_plans_only_for_an_agent_that_drives_a_router() {
        let dir = crate::testing::scratch("admit-ros");
        let store = Store::open(&dir).unwrap();
        let sys = Recorder::default();
        assert_eq!(admit(&ros_plan(), &sys, &store, true), Ok(()));
        let e = admit(&ros_plan(), &sys, &store, false).unwrap_err().to_string();
        assert!(e.contains("this agent has no [routeros] section"), "{e}");
        let e = admit(&plan(), &sys, &store, true).unwrap_err().to_string();
        assert!(
            e.contains("a Linux plan, but this agent drives a RouterOS router"),
            "{e}"
        );
        assert_eq!(admit(&plan(), &sys, &store, false), Ok(()));
    }

    #[test]
    fn routeros_content_is_checked() {
        let refused = |f: &dyn Fn(&mut warren_plan::ros::RosConfig)| {
            let mut p = ros_plan();
            f(p.routeros.as_mut().unwrap());
            routeros(&p).unwrap_err()
        };
        let mut p = ros_plan();
        p.routeros = None;
        assert!(routeros(&p).unwrap_err().contains("`routeros` is missing"));
        assert!(refused(&|c| c.entries[0].menu = "system/script".into()).contains("is not one Warren writes"));
        assert!(refused(&|c| c.entries[0].menu = "user".into()).contains("is not one Warren writes"));
        for tag in ["", "a\"b", "a\\b", "a\nb"] {
            assert!(
                refused(&|c| c.entries[0].tag = tag.into()).contains("without quotes"),
                "{tag:?}"
            );
        }
        assert!(refused(&|c| {
            c.entries[0]
                .props
                .insert("to-addresses".into(), "1.2.3.4\n/system reset".into());
        })
        .contains("control character"));
        assert!(refused(&|c| {
            c.entries[0].props.insert("place-before".into(), "*1".into());
        })
        .contains("is not one a plan may set"));
        assert!(refused(&|c| {
            let e = c.entries[0].clone();
            c.entries.push(e);
        })
        .contains("appears twice"));
        assert!(refused(&|c| c.access.fingerprint = "AB".repeat(32)).contains("lowercase hex"));
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
