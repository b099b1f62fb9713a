//! `status.json` and what `warren-controller status` makes of it. The
//! service writes a [`StatusSnapshot`] after every change (see
//! [`super::store::Store::snapshot`]); `status` and `client-config` read it
//! back, because they must not open the database the service holds.
//!
//! The host state (in sync, pending, drifted, failed, unreachable) is decided
//! here, by [`HostState::of`], from typed records only: this module reads one
//! file and the caller's clock value, and must not touch the store, the
//! network or stdout.

use super::store::{lenient_report, CommitOutcome, CommitRecord, HostRecord};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use warren_plan::{Finding, Severity};
use warren_wire::Report;

/// Commit records kept in the snapshot, newest first.
pub const HISTORY: usize = 20;

/// Where the service writes its snapshot in its state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

/// `status.json`: the store as the service last saw it, without the plans.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusSnapshot {
    /// Unix seconds when it was written.
    #[serde(default)]
    pub at: u64,
    /// The last commit that compiled: what agents should run.
    #[serde(default)]
    pub good_commit: Option<String>,
    /// The last commit processed, good or not.
    #[serde(default)]
    pub last_commit: Option<String>,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSnapshot>,
    /// The newest [`HISTORY`] commit records, newest first.
    #[serde(default)]
    pub history: Vec<CommitRecord>,
}

/// One host in `status.json`: its [`HostRecord`] with the desired plan
/// reduced to its serial, commit and number of peers awaiting keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSnapshot {
    pub serial: u64,
    pub desired_serial: Option<u64>,
    /// The commit the desired plan was compiled from.
    pub plan_commit: Option<String>,
    /// Peers in the desired plan whose keys the agents have not reported yet.
    pub pending_keys: usize,
    pub applied_serial: Option<u64>,
    pub applied_commit: Option<String>,
    pub confirmed_serial: Option<u64>,
    pub identity: Option<String>,
    pub wireguard: BTreeMap<String, String>,
    pub connected: bool,
    pub last_seen: Option<u64>,
    #[serde(deserialize_with = "lenient_report")]
    pub last_report: Option<Report>,
    pub drift: Vec<String>,
    pub error: Option<String>,
    /// The agent's doctor findings that are not ok (bounded).
    pub findings: Vec<Finding>,
}

/// Longest agent-supplied string kept in the snapshot (characters).
pub const MAX_TEXT: usize = 512;
/// Most drifted resources (and report changes) kept in the snapshot.
pub const MAX_ITEMS: usize = 64;

/// `s` cut to [`MAX_TEXT`] characters, marked when cut: agents write these
/// strings, and one must not blow up every `status.json` rewrite.
fn bounded(s: String) -> String {
    if s.chars().count() <= MAX_TEXT {
        return s;
    }
    let mut cut: String = s.chars().take(MAX_TEXT).collect();
    cut.push('…');
    cut
}

fn bounded_list(v: Vec<String>) -> Vec<String> {
    let n = v.len();
    let mut out: Vec<String> = v.into_iter().take(MAX_ITEMS).map(bounded).collect();
    if n > MAX_ITEMS {
        out.push(format!("… and {} more", n - MAX_ITEMS));
    }
    out
}

/// An agent's report, bounded like the rest of the snapshot.
fn bounded_report(mut r: Report) -> Report {
    r.message = bounded(r.message);
    r.commit = r.commit.map(bounded);
    r.changes.truncate(MAX_ITEMS);
    for c in &mut r.changes {
        c.resource = bounded(std::mem::take(&mut c.resource));
        c.expected = bounded(std::mem::take(&mut c.expected));
        c.actual = bounded(std::mem::take(&mut c.actual));
    }
    r
}

/// The agent's findings, bounded like the rest of the snapshot.
fn bounded_findings(v: Vec<Finding>) -> Vec<Finding> {
    v.into_iter()
        .take(MAX_ITEMS)
        .map(|f| Finding {
            check: bounded(f.check),
            severity: f.severity,
            what: bounded(f.what),
            why: bounded(f.why),
            fix: bounded(f.fix),
        })
        .collect()
}

