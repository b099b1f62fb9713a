//! The agent's state directory: the last applied plan (kept so the agent
//! can restore, heal and report after a restart with no controller), the
//! last *confirmed* plan (what a rollback or a failed apply restores), the
//! apply journal (`pending.json`, present only while an apply runs), the
//! serial high-water mark, what Warren owns, reports, the outbox and the
//! inbox. Every write is atomic and private
//! (`warren_host::write_atomic`).
//!
//! It stores and loads; it must not decide anything about plans or touch
//! live state. Key files are `keys`' business.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use warren_host::fs::ensure_private_dir;
use warren_host::write_atomic;
use warren_plan::{NftMemory, SignedPlan};
use warren_wire::Report;

/// A plan this agent applied, and what it needs to judge drift later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    pub signed: SignedPlan,
    pub nft: Option<NftMemory>,
    /// False until the controller confirms; an unconfirmed plan is rolled
    /// back when `applied_at + confirm_secs` passes.
    pub confirmed: bool,
    /// Unix seconds (informational only: confirm deadlines are monotonic
    /// and live in the daemon's memory, so a clock step cannot move them).
    pub applied_at: u64,
}

/// The apply journal, written before an apply touches anything and removed
/// once it is recorded (or undone). Found at start-up, it means the agent
/// died mid-apply: the host may be half-way between `fallback` and `plan`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    /// The plan being applied.
    pub plan: SignedPlan,
    /// The last confirmed plan when the apply started (what to restore if
    /// the apply cannot be finished); `None`: nothing was ever confirmed.
    pub fallback: Option<Applied>,
}

/// What Warren created on this host, so it can remove it (and nothing else).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub interfaces: BTreeSet<String>,
    /// Values sysctls had before Warren first changed them.
    pub sysctl_orig: BTreeMap<String, String>,
}

/// Most undelivered reports kept.
pub const MAX_OUTBOX: usize = 200;

#[derive(Debug)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        ensure_private_dir(&dir.join("inbox"))
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }
    fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let p = self.dir.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("{} is corrupt", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }
    fn write(path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }
    fn put<T: Serialize>(&self, name: &str, v: &T) -> Result<()> {
        Store::write(&self.dir.join(name), &serde_json::to_vec_pretty(v)?)
    }
    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }
    fn set<T: Serialize>(&self, name: &str, v: Option<&T>) -> Result<()> {
        match v {
            Some(v) => self.put(name, v),
            None => {
                self.remove(name);
                Ok(())
            }
        }
    }
    pub fn applied(&self) -> Result<Option<Applied>> {
        self.get("applied.json")
    }
    pub fn set_applied(&self, a: Option<&Applied>) -> Result<()> {
        self.set("applied.json", a)
    }
    /// `previous.json`, which older agents rolled back to; now only removed.
    pub fn set_previous(&self, a: Option<&Applied>) -> Result<()> {
        self.set("previous.json", a)
    }
    /// The last plan the controller confirmed (or `apply` applied): what a
    /// rollback and a failed apply restore.
    pub fn last_confirmed(&self) -> Result<Option<Applied>> {
        self.get("confirmed.json")
    }
    pub fn set_last_confirmed(&self, a: Option<&Applied>) -> Result<()> {
        self.set("confirmed.json", a)
    }
    /// The journal of an apply in progress (or interrupted by a crash).
    pub fn pending(&self) -> Result<Option<Journal>> {
        self.get("pending.json")
    }
    pub fn set_pending(&self, j: Option<&Journal>) -> Result<()> {
        self.set("pending.json", j)
    }
    /// Highest serial ever accepted; never goes down (not even on rollback).
    pub fn max_serial(&self) -> Result<Option<u64>> {
        self.get("serial.json")
    }
    pub fn raise_serial(&self, s: u64) -> Result<()> {
        if self.max_serial()?.is_none_or(|m| s > m) {
            self.put("serial.json", &s)?;
        }
        Ok(())
    }
    pub fn owned(&self) -> Result<Owned> {
        Ok(self.get("owned.json")?.unwrap_or_default())
    }
    pub fn set_owned(&self, o: &Owned) -> Result<()> {
        self.put("owned.json", o)
    }
    /// Record a report: the latest in `report.json`, and every one in the
    /// outbox until the transport has delivered it to the controller.
    pub fn report(&self, r: &Report) -> Result<()> {
        self.put("report.json", r)?;
        let outbox = self.dir.join("outbox");
        ensure_private_dir(&outbox)?;
        let mut seq = self.get::<u64>("outbox.seq")?.unwrap_or(0);
        seq += 1;
        self.put("outbox.seq", &seq)?;
        Store::write(&outbox.join(format!("{seq:020}.json")), &serde_json::to_vec(r)?)?;
        // Bounded: with no controller for a long time, keep the newest.
        let mut files: Vec<_> = std::fs::read_dir(&outbox)?.flatten().map(|e| e.path()).collect();
        files.sort();
        let excess = files.len().saturating_sub(MAX_OUTBOX);
        for f in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(f);
        }
        Ok(())
    }

    /// Reports not yet delivered, oldest first.
    pub fn outbox(&self) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.join("outbox"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
    pub fn last_report(&self) -> Result<Option<Report>> {
        self.get("report.json")
    }
    pub fn inbox(&self) -> PathBuf {
        self.dir.join("inbox")
    }
    /// Drop a file into the inbox atomically (for `submit` and `confirm`).
    pub fn deliver(&self, name: &str, bytes: &[u8]) -> Result<()> {
        Store::write(&self.inbox().join(name), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_wire::Outcome;

    #[test]
    fn reports_keep_their_json_shape() {
        let dir = crate::testing::scratch("store-report");
        let store = Store::open(&dir).unwrap();
        assert!(store.last_report().unwrap().is_none());
        let r = Report {
            seq: 0,
            host: "router".into(),
            serial: Some(7),
            commit: Some("abc".into()),
            outcome: Outcome::RolledBack,
            message: "m".into(),
            changes: vec![],
            at: 9,
        };
        store.report(&r).unwrap();
        assert_eq!(store.last_report().unwrap(), Some(r));
        let outbox = store.outbox();
        assert_eq!(outbox.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&outbox[0]).unwrap(),
            r#"{"seq":0,"host":"router","serial":7,"commit":"abc","outcome":"rolled_back","message":"m","changes":[],"at":9}"#
        );
    }

    #[test]
    fn owned_round_trips_and_defaults_to_nothing() {
        let dir = crate::testing::scratch("store-owned");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.owned().unwrap(), Owned::default());
        let o = Owned {
            interfaces: ["wg0".to_string()].into(),
            sysctl_orig: [("net.ipv4.ip_forward".to_string(), "0".to_string())].into(),
        };
        store.set_owned(&o).unwrap();
        assert_eq!(store.owned().unwrap(), o);
        assert_eq!(
            std::fs::read_to_string(dir.join("owned.json")).unwrap(),
            "{\n  \"interfaces\": [\n    \"wg0\"\n  ],\n  \"sysctl_orig\": {\n    \"net.ipv4.ip_forward\": \"0\"\n  }\n}"
        );
    }
}
