//! The pure diff: desired plan + observed state -> ordered operations.
//!
//! Operations are data with a human rendering; backends execute them. The
//! same function serves apply (what to change) and drift (what no longer
//! matches the last applied plan). Equal inputs give no operation at all.

use crate::net::Ipv4Cidr;
use crate::nft::NftTable;
use crate::plan::{Firewall, PeerKey, Plan, PolicyRule, Route, WgPeer};
use crate::state::{InterfaceState, NftMemory, State};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    CreateInterface {
        name: String,
    },
    SetPrivateKey {
        interface: String,
    },
    SetListenPort {
        interface: String,
        port: Option<u16>,
    },
    SetMtu {
        interface: String,
        mtu: u16,
    },
    AddAddress {
        interface: String,
        address: Ipv4Cidr,
    },
    DelAddress {
        interface: String,
        address: Ipv4Cidr,
    },
    SetUp {
        interface: String,
    },
    SetPeer {
        interface: String,
        peer: WgPeer,
        key: String,
    },
    RemovePeer {
        interface: String,
        key: String,
    },
    SetSysctl {
        key: String,
        value: String,
    },
    AddRoute {
        route: Route,
    },
    DelRoute {
        route: Route,
    },
    AddRule {
        rule: PolicyRule,
    },
    DelRule {
        rule: PolicyRule,
    },
    ReplaceTable {
        table: NftTable,
    },
    DeleteTable,
    DeleteInterface {
        name: String,
    },
}

/// One operation and why: the resource, what the plan wants, what is there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub resource: String,
    pub expected: String,
    pub actual: String,
    pub op: Op,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.resource, self.expected, self.actual
        )
    }
}

fn cidrs(v: &[Ipv4Cidr]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let mut s: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    s.sort();
    s.join(",")
}

fn route_text(r: &Route) -> String {
    let dst = if r.dst.len == 0 {
        "default".to_string()
    } else {
        r.dst.to_string()
    };
    format!("{dst} dev {} table {}", r.dev, r.table)
}

fn rule_text(r: &PolicyRule) -> String {
    let from = r.from.map_or("all".to_string(), |f| f.to_string());
    let mark = r.fwmark.map(|m| format!(" fwmark {m:#x}")).unwrap_or_default();
    format!("{}: from {from}{mark} lookup {}", r.priority, r.table)
}

fn peer_text(p: &WgPeer) -> String {
    let mut s = format!("allowed-ips {}", cidrs(&p.allowed_ips));
    if let Some(e) = &p.endpoint {
        s.push_str(&format!(" endpoint {e}"));
    }
    if let Some(k) = p.persistent_keepalive {
        s.push_str(&format!(" keepalive {k}"));
    }
    s
}

/// Everything `diff` needs besides the plan and the live state.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// This host's own public key per interface (from its local private keys).
    pub own_keys: BTreeMap<String, String>,
    /// Interfaces Warren created earlier on this host (so it may delete them).
    pub owned_interfaces: BTreeSet<String>,
    /// What the last apply left in the nft table, if anything.
    pub nft_memory: Option<&'a NftMemory>,
}

