//! The private VPN (`private_vpn`): its server, port, subnet, interface and
//! address, checked against the WAN VPN and the gateway's own ports; then each
//! client's address, key, routes and keepalive.

use super::hosts::{role_of, HostParts};
use super::values::{address_in, check_name, cidr, ifname, ip, port, subnet, wg_key};
use super::wan_vpn::WanParts;
use super::V;
use crate::diag::Pos;
use crate::model::{Client, Lan, PrivateVpn, Proto, Role, WgKey};
use crate::net::Ipv4Cidr;
use crate::schema::{ClientDoc, PrivateVpnDoc};
use crate::sp::{Sp, Text};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The private VPN as far as it resolved.
pub(super) struct PrivateParts {
    /// The resolved VPN, if its port, subnet and server address resolved.
    pub(super) vpn: Option<PrivateVpn>,
    /// `private_vpn.port`.
    pub(super) port_at: Pos,
    /// Its subnet, if that resolved (even when the rest did not).
    pub(super) subnet: Option<Ipv4Cidr>,
    /// `private_vpn.subnet`.
    pub(super) subnet_at: Pos,
}

/// What every client is checked against.
struct ClientScope {
    /// The VPN's subnet, if it resolved; clients' addresses must be in it.
    subnet: Option<Ipv4Cidr>,
    /// The server's address in the VPN.
    server: Option<Ipv4Addr>,
    /// The router's LAN subnets, routed by default.
    lans: Vec<Ipv4Cidr>,
    /// The gateway's public address: the clients' endpoint.
    endpoint: Option<Ipv4Addr>,
}

/// Addresses and keys already taken by earlier clients, with who took them where.
#[derive(Default)]
struct Seen {
    addresses: BTreeMap<Ipv4Addr, (String, Pos)>,
    keys: BTreeMap<String, (String, Pos)>,
}

/// Every key of `private_vpn`, in the order the diagnostics were always emitted.
pub(super) fn validate_private_vpn(
    v: &mut V,
    p: &Sp<PrivateVpnDoc>,
    hosts: &BTreeMap<String, HostParts>,
    wan: &WanParts,
    gateway: Option<&HostParts>,
    router: Option<&HostParts>,
) -> PrivateParts {
    check_server(v, p, hosts);
    let pport = port(v, "private_vpn.port", &p.port);
    let psub = private_subnet(v, p);
    let interface = ifname(v, p.interface.as_ref(), "wg1");
    if interface == wan.interface {
        let at = p.interface.as_ref().map_or(p.at, |i| i.at);
        v.err(
            "interface-clash",
            at,
            format!("private_vpn.interface {interface:?} is also the WAN VPN interface"),
        );
    }
    check_port_is_forwarded(v, p, pport, wan, gateway);
    let address = psub.and_then(|s| server_address(v, p, s));
    let scope = ClientScope {
        subnet: psub,
        server: address,
        lans: router
            .map(|r| r.host.lans.iter().map(Lan::subnet).collect())
            .unwrap_or_default(),
        endpoint: gateway.and_then(|g| g.host.public_address),
    };
    let clients = clients(v, &scope, &p.clients);
    let vpn = match (pport, psub, address) {
        (Some(port), Some(subnet), Some(address)) => Some(PrivateVpn {
            server: p.server.value.clone(),
            port,
            subnet,
            address,
            interface,
            clients,
        }),
        _ => None,
    };
    PrivateParts {
        vpn,
        port_at: p.port.at,
        subnet: psub,
        subnet_at: p.subnet.at,
    }
}

/// `server` names the router.
fn check_server(v: &mut V, p: &PrivateVpnDoc, hosts: &BTreeMap<String, HostParts>) {
    match role_of(hosts, &p.server) {
        None => {
            v.err(
                "unknown-host",
                p.server.at,
                format!(
                    "private_vpn.server names host {:?}, which is not in `hosts`",
                    p.server.value
                ),
            );
        }
        Some(Role::Router) => {}
        Some(_) => {
            v.err(
                "wrong-role",
                p.server.at,
                format!(
                    "private_vpn.server must be the router; {:?} is not",
                    p.server.value
                ),
            )
            .with_hint("the private VPN terminates on the router and rides inside the WAN VPN");
        }
    }
}

