//! The controller's signing key: an ed25519 seed, base64 on one line, 0600.

use anyhow::{bail, Context, Result};
use base64::Engine;
use ed25519_dalek::SigningKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Create a new key at `path` (refusing to overwrite one) and return it.
pub fn generate(path: &Path) -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{}", B64.encode(seed))?;
    Ok(key)
}

pub fn load(path: &Path) -> Result<SigningKey> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("{} is readable by others; chmod 600 it", path.display());
    }
    let text = std::fs::read_to_string(path)?;
    let raw = B64
        .decode(text.trim())
        .with_context(|| format!("{}: not base64", path.display()))?;
    let seed: [u8; 32] = raw
        .try_into()
        .map_err(|_| anyhow::anyhow!("{}: not a 32-byte ed25519 seed", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn public_b64(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().to_bytes())
}
