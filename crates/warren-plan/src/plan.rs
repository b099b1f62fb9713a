//! The per-host plan: everything Warren wants to exist on one host.

use crate::net::Ipv4Cidr;
use crate::nft::NftTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// Plan format version; agents refuse formats they do not know.
pub const FORMAT: u32 = 1;

/// Protocol number Warren tags its routes and rules with (`proto 77` in
/// `ip route`/`ip rule`), so it can tell its own from foreign ones.
pub const RT_PROTO: u8 = 77;

/// What the plan's host runs, and so how an agent applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Linux: WireGuard, nftables and policy routing, agent on the host.
    Linux,
    /// MikroTik RouterOS, driven over SSH by an agent elsewhere (no compiler
    /// target yet).
    Routeros,
}

/// What an agent does when the live state no longer matches the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    /// Report the drift and leave it.
    Report,
    /// Report the drift and re-apply the last good plan.
    Heal,
}

/// A peer's public key: known (pinned or reported by its agent), or still
/// awaited from the agent that generates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKey {
    /// The base64 public key.
    Known(String),
    /// Not known yet: `host`'s agent reports it for `interface`.
    Pending {
        /// The host whose agent generates the key.
        host: String,
        /// That host's WireGuard interface.
        interface: String,
    },
}

/// A peer of a WireGuard interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WgPeer {
    /// Human label: the peer's host or client name.
    pub name: String,
    /// The peer's public key, or who is expected to report it.
    pub public_key: PeerKey,
    /// `ip:port` to dial, when this side initiates.
    pub endpoint: Option<String>,
    /// Source addresses accepted from the peer, and routed to it.
    pub allowed_ips: Vec<Ipv4Cidr>,
    /// Keepalive interval in seconds, when this side keeps a NAT mapping open.
    pub persistent_keepalive: Option<u16>,
}

/// A WireGuard interface. The private key is never in a plan: the agent
/// generates it on the host and keeps it there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WgInterface {
    /// The interface name (`wg0`).
    pub name: String,
    /// The interface's addresses, with their prefix lengths.
    pub addresses: Vec<Ipv4Cidr>,
    /// The UDP port it listens on; `None` for a side that only dials out.
    pub listen_port: Option<u16>,
    /// The interface MTU.
    pub mtu: u16,
    /// Its peers.
    pub peers: Vec<WgPeer>,
}

/// A route in one of Warren's tables, tagged `proto 77`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The routing table (never `main`).
    pub table: u32,
    /// The destination prefix (`0.0.0.0/0` for the default route).
    pub dst: Ipv4Cidr,
    /// The outgoing interface.
    pub dev: String,
    /// The next hop, if any.
    pub via: Option<Ipv4Addr>,
}

/// A policy routing rule, tagged `protocol 77`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// The rule's priority (`ip rule` preference).
    pub priority: u32,
    /// Match packets with this fwmark.
    pub fwmark: Option<u32>,
    /// Match packets from this source.
    pub from: Option<Ipv4Cidr>,
    /// The table to look up when the rule matches.
    pub table: u32,
}

/// The firewall target. Later targets (iptables, RouterOS) are new variants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Firewall {
    /// No firewall content.
    None,
    /// Warren's own nftables table.
    Nftables(NftTable),
}

/// One host's desired state, as the controller signs it and an agent
/// applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The plan format, [`FORMAT`].
    pub format: u32,
    /// The host the plan is for.
    pub host: String,
    /// The host's platform.
    pub platform: Platform,
    /// What its agent does about drift.
    pub drift: Drift,
    /// `net.ipv4.ip_forward` → `1`.
    pub sysctls: BTreeMap<String, String>,
    /// WireGuard interfaces, with their peers.
    pub wireguard: Vec<WgInterface>,
    /// Routes in Warren's tables.
    pub routes: Vec<Route>,
    /// Policy routing rules.
    pub rules: Vec<PolicyRule>,
    /// The firewall content.
    pub firewall: Firewall,
    /// How the compiler derived what is not written in the YAML, for reviewers.
    pub notes: Vec<String>,
}

