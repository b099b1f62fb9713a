//! The forge worker: what `serve` says on the forge, and when.
//!
//! It runs on its own thread, off the main loop (forge APIs are slow and
//! rate-limited; an agent's report must never wait for GitHub). It reacts to
//! two things:
//! - pull request events from the webhook: fetch the head, merge it onto
//!   the branch in memory, compile both sides, and keep one sticky comment
//!   per PR plus the `warren/plan` status on its head up to date; a merged PR
//!   is remembered by its merge commit;
//! - `status.json`, which the main loop rewrites as agents report: once a
//!   second it checks how the deployed commit's rollout stands (footer and
//!   `warren/apply`) and whether hosts drift from it (drift section and
//!   `warren/drift`). A commit pushed without a PR gets its statuses, and on
//!   GitHub a commit comment, instead.
//!
//! Writes happen only on a change: a comment whose body did not change is
//! not sent ([`Poster`] implementations skip it), a status whose state and
//! description did not change neither. The decisions (which hosts applied,
//! what drifts) are pure functions of the status snapshot, tested below.

use super::repo::{Access, Repo};
use super::status::{HostSnapshot, StatusSnapshot};
use crate::forge::client::{ForgeClient, ForgeError, StatusState};
use crate::forge::render::{self, ApplyResult, DriftItem, Links, Phase};
use crate::forge::{ForgeKind, PrAction, PrEvent};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use warren_plan::Plan;
use warren_wire::Outcome;

/// Commit status contexts.
pub const PLAN_CONTEXT: &str = "warren/plan";
pub const APPLY_CONTEXT: &str = "warren/apply";
pub const DRIFT_CONTEXT: &str = "warren/drift";

/// A commit status's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Success,
    Failure,
}

/// What the worker needs from a forge. [`crate::forge::client::ForgeClient`]
/// is the real one; tests record.
pub trait Poster {
    /// Create or edit this PR's one comment whose first line `is_ours`
    /// recognises (and whose author is the bot); unchanged bodies are not sent.
    fn upsert_comment(&mut self, pr: u64, is_ours: &dyn Fn(&str) -> bool, body: &str) -> Result<()>;
    /// Set a commit status (skipped when state and description are unchanged).
    fn status(&mut self, sha: &str, context: &str, state: State, description: &str) -> Result<()>;
    /// A comment on a commit pushed without a PR; `Ok(false)` where the forge
    /// has none (Gitea).
    fn commit_comment(&mut self, sha: &str, body: &str) -> Result<bool>;
}

