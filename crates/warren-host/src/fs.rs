//! Private files written atomically: a crash or power cut leaves either the
//! old content or the new, never a torn file, and the rename itself is made
//! durable by syncing the directory.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Create `dir` (and its parents) readable by root only (0700) if missing.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn temporary(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_temporary(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Sync the directory holding `path`, so a rename or link into it survives
/// a power cut.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// Write `bytes` to `path` atomically, readable by root only (0600): a
/// temporary file beside it (`NAME.tmp`), fsynced, renamed over `path`, and
/// the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary(path);
    write_temporary(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Like [`write_atomic`], but never replaces an existing file: fails with
/// `AlreadyExists` if `path` is there (two processes creating the same key
/// cannot both win).
pub fn create_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary(path);
    write_temporary(&tmp, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_parent(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("warren-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        ensure_private_dir(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let d = scratch("atomic");
        let p = d.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(
            !d.join("state.json.tmp").exists(),
            "no temporary file left behind"
        );
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn create_atomic_never_replaces() {
        let d = scratch("create");
        let p = d.join("key");
        create_atomic(&p, b"first").unwrap();
        let e = create_atomic(&p, b"second").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        assert!(!d.join("key.tmp").exists());
        std::fs::remove_dir_all(d).unwrap();
    }
}
