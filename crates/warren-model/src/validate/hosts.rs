//! Hosts: each entry of `hosts` resolved to a [`Host`] on its own (which keys
//! its role allows, each value parsed), keeping the YAML positions that later
//! sections point at; then the one-gateway, one-router rule. Cross-references
//! to other sections (the WAN VPN's ends, `managed_by`) are checked elsewhere.

use super::values::{
    check_name, cidr, endpoint, fingerprint, ifname, ip, port, port_spec, ssh_ed25519, wg_key,
};
use super::V;
use crate::diag::Pos;
use crate::model::{
    AgentAccess, DriftPolicy, ForeignFirewall, Host, Lan, Netfilter, Platform, PortSpec, Role,
    RouterOsAccess, WgKey,
};
use crate::schema::{HostDoc, LanDoc};
use crate::sp::Sp;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A host as resolved, with the positions in the YAML that later checks point at.
pub(super) struct HostParts {
    pub(super) host: Host,
    /// The host's mapping, `hosts.<name>`.
    pub(super) at: Pos,
    /// Its `role`.
    pub(super) role_at: Pos,
    /// Its `public_address`, or `UNKNOWN` when it has none.
    pub(super) public_at: Pos,
    /// Each resolved management port, parallel to `host.management`.
    pub(super) management_at: Vec<Pos>,
    /// Each resolved LAN's `address`, parallel to `host.lans`.
    pub(super) lan_address_at: Vec<Pos>,
    /// How many LANs the document declares for it, resolved or not.
    pub(super) lans_declared: usize,
    /// Its `agent` block, or the host's mapping when it has none.
    pub(super) agent_at: Pos,
    /// Its `managed_by`, or the host's mapping when it has none.
    pub(super) managed_by_at: Pos,
    /// Where each valid pinned key's interface name is written.
    pub(super) keys_at: BTreeMap<String, Pos>,
}

impl HostParts {
    /// It declares LANs and every one of them resolved.
    pub(super) fn all_lans_resolved(&self) -> bool {
        self.lans_declared > 0 && self.lans_declared == self.host.lans.len()
    }
}

/// The role of host `name`, if there is such a host.
pub(super) fn role_of(hosts: &BTreeMap<String, HostParts>, name: &str) -> Option<Role> {
    hosts.get(name).map(|h| h.host.role)
}

/// Every host resolved, by name, and at most one gateway and one router.
pub(super) fn validate_hosts(
    v: &mut V,
    doc: &BTreeMap<Sp<String>, Sp<HostDoc>>,
) -> BTreeMap<String, HostParts> {
    let mut hosts = BTreeMap::new();
    for (name, h) in doc {
        hosts.insert(name.value.clone(), host(v, name, h));
    }
    check_one_per_role(v, &hosts);
    hosts
}

fn check_one_per_role(v: &mut V, hosts: &BTreeMap<String, HostParts>) {
    for (role, label) in [(Role::Gateway, "gateway"), (Role::Router, "router")] {
        let with: Vec<&HostParts> = hosts.values().filter(|h| h.host.role == role).collect();
        if with.len() > 1 {
            v.err(
                "one-per-role",
                with[1].role_at,
                format!(
                    "a second {label} ({:?}); Warren v1 manages one {label}",
                    with[1].host.name
                ),
            )
            .with_note_at(
                &format!("the first {label} is {:?}", with[0].host.name),
                with[0].role_at,
            );
        }
    }
}