impl Poster for ForgeClient {
    fn upsert_comment(&mut self, pr: u64, is_ours: &dyn Fn(&str) -> bool, body: &str) -> Result<()> {
        let outcome = ForgeClient::upsert_comment(self, pr, is_ours, body)?;
        tracing::info!(pr, ?outcome, "forge: comment");
        Ok(())
    }
    fn status(&mut self, sha: &str, context: &str, state: State, description: &str) -> Result<()> {
        let s = match state {
            State::Pending => StatusState::Pending,
            State::Success => StatusState::Success,
            State::Failure => StatusState::Failure,
        };
        self.set_status(sha, context, s, description, None)?;
        Ok(())
    }
    fn commit_comment(&mut self, sha: &str, body: &str) -> Result<bool> {
        match ForgeClient::commit_comment(self, sha, body) {
            Ok(_) => Ok(true),
            Err(ForgeError::Unsupported(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// How the worker reaches the forge and the repository.
#[derive(Clone)]
pub struct ForgeOptions {
    pub kind: ForgeKind,
    /// The REST API's base URL (`https://api.github.com`,
    /// `https://git.example/api/v1`).
    pub api_url: String,
    /// The web UI's base URL, for links (`https://github.com`).
    pub web_url: String,
    /// `owner/name`.
    pub repo: String,
    pub token: String,
    /// Tells this controller's comments apart from another's on one repo.
    pub instance: String,
}

impl std::fmt::Debug for ForgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeOptions")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("web_url", &self.web_url)
            .field("repo", &self.repo)
            .field("token", &"<redacted>")
            .field("instance", &self.instance)
            .finish()
    }
}

/// The web UI's URL from the API's: `api.github.com` is `github.com`,
/// GitHub Enterprise's `/api/v3` and Gitea's `/api/v1` are stripped.
pub fn web_url_of(kind: ForgeKind, api_url: &str) -> String {
    let u = api_url.trim_end_matches('/');
    if kind == ForgeKind::Github && u == "https://api.github.com" {
        return "https://github.com".into();
    }
    u.strip_suffix("/api/v3")
        .or_else(|| u.strip_suffix("/api/v1"))
        .unwrap_or(u)
        .to_string()
}

/// What the worker remembers across restarts (`forge.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// PRs Warren commented on, by number.
    pub prs: BTreeMap<u64, PrMemory>,
    /// Merge commit -> PR number.
    pub merges: BTreeMap<String, u64>,
    /// Commits pushed without a PR whose apply result was reported.
    pub direct_done: Vec<String>,
    /// The deployed commit and the drift fingerprint last reported for it.
    pub drift_reported: Option<(String, String)>,
    /// Host -> when its current drift was first seen (UTC text).
    pub drift_since: BTreeMap<String, String>,
    /// Host -> when its drift was last resolved (UTC text).
    pub drift_resolved: BTreeMap<String, String>,
    /// The deployed commit and drift fingerprint open PRs were last planned
    /// against: when either moves, their previews are planned again.
    pub open_planned_at: Option<(String, String)>,
}

/// One PR as last rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrMemory {
    pub head: String,
    pub base_ref: String,
    /// The base tip the preview was merged onto.
    pub base_sha: String,
    /// The merge commit, once merged.
    pub merged: Option<String>,
    /// The rollout of the merge commit ended (footer final).
    pub done: bool,
}

impl Memory {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("forge.json")
    }
    pub fn load(state_dir: &Path) -> Memory {
        std::fs::read(Self::path(state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
    fn save(&self, state_dir: &Path) -> Result<()> {
        let p = Self::path(state_dir);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))
    }
}

/// How a merged commit's rollout stands: per host whose plan it changed,
/// and whether it is over (`Some(true)`: every such host applied it).
pub fn apply_results(snap: &StatusSnapshot, commit: &str) -> (BTreeMap<String, ApplyResult>, Option<bool>) {
    let mut out = BTreeMap::new();
    for (name, h) in &snap.hosts {
        if h.plan_commit.as_deref() != Some(commit) {
            continue;
        }
        out.insert(name.clone(), host_result(h, commit));
    }
    let over = out.values().all(|r| !matches!(r, ApplyResult::Pending));
    let ok = out.values().all(|r| matches!(r, ApplyResult::Applied { .. }));
    (out, over.then_some(ok))
}

fn host_result(h: &HostSnapshot, commit: &str) -> ApplyResult {
    if let Some(r) = h
        .last_report
        .as_ref()
        .filter(|r| r.commit.as_deref() == Some(commit) && r.serial == h.desired_serial)
    {
        match r.outcome {
            Outcome::RolledBack => {
                return ApplyResult::RolledBack {
                    reason: r.message.clone(),
                }
            }
            Outcome::Failed | Outcome::Rejected => {
                return ApplyResult::Failed {
                    reason: r.message.clone(),
                }
            }
            Outcome::Applied | Outcome::Unchanged | Outcome::Drift | Outcome::Healed | Outcome::InSync => {}
        }
    }
    let synced = h.applied_commit.as_deref() == Some(commit)
        && h.applied_serial.is_some()
        && h.applied_serial == h.desired_serial
        && h.pending_keys == 0;
    match (synced, h.applied_serial) {
        (true, Some(serial)) => ApplyResult::Applied { serial },
        _ => ApplyResult::Pending,
    }
}

/// Each drifted host's drift, with what its last drift report says was
/// expected and found.
pub fn drift_items(
    snap: &StatusSnapshot,
    since: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<DriftItem>> {
    let mut out = BTreeMap::new();
    for (name, h) in &snap.hosts {
        if h.drift.is_empty() {
            continue;
        }
        let detail: BTreeMap<&str, (&str, &str)> = h
            .last_report
            .iter()
            .filter(|r| r.outcome == Outcome::Drift)
            .flat_map(|r| r.changes.iter())
            .map(|c| (c.resource.as_str(), (c.expected.as_str(), c.actual.as_str())))
            .collect();
        let items = h
            .drift
            .iter()
            .map(|res| {
                let (expected, actual) = detail.get(res.as_str()).copied().unwrap_or(("", ""));
                DriftItem {
                    resource: res.clone(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                    since: since.get(name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        out.insert(name.clone(), items);
    }
    out
}

/// A fingerprint of the drift (which hosts, which resources).
pub fn drift_fingerprint(snap: &StatusSnapshot) -> String {
    let d: BTreeMap<&String, &Vec<String>> = snap
        .hosts
        .iter()
        .filter(|(_, h)| !h.drift.is_empty())
        .map(|(n, h)| (n, &h.drift))
        .collect();
    warren_plan::hash_hex(&d)
}

/// `2026-11-26 01:32Z` for unix seconds.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}Z", rem / 3600, rem % 3600 / 60)
}

/// The worker's messages.
#[derive(Debug)]
pub enum ForgeMsg {
    Pr(PrEvent),
}

/// The worker: its forge, its own handle on the mirror, its memory.
pub struct Worker<P: Poster> {
    pub opts: ForgeOptions,
    pub poster: P,
    pub repo: Repo,
    pub branch: String,
    pub state_dir: PathBuf,
    pub memory: Memory,
    /// The status snapshot last acted on (`at`), to skip unchanged ones.
    last_at: Option<u64>,
}

impl<P: Poster> Worker<P> {
    pub fn new(opts: ForgeOptions, poster: P, repo: Repo, branch: &str, state_dir: &Path) -> Worker<P> {
        Worker {
            opts,
            poster,
            repo,
            branch: branch.to_string(),
            state_dir: state_dir.to_path_buf(),
            memory: Memory::load(state_dir),
            last_at: None,
        }
    }

    fn links(&self) -> Links {
        Links {
            forge: self.opts.kind,
            web_url: self.opts.web_url.clone(),
            repo: self.opts.repo.clone(),
        }
    }

    fn is_ours(&self, pr: u64) -> impl Fn(&str) -> bool {
        let instance = self.opts.instance.clone();
        move |body: &str| {
            render::parse_marker(body.lines().next().unwrap_or(""))
                .is_some_and(|m| m.instance == instance && m.pr == pr)
        }
    }

    /// A pull request event.
    pub fn on_pr(&mut self, ev: &PrEvent, now: u64) -> Result<()> {
        if ev.base_ref != self.branch {
            tracing::info!(
                pr = ev.number,
                base = ev.base_ref,
                "forge: not the deploy branch; no preview"
            );
            return Ok(());
        }
        match &ev.action {
            PrAction::Opened | PrAction::Synchronized => self.preview(ev.number, &ev.head_sha, now),
            PrAction::Merged { merge_commit } => {
                let m = self.memory.prs.entry(ev.number).or_default();
                m.merged = Some(merge_commit.clone());
                m.done = false;
                self.memory.merges.insert(merge_commit.clone(), ev.number);
                self.memory.save(&self.state_dir)?;
                self.poster
                    .status(merge_commit, APPLY_CONTEXT, State::Pending, "merged; applying")?;
                self.render_merged(ev.number, now, None)
            }
            PrAction::Closed => {
                tracing::info!(pr = ev.number, "forge: closed without merging");
                self.memory.prs.remove(&ev.number);
                self.memory.save(&self.state_dir)
            }
        }
    }

    /// Plan the merge of `head` onto the branch and post it.
    fn preview(&mut self, pr: u64, head_hint: &str, now: u64) -> Result<()> {
        // A head planned before keeps its status while it is planned again
        // (a re-sent event, or the base moved): no pending/success flapping.
        let known = self.memory.prs.get(&pr).is_some_and(|m| m.head == head_hint);
        if !known {
            self.poster
                .status(head_hint, PLAN_CONTEXT, State::Pending, "planning")?;
        }
        let (head, base) = self.repo.fetch_pr(pr)?;
        if head != head_hint {
            tracing::info!(
                pr,
                head,
                "forge: the PR moved on since the event; planning its newest head"
            );
        }
        let merged = self.repo.merged_text(&base, &head)?;
        let base_text = self.repo.at(&base)?.text.unwrap_or_default();
        let snap = StatusSnapshot::read(&self.state_dir).unwrap_or_default();
        let (before, _) = plans(&base_text, &snap);
        let (after, findings) = plans(&merged.text, &snap);
        let invalid = findings.iter().any(|f| f.severity == render::Severity::Error);
        let mut p = crate::cmd::preview::assemble(crate::cmd::preview::Assembly {
            instance: self.opts.instance.clone(),
            pr,
            head_sha: head.clone(),
            base_ref: self.branch.clone(),
            base_sha: base.clone(),
            links: Some(self.links()),
            conflict: merged.conflict,
            findings,
            before,
            after,
        });
        // Drift on these hosts now is what merging would revert.
        for (host, items) in drift_items(&snap, &self.memory.drift_since) {
            if let Some(h) = p.hosts.get_mut(&host) {
                h.drift = items;
            }
        }
        p.updated_at = Some(utc(now));
        let body = render::comment(&p, render::DEFAULT_BUDGET);
        let ours = self.is_ours(pr);
        self.poster.upsert_comment(pr, &ours, &body)?;
        let (state, desc) = if invalid {
            (
                State::Failure,
                "warren.yaml is invalid at the merge result".to_string(),
            )
        } else {
            (State::Success, render::summary_line(&p))
        };
        self.poster.status(&head, PLAN_CONTEXT, state, &desc)?;
        self.memory.prs.insert(
            pr,
            PrMemory {
                head,
                base_ref: self.branch.clone(),
                base_sha: base,
                merged: None,
                done: false,
            },
        );
        self.memory.save(&self.state_dir)
    }

    /// The comment of a merged PR, re-rendered with the rollout's results
    /// (and the drift of the deployed commit, when it is this one).
    fn render_merged(&mut self, pr: u64, now: u64, snap: Option<&StatusSnapshot>) -> Result<()> {
        let Some(m) = self.memory.prs.get(&pr).cloned() else {
            return Ok(());
        };
        let Some(merge_commit) = m.merged.clone() else {
            return Ok(());
        };
        let owned;
        let snap = match snap {
            Some(s) => s,
            None => {
                owned = StatusSnapshot::read(&self.state_dir).unwrap_or_default();
                &owned
            }
        };
        // The merge commit may not be in the mirror yet (the main loop's
        // fetch brings it); until then show the previewed merge.
        let after_text = match self.repo.at(&merge_commit) {
            Ok(s) => s.text.unwrap_or_default(),
            Err(_) => self.repo.merged_text(&m.base_sha, &m.head)?.text,
        };
        let base_text = self
            .repo
            .at(&m.base_sha)
            .ok()
            .and_then(|s| s.text)
            .unwrap_or_default();
        let (before, _) = plans(&base_text, snap);
        let (after, findings) = plans(&after_text, snap);
        let mut p = crate::cmd::preview::assemble(crate::cmd::preview::Assembly {
            instance: self.opts.instance.clone(),
            pr,
            head_sha: m.head.clone(),
            base_ref: m.base_ref.clone(),
            base_sha: m.base_sha.clone(),
            links: Some(self.links()),
            conflict: false,
            findings,
            before,
            after,
        });
        p.phase = Phase::Merged {
            merge_commit: merge_commit.clone(),
        };
        let (results, _) = apply_results(snap, &merge_commit);
        for (host, r) in results {
            if let Some(h) = p.hosts.get_mut(&host) {
                h.apply = Some(r);
            }
        }
        if snap.good_commit.as_deref() == Some(merge_commit.as_str()) {
            for (host, items) in drift_items(snap, &self.memory.drift_since) {
                p.hosts.entry(host).or_default().drift = items;
            }
            for (host, at) in &self.memory.drift_resolved {
                if let Some(h) = p.hosts.get_mut(host) {
                    if h.drift.is_empty() {
                        h.drift_resolved = Some(at.clone());
                    }
                }
            }
        }
        p.updated_at = Some(utc(now));
        let body = render::comment(&p, render::DEFAULT_BUDGET);
        let ours = self.is_ours(pr);
        self.poster.upsert_comment(pr, &ours, &body)
    }

    /// `status.json` changed: rollouts and drift.
    pub fn on_status(&mut self, snap: &StatusSnapshot, now: u64) -> Result<()> {
        if self.last_at == Some(snap.at) {
            return Ok(());
        }
        self.last_at = Some(snap.at);
        self.track_drift_times(snap, now);
        // Rollouts of merged PRs.
        let open: Vec<(u64, String)> = self
            .memory
            .prs
            .iter()
            .filter(|(_, m)| !m.done)
            .filter_map(|(n, m)| m.merged.clone().map(|c| (*n, c)))
            .collect();
        for (pr, commit) in open {
            let (_, over) = apply_results(snap, &commit);
            let superseded = snap.good_commit.as_deref() != Some(commit.as_str())
                && !snap
                    .hosts
                    .values()
                    .any(|h| h.plan_commit.as_deref() == Some(commit.as_str()));
            let finished = match (over, superseded) {
                (Some(ok), _) => Some(ok),
                (None, true) => Some(false),
                (None, false) => None,
            };
            self.render_merged(pr, now, Some(snap))?;
            if let Some(ok) = finished {
                let (state, desc) = if ok {
                    (State::Success, "applied on every host it changes")
                } else if superseded {
                    (State::Failure, "superseded by a newer commit before it applied")
                } else {
                    (State::Failure, "not applied on every host: see the PR comment")
                };
                self.poster.status(&commit, APPLY_CONTEXT, state, desc)?;
                if let Some(m) = self.memory.prs.get_mut(&pr) {
                    m.done = true;
                }
                self.memory.save(&self.state_dir)?;
            }
        }
        // A deployed commit without a PR.
        if let Some(good) = snap.good_commit.clone() {
            if !self.memory.merges.contains_key(&good) && !self.memory.direct_done.contains(&good) {
                self.direct_push(snap, &good)?;
            }
        }
        self.drift(snap, now)?;
        self.replan_open(snap, now)
    }

    /// The branch moved or the drift changed: what merging an open PR would
    /// do changed too, so plan each open PR again (its comment is edited
    /// only if the body changed).
    fn replan_open(&mut self, snap: &StatusSnapshot, now: u64) -> Result<()> {
        let Some(good) = snap.good_commit.clone() else {
            return Ok(());
        };
        let key = (good, drift_fingerprint(snap));
        if self.memory.open_planned_at.as_ref() == Some(&key) {
            return Ok(());
        }
        let first = self.memory.open_planned_at.is_none();
        self.memory.open_planned_at = Some(key);
        self.memory.save(&self.state_dir)?;
        if first {
            return Ok(());
        }
        let open: Vec<(u64, String)> = self
            .memory
            .prs
            .iter()
            .filter(|(_, m)| m.merged.is_none())
            .map(|(n, m)| (*n, m.head.clone()))
            .collect();
        for (pr, head) in open {
            if let Err(e) = self.preview(pr, &head, now) {
                tracing::warn!(pr, "forge: planning an open PR again: {e:#}");
            }
        }
        Ok(())
    }

    fn direct_push(&mut self, snap: &StatusSnapshot, commit: &str) -> Result<()> {
        let (results, over) = apply_results(snap, commit);
        match over {
            None => self
                .poster
                .status(commit, APPLY_CONTEXT, State::Pending, "applying"),
            Some(ok) => {
                let state = if ok { State::Success } else { State::Failure };
                let desc = if ok {
                    "applied on every host it changes"
                } else {
                    "not applied on every host"
                };
                self.poster.status(commit, APPLY_CONTEXT, state, desc)?;
                let mut body = format!(
                    "<!-- warren:apply v=1 instance={} -->\n**Warren** applied `{}` (pushed without a pull request):\n\n",
                    self.opts.instance,
                    &commit[..commit.len().min(12)]
                );
                for (host, r) in &results {
                    body.push_str(&format!("- `{host}`: {}\n", render::shorten_keys(&apply_word(r))));
                }
                if results.is_empty() {
                    body.push_str("- no host's plan changed\n");
                }
                self.poster.commit_comment(commit, &body)?;
                self.memory.direct_done.push(commit.to_string());
                let n = self.memory.direct_done.len();
                if n > 100 {
                    self.memory.direct_done.drain(..n - 100);
                }
                self.memory.save(&self.state_dir)
            }
        }
    }

    /// Remember when each host's drift began and ended.
    fn track_drift_times(&mut self, snap: &StatusSnapshot, now: u64) {
        for (name, h) in &snap.hosts {
            if h.drift.is_empty() {
                if self.memory.drift_since.remove(name).is_some() {
                    self.memory.drift_resolved.insert(name.clone(), utc(now));
                }
            } else if !self.memory.drift_since.contains_key(name) {
                self.memory.drift_since.insert(name.clone(), utc(now));
                self.memory.drift_resolved.remove(name);
            }
        }
    }

    /// Drift of the deployed commit: reported on a change of drift only.
    fn drift(&mut self, snap: &StatusSnapshot, now: u64) -> Result<()> {
        let Some(good) = snap.good_commit.clone() else {
            return Ok(());
        };
        let fp = drift_fingerprint(snap);
        let key = (good.clone(), fp);
        if self.memory.drift_reported.as_ref() == Some(&key) {
            return Ok(());
        }
        let drifted: Vec<&String> = snap
            .hosts
            .iter()
            .filter(|(_, h)| !h.drift.is_empty())
            .map(|(n, _)| n)
            .collect();
        let (state, desc) = if drifted.is_empty() {
            (
                State::Success,
                "no drift: every host matches its plan".to_string(),
            )
        } else {
            let names: Vec<&str> = drifted.iter().map(|s| s.as_str()).collect();
            (
                State::Failure,
                format!("{} host(s) drifted: {}", names.len(), names.join(", ")),
            )
        };
        // No drift ever reported for this commit: nothing to say yet.
        let reported_before = self
            .memory
            .drift_reported
            .as_ref()
            .is_some_and(|(c, _)| *c == good);
        let first_and_clean = drifted.is_empty() && !reported_before;
        if !first_and_clean {
            self.poster.status(&good, DRIFT_CONTEXT, state, &desc)?;
            if let Some(pr) = self.memory.merges.get(&good).copied() {
                self.render_merged(pr, now, Some(snap))?;
            }
        }
        self.memory.drift_reported = Some(key);
        self.memory.save(&self.state_dir)
    }
}

fn apply_word(r: &ApplyResult) -> String {
    match r {
        ApplyResult::Pending => "pending".into(),
        ApplyResult::Applied { serial } => format!("applied (serial {serial})"),
        ApplyResult::RolledBack { reason } => format!("rolled back: {reason}"),
        ApplyResult::Failed { reason } => format!("failed: {reason}"),
    }
}

/// Compile `text` with the keys agents reported (as the main loop does), so
/// before and after differ only by the change itself.
fn plans(text: &str, snap: &StatusSnapshot) -> (BTreeMap<String, Plan>, Vec<render::Finding>) {
    crate::cmd::preview::head_plans(text, Some(snap))
}

/// Events in order, except that of several opens/updates of one PR only the
/// last stays (merges and closes all stay, in their place).
pub fn coalesce(batch: Vec<PrEvent>) -> Vec<PrEvent> {
    let update = |e: &PrEvent| matches!(e.action, PrAction::Opened | PrAction::Synchronized);
    let mut last: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, e) in batch.iter().enumerate() {
        if update(e) {
            last.insert(e.number, i);
        }
    }
    batch
        .into_iter()
        .enumerate()
        .filter(|(i, e)| !update(e) || last.get(&e.number) == Some(i))
        .map(|(_, e)| e)
        .collect()
}

/// Start the worker thread: PR events from `rx`, `status.json` once a second.
pub fn spawn<P: Poster + Send + 'static>(
    opts: ForgeOptions,
    poster: P,
    mirror: &Path,
    source: &str,
    branch: &str,
    access: Access,
    state_dir: &Path,
) -> Result<mpsc::SyncSender<ForgeMsg>> {
    let repo = Repo::open(mirror, source, branch, access)?;
    let (tx, rx) = mpsc::sync_channel::<ForgeMsg>(64);
    let mut w = Worker::new(opts, poster, repo, branch, state_dir);
    std::thread::Builder::new()
        .name("warren-forge".into())
        .spawn(move || loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(ForgeMsg::Pr(ev)) => {
                    // Whatever queued up meanwhile: a burst of updates to one
                    // PR is planned once, for its newest head.
                    let mut batch = vec![ev];
                    while let Ok(ForgeMsg::Pr(more)) = rx.try_recv() {
                        batch.push(more);
                    }
                    for ev in coalesce(batch) {
                        if let Err(e) = w.on_pr(&ev, warren_host::unix_now()) {
                            tracing::error!(pr = ev.number, "forge: {e:#}");
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(snap) = StatusSnapshot::read(&w.state_dir) {
                        if let Err(e) = w.on_status(&snap, warren_host::unix_now()) {
                            tracing::error!("forge: {e:#}");
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        })
        .context("cannot start the forge worker")?;
    Ok(tx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use warren_wire::Report;

    fn host(plan_commit: &str, applied: Option<(&str, u64)>, desired: u64) -> HostSnapshot {
        HostSnapshot {
            plan_commit: Some(plan_commit.into()),
            desired_serial: Some(desired),
            applied_commit: applied.map(|(c, _)| c.to_string()),
            applied_serial: applied.map(|(_, s)| s),
            connected: true,
            ..HostSnapshot::default()
        }
    }

    fn report(commit: &str, serial: u64, outcome: Outcome, message: &str) -> Report {
        Report {
            seq: 1,
            host: "h".into(),
            serial: Some(serial),
            commit: Some(commit.into()),
            outcome,
            message: message.into(),
            changes: vec![],
            at: 0,
        }
    }

    #[test]
    fn a_rollout_is_over_when_every_host_it_changes_applied_or_failed() {
        let mut snap = StatusSnapshot::default();
        snap.hosts
            .insert("gateway".into(), host("c2", Some(("c1", 4)), 5));
        snap.hosts.insert("router".into(), host("c2", Some(("c2", 7)), 7));
        // A host the commit did not change is not part of its rollout.
        snap.hosts.insert("other".into(), host("c1", Some(("c1", 2)), 2));
        let (r, over) = apply_results(&snap, "c2");
        assert_eq!(over, None);
        assert_eq!(r["gateway"], ApplyResult::Pending);
        assert_eq!(r["router"], ApplyResult::Applied { serial: 7 });
        assert!(!r.contains_key("other"));
        snap.hosts.get_mut("gateway").unwrap().last_report =
            Some(report("c2", 5, Outcome::RolledBack, "not confirmed in time"));
        let (r, over) = apply_results(&snap, "c2");
        assert_eq!(over, Some(false));
        assert_eq!(
            r["gateway"],
            ApplyResult::RolledBack {
                reason: "not confirmed in time".into()
            }
        );
        let g = snap.hosts.get_mut("gateway").unwrap();
        g.last_report = Some(report("c2", 5, Outcome::Applied, "ok"));
        g.applied_commit = Some("c2".into());
        g.applied_serial = Some(5);
        assert_eq!(apply_results(&snap, "c2").1, Some(true));
        // A plan still awaiting a peer key is not applied yet.
        snap.hosts.get_mut("gateway").unwrap().pending_keys = 1;
        assert_eq!(apply_results(&snap, "c2").1, None);
    }

    #[test]
    fn drift_items_carry_expected_and_actual_from_the_drift_report() {
        let mut snap = StatusSnapshot::default();
        let mut h = host("c1", Some(("c1", 2)), 2);
        h.drift = vec!["table ip warren".into()];
        let mut r = report("c1", 2, Outcome::Drift, "drift");
        r.changes = vec![warren_plan::Change {
            resource: "table ip warren".into(),
            expected: "present".into(),
            actual: "absent".into(),
            op: warren_plan::Op::Nft(warren_plan::NftOp::DeleteTable),
        }];
        h.last_report = Some(r);
        snap.hosts.insert("router".into(), h);
        snap.hosts
            .insert("gateway".into(), host("c1", Some(("c1", 3)), 3));
        let since = BTreeMap::from([("router".to_string(), "2026-11-26 01:00Z".to_string())]);
        let d = drift_items(&snap, &since);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d["router"],
            vec![DriftItem {
                resource: "table ip warren".into(),
                expected: "present".into(),
                actual: "absent".into(),
                since: "2026-11-26 01:00Z".into()
            }]
        );
        let fp = drift_fingerprint(&snap);
        snap.hosts.get_mut("router").unwrap().drift.clear();
        assert_ne!(
            fp,
            drift_fingerprint(&snap),
            "a change of drift changes the fingerprint"
        );
    }

    #[test]
    fn a_burst_of_updates_to_one_pr_is_planned_once_and_merges_keep_their_place() {
        let ev = |n: u64, action: PrAction, head: &str| PrEvent {
            forge: ForgeKind::Github,
            action,
            number: n,
            head_sha: head.into(),
            head_ref: "f".into(),
            base_ref: "main".into(),
            repo: "o/r".into(),
        };
        let merged = PrAction::Merged {
            merge_commit: "m".into(),
        };
        let out = coalesce(vec![
            ev(1, PrAction::Opened, "a"),
            ev(2, PrAction::Synchronized, "x"),
            ev(1, PrAction::Synchronized, "b"),
            ev(3, merged.clone(), "y"),
            ev(1, PrAction::Synchronized, "c"),
        ]);
        let heads: Vec<&str> = out.iter().map(|e| e.head_sha.as_str()).collect();
        assert_eq!(heads, ["x", "y", "c"]);
        assert_eq!(out[1].action, merged);
    }

    #[test]
    fn utc_text_and_web_urls() {
        assert_eq!(utc(0), "1970-01-01 00:00Z");
        assert_eq!(utc(1_795_656_720), "2026-11-26 01:32Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00Z");
        assert_eq!(
            web_url_of(ForgeKind::Github, "https://api.github.com"),
            "https://github.com"
        );
        assert_eq!(
            web_url_of(ForgeKind::Github, "https://ghe.example/api/v3/"),
            "https://ghe.example"
        );
        assert_eq!(
            web_url_of(ForgeKind::Gitea, "https://git.example/api/v1"),
            "https://git.example"
        );
    }
}
