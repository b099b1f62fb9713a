//! The gateway's plan: the listening end of the WAN VPN, and the inbound
//! DNAT that sends the public address's traffic to the router through it.
//!
//! It owns which ports the gateway keeps (its management ports, the WAN VPN
//! port, a public agent port) and which it forwards. It must not masquerade:
//! the router and the LAN are meant to see each client's real address.

use crate::mtu::{clamp_chain, mss_clamp};
use crate::ports::{interval, l4s, merge, single};
use crate::{base, KeyBook, Mtus};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use warren_model::model::{Config, Host, PortRange, Proto, WanVpn};
use warren_model::WG_OVERHEAD;
use warren_plan::net::Ipv4Cidr;
use warren_plan::nft::{Chain, ChainType, Hook, Match, NftTable, PortSet, Ports, Rule, Stmt, L4, TABLE};
use warren_plan::{Firewall, Plan, WgInterface, WgPeer};

/// Ports by protocol, as collected (unsorted, possibly overlapping).
type PortsByL4 = BTreeMap<L4, Vec<Ports>>;

/// The gateway `host`'s plan.
pub(crate) fn plan(cfg: &Config, keys: &KeyBook, host: &Host) -> Plan {
    let wan = &cfg.wan;
    let mtus = Mtus::of(cfg);
    let uplink = host.uplink.clone().unwrap_or_default();
    let mut plan = base(host);
    plan.wireguard.push(wan_interface(wan, keys, mtus.wan));
    let agent_port = public_agent_port(host);
    if let Some(port) = agent_port {
        plan.notes.push(format!(
            "the agent's port {port}/tcp is kept on the gateway so the controller can always reach it"
        ));
    }
    let inbound = if wan.forward_all {
        forward_all(
            &uplink,
            wan.router_address,
            kept_ports(host, wan.port, agent_port),
        )
    } else {
        forward_listed(&uplink, wan.router_address, listed_ports(cfg))
    };
    plan.notes.push(inbound.note);
    plan.openings = crate::openings::gateway(cfg, host);
    plan.notes.extend(tunnel_notes(wan, mtus));
    plan.firewall = Firewall::Nftables(NftTable {
        name: TABLE.into(),
        sets: inbound.sets,
        maps: vec![],
        chains: vec![
            Chain {
                name: "inbound".into(),
                kind: ChainType::Nat,
                hook: Hook::Prerouting,
                priority: -100,
                rules: inbound.rules,
            },
            clamp_chain(mss_clamp(&wan.interface, mtus.wan, "WAN VPN")),
        ],
    });
    plan
}

/// The WAN VPN's listening end; its one peer is the router's tunnel address.
fn wan_interface(wan: &WanVpn, keys: &KeyBook, mtu: u16) -> WgInterface {
    WgInterface {
        name: wan.interface.clone(),
        addresses: vec![Ipv4Cidr {
            addr: wan.gateway_address,
            len: wan.subnet.len,
        }],
        listen_port: Some(wan.port),
        mtu,
        peers: vec![WgPeer {
            name: wan.router.clone(),
            public_key: keys.peer_key(&wan.router, &wan.interface),
            endpoint: None,
            allowed_ips: vec![Ipv4Cidr::host(wan.router_address)],
            persistent_keepalive: None,
        }],
    }
}

/// The agent's port when the agent listens on the gateway's public address:
/// forwarding it to the router would cut the controller off.
fn public_agent_port(host: &Host) -> Option<u16> {
    let (addr, port) = host.agent.as_ref()?.address?;
    (Some(addr) == host.public_address).then_some(port)
}

fn add(by_l4: &mut PortsByL4, protos: &[Proto], ports: PortRange) {
    for l4 in l4s(protos) {
        by_l4.entry(l4).or_default().push(interval(ports));
    }
}