/// `s` with every control character escaped (`\u{1b}`, `\n`), so that an
/// agent's string cannot drive the operator's terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl From<HostRecord> for HostSnapshot {
    fn from(h: HostRecord) -> Self {
        HostSnapshot {
            serial: h.serial,
            desired_serial: h.desired.as_ref().map(|d| d.envelope.serial),
            pending_keys: h.desired.as_ref().map_or(0, |d| d.plan.pending_keys().len()),
            plan_commit: h.desired.map(|d| d.envelope.commit),
            applied_serial: h.applied_serial,
            applied_commit: h.applied_commit,
            confirmed_serial: h.confirmed_serial,
            identity: h.identity,
            wireguard: h.wireguard,
            connected: h.connected,
            last_seen: h.last_seen,
            last_report: h.last_report.map(bounded_report),
            drift: bounded_list(h.drift),
            error: h.error.map(bounded),
            findings: bounded_findings(h.findings),
        }
    }
}

impl StatusSnapshot {
    /// Parse `text`, read from `file` (named in the error).
    pub fn parse(text: &str, file: &Path) -> Result<StatusSnapshot> {
        serde_json::from_str(text).with_context(|| format!("{} is corrupt", file.display()))
    }

    /// The snapshot in `state_dir`, for `status`.
    pub fn read(state_dir: &Path) -> Result<StatusSnapshot> {
        let p = path(state_dir);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "no status at {} (has `warren-controller serve` run there?)",
                p.display()
            )
        })?;
        Self::parse(&text, &p)
    }

    /// Every WireGuard key agents reported: (host, interface, key).
    pub fn wireguard_keys(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.hosts.iter().flat_map(|(host, h)| {
            h.wireguard
                .iter()
                .map(move |(iface, key)| (host.as_str(), iface.as_str(), key.as_str()))
        })
    }
}

/// The WireGuard keys agents reported to the service in `state_dir`, for
/// `client-config --state-dir`: (host, interface, key).
pub fn reported_wireguard_keys(state_dir: &Path) -> Result<Vec<(String, String, String)>> {
    let p = path(state_dir);
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let snap = StatusSnapshot::parse(&text, &p)?;
    Ok(snap
        .wireguard_keys()
        .map(|(h, i, k)| (h.to_string(), i.to_string(), k.to_string()))
        .collect())
}

/// Where a host stands, in the order the checks apply: an error wins over
/// everything, then being unreachable, then drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// The last plan was rejected, failed or rolled back (or the service
    /// recorded another error for the host).
    Failed,
    /// No agent session is up.
    Unreachable,
    /// The agent reports live state that differs from its plan.
    Drifted,
    /// Running the serial of its current desired plan, and no peer in that
    /// plan awaits a key.
    InSync,
    /// A newer plan is on its way, or peer keys are still being exchanged.
    Pending,
}

impl HostState {
    /// Decide a host's state from its snapshot.
    pub fn of(h: &HostSnapshot) -> HostState {
        if h.error.is_some() {
            HostState::Failed
        } else if !h.connected {
            HostState::Unreachable
        } else if !h.drift.is_empty() {
            HostState::Drifted
        } else if is_synced(h) {
            HostState::InSync
        } else {
            HostState::Pending
        }
    }

    /// The name in `status`'s text output.
    pub fn label(self) -> &'static str {
        match self {
            HostState::Failed => "failed",
            HostState::Unreachable => "unreachable",
            HostState::Drifted => "drifted",
            HostState::InSync => "in sync",
            HostState::Pending => "pending",
        }
    }
}

/// Running the serial of its current desired plan. A host whose plan a newer
/// commit did not change is in sync at that commit too. A plan still
/// awaiting peer keys is not the whole desired state yet.
fn is_synced(h: &HostSnapshot) -> bool {
    h.applied_serial.is_some() && h.applied_serial == h.desired_serial && h.pending_keys == 0
}

/// What `status --format json` prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusView {
    /// The last good commit (`""` if none yet).
    pub desired_commit: String,
    /// The newest commit's record, refused or not.
    pub last_commit: Option<CommitRecord>,
    pub hosts: BTreeMap<String, HostView>,
}

