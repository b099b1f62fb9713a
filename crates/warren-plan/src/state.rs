//! What an agent observes of the live state it owns, as plain data.
//!
//! Backends fill this in (`observe`); [`crate::diff`] compares it with a plan.
//! Only Warren's own resources appear here: interfaces Warren created, routes
//! and rules tagged with [`crate::RT_PROTO`], and the `warren` nft table.

use crate::net::Ipv4Cidr;
use crate::plan::{PolicyRule, Route};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<Ipv4Cidr>,
    pub persistent_keepalive: Option<u16>,
    /// Unix seconds of the latest handshake (0 = never). Informational.
    pub latest_handshake: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceState {
    /// Public key of the private key configured on the interface (the private
    /// key itself is never read into this structure).
    pub public_key: Option<String>,
    pub listen_port: Option<u16>,
    pub mtu: u16,
    pub up: bool,
    pub addresses: Vec<Ipv4Cidr>,
    pub peers: Vec<PeerState>,
}

/// The `warren` nft table as read back with `nft -j`, normalized (handles,
/// counters and metainfo removed; canonical JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftState {
    pub normalized: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub sysctls: BTreeMap<String, String>,
    pub interfaces: BTreeMap<String, InterfaceState>,
    pub routes: Vec<Route>,
    pub rules: Vec<PolicyRule>,
    pub nft: Option<NftState>,
}

/// What the agent remembers of its last apply, needed to judge the table:
/// the digest of the table it applied and the kernel's read-back of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftMemory {
    pub digest: String,
    pub normalized: String,
}
