//! ed25519 identities and their SSH forms.
//!
//! Warren keys are `ed25519_dalek` v2 values (32-byte seed, 32-byte public
//! key); russh uses `ssh-key` types built on ed25519-dalek v3. The two never
//! meet as types: they are converted through their raw bytes.

use crate::WireError;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
use russh::keys::{PrivateKey, PublicKey};

/// The SSH private key (host key on the listening side, user key on the
/// dialing side) for an identity: built from the 32-byte seed.
pub(crate) fn ssh_private_key(identity: &SigningKey) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&identity.to_bytes()))
}

/// The ed25519 key inside an SSH public key, if it is one.
pub(crate) fn verifying_key(key: &PublicKey) -> Option<VerifyingKey> {
    match key.key_data() {
        KeyData::Ed25519(Ed25519PublicKey(bytes)) => VerifyingKey::from_bytes(bytes).ok(),
        _ => None,
    }
}

/// Short, loggable form of a key: standard base64 of its 32 bytes.
pub fn key_base64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// `ssh-ed25519 AAAA…`, as `authorized_keys` and `warren-agent keys` write it.
pub fn openssh_public_key(key: &VerifyingKey) -> String {
    let pk = PublicKey::from(Ed25519PublicKey(key.to_bytes()));
    pk.to_openssh().unwrap_or_default()
}

/// Parse an ed25519 public key given as `ssh-ed25519 AAAA… [comment]` or as
/// the standard base64 of its 32 raw bytes.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, WireError> {
    let s = s.trim();
    if s.starts_with("ssh-") {
        let pk = PublicKey::from_openssh(s).map_err(|e| WireError::BadKey(e.to_string()))?;
        return verifying_key(&pk)
            .ok_or_else(|| WireError::BadKey(format!("not ed25519: {}", pk.algorithm())));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| WireError::BadKey(format!("not base64: {e}")))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|v: Vec<u8>| WireError::BadKey(format!("{} bytes, expected 32", v.len())))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| WireError::BadKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ssh_key_from_seed_has_the_same_public_key() {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let ssh = ssh_private_key(&sk);
        assert_eq!(verifying_key(ssh.public_key()), Some(sk.verifying_key()));
    }

    #[test]
    fn openssh_round_trip_and_raw_base64() {
        let vk = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let line = openssh_public_key(&vk);
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert_eq!(parse_public_key(&format!("{line} agent@router")).unwrap(), vk);
        assert_eq!(parse_public_key(&key_base64(&vk)).unwrap(), vk);
        assert!(parse_public_key("ssh-ed25519 !!!").is_err());
        assert!(parse_public_key("AAAA").is_err());
    }
}
