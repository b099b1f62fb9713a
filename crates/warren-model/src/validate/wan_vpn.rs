//! The WAN VPN (`wan_vpn`): its two ends, its transfer subnet and addresses,
//! port, keepalive, interface and routing numbers; then the gateway's
//! management ports, which only matter because of what the WAN VPN forwards.

use super::hosts::{role_of, HostParts};
use super::values::{address_in, ifname, port, subnet};
use super::V;
use crate::diag::Pos;
use crate::model::{Proto, Role, WanVpn};
use crate::net::Ipv4Cidr;
use crate::schema::WanVpnDoc;
use crate::sp::Sp;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The WAN VPN as far as it resolved, defaults filled in.
pub(super) struct WanParts {
    /// Name of the gateway host, as written (it may not exist).
    pub(super) gateway: String,
    /// Name of the router host, as written (it may not exist).
    pub(super) router: String,
    pub(super) subnet: Option<Ipv4Cidr>,
    /// `wan_vpn.subnet`.
    pub(super) subnet_at: Pos,
    pub(super) gateway_address: Option<Ipv4Addr>,
    pub(super) router_address: Option<Ipv4Addr>,
    pub(super) port: Option<u16>,
    /// `wan_vpn.port`, or the `wan_vpn` block when the port is the default.
    pub(super) port_at: Pos,
    pub(super) keepalive: u16,
    pub(super) interface: String,
    pub(super) forward_all: bool,
    pub(super) table: u32,
    pub(super) mark: u32,
    pub(super) rule_priority: u32,
}

impl WanParts {
    /// The resolved WAN VPN, if its subnet, addresses and port all resolved.
    pub(super) fn resolved(self) -> Option<WanVpn> {
        Some(WanVpn {
            gateway: self.gateway,
            router: self.router,
            subnet: self.subnet?,
            gateway_address: self.gateway_address?,
            router_address: self.router_address?,
            port: self.port?,
            keepalive: self.keepalive,
            interface: self.interface,
            forward_all: self.forward_all,
            table: self.table,
            mark: self.mark,
            rule_priority: self.rule_priority,
        })
    }
}

/// Every key of `wan_vpn`, in the order the diagnostics were always emitted.
pub(super) fn validate_wan_vpn(
    v: &mut V,
    w: &Sp<WanVpnDoc>,
    hosts: &BTreeMap<String, HostParts>,
) -> WanParts {
    check_ends(v, w, hosts);
    let subnet = wan_subnet(v, w);
    let port = w
        .port
        .as_ref()
        .map_or(Some(51820), |p| port(v, "wan_vpn.port", p));
    let keepalive = keepalive(v, w.keepalive.as_ref());
    let interface = ifname(v, w.interface.as_ref(), "wg0");
    let table = table(v, w.table.as_ref());
    let mark = mark(v, w.mark.as_ref());
    let rule_priority = rule_priority(v, w.rule_priority.as_ref());
    let (gateway_address, router_address) = match subnet {
        Some(s) if s.len <= 31 => addresses(v, w, s),
        _ => (None, None),
    };
    WanParts {
        gateway: w.gateway.value.clone(),
        router: w.router.value.clone(),
        subnet,
        subnet_at: w.subnet.at,
        gateway_address,
        router_address,
        port,
        port_at: w.port.as_ref().map_or(w.at, |p| p.at),
        keepalive,
        interface,
        forward_all: w.forward_all.as_ref().is_none_or(|b| b.value),
        table,
        mark,
        rule_priority,
    }
}

/// `gateway` and `router` name hosts with those roles.
fn check_ends(v: &mut V, w: &WanVpnDoc, hosts: &BTreeMap<String, HostParts>) {
    for (n, want, label) in [
        (&w.gateway, Role::Gateway, "gateway"),
        (&w.router, Role::Router, "router"),
    ] {
        match role_of(hosts, n) {
            None => {
                v.err(
                    "unknown-host",
                    n.at,
                    format!(
                        "wan_vpn.{label} names host {:?}, which is not in `hosts`",
                        n.value
                    ),
                );
            }
            Some(r) if r != want => {
                v.err(
                    "wrong-role",
                    n.at,
                    format!(
                        "wan_vpn.{label} names host {:?}, whose role is not {label}",
                        n.value
                    ),
                );
            }
            _ => {}
        }
    }
}

