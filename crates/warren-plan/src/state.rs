//! What an agent observes of the live state it owns, as plain data.
//!
//! Backends fill this in (`observe`); [`crate::diff`] compares it with a plan.
//! Only Warren's own resources appear here: interfaces Warren created, routes
//! and rules tagged with [`crate::RT_PROTO`], and the `warren` nft table.
//! Like the rest of the crate it only describes; reading the host is the
//! agent's job.

use crate::foreign::ForeignState;
use crate::net::Ipv4Cidr;
use crate::nft::TABLE;
use crate::plan::{PolicyRule, Route};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A WireGuard peer as configured on a live interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The peer's public key (base64).
    pub public_key: String,
    /// The endpoint configured or learned (`host:port`), if any.
    pub endpoint: Option<String>,
    /// The addresses routed to this peer.
    pub allowed_ips: Vec<Ipv4Cidr>,
    /// Keepalive interval in seconds, if on.
    pub persistent_keepalive: Option<u16>,
    /// Unix seconds of the latest handshake (0 = never). Informational.
    pub latest_handshake: u64,
}

/// A live WireGuard interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceState {
    /// Public key of the private key configured on the interface (the private
    /// key itself is never read into this structure).
    pub public_key: Option<String>,
    /// The UDP port it listens on, if any.
    pub listen_port: Option<u16>,
    /// The MTU in bytes.
    pub mtu: u16,
    /// Whether the link is up.
    pub up: bool,
    /// Its IPv4 addresses, sorted.
    pub addresses: Vec<Ipv4Cidr>,
    /// Its peers.
    pub peers: Vec<PeerState>,
}

/// The `warren` nft table as read back with `nft -j`, normalized (handles,
/// counters and metainfo removed; canonical JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftState {
    /// The normalized listing.
    pub normalized: String,
}

/// Warren's iptables chains (`WARREN-*` and their jump rules) as read back
/// with `iptables-save`, normalized (counters and comments lines dropped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IptState {
    /// The normalized read-back.
    pub normalized: String,
}

/// Everything Warren owns on a host, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The sysctls some plan sets, by dotted name.
    pub sysctls: BTreeMap<String, String>,
    /// Warren's WireGuard interfaces, by name.
    pub interfaces: BTreeMap<String, InterfaceState>,
    /// Routes tagged with [`crate::RT_PROTO`].
    pub routes: Vec<Route>,
    /// Policy rules tagged with [`crate::RT_PROTO`].
    pub rules: Vec<PolicyRule>,
    /// The nft table, if it exists.
    pub nft: Option<NftState>,
    /// Warren's iptables chains, if any exist.
    #[serde(default)]
    pub iptables: Option<IptState>,
    /// The host's own firewall on Warren's paths, and Warren's holes in it
    /// (owned chains and their jump rules): see [`crate::foreign`].
    #[serde(default)]
    pub foreign: ForeignState,
    /// A RouterOS router's rows in Warren's menus, when the agent drives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routeros: Option<crate::ros::RosState>,
}

/// What the agent remembers of its last apply, needed to judge the
/// firewall (the nft table, or the iptables chains): the digest of what it
/// applied and the kernel's read-back of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftMemory {
    /// [`crate::hash_hex`] of the applied table.
    pub digest: String,
    /// The kernel's normalized listing right after that apply.
    pub normalized: String,
}

