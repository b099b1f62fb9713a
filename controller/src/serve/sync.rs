//! `warren-controller sync` requests: the command cannot open the database
//! the running service holds, so it drops a request file into
//! `STATE_DIR/sync-requests/` and the service picks it up within a second
//! (like the agent's inbox). A request names hosts, or none for every host.
//!
//! This module is the file format only; what a sync does is
//! [`super::rollout::Rollout::handle_sync`].

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where requests wait in the state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sync-requests")
}

/// One request file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Request {
    /// Hosts to sync; empty means every host.
    #[serde(default)]
    hosts: Vec<String>,
}

/// What the pending requests ask for, together.
#[derive(Debug, PartialEq)]
pub enum Target {
    All,
    Hosts(Vec<String>),
}

/// Leave a request for `hosts` (empty: all); the file's path, which the
/// service removes when it has picked the request up.
pub fn request(state_dir: &Path, hosts: &[String]) -> Result<PathBuf> {
    let d = dir(state_dir);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos());
    let p = d.join(format!("{nanos}-{}.json", std::process::id()));
    let body = serde_json::to_vec(&Request {
        hosts: hosts.to_vec(),
    })?;
    warren_host::write_atomic(&p, &body).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

/// Take every pending request (removing the files); `None` if there is
/// none. An unreadable file is removed and counts as a request for every
/// host (syncing more than asked is harmless; ignoring a request is not).
pub fn take(state_dir: &Path) -> Result<Option<Target>> {
    let d = dir(state_dir);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
    };
    let mut hosts: Vec<String> = Vec::new();
    let (mut any, mut all) = (false, false);
    for entry in entries {
        let p = entry?.path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue; // a temporary file being written
        }
        let req: Option<Request> = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        any = true;
        match req {
            Some(r) if !r.hosts.is_empty() => hosts.extend(r.hosts),
            _ => all = true,
        }
    }
    hosts.sort();
    hosts.dedup();
    Ok(match (any, all) {
        (false, _) => None,
        (true, true) => Some(Target::All),
        (true, false) => Some(Target::Hosts(hosts)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_once_and_merged() {
        let d = std::env::temp_dir().join(format!("warren-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(take(&d).unwrap(), None);
        let p = request(&d, &["router".into()]).unwrap();
        request(&d, &["gateway".into(), "router".into()]).unwrap();
        assert!(p.exists());
        let want = Target::Hosts(vec!["gateway".into(), "router".into()]);
        assert_eq!(take(&d).unwrap(), Some(want));
        assert!(!p.exists(), "picked up");
        assert_eq!(take(&d).unwrap(), None);
        request(&d, &[]).unwrap();
        std::fs::write(dir(&d).join("x.json"), b"{").unwrap();
        assert_eq!(take(&d).unwrap(), Some(Target::All));
        let _ = std::fs::remove_dir_all(&d);
    }
}