/// A network with room for two tunnel addresses. A subnet that is too small
/// is still returned: the addresses are then not resolved.
fn wan_subnet(v: &mut V, w: &WanVpnDoc) -> Option<Ipv4Cidr> {
    let s = subnet(v, "wan_vpn.subnet", &w.subnet)?;
    if s.len > 31 {
        v.err(
            "subnet-too-small",
            w.subnet.at,
            format!("wan_vpn.subnet {s} cannot hold two tunnel addresses"),
        )
        .with_hint("a /30 (or /31) is enough, e.g. 10.0.18.0/30");
    }
    Some(s)
}

/// Seconds, 25 by default; 0 is allowed but warned about.
fn keepalive(v: &mut V, k: Option<&Sp<u64>>) -> u16 {
    match k {
        None => 25,
        Some(k) if k.value > 65535 => {
            v.err(
                "bad-value",
                k.at,
                format!("wan_vpn.keepalive {} is too large", k.value),
            );
            25
        }
        Some(k) if k.value == 0 => {
            v.warn("keepalive-off", k.at, "wan_vpn.keepalive is 0: the router's CGNAT mapping will expire and the gateway will lose the tunnel while nobody sends")
                .with_hint("keep the default (25 seconds)");
            0
        }
        Some(k) => k.value as u16,
    }
}

/// The router's routing table for replies, 100 by default.
fn table(v: &mut V, t: Option<&Sp<u64>>) -> u32 {
    match t {
        None => 100,
        Some(t) if matches!(t.value, 0 | 253..=255) || t.value > u64::from(u32::MAX) => {
            v.err(
                "reserved-table",
                t.at,
                format!("routing table {} is reserved or invalid", t.value),
            )
            .with_hint("0, 253 (default), 254 (main) and 255 (local) belong to the kernel; pick e.g. 100");
            100
        }
        Some(t) => t.value as u32,
    }
}

/// The connection mark, 10 by default.
fn mark(v: &mut V, m: Option<&Sp<u64>>) -> u32 {
    match m {
        None => 10,
        Some(m) if m.value == 0 || m.value > u64::from(u32::MAX) => {
            v.err(
                "bad-value",
                m.at,
                format!("mark {} must be from 1 to 4294967295", m.value),
            );
            10
        }
        Some(m) => m.value as u32,
    }
}

/// The policy rules' priority, 456 by default.
fn rule_priority(v: &mut V, p: Option<&Sp<u64>>) -> u32 {
    match p {
        None => 456,
        Some(p) if p.value == 0 || p.value >= 32766 => {
            v.err(
                "bad-value",
                p.at,
                format!("rule_priority {} must be from 1 to 32765", p.value),
            )
            .with_hint("the rules must come before the main table's rule (32766)");
            456
        }
        Some(p) => p.value as u32,
    }
}

/// The two ends' addresses in `s` (given, or its first and second host), which
/// must differ.
fn addresses(v: &mut V, w: &WanVpnDoc, s: Ipv4Cidr) -> (Option<Ipv4Addr>, Option<Ipv4Addr>) {
    let g = address_in(v, "wan_vpn.gateway_address", w.gateway_address.as_ref(), s, 0);
    let r = address_in(v, "wan_vpn.router_address", w.router_address.as_ref(), s, 1);
    if let (Some(g), Some(r)) = (g, r) {
        if g == r {
            let at = w.router_address.as_ref().map_or(w.subnet.at, |x| x.at);
            v.err(
                "address-clash",
                at,
                format!("the gateway and the router both use {g} in the WAN VPN"),
            );
        }
    }
    (g, r)
}

/// With `forward_all`, a gateway without management ports forwards its own
/// SSH away; a management port over the WAN VPN port is redundant.
pub(super) fn validate_management(v: &mut V, gateway: &HostParts, wan: &WanParts) {
    let g = gateway;
    if wan.forward_all && g.host.management.is_empty() {
        v.err(
            "management-missing",
            g.at,
            format!("gateway {:?} keeps no management port, and wan_vpn.forward_all sends every other inbound port to the router: you would lose SSH to the gateway", g.host.name),
        )
        .with_hint("list the gateway's SSH port, e.g. management: [22/tcp]");
    }
    if let Some(wp) = wan.port {
        for (m, at) in g.host.management.iter().zip(&g.management_at) {
            if m.protos.contains(&Proto::Udp) && m.ports.contains(wp) {
                v.warn(
                    "redundant-management",
                    *at,
                    format!("{m} includes the WAN VPN port {wp}/udp, which the gateway always keeps"),
                );
            }
        }
    }
}
