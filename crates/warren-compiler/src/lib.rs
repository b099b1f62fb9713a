//! Warren's compiler: from a validated [`Config`] to one [`Plan`] per host.
//!
//! This is where the knowledge the seed author found by hand lives: the
//! gateway's DNAT with its management exceptions, the router's connmark →
//! fwmark return path with its own table and rules, `AllowedIPs = 0.0.0.0/0`
//! on the router's WAN peer, loose reverse-path filtering on the tunnel, the
//! nested MTUs and the MSS clamps, and map-based forwards whose per-packet
//! cost does not grow with their number. It is pure and deterministic; it
//! must not read files, clocks or the network. Peer keys come in a [`KeyBook`].

use std::collections::BTreeMap;
use warren_model::model::{Config, DriftPolicy, Forward, Host, Platform as MPlatform, Proto, Role};
use warren_model::net::Ipv4Cidr;
use warren_model::WG_OVERHEAD;
use warren_plan::nft::{
    Chain, ChainType, DnatMap, Hook, MapData, MapType, Match, NftTable, PortSet, Ports, Rule, Stmt, L4,
};
use warren_plan::{Drift, Firewall, PeerKey, Plan, Platform, PolicyRule, Route, WgInterface, WgPeer, FORMAT};

pub use warren_plan::nft::TABLE;

/// WireGuard public keys by (host, interface): pinned in the YAML, or
/// reported by agents (the controller adds those).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyBook(pub BTreeMap<(String, String), String>);

impl KeyBook {
    /// Keys pinned in the YAML (`hosts.<h>.wireguard_keys`).
    pub fn pinned(cfg: &Config) -> Self {
        let mut k = BTreeMap::new();
        for h in cfg.hosts.values() {
            for (iface, key) in &h.wireguard_keys {
                k.insert((h.name.clone(), iface.clone()), key.0.clone());
            }
        }
        KeyBook(k)
    }
    pub fn insert(&mut self, host: &str, iface: &str, key: &str) {
        self.0
            .insert((host.to_string(), iface.to_string()), key.to_string());
    }
    fn peer_key(&self, host: &str, iface: &str) -> PeerKey {
        match self.0.get(&(host.to_string(), iface.to_string())) {
            Some(k) => PeerKey::Known(k.clone()),
            None => PeerKey::Pending {
                host: host.to_string(),
                interface: iface.to_string(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("host {host:?}: the RouterOS compile target is not implemented yet (the model accepts it; plans for it arrive with the RouterOS agent)")]
    RouterOsNotYet { host: String },
}

/// The MTUs and MSS values of both tunnels, derived from the path MTUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtus {
    pub path: u16,
    pub wan: u16,
    pub private: u16,
}

impl Mtus {
    pub fn of(cfg: &Config) -> Self {
        let path = cfg.gateway().path_mtu.min(cfg.router().path_mtu);
        let wan = path - WG_OVERHEAD;
        Mtus {
            path,
            wan,
            private: wan - WG_OVERHEAD,
        }
    }
    /// IPv4 TCP MSS for a given MTU (20 bytes IP + 20 bytes TCP).
    pub fn mss(mtu: u16) -> u16 {
        mtu - 40
    }
}

/// Compile every host that gets a plan. Agent-only hosts get none in v1.
pub fn compile(cfg: &Config, keys: &KeyBook) -> Result<BTreeMap<String, Plan>, CompileError> {
    let mut out = BTreeMap::new();
    for h in cfg.hosts.values() {
        if let Some(p) = compile_host(cfg, keys, &h.name)? {
            out.insert(h.name.clone(), p);
        }
    }
    Ok(out)
}

/// Compile one host's plan (`None` for hosts without one).
pub fn compile_host(cfg: &Config, keys: &KeyBook, host: &str) -> Result<Option<Plan>, CompileError> {
    let Some(h) = cfg.hosts.get(host) else {
        return Ok(None);
    };
    match (h.role, h.platform) {
        (_, MPlatform::Routeros) => Err(CompileError::RouterOsNotYet { host: h.name.clone() }),
        (Role::Gateway, _) => Ok(Some(gateway(cfg, keys, h))),
        (Role::Router, _) => Ok(Some(router(cfg, keys, h))),
        (Role::Agent, _) => Ok(None),
    }
}

fn base(h: &Host) -> Plan {
    Plan {
        format: FORMAT,
        host: h.name.clone(),
        platform: Platform::Linux,
        drift: match h.drift {
            DriftPolicy::Report => Drift::Report,
            DriftPolicy::Heal => Drift::Heal,
        },
        sysctls: BTreeMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]),
        wireguard: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        firewall: Firewall::None,
        notes: Vec::new(),
    }
}

