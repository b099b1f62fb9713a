//! The rollout rules, without I/O: which host gets its plan next, which
//! message confirms it, when a rollout stops, and how sessions, statuses and
//! reports change a host's record.
//!
//! [`Rollout`] is a state machine in the shape of firezone's `GatewayState`:
//! the service feeds it inputs (`handle_*`: a commit compiled, a session up
//! or down, a status, a report, a `sync` request) together with the host
//! records it loaded and the time, and then drains [`Rollout::poll_output`]
//! and performs each [`Output`] in order: a message to send, a record update
//! to persist, the queue to save, a plan to re-sign, a metric. It must not
//! touch redb, channels, tokio or a clock; that is [`super::Service`]'s job.
//!
//! The rules (docs/controller.md, "Rollout and confirmation"):
//! - Plans go out one host at a time in rollout order (the gateway last);
//!   the next host waits until the current one's plan is *confirmed*: its
//!   agent's status shows the desired serial running and confirmed. A report
//!   of an older serial, a recompile or a reconnect never moves it on.
//! - A recompile merges into the rollout in progress (in rollout order), it
//!   does not replace it; the queue is saved, so a restart resumes it.
//! - A current host that is not connected holds the rollout until it is.
//! - A `rejected`, `failed` or `rolled_back` report of the current host's
//!   desired serial stops (halts) the rollout: the hosts behind it keep their
//!   old plan until a new commit or a `sync` of that host.
//! - A status showing the desired serial running unconfirmed gets a
//!   `Confirm` (again: a lost confirm costs one heartbeat); one showing an
//!   older serial gets the plan again (if it is the host's turn and it shows
//!   no error); one showing a replay floor at or above the desired serial
//!   gets the plan re-signed above it (the controller lost its state).
//! - A report is handled at most once per (host, seq) and acknowledged after
//!   it is recorded, duplicates too.
//! - Agents that never send a status (before the heartbeat existed) are
//!   confirmed on their `applied` report of the desired serial, as before.

use super::store::HostRecord;
use super::Outgoing;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use warren_wire::{AgentStatus, Outcome, Report};

/// Host records by name, as loaded from the store. The machine applies its
/// own [`HostUpdate`]s to it, so later decisions in the same call see them.
pub type Hosts = BTreeMap<String, HostRecord>;

/// A change to one host's record; [`HostUpdate::apply`] is the one
/// definition, used by the machine on its view and by the service on the
/// store.
#[derive(Clone, Debug, PartialEq)]
pub enum HostUpdate {
    /// A session came up at this time (Unix seconds).
    Connected { at: u64 },
    /// The host's session went down.
    Disconnected,
    /// The agent reported, received at this time (Unix seconds).
    Reported { report: Box<Report>, at: u64 },
    /// A message that changes nothing else arrived (a duplicate report).
    Seen { at: u64 },
    /// The agent's status (heartbeat) arrived at this time.
    Status { status: AgentStatus, at: u64 },
    /// The controller confirmed this serial (agents without a status only).
    Confirmed(u64),
}

impl HostUpdate {
    pub fn apply(&self, h: &mut HostRecord) {
        match self {
            HostUpdate::Connected { at } => {
                h.connected = true;
                h.last_seen = Some(*at);
            }
            HostUpdate::Disconnected => h.connected = false,
            HostUpdate::Reported { report, at } => {
                apply_report(h, report, *at);
                h.last_seq = h.last_seq.max(report.seq);
            }
            HostUpdate::Seen { at } => h.last_seen = Some(*at),
            HostUpdate::Status { status, at } => apply_status(h, status, *at),
            HostUpdate::Confirmed(serial) => h.confirmed_serial = Some(*serial),
        }
    }
}

/// How a report changes the host's record.
fn apply_report(h: &mut HostRecord, r: &Report, at: u64) {
    h.last_seen = Some(at);
    h.last_report = Some(r.clone());
    match r.outcome {
        Outcome::Applied | Outcome::Unchanged => {
            h.applied_serial = r.serial;
            h.applied_commit = r.commit.clone();
            h.drift.clear();
            h.error = None;
        }
        Outcome::Healed | Outcome::InSync => {
            h.drift.clear();
            h.error = None;
        }
        Outcome::Drift => h.drift = r.changes.iter().map(|c| c.resource.clone()).collect(),
        Outcome::Rejected | Outcome::Failed => h.error = Some(format!("{}: {}", r.outcome, r.message)),
        Outcome::RolledBack => {
            h.applied_serial = r.serial;
            h.applied_commit = r.commit.clone();
            h.error = Some(format!("rolled back: {}", r.message));
        }
    }
}

/// How a status changes the host's record: it is the truth about what runs
/// (whatever reports were lost), and its replay floor lifts the serial
/// counter so the next plan is above it.
fn apply_status(h: &mut HostRecord, s: &AgentStatus, at: u64) {
    h.last_seen = Some(at);
    h.findings = s
        .findings
        .iter()
        .filter(|f| f.severity != warren_plan::Severity::Ok)
        .cloned()
        .collect();
    if let Some(floor) = s.max_serial {
        h.serial = h.serial.max(floor);
    }
    if let Some(r) = &s.running {
        h.applied_serial = Some(r.serial);
        h.applied_commit = Some(r.commit.clone());
        if r.confirmed {
            h.confirmed_serial = Some(r.serial);
        } else if h.confirmed_serial >= Some(r.serial) {
            h.confirmed_serial = None;
        }
    }
}

/// A metric the service should record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// An agent reported a plan applied (`warren_reconciles_total{applied}`).
    AgentApplied,
    /// An agent reported a plan rejected, failed or rolled back.
    AgentFailed,
    /// From the rollout's commit arriving to its plan applied on a host.
    PushToApplied(Duration),
    /// Resources the agents currently report drifted, over all hosts.
    DriftedResources(u64),
    /// Agent sessions up.
    ConnectedAgents(u64),
}

