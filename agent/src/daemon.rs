//! `warren-agent run`: take plans and confirmations from the inbox, roll
//! back what is not confirmed in time, and watch for drift. With no
//! controller at all it keeps enforcing (or reporting) the last good plan.
//!
//! It also runs `doctor`'s checks (at start-up, after each apply and its
//! handshake grace, and every `doctor_interval_secs`) and keeps their
//! findings in the state directory, where the transport picks them up for
//! `Status`.
//!
//! It only schedules: every decision about a plan is the engine's, and it
//! never talks to the controller (the transport fills the inbox).

use crate::engine::Engine;
use crate::sys::{Live, Sys};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};
use warren_plan::{Drift, Envelope, Finding, SignedPlan};
use warren_wire::Outcome;

pub const MAX_PLAN_BYTES: u64 = 8 * 1024 * 1024;

pub fn read_plan(path: &Path) -> Result<SignedPlan> {
    let meta = std::fs::metadata(path)?;
    anyhow::ensure!(
        meta.len() <= MAX_PLAN_BYTES,
        "{} is {} bytes; the limit is {MAX_PLAN_BYTES}",
        path.display(),
        meta.len()
    );
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a signed plan: {e}", path.display()))
}

/// Run the daemon for ever. It never exits on a state-file error (a
/// corrupt file, a full disk, EIO): it logs, reports what it can, and keeps
/// running the plan it has, because a crash loop would stop rollbacks and
/// drift checks too.
pub fn run(e: Engine) -> Result<()> {
    tracing::info!(host = %e.cfg.host, state = %e.cfg.state_dir.display(), "agent running");
    let mut d = Daemon::new(e);
    let leftover = d.e.start_up();
    d.take_inbox(leftover.as_ref());
    d.run_doctor();
    loop {
        d.tick();
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The confirm window of an unconfirmed running plan. The deadline is
/// monotonic and in memory only: a wall-clock step cannot move it, and after
/// a restart the window starts again at start-up.
#[derive(Clone, Copy, Debug)]
struct Window {
    serial: u64,
    deadline: Instant,
}

struct Daemon<S: Sys = Live> {
    e: Engine<S>,
    drift_every: Duration,
    next_drift: Instant,
    last_drift: Option<String>,
    window: Option<Window>,
    /// A confirmation received but not yet written (the disk was full):
    /// the plan is confirmed in memory, never rolled back, and the write is
    /// retried.
    unsaved_confirm: Option<u64>,
    /// The last state-directory error logged, so a lasting one is logged
    /// once, not every loop.
    last_error: Option<String>,
    doctor_every: Duration,
    /// When the doctor runs next: periodically, and once more when the WAN
    /// VPN's handshake grace after an apply (or start-up) has passed.
    next_doctor: Instant,
    /// Unix seconds this daemon started (the handshake grace after a reboot).
    started_at: u64,
    /// The findings last written, so an unchanged result is not rewritten.
    last_findings: Option<Vec<Finding>>,
}

impl<S: Sys> Daemon<S> {
    fn new(e: Engine<S>) -> Daemon<S> {
        let drift_every = Duration::from_secs(e.cfg.drift_interval_secs.max(1));
        let doctor_every = Duration::from_secs(e.cfg.doctor_interval_secs.max(1));
        Daemon {
            doctor_every,
            next_doctor: Instant::now(),
            started_at: warren_host::unix_now(),
            last_findings: None,
            e,
            drift_every,
            next_drift: Instant::now(),
            last_drift: None,
            window: None,
            unsaved_confirm: None,
            last_error: None,
        }
    }

    fn tick(&mut self) {
        self.take_inbox(None);
        if self.roll_back_if_late() {
            self.next_drift = Instant::now() + self.drift_every;
        }
        if Instant::now() >= self.next_drift {
            self.next_drift = Instant::now() + self.drift_every;
            if let Some(serial) = self.unsaved_confirm {
                self.confirm(serial);
            }
            check_drift(&mut self.e, &mut self.last_drift);
        }
        if Instant::now() >= self.next_doctor {
            self.run_doctor();
        }
    }

    /// Run the doctor now, write its findings if they changed, and plan the
    /// next run: after the handshake grace while one is pending, else after
    /// the interval.
    fn run_doctor(&mut self) {
        let findings = doctor(&self.e, Some(self.started_at));
        let waiting = findings
            .iter()
            .any(|f| f.check == "wan-handshake" && f.what.contains("waiting for the first handshake"));
        let next = if waiting {
            Duration::from_secs(2).min(self.doctor_every)
        } else {
            self.doctor_every
        };
        self.next_doctor = Instant::now() + next;
        if self.last_findings.as_ref() == Some(&findings) {
            return;
        }
        for f in findings
            .iter()
            .filter(|f| f.severity != warren_plan::Severity::Ok)
        {
            tracing::warn!(check = %f.check, severity = f.severity.as_str(), fix = %f.fix, "doctor: {}", f.what);
        }
        match self.e.store.set_findings(&findings) {
            Ok(()) => self.last_findings = Some(findings),
            Err(err) => self.complain(format!("cannot record the doctor's findings: {err:#}")),
        }
    }

    /// Log a state-directory error once while it lasts.
    fn complain(&mut self, msg: String) {
        if self.last_error.as_ref() != Some(&msg) {
            tracing::error!("{msg}");
            self.last_error = Some(msg);
        }
    }

    /// Plans, then confirmations, in name order; each file is removed once
    /// handled. A plan whose envelope is `leftover` (the journaled apply
    /// finished or undone at start-up) is only removed.
    fn take_inbox(&mut self, leftover: Option<&Envelope>) {
        let names = match std::fs::read_dir(self.e.store.inbox()) {
            Ok(rd) => {
                let mut v: Vec<_> = rd.flatten().map(|d| d.path()).collect();
                v.sort();
                v
            }
            Err(err) => return self.complain(format!("cannot read the inbox: {err}")),
        };
        for p in names {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                continue;
            }
            if let Some(serial) = name.strip_prefix("confirm-").and_then(|s| s.parse::<u64>().ok()) {
                self.confirm(serial);
            } else if name.ends_with(".json") {
                take_plan(&mut self.e, &p, leftover);
                // After the report: the handshake check starts its grace now.
                self.next_doctor = Instant::now();
            }
            let _ = std::fs::remove_file(&p);
        }
    }

    /// Confirm `serial` if it runs. The window closes even when the
    /// confirmation cannot be written: the controller confirmed it.
    fn confirm(&mut self, serial: u64) {
        match self.e.confirm(serial) {
            Ok(true) => {
                if self.unsaved_confirm.take().is_some() || self.window.is_some() {
                    tracing::info!(serial, "plan confirmed");
                }
                self.window = None;
            }
            Ok(false) => {
                tracing::debug!(serial, "confirmation for a plan that does not run: ignored");
                if self.unsaved_confirm == Some(serial) {
                    self.unsaved_confirm = None;
                }
            }
            Err(err) => {
                self.complain(format!(
                    "cannot record the confirmation of serial {serial}: {err:#}; \
                     keeping the plan and retrying every drift interval"
                ));
                // Only the running serial's window closes (see roll_back_if_late).
                self.unsaved_confirm = Some(serial);
            }
        }
    }

    /// Open, keep or close the confirm window of the running plan; roll it
    /// back once the window has passed. Whether it rolled back.
    fn roll_back_if_late(&mut self) -> bool {
        let a = match self.e.running() {
            Ok(a) => a,
            Err(err) => {
                self.complain(format!("cannot read the running plan: {err:#}"));
                return false;
            }
        };
        let Some(a) = a.filter(|a| !a.confirmed) else {
            self.window = None;
            return false;
        };
        let serial = a.signed.envelope.serial;
        if self.unsaved_confirm == Some(serial) {
            return false;
        }
        let now = Instant::now();
        let w = match self.window {
            Some(w) if w.serial == serial => w,
            _ => {
                let secs = Duration::from_secs(u64::from(a.signed.envelope.confirm_secs));
                let w = Window {
                    serial,
                    deadline: now.checked_add(secs).unwrap_or(now),
                };
                self.window = Some(w);
                w
            }
        };
        if now < w.deadline {
            return false;
        }
        tracing::warn!(serial, "not confirmed in time: rolling back");
        self.next_doctor = Instant::now();
        if let Err(err) = self.e.rollback() {
            tracing::error!("rollback failed: {err:#}");
        }
        // A failed rollback leaves the plan unconfirmed: it is tried again
        // after another window, not in a tight loop.
        self.window = None;
        true
    }
}

/// The doctor's findings against the running plan. `started`: when the
/// daemon started (the WAN VPN's handshake grace starts at the later of
/// that and the apply).
pub fn doctor<S: Sys>(e: &Engine<S>, started: Option<u64>) -> Vec<Finding> {
    let running = match e.running() {
        Ok(a) => a,
        Err(err) => {
            tracing::warn!("doctor: cannot read the running plan: {err:#}");
            None
        }
    };
    let router = running.as_ref().and_then(|a| e.read_router(&a.signed.plan));
    let cx = crate::doctor::Context {
        plan: running.as_ref().map(|a| &a.signed.plan),
        applied: running.is_some(),
        issued_at: running.as_ref().map(|a| a.signed.envelope.issued_at),
        up_since: running.as_ref().map(|a| a.applied_at.max(started.unwrap_or(0))),
        wg_mode: e.cfg.wireguard,
        now: warren_host::unix_now(),
        router: router.as_ref(),
    };
    crate::doctor::run(&e.sys, &cx)
}

fn take_plan<S: Sys>(e: &mut Engine<S>, path: &Path, leftover: Option<&Envelope>) {
    match read_plan(path) {
        Ok(sp) if Some(&sp.envelope) == leftover => {
            tracing::info!(
                serial = sp.envelope.serial,
                "the inbox copy of the interrupted apply was handled at start-up"
            );
        }
        Ok(sp) => {
            let serial = sp.envelope.serial;
            match e.apply_signed(sp, false) {
                Ok(c) => tracing::info!(serial, changes = c.len(), "plan applied; awaiting confirmation"),
                Err(err) => tracing::warn!(serial, "{err}"),
            }
        }
        Err(err) => e.report(None, Outcome::Rejected, &format!("{err:#}"), vec![]),
    }
}

/// Report drift (logged per resource when it is new), heal it if the plan
/// says so, and report when the state is back in sync.
fn check_drift<S: Sys>(e: &mut Engine<S>, last_drift: &mut Option<String>) {
    match e.drift() {
        Ok(Some((a, changes))) if !changes.is_empty() => {
            let summary: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
            let summary = summary.join("; ");
            if last_drift.as_deref() != Some(summary.as_str()) {
                for c in &changes {
                    tracing::warn!(resource = %c.resource, expected = %c.expected, actual = %c.actual, "drift");
                }
            }
            e.report(Some(&a.signed), Outcome::Drift, &summary, changes);
            *last_drift = Some(summary);
            if a.signed.plan.drift == Drift::Heal {
                heal(e, &a.signed, last_drift);
            }
        }
        Ok(Some((a, _))) => {
            if last_drift.take().is_some() {
                e.report(
                    Some(&a.signed),
                    Outcome::InSync,
                    "live state matches the plan again",
                    vec![],
                );
            }
        }
        Ok(None) => {}
        Err(err) => tracing::warn!("drift check failed: {err:#}"),
    }
}

fn heal<S: Sys>(e: &mut Engine<S>, signed: &SignedPlan, last_drift: &mut Option<String>) {
    match e.heal() {
        Ok(c) => {
            e.report(
                Some(signed),
                Outcome::Healed,
                &format!("{} changes re-applied", c.len()),
                c,
            );
            *last_drift = None;
        }
        Err(err) => tracing::error!("heal failed: {err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use crate::testing::scratch;
    use ed25519_dalek::SigningKey;

    const KEY: [u8; 32] = [5; 32];

    fn daemon(dir: &Path) -> Daemon<Recorder> {
        Daemon::new(crate::testing::pretend_engine(dir, KEY))
    }

    fn plan(serial: u64) -> SignedPlan {
        let p = warren_plan::Plan::empty("router");
        warren_plan::sign(p, serial, "c0ffee", 60, 1, &SigningKey::from_bytes(&KEY))
    }

    /// Rewrite the running plan's wall-clock `applied_at`.
    fn jump(d: &Daemon<Recorder>, applied_at: u64) {
        let mut a = d.e.store.applied().unwrap().unwrap();
        a.applied_at = applied_at;
        d.e.store.set_applied(Some(&a)).unwrap();
    }

    #[test]
    fn confirm_windows_are_monotonic_whatever_applied_at_says() {
        let year = 365 * 86_400;
        for applied_at in [0, warren_host::unix_now() - year, warren_host::unix_now() + year] {
            let dir = scratch("daemon-window");
            let mut d = daemon(&dir);
            d.e.apply_signed(plan(2), false).unwrap();
            jump(&d, applied_at);
            assert!(
                !d.roll_back_if_late(),
                "applied_at {applied_at}: rolled back at once"
            );
            let w = d.window.expect("the window is open");
            assert!(w.deadline > Instant::now() + Duration::from_secs(50));
            // The window passes (monotonic time): rolled back, whatever the wall clock.
            d.window = Some(Window {
                serial: 2,
                deadline: Instant::now(),
            });
            assert!(d.roll_back_if_late());
            assert!(d.e.store.applied().unwrap().is_none());
        }
    }

    #[test]
    fn the_doctor_runs_after_an_apply_and_records_its_findings_for_status() {
        let dir = scratch("daemon-doctor");
        let mut d = daemon(&dir);
        d.run_doctor();
        let before = d.e.store.findings().unwrap();
        // No plan: the checks that need one are skipped, ip_forward 0 is fine.
        let fwd = before.iter().find(|f| f.check == "ip-forward").unwrap();
        assert_eq!(fwd.what, "net.ipv4.ip_forward = 0 (no plan runs here yet)");
        assert!(d.next_doctor > Instant::now() + Duration::from_secs(200));
        let mut p = warren_plan::Plan::empty("router");
        p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        let sp = warren_plan::sign(p, 2, "c0ffee", 60, 1, &SigningKey::from_bytes(&KEY));
        std::fs::write(
            d.e.store.inbox().join("00000000000000000002.plan.json"),
            warren_plan::canonical(&sp),
        )
        .unwrap();
        // The Recorder's sysctl write took; the host says 0 again (reset by something else).
        d.take_inbox(None);
        assert!(d.next_doctor <= Instant::now(), "due at once after the apply");
        d.e.sys
            .files
            .insert(crate::backend::sysctl::path("net.ipv4.ip_forward"), "0\n".into());
        d.tick();
        let after = d.e.store.findings().unwrap();
        let fwd = after.iter().find(|f| f.check == "ip-forward").unwrap();
        assert_eq!(fwd.severity, warren_plan::Severity::Breaks, "{fwd:?}");
        let stamp = d.e.store.status_stamp();
        d.run_doctor();
        assert_eq!(
            d.e.store.status_stamp(),
            stamp,
            "unchanged findings are not rewritten"
        );
    }

    #[test]
    fn a_confirmed_plan_has_no_window_and_a_confirm_that_cannot_be_written_still_counts() {
        let dir = scratch("daemon-confirmed");
        let mut d = daemon(&dir);
        d.e.apply_signed(plan(2), true).unwrap();
        jump(&d, 0);
        assert!(!d.roll_back_if_late());
        assert!(d.window.is_none());

        d.e.apply_signed(plan(3), false).unwrap();
        assert!(!d.roll_back_if_late());
        // The state directory cannot be written: the confirm still closes the window.
        std::fs::create_dir(dir.join("applied.json.tmp")).unwrap();
        d.confirm(3);
        assert_eq!(d.unsaved_confirm, Some(3));
        d.window = Some(Window {
            serial: 3,
            deadline: Instant::now(),
        });
        assert!(!d.roll_back_if_late(), "a confirmed plan is never rolled back");
        std::fs::remove_dir(dir.join("applied.json.tmp")).unwrap();
        d.confirm(3);
        assert_eq!(d.unsaved_confirm, None);
        assert!(d.e.store.applied().unwrap().unwrap().confirmed);
    }
}
