//! `warren-agent run`: take plans and confirmations from the inbox, roll
//! back what is not confirmed in time, and watch for drift. With no
//! controller at all it keeps enforcing (or reporting) the last good plan.
//!
//! It only schedules: every decision about a plan is the engine's, and it
//! never talks to the controller (the transport fills the inbox).

use crate::engine::Engine;
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};
use warren_host::unix_now;
use warren_plan::{Drift, SignedPlan};
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

pub fn run(mut e: Engine) -> Result<()> {
    tracing::info!(host = %e.cfg.host, state = %e.cfg.state_dir.display(), "agent running");
    let drift_every = Duration::from_secs(e.cfg.drift_interval_secs.max(1));
    let mut next_drift = Instant::now();
    let mut last_drift: Option<String> = None;
    loop {
        take_inbox(&mut e)?;
        if roll_back_if_late(&mut e)? {
            next_drift = Instant::now() + drift_every;
        }
        if Instant::now() >= next_drift {
            next_drift = Instant::now() + drift_every;
            check_drift(&mut e, &mut last_drift);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Plans, then confirmations, in name order; each file is removed once
/// handled.
fn take_inbox(e: &mut Engine) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(e.store.inbox())?
        .flatten()
        .map(|d| d.path())
        .collect();
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".tmp") {
            continue;
        }
        if let Some(serial) = name.strip_prefix("confirm-").and_then(|s| s.parse::<u64>().ok()) {
            confirm(e, serial)?;
        } else if name.ends_with(".json") {
            take_plan(e, &p);
        }
        let _ = std::fs::remove_file(&p);
    }
    Ok(())
}

fn confirm(e: &mut Engine, serial: u64) -> Result<()> {
    if let Some(mut a) = e.store.applied()? {
        if a.signed.envelope.serial == serial && !a.confirmed {
            a.confirmed = true;
            e.store.set_applied(Some(&a))?;
            tracing::info!(serial, "plan confirmed");
        }
    }
    Ok(())
}

fn take_plan(e: &mut Engine, path: &Path) {
    match read_plan(path) {
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

/// Roll back an unconfirmed plan whose window has passed; whether it did.
fn roll_back_if_late(e: &mut Engine) -> Result<bool> {
    let Some(a) = e.store.applied()? else {
        return Ok(false);
    };
    let deadline = a.applied_at + u64::from(a.signed.envelope.confirm_secs);
    if a.confirmed || unix_now() < deadline {
        return Ok(false);
    }
    tracing::warn!(
        serial = a.signed.envelope.serial,
        "not confirmed in time: rolling back"
    );
    if let Err(err) = e.rollback() {
        tracing::error!("rollback failed: {err:#}");
    }
    Ok(true)
}

/// Report drift (logged per resource when it is new), heal it if the plan
/// says so, and report when the state is back in sync.
fn check_drift(e: &mut Engine, last_drift: &mut Option<String>) {
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

fn heal(e: &mut Engine, signed: &SignedPlan, last_drift: &mut Option<String>) {
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