/// What the service must do, in this order.
#[derive(Debug)]
pub enum Output {
    /// Send `msg` on `host`'s session (the machine only asks for connected
    /// hosts).
    Send {
        host: String,
        msg: Outgoing,
    },
    /// Apply `update` to `host`'s stored record.
    Persist {
        host: String,
        update: HostUpdate,
    },
    /// Save the rollout (see [`Saved`]) so a restart resumes it.
    Save(Saved),
    /// Sign `host`'s desired plan again with its next serial (its agent's
    /// replay floor is at or above the desired one), store it, then call
    /// [`Rollout::handle_resigned`].
    Resign {
        host: String,
    },
    Metric(Metric),
}

/// The part of a rollout that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Saved {
    /// Hosts whose plan is not confirmed yet, the current one first.
    pub queue: Vec<String>,
    /// The current host's plan failed: nothing moves until a new commit or a
    /// `sync` of that host.
    pub halted: bool,
}

/// One agent session.
#[derive(Debug)]
struct Session {
    id: u64,
    /// It sent a status: only a status confirms its plans.
    speaks_status: bool,
    /// The serial the rollout last sent it on this session: a recompile or
    /// a report does not send it again (a status showing it missing does).
    plan_sent: Option<u64>,
}

/// The rollout in progress and who is connected.
#[derive(Debug, Default)]
pub struct Rollout {
    /// Hosts waiting for their turn; the front one is being rolled out.
    queue: VecDeque<String>,
    halted: bool,
    /// The live session of each connected host.
    sessions: BTreeMap<String, Session>,
    /// When the commit being rolled out arrived (push-to-applied).
    started: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl Rollout {
    /// The rollout saved before a restart (no session is up yet: each host
    /// gets its plan when it connects and it is its turn).
    pub fn resume(saved: Saved) -> Rollout {
        Rollout {
            queue: saved.queue.into(),
            halted: saved.halted,
            ..Rollout::default()
        }
    }

    /// The next thing to do, in the order the inputs produced them.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A commit compiled: `changed` are the hosts that got a new plan
    /// (already in `hosts`); `order` is every host in rollout order. Hosts of
    /// the rollout in progress that are not confirmed yet keep their place.
    pub fn handle_compiled(&mut self, changed: &[String], order: &[String], hosts: &Hosts, now: Instant) {
        if changed.is_empty() {
            return;
        }
        let before = self.saved();
        self.started = Some(now);
        let keep: BTreeSet<&String> = self.queue.iter().chain(changed).collect();
        self.queue = order.iter().filter(|h| keep.contains(h)).cloned().collect();
        self.halted = false;
        self.advance(hosts);
        self.save_if_changed(before);
    }

    /// A session `id` for `host` came up (replacing any older one).
    pub fn handle_session_up(&mut self, host: &str, id: u64, hosts: &mut Hosts, at: u64) {
        let session = Session {
            id,
            speaks_status: false,
            plan_sent: None,
        };
        self.sessions.insert(host.to_string(), session);
        self.metric(Metric::ConnectedAgents(self.sessions.len() as u64));
        let rec = self.update(hosts, host, HostUpdate::Connected { at });
        let before = self.saved();
        if self.is_current(host) {
            self.advance(hosts);
        } else if !self.is_queued(host) {
            self.offer(host, &rec);
        }
        self.save_if_changed(before);
    }

    /// Session `id` of `host` ended. Returns whether it was the live one
    /// (an older session, already replaced, changes nothing).
    pub fn handle_session_down(&mut self, host: &str, id: u64) -> bool {
        if self.sessions.get(host).map(|s| s.id) != Some(id) {
            return false;
        }
        self.sessions.remove(host);
        self.metric(Metric::ConnectedAgents(self.sessions.len() as u64));
        self.persist(host, HostUpdate::Disconnected);
        true
    }

    /// `host`'s agent reported. Handled once per `seq` (0: never queued, no
    /// dedup), acknowledged after it is recorded.
    pub fn handle_report(&mut self, host: &str, report: &Report, hosts: &mut Hosts, at: u64, now: Instant) {
        let seq = report.seq;
        let last = hosts.get(host).map_or(0, |h| h.last_seq);
        if seq != 0 && seq <= last {
            tracing::debug!(host, seq, "report already recorded; acknowledging again");
            self.update(hosts, host, HostUpdate::Seen { at });
            self.ack(host, seq);
            return;
        }
        let before = self.saved();
        self.record_report(host, report, hosts, at, now);
        self.save_if_changed(before);
        self.ack(host, seq);
    }

    fn record_report(&mut self, host: &str, report: &Report, hosts: &mut Hosts, at: u64, now: Instant) {
        let outcome = report.outcome;
        let update = HostUpdate::Reported {
            report: Box::new(report.clone()),
            at,
        };
        let rec = self.update(hosts, host, update);
        if outcome.is_apply_success() {
            self.on_applied(host, report.serial, &rec, hosts, now);
        }
        if outcome.is_failure() {
            self.metric(Metric::AgentFailed);
        }
        let drifted: usize = hosts.values().map(|h| h.drift.len()).sum();
        self.metric(Metric::DriftedResources(drifted as u64));
        // Only a failure of the plan being rolled out stops it: one about an
        // older serial (a replayed report, a re-signed plan) is history.
        if outcome.is_failure() && self.is_current(host) && report.serial == desired_serial(&rec) {
            tracing::warn!(host, "rollout stopped: {outcome}");
            self.halted = true;
        }
    }

    /// The agent applied a plan: confirm its desired serial (the agent rolls
    /// back otherwise). Whether that moves the rollout on is the status's
    /// to say, except for agents that never send one.
    fn on_applied(
        &mut self,
        host: &str,
        serial: Option<u64>,
        rec: &HostRecord,
        hosts: &mut Hosts,
        now: Instant,
    ) {
        self.metric(Metric::AgentApplied);
        let desired = desired_serial(rec);
        if let (Some(t), true) = (self.started, desired == serial) {
            self.metric(Metric::PushToApplied(now.saturating_duration_since(t)));
        }
        let Some(session) = self.sessions.get(host) else {
            return;
        };
        let legacy = !session.speaks_status;
        if let (Some(s), Some(d)) = (serial, desired) {
            if s == d && rec.confirmed_serial < Some(s) {
                self.send(host, Outgoing::Confirm(s));
                tracing::info!(host, serial = s, "confirm sent");
                if legacy {
                    self.update(hosts, host, HostUpdate::Confirmed(s));
                }
            }
        }
        if self.is_current(host) {
            self.advance(hosts);
        }
    }

    /// `host`'s agent says where it stands.
    pub fn handle_status(&mut self, host: &str, status: &AgentStatus, hosts: &mut Hosts, at: u64) {
        if let Some(s) = self.sessions.get_mut(host) {
            s.speaks_status = true;
        }
        let update = HostUpdate::Status {
            status: status.clone(),
            at,
        };
        let rec = self.update(hosts, host, update);
        let Some(desired) = rec.desired.as_ref() else {
            return;
        };
        let d = desired.envelope.serial;
        let before = self.saved();
        match &status.running {
            Some(r) if r.serial == d && r.plan_sha256 == desired.envelope.plan_sha256 => {
                if !r.confirmed && self.sessions.contains_key(host) {
                    tracing::info!(host, serial = d, "running unconfirmed; confirm sent");
                    self.send(host, Outgoing::Confirm(d));
                } else if self.is_current(host) {
                    self.advance(hosts);
                }
            }
            // Past the desired serial, or running another plan under it: the
            // agent would refuse it, so sign it again above the floor.
            Some(r) if r.serial == d => self.resign(host, status),
            _ if status.max_serial > Some(d) => self.resign(host, status),
            // At the desired serial but running an older plan: the agent is
            // applying it (it spends the serial before it converges), or it
            // failed and says so in a report. Neither is a reason to re-sign
            // or re-send.
            _ if status.max_serial == Some(d) => {}
            _ if self.is_current(host) => {
                if let Some(s) = self.sessions.get_mut(host) {
                    s.plan_sent = None; // it does not run it: send it again
                }
                self.advance(hosts);
            }
            _ if !self.is_queued(host) => self.offer(host, &rec),
            _ => {}
        }
        self.save_if_changed(before);
    }

    fn resign(&mut self, host: &str, status: &AgentStatus) {
        tracing::warn!(host, floor = ?status.max_serial, "the agent is past the desired serial; re-signing above it");
        self.outputs.push_back(Output::Resign {
            host: host.to_string(),
        });
    }

    /// `host`'s desired plan was signed again (see [`Output::Resign`]):
    /// send it if it is the host's turn.
    pub fn handle_resigned(&mut self, host: &str, hosts: &Hosts) {
        let before = self.saved();
        if self.is_current(host) {
            self.advance(hosts);
        } else if !self.is_queued(host) && self.sessions.contains_key(host) {
            if let Some(d) = hosts.get(host).and_then(|r| r.desired.clone()) {
                self.send(host, Outgoing::Plan(Box::new(d)));
            }
        }
        self.save_if_changed(before);
    }

    /// `warren-controller sync`: send each of `names` its desired plan again
    /// (the agent converges to it once more), unless it is queued behind
    /// another host. Syncing a halted rollout's current host resumes it.
    /// What happened to each host, for the log.
    pub fn handle_sync(&mut self, names: &[String], hosts: &Hosts) -> Vec<(String, &'static str)> {
        let before = self.saved();
        let mut done = Vec::new();
        for host in names {
            let what = self.sync_one(host, hosts);
            done.push((host.clone(), what));
        }
        self.save_if_changed(before);
        done
    }

    fn sync_one(&mut self, host: &str, hosts: &Hosts) -> &'static str {
        let Some(desired) = hosts.get(host).and_then(|r| r.desired.clone()) else {
            return "no plan yet";
        };
        if !self.sessions.contains_key(host) {
            return "not connected; it gets its plan when it connects";
        }
        if self.is_queued(host) && !self.is_current(host) {
            return "queued behind another host in the rollout; it gets its plan in turn";
        }
        if self.is_current(host) {
            self.halted = false;
        }
        self.send(host, Outgoing::Plan(Box::new(desired)));
        "plan sent again"
    }