/// Compare `plan` with `live`. The result is ordered so that it can be
/// applied as is: interfaces first, then their settings, sysctls, peers,
/// routes, rules, the nft table, and removals last.
pub fn diff(plan: &Plan, live: &State, cx: &Context) -> Vec<Change> {
    let mut create = Vec::new();
    let mut iface_ops = Vec::new();
    let mut sysctls = Vec::new();
    let mut peers = Vec::new();
    let mut routing = Vec::new();
    let mut firewall = Vec::new();
    let mut removals = Vec::new();

    for want in &plan.wireguard {
        let name = &want.name;
        let empty = InterfaceState::default();
        let have = match live.interfaces.get(name) {
            Some(h) => h,
            None => {
                create.push(Change {
                    resource: format!("interface {name}"),
                    expected: "present".into(),
                    actual: "absent".into(),
                    op: Op::CreateInterface { name: name.clone() },
                });
                &empty
            }
        };
        if let Some(k) = cx.own_keys.get(name) {
            if have.public_key.as_deref() != Some(k.as_str()) {
                iface_ops.push(Change {
                    resource: format!("interface {name} private key"),
                    expected: format!("the key whose public half is {k}"),
                    actual: have
                        .public_key
                        .clone()
                        .map_or("no key".into(), |p| format!("public key {p}")),
                    op: Op::SetPrivateKey {
                        interface: name.clone(),
                    },
                });
            }
        }
        if have.listen_port != want.listen_port && want.listen_port.is_some() {
            iface_ops.push(Change {
                resource: format!("interface {name} listen-port"),
                expected: format!("{:?}", want.listen_port.unwrap_or(0)),
                actual: have.listen_port.map_or("none".into(), |p| p.to_string()),
                op: Op::SetListenPort {
                    interface: name.clone(),
                    port: want.listen_port,
                },
            });
        }
        if have.mtu != want.mtu {
            iface_ops.push(Change {
                resource: format!("interface {name} mtu"),
                expected: want.mtu.to_string(),
                actual: have.mtu.to_string(),
                op: Op::SetMtu {
                    interface: name.clone(),
                    mtu: want.mtu,
                },
            });
        }
        for a in &want.addresses {
            if !have.addresses.contains(a) {
                iface_ops.push(Change {
                    resource: format!("interface {name} address {a}"),
                    expected: "present".into(),
                    actual: "absent".into(),
                    op: Op::AddAddress {
                        interface: name.clone(),
                        address: *a,
                    },
                });
            }
        }
        for a in &have.addresses {
            if !want.addresses.contains(a) {
                removals.push(Change {
                    resource: format!("interface {name} address {a}"),
                    expected: "absent".into(),
                    actual: "present".into(),
                    op: Op::DelAddress {
                        interface: name.clone(),
                        address: *a,
                    },
                });
            }
        }
        if !have.up {
            iface_ops.push(Change {
                resource: format!("interface {name} state"),
                expected: "up".into(),
                actual: "down".into(),
                op: Op::SetUp {
                    interface: name.clone(),
                },
            });
        }
        let mut wanted_keys = BTreeSet::new();
        for p in &want.peers {
            let PeerKey::Known(key) = &p.public_key else {
                continue;
            };
            wanted_keys.insert(key.clone());
            let live_peer = have.peers.iter().find(|x| &x.public_key == key);
            let same = live_peer.is_some_and(|lp| {
                let mut a = lp.allowed_ips.clone();
                let mut b = p.allowed_ips.clone();
                a.sort();
                b.sort();
                a == b
                    && lp.persistent_keepalive == p.persistent_keepalive
                    // A peer without a configured endpoint roams: whatever
                    // endpoint WireGuard learned is fine.
                    && (p.endpoint.is_none() || lp.endpoint == p.endpoint)
            });
            if !same {
                peers.push(Change {
                    resource: format!("interface {name} peer {}", p.name),
                    expected: peer_text(p),
                    actual: live_peer.map_or("absent".into(), |lp| {
                        peer_text(&WgPeer {
                            name: String::new(),
                            public_key: PeerKey::Known(lp.public_key.clone()),
                            endpoint: lp.endpoint.clone(),
                            allowed_ips: lp.allowed_ips.clone(),
                            persistent_keepalive: lp.persistent_keepalive,
                        })
                    }),
                    op: Op::SetPeer {
                        interface: name.clone(),
                        peer: p.clone(),
                        key: key.clone(),
                    },
                });
            }
        }
        for lp in &have.peers {
            if !wanted_keys.contains(&lp.public_key) {
                removals.insert(
                    0,
                    Change {
                        resource: format!("interface {name} peer {}", lp.public_key),
                        expected: "absent".into(),
                        actual: "present".into(),
                        op: Op::RemovePeer {
                            interface: name.clone(),
                            key: lp.public_key.clone(),
                        },
                    },
                );
            }
        }
    }

    for (k, v) in &plan.sysctls {
        let have = live.sysctls.get(k);
        if have != Some(v) {
            let change = Change {
                resource: format!("sysctl {k}"),
                expected: v.clone(),
                actual: have.cloned().unwrap_or_else(|| "unset".into()),
                op: Op::SetSysctl {
                    key: k.clone(),
                    value: v.clone(),
                },
            };
            // ip_forward goes first; per-interface sysctls after the interface exists.
            if k == "net.ipv4.ip_forward" {
                sysctls.insert(0, change);
            } else {
                sysctls.push(change);
            }
        }
    }

    for r in &plan.routes {
        if !live.routes.contains(r) {
            routing.push(Change {
                resource: format!("route {}", route_text(r)),
                expected: "present".into(),
                actual: "absent".into(),
                op: Op::AddRoute { route: r.clone() },
            });
        }
    }
    for r in &plan.rules {
        if !live.rules.contains(r) {
            routing.push(Change {
                resource: format!("rule {}", rule_text(r)),
                expected: "present".into(),
                actual: "absent".into(),
                op: Op::AddRule { rule: r.clone() },
            });
        }
    }
    for r in &live.rules {
        if !plan.rules.contains(r) {
            removals.push(Change {
                resource: format!("rule {}", rule_text(r)),
                expected: "absent".into(),
                actual: "present".into(),
                op: Op::DelRule { rule: r.clone() },
            });
        }
    }
    for r in &live.routes {
        if !plan.routes.contains(r) {
            removals.push(Change {
                resource: format!("route {}", route_text(r)),
                expected: "absent".into(),
                actual: "present".into(),
                op: Op::DelRoute { route: r.clone() },
            });
        }
    }

    match (&plan.firewall, &live.nft) {
        (Firewall::Nftables(t), live_nft) => {
            let digest = crate::hash_hex(t);
            let why = match (live_nft, cx.nft_memory) {
                (None, _) => Some(("absent".to_string(), "table ip warren")),
                (Some(_), None) => Some((
                    "present, not applied by this agent".to_string(),
                    "table ip warren",
                )),
                (Some(_), Some(m)) if m.digest != digest => {
                    Some(("an older plan's table".to_string(), "table ip warren"))
                }
                (Some(l), Some(m)) if l.normalized != m.normalized => Some((
                    describe_nft_drift(&m.normalized, &l.normalized),
                    "table ip warren",
                )),
                _ => None,
            };
            if let Some((actual, res)) = why {
                firewall.push(Change {
                    resource: res.to_string(),
                    expected: format!("the plan's table (sha256 {})", &digest[..12]),
                    actual,
                    op: Op::ReplaceTable { table: t.clone() },
                });
            }
        }
        (Firewall::None, Some(_)) => removals.push(Change {
            resource: "table ip warren".into(),
            expected: "absent".into(),
            actual: "present".into(),
            op: Op::DeleteTable,
        }),
        (Firewall::None, None) => {}
    }

    let planned: BTreeSet<&String> = plan.wireguard.iter().map(|i| &i.name).collect();
    for name in live.interfaces.keys() {
        if !planned.contains(name) && cx.owned_interfaces.contains(name) {
            removals.push(Change {
                resource: format!("interface {name}"),
                expected: "absent".into(),
                actual: "present".into(),
                op: Op::DeleteInterface { name: name.clone() },
            });
        }
    }

    let mut out = create;
    out.extend(iface_ops);
    out.extend(sysctls);
    out.extend(peers);
    out.extend(routing);
    out.extend(firewall);
    out.extend(removals);
    out
}

