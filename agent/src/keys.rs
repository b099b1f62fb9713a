//! Keys generated on the host: the agent's ed25519 identity and one x25519
//! WireGuard key per interface. Private halves stay in the state directory
//! (0600) and are never printed, logged or sent.

use anyhow::{Context, Result};
use base64::Engine;
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn random32() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b)
}

fn write_secret(path: &Path, bytes: &[u8; 32]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    crate::store::write_atomic(path, format!("{}\n", B64.encode(bytes)).as_bytes())
}

fn read_secret(path: &Path) -> Result<Option<[u8; 32]>> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let raw = B64
                .decode(s.trim())
                .with_context(|| format!("{} is corrupt", path.display()))?;
            let b: [u8; 32] = raw
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is corrupt", path.display()))?;
            Ok(Some(b))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn wg_key_path(state: &Path, iface: &str) -> PathBuf {
    state.join("wg").join(format!("{iface}.key"))
}

/// The interface's public key, generating its private key on first use.
pub fn ensure_wg(state: &Path, iface: &str) -> Result<String> {
    let p = wg_key_path(state, iface);
    let secret = match read_secret(&p)? {
        Some(b) => b,
        None => {
            let b = random32()?;
            write_secret(&p, &b)?;
            tracing::info!(interface = iface, "generated WireGuard key");
            b
        }
    };
    let s = x25519_dalek::StaticSecret::from(secret);
    Ok(B64.encode(x25519_dalek::PublicKey::from(&s).as_bytes()))
}

/// Public keys of the interfaces that already have one.
pub fn wg_public_keys(state: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let mut m = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(state.join("wg")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(iface) = name.strip_suffix(".key") {
                m.insert(iface.to_string(), ensure_wg(state, iface)?);
            }
        }
    }
    Ok(m)
}

/// The agent's identity key, created on first use.
pub fn identity_signing_key(state: &Path) -> Result<ed25519_dalek::SigningKey> {
    let p = state.join("identity.key");
    let seed = match read_secret(&p)? {
        Some(b) => b,
        None => {
            let b = random32()?;
            write_secret(&p, &b)?;
            tracing::info!("generated identity key");
            b
        }
    };
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The agent's identity, as an OpenSSH public key line.
pub fn ensure_identity(state: &Path) -> Result<String> {
    Ok(warren_wire::openssh_public_key(
        &identity_signing_key(state)?.verifying_key(),
    ))
}
