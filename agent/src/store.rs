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

/// See [`Store::status_stamp`]: inode, modification time and length of
/// each file, `None` where it does not exist.
pub type Stamp = [Option<(u64, i64, i64, u64)>; 3];

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
    /// When, and to what length, the files behind the agent's status
    /// (`applied.json`, `serial.json`, `findings.json`) were last written:
    /// every write replaces the file, so an equal stamp means unchanged
    /// content.
    pub fn status_stamp(&self) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let of = |name: &str| {
            std::fs::metadata(self.dir.join(name))
                .ok()
                .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
        };
        [of("applied.json"), of("serial.json"), of("findings.json")]
    }

    /// The doctor's latest findings (written by the daemon, sent by the
    /// transport in `Status`); none yet: empty.
    pub fn findings(&self) -> Result<Vec<warren_plan::Finding>> {
        Ok(self.get("findings.json")?.unwrap_or_default())
    }
    pub fn set_findings(&self, f: &[warren_plan::Finding]) -> Result<()> {
        self.put("findings.json", &f)
    }

    /// The public keys a RouterOS router generated for Warren's WireGuard
    /// interfaces, by interface name, as last observed (sent to the
    /// controller like this host's own keys).
    pub fn routeros_keys(&self) -> Result<BTreeMap<String, String>> {
        Ok(self.get("routeros-keys.json")?.unwrap_or_default())
    }
    pub fn set_routeros_keys(&self, keys: &BTreeMap<String, String>) -> Result<()> {
        self.put("routeros-keys.json", keys)
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
    /// outbox until the controller acknowledges it. The report's `seq` is its
    /// outbox sequence number (1 and up, never reused while the outbox
    /// holds anything).
    pub fn report(&self, r: &Report) -> Result<u64> {
        let outbox = self.dir.join("outbox");
        ensure_private_dir(&outbox)?;
        // The counter file alone could go back (lost write): never reuse a
        // number still in the outbox, or the controller would drop it as a
        // duplicate.
        let last_queued = self.outbox().last().map_or(0, |(s, _)| *s);
        let seq = self.get::<u64>("outbox.seq")?.unwrap_or(0).max(last_queued) + 1;
        let r = Report { seq, ..r.clone() };
        self.put("report.json", &r)?;
        self.put("outbox.seq", &seq)?;
        Store::write(&outbox.join(format!("{seq:020}.json")), &serde_json::to_vec(&r)?)?;
        // Bounded: with no controller for a long time, keep the newest.
        let queued = self.outbox();
        let excess = queued.len().saturating_sub(MAX_OUTBOX);
        for (_, f) in queued.into_iter().take(excess) {
            let _ = std::fs::remove_file(f);
        }
        Ok(seq)
    }

    /// Reports not yet acknowledged, oldest first, with their `seq`.
    pub fn outbox(&self) -> Vec<(u64, PathBuf)> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.join("outbox"))
            .map(|rd| rd.flatten().filter_map(|e| outbox_entry(e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The controller recorded every report up to `seq`: forget them.
    pub fn ack(&self, seq: u64) {
        for (_, f) in self.outbox().into_iter().take_while(|(s, _)| *s <= seq) {
            let _ = std::fs::remove_file(f);
        }
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

/// An outbox file's sequence number (`00000000000000000042.json`), if it is one.
fn outbox_entry(path: PathBuf) -> Option<(u64, PathBuf)> {
    let seq = path.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()?;
    Some((seq, path))
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
        assert_eq!(store.report(&r).unwrap(), 1);
        assert_eq!(store.last_report().unwrap(), Some(Report { seq: 1, ..r }));
        let outbox = store.outbox();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].0, 1);
        assert_eq!(
            std::fs::read_to_string(&outbox[0].1).unwrap(),
            r#"{"seq":1,"host":"router","serial":7,"commit":"abc","outcome":"rolled_back","message":"m","changes":[],"at":9}"#
        );
    }

    fn report(n: u64) -> Report {
        Report {
            seq: 0,
            host: "router".into(),
            serial: Some(n),
            commit: None,
            outcome: Outcome::Applied,
            message: String::new(),
            changes: vec![],
            at: n,
        }
    }

    fn queued(store: &Store) -> Vec<u64> {
        store.outbox().into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn outbox_reports_stay_until_acknowledged() {
        let dir = crate::testing::scratch("store-ack");
        let store = Store::open(&dir).unwrap();
        for n in 1..=3 {
            assert_eq!(store.report(&report(n)).unwrap(), n);
        }
        assert_eq!(queued(&store), [1, 2, 3]);
        // Reading the outbox (sending) removes nothing.
        assert_eq!(queued(&store), [1, 2, 3]);
        store.ack(2);
        assert_eq!(queued(&store), [3]);
        // A late or repeated ack is harmless.
        store.ack(1);
        store.ack(2);
        assert_eq!(queued(&store), [3]);
        let (seq, path) = &store.outbox()[0];
        let r: Report = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!((r.seq, *seq, r.serial), (3, 3, Some(3)));
        store.ack(3);
        assert!(queued(&store).is_empty());
        // Numbers go on after an ack: the controller never sees one twice.
        assert_eq!(store.report(&report(4)).unwrap(), 4);
    }

    #[test]
    fn a_lost_counter_never_reuses_a_queued_number() {
        let dir = crate::testing::scratch("store-seq");
        let store = Store::open(&dir).unwrap();
        for n in 1..=2 {
            store.report(&report(n)).unwrap();
        }
        std::fs::remove_file(dir.join("outbox.seq")).unwrap();
        assert_eq!(store.report(&report(3)).unwrap(), 3);
        // Stray files in the outbox are not reports.
        std::fs::write(dir.join("outbox/notes.txt"), "x").unwrap();
        assert_eq!(queued(&store), [1, 2, 3]);
    }

    #[test]
    fn the_outbox_is_bounded_and_keeps_the_newest() {
        let dir = crate::testing::scratch("store-bound");
        let store = Store::open(&dir).unwrap();
        let n = MAX_OUTBOX as u64 + 5;
        for i in 1..=n {
            store.report(&report(i)).unwrap();
        }
        let q = queued(&store);
        assert_eq!(q.len(), MAX_OUTBOX);
        assert_eq!(q.first(), Some(&6));
        assert_eq!(q.last(), Some(&n));
    }

    #[test]
    fn the_status_stamp_changes_with_every_write_and_only_then() {
        let dir = crate::testing::scratch("store-stamp");
        let store = Store::open(&dir).unwrap();
        let empty = store.status_stamp();
        assert_eq!(empty, [None, None, None]);
        store.raise_serial(3).unwrap();
        let one = store.status_stamp();
        assert_ne!(one, empty);
        assert_eq!(store.status_stamp(), one, "reading changes nothing");
        store.raise_serial(4).unwrap();
        assert_ne!(store.status_stamp(), one);
        // The doctor's findings are part of the status too.
        let two = store.status_stamp();
        assert!(store.findings().unwrap().is_empty());
        store.set_findings(&[]).unwrap();
        assert_ne!(store.status_stamp(), two);
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
