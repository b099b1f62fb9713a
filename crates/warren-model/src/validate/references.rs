//! Names that can only be checked once every section resolved: a host's
//! pinned `wireguard_keys` name WireGuard interfaces it really runs, and
//! `managed_by` names an agent host.

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
