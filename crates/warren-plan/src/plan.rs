//! The per-host plan: everything Warren wants to exist on one host.

use crate::ipt::IptRuleset;
use crate::net::Ipv4Cidr;
use crate::nft::{NftTable, Rule};
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
    /// MikroTik RouterOS v7, driven over its REST API by an agent on a host
    /// next to it (the plan's [`Plan::routeros`]).
    Routeros,
}

impl Platform {
    /// The platform's name, as in the plan's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Linux => "linux",
            Platform::Routeros => "routeros",
        }
    }
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

impl Drift {
    /// The policy's name, as in the plan's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Drift::Report => "report",
            Drift::Heal => "heal",
        }
    }
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

/// The firewall target. Later targets (RouterOS) are new variants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Firewall {
    /// No firewall content.
    None,
    /// Warren's own nftables table.
    Nftables(NftTable),
    /// Warren's own iptables chains (`netfilter: iptables`): the same
    /// semantics as the nft table, for hosts without nftables.
    Iptables(IptRuleset),
}

/// What the agent may do about the host's own (foreign) firewall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignPolicy {
    /// Where a foreign filter chain would drop Warren's traffic, open exactly
    /// [`Openings`] through it: an owned chain reached by one jump rule at the
    /// top of the foreign chain.
    Auto,
    /// Touch nothing outside Warren's own table or chains (a plan without
    /// openings, such as one from before openings existed, means this).
    #[default]
    OwnTableOnly,
}

impl ForeignPolicy {
    /// The policy's name, as in the plan's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ForeignPolicy::Auto => "auto",
            ForeignPolicy::OwnTableOnly => "own_table_only",
        }
    }
}

/// Exactly the traffic Warren's plan carries, as filter rules that accept
/// it: what a foreign firewall must let through for the plan to work. The
/// rules use the nft vocabulary ([`Rule`], all `accept`); the agent renders
/// them for the foreign firewall they go into (iptables or nft).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Openings {
    /// What the agent may do about foreign chains.
    pub policy: ForeignPolicy,
    /// Packets for the host itself (the WireGuard port, the agent port).
    pub input: Vec<Rule>,
    /// Packets the host routes (forwards, tunnels, their replies).
    pub forward: Vec<Rule>,
}

impl Openings {
    /// No traffic to let through.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty() && self.forward.is_empty()
    }
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
    /// The traffic a foreign firewall on the host must let through, and
    /// whether the agent may open it. Absent in older plans: nothing.
    #[serde(default)]
    pub openings: Openings,
    /// A RouterOS router's objects ([`Platform::Routeros`] plans only; the
    /// other fields then describe the same network for people and for the
    /// controller, and the agent applies only this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routeros: Option<crate::ros::RosConfig>,
    /// How the compiler derived what is not written in the YAML, for reviewers.
    pub notes: Vec<String>,
}

impl Plan {
    /// The plan that wants nothing on `host` (Linux, drift reported): what
    /// teardown converges to, and what the compiler starts each host from.
    pub fn empty(host: &str) -> Plan {
        Plan {
            format: FORMAT,
            host: host.to_string(),
            platform: Platform::Linux,
            drift: Drift::Report,
            sysctls: BTreeMap::new(),
            wireguard: Vec::new(),
            routes: Vec::new(),
            rules: Vec::new(),
            firewall: Firewall::None,
            openings: Openings::default(),
            routeros: None,
            notes: Vec::new(),
        }
    }

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

    /// A RouterOS plan's entries as a console script headed by the host's
    /// name ([`crate::ros_script::render`]); `None` for other plans.
    pub fn routeros_script(&self) -> Option<String> {
        self.routeros
            .as_ref()
            .map(|cfg| crate::ros_script::render(&self.host, cfg))
    }

    /// What a reviewer reads: the plan in wg / ip / nft vocabulary, and a
    /// RouterOS plan's entries as the console script.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "host {} ({}, drift: {})",
            self.host,
            self.platform.as_str(),
            self.drift.as_str()
        );
        let _ = writeln!(o, "  plan sha256 {}", crate::hash_hex(self));
        section(
            &mut o,
            "sysctl",
            self.sysctls.iter().map(|(k, v)| format!("{k} = {v}")),
        );
        for i in &self.wireguard {
            section(
                &mut o,
                &format!("interface {} (wireguard)", i.name),
                interface_lines(i, &self.host).into_iter(),
            );
        }
        section(&mut o, "routes", self.routes.iter().map(route_line));
        section(&mut o, "rules", self.rules.iter().map(rule_line));
        match &self.firewall {
            Firewall::Nftables(t) => section(
                &mut o,
                "nftables",
                t.render().lines().map(|l| l.replace('\t', "  ")),
            ),
            Firewall::Iptables(r) => section(
                &mut o,
                "iptables (iptables-restore --noflush)",
                r.render().lines().map(str::to_string),
            ),
            Firewall::None => {}
        }
        if let Some(r) = &self.routeros {
            let a = &r.access;
            section(
                &mut o,
                &format!(
                    "routeros (REST https://{}:{} as {}, certificate sha256 {})",
                    a.address, a.port, a.user, a.fingerprint
                ),
                r.entries.iter().map(crate::ros_script::line),
            );
        }
        let o_ = &self.openings;
        section(
            &mut o,
            &format!("foreign firewall ({})", o_.policy.as_str()),
            o_.input
                .iter()
                .map(|r| format!("input: {}", r.render()))
                .chain(o_.forward.iter().map(|r| format!("forward: {}", r.render()))),
        );
        section(&mut o, "why", self.notes.iter().map(|n| format!("- {n}")));
        o
    }
}

