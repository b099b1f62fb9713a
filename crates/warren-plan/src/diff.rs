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
