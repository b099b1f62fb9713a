//! The messages controller and agents exchange, whichever side dialed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the message protocol, carried in [`Message::Hello`]. Peers with
/// different versions refuse each other (with a `Bye` giving the reason).
///
/// Compatible changes (a new field with a `#[serde(default)]`) keep the
/// version; a new message type or a changed meaning bumps it, because an
/// unknown message type is a protocol error.
pub const PROTOCOL_VERSION: u32 = 2;

/// One message. On the wire it is JSON, adjacently tagged:
/// `{"type":"confirm","body":{"serial":7}}`.
///
/// Direction is a convention of the protocol, not of the transport: the agent
/// sends `Keys`, `Status` and `Report`, the controller sends `Plan`,
/// `Confirm` and `Ack`, either sends `Hello` (first, both ways), `Ping`/`Pong`
/// and `Bye`.
///
/// Delivery is at-least-once and handling idempotent: the controller re-sends
/// a plan or a confirm until the agent's `Status` shows it running or
/// confirmed (a plan whose serial the agent already runs is acknowledged, not
/// refused), and the agent re-sends a report until the controller `Ack`s its
/// `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// First message each way: the protocol version and the sender's host name.
    Hello {
        /// The sender's [`PROTOCOL_VERSION`].
        version: u32,
        /// The sender's host name.
        host: String,
    },
    /// Agent -> controller: its identity (`ssh-ed25519 …`) and one WireGuard
    /// public key per interface.
    Keys {
        /// The agent's identity as an OpenSSH public key line.
        identity: String,
        /// Interface name to WireGuard public key (base64).
        wireguard: BTreeMap<String, String>,
    },
    /// Agent -> controller: what happened on its host.
    Report(Box<crate::Report>),
    /// Agent -> controller: where it stands (replay floor, running plan);
    /// also the heartbeat.
    Status(crate::AgentStatus),
    /// Controller -> agent: the reports up to this sequence number are
    /// recorded; the agent may forget them.
    Ack {
        /// The highest [`crate::Report::seq`] recorded.
        seq: u64,
    },
    /// Controller -> agent: a signed plan (the agent verifies it; the wire does not).
    Plan(Box<warren_plan::SignedPlan>),
    /// Controller -> agent: the plan with this serial is confirmed.
    Confirm {
        /// The confirmed plan's serial.
        serial: u64,
    },
    /// Liveness probe; the connection answers it itself (see [`crate::Connection`]).
    Ping {
        /// A counter the `Pong` echoes.
        n: u64,
    },
    /// Answer to `Ping`.
    Pong {
        /// The `Ping`'s counter.
        n: u64,
    },
    /// The sender is closing the session, and why.
    Bye {
        /// Why, for the peer's log.
        reason: String,
    },
}

/// Every message type name this version knows (the `type` tag).
pub const MESSAGE_TYPES: &[&str] = &[
    "hello", "keys", "report", "status", "ack", "plan", "confirm", "ping", "pong", "bye",
];

impl Message {
    /// The `type` tag of this message on the wire (for logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Keys { .. } => "keys",
            Message::Report(_) => "report",
            Message::Status(_) => "status",
            Message::Ack { .. } => "ack",
            Message::Plan(_) => "plan",
            Message::Confirm { .. } => "confirm",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::Bye { .. } => "bye",
        }
    }

    /// Our `Hello`.
    pub fn hello(host: &str) -> Self {
        Message::Hello {
            version: PROTOCOL_VERSION,
            host: host.to_string(),
        }
    }
}
