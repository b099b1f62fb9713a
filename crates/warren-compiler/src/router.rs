//! The router's plan: the WAN VPN's dialling end, the return path for what
//! arrives through it, the private VPN it may serve, and the forwards.
//!
//! The return path is the part the seed author found by hand: connections
//! that arrive through the tunnel get a conntrack mark, their replies get the
//! same value as fwmark, and a policy rule sends that fwmark (and the
//! router's own tunnel address) to a table whose default route is the
//! tunnel. It must not touch the main table: everything else keeps the ISP
//! uplink.

use crate::mtu::{clamp_chain, mss_clamp};
use crate::{base, forwards, KeyBook, Mtus};
use warren_model::model::{Config, Host, PrivateVpn, WanVpn};
use warren_model::WG_OVERHEAD;
use warren_plan::net::Ipv4Cidr;
use warren_plan::nft::{Chain, ChainType, Hook, Match, NftTable, Rule, Stmt, TABLE};
use warren_plan::{Firewall, PeerKey, Plan, PolicyRule, Route, WgInterface, WgPeer};

/// The router `host`'s plan.
pub(crate) fn plan(cfg: &Config, keys: &KeyBook, host: &Host) -> Plan {
    let wan = &cfg.wan;
    let mtus = Mtus::of(cfg);
    let mut plan = base(host);
    plan.sysctls
        .insert(format!("net.ipv4.conf.{}.rp_filter", wan.interface), "2".into());
    plan.wireguard.push(wan_interface(cfg, keys, mtus.wan));
    plan.routes.push(return_route(wan));
    plan.rules.extend(return_rules(wan));
    plan.notes.extend(return_path_notes(wan));
    let mut clamp = mss_clamp(&wan.interface, mtus.wan, "WAN VPN");
    if let Some(pv) = cfg.private.as_ref().filter(|pv| pv.server == host.name) {
        plan.wireguard.push(private_interface(pv, mtus.private));
        clamp.extend(mss_clamp(&pv.interface, mtus.private, "private VPN"));
        plan.notes.extend(private_notes(cfg, pv, mtus));
    }
    plan.notes.push(format!(
        "WAN VPN MTU {} = path MTU {} - {WG_OVERHEAD} (WireGuard over IPv6, worst case)",
        mtus.wan, mtus.path
    ));
    plan.notes.extend(cfg.forwards.iter().map(forwards::note));
    plan.openings = crate::openings::router(cfg, host);
    let (forwards_chain, maps) = forwards::chain_and_maps(&wan.interface, &cfg.forwards);
    plan.firewall = Firewall::Nftables(NftTable {
        name: TABLE.into(),
        sets: vec![],
        maps,
        chains: vec![mark_in(wan), mark_out(wan), forwards_chain, clamp_chain(clamp)],
    });
    plan
}

/// The WAN VPN's dialling end: it keeps the CGNAT mapping open, and accepts
/// any source from the gateway because the gateway does not masquerade.
pub(crate) fn wan_interface(cfg: &Config, keys: &KeyBook, mtu: u16) -> WgInterface {
    let wan = &cfg.wan;
    WgInterface {
        name: wan.interface.clone(),
        addresses: vec![Ipv4Cidr {
            addr: wan.router_address,
            len: wan.subnet.len,
        }],
        listen_port: None,
        mtu,
        peers: vec![WgPeer {
            name: wan.gateway.clone(),
            public_key: keys.peer_key(&wan.gateway, &wan.interface),
            endpoint: Some(format!("{}:{}", cfg.public_address(), wan.port)),
            allowed_ips: vec![Ipv4Cidr::default_route()],
            persistent_keepalive: (wan.keepalive > 0).then_some(wan.keepalive),
        }],
    }
}

/// The default route through the tunnel, in Warren's own table.
fn return_route(wan: &WanVpn) -> Route {
    Route {
        table: wan.table,
        dst: Ipv4Cidr::default_route(),
        dev: wan.interface.clone(),
        via: None,
    }
}

