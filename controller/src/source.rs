//! Where the desired state comes from: a directory, a file, or a git revision.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use warren_model::load::MAX_BYTES;

/// The file name of the desired state at the root of the repo.
pub const FILE: &str = "warren.yaml";

#[derive(Debug)]
pub struct Source {
    /// Shown in diagnostics: the path, or `REV:warren.yaml`.
    pub name: String,
    pub text: String,
    /// The git commit id, or `worktree` for files on disk.
    pub commit: String,
}

/// Read `warren.yaml` from `path` (a directory or the file itself), or from
/// the git repository at `path` at revision `rev`.
pub fn read(path: &Path, rev: Option<&str>) -> Result<Source> {
    match rev {
        Some(rev) => read_git(path, rev),
        None => read_fs(path),
    }
}

fn read_fs(path: &Path) -> Result<Source> {
    let file: PathBuf = if path.is_dir() {
        path.join(FILE)
    } else {
        path.to_path_buf()
    };
    let meta = std::fs::metadata(&file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > MAX_BYTES as u64 {
        bail!(
            "{}: file is {} bytes; the limit is {MAX_BYTES}",
            file.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(Source {
        name: file.display().to_string(),
        text,
        commit: "worktree".into(),
    })
}

fn read_git(path: &Path, rev: &str) -> Result<Source> {
    let repo = git2::Repository::discover(path)
        .with_context(|| format!("{} is not in a git repository", path.display()))?;
    let obj = repo
        .revparse_single(rev)
        .with_context(|| format!("unknown revision {rev:?}"))?;
    let commit = obj
        .peel_to_commit()
        .with_context(|| format!("{rev:?} is not a commit"))?;
    let tree = commit.tree()?;
    let entry = tree
        .get_path(Path::new(FILE))
        .with_context(|| format!("commit {} has no {FILE} at its root", commit.id()))?;
    let blob = entry
        .to_object(&repo)?
        .peel_to_blob()
        .with_context(|| format!("{FILE} is not a file"))?;
    if blob.size() > MAX_BYTES {
        bail!(
            "{rev}:{FILE}: file is {} bytes; the limit is {MAX_BYTES}",
            blob.size()
        );
    }
    let text = std::str::from_utf8(blob.content()).with_context(|| format!("{rev}:{FILE} is not UTF-8"))?;
    Ok(Source {
        name: format!("{rev}:{FILE}"),
        text: text.to_string(),
        commit: commit.id().to_string(),
    })
}
