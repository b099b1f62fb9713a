//! Pull requests as the interface: what the controller says on the forge
//! (GitHub, GitHub Enterprise, Gitea, Forgejo) about a change before and
//! after it is applied.
//!
//! Map of the module:
//! - [`events`]: pull request webhook payloads of both dialects, parsed into
//!   one [`PrEvent`] (pure);
//! - [`render`]: the one sticky comment per PR (plan preview, apply result,
//!   drift), its hidden marker and its byte budget (pure);
//! - [`client`]: the forges' REST APIs (comments, commit statuses), with
//!   retries, rate limits and the "find my own comment" rule.
//!
//! It owns the forge conversation only: it must not compile, sign or send
//! plans (the serve loop hands it what to say), and it never writes a
//! private key or a secret into anything it posts.

pub mod client;
pub mod events;
pub mod render;

/// Which API dialect a forge speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise (REST v3).
    Github,
    /// Gitea or Forgejo (API v1).
    Gitea,
}

impl ForgeKind {
    /// The name used on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitea => "gitea",
        }
    }
}

/// What happened to a pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrAction {
    /// Opened, or reopened.
    Opened,
    /// New commits on the head branch (GitHub `synchronize`, Gitea
    /// `synchronized`).
    Synchronized,
    /// Closed and merged, as this commit on the base branch.
    Merged {
        /// The merge (or squash, or rebase) result on the base branch.
        merge_commit: String,
    },
    /// Closed without merging.
    Closed,
}

/// A pull request event Warren acts on, from either forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrEvent {
    /// Which forge sent it.
    pub forge: ForgeKind,
    /// What happened.
    pub action: PrAction,
    /// The PR's number (Gitea's index).
    pub number: u64,
    /// The head commit.
    pub head_sha: String,
    /// The head branch.
    pub head_ref: String,
    /// The branch it targets.
    pub base_ref: String,
    /// `owner/name` of the repository.
    pub repo: String,
}