fn l4s(p: &[Proto]) -> Vec<L4> {
    p.iter()
        .map(|p| match p {
            Proto::Tcp => L4::Tcp,
            Proto::Udp => L4::Udp,
        })
        .collect()
}

fn ports(first: u16, last: u16) -> Ports {
    Ports { first, last }
}

/// Sorted, merged port intervals (nft refuses overlapping interval elements).
fn merge(mut v: Vec<Ports>) -> Vec<Ports> {
    v.sort();
    let mut out: Vec<Ports> = Vec::new();
    for p in v {
        match out.last_mut() {
            Some(l) if u32::from(p.first) <= u32::from(l.last) + 1 => l.last = l.last.max(p.last),
            _ => out.push(p),
        }
    }
    out
}

fn mss_clamp(iface: &str, mtu: u16, what: &str) -> Vec<Rule> {
    let mss = Mtus::mss(mtu);
    vec![
        Rule {
            matches: vec![Match::Oif(iface.to_string()), Match::TcpSyn, Match::MssAbove(mss)],
            stmts: vec![Stmt::MssSet(mss)],
            comment: format!("clamp MSS to {mss}: {what} MTU {mtu}"),
        },
        Rule {
            matches: vec![Match::Iif(iface.to_string()), Match::TcpSyn, Match::MssAbove(mss)],
            stmts: vec![Stmt::MssSet(mss)],
            comment: format!("clamp MSS to {mss} both ways: {what} MTU {mtu}"),
        },
    ]
}

