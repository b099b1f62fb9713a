//! Schema v1 of `warren.yaml`, exactly as written by the user.
//!
//! These types mirror the file (unknown keys are errors) and keep the position
//! of every value that a lint may point at. [`crate::validate()`] turns them into
//! the resolved [`crate::model::Config`]. The JSON Schema published in
//! `docs/warren.schema.json` is generated from these types: a field's doc
//! comment becomes its description there. Most types' own doc comments are
//! kept out of it (`#[schemars(description = "")]`): the fields that use them
//! already describe them, and the published schema does not change.

use crate::sp::{Sp, Text};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An empty key (`forwards:` with nothing under it) means an empty collection.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The desired state of one Warren site: a cloud gateway, a home router behind
/// CGNAT, the WAN VPN between them, an optional private VPN nested inside it,
/// and the port forwards that expose services on the LAN.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Schema version. Must be `1`.
    pub version: Sp<u64>,
    /// Machines Warren manages, by name. Exactly one `gateway` and one `router`.
    pub hosts: BTreeMap<Sp<String>, Sp<HostDoc>>,
    /// The WireGuard tunnel the router dials out to the gateway through CGNAT.
    pub wan_vpn: Sp<WanVpnDoc>,
    /// A WireGuard VPN for trusted clients (a phone), served by the router and
    /// reached through the gateway's public address, nested in the WAN VPN.
    #[serde(default)]
    pub private_vpn: Option<Sp<PrivateVpnDoc>>,
    /// Port forwards, by service name: `minecraft: {port: 25565/tcp, to: 192.168.16.20}`.
    #[serde(default, deserialize_with = "nullable")]
    pub forwards: BTreeMap<Sp<String>, Sp<ForwardDoc>>,
}

/// What a host is (`role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "")]
pub enum Role {
    /// The cloud VPS with the public IPv4 address.
    Gateway,
    /// The home router behind CGNAT.
    Router,
    /// A machine that only runs an agent (for example next to a RouterOS router).
    Agent,
}

/// What a host runs (`platform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "")]
pub enum Platform {
    /// Linux with nftables and policy routing; the agent runs on the host.
    Linux,
    /// MikroTik RouterOS v7; driven over its REST API by the agent of `managed_by`.
    Routeros,
}

/// What the agent does when live state drifts from the plan (`drift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "")]
pub enum DriftPolicy {
    /// Report live state that no longer matches the plan (default).
    Report,
    /// Report it and re-apply the last good plan.
    Heal,
}

/// How a Linux host's firewall rules are written (`netfilter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "")]
pub enum Netfilter {
    /// Warren's own nftables table `ip warren`, replaced in one transaction (default).
    Nftables,
    /// Owned `WARREN-*` iptables chains, applied with `iptables-restore --noflush`,
    /// for hosts without nftables (the variant the host uses: nft or legacy).
    Iptables,
}

/// What Warren does about the host's own firewall (`foreign_firewall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(description = "")]
pub enum ForeignFirewall {
    /// Where the host's firewall (cloud image rules, Docker, ufw, a home
    /// firewall) would drop Warren's traffic, open exactly Warren's own paths
    /// through it: an owned `WARREN-*` chain reached by one jump rule at the top
    /// of the foreign chain (default).
    Auto,
    /// Touch nothing outside Warren's own table; `warren-agent doctor` says
    /// what the host's firewall drops and what to run about it.
    OwnTableOnly,
}