/// A network with room for the server and its clients (/30 at most).
fn private_subnet(v: &mut V, p: &PrivateVpnDoc) -> Option<Ipv4Cidr> {
    let s = subnet(v, "private_vpn.subnet", &p.subnet)?;
    if s.len > 30 {
        v.err(
            "subnet-too-small",
            p.subnet.at,
            format!("private_vpn.subnet {s} has no room for the server and its clients"),
        )
        .with_hint("use a /24 or similar, e.g. 192.168.17.0/24");
        return None;
    }
    Some(s)
}

/// The gateway forwards the VPN's port to the router only if it does not keep
/// that port for itself (the WAN VPN port, a management port).
fn check_port_is_forwarded(
    v: &mut V,
    p: &PrivateVpnDoc,
    pport: Option<u16>,
    wan: &WanParts,
    gateway: Option<&HostParts>,
) {
    let Some(pp) = pport else { return };
    if wan.port == Some(pp) {
        v.err("forward-lockout", p.port.at, format!("private_vpn.port {pp}/udp is the WAN VPN's port, which the gateway keeps for itself: clients would never reach the router"))
            .with_hint("pick another port, e.g. 13131");
    }
    let Some(g) = gateway else { return };
    for (m, at) in g.host.management.iter().zip(&g.management_at) {
        if m.protos.contains(&Proto::Udp) && m.ports.contains(pp) {
            v.err("forward-lockout", p.port.at, format!("private_vpn.port {pp}/udp is a management port of the gateway, so it is never forwarded to the router"))
                .with_note_at("the management port is declared", *at);
        }
    }
}

/// The server's address in `s`, given or its first host.
fn server_address(v: &mut V, p: &PrivateVpnDoc, s: Ipv4Cidr) -> Option<Ipv4Addr> {
    let given = p.address.as_ref();
    let address = address_in(v, "private_vpn.address", given, s, 0);
    if let (None, Some(t), Some(first)) = (address, given, s.nth_host(0)) {
        // The seed's own mistake: say what the clients expect.
        let outside = v
            .diags
            .0
            .iter_mut()
            .rev()
            .find(|d| d.pos == t.at && d.code == "address-outside-subnet");
        if let Some(d) = outside {
            d.hint = Some(format!(
                "clients route {s} into the VPN and expect the server inside it; use address: {first}"
            ));
        }
    }
    address
}

fn clients(v: &mut V, scope: &ClientScope, docs: &BTreeMap<Sp<String>, Sp<ClientDoc>>) -> Vec<Client> {
    let mut seen = Seen::default();
    let mut clients = Vec::new();
    for (cname, c) in docs {
        clients.extend(client(v, scope, &mut seen, cname, c));
    }
    clients
}

/// One client; `None` when its address or key did not resolve.
fn client(
    v: &mut V,
    scope: &ClientScope,
    seen: &mut Seen,
    cname: &Sp<String>,
    c: &Sp<ClientDoc>,
) -> Option<Client> {
    check_name(v, "client", cname);
    let address = client_address(v, scope, seen, cname, c);
    let public_key = client_key(v, seen, cname, c);
    let routes = client_routes(v, scope, cname, c);
    let keepalive = match &c.keepalive {
        Some(k) if k.value > 65535 => {
            v.err("bad-value", k.at, format!("keepalive {} is too large", k.value));
            25
        }
        Some(k) => k.value as u16,
        None => 25,
    };
    Some(Client {
        name: cname.value.clone(),
        address: address?,
        public_key: public_key?,
        routes,
        keepalive,
    })
}

