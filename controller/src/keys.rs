//! The controller's signing key: an ed25519 seed in a secret key file (one
//! base64 line, 0600), the same file format and the same code the agent uses
//! for its own secrets (`warren_host::secret`): created atomically and never
//! replaced, refused when group or others can read it.
//!
//! It owns only the step from seed to `SigningKey`; it must not grow its own
//! file handling.

use anyhow::{anyhow, Result};
use ed25519_dalek::SigningKey;
use std::path::Path;
use warren_host::secret;

/// Create a new key at `path` (refusing to overwrite one) and return it.
pub fn generate(path: &Path) -> Result<SigningKey> {
    let seed = secret::create(path)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The key at `path`; an error if it is missing, readable by others, or not
/// one base64 line of a 32-byte seed.
pub fn load(path: &Path) -> Result<SigningKey> {
    let seed = secret::read(path)?.ok_or_else(|| anyhow!("cannot read {}: no such file", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The key in a file handed to the controller (`serve --signing-key-file`):
/// like [`load`], but its group may read it too (a Kubernetes Secret for a
/// non-root pod); others may not.
pub fn load_shared(path: &Path) -> Result<SigningKey> {
    let seed = secret::read_group_shared(path)?
        .ok_or_else(|| anyhow!("cannot read {}: no such file", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public half, base64, as agents list it in `trusted_controller_keys`.
pub fn public_b64(key: &SigningKey) -> String {
    warren_wire::key_base64(&key.verifying_key())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_key_loads_back_and_is_private() {
        let d = std::env::temp_dir().join(format!("warren-ctl-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("controller.key");
        let k = generate(&p).unwrap();
        assert_eq!(load(&p).unwrap().to_bytes(), k.to_bytes());
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let public = public_b64(&k);
        assert_eq!(warren_wire::parse_public_key(&public).unwrap(), k.verifying_key());
        // Never replaced.
        let e = format!("{:#}", generate(&p).unwrap_err());
        assert_eq!(
            e,
            format!("cannot create {}: File exists (os error 17)", p.display())
        );
        assert_eq!(load(&p).unwrap().to_bytes(), k.to_bytes());
        // Refused when others can read it.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("is readable by others") && e.ends_with("chmod 600 it"),
            "{e}"
        );
        let e = load(&d.join("absent.key")).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.ends_with("absent.key: no such file"),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