/// One machine. Which keys apply depends on `role`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostDoc {
    /// What this host is: `gateway`, `router` or `agent`.
    pub role: Sp<Role>,
    /// `linux` (default) or `routeros` (router only).
    #[serde(default)]
    pub platform: Option<Sp<Platform>>,
    /// Gateway only: its public IPv4 address (the address the world and the
    /// router's WAN VPN dial).
    #[serde(default)]
    pub public_address: Option<Sp<Text>>,
    /// Gateway: the public interface (e.g. `enp0s6`). Router: the interface
    /// towards the ISP. Required on the gateway.
    #[serde(default)]
    pub uplink: Option<Sp<String>>,
    /// MTU of the path to the internet (default 1500; 1492 for PPPoE).
    #[serde(default)]
    pub path_mtu: Option<Sp<u64>>,
    /// Gateway only: ports the gateway keeps for itself and never forwards,
    /// such as its SSH port: `[2222/tcp]`. The WAN VPN port is always kept.
    #[serde(default, deserialize_with = "nullable")]
    pub management: Vec<Sp<Text>>,
    /// Router only: the LANs behind it, by name, with the router's address and
    /// prefix on each: `lan: {interface: br-lan, address: 192.168.16.1/24}`.
    #[serde(default, deserialize_with = "nullable")]
    pub lans: BTreeMap<Sp<String>, Sp<LanDoc>>,
    /// RouterOS router only: the agent host that drives it over REST (a
    /// `role: agent` host next to the router).
    #[serde(default)]
    pub managed_by: Option<Sp<String>>,
    /// RouterOS router only: how its agent reaches it.
    #[serde(default)]
    pub routeros: Option<Sp<RouterOsDoc>>,
    /// How the controller reaches this host's agent.
    #[serde(default)]
    pub agent: Option<Sp<AgentDoc>>,
    /// Pinned WireGuard public keys of this host's interfaces, by interface
    /// name. Normally agents generate keys and report them; a pinned key that
    /// disagrees with the agent's report is an error.
    #[serde(default, deserialize_with = "nullable")]
    pub wireguard_keys: BTreeMap<Sp<String>, Sp<String>>,
    /// What the agent does when live state drifts from the plan.
    #[serde(default)]
    pub drift: Option<Sp<DriftPolicy>>,
    /// Linux only: `nftables` (default) or `iptables` (for hosts without nftables).
    #[serde(default)]
    pub netfilter: Option<Sp<Netfilter>>,
    /// Linux only: `auto` (default) opens exactly Warren's own paths through the
    /// host's firewall where it would drop them; `own-table-only` leaves the
    /// host's firewall alone (`warren-agent doctor` explains what it drops).
    #[serde(default)]
    pub foreign_firewall: Option<Sp<ForeignFirewall>>,
}

/// One LAN behind the router (`hosts.<router>.lans.<name>`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct LanDoc {
    /// The router's interface on this LAN (e.g. `br-lan`).
    pub interface: Sp<String>,
    /// The router's address on this LAN, with the LAN's prefix: `192.168.16.1/24`.
    pub address: Sp<Text>,
}

/// How the agent of `managed_by` reaches a RouterOS router's REST API
/// (`routeros`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct RouterOsDoc {
    /// Address of the RouterOS router as seen from its agent host.
    pub address: Sp<Text>,
    /// HTTPS port of the router's `www-ssl` service (default 443).
    #[serde(default)]
    pub port: Option<Sp<u64>>,
    /// The RouterOS user the agent logs in as (default `warren`); its password
    /// stays in a file on the agent host.
    #[serde(default)]
    pub user: Option<Sp<String>>,
    /// SHA-256 fingerprint of the router's TLS certificate: 64 hex digits, or
    /// the colon form `AB:CD:…` (`/certificate print detail` shows it).
    #[serde(default)]
    pub fingerprint: Option<Sp<Text>>,
    /// Replaced by `port` (RouterOS is driven over REST, not SSH); an error.
    #[serde(default)]
    #[schemars(skip)]
    pub ssh_port: Option<Sp<Text>>,
    /// Replaced by `fingerprint` (RouterOS is driven over REST, not SSH); an error.
    #[serde(default)]
    #[schemars(skip)]
    pub host_key: Option<Sp<Text>>,
}

