//! The resolved, validated desired state: every default filled in, every
//! address parsed, every cross-reference checked. The compiler reads only this.

use crate::net::Ipv4Cidr;
pub use crate::schema::{DriftPolicy, ForeignFirewall, Netfilter, Platform, Role};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// A transport protocol a port belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as written in `warren.yaml`.
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
    /// The lowest port, 1-65535.
    pub first: u16,
    /// The highest port, never below `first`.
    pub last: u16,
}

impl PortRange {
    /// The range of one port.
    pub fn single(p: u16) -> Self {
        PortRange { first: p, last: p }
    }
    /// It holds exactly one port.
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }
    /// The two ranges share at least one port.
    pub fn overlaps(&self, o: &PortRange) -> bool {
        self.first <= o.last && o.first <= self.last
    }
    /// Port `p` is in the range (bounds included).
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
    /// Sorted, without duplicates, never empty.
    pub protos: Vec<Proto>,
    /// The same ports for every protocol.
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

/// A network behind the router (`hosts.<router>.lans.<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lan {
    /// The LAN's name in `warren.yaml` (the key under `lans`).
    pub name: String,
    /// The router's interface on this LAN, e.g. `br-lan`.
    pub interface: String,
    /// The router's address with the LAN prefix.
    pub address: Ipv4Cidr,
}

impl Lan {
    /// The LAN's network: `address` with the host bits cleared.
    pub fn subnet(&self) -> Ipv4Cidr {
        self.address.trunc()
    }
}

/// How the agent of `managed_by` reaches a RouterOS router's REST API
/// (HTTPS, the router's certificate pinned by fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouterOsAccess {
    /// The router's address as seen from its agent host.
    pub address: Ipv4Addr,
    /// The `www-ssl` port; 443 by default.
    pub port: u16,
    /// The RouterOS user; `warren` by default.
    pub user: String,
    /// SHA-256 of the router's certificate: 64 lowercase hex digits, no colons.
    pub fingerprint: String,
}

/// How the controller reaches a host's agent (`hosts.<name>.agent`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentAccess {
    /// Where the agent listens; `None` when it dials the controller.
    pub address: Option<(Ipv4Addr, u16)>,
    /// The agent's `ssh-ed25519 AAAA…` identity key, when pinned.
    pub identity: Option<String>,
}

/// One machine of `hosts`, defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    /// The host's name (its key under `hosts`).
    pub name: String,
    /// Gateway, router or agent; which fields below apply depends on it.
    pub role: Role,
    /// Linux unless written `platform: routeros` (a router only).
    pub platform: Platform,
    /// Gateway only: its public IPv4 address.
    pub public_address: Option<Ipv4Addr>,
    /// The interface towards the internet (required on the gateway).
    pub uplink: Option<String>,
    /// MTU of the path to the internet, 1280-9000; 1500 by default.
    pub path_mtu: u16,
    /// Gateway: ports it keeps for itself (as written; the compiler adds the
    /// WAN VPN port and the agent port).
    pub management: Vec<PortSpec>,
    /// Router only: the LANs behind it, sorted by name.
    pub lans: Vec<Lan>,
    /// RouterOS router only: the agent host that drives it.
    pub managed_by: Option<String>,
    /// RouterOS router only: how that agent reaches it.
    pub routeros: Option<RouterOsAccess>,
    /// How the controller reaches this host's agent, if written.
    pub agent: Option<AgentAccess>,
    /// Pinned WireGuard public keys, by interface name; an agent reporting
    /// another key for that interface is an error.
    pub wireguard_keys: BTreeMap<String, WgKey>,
    /// What the agent does about drift; `report` by default.
    pub drift: DriftPolicy,
    /// How its firewall rules are written; `nftables` by default.
    pub netfilter: Netfilter,
    /// What Warren does about the host's own firewall; `auto` by default.
    pub foreign_firewall: ForeignFirewall,
}