/// Who uses that table: marked replies, and the router's tunnel address.
fn return_rules(wan: &WanVpn) -> [PolicyRule; 2] {
    [
        PolicyRule {
            priority: wan.rule_priority,
            fwmark: Some(wan.mark),
            from: None,
            table: wan.table,
        },
        PolicyRule {
            priority: wan.rule_priority,
            fwmark: None,
            from: Some(Ipv4Cidr::host(wan.router_address)),
            table: wan.table,
        },
    ]
}

fn return_path_notes(wan: &WanVpn) -> [String; 3] {
    let iface = &wan.interface;
    [
        format!(
            "AllowedIPs 0.0.0.0/0 on the WAN peer: the gateway does not masquerade, so replies go back to any internet address through {iface}"
        ),
        format!(
            "those routes live in table {} (not main): only connections that arrived through {iface} (ct mark {:#x} -> fwmark) and the router's own tunnel address {} use it; everything else keeps the ISP uplink",
            wan.table, wan.mark, wan.router_address
        ),
        format!(
            "rp_filter = 2 (loose) on {iface}: inbound sources are internet addresses that main routes via the uplink, so strict mode would drop them"
        ),
    ]
}

/// The private VPN this router serves, one peer per client.
pub(crate) fn private_interface(pv: &PrivateVpn, mtu: u16) -> WgInterface {
    WgInterface {
        name: pv.interface.clone(),
        addresses: vec![Ipv4Cidr {
            addr: pv.address,
            len: pv.subnet.len,
        }],
        listen_port: Some(pv.port),
        mtu,
        peers: pv
            .clients
            .iter()
            .map(|c| WgPeer {
                name: c.name.clone(),
                public_key: PeerKey::Known(c.public_key.0.clone()),
                endpoint: None,
                allowed_ips: vec![Ipv4Cidr::host(c.address)],
                persistent_keepalive: None,
            })
            .collect(),
    }
}

fn private_notes(cfg: &Config, pv: &PrivateVpn, mtus: Mtus) -> [String; 2] {
    let wan = &cfg.wan;
    [
        format!(
            "private VPN MTU {} = WAN VPN MTU {} - {WG_OVERHEAD}: its packets ride inside the WAN VPN (clients should use MTU {} too)",
            mtus.private, mtus.wan, mtus.private
        ),
        format!(
            "clients reach the private VPN at {}:{}/udp; the router answers from {} via table {} (rule from {})",
            cfg.public_address(),
            pv.port,
            wan.router_address,
            wan.table,
            wan.router_address
        ),
    ]
}

/// Mark connections that arrive through the tunnel, and turn that mark into
/// the fwmark of their forwarded replies.
fn mark_in(wan: &WanVpn) -> Chain {
    Chain {
        name: "mark_in".into(),
        kind: ChainType::Filter,
        hook: Hook::Prerouting,
        priority: -150,
        rules: vec![
            Rule {
                matches: vec![Match::Iif(wan.interface.clone()), Match::CtNew],
                stmts: vec![Stmt::CtMarkSet(wan.mark)],
                comment: "connections arriving through the WAN VPN".into(),
            },
            Rule {
                matches: vec![Match::NotIif(wan.interface.clone()), Match::CtMark(wan.mark)],
                stmts: vec![Stmt::MetaMarkSet(wan.mark)],
                comment: format!("their replies route via table {}", wan.table),
            },
        ],
    }
}

/// The same for replies the router itself sends (a `route` chain, so the
/// new fwmark triggers a rerouting).
fn mark_out(wan: &WanVpn) -> Chain {
    Chain {
        name: "mark_out".into(),
        kind: ChainType::Route,
        hook: Hook::Output,
        priority: -150,
        rules: vec![Rule {
            matches: vec![Match::CtMark(wan.mark)],
            stmts: vec![Stmt::MetaMarkSet(wan.mark)],
            comment: "replies the router itself sends (private VPN) also go back through the WAN VPN".into(),
        }],
    }
}