/// How the controller reaches a host's agent (`agent`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct AgentDoc {
    /// `IPv4:port` where the agent listens for the controller. Omit it when the
    /// agent dials the controller instead (a host the controller cannot reach).
    #[serde(default)]
    pub address: Option<Sp<Text>>,
    /// The agent's identity key, `ssh-ed25519 AAAA…`, as printed by `warren-agent keys`.
    #[serde(default)]
    pub identity: Option<Sp<String>>,
}

/// The WAN VPN (`wan_vpn`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct WanVpnDoc {
    /// Name of the gateway host (it listens).
    pub gateway: Sp<String>,
    /// Name of the router host (it dials out through CGNAT).
    pub router: Sp<String>,
    /// The transfer network inside the tunnel, e.g. `10.0.18.0/30`.
    pub subnet: Sp<Text>,
    /// The gateway's address in `subnet` (default: the first host address).
    #[serde(default)]
    pub gateway_address: Option<Sp<Text>>,
    /// The router's address in `subnet` (default: the second host address).
    #[serde(default)]
    pub router_address: Option<Sp<Text>>,
    /// UDP port the gateway listens on (default 51820).
    #[serde(default)]
    pub port: Option<Sp<u64>>,
    /// Keepalive the router sends to hold its CGNAT mapping open, seconds (default 25).
    #[serde(default)]
    pub keepalive: Option<Sp<u64>>,
    /// WireGuard interface name on both ends (default `wg0`).
    #[serde(default)]
    pub interface: Option<Sp<String>>,
    /// `true` (default): the gateway forwards everything inbound except its own
    /// ports. `false`: only the forwards' ports and the private VPN port.
    #[serde(default)]
    pub forward_all: Option<Sp<bool>>,
    /// Router routing table for replies to inbound connections (default 100).
    #[serde(default)]
    pub table: Option<Sp<u64>>,
    /// Connection mark / fwmark for inbound connections (default 10).
    #[serde(default)]
    pub mark: Option<Sp<u64>>,
    /// Priority of the router's policy rules (default 456).
    #[serde(default)]
    pub rule_priority: Option<Sp<u64>>,
}

/// The private VPN (`private_vpn`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct PrivateVpnDoc {
    /// The host that serves it (the router).
    pub server: Sp<String>,
    /// UDP port, on the gateway's public address and on the router.
    pub port: Sp<u64>,
    /// The VPN's own network, e.g. `192.168.17.0/24`.
    pub subnet: Sp<Text>,
    /// The server's address in `subnet` (default: the first host address).
    #[serde(default)]
    pub address: Option<Sp<Text>>,
    /// WireGuard interface name on the server (default `wg1`).
    #[serde(default)]
    pub interface: Option<Sp<String>>,
    /// Clients by name.
    #[serde(default, deserialize_with = "nullable")]
    pub clients: BTreeMap<Sp<String>, Sp<ClientDoc>>,
}

/// One device of the private VPN (`private_vpn.clients.<name>`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct ClientDoc {
    /// The client's address in the private VPN subnet: `192.168.17.69`.
    pub address: Sp<Text>,
    /// The client's WireGuard public key (base64), generated on the client.
    pub public_key: Sp<String>,
    /// What the client routes into the VPN (its `AllowedIPs`). Default: the
    /// VPN subnet and every LAN of the server.
    #[serde(default)]
    pub routes: Option<Vec<Sp<Text>>>,
    /// Keepalive from the client, seconds (default 25; 0 disables).
    #[serde(default)]
    pub keepalive: Option<Sp<u64>>,
}

/// One port forward (`forwards.<name>`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "")]
pub struct ForwardDoc {
    /// Public port(s) and protocol: `25565/tcp`, `27000-27015/udp`, `53/tcp+udp`.
    pub port: Sp<Text>,
    /// Target on a LAN: `192.168.16.20` (same port) or `192.168.16.20:8080`.
    pub to: Sp<Text>,
    /// Free text shown in plans.
    #[serde(default)]
    pub description: Option<String>,
}
