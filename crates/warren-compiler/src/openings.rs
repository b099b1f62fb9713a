//! What a host's own firewall must let through for the plan to work: the
//! [`Openings`] of each role, exactly Warren's own paths and nothing wider.
//!
//! In netfilter a drop in any base chain is final, so Warren's accepting
//! table cannot save a packet the host's iptables `FORWARD DROP` (Docker),
//! a cloud image's `INPUT … REJECT` or a home firewall drops. The agent
//! puts these rules in front of such chains (`foreign_firewall: auto`) or
//! reports them (`own-table-only`). This module only says which packets
//! they are; it must not guess what the host runs.

use crate::ports::{interval, l4s, single};
use warren_model::model::{Config, ForeignFirewall, Host, PrivateVpn};
use warren_plan::net::Ipv4Cidr;
use warren_plan::nft::{Match, Rule, Stmt, L4};
use warren_plan::{ForeignPolicy, Openings};

fn accept(matches: Vec<Match>, comment: String) -> Rule {
    Rule {
        matches,
        stmts: vec![Stmt::Accept],
        comment,
    }
}

fn policy(h: &Host) -> ForeignPolicy {
    match h.foreign_firewall {
        ForeignFirewall::Auto => ForeignPolicy::Auto,
        ForeignFirewall::OwnTableOnly => ForeignPolicy::OwnTableOnly,
    }
}

/// The agent's own listening port, when the controller dials it on an
/// address other hosts can reach (loopback needs no opening).
fn agent_port(h: &Host) -> Option<Rule> {
    let (addr, port) = h.agent.as_ref()?.address?;
    (!addr.is_loopback()).then(|| {
        accept(
            vec![
                Match::DaddrIs(Ipv4Cidr::host(addr)),
                Match::Dport(L4::Tcp, single(port)),
            ],
            format!("warren: the controller reaches this agent on {port}/tcp"),
        )
    })
}

/// The gateway: WAN VPN handshakes in, the agent's port, and the DNATed
/// inbound traffic to the router's tunnel address with its replies.
pub(crate) fn gateway(cfg: &Config, h: &Host) -> Openings {
    let wan = &cfg.wan;
    let uplink = h.uplink.clone().unwrap_or_default();
    let router = Ipv4Cidr::host(wan.router_address);
    let mut input = vec![accept(
        vec![
            Match::Iif(uplink.clone()),
            Match::Dport(L4::Udp, single(wan.port)),
        ],
        format!("warren: WAN VPN {} from the router", wan.interface),
    )];
    input.extend(agent_port(h));
    let forward = vec![
        accept(
            vec![
                Match::Iif(uplink.clone()),
                Match::Oif(wan.interface.clone()),
                Match::DaddrIs(router),
                Match::CtDnat,
            ],
            format!(
                "warren: inbound traffic DNATed to the router {}",
                wan.router_address
            ),
        ),
        accept(
            vec![
                Match::Iif(wan.interface.clone()),
                Match::Oif(uplink),
                Match::SaddrIs(router),
                Match::CtEstablished,
            ],
            "warren: the router's replies to it".into(),
        ),
    ];
    Openings {
        policy: policy(h),
        input,
        forward,
    }
}

/// The router: the gateway's WireGuard packets, the private VPN's
/// handshakes through the tunnel, each forward to its LAN target, the
/// private VPN's clients to the LANs, and the replies of both.
pub(crate) fn router(cfg: &Config, h: &Host) -> Openings {
    let wan = &cfg.wan;
    let mut input = vec![accept(
        vec![
            Match::SaddrIs(Ipv4Cidr::host(cfg.public_address())),
            Match::Sport(L4::Udp, single(wan.port)),
        ],
        format!("warren: WAN VPN {} packets from the gateway", wan.interface),
    )];
    let served = cfg.private.as_ref().filter(|pv| pv.server == h.name);
    if let Some(pv) = served {
        input.push(accept(
            vec![
                Match::Iif(wan.interface.clone()),
                Match::DaddrIs(Ipv4Cidr::host(wan.router_address)),
                Match::Dport(L4::Udp, single(pv.port)),
            ],
            format!(
                "warren: private VPN {} handshakes through the WAN VPN",
                pv.interface
            ),
        ));
    }
    input.extend(agent_port(h));
    let mut forward = forwards(cfg);
    forward.push(accept(
        vec![
            Match::Oif(wan.interface.clone()),
            Match::CtMark(wan.mark),
            Match::CtEstablished,
        ],
        "warren: replies to connections that came through the WAN VPN".into(),
    ));
    if let Some(pv) = served {
        forward.extend(private_paths(pv, h));
    }
    Openings {
        policy: policy(h),
        input,
        forward,
    }
}

/// One rule per forward and protocol: from the tunnel, DNATed, to the
/// target's address and port.
fn forwards(cfg: &Config) -> Vec<Rule> {
    let mut v = Vec::new();
    for f in &cfg.forwards {
        let ports = match f.to_port {
            Some(p) => single(p),
            None => interval(f.ports),
        };
        for l4 in l4s(&f.protos) {
            v.push(accept(
                vec![
                    Match::Iif(cfg.wan.interface.clone()),
                    Match::DaddrIs(Ipv4Cidr::host(f.to)),
                    Match::Dport(l4, ports),
                    Match::CtDnat,
                ],
                format!("warren: forward {}", f.name),
            ));
        }
    }
    v
}

/// The private VPN's clients to each LAN behind the router, and the
/// replies back into the VPN.
fn private_paths(pv: &PrivateVpn, h: &Host) -> Vec<Rule> {
    let mut v: Vec<Rule> = h
        .lans
        .iter()
        .map(|lan| {
            accept(
                vec![
                    Match::Iif(pv.interface.clone()),
                    Match::SaddrIs(pv.subnet),
                    Match::DaddrIs(lan.subnet()),
                ],
                format!("warren: private VPN clients to LAN {}", lan.name),
            )
        })
        .collect();
    v.push(accept(
        vec![
            Match::Oif(pv.interface.clone()),
            Match::DaddrIs(pv.subnet),
            Match::CtEstablished,
        ],
        "warren: replies to private VPN clients".into(),
    ));
    v
}
