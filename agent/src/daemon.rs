//! `warren-agent run`: take plans and confirmations from the inbox, roll
//! back what is not confirmed in time, and watch for drift. With no
//! controller at all it keeps enforcing (or reporting) the last good plan.

use crate::engine::{now, Engine};
use anyhow::Result;
use std::time::{Duration, Instant};
use warren_plan::{Drift, SignedPlan};

pub const MAX_PLAN_BYTES: u64 = 8 * 1024 * 1024;

pub fn read_plan(path: &std::path::Path) -> Result<SignedPlan> {
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
        // 1. Inbox: plans, then confirmations, in name order.
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
                if let Some(mut a) = e.store.applied()? {
                    if a.signed.envelope.serial == serial && !a.confirmed {
                        a.confirmed = true;
                        e.store.set_applied(Some(&a))?;
                        tracing::info!(serial, "plan confirmed");
                    }
                }
            } else if name.ends_with(".json") {
                match read_plan(&p) {
                    Ok(sp) => {
                        let serial = sp.envelope.serial;
                        match e.apply_signed(sp, false) {
                            Ok(c) => tracing::info!(
                                serial,
                                changes = c.len(),
                                "plan applied; awaiting confirmation"
                            ),
                            Err(err) => tracing::warn!(serial, "{err}"),
                        }
                    }
                    Err(err) => {
                        e.report(None, "rejected", &format!("{err:#}"), vec![]);
                    }
                }
            }
            let _ = std::fs::remove_file(&p);
        }

        // 2. Confirmation deadline.
        if let Some(a) = e.store.applied()? {
            let deadline = a.applied_at + u64::from(a.signed.envelope.confirm_secs);
            if !a.confirmed && now() >= deadline {
                tracing::warn!(
                    serial = a.signed.envelope.serial,
                    "not confirmed in time: rolling back"
                );
                if let Err(err) = e.rollback() {
                    tracing::error!("rollback failed: {err:#}");
                }
                next_drift = Instant::now() + drift_every;
            }
        }

        // 3. Drift.
        if Instant::now() >= next_drift {
            next_drift = Instant::now() + drift_every;
            match e.drift() {
                Ok(Some((a, changes))) if !changes.is_empty() => {
                    let summary: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                    let summary = summary.join("; ");
                    if last_drift.as_deref() != Some(summary.as_str()) {
                        for c in &changes {
                            tracing::warn!(resource = %c.resource, expected = %c.expected, actual = %c.actual, "drift");
                        }
                    }
                    e.report(Some(&a.signed), "drift", &summary, changes);
                    last_drift = Some(summary);
                    if a.signed.plan.drift == Drift::Heal {
                        match e.heal() {
                            Ok(c) => {
                                e.report(
                                    Some(&a.signed),
                                    "healed",
                                    &format!("{} changes re-applied", c.len()),
                                    c,
                                );
                                last_drift = None;
                            }
                            Err(err) => tracing::error!("heal failed: {err:#}"),
                        }
                    }
                }
                Ok(Some((a, _))) => {
                    if last_drift.take().is_some() {
                        e.report(
                            Some(&a.signed),
                            "in_sync",
                            "live state matches the plan again",
                            vec![],
                        );
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::warn!("drift check failed: {err:#}"),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