impl Plan {
    /// Peers whose public key is still awaited from their agent.
    pub fn pending_keys(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for i in &self.wireguard {
            for p in &i.peers {
                if let PeerKey::Pending { host, interface } = &p.public_key {
                    v.push((host.clone(), interface.clone()));
                }
            }
        }
        v
    }

    /// What a reviewer reads: the plan in wg / ip / nft vocabulary.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let platform = match self.platform {
            Platform::Linux => "linux",
            Platform::Routeros => "routeros",
        };
        let drift = match self.drift {
            Drift::Report => "report",
            Drift::Heal => "heal",
        };
        let _ = writeln!(o, "host {} ({platform}, drift: {drift})", self.host);
        let _ = writeln!(o, "  plan sha256 {}", crate::hash_hex(self));
        if !self.sysctls.is_empty() {
            let _ = writeln!(o, "\nsysctl");
            for (k, v) in &self.sysctls {
                let _ = writeln!(o, "  {k} = {v}");
            }
        }
        for i in &self.wireguard {
            let _ = writeln!(o, "\ninterface {} (wireguard)", i.name);
            for a in &i.addresses {
                let _ = writeln!(o, "  address {a}");
            }
            let _ = writeln!(o, "  mtu {}", i.mtu);
            if let Some(p) = i.listen_port {
                let _ = writeln!(o, "  listen-port {p}");
            }
            let _ = writeln!(o, "  private-key (generated on {}, never leaves it)", self.host);
            for p in &i.peers {
                let _ = writeln!(o, "  peer {}", p.name);
                match &p.public_key {
                    PeerKey::Known(k) => {
                        let _ = writeln!(o, "    public-key {k}");
                    }
                    PeerKey::Pending { host, interface } => {
                        let _ = writeln!(o, "    public-key (awaiting {host}'s key for {interface})");
                    }
                }
                if let Some(e) = &p.endpoint {
                    let _ = writeln!(o, "    endpoint {e}");
                }
                let ips: Vec<String> = p.allowed_ips.iter().map(|c| c.to_string()).collect();
                let _ = writeln!(o, "    allowed-ips {}", ips.join(", "));
                if let Some(k) = p.persistent_keepalive {
                    let _ = writeln!(o, "    persistent-keepalive {k}");
                }
            }
        }
        if !self.routes.is_empty() {
            let _ = writeln!(o, "\nroutes");
            for r in &self.routes {
                let dst = if r.dst.len == 0 {
                    "default".to_string()
                } else {
                    r.dst.to_string()
                };
                let via = r.via.map(|v| format!(" via {v}")).unwrap_or_default();
                let _ = writeln!(o, "  {dst}{via} dev {} table {} proto {RT_PROTO}", r.dev, r.table);
            }
        }
        if !self.rules.is_empty() {
            let _ = writeln!(o, "\nrules");
            for r in &self.rules {
                let from = r.from.map(|f| {
                    if f.len == 32 {
                        f.addr.to_string()
                    } else {
                        f.to_string()
                    }
                });
                let from = from.unwrap_or_else(|| "all".to_string());
                let mark = r.fwmark.map(|m| format!(" fwmark {m:#x}")).unwrap_or_default();
                let _ = writeln!(
                    o,
                    "  {}: from {from}{mark} lookup {} proto {RT_PROTO}",
                    r.priority, r.table
                );
            }
        }
        if let Firewall::Nftables(t) = &self.firewall {
            let _ = writeln!(o, "\nnftables");
            for l in t.render().lines() {
                let _ = writeln!(o, "  {}", l.replace('\t', "  "));
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\nwhy");
            for n in &self.notes {
                let _ = writeln!(o, "  - {n}");
            }
        }
        o
    }
}
