//! Port forwards (`forwards`): each one's public ports and LAN target, and
//! every public port claimed once on the gateway, by the gateway itself, the
//! private VPN or one forward.

use super::hosts::HostParts;
use super::private_vpn::PrivateParts;
use super::values::{check_name, parse_port_number, port_spec};
use super::wan_vpn::WanParts;
use super::V;
use crate::diag::Pos;
use crate::model::{AgentAccess, Forward, Lan, PortRange, PortSpec, Proto};
use crate::net::parse_ipv4;
use crate::schema::ForwardDoc;
use crate::sp::Sp;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Ports of one protocol on the gateway's public address that something
/// already holds; a forward over them is refused.
struct PortClaim {
    proto: Proto,
    ports: PortRange,
    /// Who holds them, as the end of a sentence: `the WAN VPN port 51820/udp of the gateway`.
    owner: String,
    /// Where the holder is declared.
    at: Pos,
    /// The gateway keeps these ports for itself, so a forward over them is a
    /// `forward-lockout` (it would cut the gateway off) rather than a
    /// `forward-overlap` with another forward or the private VPN.
    lockout: bool,
}

/// Every forward that resolved and claims no port already held, sorted by name.
pub(super) fn validate_forwards(
    v: &mut V,
    docs: &BTreeMap<Sp<String>, Sp<ForwardDoc>>,
    wan: &WanParts,
    gateway: Option<&HostParts>,
    router: Option<&HostParts>,
    private: Option<&PrivateParts>,
) -> Vec<Forward> {
    let mut claims = gateway.map_or_else(Vec::new, |g| gateway_claims(g, wan));
    if let Some(p) = private {
        if let Some(vpn) = &p.vpn {
            claims.push(PortClaim {
                proto: Proto::Udp,
                ports: PortRange::single(vpn.port),
                owner: format!("the private VPN port {}/udp", vpn.port),
                at: p.port_at,
                lockout: false,
            });
        }
    }
    // Check targets only against a router whose LANs all resolved; otherwise
    // the LAN's own error is the one to fix, and targets would only echo it.
    let lans = router
        .filter(|r| r.all_lans_resolved())
        .map(|r| r.host.lans.as_slice());
    let mut forwards = Vec::new();
    for (fname, f) in docs {
        forwards.extend(forward(v, fname, f, lans, &mut claims));
    }
    forwards
}

/// The ports the gateway keeps: its management ports, the WAN VPN's port, and
/// its agent's port when the agent listens on the public address.
fn gateway_claims(g: &HostParts, wan: &WanParts) -> Vec<PortClaim> {
    let mut claims = Vec::new();
    for (m, at) in g.host.management.iter().zip(&g.management_at) {
        for p in &m.protos {
            claims.push(PortClaim {
                proto: *p,
                ports: m.ports,
                owner: format!("the gateway's management port {m}"),
                at: *at,
                lockout: true,
            });
        }
    }
    if let Some(wp) = wan.port {
        claims.push(PortClaim {
            proto: Proto::Udp,
            ports: PortRange::single(wp),
            owner: format!("the WAN VPN port {wp}/udp of the gateway"),
            at: wan.port_at,
            lockout: true,
        });
    }
    if let Some(AgentAccess {
        address: Some((a, p)),
        ..
    }) = &g.host.agent
    {
        if Some(*a) == g.host.public_address {
            claims.push(PortClaim {
                proto: Proto::Tcp,
                ports: PortRange::single(*p),
                owner: format!("the gateway's agent port {p}/tcp"),
                at: g.agent_at,
                lockout: true,
            });
        }
    }
    claims
}

