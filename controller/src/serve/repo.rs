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
    /// https remotes: the forge token (`--forge-token-file`) as credentials,
    /// for private repositories, with the user name that forge expects.
    pub https_token: Option<HttpsToken>,
}

/// A forge token used as https credentials.
#[derive(Clone)]
pub struct HttpsToken {
    /// GitHub takes `x-access-token`; Gitea and Forgejo take the token as
    /// the user name.
    pub user: String,
    pub token: String,
}

impl std::fmt::Debug for HttpsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsToken")
            .field(
                "user",
                &if self.user == self.token {
                    "<token>"
                } else {
                    self.user.as_str()
                },
            )
            .field("token", &"<redacted>")
            .finish()
    }
}

impl HttpsToken {
    /// The credentials `kind`'s git server takes for a token.
    pub fn for_forge(kind: crate::forge::ForgeKind, token: &str) -> HttpsToken {
        let user = match kind {
            crate::forge::ForgeKind::Github => "x-access-token".to_string(),
            crate::forge::ForgeKind::Gitea => token.to_string(),
        };
        HttpsToken {
            user,
            token: token.to_string(),
        }
    }
}

/// `warren.yaml` after merging a pull request's head onto its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The merged file (the head's own on a conflict).
    pub text: String,
    /// The file conflicts: the text is the head's, not a merge.
    pub conflict: bool,
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
        if let Some(t) = self.access.https_token.clone() {
            let mut tries = 0;
            cb.credentials(move |url, _user, allowed| {
                tries += 1;
                if tries > 1 || !url.starts_with("https://") || !allowed.is_user_pass_plaintext() {
                    return Err(git2::Error::from_str("the https server refused the forge token"));
                }
                git2::Cred::userpass_plaintext(&t.user, &t.token)
            });
        } else if let Some(key) = self.access.ssh_key.clone() {
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

    /// Fetch pull request `number`'s head (`refs/pull/<n>/head`, which
    /// GitHub, Gitea and Forgejo all keep) and the watched branch into the
    /// mirror; the head commit and the branch's tip.
    pub fn fetch_pr(&self, number: u64) -> Result<(String, String)> {
        // Into refs of its own: the main loop's fetcher updates the branch
        // in the same mirror, and two writers of one ref collide on its lock.
        let head = format!("+refs/pull/{number}/head:refs/warren/pull/{number}");
        let base = format!("+refs/heads/{0}:refs/warren/base/{0}", self.branch);
        let mut remote = self.mirror.remote_anonymous(&self.source)?;
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(self.callbacks()?);
        remote
            .fetch(&[&head, &base], Some(&mut fo), None)
            .with_context(|| format!("cannot fetch pull request #{number} from {}", self.source))?;
        let id = |r: &str| -> Result<String> {
            Ok(self
                .mirror
                .find_reference(r)
                .with_context(|| format!("{r} not found after fetching"))?
                .peel_to_commit()?
                .id()
                .to_string())
        };
        Ok((
            id(&format!("refs/warren/pull/{number}"))?,
            id(&format!("refs/warren/base/{}", self.branch))?,
        ))
    }

    /// `warren.yaml` as merging `head` onto `base` would leave it, computed
    /// in memory (nothing is written to any branch); `conflict`: it does not
    /// merge cleanly, and the text is the head's own. No `warren.yaml` in
    /// the result is an error.
    pub fn merged_text(&self, base: &str, head: &str) -> Result<Merged> {
        let base_c = self.mirror.find_commit(git2::Oid::from_str(base)?)?;
        let head_c = self.mirror.find_commit(git2::Oid::from_str(head)?)?;
        let (text, conflict) = crate::cmd::preview::merged_text(&self.mirror, &base_c, &head_c)?;
        Ok(Merged { text, conflict })
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

/// Fetches the watched branch off the event loop: one fetch at a time on a
/// blocking thread, the result awaited with [`Fetcher::done`], requests that
/// arrive meanwhile folded into one more fetch.
///
/// libgit2's own connect and I/O timeouts cannot be set without `unsafe`
/// (a C global), so a watchdog bounds each fetch instead: past
/// [`FETCH_TIMEOUT`] it is abandoned (its thread finishes on its own, or
/// never), reported as an error, and the next fetch uses a fresh handle on
/// the mirror. At most [`MAX_ABANDONED`] abandoned fetches may linger; past
/// that no new fetch starts until one of them ends.
pub struct Fetcher {
    dir: PathBuf,
    source: String,
    branch: String,
    access: Access,
    idle: Option<Repo>,
    running: Option<(FetchTask, tokio::time::Instant)>,
    pending: bool,
    abandoned: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    timeout: std::time::Duration,
}

/// A fetch on its blocking thread: the handle comes back with the result.
type FetchTask = tokio::task::JoinHandle<(Repo, Result<Snapshot>)>;

/// How long one fetch may take before it is abandoned.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Abandoned fetches allowed to linger (each holds a thread).
pub const MAX_ABANDONED: usize = 4;

impl Fetcher {
    /// A fetcher for the mirror at `dir` (see [`Repo::open`]).
    pub fn new(dir: &Path, source: &str, branch: &str, access: Access) -> Result<Fetcher> {
        let idle = Repo::open(dir, source, branch, access.clone())?;
        Ok(Fetcher {
            dir: dir.to_path_buf(),
            source: source.to_string(),
            branch: branch.to_string(),
            access,
            idle: Some(idle),
            running: None,
            pending: false,
            abandoned: std::sync::Arc::default(),
            timeout: FETCH_TIMEOUT,
        })
    }

    /// Ask for a fetch: now if none is running, else once it ends.
    pub fn request(&mut self) {
        self.pending = true;
        self.start();
    }

    fn start(&mut self) {
        use std::sync::atomic::Ordering;
        if self.running.is_some() || !self.pending {
            return;
        }
        if self.abandoned.load(Ordering::SeqCst) >= MAX_ABANDONED {
            tracing::warn!("{MAX_ABANDONED} stalled fetches still hang; not starting another");
            return;
        }
        let repo = match self.idle.take() {
            Some(r) => r,
            None => match Repo::open(&self.dir, &self.source, &self.branch, self.access.clone()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("cannot open the mirror: {e:#}");
                    return;
                }
            },
        };
        self.pending = false;
        let task = tokio::task::spawn_blocking(move || {
            let r = repo.fetch();
            (repo, r)
        });
        self.running = Some((task, tokio::time::Instant::now() + self.timeout));
    }

    /// The result of the running fetch; pending forever if none runs, so it
    /// can sit in a `select!` (cancel-safe: the fetch goes on).
    pub async fn done(&mut self) -> Result<Snapshot> {
        let Some((task, deadline)) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let out = match tokio::time::timeout_at(*deadline, &mut *task).await {
            Ok(Ok((repo, r))) => {
                self.idle = Some(repo);
                r
            }
            Ok(Err(e)) => Err(anyhow::anyhow!("the fetch task failed: {e}")),
            Err(_) => {
                self.abandon();
                Err(anyhow::anyhow!(
                    "fetching {} from {} took over {}s: abandoned (is the git host stalled?)",
                    self.branch,
                    self.source,
                    self.timeout.as_secs()
                ))
            }
        };
        self.running = None;
        self.start();
        out
    }

    /// Leave the running fetch to finish on its own, counted as lingering.
    fn abandon(&mut self) {
        use std::sync::atomic::Ordering;
        let Some((task, _)) = self.running.take() else {
            return;
        };
        let n = self.abandoned.clone();
        n.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let _ = task.await;
            n.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// A pull request's head is fetched from `refs/pull/<n>/head` and
    /// merged onto the branch in memory: both sides' edits to different
    /// lines survive, a conflicting edit is reported as such (with the
    /// head's text), and the branch itself is untouched.
    #[test]
    fn a_pull_request_is_fetched_and_merged_in_memory() {
        let d = std::env::temp_dir().join(format!("warren-pr-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let src = d.join("src");
        std::fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        std::fs::write(src.join("warren.yaml"), "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\n").unwrap();
        git(&src, &["add", "."]);
        git(&src, &["commit", "-qm", "base"]);
        git(&src, &["checkout", "-qb", "feature"]);
        std::fs::write(src.join("warren.yaml"), "a: 1\nb: 2\nc: 3\nd: 4\ne: 50\n").unwrap();
        git(&src, &["commit", "-qam", "head"]);
        git(&src, &["update-ref", "refs/pull/7/head", "feature"]);
        git(&src, &["checkout", "-q", "main"]);
        std::fs::write(src.join("warren.yaml"), "a: 10\nb: 2\nc: 3\nd: 4\ne: 5\n").unwrap();
        git(&src, &["commit", "-qam", "main moved"]);
        let repo = Repo::open(
            &d.join("mirror"),
            src.to_str().unwrap(),
            "main",
            Access::default(),
        )
        .unwrap();
        let (head, base) = repo.fetch_pr(7).unwrap();
        let m = repo.merged_text(&base, &head).unwrap();
        assert_eq!(
            m,
            Merged {
                text: "a: 10\nb: 2\nc: 3\nd: 4\ne: 50\n".into(),
                conflict: false
            }
        );
        // The same line changed on both sides: a conflict, shown as the head's.
        git(&src, &["checkout", "-q", "feature"]);
        std::fs::write(src.join("warren.yaml"), "a: 11\nb: 2\nc: 3\nd: 4\ne: 50\n").unwrap();
        git(&src, &["commit", "-qam", "conflict"]);
        git(&src, &["update-ref", "refs/pull/7/head", "feature"]);
        let (head, base) = repo.fetch_pr(7).unwrap();
        let m = repo.merged_text(&base, &head).unwrap();
        assert!(m.conflict);
        assert_eq!(m.text, "a: 11\nb: 2\nc: 3\nd: 4\ne: 50\n");
        assert_eq!(
            repo.at(&base).unwrap().text.as_deref(),
            Some("a: 10\nb: 2\nc: 3\nd: 4\ne: 5\n")
        );
        assert!(repo.fetch_pr(8).is_err(), "no such pull request");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A source repository whose every open blocks (its alternates file is
    /// a FIFO nobody writes): the fetch stalls like a git host that accepts
    /// and never answers. The loop is not blocked, the watchdog gives up,
    /// and once the host answers again the next fetch works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_fetch_runs_off_the_loop_and_is_abandoned() {
        let d = std::env::temp_dir().join(format!("warren-fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let src = d.join("src");
        std::fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        std::fs::write(src.join("warren.yaml"), "x: 1\n").unwrap();
        git(&src, &["add", "."]);
        git(&src, &["commit", "-qm", "one"]);
        let mut f = Fetcher::new(
            &d.join("mirror"),
            src.to_str().unwrap(),
            "main",
            Access::default(),
        )
        .unwrap();
        f.timeout = Duration::from_millis(500);
        f.request();
        let snap = tokio::time::timeout(Duration::from_secs(20), f.done())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(snap.summary, "one");

        let fifo = src.join(".git/objects/info/alternates");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        f.request();
        let t0 = std::time::Instant::now();
        // The loop goes on meanwhile: a timer fires while the fetch hangs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = tokio::time::timeout(Duration::from_secs(10), f.done())
            .await
            .unwrap()
            .unwrap_err();
        assert!(format!("{err:#}").contains("abandoned"), "{err:#}");
        assert!(t0.elapsed() < Duration::from_secs(5));

        // The host answers again: the stuck open returns, a new fetch works.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        std::fs::remove_file(&fifo).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        git(&src, &["commit", "-q", "--allow-empty", "-m", "two"]);
        f.request();
        let snap = tokio::time::timeout(Duration::from_secs(20), f.done())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(snap.summary, "two");
        let _ = std::fs::remove_dir_all(&d);
    }
}
