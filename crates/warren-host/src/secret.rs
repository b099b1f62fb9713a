//! Secret key files: 32 bytes as one base64 line, mode 0600, written
//! atomically and never replaced once created. Both binaries read them the
//! same way: a file that group or others can read is refused, because a
//! leaked controller key signs plans every agent runs as root.

use base64::Engine;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a secret key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file exists but group or others may read it.
    #[error("{} is readable by others (mode {mode:o}); chmod 600 it", path.display())]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold one base64 line of 32 bytes.
    #[error("{} is corrupt: {why}", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The operating system refused a read or write.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// `read` or `create`.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying error (part of the message, so not a `source()`:
        /// an error chain printed with `{:#}` would repeat it).
        error: std::io::Error,
    },
    /// No randomness to make a key from.
    #[error("no randomness: {0}")]
    Random(String),
}

/// Read a secret, or `None` if the file does not exist.
pub fn read(path: &Path) -> Result<Option<[u8; 32]>, SecretError> {
    read_exposed_to(path, 0o077)
}

/// Read a secret that its group may read too (a Kubernetes Secret mounted
/// for a non-root user is group-readable through `fsGroup`); one others may
/// read is still refused.
pub fn read_group_shared(path: &Path) -> Result<Option<[u8; 32]>, SecretError> {
    read_exposed_to(path, 0o007)
}

fn read_exposed_to(path: &Path, forbidden: u32) -> Result<Option<[u8; 32]>, SecretError> {
    let io = |error| SecretError::Io {
        action: "read",
        path: path.to_path_buf(),
        error,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(SecretError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    decode(text.trim()).map(Some).map_err(|why| SecretError::Corrupt {
        path: path.to_path_buf(),
        why,
    })
}

fn decode(text: &str) -> Result<[u8; 32], String> {
    let raw = B64.decode(text).map_err(|e| format!("not base64 ({e})"))?;
    let len = raw.len();
    raw.try_into()
        .map_err(|_| format!("{len} bytes where a key has 32"))
}

/// Create a new random secret at `path` (its directory made 0700 if
/// missing). Fails if the file already exists.
pub fn create(path: &Path) -> Result<[u8; 32], SecretError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| SecretError::Random(e.to_string()))?;
    let io = |error| SecretError::Io {
        action: "create",
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fs::ensure_private_dir(dir).map_err(io)?;
    }
    crate::fs::create_atomic(path, format!("{}\n", B64.encode(secret)).as_bytes()).map_err(io)?;
    Ok(secret)
}

/// The secret at `path`, created on first use; `true` when it was created now.
pub fn read_or_create(path: &Path) -> Result<([u8; 32], bool), SecretError> {
    if let Some(s) = read(path)? {
        return Ok((s, false));
    }
    match create(path) {
        Ok(s) => Ok((s, true)),
        // Someone else created it between our read and our create.
        Err(SecretError::Io { error, .. }) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?
                .map(|s| (s, false))
                .ok_or_else(|| SecretError::Corrupt {
                    path: path.to_path_buf(),
                    why: "vanished while being created".into(),
                })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warren-secret-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_once_then_read_back() {
        let d = scratch("once");
        let p = d.join("keys").join("identity.key");
        let (a, created) = read_or_create(&p).unwrap();
        assert!(created);
        let (b, created) = read_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(create(&p), Err(SecretError::Io { .. })));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn exposed_and_corrupt_files_are_refused_with_reasons() {
        let d = scratch("bad");
        crate::fs::ensure_private_dir(&d).unwrap();
        let p = d.join("controller.key");
        create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("is readable by others (mode 644); chmod 600 it"),
            "{e}"
        );

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "not base64!\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("is corrupt: not base64"), "{e}");
        std::fs::write(&p, "AAAA\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.ends_with("is corrupt: 3 bytes where a key has 32"), "{e}");
        assert!(read(&d.join("absent.key")).unwrap().is_none());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_group_shared_secret_may_be_group_readable_but_never_world_readable() {
        let d = scratch("shared");
        crate::fs::ensure_private_dir(&d).unwrap();
        let p = d.join("signing.key");
        let k = create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert!(read(&p).is_err(), "the strict read still refuses it");
        assert_eq!(read_group_shared(&p).unwrap(), Some(k));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
        let e = read_group_shared(&p).unwrap_err().to_string();
        assert!(e.contains("mode 444"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