/// One forward. `lans` is the router's LANs when every one resolved. A
/// forward that resolves claims its ports.
fn forward(
    v: &mut V,
    fname: &Sp<String>,
    f: &ForwardDoc,
    lans: Option<&[Lan]>,
    claims: &mut Vec<PortClaim>,
) -> Option<Forward> {
    check_name(v, "forward", fname);
    let spec = port_spec(v, &format!("forward {:?} port", fname.value), &f.port);
    let (to, to_port) = target(v, fname, f);
    let (spec, to) = (spec?, to?);
    if to_port.is_some() && !spec.ports.is_single() {
        v.err(
            "bad-target",
            f.to.at,
            format!(
                "forward {:?} maps the range {} to a single port",
                fname.value, spec.ports
            ),
        )
        .with_hint(format!("a range keeps its port numbers; write to: {to}"));
        return None;
    }
    if let Some(lans) = lans {
        if !check_target_on_lan(v, fname, f, to, lans) {
            return None;
        }
    }
    if !check_unclaimed(v, fname, f, &spec, claims) {
        return None;
    }
    for p in &spec.protos {
        claims.push(PortClaim {
            proto: *p,
            ports: spec.ports,
            owner: format!("forward {:?} ({}/{p})", fname.value, spec.ports),
            at: f.port.at,
            lockout: false,
        });
    }
    Some(Forward {
        name: fname.value.clone(),
        protos: spec.protos.clone(),
        ports: spec.ports,
        to,
        // A target port equal to the public one is no translation at all.
        to_port: to_port.filter(|p| Some(*p) != Some(spec.ports.first).filter(|_| spec.ports.is_single())),
        description: f.description.clone(),
    })
}

/// `to`: `address` or `address:port`.
fn target(v: &mut V, fname: &Sp<String>, f: &ForwardDoc) -> (Option<Ipv4Addr>, Option<u16>) {
    let s = f.to.value.0.trim();
    let (a, p) = match s.rsplit_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    match (parse_ipv4(a), p.map(parse_port_number)) {
        (Some(a), None) => (Some(a), None),
        (Some(a), Some(Some(p))) => (Some(a), Some(p)),
        _ => {
            v.err(
                "bad-target",
                f.to.at,
                format!(
                    "forward {:?} target {s:?} is not an address or address:port",
                    fname.value
                ),
            )
            .with_hint("write 192.168.16.20 (same port) or 192.168.16.20:8080");
            (None, None)
        }
    }
}

/// The target is a usable host address of one of the router's LANs.
fn check_target_on_lan(v: &mut V, fname: &Sp<String>, f: &ForwardDoc, to: Ipv4Addr, lans: &[Lan]) -> bool {
    if lans.iter().any(|l| l.subnet().is_usable_host(to)) {
        return true;
    }
    let names: Vec<String> = lans
        .iter()
        .map(|l| format!("{} {}", l.name, l.subnet()))
        .collect();
    v.err(
        "target-outside-lan",
        f.to.at,
        format!(
            "forward {:?} target {to} is not on any LAN of the router",
            fname.value
        ),
    )
    .with_hint(if names.is_empty() {
        "declare the router's LANs under hosts.<router>.lans".to_string()
    } else {
        format!("the router's LANs are: {}", names.join(", "))
    });
    false
}

/// No port of the forward is claimed yet; every clash is reported.
fn check_unclaimed(
    v: &mut V,
    fname: &Sp<String>,
    f: &ForwardDoc,
    spec: &PortSpec,
    claims: &[PortClaim],
) -> bool {
    let mut clash = false;
    for p in &spec.protos {
        for c in claims {
            if c.proto != *p || !c.ports.overlaps(&spec.ports) {
                continue;
            }
            clash = true;
            if c.lockout {
                v.err(
                    "forward-lockout",
                    f.port.at,
                    format!(
                        "forward {:?} ({}/{p}) would capture {}",
                        fname.value, spec.ports, c.owner
                    ),
                )
                .with_note_at("it is declared", c.at)
                .with_hint(
                    "the gateway never forwards its own ports; pick another public port for this service",
                );
            } else {
                v.err(
                    "forward-overlap",
                    f.port.at,
                    format!(
                        "forward {:?} ({}/{p}) overlaps {}",
                        fname.value, spec.ports, c.owner
                    ),
                )
                .with_note_at("it is declared", c.at);
            }
        }
    }
    !clash
}