/// The WireGuard tunnel the router dials out to the gateway (`wan_vpn`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WanVpn {
    /// Name of the gateway host (it listens).
    pub gateway: String,
    /// Name of the router host (it dials out through CGNAT).
    pub router: String,
    /// The transfer network inside the tunnel, /31 or larger.
    pub subnet: Ipv4Cidr,
    /// The gateway's address in `subnet` (its first host by default).
    pub gateway_address: Ipv4Addr,
    /// The router's address in `subnet` (its second host by default).
    pub router_address: Ipv4Addr,
    /// UDP port the gateway listens on; 51820 by default.
    pub port: u16,
    /// Seconds between the router's keepalives; 25 by default, 0 disables.
    pub keepalive: u16,
    /// WireGuard interface name on both ends; `wg0` by default.
    pub interface: String,
    /// The gateway forwards every inbound port except its own (`true`, the
    /// default), or only the forwards' ports and the private VPN's.
    pub forward_all: bool,
    /// The router's routing table for replies to inbound connections; 100 by default.
    pub table: u32,
    /// Connection mark and fwmark of inbound connections; 10 by default.
    pub mark: u32,
    /// Priority of the router's policy rules, below 32766; 456 by default.
    pub rule_priority: u32,
}

/// One device of the private VPN (`private_vpn.clients.<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Client {
    /// The client's name (its key under `clients`).
    pub name: String,
    /// Its address in the private VPN's subnet, unique among clients.
    pub address: Ipv4Addr,
    /// Its WireGuard public key, unique among clients.
    pub public_key: WgKey,
    /// What it routes into the VPN (its `AllowedIPs`); by default the VPN
    /// subnet and every LAN of the server.
    pub routes: Vec<Ipv4Cidr>,
    /// Seconds between the client's keepalives; 25 by default, 0 disables.
    pub keepalive: u16,
}

/// The WireGuard VPN for trusted devices, served by the router and nested in
/// the WAN VPN (`private_vpn`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrivateVpn {
    /// Name of the host that serves it (the router).
    pub server: String,
    /// UDP port on the gateway's public address and on the router.
    pub port: u16,
    /// The VPN's own network, /30 or larger.
    pub subnet: Ipv4Cidr,
    /// The server's address in `subnet` (its first host by default).
    pub address: Ipv4Addr,
    /// WireGuard interface name on the server; `wg1` by default.
    pub interface: String,
    /// The clients, sorted by name.
    pub clients: Vec<Client>,
}

/// A service on a LAN, reachable on the gateway's public address (`forwards.<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Forward {
    /// The service's name (its key under `forwards`).
    pub name: String,
    /// Sorted, without duplicates, never empty.
    pub protos: Vec<Proto>,
    /// Public ports on the gateway; no other forward or kept port overlaps them.
    pub ports: PortRange,
    /// The target host, a usable address on one of the router's LANs.
    pub to: Ipv4Addr,
    /// Target port when it differs from the public one (single ports only).
    pub to_port: Option<u16>,
    /// Free text shown in plans.
    pub description: Option<String>,
}

/// The whole validated desired state. Collections are sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Every host, by name.
    pub hosts: BTreeMap<String, Host>,
    /// The WAN VPN; its `gateway` and `router` name hosts of those roles.
    pub wan: WanVpn,
    /// The private VPN, if the file has one.
    pub private: Option<PrivateVpn>,
    /// The port forwards, sorted by name.
    pub forwards: Vec<Forward>,
}

impl Config {
    /// The WAN VPN's gateway host (validated to exist).
    pub fn gateway(&self) -> &Host {
        &self.hosts[&self.wan.gateway]
    }
    /// The WAN VPN's router host (validated to exist).
    pub fn router(&self) -> &Host {
        &self.hosts[&self.wan.router]
    }
    /// Public address of the gateway (validated to exist).
    pub fn public_address(&self) -> Ipv4Addr {
        self.gateway().public_address.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}