/// One host on its own: each value parsed, each key checked against its role.
fn host(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> HostParts {
    check_name(v, "host", name);
    let platform = h.platform.as_ref().map_or(Platform::Linux, |p| p.value);
    let (public_address, public_at) = public_address(v, name, h);
    let uplink = uplink(v, name, h);
    let path_mtu = path_mtu(v, h);
    let (management, management_at) = management(v, name, h);
    let (lans, lan_address_at) = lans(v, name, h);
    let routeros = routeros(v, name, h, platform);
    linux_firewall_keys(v, name, h, platform);
    let agent = h.agent.as_ref().map(|a| AgentAccess {
        address: a.address.as_ref().and_then(|x| endpoint(v, "agent address", x)),
        identity: a
            .identity
            .as_ref()
            .and_then(|k| ssh_ed25519(v, "agent identity", k)),
    });
    let (wireguard_keys, keys_at) = pinned_keys(v, h);
    HostParts {
        host: Host {
            name: name.value.clone(),
            role: h.role.value,
            platform,
            public_address,
            uplink,
            path_mtu,
            management,
            lans,
            managed_by: h.managed_by.as_ref().map(|m| m.value.clone()),
            routeros,
            agent,
            wireguard_keys,
            drift: h.drift.as_ref().map_or(DriftPolicy::Report, |d| d.value),
            netfilter: h.netfilter.as_ref().map_or(Netfilter::Nftables, |n| n.value),
            foreign_firewall: h
                .foreign_firewall
                .as_ref()
                .map_or(ForeignFirewall::Auto, |f| f.value),
        },
        at: h.at,
        role_at: h.role.at,
        public_at,
        management_at,
        lan_address_at,
        lans_declared: h.lans.len(),
        agent_at: h.agent.as_ref().map_or(h.at, |a| a.at),
        managed_by_at: h.managed_by.as_ref().map_or(h.at, |m| m.at),
        keys_at,
    }
}

/// `wrong-role-key`: `key` is set on a host whose role does not use it.
fn not_for(v: &mut V, name: &Sp<String>, role: Role, key: &str, at: Pos) {
    let r = match role {
        Role::Gateway => "gateway",
        Role::Router => "router",
        Role::Agent => "agent",
    };
    v.err(
        "wrong-role-key",
        at,
        format!("`{key}` does not apply to host {:?} (role {r})", name.value),
    );
}

/// Required on the gateway, refused elsewhere.
fn public_address(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> (Option<Ipv4Addr>, Pos) {
    let role = h.role.value;
    let Some(a) = &h.public_address else {
        if role == Role::Gateway {
            v.err(
                "missing-key",
                h.at,
                format!("gateway {:?} has no `public_address`", name.value),
            )
            .with_hint("the public IPv4 address of the VPS, e.g. public_address: 203.0.113.10");
        }
        return (None, Pos::UNKNOWN);
    };
    if role == Role::Gateway {
        (ip(v, "public_address", a), a.at)
    } else {
        not_for(v, name, role, "public_address", a.at);
        (None, a.at)
    }
}

/// Required on the gateway (its public interface); optional elsewhere.
fn uplink(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> Option<String> {
    let uplink = h.uplink.as_ref().map(|u| ifname(v, Some(u), "eth0"));
    if h.role.value == Role::Gateway && uplink.is_none() {
        v.err(
            "missing-key",
            h.at,
            format!("gateway {:?} has no `uplink`", name.value),
        )
        .with_hint("the gateway's public interface, e.g. uplink: enp0s6");
    }
    uplink
}

/// 1280 (IPv6's minimum) to 9000 (jumbo frames); 1500 by default.
fn path_mtu(v: &mut V, h: &HostDoc) -> u16 {
    match &h.path_mtu {
        Some(m) if !(1280..=9000).contains(&m.value) => {
            v.err(
                "bad-mtu",
                m.at,
                format!("path_mtu {} is outside 1280-9000", m.value),
            );
            1500
        }
        Some(m) => m.value as u16,
        None => 1500,
    }
}

/// The gateway's own ports, with where each is written. Other roles get one
/// `wrong-role-key` for the whole list.
fn management(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> (Vec<PortSpec>, Vec<Pos>) {
    let mut management = Vec::new();
    let mut management_at = Vec::new();
    for m in &h.management {
        if h.role.value != Role::Gateway {
            not_for(v, name, h.role.value, "management", m.at);
            break;
        }
        if let Some(p) = port_spec(v, "management port", m) {
            management.push(p);
            management_at.push(m.at);
        }
    }
    (management, management_at)
}

/// The router's LANs (required there), with where each address is written.
/// Other roles get one `wrong-role-key` for the whole mapping.
fn lans(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> (Vec<Lan>, Vec<Pos>) {
    let role = h.role.value;
    let mut lans = Vec::new();
    let mut address_at = Vec::new();
    for (lname, l) in &h.lans {
        if role != Role::Router {
            not_for(v, name, role, "lans", lname.at);
            break;
        }
        if let Some(lan) = lan(v, lname, l) {
            lans.push(lan);
            address_at.push(l.address.at);
        }
    }
    if role == Role::Router && h.lans.is_empty() {
        v.err("missing-key", h.at, format!("router {:?} has no `lans`", name.value))
            .with_hint("list the LANs behind the router, e.g. lans: {lan: {interface: br-lan, address: 192.168.16.1/24}}");
    }
    (lans, address_at)
}

/// One LAN: its address is the router's own, so neither the network nor the
/// broadcast address of its prefix.
fn lan(v: &mut V, lname: &Sp<String>, l: &LanDoc) -> Option<Lan> {
    check_name(v, "LAN", lname);
    let interface = ifname(v, Some(&l.interface), "lan");
    let address = cidr(v, &format!("LAN {:?} address", lname.value), &l.address)?;
    if address.is_network() && address.len < 31 {
        v.err(
            "address-outside-subnet",
            l.address.at,
            format!(
                "LAN {:?} address {address} is the network address, not the router's address",
                lname.value
            ),
        )
        .with_hint(format!(
            "write the router's own address with the prefix, e.g. {}/{}",
            address.nth_host(0).unwrap_or(address.addr),
            address.len
        ));
        return None;
    }
    if !address.is_usable_host(address.addr) {
        v.err(
            "address-outside-subnet",
            l.address.at,
            format!(
                "LAN {:?} address {address} is the broadcast address of {}",
                lname.value,
                address.trunc()
            ),
        );
        return None;
    }
    Some(Lan {
        name: lname.value.clone(),
        interface,
        address,
    })
}

/// `platform: routeros` is for a router only, which then needs `managed_by`
/// and a `routeros` access block; any other host must not have either key.
fn routeros(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>, platform: Platform) -> Option<RouterOsAccess> {
    let role = h.role.value;
    if platform == Platform::Routeros && role != Role::Router {
        if let Some(p) = &h.platform {
            v.err(
                "wrong-role-key",
                p.at,
                format!(
                    "only a router can be `platform: routeros` (host {:?})",
                    name.value
                ),
            );
        }
    }
    if platform == Platform::Routeros && role == Role::Router {
        return routeros_access(v, name, h);
    }
    for (key, at) in [
        ("managed_by", h.managed_by.as_ref().map(|m| m.at)),
        ("routeros", h.routeros.as_ref().map(|r| r.at)),
    ] {
        if let Some(at) = at {
            v.err(
                "wrong-role-key",
                at,
                format!(
                    "`{key}` applies only to a RouterOS router (host {:?})",
                    name.value
                ),
            );
        }
    }
    None
}

/// `wrong-role-key`: `netfilter` and `foreign_firewall` describe a Linux
/// host that carries a plan (a gateway or a router), nothing else.
fn linux_firewall_keys(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>, platform: Platform) {
    if platform == Platform::Linux && h.role.value != Role::Agent {
        return;
    }
    for (key, at) in [
        ("netfilter", h.netfilter.as_ref().map(|n| n.at)),
        ("foreign_firewall", h.foreign_firewall.as_ref().map(|f| f.at)),
    ] {
        if let Some(at) = at {
            v.err(
                "wrong-role-key",
                at,
                format!(
                    "`{key}` applies only to a Linux gateway or router (host {:?})",
                    name.value
                ),
            );
        }
    }
}

/// A RouterOS router's `managed_by` and `routeros` block (REST over HTTPS,
/// the certificate pinned by fingerprint).
fn routeros_access(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> Option<RouterOsAccess> {
    if h.managed_by.is_none() {
        v.err(
            "missing-key",
            h.at,
            format!("RouterOS router {:?} has no `managed_by`", name.value),
        )
        .with_hint("name the `role: agent` host next to the router whose agent drives it over REST, e.g. managed_by: pi");
    }
    let Some(r) = &h.routeros else {
        v.err(
            "missing-key",
            h.at,
            format!("RouterOS router {:?} has no `routeros` access block", name.value),
        )
        .with_hint("routeros: {address: 192.168.16.1, fingerprint: <SHA-256 of its www-ssl certificate>}");
        return None;
    };
    for (old, at, new) in [
        (
            "ssh_port",
            r.ssh_port.as_ref().map(|k| k.at),
            "`port` (the HTTPS port, default 443)",
        ),
        (
            "host_key",
            r.host_key.as_ref().map(|k| k.at),
            "`fingerprint` (the SHA-256 of the router's www-ssl certificate)",
        ),
    ] {
        if let Some(at) = at {
            v.err(
                "replaced-key",
                at,
                format!(
                    "routeros.{old} was replaced: Warren drives RouterOS over its REST API (HTTPS), not SSH"
                ),
            )
            .with_hint(format!("remove `{old}`; use {new}"));
        }
    }
    let address = ip(v, "routeros address", &r.address);
    let port = r
        .port
        .as_ref()
        .and_then(|p| port(v, "routeros port", p))
        .unwrap_or(443);
    let fingerprint = match &r.fingerprint {
        Some(f) => fingerprint(v, "routeros fingerprint", f),
        None => {
            v.err(
                "missing-key",
                r.at,
                format!("RouterOS router {:?} has no `routeros.fingerprint`", name.value),
            )
            .with_hint("the agent accepts only the router's own certificate: copy `fingerprint` from `/certificate print detail` on the router (the certificate of `/ip/service www-ssl`)");
            None
        }
    };
    Some(RouterOsAccess {
        address: address?,
        port,
        user: r
            .user
            .as_ref()
            .map_or_else(|| "warren".to_string(), |u| u.value.clone()),
        fingerprint: fingerprint?,
    })
}

/// `wireguard_keys`, each a valid key, with where each interface name is
/// written. Whether the interfaces exist is checked once every section resolved.
fn pinned_keys(v: &mut V, h: &HostDoc) -> (BTreeMap<String, WgKey>, BTreeMap<String, Pos>) {
    let mut wireguard_keys = BTreeMap::new();
    let mut keys_at = BTreeMap::new();
    for (iface, k) in &h.wireguard_keys {
        if let Some(key) = wg_key(v, &format!("wireguard_keys.{}", iface.value), k) {
            wireguard_keys.insert(iface.value.clone(), key);
            keys_at.insert(iface.value.clone(), iface.at);
        }
    }
    (wireguard_keys, keys_at)
}
