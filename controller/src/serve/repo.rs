//! The desired-state repository: a bare mirror in the state directory,
//! fetched from the source (a local path or a `file://` URL), and the
//! newest commit of the watched branch.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct Repo {
    mirror: git2::Repository,
    source: String,
    branch: String,
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
    pub fn open(dir: &Path, source: &str, branch: &str) -> Result<Repo> {
        let mirror = match git2::Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => git2::Repository::init_bare(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?,
        };
        Ok(Repo {
            mirror,
            source: source.to_string(),
            branch: branch.to_string(),
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
        remote
            .fetch(&[&refspec], None, None)
            .with_context(|| format!("cannot fetch {} from {}", self.branch, self.source))?;
        let r = self
            .mirror
            .find_reference(&format!("refs/heads/{}", self.branch))
            .with_context(|| format!("branch {} not found in {}", self.branch, self.source))?;
        self.snapshot(r.peel_to_commit()?)
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
