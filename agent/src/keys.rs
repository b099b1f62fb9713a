//! Keys generated on the host: the agent's ed25519 identity and one x25519
//! WireGuard key per interface, as `warren_host::secret` files (0600,
//! created atomically, never replaced, refused when others can read them).
//!
//! Private halves stay in the state directory and are never printed, logged
//! or sent: only public keys leave this module. Looking a key up never
//! creates one; only the `ensure`/`identity` functions do.

use anyhow::{bail, Result};
use base64::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warren_host::secret;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The WireGuard private keys: `wg/<interface>.key` in the state directory.
#[derive(Clone, Debug)]
pub struct WgKeys {
    dir: PathBuf,
}

fn wg_public(secret: [u8; 32]) -> String {
    let s = x25519_dalek::StaticSecret::from(secret);
    B64.encode(x25519_dalek::PublicKey::from(&s).as_bytes())
}

impl WgKeys {
    /// The keys kept under the agent's state directory.
    pub fn in_state_dir(state: &Path) -> WgKeys {
        WgKeys {
            dir: state.join("wg"),
        }
    }

    /// The private key file of `iface` (handed to `wg set … private-key`).
    /// The name becomes a file name, so it must be a valid interface name
    /// (no `/`, no `..`): a plan cannot point this anywhere else.
    pub fn path(&self, iface: &str) -> Result<PathBuf> {
        if !valid_ifname(iface) {
            bail!("{iface:?} is not a valid interface name, so it has no key file");
        }
        Ok(self.dir.join(format!("{iface}.key")))
    }

    /// The interface's public key, generating its private key on first use.
    pub fn ensure(&self, iface: &str) -> Result<String> {
        let (secret, created) = secret::read_or_create(&self.path(iface)?)?;
        if created {
            tracing::info!(interface = iface, "generated WireGuard key");
        }
        Ok(wg_public(secret))
    }

    /// The interface's public key, or `None` if it has no key yet.
    pub fn public(&self, iface: &str) -> Result<Option<String>> {
        Ok(secret::read(&self.path(iface)?)?.map(wg_public))
    }

    /// Public keys of the interfaces that have a key.
    pub fn all(&self) -> Result<BTreeMap<String, String>> {
        let mut keys = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(keys);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(iface) = name.strip_suffix(".key").filter(|i| valid_ifname(i)) else {
                continue;
            };
            if let Some(public) = self.public(iface)? {
                keys.insert(iface.to_string(), public);
            }
        }
        Ok(keys)
    }
}

/// A Linux interface name Warren accepts: 1 to 15 of `[A-Za-z0-9_.-]`, not
/// starting with `-` (it would read as an option), not `.` or `..` (it
/// becomes a file name here and a directory under `/proc/sys`).
pub fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !name.starts_with('-')
        && name != "."
        && name != ".."
}

/// The agent's identity key, created on first use.
pub fn identity_signing_key(state: &Path) -> Result<ed25519_dalek::SigningKey> {
    let (seed, created) = secret::read_or_create(&state.join("identity.key"))?;
    if created {
        tracing::info!("generated identity key");
    }
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The agent's identity, as an OpenSSH public key line.
pub fn ensure_identity(state: &Path) -> Result<String> {
    Ok(warren_wire::openssh_public_key(
        &identity_signing_key(state)?.verifying_key(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lookups_never_create_and_ensure_creates_once() {
        let dir = crate::testing::scratch("keys");
        let keys = WgKeys::in_state_dir(&dir);
        assert_eq!(keys.public("wg0").unwrap(), None);
        assert!(keys.all().unwrap().is_empty());
        assert!(!dir.join("wg").exists(), "a lookup created the key directory");

        let public = keys.ensure("wg0").unwrap();
        assert_eq!(keys.ensure("wg0").unwrap(), public, "the key is not replaced");
        assert_eq!(keys.public("wg0").unwrap().as_deref(), Some(public.as_str()));
        assert_eq!(keys.all().unwrap(), BTreeMap::from([("wg0".to_string(), public)]));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys.path("wg0").unwrap()), 0o600);
        assert_eq!(mode(&dir.join("wg")), 0o700);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = crate::testing::scratch("exposed");
        let keys = WgKeys::in_state_dir(&dir);
        keys.ensure("wg0").unwrap();
        std::fs::set_permissions(keys.path("wg0").unwrap(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = keys.public("wg0").unwrap_err().to_string();
        assert!(e.contains("is readable by others"), "{e}");
    }

    #[test]
    fn interface_names_that_would_escape_the_key_directory_are_refused() {
        let dir = crate::testing::scratch("keys-names");
        let keys = WgKeys::in_state_dir(&dir);
        for bad in [
            "../x",
            "..",
            ".",
            "a/b",
            "",
            "-f",
            "wg0\n",
            "sixteen-chars-xx",
            "wg 0",
        ] {
            assert!(!valid_ifname(bad), "{bad:?}");
            assert!(keys.path(bad).is_err(), "{bad:?}");
            assert!(keys.ensure(bad).is_err(), "{bad:?}");
        }
        for good in ["wg0", "eth0.10", "br-lan", "x_1", "fifteen-chars-x"] {
            assert!(valid_ifname(good), "{good:?}");
        }
        assert!(!dir.join("x.key").exists() && !dir.join("wg").exists());
    }
}