fn gateway(cfg: &Config, keys: &KeyBook, h: &Host) -> Plan {
    let w = &cfg.wan;
    let m = Mtus::of(cfg);
    let mut p = base(h);
    let uplink = h.uplink.clone().unwrap_or_default();
    p.wireguard.push(WgInterface {
        name: w.interface.clone(),
        addresses: vec![Ipv4Cidr {
            addr: w.gateway_address,
            len: w.subnet.len,
        }],
        listen_port: Some(w.port),
        mtu: m.wan,
        peers: vec![WgPeer {
            name: w.router.clone(),
            public_key: keys.peer_key(&w.router, &w.interface),
            endpoint: None,
            allowed_ips: vec![Ipv4Cidr::host(w.router_address)],
            persistent_keepalive: None,
        }],
    });

    // Ports the gateway keeps for itself, by protocol.
    let mut kept: BTreeMap<L4, Vec<Ports>> =
        BTreeMap::from([(L4::Tcp, vec![]), (L4::Udp, vec![ports(w.port, w.port)])]);
    for s in &h.management {
        for l4 in l4s(&s.protos) {
            kept.entry(l4)
                .or_default()
                .push(ports(s.ports.first, s.ports.last));
        }
    }
    if let Some(a) = &h.agent {
        if let Some((addr, port)) = a.address {
            if Some(addr) == h.public_address {
                kept.entry(L4::Tcp).or_default().push(ports(port, port));
                p.notes.push(format!("the agent's port {port}/tcp is kept on the gateway so the controller can always reach it"));
            }
        }
    }
    let router_dst = w.router_address;
    let mut sets = Vec::new();
    let mut rules = Vec::new();
    if w.forward_all {
        for (l4, v) in &kept {
            let name = format!("kept_{}", l4.as_str());
            sets.push(PortSet {
                name: name.clone(),
                elements: merge(v.clone()),
            });
            rules.push(Rule {
                matches: vec![Match::Iif(uplink.clone()), Match::DportIn(*l4, name)],
                stmts: vec![Stmt::Accept],
                comment: format!("the gateway's own {} ports stay here", l4.as_str()),
            });
        }
        rules.push(Rule {
            matches: vec![Match::Iif(uplink.clone())],
            stmts: vec![Stmt::Dnat(router_dst)],
            comment: "everything else goes to the router through the WAN VPN".into(),
        });
        p.notes.push(format!(
            "inbound on {uplink}: the gateway's own ports are accepted first, everything else is DNATed to the router's tunnel address {router_dst} (forward_all)"
        ));
    } else {
        let mut listed: BTreeMap<L4, Vec<Ports>> = BTreeMap::from([(L4::Tcp, vec![]), (L4::Udp, vec![])]);
        for f in &cfg.forwards {
            for l4 in l4s(&f.protos) {
                listed
                    .entry(l4)
                    .or_default()
                    .push(ports(f.ports.first, f.ports.last));
            }
        }
        if let Some(pv) = &cfg.private {
            listed.entry(L4::Udp).or_default().push(ports(pv.port, pv.port));
        }
        for (l4, v) in &listed {
            let name = format!("to_router_{}", l4.as_str());
            sets.push(PortSet {
                name: name.clone(),
                elements: merge(v.clone()),
            });
            rules.push(Rule {
                matches: vec![Match::Iif(uplink.clone()), Match::DportIn(*l4, name)],
                stmts: vec![Stmt::Dnat(router_dst)],
                comment: format!(
                    "forwarded {} ports go to the router through the WAN VPN",
                    l4.as_str()
                ),
            });
        }
        p.notes.push(format!(
            "inbound on {uplink}: only the forwards' ports (and the private VPN port) are DNATed to the router's tunnel address {router_dst}; the rest stays on the gateway"
        ));
    }
    p.notes.push(format!(
        "no masquerade on the way in: the router and the LAN see each client's real address (the router answers through {} with AllowedIPs 0.0.0.0/0)",
        w.interface
    ));
    p.notes.push(format!(
        "WAN VPN MTU {} = path MTU {} - {WG_OVERHEAD} (WireGuard over IPv6, worst case); TCP MSS clamped to {}",
        m.wan,
        m.path,
        Mtus::mss(m.wan)
    ));
    p.firewall = Firewall::Nftables(NftTable {
        name: TABLE.into(),
        sets,
        maps: vec![],
        chains: vec![
            Chain {
                name: "inbound".into(),
                kind: ChainType::Nat,
                hook: Hook::Prerouting,
                priority: -100,
                rules,
            },
            Chain {
                name: "clamp".into(),
                kind: ChainType::Filter,
                hook: Hook::Forward,
                priority: -150,
                rules: mss_clamp(&w.interface, m.wan, "WAN VPN"),
            },
        ],
    });
    p
}

/// Per protocol: `fwd_<l4>_addr` and `fwd_<l4>_port` for single ports (same
/// key, looked up together), `fwd_<l4>_range` for ranges (ports kept).
fn forward_maps(fw: &[Forward]) -> Vec<(L4, Vec<DnatMap>)> {
    let mut out = Vec::new();
    for l4 in [L4::Tcp, L4::Udp] {
        let (mut addr, mut port, mut range) = (Vec::new(), Vec::new(), Vec::new());
        for f in fw.iter().filter(|f| l4s(&f.protos).contains(&l4)) {
            let key = ports(f.ports.first, f.ports.last);
            if f.ports.is_single() {
                addr.push((key, MapData::Addr(f.to)));
                port.push((key, MapData::Port(f.to_port.unwrap_or(f.ports.first))));
            } else {
                range.push((key, MapData::Addr(f.to)));
            }
        }
        let name = |suffix: &str| format!("fwd_{}_{suffix}", l4.as_str());
        let mut maps = vec![
            DnatMap {
                name: name("addr"),
                data: MapType::Addr,
                elements: addr,
            },
            DnatMap {
                name: name("port"),
                data: MapType::Port,
                elements: port,
            },
            DnatMap {
                name: name("range"),
                data: MapType::Addr,
                elements: range,
            },
        ];
        for m in &mut maps {
            m.elements.sort_by_key(|e| e.0);
        }
        out.push((l4, maps));
    }
    out
}