/// Name what changed inside the table: which chains, sets or maps differ.
fn describe_nft_drift(expected: &str, live: &str) -> String {
    let parse = |s: &str| -> BTreeMap<String, String> {
        let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
        let mut m = BTreeMap::new();
        if let Some(items) = v.as_array() {
            for it in items {
                if let Some((kind, body)) = it.as_object().and_then(|o| o.iter().next()) {
                    let name = body.get("name").and_then(|n| n.as_str()).unwrap_or("");
                    let key = match kind.as_str() {
                        "rule" => format!(
                            "chain {} rule",
                            body.get("chain").and_then(|c| c.as_str()).unwrap_or("")
                        ),
                        k => format!("{k} {name}"),
                    };
                    let e = m.entry(key).or_insert_with(String::new);
                    e.push_str(&body.to_string());
                }
            }
        }
        m
    };
    let (a, b) = (parse(expected), parse(live));
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(_), None) if k.ends_with(" rule") => {
                diffs.push(format!("{} rules missing", &k[..k.len() - 5]))
            }
            (Some(_), None) => diffs.push(format!("{k} missing")),
            (None, Some(_)) if k.ends_with(" rule") => {
                diffs.push(format!("{} has foreign rules", &k[..k.len() - 5]))
            }
            (None, Some(_)) => diffs.push(format!("unexpected {k}")),
            _ if k.ends_with(" rule") => diffs.push(format!("{} rules changed", &k[..k.len() - 5])),
            _ => diffs.push(format!("{k} changed")),
        }
    }
    if diffs.is_empty() {
        "a modified table".into()
    } else {
        diffs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Drift, Platform, WgInterface};
    use crate::state::{NftState, PeerState};

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn peer(name: &str, key: &str, ips: &[&str]) -> WgPeer {
        WgPeer {
            name: name.into(),
            public_key: PeerKey::Known(key.into()),
            endpoint: Some("192.0.2.1:51820".into()),
            allowed_ips: ips.iter().map(|c| cidr(c)).collect(),
            persistent_keepalive: Some(25),
        }
    }

    fn live_peer(key: &str) -> PeerState {
        PeerState {
            public_key: key.into(),
            endpoint: None,
            allowed_ips: vec![cidr("10.9.9.9/32")],
            persistent_keepalive: None,
            latest_handshake: 0,
        }
    }

    fn table() -> NftTable {
        NftTable {
            name: crate::nft::TABLE.into(),
            sets: vec![],
            maps: vec![],
            chains: vec![],
        }
    }

    fn route(dst: &str, table: u32) -> Route {
        Route {
            table,
            dst: cidr(dst),
            dev: "wg0".into(),
            via: None,
        }
    }

    fn rule(priority: u32, fwmark: Option<u32>) -> PolicyRule {
        PolicyRule {
            priority,
            fwmark,
            from: None,
            table: 100,
        }
    }

    /// A plan and a live state that differ in every way the diff knows.
    fn everything() -> (Plan, State, BTreeMap<String, String>) {
        let wg0 = WgInterface {
            name: "wg0".into(),
            addresses: vec![cidr("10.0.18.1/24")],
            listen_port: Some(51820),
            mtu: 1420,
            peers: vec![
                peer("gw", "AAAA", &["10.0.18.2/32"]),
                peer("phone", "BBBB", &["10.0.18.3/32"]),
            ],
        };
        let wg1 = WgInterface {
            name: "wg1".into(),
            addresses: vec![cidr("10.0.19.1/24")],
            listen_port: None,
            mtu: 1380,
            peers: vec![peer("p", "CCCC", &["10.0.19.2/32"])],
        };
        let plan = Plan {
            format: crate::FORMAT,
            host: "router".into(),
            platform: Platform::Linux,
            drift: Drift::Report,
            sysctls: [
                ("net.ipv4.conf.wg1.rp_filter".to_string(), "0".to_string()),
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ]
            .into(),
            wireguard: vec![wg0, wg1],
            routes: vec![route("0.0.0.0/0", 100)],
            rules: vec![rule(456, Some(10))],
            firewall: Firewall::Nftables(table()),
            notes: vec![],
        };
        let mut live = State::default();
        live.interfaces.insert(
            "wg0".into(),
            InterfaceState {
                public_key: Some("someone-else".into()),
                listen_port: None,
                mtu: 1500,
                up: false,
                addresses: vec![cidr("10.0.17.1/24"), cidr("10.0.16.1/24")],
                peers: vec![live_peer("AAAA"), live_peer("OLD1"), live_peer("OLD2")],
            },
        );
        live.interfaces.insert(
            "wg7".into(),
            InterfaceState {
                peers: vec![live_peer("OLD3")],
                ..InterfaceState::default()
            },
        );
        live.interfaces.insert("wg9".into(), InterfaceState::default());
        live.routes = vec![route("10.5.0.0/16", 100), route("10.6.0.0/16", 100)];
        live.rules = vec![rule(500, None)];
        live.nft = Some(NftState {
            normalized: "[]".into(),
        });
        let own = [
            ("wg0".to_string(), "OWN0".to_string()),
            ("wg1".to_string(), "OWN1".to_string()),
        ]
        .into();
        (plan, live, own)
    }

    #[test]
    fn order_and_text_of_every_kind_of_change() {
        let (mut plan, live, own_keys) = everything();
        plan.wireguard.push(WgInterface {
            name: "wg7".into(),
            addresses: vec![],
            listen_port: None,
            mtu: 0,
            peers: vec![],
        });
        let cx = Context {
            own_keys,
            owned_interfaces: ["wg9".to_string()].into(),
            nft_memory: None,
        };
        let text: Vec<String> = diff(&plan, &live, &cx).iter().map(|c| c.to_string()).collect();
        let want = [
            "interface wg1: expected present, found absent",
            "interface wg0 private key: expected the key whose public half is OWN0, found public key someone-else",
            "interface wg0 listen-port: expected 51820, found none",
            "interface wg0 mtu: expected 1420, found 1500",
            "interface wg0 address 10.0.18.1/24: expected present, found absent",
            "interface wg0 state: expected up, found down",
            "interface wg1 private key: expected the key whose public half is OWN1, found no key",
            "interface wg1 mtu: expected 1380, found 0",
            "interface wg1 address 10.0.19.1/24: expected present, found absent",
            "interface wg1 state: expected up, found down",
            "interface wg7 state: expected up, found down",
            "sysctl net.ipv4.ip_forward: expected 1, found unset",
            "sysctl net.ipv4.conf.wg1.rp_filter: expected 0, found unset",
            "interface wg0 peer gw: expected allowed-ips 10.0.18.2/32 endpoint 192.0.2.1:51820 keepalive 25, found allowed-ips 10.9.9.9/32",
            "interface wg0 peer phone: expected allowed-ips 10.0.18.3/32 endpoint 192.0.2.1:51820 keepalive 25, found absent",
            "interface wg1 peer p: expected allowed-ips 10.0.19.2/32 endpoint 192.0.2.1:51820 keepalive 25, found absent",
            "route default dev wg0 table 100: expected present, found absent",
            "rule 456: from all fwmark 0xa lookup 100: expected present, found absent",
            "table ip warren: expected the plan's table (sha256 ",
            "interface wg7 peer OLD3: expected absent, found present",
            "interface wg0 peer OLD2: expected absent, found present",
            "interface wg0 peer OLD1: expected absent, found present",
            "interface wg0 address 10.0.17.1/24: expected absent, found present",
            "interface wg0 address 10.0.16.1/24: expected absent, found present",
            "rule 500: from all lookup 100: expected absent, found present",
            "route 10.5.0.0/16 dev wg0 table 100: expected absent, found present",
            "route 10.6.0.0/16 dev wg0 table 100: expected absent, found present",
            "interface wg9: expected absent, found present",
        ];
        assert_eq!(text.len(), want.len(), "{text:#?}");
        for (got, want) in text.iter().zip(want) {
            assert!(
                got.starts_with(want),
                "{got:?} should start with {want:?}\n{text:#?}"
            );
        }
        assert!(
            text[18].ends_with("), found present, not applied by this agent"),
            "{}",
            text[18]
        );
    }

    #[test]
    fn the_table_is_replaced_for_a_reason_and_deleted_when_unplanned() {
        let (mut plan, mut live, _) = everything();
        plan.wireguard.clear();
        live.interfaces.clear();
        let Firewall::Nftables(t) = plan.firewall.clone() else {
            unreachable!()
        };
        let mem = NftMemory {
            digest: crate::hash_hex(&t),
            normalized: r#"[{"chain":{"name":"input"}}]"#.into(),
        };
        let nft_text = |live: &State, mem: Option<&NftMemory>| -> Vec<String> {
            let cx = Context {
                nft_memory: mem,
                ..Context::default()
            };
            diff(&plan, live, &cx)
                .into_iter()
                .filter(|c| c.resource.starts_with("table"))
                .map(|c| c.actual)
                .collect()
        };
        assert_eq!(nft_text(&live, Some(&mem)), ["chain input missing"]);
        let older = NftMemory {
            digest: "0".into(),
            ..mem.clone()
        };
        assert_eq!(nft_text(&live, Some(&older)), ["an older plan's table"]);
        live.nft = None;
        assert_eq!(nft_text(&live, Some(&mem)), ["absent"]);
        live.nft = Some(NftState {
            normalized: mem.normalized.clone(),
        });
        assert!(nft_text(&live, Some(&mem)).is_empty());

        plan.firewall = Firewall::None;
        let last = diff(&plan, &live, &Context::default()).pop().unwrap();
        assert_eq!(
            last.to_string(),
            "table ip warren: expected absent, found present"
        );
        live.nft = None;
        assert!(!diff(&plan, &live, &Context::default())
            .iter()
            .any(|c| c.resource.starts_with("table")));
    }

    /// Reports and `warren-agent diff --format json` print changes: their
    /// JSON is an interface and must not move when `Op` is reorganised.
    #[test]
    fn json_shape_of_every_op() {
        let (mut plan, live, own_keys) = everything();
        let cx = Context {
            own_keys,
            owned_interfaces: ["wg9".to_string()].into(),
            nft_memory: None,
        };
        let mut changes = diff(&plan, &live, &cx);
        plan.firewall = Firewall::None;
        changes.extend(
            diff(&plan, &live, &cx)
                .into_iter()
                .filter(|c| c.resource.starts_with("table")),
        );
        let mut seen = BTreeMap::new();
        for c in &changes {
            let json = serde_json::to_string(&c.op).unwrap();
            let back: Op = serde_json::from_str(&json).unwrap();
            assert_eq!(back, c.op, "{json}");
            let kind = json
                .trim_start_matches(['{', '"'])
                .split('"')
                .next()
                .unwrap()
                .to_string();
            seen.entry(kind).or_insert(json);
        }
        let all: Vec<String> = seen.values().cloned().collect();
        assert_eq!(all, GOLDEN);
        let c = &changes[0];
        assert_eq!(
            serde_json::to_string(c).unwrap(),
            r#"{"resource":"interface wg1","expected":"present","actual":"absent","op":{"create_interface":{"name":"wg1"}}}"#
        );
    }

    /// The serialized form of each operation before `Op` was grouped by subsystem.
    const GOLDEN: [&str; 17] = [
        r#"{"add_address":{"interface":"wg0","address":"10.0.18.1/24"}}"#,
        r#"{"add_route":{"route":{"table":100,"dst":"0.0.0.0/0","dev":"wg0","via":null}}}"#,
        r#"{"add_rule":{"rule":{"priority":456,"fwmark":10,"from":null,"table":100}}}"#,
        r#"{"create_interface":{"name":"wg1"}}"#,
        r#"{"del_address":{"interface":"wg0","address":"10.0.17.1/24"}}"#,
        r#"{"del_route":{"route":{"table":100,"dst":"10.5.0.0/16","dev":"wg0","via":null}}}"#,
        r#"{"del_rule":{"rule":{"priority":500,"fwmark":null,"from":null,"table":100}}}"#,
        r#"{"delete_interface":{"name":"wg9"}}"#,
        r#""delete_table""#,
        r#"{"remove_peer":{"interface":"wg0","key":"OLD2"}}"#,
        r#"{"replace_table":{"table":{"name":"warren","sets":[],"maps":[],"chains":[]}}}"#,
        r#"{"set_listen_port":{"interface":"wg0","port":51820}}"#,
        r#"{"set_mtu":{"interface":"wg0","mtu":1420}}"#,
        r#"{"set_peer":{"interface":"wg0","peer":{"name":"gw","public_key":{"known":"AAAA"},"endpoint":"192.0.2.1:51820","allowed_ips":["10.0.18.2/32"],"persistent_keepalive":25},"key":"AAAA"}}"#,
        r#"{"set_private_key":{"interface":"wg0"}}"#,
        r#"{"set_sysctl":{"key":"net.ipv4.ip_forward","value":"1"}}"#,
        r#"{"set_up":{"interface":"wg0"}}"#,
    ];
}
