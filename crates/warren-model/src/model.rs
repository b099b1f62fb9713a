//! The resolved, validated desired state: every default filled in, every
//! address parsed, every cross-reference checked. The compiler reads only this.

use crate::net::Ipv4Cidr;
pub use crate::schema::{DriftPolicy, Platform, Role};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive port range; a single port has `first == last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(p: u16) -> Self {
        PortRange { first: p, last: p }
    }
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }
    pub fn overlaps(&self, o: &PortRange) -> bool {
        self.first <= o.last && o.first <= self.last
    }
    pub fn contains(&self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Ports and the protocols they apply to (`53/tcp+udp` has both).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortSpec {
    pub protos: Vec<Proto>,
    pub ports: PortRange,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<&str> = self.protos.iter().map(|p| p.as_str()).collect();
        write!(f, "{}/{}", self.ports, p.join("+"))
    }
}

/// A WireGuard public key, base64 of 32 bytes (validated).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct WgKey(pub String);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lan {
    pub name: String,
    pub interface: String,
    /// The router's address with the LAN prefix.
    pub address: Ipv4Cidr,
}

impl Lan {
    pub fn subnet(&self) -> Ipv4Cidr {
        self.address.trunc()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouterOsAccess {
    pub address: Ipv4Addr,
    pub ssh_port: u16,
    pub user: String,
    pub host_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentAccess {
    /// Where the agent listens; `None` when it dials the controller.
    pub address: Option<(Ipv4Addr, u16)>,
    pub identity: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    pub name: String,
    pub role: Role,
    pub platform: Platform,
    pub public_address: Option<Ipv4Addr>,
    pub uplink: Option<String>,
    pub path_mtu: u16,
    /// Gateway: ports it keeps for itself (as written; the compiler adds the
    /// WAN VPN port and the agent port).
    pub management: Vec<PortSpec>,
    pub lans: Vec<Lan>,
    pub managed_by: Option<String>,
    pub routeros: Option<RouterOsAccess>,
    pub agent: Option<AgentAccess>,
    pub wireguard_keys: BTreeMap<String, WgKey>,
    pub drift: DriftPolicy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WanVpn {
    pub gateway: String,
    pub router: String,
    pub subnet: Ipv4Cidr,
    pub gateway_address: Ipv4Addr,
    pub router_address: Ipv4Addr,
    pub port: u16,
    pub keepalive: u16,
    pub interface: String,
    pub forward_all: bool,
    pub table: u32,
    pub mark: u32,
    pub rule_priority: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Client {
    pub name: String,
    pub address: Ipv4Addr,
    pub public_key: WgKey,
    pub routes: Vec<Ipv4Cidr>,
    /// 0 disables keepalive.
    pub keepalive: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrivateVpn {
    pub server: String,
    pub port: u16,
    pub subnet: Ipv4Cidr,
    pub address: Ipv4Addr,
    pub interface: String,
    pub clients: Vec<Client>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Forward {
    pub name: String,
    pub protos: Vec<Proto>,
    pub ports: PortRange,
    pub to: Ipv4Addr,
    /// Target port when it differs from the public one (single ports only).
    pub to_port: Option<u16>,
    pub description: Option<String>,
}

/// The whole validated desired state. Collections are sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub hosts: BTreeMap<String, Host>,
    pub wan: WanVpn,
    pub private: Option<PrivateVpn>,
    pub forwards: Vec<Forward>,
}

impl Config {
    pub fn gateway(&self) -> &Host {
        &self.hosts[&self.wan.gateway]
    }
    pub fn router(&self) -> &Host {
        &self.hosts[&self.wan.router]
    }
    /// Public address of the gateway (validated to exist).
    pub fn public_address(&self) -> Ipv4Addr {
        self.gateway().public_address.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}
