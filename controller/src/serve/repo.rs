//! The desired-state repository: a bare mirror in the state directory,
//! fetched from the source (a local path, `file://`, `ssh://` or `https://`),
//! and the newest commit of the watched branch. Over ssh the server's host
//! key must be pinned (no trust on first use) and a deploy key is used;
//! https uses the system's certificate authorities.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct Repo {
    mirror: git2::Repository,
    source: String,
    branch: String,
    access: Access,
}

/// How to reach a remote repository.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Private key (OpenSSH format) for ssh remotes: a deploy key.
    pub ssh_key: Option<std::path::PathBuf>,
    /// The ssh server's host key, `ssh-ed25519 AAAA…` (as in known_hosts).
    pub host_key: Option<String>,
}

/// What the watched branch points at, with its `warren.yaml`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub commit: String,
    pub summary: String,
    /// `None` if the commit has no `warren.yaml` at its root.
    pub text: Option<String>,
}

impl Repo {
    /// Open (or create) the mirror at `dir` for `source` and `branch`.
    pub fn open(dir: &Path, source: &str, branch: &str, access: Access) -> Result<Repo> {
        let mirror = match git2::Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => git2::Repository::init_bare(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?,
        };
        Ok(Repo {
            mirror,
            source: source.to_string(),
            branch: branch.to_string(),
            access,
        })
    }

    /// The local path to watch for filesystem events, when the source is local.
    pub fn local_path(&self) -> Option<PathBuf> {
        let p = self.source.strip_prefix("file://").unwrap_or(&self.source);
        let p = PathBuf::from(p);
        p.exists().then_some(p)
    }

    /// Fetch the branch from the source and return its newest commit.
    pub fn fetch(&self) -> Result<Snapshot> {
        let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
        let mut remote = self.mirror.remote_anonymous(&self.source)?;
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(self.callbacks()?);
        remote
            .fetch(&[&refspec], Some(&mut fo), None)
            .with_context(|| format!("cannot fetch {} from {}", self.branch, self.source))?;
        let r = self
            .mirror
            .find_reference(&format!("refs/heads/{}", self.branch))
            .with_context(|| format!("branch {} not found in {}", self.branch, self.source))?;
        self.snapshot(r.peel_to_commit()?)
    }

    fn callbacks(&self) -> Result<git2::RemoteCallbacks<'static>> {
        use base64::Engine;
        use sha2::Digest;
        let mut cb = git2::RemoteCallbacks::new();
        if let Some(key) = self.access.ssh_key.clone() {
            let mut tries = 0;
            cb.credentials(move |_url, user, _allowed| {
                // libgit2 asks again after a refusal: answer once, then fail.
                tries += 1;
                if tries > 1 {
                    return Err(git2::Error::from_str("the ssh server refused the deploy key"));
                }
                git2::Cred::ssh_key(user.unwrap_or("git"), None, &key, None)
            });
        }
        let pinned: Option<Vec<u8>> = match &self.access.host_key {
            Some(k) => Some(
                k.split_whitespace()
                    .nth(1)
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .with_context(|| format!("--repo-host-key {k:?} is not `ssh-<type> BASE64`"))?,
            ),
            None => None,
        };
        cb.certificate_check(move |cert, host| match cert.as_hostkey() {
            Some(hk) => match &pinned {
                // libgit2 gives the raw key when it can, else its SHA-256.
                Some(pin)
                    if hk.hostkey() == Some(pin.as_slice())
                        || (hk.hostkey().is_none()
                            && hk
                                .hash_sha256()
                                .is_some_and(|h| h[..] == sha2::Sha256::digest(pin)[..])) =>
                {
                    Ok(git2::CertificateCheckStatus::CertificateOk)
                }
                Some(_) => {
                    tracing::error!(
                        host,
                        "the server's host key does not match --repo-host-key: refusing to fetch"
                    );
                    Err(git2::Error::from_str(&format!(
                        "the host key of {host} does not match --repo-host-key: refusing to fetch"
                    )))
                }
                None => {
                    tracing::error!(
                        host,
                        "ssh remote: pin its host key with --repo-host-key (ssh-keyscan shows it)"
                    );
                    Err(git2::Error::from_str(&format!(
                        "ssh remote {host}: pin its host key with --repo-host-key (ssh-keyscan shows it)"
                    )))
                }
            },
            // https: libgit2's own verification against the system CAs.
            None => Ok(git2::CertificateCheckStatus::CertificatePassthrough),
        });
        Ok(cb)
    }

    /// The snapshot at a commit already in the mirror.
    pub fn at(&self, commit: &str) -> Result<Snapshot> {
        let oid = git2::Oid::from_str(commit)?;
        self.snapshot(
            self.mirror
                .find_commit(oid)
                .with_context(|| format!("commit {commit} is not in the mirror"))?,
        )
    }

    fn snapshot(&self, commit: git2::Commit<'_>) -> Result<Snapshot> {
        let tree = commit.tree()?;
        let text = match tree.get_path(Path::new(crate::source::FILE)) {
            Ok(entry) => {
                let blob = entry.to_object(&self.mirror)?.peel_to_blob()?;
                if blob.size() > warren_model::load::MAX_BYTES {
                    Some(
                        String::from_utf8_lossy(&blob.content()[..warren_model::load::MAX_BYTES + 1])
                            .into_owned(),
                    )
                } else {
                    Some(String::from_utf8_lossy(blob.content()).into_owned())
                }
            }
            Err(_) => None,
        };
        Ok(Snapshot {
            commit: commit.id().to_string(),
            summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
            text,
        })
    }
}