    /// Send the current host its plan if it needs it, or move on past hosts
    /// whose plan is confirmed (or who have none). A current host that is
    /// not connected holds the rollout: it gets its plan when it connects.
    fn advance(&mut self, hosts: &Hosts) {
        if self.halted {
            return;
        }
        while let Some(host) = self.queue.front().cloned() {
            let rec = hosts.get(&host);
            let Some(desired) = rec.and_then(|r| r.desired.as_ref()) else {
                self.queue.pop_front();
                continue;
            };
            let serial = desired.envelope.serial;
            if rec.and_then(|r| r.confirmed_serial) >= Some(serial) {
                self.queue.pop_front();
                continue;
            }
            let behind = rec.and_then(|r| r.applied_serial) < Some(serial);
            let plan = Outgoing::Plan(Box::new(desired.clone()));
            match self.sessions.get_mut(&host) {
                None => tracing::warn!(host, serial, "agent not connected; the rollout waits for it"),
                Some(s) if behind && s.plan_sent != Some(serial) => {
                    s.plan_sent = Some(serial);
                    self.send(&host, plan);
                    tracing::info!(host, serial, "plan sent; waiting for the agent to confirm it");
                }
                Some(_) => {}
            }
            return;
        }
    }

    /// A host outside the rollout gets its plan when it is behind and shows
    /// no error (a failed plan is not retried by itself: a new commit or a
    /// `sync` retries it, so a bad plan does not loop through rollbacks).
    fn offer(&mut self, host: &str, rec: &HostRecord) {
        let Some(d) = &rec.desired else { return };
        if rec.applied_serial < Some(d.envelope.serial) && rec.error.is_none() {
            self.send(host, Outgoing::Plan(Box::new(d.clone())));
        }
    }

