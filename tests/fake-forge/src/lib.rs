//! `warren-fake-forge`: a test-only, in-memory stand-in for the parts of the
//! GitHub REST v3 and Gitea/Forgejo API v1 that Warren's forge client uses:
//! the authenticated user, issue (pull request) comments, commit statuses and
//! GitHub commit comments.
//!
//! It owns a state machine ([`forge::Forge`]: users and their tokens, comments
//! with ids and authors, statuses per sha, a request log and failure knobs)
//! and a small HTTP/1.1 server ([`server`]) that puts it on a TCP port, one
//! dialect per instance. Its shapes (field names, status codes, headers,
//! error bodies) follow the real forges as recorded in
//! `../shared/data/forge/README.md` and the research notes; its fixtures are
//! its own. It is stricter than the real forges where that catches a client
//! bug: a GitHub instance only takes `Authorization: Bearer`, a Gitea one only
//! `Authorization: token`. It must never be shipped in a Warren binary and it
//! is not a forge: no repositories, no permissions beyond "the token is a
//! known user", no markdown.

pub mod forge;
pub mod server;

pub use forge::{Dialect, Failure, Forge, Snapshot};
pub use server::FakeForge;

/// What can go wrong driving the fake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be opened.
    #[error("fake forge: listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A thread panicked while holding the state.
    #[error("fake forge: state poisoned")]
    Poisoned,
    /// A knob named a user the fake does not know.
    #[error("fake forge: no user {0:?}")]
    UnknownUser(String),
    /// A knob got a bad argument.
    #[error("fake forge: {0}")]
    Invalid(String),
}
