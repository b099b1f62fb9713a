//! What an agent tells the controller about its host: one [`Report`] per
//! event, with a typed [`Outcome`]. Both binaries use these types, so a new
//! outcome is a compile error wherever it is not handled.

use serde::{Deserialize, Serialize};
use warren_plan::{Change, Finding};

/// What happened on the agent. On the wire and in files it is the
/// `snake_case` name (`"rolled_back"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A plan was applied and changed something.
    Applied,
    /// A plan was accepted and the host already matched it.
    Unchanged,
    /// A plan was refused before anything was touched (signature, host,
    /// serial, format).
    Rejected,
    /// Applying a plan failed part-way.
    Failed,
    /// An unconfirmed plan was undone and the previous state restored.
    RolledBack,
    /// Live state no longer matches the applied plan.
    Drift,
    /// Drift was repaired by re-applying the plan.
    Healed,
    /// Live state matches the applied plan again (after drift).
    InSync,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::RolledBack,
        Outcome::Drift,
        Outcome::Healed,
        Outcome::InSync,
    ];

    /// The name used on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Drift => "drift",
            Outcome::Healed => "healed",
            Outcome::InSync => "in_sync",
        }
    }

    /// The agent is now running the reported plan (so the controller may
    /// confirm it).
    pub fn is_apply_success(self) -> bool {
        match self {
            Outcome::Applied | Outcome::Unchanged => true,
            Outcome::Rejected
            | Outcome::Failed
            | Outcome::RolledBack
            | Outcome::Drift
            | Outcome::Healed
            | Outcome::InSync => false,
        }
    }

    /// The reported plan is not running: a rollout must stop here.
    pub fn is_failure(self) -> bool {
        match self {
            Outcome::Rejected | Outcome::Failed | Outcome::RolledBack => true,
            Outcome::Applied | Outcome::Unchanged | Outcome::Drift | Outcome::Healed | Outcome::InSync => {
                false
            }
        }
    }
}

/// Agent -> controller: where the agent stands. Sent at the start of every
/// session, whenever it changes, and at least every [`STATUS_HEARTBEAT_SECS`]
/// (so "last seen" means "connected").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The highest plan serial the agent ever accepted (its replay floor: it
    /// refuses lower serials). A controller that lost its state resumes
    /// numbering above it.
    pub max_serial: Option<u64>,
    /// The plan the host runs now, if any.
    pub running: Option<Running>,
    /// What the agent's `doctor` found on the host (every check, ok ones
    /// included), as of its last run. Absent from older agents: none.
    #[serde(default)]
    pub findings: Vec<Finding>,
}

/// The plan an agent runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// Its serial.
    pub serial: u64,
    /// The commit it was compiled from.
    pub commit: String,
    /// The sha256 of the plan (`Envelope::plan_sha256`).
    pub plan_sha256: String,
    /// Whether the controller confirmed it (an unconfirmed plan is rolled
    /// back when its window passes).
    pub confirmed: bool,
}

/// Longest an agent stays silent: it sends [`AgentStatus`] at least this
/// often while connected.
pub const STATUS_HEARTBEAT_SECS: u64 = 15;

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event on an agent's host, sent to the controller and kept in the
/// agent's state directory until the controller acknowledges it
/// ([`crate::Message::Ack`] with its `seq`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The agent's sequence number for this report (its outbox order, 1 and
    /// up; 0 for a report that was never queued). The controller handles a
    /// report once per sequence number and acknowledges it, so delivery is
    /// at-least-once and handling idempotent.
    #[serde(default)]
    pub seq: u64,
    /// The reporting host.
    pub host: String,
    /// The serial of the plan the report is about, if any.
    pub serial: Option<u64>,
    /// The commit that plan was compiled from.
    pub commit: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// A one-line explanation for people.
    pub message: String,
    /// The operations applied, or the drift found.
    pub changes: Vec<Change>,
    /// Unix seconds on the agent's clock.
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_without_seq_reads_as_zero() {
        let r: Report = serde_json::from_str(
            r#"{"host":"h","serial":1,"commit":"c","outcome":"applied","message":"m","changes":[],"at":1}"#,
        )
        .unwrap();
        assert_eq!(r.seq, 0);
    }

    #[test]
    fn a_status_from_an_older_agent_has_no_findings_and_an_older_controller_ignores_them() {
        let old: AgentStatus = serde_json::from_str(r#"{"max_serial":3,"running":null}"#).unwrap();
        assert!(old.findings.is_empty());
        let new = AgentStatus {
            findings: vec![warren_plan::Finding {
                check: "clock".into(),
                severity: warren_plan::Severity::Warn,
                what: "w".into(),
                why: String::new(),
                fix: String::new(),
            }],
            ..old
        };
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains(r#""severity":"warn""#), "{json}");
        // What an older controller's type (no `findings`) makes of it.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Older {
            max_serial: Option<u64>,
            running: Option<Running>,
        }
        assert_eq!(serde_json::from_str::<Older>(&json).unwrap().max_serial, Some(3));
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
        }
        assert!(serde_json::from_str::<Outcome>("\"rolled back\"").is_err());
    }

    #[test]
    fn success_and_failure_are_disjoint() {
        for o in Outcome::ALL {
            assert!(!(o.is_apply_success() && o.is_failure()), "{o}");
        }
    }
}