    fn is_current(&self, host: &str) -> bool {
        self.queue.front().map(String::as_str) == Some(host)
    }

    fn is_queued(&self, host: &str) -> bool {
        self.queue.iter().any(|h| h == host)
    }

    fn saved(&self) -> Saved {
        Saved {
            queue: self.queue.iter().cloned().collect(),
            halted: self.halted,
        }
    }

    fn save_if_changed(&mut self, before: Saved) {
        let now = self.saved();
        if now != before {
            self.outputs.push_back(Output::Save(now));
        }
    }

    /// Apply `update` to the view and ask for it to be persisted; the
    /// updated record.
    fn update(&mut self, hosts: &mut Hosts, host: &str, update: HostUpdate) -> HostRecord {
        let rec = hosts.entry(host.to_string()).or_default();
        update.apply(rec);
        let rec = rec.clone();
        self.persist(host, update);
        rec
    }

    fn persist(&mut self, host: &str, update: HostUpdate) {
        self.outputs.push_back(Output::Persist {
            host: host.to_string(),
            update,
        });
    }

    fn ack(&mut self, host: &str, seq: u64) {
        if seq != 0 && self.sessions.contains_key(host) {
            self.send(host, Outgoing::Ack(seq));
        }
    }

    fn send(&mut self, host: &str, msg: Outgoing) {
        self.outputs.push_back(Output::Send {
            host: host.to_string(),
            msg,
        });
    }

    fn metric(&mut self, m: Metric) {
        self.outputs.push_back(Output::Metric(m));
    }
}