fn router(cfg: &Config, keys: &KeyBook, h: &Host) -> Plan {
    let w = &cfg.wan;
    let m = Mtus::of(cfg);
    let mut p = base(h);
    let wan = w.interface.clone();
    p.sysctls
        .insert(format!("net.ipv4.conf.{wan}.rp_filter"), "2".into());
    p.wireguard.push(WgInterface {
        name: wan.clone(),
        addresses: vec![Ipv4Cidr {
            addr: w.router_address,
            len: w.subnet.len,
        }],
        listen_port: None,
        mtu: m.wan,
        peers: vec![WgPeer {
            name: w.gateway.clone(),
            public_key: keys.peer_key(&w.gateway, &wan),
            endpoint: Some(format!("{}:{}", cfg.public_address(), w.port)),
            allowed_ips: vec![Ipv4Cidr::default_route()],
            persistent_keepalive: (w.keepalive > 0).then_some(w.keepalive),
        }],
    });
    p.routes.push(Route {
        table: w.table,
        dst: Ipv4Cidr::default_route(),
        dev: wan.clone(),
        via: None,
    });
    p.rules.push(PolicyRule {
        priority: w.rule_priority,
        fwmark: Some(w.mark),
        from: None,
        table: w.table,
    });
    p.rules.push(PolicyRule {
        priority: w.rule_priority,
        fwmark: None,
        from: Some(Ipv4Cidr::host(w.router_address)),
        table: w.table,
    });
    p.notes.push(format!(
        "AllowedIPs 0.0.0.0/0 on the WAN peer: the gateway does not masquerade, so replies go back to any internet address through {wan}"
    ));
    p.notes.push(format!(
        "those routes live in table {} (not main): only connections that arrived through {wan} (ct mark {:#x} -> fwmark) and the router's own tunnel address {} use it; everything else keeps the ISP uplink",
        w.table, w.mark, w.router_address
    ));
    p.notes.push(format!(
        "rp_filter = 2 (loose) on {wan}: inbound sources are internet addresses that main routes via the uplink, so strict mode would drop them"
    ));

    let mark_in = vec![
        Rule {
            matches: vec![Match::Iif(wan.clone()), Match::CtNew],
            stmts: vec![Stmt::CtMarkSet(w.mark)],
            comment: "connections arriving through the WAN VPN".into(),
        },
        Rule {
            matches: vec![Match::NotIif(wan.clone()), Match::CtMark(w.mark)],
            stmts: vec![Stmt::MetaMarkSet(w.mark)],
            comment: format!("their replies route via table {}", w.table),
        },
    ];
    let mut chains = Vec::new();
    let by_proto = forward_maps(&cfg.forwards);
    let mut clamp = mss_clamp(&wan, m.wan, "WAN VPN");
    if let Some(pv) = cfg.private.as_ref().filter(|pv| pv.server == h.name) {
        p.wireguard.push(WgInterface {
            name: pv.interface.clone(),
            addresses: vec![Ipv4Cidr {
                addr: pv.address,
                len: pv.subnet.len,
            }],
            listen_port: Some(pv.port),
            mtu: m.private,
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
        });
        clamp.extend(mss_clamp(&pv.interface, m.private, "private VPN"));
        p.notes.push(format!(
            "private VPN MTU {} = WAN VPN MTU {} - {WG_OVERHEAD}: its packets ride inside the WAN VPN (clients should use MTU {} too)",
            m.private, m.wan, m.private
        ));
        p.notes.push(format!(
            "clients reach the private VPN at {}:{}/udp; the router answers from {} via table {} (rule from {})",
            cfg.public_address(),
            pv.port,
            w.router_address,
            w.table,
            w.router_address
        ));
    }
    chains.push(Chain {
        name: "mark_in".into(),
        kind: ChainType::Filter,
        hook: Hook::Prerouting,
        priority: -150,
        rules: mark_in,
    });
    chains.push(Chain {
        name: "mark_out".into(),
        kind: ChainType::Route,
        hook: Hook::Output,
        priority: -150,
        rules: vec![Rule {
            matches: vec![Match::CtMark(w.mark)],
            stmts: vec![Stmt::MetaMarkSet(w.mark)],
            comment: "replies the router itself sends (private VPN) also go back through the WAN VPN".into(),
        }],
    });
    let mut dnat = Vec::new();
    let mut maps = Vec::new();
    for (l4, m) in by_proto {
        let l = l4.as_str();
        dnat.push(Rule {
            matches: vec![Match::Iif(wan.clone())],
            stmts: vec![Stmt::DnatMap {
                l4,
                addr_map: m[0].name.clone(),
                port_map: Some(m[1].name.clone()),
            }],
            comment: format!("{l} port forwards: one lookup per map, whatever their number"),
        });
        dnat.push(Rule {
            matches: vec![Match::Iif(wan.clone())],
            stmts: vec![Stmt::DnatMap {
                l4,
                addr_map: m[2].name.clone(),
                port_map: None,
            }],
            comment: format!("{l} port-range forwards keep their port numbers"),
        });
        maps.extend(m);
    }
    chains.push(Chain {
        name: "forwards".into(),
        kind: ChainType::Nat,
        hook: Hook::Prerouting,
        priority: -100,
        rules: dnat,
    });
    chains.push(Chain {
        name: "clamp".into(),
        kind: ChainType::Filter,
        hook: Hook::Forward,
        priority: -150,
        rules: clamp,
    });
    p.notes.push(format!(
        "WAN VPN MTU {} = path MTU {} - {WG_OVERHEAD} (WireGuard over IPv6, worst case)",
        m.wan, m.path
    ));
    for f in &cfg.forwards {
        let protos: Vec<&str> = f.protos.iter().map(|p| p.as_str()).collect();
        let to = match f.to_port {
            Some(tp) => format!("{}:{tp}", f.to),
            None => f.to.to_string(),
        };
        let d = f
            .description
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        p.notes.push(format!(
            "forward {}: {}/{} -> {to}{d}",
            f.name,
            f.ports,
            protos.join("+")
        ));
    }
    p.firewall = Firewall::Nftables(NftTable {
        name: TABLE.into(),
        sets: vec![],
        maps,
        chains,
    });
    p
}

