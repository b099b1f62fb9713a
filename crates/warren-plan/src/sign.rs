//! Signed envelopes: what binds a plan to a host, a serial and a commit.
//!
//! The controller signs `"warren-plan-v1\0" || canonical(envelope)`; the
//! envelope carries the sha256 of the canonical plan, so the signature covers
//! the plan too. Verification is pure: the agent passes in its trusted keys,
//! its host name and the last serial it applied.

use crate::plan::{Plan, FORMAT};
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

const DOMAIN: &[u8] = b"warren-plan-v1\0";

/// What the controller signs: a plan's hash bound to a host, a serial and a
/// commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The plan format, [`FORMAT`].
    pub format: u32,
    /// The host the plan is for.
    pub host: String,
    /// Strictly increasing per host; an agent refuses anything not above the
    /// last serial it applied (no replay, no rollback to an old plan).
    pub serial: u64,
    /// The git commit the plan was compiled from.
    pub commit: String,
    /// Lowercase hex sha256 of the canonical plan ([`crate::hash_hex`]).
    pub plan_sha256: String,
    /// Seconds the agent waits for the controller's confirmation before it
    /// restores the previous state.
    pub confirm_secs: u32,
    /// Unix seconds when the controller signed it (informational; given by the caller).
    pub issued_at: u64,
}

/// A plan with its signed envelope: what travels to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPlan {
    /// The signed envelope.
    pub envelope: Envelope,
    /// The plan whose hash the envelope carries.
    pub plan: Plan,
    /// base64 ed25519 signature over the domain-separated canonical envelope.
    pub signature: String,
}

/// Why an agent refuses a signed plan.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The envelope or the plan has a format this agent does not know.
    #[error("plan format {0} is not supported (this agent knows format {FORMAT})")]
    Format(u32),
    /// The signature is not base64 of 64 bytes.
    #[error("signature is malformed")]
    MalformedSignature,
    /// No trusted controller key signed this envelope.
    #[error("signature does not verify against any trusted controller key")]
    BadSignature,
    /// The plan is not the one whose hash was signed.
    #[error("plan content does not match the signed hash (tampered)")]
    HashMismatch,
    /// The plan is for another host.
    #[error("plan is for host {plan:?}, this is {me:?}")]
    WrongHost {
        /// The host named in the envelope.
        plan: String,
        /// This agent's host.
        me: String,
    },
    /// The serial is not above the last applied one.
    #[error("plan serial {got} is not above the last applied serial {last} (replay or rollback)")]
    OldSerial {
        /// The envelope's serial.
        got: u64,
        /// The last serial this agent applied.
        last: u64,
    },
    /// The plan is well signed but asks for something the agent refuses to
    /// do (content a network plan never needs, or a takeover of something
    /// Warren does not own); the text says what and how to proceed.
    #[error("{0}")]
    Refused(String),
}

fn message(env: &Envelope) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(&crate::canonical(env));
    m
}

/// Build and sign the envelope for `plan`.
pub fn sign(
    plan: Plan,
    serial: u64,
    commit: &str,
    confirm_secs: u32,
    issued_at: u64,
    key: &SigningKey,
) -> SignedPlan {
    let envelope = Envelope {
        format: FORMAT,
        host: plan.host.clone(),
        serial,
        commit: commit.to_string(),
        plan_sha256: crate::hash_hex(&plan),
        confirm_secs,
        issued_at,
    };
    let sig = key.sign(&message(&envelope));
    SignedPlan {
        envelope,
        plan,
        signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    }
}

/// Check everything an agent must check before touching anything.
pub fn verify(
    sp: &SignedPlan,
    trusted: &[VerifyingKey],
    me: &str,
    last_serial: Option<u64>,
) -> Result<(), VerifyError> {
    if sp.envelope.format != FORMAT {
        return Err(VerifyError::Format(sp.envelope.format));
    }
    if sp.plan.format != FORMAT {
        return Err(VerifyError::Format(sp.plan.format));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sp.signature.as_bytes())
        .map_err(|_| VerifyError::MalformedSignature)?;
    let bytes: [u8; 64] = raw.try_into().map_err(|_| VerifyError::MalformedSignature)?;
    let sig = Signature::from_bytes(&bytes);
    let msg = message(&sp.envelope);
    // Strict: no small-order keys or R (a weak key verifies forged
    // signatures), no non-canonical encodings.
    let good = |k: &&VerifyingKey| !k.is_weak() && k.verify_strict(&msg, &sig).is_ok();
    if !trusted.iter().any(|k| good(&k)) {
        return Err(VerifyError::BadSignature);
    }
    if crate::hash_hex(&sp.plan) != sp.envelope.plan_sha256 {
        return Err(VerifyError::HashMismatch);
    }
    if sp.envelope.host != me || sp.plan.host != me {
        return Err(VerifyError::WrongHost {
            plan: sp.envelope.host.clone(),
            me: me.to_string(),
        });
    }
    if let Some(last) = last_serial {
        if sp.envelope.serial <= last {
            return Err(VerifyError::OldSerial {
                got: sp.envelope.serial,
                last,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::collections::BTreeMap;

    fn plan() -> Plan {
        Plan {
            format: FORMAT,
            host: "router".into(),
            platform: crate::Platform::Linux,
            drift: crate::Drift::Report,
            sysctls: BTreeMap::new(),
            wireguard: vec![],
            routes: vec![],
            rules: vec![],
            firewall: crate::Firewall::None,
            openings: Default::default(),
            routeros: None,
            notes: vec![],
        }
    }

    /// The identity point as a "trusted" key verifies `R = [s]B` for any
    /// message under non-strict verification: here s = 1, so R = B.
    #[test]
    fn a_small_order_trusted_key_verifies_nothing() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(weak.is_weak());
        let mut sp = sign(plan(), 1, "c", 60, 0, &SigningKey::from_bytes(&[3; 32]));
        let mut forged = [0u8; 64];
        forged[0] = 0x58;
        forged[1..32].fill(0x66);
        forged[32] = 1;
        sp.signature = base64::engine::general_purpose::STANDARD.encode(forged);
        assert_eq!(
            verify(&sp, &[weak], "router", None),
            Err(VerifyError::BadSignature)
        );
    }
}