/// A usable address of the VPN's subnet, not the server's, not another client's.
fn client_address(
    v: &mut V,
    scope: &ClientScope,
    seen: &mut Seen,
    cname: &Sp<String>,
    c: &ClientDoc,
) -> Option<Ipv4Addr> {
    let a = ip(v, &format!("client {:?} address", cname.value), &c.address)?;
    let s = scope.subnet?;
    if !s.is_usable_host(a) {
        v.err(
            "address-outside-subnet",
            c.address.at,
            format!(
                "client {:?} address {a} is outside the private VPN subnet {s}",
                cname.value
            ),
        )
        .with_hint(format!("use an address from {s}"));
        return None;
    }
    if Some(a) == scope.server {
        v.err(
            "address-clash",
            c.address.at,
            format!("client {:?} uses {a}, the server's own address", cname.value),
        );
        return None;
    }
    if let Some((other, at)) = seen.addresses.get(&a) {
        v.err(
            "address-clash",
            c.address.at,
            format!(
                "client {:?} uses {a}, already used by client {other:?}",
                cname.value
            ),
        )
        .with_note_at(&format!("{other:?} is declared"), *at);
        return None;
    }
    seen.addresses.insert(a, (cname.value.clone(), c.address.at));
    Some(a)
}

/// A valid key, not another client's. A duplicate is reported on the second
/// client but still returned: the error already stops compilation.
fn client_key(v: &mut V, seen: &mut Seen, cname: &Sp<String>, c: &ClientDoc) -> Option<WgKey> {
    let key = wg_key(v, &format!("client {:?} public_key", cname.value), &c.public_key)?;
    if let Some((other, at)) = seen.keys.get(&key.0) {
        v.err(
            "duplicate-key",
            c.public_key.at,
            format!(
                "client {:?} has the same public key as client {other:?}",
                cname.value
            ),
        )
        .with_note_at(&format!("{other:?} is declared"), *at)
        .with_hint("each device generates its own key pair");
    } else {
        seen.keys
            .insert(key.0.clone(), (cname.value.clone(), c.public_key.at));
    }
    Some(key)
}

/// The client's `AllowedIPs`: by default the VPN subnet and every LAN.
fn client_routes(v: &mut V, scope: &ClientScope, cname: &Sp<String>, c: &Sp<ClientDoc>) -> Vec<Ipv4Cidr> {
    match &c.routes {
        None => scope
            .subnet
            .into_iter()
            .chain(scope.lans.iter().copied())
            .collect(),
        Some(rs) if rs.is_empty() => {
            v.err(
                "unreachable-server",
                c.at,
                format!(
                    "client {:?} has `routes: []`: it would send nothing into the VPN",
                    cname.value
                ),
            )
            .with_hint("omit `routes` for the default (the VPN subnet and the LANs)");
            Vec::new()
        }
        Some(rs) => {
            let routes: Vec<Ipv4Cidr> = rs
                .iter()
                .filter_map(|r| client_route(v, scope, cname, r))
                .collect();
            if let (Some(pa), false) = (scope.server, routes.is_empty()) {
                if !routes.iter().any(|r| r.contains(pa)) {
                    let at = rs.first().map_or(c.at, |r| r.at);
                    v.err(
                        "unreachable-server",
                        at,
                        format!(
                            "client {:?} routes do not include the server's address {pa}",
                            cname.value
                        ),
                    )
                    .with_hint(format!(
                        "add {} (or the whole VPN subnet) to its routes",
                        Ipv4Cidr::host(pa)
                    ));
                }
            }
            routes
        }
    }
}

/// One route: a network that does not contain the client's own endpoint.
fn client_route(v: &mut V, scope: &ClientScope, cname: &Sp<String>, r: &Sp<Text>) -> Option<Ipv4Cidr> {
    let net = cidr(v, &format!("client {:?} route", cname.value), r)?;
    if !net.is_network() {
        v.err(
            "malformed-subnet",
            r.at,
            format!("client {:?} route {} has host bits set", cname.value, net),
        )
        .with_hint(format!("did you mean {}?", net.trunc()));
        return None;
    }
    if let Some(g) = scope.endpoint {
        if net.len > 0 && net.contains(g) {
            v.err("endpoint-in-tunnel", r.at, format!("client {:?} route {} contains the gateway's public address {g}: the client would send its own tunnel packets into the tunnel", cname.value, net))
                .with_hint("route only the VPN subnet and the LANs (the default), or everything with 0.0.0.0/0, which clients exclude their endpoint from");
            return None;
        }
    }
    Some(net)
}