/// A blank line, `title`, and each line indented by two spaces; nothing at
/// all when there are no lines.
fn section(o: &mut String, title: &str, lines: impl Iterator<Item = String>) {
    let mut lines = lines.peekable();
    if lines.peek().is_none() {
        return;
    }
    let _ = writeln!(o, "\n{title}");
    for l in lines {
        let _ = writeln!(o, "  {l}");
    }
}

/// An interface's settings, then each peer's (indented once more). The
/// private key line says where the key is, since the plan never holds it.
fn interface_lines(i: &WgInterface, host: &str) -> Vec<String> {
    let mut v: Vec<String> = i.addresses.iter().map(|a| format!("address {a}")).collect();
    v.push(format!("mtu {}", i.mtu));
    v.extend(i.listen_port.map(|p| format!("listen-port {p}")));
    v.push(format!("private-key (generated on {host}, never leaves it)"));
    for p in &i.peers {
        v.push(format!("peer {}", p.name));
        v.extend(peer_lines(p).into_iter().map(|l| format!("  {l}")));
    }
    v
}

fn peer_lines(p: &WgPeer) -> Vec<String> {
    let mut v = vec![match &p.public_key {
        PeerKey::Known(k) => format!("public-key {k}"),
        PeerKey::Pending { host, interface } => {
            format!("public-key (awaiting {host}'s key for {interface})")
        }
    }];
    v.extend(p.endpoint.as_ref().map(|e| format!("endpoint {e}")));
    let ips: Vec<String> = p.allowed_ips.iter().map(|c| c.to_string()).collect();
    v.push(format!("allowed-ips {}", ips.join(", ")));
    v.extend(
        p.persistent_keepalive
            .map(|k| format!("persistent-keepalive {k}")),
    );
    v
}

/// A route in `ip route` words.
fn route_line(r: &Route) -> String {
    let dst = if r.dst.len == 0 {
        "default".to_string()
    } else {
        r.dst.to_string()
    };
    let via = r.via.map(|v| format!(" via {v}")).unwrap_or_default();
    format!("{dst}{via} dev {} table {} proto {RT_PROTO}", r.dev, r.table)
}

/// A policy rule in `ip rule` words.
fn rule_line(r: &PolicyRule) -> String {
    let from = match r.from {
        Some(f) if f.len == 32 => f.addr.to_string(),
        Some(f) => f.to_string(),
        None => "all".to_string(),
    };
    let mark = r.fwmark.map(|m| format!(" fwmark {m:#x}")).unwrap_or_default();
    format!(
        "{}: from {from}{mark} lookup {} proto {RT_PROTO}",
        r.priority, r.table
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The compiler never emits a gateway route or a rule from a whole
    // prefix yet, so the snapshots cannot show these forms.
    #[test]
    fn routes_and_rules_read_like_ip_route_and_ip_rule() {
        let net: Ipv4Cidr = "192.168.16.0/24".parse().unwrap();
        let route = Route {
            table: 100,
            dst: net,
            dev: "wg0".into(),
            via: Some(Ipv4Addr::new(10, 0, 18, 1)),
        };
        assert_eq!(
            route_line(&route),
            "192.168.16.0/24 via 10.0.18.1 dev wg0 table 100 proto 77"
        );
        let rule = |from, fwmark| PolicyRule {
            priority: 456,
            fwmark,
            from,
            table: 100,
        };
        assert_eq!(
            rule_line(&rule(Some(net), None)),
            "456: from 192.168.16.0/24 lookup 100 proto 77"
        );
        assert_eq!(
            rule_line(&rule(Some(Ipv4Cidr::host(Ipv4Addr::new(10, 0, 18, 2))), None)),
            "456: from 10.0.18.2 lookup 100 proto 77"
        );
        assert_eq!(
            rule_line(&rule(None, Some(10))),
            "456: from all fwmark 0xa lookup 100 proto 77"
        );
    }
}