fn desired_serial(rec: &HostRecord) -> Option<u64> {
    rec.desired.as_ref().map(|d| d.envelope.serial)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use warren_plan::Plan;

    fn plan(host: &str, serial: u64) -> warren_plan::SignedPlan {
        let plan = Plan::empty(host);
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        warren_plan::sign(plan, serial, &format!("c{serial}"), 60, 1, &key)
    }

    /// Records where every host wants `serial` and has applied `applied`.
    fn hosts(names: &[&str], serial: u64, applied: Option<u64>) -> Hosts {
        names
            .iter()
            .map(|h| {
                let rec = HostRecord {
                    serial,
                    desired: Some(plan(h, serial)),
                    applied_serial: applied,
                    confirmed_serial: applied,
                    ..HostRecord::default()
                };
                (h.to_string(), rec)
            })
            .collect()
    }

    fn report(host: &str, serial: u64, outcome: Outcome) -> Report {
        Report {
            seq: 0,
            host: host.into(),
            serial: Some(serial),
            commit: Some(format!("c{serial}")),
            outcome,
            message: "because".into(),
            changes: vec![],
            at: 1,
        }
    }

    fn drain(r: &mut Rollout) -> Vec<Output> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    /// The messages in `outs`, as (host, "plan N" | "confirm N").
    fn sent(outs: &[Output]) -> Vec<(String, String)> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Send { host, msg } => Some((
                    host.clone(),
                    match msg {
                        Outgoing::Plan(p) => format!("plan {}", p.envelope.serial),
                        Outgoing::Confirm(s) => format!("confirm {s}"),
                        Outgoing::Ack(s) => format!("ack {s}"),
                    },
                )),
                _ => None,
            })
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Every host, in rollout order.
    #[allow(non_snake_case)]
    fn ORDER() -> Vec<String> {
        names(&["router", "gateway"])
    }

    /// A status running `serial` of `host`'s plan (as signed by [`plan`]).
    fn status(host: &str, floor: u64, serial: u64, confirmed: bool) -> AgentStatus {
        let p = plan(host, serial);
        AgentStatus {
            max_serial: Some(floor),
            running: Some(warren_wire::Running {
                serial,
                commit: p.envelope.commit.clone(),
                plan_sha256: p.envelope.plan_sha256.clone(),
                confirmed,
            }),
            findings: vec![],
        }
    }

    fn msg(host: &str, what: &str) -> (String, String) {
        (host.to_string(), what.to_string())
    }

    /// Both hosts connected (their connect outputs drained) with serial 1
    /// applied and confirmed, then serial 2 compiled for both.
    fn rolling() -> (Rollout, Hosts, Vec<Output>) {
        let mut r = Rollout::default();
        let mut h = hosts(&["router", "gateway"], 1, Some(1));
        r.handle_session_up("router", 1, &mut h, 10);
        r.handle_session_up("gateway", 2, &mut h, 10);
        drain(&mut r);
        for name in ["router", "gateway"] {
            h.get_mut(name).unwrap().desired = Some(plan(name, 2));
        }
        r.handle_compiled(&names(&["router", "gateway"]), &ORDER(), &h, Instant::now());
        let outs = drain(&mut r);
        (r, h, outs)
    }

    #[test]
    fn one_host_at_a_time_in_the_given_order() {
        let (mut r, mut h, outs) = rolling();
        assert_eq!(sent(&outs), [msg("router", "plan 2")], "the gateway waits");
        // A report that is not an apply does not move the rollout on.
        r.handle_report(
            "router",
            &report("router", 1, Outcome::InSync),
            &mut h,
            11,
            Instant::now(),
        );
        assert_eq!(sent(&drain(&mut r)), []);
        r.handle_report(
            "router",
            &report("router", 2, Outcome::Applied),
            &mut h,
            12,
            Instant::now(),
        );
        let outs = drain(&mut r);
        assert_eq!(
            sent(&outs),
            [msg("router", "confirm 2"), msg("gateway", "plan 2")]
        );
        r.handle_report(
            "gateway",
            &report("gateway", 2, Outcome::Unchanged),
            &mut h,
            13,
            Instant::now(),
        );
        assert_eq!(sent(&drain(&mut r)), [msg("gateway", "confirm 2")]);
        assert_eq!(h["router"].confirmed_serial, Some(2));
        assert_eq!(h["gateway"].applied_commit.as_deref(), Some("c2"));
    }

    #[test]
    fn a_confirmed_or_planless_host_is_passed_over() {
        let mut r = Rollout::default();
        let mut h = hosts(&["router", "gateway"], 2, Some(2));
        h.get_mut("gateway").unwrap().confirmed_serial = Some(1);
        h.insert("laptop".into(), HostRecord::default());
        for name in ["router", "gateway", "laptop"] {
            r.handle_session_up(name, 1, &mut h, 10);
        }
        drain(&mut r);
        let order = names(&["router", "laptop", "gateway"]);
        r.handle_compiled(&order, &order, &h, Instant::now());
        // Applied but not confirmed: no plan again, but its turn (a report
        // is awaited).
        assert_eq!(sent(&drain(&mut r)), []);
        r.handle_report(
            "gateway",
            &report("gateway", 2, Outcome::Unchanged),
            &mut h,
            11,
            Instant::now(),
        );
        assert_eq!(sent(&drain(&mut r)), [msg("gateway", "confirm 2")]);
    }

    #[test]
    fn only_the_desired_serial_is_confirmed() {
        let (mut r, mut h, _) = rolling();
        // Serial 1 never got confirmed (say the session dropped first).
        h.get_mut("router").unwrap().confirmed_serial = None;
        r.handle_report(
            "router",
            &report("router", 1, Outcome::Applied),
            &mut h,
            11,
            Instant::now(),
        );
        let outs = drain(&mut r);
        assert!(
            !sent(&outs).iter().any(|(_, m)| m.starts_with("confirm")),
            "{outs:?}"
        );
        assert!(!outs
            .iter()
            .any(|o| matches!(o, Output::Metric(Metric::PushToApplied(_)))));
        assert_eq!(h["router"].applied_serial, Some(1), "recorded as reported");
        assert_eq!(h["router"].confirmed_serial, None);
        r.handle_report(
            "router",
            &report("router", 2, Outcome::Applied),
            &mut h,
            12,
            Instant::now(),
        );
        assert_eq!(sent(&drain(&mut r))[0], msg("router", "confirm 2"));
        assert_eq!(h["router"].confirmed_serial, Some(2));
    }

    #[test]
    fn an_older_serial_applied_does_not_move_the_rollout_on() {
        // The router's serial 2 is neither applied nor confirmed: a report
        // about serial 1 (say a replayed one) must not let the gateway go.
        let (mut r, mut h, _) = rolling();
        r.handle_report(
            "router",
            &report("router", 1, Outcome::Unchanged),
            &mut h,
            11,
            Instant::now(),
        );
        // (The router, evidently not running serial 2, may get it again.)
        let outs = sent(&drain(&mut r));
        assert!(outs.iter().all(|(host, _)| host == "router"), "{outs:?}");
        assert_eq!(h["router"].confirmed_serial, Some(1));
    }

    #[test]
    fn each_failure_outcome_stops_the_rollout() {
        for outcome in [Outcome::Rejected, Outcome::Failed, Outcome::RolledBack] {
            let (mut r, mut h, _) = rolling();
            r.handle_report(
                "router",
                &report("router", 2, outcome),
                &mut h,
                11,
                Instant::now(),
            );
            let outs = drain(&mut r);
            assert_eq!(sent(&outs), [], "{outcome}");
            assert!(outs
                .iter()
                .any(|o| matches!(o, Output::Metric(Metric::AgentFailed))));
            assert!(
                h["router"].error.as_deref().unwrap().ends_with(": because"),
                "{outcome}"
            );
            // Nothing the router says later resumes it.
            r.handle_report(
                "router",
                &report("router", 2, Outcome::Applied),
                &mut h,
                12,
                Instant::now(),
            );
            assert_eq!(sent(&drain(&mut r)), [msg("router", "confirm 2")], "{outcome}");
        }
    }

    #[test]
    fn a_failure_from_a_host_not_being_rolled_out_does_not_stop_it() {
        let (mut r, mut h, _) = rolling();
        r.handle_report(
            "gateway",
            &report("gateway", 1, Outcome::Failed),
            &mut h,
            11,
            Instant::now(),
        );
        drain(&mut r);
        r.handle_report(
            "router",
            &report("router", 2, Outcome::Applied),
            &mut h,
            12,
            Instant::now(),
        );
        assert_eq!(
            sent(&drain(&mut r)),
            [msg("router", "confirm 2"), msg("gateway", "plan 2")]
        );
    }

    #[test]
    fn a_disconnected_first_host_holds_the_rollout_until_it_connects() {
        let mut r = Rollout::default();
        let mut h = hosts(&["router", "gateway"], 2, Some(1));
        r.handle_session_up("gateway", 5, &mut h, 10);
        drain(&mut r);
        r.handle_compiled(&ORDER(), &ORDER(), &h, Instant::now());
        assert_eq!(sent(&drain(&mut r)), [], "the gateway waits for the router");
        r.handle_session_up("router", 6, &mut h, 20);
        let outs = drain(&mut r);
        assert_eq!(sent(&outs), [msg("router", "plan 2")]);
        assert!(h["router"].connected);
        assert_eq!(h["router"].last_seen, Some(20));
        r.handle_report(
            "router",
            &report("router", 2, Outcome::Applied),
            &mut h,
            21,
            Instant::now(),
        );
        assert_eq!(
            sent(&drain(&mut r)),
            [msg("router", "confirm 2"), msg("gateway", "plan 2")]
        );
    }

    #[test]
    fn the_current_host_disconnecting_holds_the_rollout_until_it_is_back() {
        let (mut r, mut h, _) = rolling();
        assert!(r.handle_session_down("router", 1));
        assert_eq!(
            drain(&mut r).last().map(|o| matches!(
                o,
                Output::Persist {
                    update: HostUpdate::Disconnected,
                    ..
                }
            )),
            Some(true)
        );
        r.handle_session_up("router", 3, &mut h, 11);
        assert_eq!(
            sent(&drain(&mut r)),
            [msg("router", "plan 2")],
            "re-sent, gateway still waits"
        );
    }

    #[test]
    fn a_host_queued_later_waits_for_its_turn_on_connect() {
        let (mut r, mut h, _) = rolling();
        assert!(r.handle_session_down("gateway", 2));
        r.handle_session_up("gateway", 4, &mut h, 11);
        assert_eq!(
            sent(&drain(&mut r)),
            [],
            "the gateway is queued behind the router"
        );
        // An applied plan is not re-sent on connect either.
        h.get_mut("router").unwrap().applied_serial = Some(2);
        assert!(r.handle_session_down("router", 1));
        r.handle_session_up("router", 5, &mut h, 12);
        assert_eq!(sent(&drain(&mut r)), []);
    }

    #[test]
    fn a_stale_session_going_down_changes_nothing() {
        let (mut r, _, _) = rolling();
        assert!(!r.handle_session_down("router", 99));
        assert!(drain(&mut r).is_empty());
        assert!(r.handle_session_down("router", 1));
        assert!(!r.handle_session_down("router", 1), "already down");
    }

    #[test]
    fn reports_shape_the_record() {
        let mut h = HostRecord::default();
        let mut drift = report("router", 1, Outcome::Drift);
        drift.changes = vec![warren_plan::Change {
            resource: "table ip warren".into(),
            expected: "a".into(),
            actual: "b".into(),
            op: warren_plan::Op::Nft(warren_plan::NftOp::DeleteTable),
        }];
        HostUpdate::Reported {
            report: Box::new(drift),
            at: 3,
        }
        .apply(&mut h);
        assert_eq!(h.drift, ["table ip warren"]);
        assert_eq!((h.applied_serial, h.last_seen), (None, Some(3)));
        let healed = report("router", 1, Outcome::Healed);
        HostUpdate::Reported {
            report: Box::new(healed),
            at: 4,
        }
        .apply(&mut h);
        assert!(h.drift.is_empty());
        assert_eq!(h.applied_serial, None, "healing is not applying a plan");
        let back = report("router", 4, Outcome::RolledBack);
        HostUpdate::Reported {
            report: Box::new(back),
            at: 5,
        }
        .apply(&mut h);
        assert_eq!(h.applied_serial, Some(4));
        assert_eq!(h.error.as_deref(), Some("rolled back: because"));
        let rejected = report("router", 5, Outcome::Rejected);
        HostUpdate::Reported {
            report: Box::new(rejected),
            at: 6,
        }
        .apply(&mut h);
        assert_eq!(h.error.as_deref(), Some("rejected: because"));
        assert_eq!(h.applied_serial, Some(4));
        assert_eq!(h.last_report.as_ref().map(|r| r.outcome), Some(Outcome::Rejected));
    }

    #[test]
    fn metrics_follow_sessions_drift_and_push_to_applied() {
        let mut r = Rollout::default();
        let mut h = hosts(&["router"], 2, Some(1));
        r.handle_session_up("router", 1, &mut h, 10);
        assert!(matches!(
            drain(&mut r)[0],
            Output::Metric(Metric::ConnectedAgents(1))
        ));
        let t0 = Instant::now();
        r.handle_compiled(&names(&["router"]), &ORDER(), &h, t0);
        drain(&mut r);
        let later = t0 + Duration::from_secs(3);
        r.handle_report(
            "router",
            &report("router", 2, Outcome::Applied),
            &mut h,
            11,
            later,
        );
        let metrics: Vec<Metric> = drain(&mut r)
            .into_iter()
            .filter_map(|o| match o {
                Output::Metric(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(
            metrics,
            [
                Metric::AgentApplied,
                Metric::PushToApplied(Duration::from_secs(3)),
                Metric::DriftedResources(0)
            ]
        );
        r.handle_session_down("router", 1);
        assert!(matches!(
            drain(&mut r)[0],
            Output::Metric(Metric::ConnectedAgents(0))
        ));
    }

    /// [`rolling`], with both agents speaking status (each sent one).
    fn rolling_with_status() -> (Rollout, Hosts) {
        let (mut r, mut h, _) = rolling();
        r.handle_status("router", &status("router", 1, 1, true), &mut h, 11);
        r.handle_status("gateway", &status("gateway", 1, 1, true), &mut h, 11);
        let outs = sent(&drain(&mut r));
        assert_eq!(outs, [msg("router", "plan 2")], "behind and its turn: sent again");
        (r, h)
    }

    #[test]
    fn a_status_keeps_the_findings_that_are_not_ok_and_the_next_one_replaces_them() {
        let (mut r, mut h) = rolling_with_status();
        let finding = |check: &str, severity| warren_plan::Finding {
            check: check.into(),
            severity,
            what: "w".into(),
            why: String::new(),
            fix: String::new(),
        };
        let mut st = status("router", 1, 1, true);
        st.findings = vec![
            finding("clock", warren_plan::Severity::Ok),
            finding("wan-handshake", warren_plan::Severity::Breaks),
        ];
        r.handle_status("router", &st, &mut h, 12);
        let checks: Vec<&str> = h["router"].findings.iter().map(|f| f.check.as_str()).collect();
        assert_eq!(checks, ["wan-handshake"]);
        r.handle_status("router", &status("router", 1, 1, true), &mut h, 13);
        assert!(h["router"].findings.is_empty(), "healed: gone");
    }

    fn apply(r: &mut Rollout, h: &mut Hosts, host: &str, serial: u64, seq: u64) -> Vec<Output> {
        let mut rep = report(host, serial, Outcome::Applied);
        rep.seq = seq;
        r.handle_report(host, &rep, h, 12, Instant::now());
        drain(r)
    }

    #[test]
    fn only_a_status_showing_the_serial_confirmed_records_it_and_moves_on() {
        let (mut r, mut h) = rolling_with_status();
        let outs = apply(&mut r, &mut h, "router", 2, 1);
        assert_eq!(sent(&outs), [msg("router", "confirm 2"), msg("router", "ack 1")]);
        assert_eq!(h["router"].confirmed_serial, Some(1), "sent is not confirmed");
        // Running, not confirmed yet (or the confirm was lost): again.
        r.handle_status("router", &status("router", 2, 2, false), &mut h, 13);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "confirm 2")]);
        assert_eq!(h["router"].confirmed_serial, Some(1));
        r.handle_status("router", &status("router", 2, 2, true), &mut h, 14);
        assert_eq!(sent(&drain(&mut r)), [msg("gateway", "plan 2")]);
        assert_eq!(h["router"].confirmed_serial, Some(2));
    }

    #[test]
    fn a_lost_confirm_costs_one_heartbeat_after_a_reconnect() {
        let (mut r, mut h) = rolling_with_status();
        apply(&mut r, &mut h, "router", 2, 1); // its confirm is lost
        assert!(r.handle_session_down("router", 1));
        r.handle_session_up("router", 7, &mut h, 20);
        assert_eq!(sent(&drain(&mut r)), [], "applied: no plan again");
        r.handle_status("router", &status("router", 2, 2, false), &mut h, 21);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "confirm 2")]);
    }

    #[test]
    fn a_status_behind_gets_the_plan_again_only_in_turn_and_without_error() {
        let (mut r, mut h) = rolling_with_status();
        r.handle_status("router", &status("router", 1, 1, true), &mut h, 12);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "plan 2")]);
        r.handle_status("gateway", &status("gateway", 1, 1, true), &mut h, 12);
        assert_eq!(sent(&drain(&mut r)), [], "the gateway is queued behind");
        // Outside a rollout: behind gets the plan, unless its last one failed.
        let mut r = Rollout::default();
        let mut h = hosts(&["router"], 2, Some(1));
        r.handle_session_up("router", 1, &mut h, 10);
        drain(&mut r);
        r.handle_status("router", &status("router", 1, 1, true), &mut h, 11);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "plan 2")]);
        h.get_mut("router").unwrap().error = Some("rolled back: no handshake".into());
        r.handle_status("router", &status("router", 1, 1, true), &mut h, 12);
        assert_eq!(sent(&drain(&mut r)), [], "no rollback loop");
    }

    #[test]
    fn every_status_and_duplicate_report_updates_last_seen() {
        let (mut r, mut h) = rolling_with_status();
        r.handle_status("gateway", &status("gateway", 1, 1, true), &mut h, 40);
        assert_eq!(h["gateway"].last_seen, Some(40));
        let outs = drain(&mut r);
        assert!(outs.iter().any(|o| matches!(
            o,
            Output::Persist {
                update: HostUpdate::Status { at: 40, .. },
                ..
            }
        )));
    }

    #[test]
    fn a_report_is_recorded_once_per_seq_and_acked_after_recording() {
        let (mut r, mut h) = rolling_with_status();
        let outs = apply(&mut r, &mut h, "router", 2, 5);
        let persist = outs.iter().position(|o| {
            matches!(
                o,
                Output::Persist {
                    update: HostUpdate::Reported { .. },
                    ..
                }
            )
        });
        let ack = outs.iter().position(|o| {
            matches!(
                o,
                Output::Send {
                    msg: Outgoing::Ack(5),
                    ..
                }
            )
        });
        assert!(persist.unwrap() < ack.unwrap(), "{outs:?}");
        assert_eq!(h["router"].last_seq, 5);
        // The same report again (the ack was lost): acked, not re-applied.
        h.get_mut("router").unwrap().drift = vec!["x".into()];
        let outs = apply(&mut r, &mut h, "router", 2, 5);
        assert_eq!(sent(&outs), [msg("router", "ack 5")]);
        assert_eq!(h["router"].drift, ["x"], "not recorded again");
        assert!(!outs.iter().any(|o| matches!(o, Output::Metric(_))));
        // An older one too.
        assert_eq!(
            sent(&apply(&mut r, &mut h, "router", 2, 3)),
            [msg("router", "ack 3")]
        );
        // seq 0 (never queued) is handled and not acked.
        let outs = apply(&mut r, &mut h, "router", 2, 0);
        assert!(!sent(&outs).iter().any(|(_, m)| m.starts_with("ack")));
        assert!(h["router"].drift.is_empty());
    }

    #[test]
    fn a_recompile_merges_into_the_rollout_in_rollout_order() {
        let (mut r, h, _) = rolling();
        // New keys from the router: only the gateway's plan changed.
        r.handle_compiled(&names(&["gateway"]), &ORDER(), &h, Instant::now());
        let outs = sent(&drain(&mut r));
        assert_eq!(outs, [], "the router is unconfirmed and already has its plan");
        // The other way round: the router confirmed, the gateway's turn, and
        // a commit changes both: the router goes first again.
        let (mut r, mut h, _) = rolling();
        apply(&mut r, &mut h, "router", 2, 1);
        for name in ["router", "gateway"] {
            h.get_mut(name).unwrap().desired = Some(plan(name, 3));
        }
        r.handle_compiled(&ORDER(), &ORDER(), &h, Instant::now());
        let outs = drain(&mut r);
        assert_eq!(sent(&outs), [msg("router", "plan 3")]);
        let saved = outs.iter().rev().find_map(|o| match o {
            Output::Save(s) => Some(s.clone()),
            _ => None,
        });
        assert_eq!(saved.unwrap().queue, ORDER());
    }

    #[test]
    fn the_rollout_survives_a_restart() {
        let (r, _, _) = rolling();
        let saved = r.saved();
        assert_eq!(saved.queue, ORDER());
        drop(r);
        // The controller restarts; the router's plan 2 is unconfirmed.
        let mut h = hosts(&["router", "gateway"], 2, Some(1));
        let mut r = Rollout::resume(saved);
        r.handle_session_up("gateway", 1, &mut h, 30);
        assert_eq!(sent(&drain(&mut r)), [], "the gateway waits its turn");
        r.handle_session_up("router", 2, &mut h, 31);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "plan 2")]);
        r.handle_status("router", &status("router", 2, 2, true), &mut h, 32);
        let outs = drain(&mut r);
        assert_eq!(sent(&outs), [msg("gateway", "plan 2")]);
        assert!(outs
            .iter()
            .any(|o| matches!(o, Output::Save(s) if s.queue == ["gateway"])));
    }

    #[test]
    fn a_halted_rollout_holds_reconnects_until_a_commit_or_a_sync() {
        let (mut r, mut h, _) = rolling();
        r.handle_report(
            "router",
            &report("router", 2, Outcome::RolledBack),
            &mut h,
            11,
            Instant::now(),
        );
        drain(&mut r);
        assert!(r.handle_session_down("gateway", 2));
        r.handle_session_up("gateway", 3, &mut h, 12);
        assert_eq!(sent(&drain(&mut r)), [], "the gateway keeps its old plan");
        // A failure about an older serial does not halt anything.
        let (mut r2, mut h2, _) = rolling();
        r2.handle_report(
            "router",
            &report("router", 1, Outcome::Rejected),
            &mut h2,
            11,
            Instant::now(),
        );
        assert!(!r2.saved().halted);
        // `sync router` resumes the halted one.
        let done = r.handle_sync(&ORDER(), &h);
        assert_eq!(done[0], ("router".to_string(), "plan sent again"));
        assert!(done[1].1.starts_with("queued behind"));
        let outs = drain(&mut r);
        assert_eq!(sent(&outs), [msg("router", "plan 2")]);
        assert!(!r.saved().halted);
        apply(&mut r, &mut h, "router", 2, 9);
        assert_eq!(h["gateway"].applied_serial, Some(1));
    }

    #[test]
    fn sync_resends_the_running_plan_and_says_why_not_otherwise() {
        let mut r = Rollout::default();
        let mut h = hosts(&["router", "gateway"], 2, Some(2));
        r.handle_session_up("router", 1, &mut h, 10);
        drain(&mut r);
        let done = r.handle_sync(&names(&["router", "gateway", "nas"]), &h);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "plan 2")], "in sync or not");
        assert!(done[1].1.starts_with("not connected"));
        assert_eq!(done[2].1, "no plan yet");
    }

    #[test]
    fn after_the_controller_lost_its_state_plans_are_resigned_above_the_floor() {
        // A fresh store: serial 1 desired; the agent has run up to 50.
        let mut r = Rollout::default();
        let mut h = hosts(&["router"], 1, None);
        r.handle_session_up("router", 1, &mut h, 10);
        drain(&mut r);
        r.handle_status("router", &status("router", 50, 50, true), &mut h, 11);
        let outs = drain(&mut r);
        assert!(
            matches!(outs.last(), Some(Output::Resign { host }) if host == "router"),
            "{outs:?}"
        );
        assert!(sent(&outs).is_empty());
        assert_eq!(h["router"].serial, 50, "the counter is raised to the floor");
        // The service signs 51 and says so.
        h.get_mut("router").unwrap().desired = Some(plan("router", 51));
        r.handle_resigned("router", &h);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "plan 51")]);
        // The stale rejection of serial 1 neither halts nor loops.
        r.handle_report(
            "router",
            &report("router", 1, Outcome::Rejected),
            &mut h,
            12,
            Instant::now(),
        );
        r.handle_status("router", &status("router", 51, 51, false), &mut h, 13);
        assert_eq!(sent(&drain(&mut r)), [msg("router", "confirm 51")]);
        // A floor below the desired serial only raises the counter.
        let mut h = hosts(&["router"], 9, Some(9));
        r.handle_status("router", &status("router", 3, 9, true), &mut h, 14);
        assert!(!drain(&mut r).iter().any(|o| matches!(o, Output::Resign { .. })));
        assert_eq!(h["router"].serial, 9);
    }

    #[test]
    fn a_status_in_the_middle_of_an_apply_is_not_a_lost_state() {
        // The agent spends serial 7 before it converges: a status taken then
        // shows the floor at 7 and serial 6 still running. Re-signing would
        // skip a serial for nothing; re-sending would apply it twice.
        let mut r = Rollout::default();
        let mut h = hosts(&["router"], 7, Some(6));
        r.handle_session_up("router", 1, &mut h, 10);
        drain(&mut r);
        r.handle_status("router", &status("router", 7, 6, true), &mut h, 11);
        let outs = drain(&mut r);
        assert!(
            !outs.iter().any(|o| matches!(o, Output::Resign { .. })),
            "{outs:?}"
        );
        assert!(sent(&outs).is_empty(), "{outs:?}");
        // The same serial with another plan under it is refused by the agent:
        // that one is signed again.
        let mut other = status("router", 7, 7, true);
        if let Some(run) = other.running.as_mut() {
            run.plan_sha256 = "0".repeat(64);
        }
        r.handle_status("router", &other, &mut h, 12);
        assert!(drain(&mut r).iter().any(|o| matches!(o, Output::Resign { .. })));
    }
}