impl State {
    /// The state for people (`warren-agent observe`): one line per sysctl,
    /// interface, peer, route and rule, and whether the nft table exists.
    /// Private keys are never part of the state, so never printed.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.sysctls {
            line(&mut out, format_args!("sysctl {k} = {v}"));
        }
        for (name, i) in &self.interfaces {
            render_interface(&mut out, name, i);
        }
        for r in &self.routes {
            line(
                &mut out,
                format_args!("route {} dev {} table {}", r.dst, r.dev, r.table),
            );
        }
        for r in &self.rules {
            line(
                &mut out,
                format_args!(
                    "rule {}: from {} fwmark {} lookup {}",
                    r.priority,
                    r.from.map_or("all".into(), |f| f.to_string()),
                    r.fwmark.map_or("-".into(), |m| format!("{m:#x}")),
                    r.table
                ),
            );
        }
        let nft = if self.nft.is_some() { "present" } else { "absent" };
        line(&mut out, format_args!("nft table ip {TABLE}: {nft}"));
        if self.iptables.is_some() {
            line(
                &mut out,
                format_args!("iptables chains {}*: present", crate::ipt::CHAIN_PREFIX),
            );
        }
        for h in &self.foreign.holes {
            let from: Vec<String> = h
                .jumps
                .iter()
                .map(|j| format!("{}#{}", j.from, j.position + 1))
                .collect();
            line(
                &mut out,
                format_args!(
                    "foreign hole {}: {} rule(s), jumps from {}",
                    h.name(),
                    h.rules.len(),
                    if from.is_empty() {
                        "-".into()
                    } else {
                        from.join(",")
                    }
                ),
            );
        }
        out
    }
}

fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{args}");
}

fn joined(cidrs: &[Ipv4Cidr]) -> String {
    cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

fn render_interface(out: &mut String, name: &str, i: &InterfaceState) {
    line(
        out,
        format_args!(
            "interface {name} {} mtu {} listen-port {} address {} public-key {}",
            if i.up { "up" } else { "down" },
            i.mtu,
            i.listen_port.map_or("-".into(), |p| p.to_string()),
            joined(&i.addresses),
            i.public_key.as_deref().unwrap_or("-")
        ),
    );
    for p in &i.peers {
        line(
            out,
            format_args!(
                "  peer {} endpoint {} allowed-ips {} handshake {}",
                p.public_key,
                p.endpoint.as_deref().unwrap_or("-"),
                joined(&p.allowed_ips),
                p.latest_handshake
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_is_one_line() {
        assert_eq!(State::default().render_text(), "nft table ip warren: absent\n");
    }

    #[test]
    fn text_names_every_resource() {
        let cidr = |s: &str| -> Ipv4Cidr { s.parse().unwrap() };
        let mut st = State::default();
        st.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        st.interfaces.insert(
            "wg0".into(),
            InterfaceState {
                public_key: Some("PUB".into()),
                listen_port: Some(51820),
                mtu: 1420,
                up: true,
                addresses: vec![cidr("10.0.18.1/24"), cidr("10.0.19.1/24")],
                peers: vec![PeerState {
                    public_key: "PEER".into(),
                    endpoint: None,
                    allowed_ips: vec![cidr("10.0.18.2/32")],
                    persistent_keepalive: Some(25),
                    latest_handshake: 17,
                }],
            },
        );
        st.interfaces.insert("wg1".into(), InterfaceState::default());
        st.routes.push(Route {
            table: 100,
            dst: cidr("0.0.0.0/0"),
            dev: "wg0".into(),
            via: None,
        });
        st.rules.push(PolicyRule {
            priority: 456,
            fwmark: Some(10),
            from: None,
            table: 100,
        });
        st.rules.push(PolicyRule {
            priority: 457,
            fwmark: None,
            from: Some(cidr("10.0.18.2/32")),
            table: 100,
        });
        st.nft = Some(NftState {
            normalized: "[]".into(),
        });
        assert_eq!(
            st.render_text(),
            "sysctl net.ipv4.ip_forward = 1\n\
             interface wg0 up mtu 1420 listen-port 51820 address 10.0.18.1/24,10.0.19.1/24 public-key PUB\n\
             \x20 peer PEER endpoint - allowed-ips 10.0.18.2/32 handshake 17\n\
             interface wg1 down mtu 0 listen-port - address  public-key -\n\
             route 0.0.0.0/0 dev wg0 table 100\n\
             rule 456: from all fwmark 0xa lookup 100\n\
             rule 457: from 10.0.18.2/32 fwmark - lookup 100\n\
             nft table ip warren: present\n"
        );
    }
}
