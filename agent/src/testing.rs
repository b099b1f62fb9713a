//! Test support: scratch state directories that clean up after themselves.

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory,
/// removed when dropped (also when the test fails).
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory named after the test (`name`) and this process.
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("warren-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    warren_host::fs::ensure_private_dir(&dir).unwrap();
    Scratch(dir)
}
