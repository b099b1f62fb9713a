//! Warren's compiler: from a validated [`Config`] to one [`Plan`] per host.
//!
//! This is where the knowledge the seed author found by hand lives: the
//! gateway's DNAT with its management exceptions, the router's connmark →
//! fwmark return path with its own table and rules, `AllowedIPs = 0.0.0.0/0`
//! on the router's WAN peer, loose reverse-path filtering on the tunnel, the
//! nested MTUs and the MSS clamps, and map-based forwards whose per-packet
//! cost does not grow with their number. It is pure and deterministic; it
//! must not read files, clocks or the network. Peer keys come in a [`KeyBook`].
//!
//! Map of the crate: `gateway` and `router` build one role's plan each;
//! `forwards` turns the forwards into the router's DNAT maps; `mtu` holds the
//! MTU arithmetic and the MSS clamps; `ports` converts the model's ports into
//! nft's; `routeros` writes the router's plan as RouterOS objects for
//! `platform: routeros`; `client` writes the private VPN clients' wg-quick files. A host on
//! `netfilter: iptables` gets the same nft table translated into owned
//! iptables chains ([`warren_plan::ipt::from_nft`]) as the last step.

#![warn(missing_docs)]

mod client;
mod forwards;
mod gateway;
mod mtu;
mod openings;
mod ports;
mod router;
mod routeros;

pub use client::client_config;
pub use mtu::Mtus;

use std::collections::BTreeMap;
use warren_model::model::{self, Config, DriftPolicy, Host, Role};
use warren_plan::{Drift, Firewall, PeerKey, Plan};

/// WireGuard public keys by (host, interface): pinned in the YAML, or
/// reported by agents (the controller adds those).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyBook(
    /// `(host, interface)` → base64 public key.
    pub BTreeMap<(String, String), String>,
);

impl KeyBook {
    /// Keys pinned in the YAML (`hosts.<h>.wireguard_keys`).
    pub fn pinned(cfg: &Config) -> Self {
        let mut k = BTreeMap::new();
        for h in cfg.hosts.values() {
            for (iface, key) in &h.wireguard_keys {
                k.insert((h.name.clone(), iface.clone()), key.0.clone());
            }
        }
        KeyBook(k)
    }

    /// Record `host`'s public key for `iface` (an agent's report).
    pub fn insert(&mut self, host: &str, iface: &str, key: &str) {
        self.0
            .insert((host.to_string(), iface.to_string()), key.to_string());
    }

    /// The key a peer entry carries: known, or awaited from `host`'s agent.
    pub(crate) fn peer_key(&self, host: &str, iface: &str) -> PeerKey {
        match self.0.get(&(host.to_string(), iface.to_string())) {
            Some(k) => PeerKey::Known(k.clone()),
            None => PeerKey::Pending {
                host: host.to_string(),
                interface: iface.to_string(),
            },
        }
    }
}

/// Why a valid configuration yields no plan.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// The host is a RouterOS router without a resolved `routeros` block
    /// (validation refuses that; a caller that built a `Config` by hand).
    #[error("host {host:?}: a RouterOS router needs its `routeros` access block")]
    RouterOsAccess {
        /// The RouterOS host's name.
        host: String,
    },
    /// The host is on `netfilter: iptables` and its rules have no iptables
    /// form (a compiler bug: every rule Warren compiles has one).
    #[error("host {host:?}: netfilter: iptables cannot express the plan's firewall: {why}")]
    Iptables {
        /// The host's name.
        host: String,
        /// What could not be translated.
        why: warren_plan::ipt::Unsupported,
    },
}

/// Compile every host that gets a plan. Agent-only hosts get none in v1.
pub fn compile(cfg: &Config, keys: &KeyBook) -> Result<BTreeMap<String, Plan>, CompileError> {
    let mut out = BTreeMap::new();
    for h in cfg.hosts.values() {
        if let Some(p) = compile_host(cfg, keys, &h.name)? {
            out.insert(h.name.clone(), p);
        }
    }
    Ok(out)
}

/// Compile one host's plan (`None` for hosts without one).
pub fn compile_host(cfg: &Config, keys: &KeyBook, host: &str) -> Result<Option<Plan>, CompileError> {
    let Some(h) = cfg.hosts.get(host) else {
        return Ok(None);
    };
    match (h.role, h.platform) {
        (Role::Router, model::Platform::Routeros) => match &h.routeros {
            Some(access) => Ok(Some(routeros::plan(cfg, keys, h, access))),
            None => Err(CompileError::RouterOsAccess { host: h.name.clone() }),
        },
        (Role::Gateway, _) => netfilter(h, gateway::plan(cfg, keys, h)).map(Some),
        (Role::Router, _) => netfilter(h, router::plan(cfg, keys, h)).map(Some),
        (Role::Agent, _) => Ok(None),
    }
}

/// The plan's firewall in the host's `netfilter`: the nft table as built,
/// or its translation into owned iptables chains with the same behaviour
/// ([`warren_plan::ipt::from_nft`]).
fn netfilter(h: &Host, mut plan: Plan) -> Result<Plan, CompileError> {
    if h.netfilter != model::Netfilter::Iptables {
        return Ok(plan);
    }
    if let Firewall::Nftables(table) = &plan.firewall {
        let ruleset = warren_plan::ipt::from_nft(table).map_err(|why| CompileError::Iptables {
            host: h.name.clone(),
            why,
        })?;
        plan.firewall = Firewall::Iptables(ruleset);
        plan.notes.push(
            "netfilter: iptables: the same rules as the nft table, in owned WARREN-* chains (mangle and nat) each jumped to from the top of its built-in chain; sets and maps are expanded to one rule per port interval or forward, and accept becomes RETURN (it ends only Warren's chain, as in nft)".into(),
        );
    }
    Ok(plan)
}

/// What every Linux plan starts from: the host's identity and drift policy,
/// and IPv4 forwarding on (both roles route other machines' packets).
fn base(h: &Host) -> Plan {
    Plan {
        drift: match h.drift {
            DriftPolicy::Report => Drift::Report,
            DriftPolicy::Heal => Drift::Heal,
        },
        sysctls: BTreeMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]),
        ..Plan::empty(&h.name)
    }
}
