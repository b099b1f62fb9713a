//! The one error type of the crate.

use std::time::Duration;

/// Everything that can go wrong on the wire. Decoding errors
/// ([`FrameTooLarge`](WireError::FrameTooLarge) to
/// [`MalformedMessage`](WireError::MalformedMessage)) end the session that
/// produced them and nothing else.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame's length prefix (or a message to send) is above [`crate::MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The frame's (or message's) size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes the frame announced.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The payload is not JSON.
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    /// The payload is JSON but names a message type this side does not know.
    #[error("unknown message type {0:?}")]
    UnknownMessage(String),
    /// A known message type with missing or ill-typed fields.
    #[error("malformed {kind} message: {detail}")]
    MalformedMessage {
        /// The message type.
        kind: String,
        /// What was wrong, from the decoder.
        detail: String,
    },
    /// A message could not be encoded (should not happen with Warren's types).
    #[error("cannot encode message: {0}")]
    Encode(String),

    /// The first message was a `Hello` with another protocol version.
    #[error("peer speaks protocol version {theirs}, this side speaks {ours}")]
    VersionMismatch {
        /// [`crate::PROTOCOL_VERSION`].
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer authenticated with the key of one host and said `Hello` as another.
    #[error("peer is authorized as {authorized:?} but said hello as {claimed:?}")]
    WrongHost {
        /// The host the key is authorized for.
        authorized: String,
        /// The host named in `Hello`.
        claimed: String,
    },
    /// The protocol was not followed (e.g. the first message was not `Hello`).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer said `Bye` where another message was required.
    #[error("peer closed the session: {0}")]
    PeerBye(String),

    /// The SSH server's host key is not the pinned one.
    #[error("server host key {got} is not the pinned key {expected}")]
    HostKeyMismatch {
        /// The pinned key.
        expected: String,
        /// The key the server showed.
        got: String,
    },
    /// The SSH server offered a certificate or a key that is not ed25519.
    #[error("server host key is not a plain ed25519 key ({0})")]
    UnsupportedHostKey(String),
    /// The SSH server refused our identity key.
    #[error("the server refused our key")]
    AuthRefused,
    /// A key string could not be parsed.
    #[error("bad key: {0}")]
    BadKey(String),
    /// An SSH protocol error from russh.
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
    /// A socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    /// Nothing was received from the peer for this long: presumed dead.
    #[error("peer silent for {0:?}; presumed dead")]
    PeerTimeout(Duration),
    /// A step did not complete in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The underlying SSH session ended without a clean close (peer killed,
    /// network cut, keepalive failure).
    #[error("connection lost")]
    ConnectionLost,
    /// The session is over; sending is no longer possible.
    #[error("session closed: {0}")]
    Closed(String),
}

impl WireError {
    /// Whether this error is the peer's fault in the byte stream (bad frame or
    /// message), as opposed to the transport going away.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            WireError::FrameTooLarge { .. }
                | WireError::Truncated { .. }
                | WireError::InvalidJson(_)
                | WireError::UnknownMessage(_)
                | WireError::MalformedMessage { .. }
                | WireError::Protocol(_)
        )
    }
}
