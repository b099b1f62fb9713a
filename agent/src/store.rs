//! The agent's state directory: keys, the last applied plan (kept so the
//! agent can heal and report after a restart with no controller), the plan
//! before it (for rollback), the serial high-water mark, what Warren owns,
//! reports, and the inbox. Every write is atomic (temporary file + rename).

use crate::backend::Owned;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use warren_plan::{Change, NftMemory, SignedPlan};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    pub signed: SignedPlan,
    pub nft: Option<NftMemory>,
    /// False until the controller confirms; an unconfirmed plan is rolled
    /// back when `applied_at + confirm_secs` passes.
    pub confirmed: bool,
    pub applied_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub host: String,
    pub serial: Option<u64>,
    pub commit: Option<String>,
    /// applied | unchanged | rejected | failed | rolled_back | drift | healed | in_sync
    pub outcome: String,
    pub message: String,
    pub changes: Vec<Change>,
    pub at: u64,
}

/// Most undelivered reports kept.
pub const MAX_OUTBOX: usize = 200;

#[derive(Debug)]
pub struct Store {
    pub dir: PathBuf,
}

/// Write a file atomically (temporary file + rename), readable by root only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("inbox"))
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
    fn put<T: Serialize>(&self, name: &str, v: &T) -> Result<()> {
        write_atomic(&self.dir.join(name), &serde_json::to_vec_pretty(v)?)
    }
    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }
    pub fn applied(&self) -> Result<Option<Applied>> {
        self.get("applied.json")
    }
    pub fn set_applied(&self, a: Option<&Applied>) -> Result<()> {
        match a {
            Some(a) => self.put("applied.json", a),
            None => {
                self.remove("applied.json");
                Ok(())
            }
        }
    }
    pub fn previous(&self) -> Result<Option<Applied>> {
        self.get("previous.json")
    }
    pub fn set_previous(&self, a: Option<&Applied>) -> Result<()> {
        match a {
            Some(a) => self.put("previous.json", a),
            None => {
                self.remove("previous.json");
                Ok(())
            }
        }
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
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&outbox)?;
        let mut seq = self.get::<u64>("outbox.seq")?.unwrap_or(0);
        seq += 1;
        self.put("outbox.seq", &seq)?;
        write_atomic(&outbox.join(format!("{seq:020}.json")), &serde_json::to_vec(r)?)?;
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
        write_atomic(&self.inbox().join(name), bytes)
    }
}
