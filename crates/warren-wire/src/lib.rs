//! Warren's controller–agent protocol: versioned, size-limited [`Message`]s
//! over SSH (russh), with pinned ed25519 keys, whichever side dials.
//!
//! What this crate owns:
//!
//! - the [`Message`] set and its JSON encoding, including the typed agent
//!   [`Report`] and its [`Outcome`] both binaries share, with [`PROTOCOL_VERSION`]
//!   checked by the [`Connection::hello`] exchange;
//! - framing ([`write_message`], [`read_message`]): a 4-byte big-endian
//!   length and a JSON payload of at most [`MAX_FRAME`] bytes; a bad frame
//!   is a typed [`WireError`] that ends the one session it came from;
//! - the SSH transport: [`listen`] (the SSH server: its identity is the host
//!   key; clients get in only by public-key auth with a key the `authorize`
//!   callback names) and [`dial`] (the SSH client: authenticates with its
//!   identity, accepts only the pinned server key). Either end may be the
//!   controller or the agent; after `Hello` a [`Connection`] behaves the same;
//! - keepalives (a `Ping` every [`Options::keepalive`], answered
//!   automatically; a peer silent for `keepalive * keepalive_max` is dead)
//!   and reconnect delays ([`Backoff`], [`dial_with_backoff`]).
//!
//! What it must not do: interpret what it carries. It never verifies a plan
//! (the agent does, with `warren_plan::verify`), applies anything, reads key
//! files or configuration (keys and the authorization decision come in as
//! arguments), or decides policy such as which host may receive which plan.
//! It never logs or sends private keys; no password, RSA key, certificate,
//! shell, exec or forwarding is ever accepted.

#![warn(missing_docs)]

mod backoff;
mod conn;
mod error;
mod frame;
mod keys;
mod message;
mod report;
mod ssh;

pub use backoff::{dial_with_backoff, Backoff};
pub use conn::{Connection, MessageReceiver, MessageSender, Options, Side};
pub use error::WireError;
pub use frame::{decode_payload, encode_frame, read_message, write_message, MAX_FRAME};
pub use keys::{key_base64, openssh_public_key, parse_public_key};
pub use message::{Message, MESSAGE_TYPES, PROTOCOL_VERSION};
pub use report::{AgentStatus, Outcome, Report, Running, STATUS_HEARTBEAT_SECS};
pub use ssh::{dial, dial_with, listen, listen_with, Authorize, Listener};