/// Ports the gateway keeps for itself: the WAN VPN's, its management ports
/// and a public agent port.
fn kept_ports(host: &Host, wan_port: u16, agent_port: Option<u16>) -> PortsByL4 {
    let mut kept = BTreeMap::from([(L4::Tcp, vec![]), (L4::Udp, vec![single(wan_port)])]);
    for spec in &host.management {
        add(&mut kept, &spec.protos, spec.ports);
    }
    if let Some(port) = agent_port {
        kept.entry(L4::Tcp).or_default().push(single(port));
    }
    kept
}

/// Ports that go to the router without `forward_all`: the forwards' and the
/// private VPN's.
fn listed_ports(cfg: &Config) -> PortsByL4 {
    let mut listed = BTreeMap::from([(L4::Tcp, vec![]), (L4::Udp, vec![])]);
    for f in &cfg.forwards {
        add(&mut listed, &f.protos, f.ports);
    }
    if let Some(pv) = &cfg.private {
        listed.entry(L4::Udp).or_default().push(single(pv.port));
    }
    listed
}

/// The `inbound` chain's rules, the port sets they match, and the note that
/// explains them to a reviewer.
struct Inbound {
    sets: Vec<PortSet>,
    rules: Vec<Rule>,
    note: String,
}

/// `forward_all`: accept the `kept` ports, DNAT everything else to `router`.
fn forward_all(uplink: &str, router: Ipv4Addr, kept: PortsByL4) -> Inbound {
    let (sets, mut rules) = set_rules("kept", kept, uplink, Stmt::Accept, |l| {
        format!("the gateway's own {l} ports stay here")
    });
    rules.push(Rule {
        matches: vec![Match::Iif(uplink.to_string())],
        stmts: vec![Stmt::Dnat(router)],
        comment: "everything else goes to the router through the WAN VPN".into(),
    });
    Inbound {
        sets,
        rules,
        note: format!(
            "inbound on {uplink}: the gateway's own ports are accepted first, everything else is DNATed to the router's tunnel address {router} (forward_all)"
        ),
    }
}

/// Without `forward_all`: DNAT only the `listed` ports to `router`.
fn forward_listed(uplink: &str, router: Ipv4Addr, listed: PortsByL4) -> Inbound {
    let (sets, rules) = set_rules("to_router", listed, uplink, Stmt::Dnat(router), |l| {
        format!("forwarded {l} ports go to the router through the WAN VPN")
    });
    Inbound {
        sets,
        rules,
        note: format!(
            "inbound on {uplink}: only the forwards' ports (and the private VPN port) are DNATed to the router's tunnel address {router}; the rest stays on the gateway"
        ),
    }
}

/// Per protocol, a port set `<prefix>_<l4>` and a rule applying `stmt` to
/// packets arriving on `uplink` for those ports; `comment` gets the protocol.
fn set_rules(
    prefix: &str,
    by_l4: PortsByL4,
    uplink: &str,
    stmt: Stmt,
    comment: impl Fn(&str) -> String,
) -> (Vec<PortSet>, Vec<Rule>) {
    let mut sets = Vec::new();
    let mut rules = Vec::new();
    for (l4, ports) in by_l4 {
        let name = format!("{prefix}_{}", l4.as_str());
        sets.push(PortSet {
            name: name.clone(),
            elements: merge(ports),
        });
        rules.push(Rule {
            matches: vec![Match::Iif(uplink.to_string()), Match::DportIn(l4, name)],
            stmts: vec![stmt.clone()],
            comment: comment(l4.as_str()),
        });
    }
    (sets, rules)
}

fn tunnel_notes(wan: &WanVpn, mtus: Mtus) -> [String; 2] {
    [
        format!(
            "no masquerade on the way in: the router and the LAN see each client's real address (the router answers through {} with AllowedIPs 0.0.0.0/0)",
            wan.interface
        ),
        format!(
            "WAN VPN MTU {} = path MTU {} - {WG_OVERHEAD} (WireGuard over IPv6, worst case); TCP MSS clamped to {}",
            mtus.wan,
            mtus.path,
            Mtus::mss(mtus.wan)
        ),
    ]
}
