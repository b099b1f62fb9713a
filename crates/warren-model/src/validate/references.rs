//! Names that can only be checked once every section resolved: a host's
//! pinned `wireguard_keys` name WireGuard interfaces it really runs, and
//! `managed_by` names an agent host, which speaks for one router only.

use super::hosts::{role_of, HostParts};
use super::V;
use crate::model::{PrivateVpn, Role};
use std::collections::BTreeMap;

/// Every host's pinned keys and `managed_by`, host by host.
pub(super) fn validate_references(
    v: &mut V,
    hosts: &BTreeMap<String, HostParts>,
    wan_interface: &str,
    private: Option<&PrivateVpn>,
) {
    for h in hosts.values() {
        check_pinned_keys(v, h, wan_interface, private);
        check_managed_by(v, h, hosts);
    }
    check_one_router_per_agent(v, hosts);
}

/// Each pinned key names an interface the host runs: the WAN VPN's on both
/// its ends, the private VPN's on its server.
fn check_pinned_keys(v: &mut V, h: &HostParts, wan_interface: &str, private: Option<&PrivateVpn>) {
    let mut ifaces = Vec::new();
    if h.host.role == Role::Gateway || h.host.role == Role::Router {
        ifaces.push(wan_interface.to_string());
    }
    if let Some(pv) = private {
        if pv.server == h.host.name {
            ifaces.push(pv.interface.clone());
        }
    }
    for (iface, at) in &h.keys_at {
        if !ifaces.contains(iface) {
            v.err(
                "unknown-interface",
                *at,
                format!("host {:?} has no WireGuard interface {iface:?}", h.host.name),
            )
            .with_hint(if ifaces.is_empty() {
                "this host runs no WireGuard interface".to_string()
            } else {
                format!("its interfaces are: {}", ifaces.join(", "))
            });
        }
    }
}

fn check_managed_by(v: &mut V, h: &HostParts, hosts: &BTreeMap<String, HostParts>) {
    let Some(m) = &h.host.managed_by else { return };
    if role_of(hosts, m) != Some(Role::Agent) {
        v.err(
            "unknown-host",
            h.managed_by_at,
            format!("managed_by names {m:?}, which is not a host with role agent"),
        );
    }
}

/// An agent host speaks for exactly one RouterOS router: the controller maps
/// that agent's identity onto the router's session, so a second router
/// naming the same agent would have no session of its own.
fn check_one_router_per_agent(v: &mut V, hosts: &BTreeMap<String, HostParts>) {
    let mut first: BTreeMap<&str, &HostParts> = BTreeMap::new();
    for h in hosts.values() {
        let Some(m) = &h.host.managed_by else { continue };
        match first.get(m.as_str()) {
            None => {
                first.insert(m, h);
            }
            Some(earlier) => {
                v.err(
                    "managed-by-shared",
                    h.managed_by_at,
                    format!(
                        "agent host {m:?} already drives RouterOS router {:?}; one agent host drives one router",
                        earlier.host.name
                    ),
                )
                .with_note_at(
                    &format!("{:?} names it", earlier.host.name),
                    earlier.managed_by_at,
                )
                .with_hint("give each RouterOS router its own `role: agent` host");
            }
        }
    }
}