/// A wg-quick configuration for a private VPN client (its private key stays
/// on the device: the file carries a placeholder for it).
pub fn client_config(cfg: &Config, keys: &KeyBook, client: &str) -> Option<String> {
    let pv = cfg.private.as_ref()?;
    let c = pv.clients.iter().find(|c| c.name == client)?;
    let m = Mtus::of(cfg);
    let server_key = match keys.peer_key(&pv.server, &pv.interface) {
        PeerKey::Known(k) => k,
        PeerKey::Pending { host, interface } => format!("<awaiting {host}'s key for {interface}>"),
    };
    let routes: Vec<String> = c.routes.iter().map(Ipv4Cidr::to_string).collect();
    let mut s = format!(
        "# Warren private VPN client {:?}\n[Interface]\nPrivateKey = <this device's private key>\nAddress = {}/{}\nMTU = {}\n\n[Peer]\n# {} through the gateway's public address, nested in the WAN VPN\nPublicKey = {server_key}\nEndpoint = {}:{}\nAllowedIPs = {}\n",
        c.name,
        c.address,
        pv.subnet.len,
        m.private,
        pv.server,
        cfg.public_address(),
        pv.port,
        routes.join(", ")
    );
    if c.keepalive > 0 {
        s.push_str(&format!("PersistentKeepalive = {}\n", c.keepalive));
    }
    Some(s)
}
