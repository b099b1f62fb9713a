//! What `warren-agent doctor` finds on a host: one [`Finding`] per check,
//! each with what it saw, why that breaks (or risks) the network, and the
//! exact fix. Agents send their findings to the controller, which shows
//! them in `status`. Plain data: checks are run by the agent.

use serde::{Deserialize, Serialize};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The check passed.
    Ok,
    /// Not broken, but worth knowing (a risk, or something Warren handles).
    Warn,
    /// Something would break traffic.
    Breaks,
}

impl Severity {
    /// The severity's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Breaks => "breaks",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check's stable name (`wireguard`, `foreign-firewall`, `ip-forward`).
    pub check: String,
    /// How much it matters.
    pub severity: Severity,
    /// What was found.
    pub what: String,
    /// Why it breaks (or risks) the network; empty when it is fine.
    pub why: String,
    /// The exact fix; empty when there is nothing to do.
    pub fix: String,
}