/// One host in [`StatusView`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub state: HostState,
    pub desired_commit: String,
    /// The desired commit when in sync (the plan may come from an older
    /// commit that the newer ones left unchanged), else the commit the agent
    /// last reported applied (`""` if none).
    pub applied_commit: String,
    pub applied_serial: Option<u64>,
    pub desired_serial: Option<u64>,
    pub plan_commit: Option<String>,
    pub last_seen: Option<u64>,
    pub drift: Vec<String>,
    pub error: Option<String>,
    pub awaiting_keys: bool,
    /// What the agent's `doctor` found that is not ok: warnings, and
    /// findings whose severity is `breaks` (traffic is dropped whatever the
    /// state says). The state stays what the plan's rollout says.
    pub findings: Vec<Finding>,
}

impl HostView {
    fn new(h: &HostSnapshot, good: &str) -> HostView {
        let applied = if is_synced(h) {
            good.to_string()
        } else {
            h.applied_commit.clone().unwrap_or_default()
        };
        HostView {
            state: HostState::of(h),
            desired_commit: good.to_string(),
            applied_commit: applied,
            applied_serial: h.applied_serial,
            desired_serial: h.desired_serial,
            plan_commit: h.plan_commit.clone(),
            last_seen: h.last_seen,
            drift: h.drift.clone(),
            error: h.error.clone(),
            awaiting_keys: h.pending_keys > 0,
            findings: h.findings.clone(),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

impl StatusView {
    /// Read the snapshot in `state_dir` and decide every host's state.
    pub fn load(state_dir: &Path) -> Result<StatusView> {
        Ok(StatusView::from(&StatusSnapshot::read(state_dir)?))
    }

    /// The text table of `status`; `now` (Unix seconds) ages `last seen`.
    pub fn render_text(&self, now: u64) -> String {
        let mut out = String::new();
        let good = &self.desired_commit;
        let desired = if good.is_empty() {
            "(none)".into()
        } else {
            short(good)
        };
        let _ = writeln!(out, "desired commit {desired}");
        if let Some(last) = self.last_commit.as_ref().filter(|c| !c.outcome.is_accepted()) {
            let (commit, outcome) = (short(&last.commit), last.outcome.label());
            // A key problem holds back only some hosts: the commit is in force.
            let verdict = match last.outcome {
                CommitOutcome::KeyMismatch => "is in force, but hosts are held back",
                CommitOutcome::Compiled
                | CommitOutcome::Unchanged
                | CommitOutcome::Invalid
                | CommitOutcome::Error => "was refused",
            };
            let _ = writeln!(out, "newest commit {commit} {verdict} ({outcome}):");
            for d in &last.diagnostics {
                let _ = writeln!(out, "  {}", d.replace('\n', "\n  "));
            }
        }
        let (host, state, applied, seen) = ("host", "state", "applied", "last seen");
        let _ = writeln!(
            out,
            "{host:<12} {state:<12} {applied:<14} {seen:<10} drift / error"
        );
        for (name, h) in &self.hosts {
            let seen = h
                .last_seen
                .map_or("never".to_string(), |t| format!("{}s ago", now.saturating_sub(t)));
            let applied = match h.applied_serial {
                Some(n) => format!("{} #{n}", printable(&short(&h.applied_commit))),
                None => "-".to_string(),
            };
            let extra = printable(&h.error.clone().unwrap_or_else(|| h.drift.join("; ")));
            let count = |sev| h.findings.iter().filter(|f| f.severity == sev).count();
            let (breaks, warns) = (count(Severity::Breaks), count(Severity::Warn));
            // The state is the rollout's; the doctor's findings are added
            // to it, never hidden behind "in sync".
            let mut state = h.state.label().to_string();
            if breaks > 0 {
                state.push_str(&format!(", {breaks} breaking"));
            }
            if warns > 0 {
                state.push_str(&format!(", {warns} warning{}", plural(warns)));
            }
            let _ = writeln!(out, "{name:<12} {state:<12} {applied:<14} {seen:<10} {extra}");
            for f in &h.findings {
                let mark = match f.severity {
                    Severity::Breaks => "BREAKS",
                    Severity::Warn | Severity::Ok => "warn",
                };
                let _ = writeln!(out, "  {mark} {}: {}", printable(&f.check), printable(&f.what));
                if !f.fix.is_empty() {
                    let _ = writeln!(out, "    fix: {}", printable(&f.fix));
                }
            }
        }
        out
    }
}

impl From<&StatusSnapshot> for StatusView {
    fn from(s: &StatusSnapshot) -> Self {
        let good = s.good_commit.clone().unwrap_or_default();
        StatusView {
            hosts: s
                .hosts
                .iter()
                .map(|(name, h)| (name.clone(), HostView::new(h, &good)))
                .collect(),
            desired_commit: good,
            last_commit: s.history.first().cloned(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::serve::store::CommitOutcome;

    /// Connected, running its desired serial, nothing wrong.
    fn synced() -> HostSnapshot {
        HostSnapshot {
            desired_serial: Some(2),
            plan_commit: Some("c1".into()),
            applied_serial: Some(2),
            applied_commit: Some("c1".into()),
            connected: true,
            last_seen: Some(95),
            ..HostSnapshot::default()
        }
    }

    #[test]
    fn in_sync_means_running_the_desired_serial_with_all_keys() {
        assert_eq!(HostState::of(&synced()), HostState::InSync);
    }

    #[test]
    fn pending_while_a_newer_plan_or_a_key_is_on_its_way() {
        let newer = HostSnapshot {
            desired_serial: Some(3),
            ..synced()
        };
        assert_eq!(HostState::of(&newer), HostState::Pending);
        let never_applied = HostSnapshot {
            applied_serial: None,
            desired_serial: None,
            ..synced()
        };
        assert_eq!(
            HostState::of(&never_applied),
            HostState::Pending,
            "no plan yet is not in sync"
        );
        let awaiting = HostSnapshot {
            pending_keys: 1,
            ..synced()
        };
        assert_eq!(HostState::of(&awaiting), HostState::Pending);
    }

    #[test]
    fn drift_unreachable_and_failed_take_precedence_in_that_order() {
        let drifted = HostSnapshot {
            drift: vec!["table ip warren".into()],
            ..synced()
        };
        assert_eq!(HostState::of(&drifted), HostState::Drifted);
        let unreachable = HostSnapshot {
            connected: false,
            ..drifted.clone()
        };
        assert_eq!(HostState::of(&unreachable), HostState::Unreachable);
        let failed = HostSnapshot {
            error: Some("rolled back: no handshake".into()),
            ..unreachable
        };
        assert_eq!(HostState::of(&failed), HostState::Failed);
    }

    fn snapshot() -> StatusSnapshot {
        let refused = CommitRecord {
            commit: "b24feab21c8b0000".into(),
            summary: "s".into(),
            at: 1,
            outcome: CommitOutcome::KeyMismatch,
            diagnostics: vec!["first\nsecond".into()],
            pushed: BTreeMap::new(),
        };
        let behind = HostSnapshot {
            desired_serial: Some(3),
            applied_commit: Some("c0aaaaaaaaaaaaaa".into()),
            drift: vec!["a".into(), "b".into()],
            last_seen: None,
            ..synced()
        };
        StatusSnapshot {
            at: 100,
            good_commit: Some("747ca24cd5fc1111".into()),
            last_commit: Some("b24feab21c8b0000".into()),
            hosts: [("gateway".to_string(), synced()), ("router".to_string(), behind)].into(),
            history: vec![refused],
        }
    }

    #[test]
    fn text_output_is_the_table_it_always_was() {
        let text = StatusView::from(&snapshot()).render_text(100);
        let want = "desired commit 747ca24cd5fc
newest commit b24feab21c8b is in force, but hosts are held back (key-mismatch):
  first
  second
host         state        applied        last seen  drift / error
gateway      in sync      747ca24cd5fc #2 5s ago     
router       drifted      c0aaaaaaaaaa #2 never      a; b
";
        assert_eq!(text, want);
        let empty = StatusView::from(&StatusSnapshot::default()).render_text(0);
        assert_eq!(
            empty,
            "desired commit (none)\nhost         state        applied        last seen  drift / error\n"
        );
    }

    #[test]
    fn findings_are_shown_under_the_host_and_never_hidden_behind_in_sync() {
        let finding = |check: &str, severity, what: &str, fix: &str| Finding {
            check: check.into(),
            severity,
            what: what.into(),
            why: "w".into(),
            fix: fix.into(),
        };
        let sick = HostSnapshot {
            findings: vec![
                finding(
                    "wan-handshake",
                    Severity::Breaks,
                    "no handshake on wg0",
                    "unblock udp/51820",
                ),
                finding("conntrack", Severity::Warn, "80%", ""),
            ],
            ..synced()
        };
        assert_eq!(
            HostState::of(&sick),
            HostState::InSync,
            "the rollout's state stays"
        );
        let s = StatusSnapshot {
            good_commit: Some("c1".into()),
            hosts: [("router".to_string(), sick)].into(),
            ..StatusSnapshot::default()
        };
        let view = StatusView::from(&s);
        assert_eq!(
            view.render_text(100),
            "desired commit c1
host         state        applied        last seen  drift / error
router       in sync, 1 breaking, 1 warning c1 #2          5s ago     
  BREAKS wan-handshake: no handshake on wg0
    fix: unblock udp/51820
  warn conntrack: 80%
"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["hosts"]["router"]["state"], "in_sync");
        assert_eq!(json["hosts"]["router"]["findings"][0]["severity"], "breaks");
        assert_eq!(json["hosts"]["router"]["findings"][1]["check"], "conntrack");
    }

    #[test]
    fn json_values_are_snake_case() {
        let v = serde_json::to_value(StatusView::from(&snapshot())).unwrap();
        assert_eq!(v["hosts"]["gateway"]["state"], "in_sync");
        assert_eq!(v["hosts"]["gateway"]["applied_commit"], "747ca24cd5fc1111");
        assert_eq!(v["hosts"]["router"]["state"], "drifted");
        assert_eq!(v["hosts"]["router"]["applied_commit"], "c0aaaaaaaaaaaaaa");
        assert_eq!(v["last_commit"]["outcome"], "key_mismatch");
        assert_eq!(v["desired_commit"], "747ca24cd5fc1111");
    }

    #[test]
    fn a_snapshot_written_before_the_typed_one_still_reads() {
        let old = r#"{"at": 7, "good_commit": "c1", "last_commit": "c2",
            "hosts": {"router": {"serial": 2, "desired": null, "applied_serial": 2,
                "applied_commit": "c1", "confirmed_serial": 2, "identity": null,
                "wireguard": {"wg0": "KEY"}, "connected": true, "last_seen": 5,
                "last_report": {"outcome": "from the future"}, "drift": [], "error": null,
                "desired_serial": 2, "plan_commit": "c1", "pending_keys": 0}},
            "history": [{"commit": "c2", "summary": "s", "at": 6, "outcome": "key-mismatch",
                "diagnostics": [], "pushed": {}}]}"#;
        let s = StatusSnapshot::parse(old, Path::new("status.json")).unwrap();
        let keys: Vec<_> = s.wireguard_keys().collect();
        assert_eq!(keys, [("router", "wg0", "KEY")]);
        let view = StatusView::from(&s);
        assert_eq!(view.hosts["router"].state, HostState::InSync);
        assert_eq!(view.last_commit.unwrap().outcome, CommitOutcome::KeyMismatch);
    }

    #[test]
    fn agent_strings_are_escaped_in_text_and_bounded_in_the_snapshot() {
        let hostile = HostRecord {
            error: Some(format!("failed: \x1b]0;pwned\x07\x1b[2J{}", "x".repeat(100_000))),
            drift: (0..1000).map(|i| format!("r{i}\r")).collect(),
            applied_serial: Some(1),
            applied_commit: Some("\x1b[31mred".into()),
            connected: true,
            ..HostRecord::default()
        };
        let snap = HostSnapshot::from(hostile);
        assert!(snap.error.as_ref().unwrap().chars().count() <= MAX_TEXT + 1);
        assert_eq!(snap.drift.len(), MAX_ITEMS + 1);
        assert_eq!(snap.drift.last().unwrap(), "… and 936 more");
        let s = StatusSnapshot {
            hosts: [("router".to_string(), snap)].into(),
            ..StatusSnapshot::default()
        };
        let text = StatusView::from(&s).render_text(0);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("failed: \\u{1b}]0;pwned\\u{7}"), "{text}");
        assert!(text.contains("\\u{1b}[31mred #1"), "{text}");
        assert_eq!(text.lines().count(), 3, "one line per host: {text}");
    }
}
