//! Warren plans: the typed, per-host desired state that the controller signs
//! and an agent applies, with its canonical encoding, sha256 content hash and
//! ed25519-signed envelope.
//!
//! This crate is the contract between controller and agents. It is pure (no
//! I/O, no clock: times and keys come in as arguments) and deterministic: the
//! same plan value always encodes to the same bytes. It must not know about
//! YAML, git or transport, and it never holds a private WireGuard key.

#![warn(missing_docs)]
#![warn(clippy::wildcard_enum_match_arm)]

pub mod diff;
pub mod finding;
pub mod foreign;
pub mod ipt;
pub mod net;
pub mod nft;
pub mod plan;
pub mod ros;
pub mod ros_diff;
pub mod ros_script;
pub mod sign;
pub mod state;

pub use diff::{diff, Change, Context, ForeignOp, IptOp, NftOp, Op, OwnKey, RoutingOp, SysctlOp, WgOp};
pub use finding::{Finding, Severity};
pub use plan::*;
pub use ros::{RosConfig, RosOp, RosState};
pub use sign::{sign, verify, Envelope, SignedPlan, VerifyError};
pub use state::{InterfaceState, IptState, NftMemory, NftState, PeerState, State};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Canonical encoding: compact JSON of the typed value. Struct fields are in
/// declaration order, maps are `BTreeMap`s, lists are sorted by the compiler,
/// and there are no floats, so equal values give byte-identical output.
pub fn canonical<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no
    // non-finite floats. An empty vector would fail verification loudly.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Lowercase hex sha256 of the canonical encoding.
pub fn hash_hex<T: Serialize>(v: &T) -> String {
    let d = Sha256::digest(canonical(v));
    d.iter().map(|b| format!("{b:02x}")).collect()
}
