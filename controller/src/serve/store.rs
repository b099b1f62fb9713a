//! The controller's memory, in an embedded database (redb) in its state
//! directory: per host the serial high-water mark (never goes backwards, even
//! across a crash: it is committed before a plan leaves), the last plan sent,
//! agent keys and reports; and the history of commits with their outcome.
//! A JSON snapshot (`status.json`, see [`super::status`]) is written after
//! every change for `warren-controller status`, which must not open the
//! database while the service holds it.
//!
//! It stores and loads records; it decides nothing about rollouts or host
//! states. Records written by older versions must keep loading: a service
//! that cannot read its own store cannot serve anyone.

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warren_plan::SignedPlan;
use warren_wire::Report;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostRecord {
    /// Highest serial ever handed out for this host.
    pub serial: u64,
    /// The last plan sent (or to be sent) to this host.
    pub desired: Option<SignedPlan>,
    /// Serial and commit the agent last reported as applied.
    pub applied_serial: Option<u64>,
    pub applied_commit: Option<String>,
    pub confirmed_serial: Option<u64>,
    pub identity: Option<String>,
    pub wireguard: BTreeMap<String, String>,
    pub connected: bool,
    pub last_seen: Option<u64>,
    /// The agent's last report. One the current [`Report`] type cannot read
    /// (written by another version) is dropped rather than failing the load.
    #[serde(default, deserialize_with = "lenient_report")]
    pub last_report: Option<Report>,
    /// Drift summary from the last report (empty when in sync).
    pub drift: Vec<String>,
    /// The last error for this host (key mismatch, apply failed...).
    pub error: Option<String>,
    /// The highest report `seq` recorded for this host: a report at or
    /// below it is a re-delivery, acknowledged but not applied again.
    #[serde(default)]
    pub last_seq: u64,
    /// The agent's `doctor` findings that are not ok (warnings and what
    /// breaks traffic), from its last status. Absent in older records: none.
    #[serde(default)]
    pub findings: Vec<warren_plan::Finding>,
}

/// Read a stored report, or `None` if its shape is not today's.
pub fn lenient_report<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Report>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

/// What became of a commit. Stored and shown as the `snake_case` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitOutcome {
    /// Valid; at least one host got a new plan.
    Compiled,
    /// `warren.yaml` is missing or has errors; nothing was sent.
    Invalid,
    /// Valid, and no host's plan changed.
    Unchanged,
    /// A key pinned in the YAML disagrees with what an agent presents.
    /// Versions before the typed outcome stored `key-mismatch`.
    #[serde(alias = "key-mismatch")]
    KeyMismatch,
    /// Valid, but the compiler refused it.
    Error,
}

impl CommitOutcome {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CommitOutcome::Compiled => "compiled",
            CommitOutcome::Invalid => "invalid",
            CommitOutcome::Unchanged => "unchanged",
            CommitOutcome::KeyMismatch => "key_mismatch",
            CommitOutcome::Error => "error",
        }
    }

    /// The name in `status`'s text output (kept from before the enum).
    pub fn label(self) -> &'static str {
        match self {
            CommitOutcome::KeyMismatch => "key-mismatch",
            other => other.as_str(),
        }
    }

    /// The commit became (or stayed) what agents should run.
    pub fn is_accepted(self) -> bool {
        match self {
            CommitOutcome::Compiled | CommitOutcome::Unchanged => true,
            CommitOutcome::Invalid | CommitOutcome::KeyMismatch | CommitOutcome::Error => false,
        }
    }
}

impl std::fmt::Display for CommitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitRecord {
    pub commit: String,
    pub summary: String,
    pub at: u64,
    pub outcome: CommitOutcome,
    pub diagnostics: Vec<String>,
    /// Hosts that got a new plan, with its serial.
    pub pushed: BTreeMap<String, u64>,
}

pub struct Store {
    db: Database,
    dir: PathBuf,
}

/// How long start-up waits for a previous controller's lock: a process that
/// was just killed releases it when the kernel has finished reaping it, and a
/// restart must not fail on that race.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn open_waiting(path: &Path, wait: std::time::Duration) -> Result<Database, redb::DatabaseError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).context("corrupt record in the controller's store")
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = open_waiting(&dir.join("controller.redb"), LOCK_WAIT).with_context(|| {
            format!(
                "cannot open the store in {} (is another controller running?)",
                dir.display()
            )
        })?;
        let w = db.begin_write()?;
        w.open_table(KV)?;
        w.open_table(HISTORY)?;
        w.commit()?;
        Ok(Store {
            db,
            dir: dir.to_path_buf(),
        })
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(KV)?;
        let v = t.get(key)?;
        v.map(|v| dec(v.value())).transpose()
    }

    fn put<T: Serialize>(&self, key: &str, v: &T) -> Result<()> {
        let bytes = serde_json::to_vec(v)?;
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(KV)?;
            t.insert(key, bytes.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    pub fn host(&self, name: &str) -> Result<HostRecord> {
        Ok(self.get(&format!("host/{name}"))?.unwrap_or_default())
    }

    pub fn hosts(&self) -> Result<BTreeMap<String, HostRecord>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(KV)?;
        let mut out = BTreeMap::new();
        for e in t.range("host/".."host0")? {
            let (k, v) = e?;
            out.insert(k.value().trim_start_matches("host/").to_string(), dec(v.value())?);
        }
        Ok(out)
    }

    pub fn set_host(&self, name: &str, h: &HostRecord) -> Result<()> {
        self.put(&format!("host/{name}"), h)
    }

    /// Update one host's record in place.
    pub fn update_host(&self, name: &str, f: impl FnOnce(&mut HostRecord)) -> Result<HostRecord> {
        let mut h = self.host(name)?;
        f(&mut h);
        self.set_host(name, &h)?;
        Ok(h)
    }

    /// Reserve the next serial for `host`, durably, before the plan is sent.
    pub fn next_serial(&self, host: &str) -> Result<u64> {
        let h = self.update_host(host, |h| h.serial += 1)?;
        Ok(h.serial)
    }

    pub fn last_commit(&self) -> Result<Option<String>> {
        self.get("meta/last_commit")
    }

    pub fn set_last_commit(&self, c: &str) -> Result<()> {
        self.put("meta/last_commit", &c)
    }

    /// The rollout in progress (empty when none), saved so that a restart
    /// resumes it instead of sending every host its plan at once.
    pub fn rollout(&self) -> Result<super::rollout::Saved> {
        Ok(self.get("meta/rollout")?.unwrap_or_default())
    }

    pub fn set_rollout(&self, saved: &super::rollout::Saved) -> Result<()> {
        self.put("meta/rollout", saved)
    }

    /// The last commit that compiled (what agents should run).
    pub fn good_commit(&self) -> Result<Option<String>> {
        self.get("meta/good_commit")
    }

    pub fn set_good_commit(&self, c: &str) -> Result<()> {
        self.put("meta/good_commit", &c)
    }

    pub fn record(&self, c: &CommitRecord) -> Result<()> {
        let bytes = serde_json::to_vec(c)?;
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(HISTORY)?;
            let next = t.last()?.map_or(0, |(k, _)| k.value() + 1);
            t.insert(next, bytes.as_slice())?;
        }
        w.commit()?;
        Ok(())
    }

    pub fn history(&self, n: usize) -> Result<Vec<CommitRecord>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HISTORY)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev().take(n) {
            out.push(dec(e?.1.value())?);
        }
        Ok(out)
    }

    /// Write `status.json` for `warren-controller status`, atomically (a
    /// reader never sees half a file, a crash never leaves one).
    pub fn snapshot(&self, now: u64) -> Result<()> {
        let s = super::status::StatusSnapshot {
            at: now,
            good_commit: self.good_commit()?,
            last_commit: self.last_commit()?,
            hosts: self
                .hosts()?
                .into_iter()
                .map(|(name, h)| (name, super::status::HostSnapshot::from(h)))
                .collect(),
            history: self.history(super::status::HISTORY)?,
        };
        let p = super::status::path(&self.dir);
        warren_host::write_atomic(&p, &serde_json::to_vec_pretty(&s)?)
            .with_context(|| format!("cannot write {}", p.display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warren-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn serials_survive_reopening_and_never_go_back() {
        let d = scratch("serials");
        {
            let s = Store::open(&d).unwrap();
            assert_eq!(s.next_serial("router").unwrap(), 1);
            assert_eq!(s.next_serial("router").unwrap(), 2);
            assert_eq!(s.next_serial("gateway").unwrap(), 1);
            s.record(&CommitRecord {
                commit: "a".into(),
                summary: "s".into(),
                at: 1,
                outcome: CommitOutcome::Invalid,
                diagnostics: vec!["d".into()],
                pushed: BTreeMap::new(),
            })
            .unwrap();
        }
        let s = Store::open(&d).unwrap();
        assert_eq!(s.next_serial("router").unwrap(), 3);
        assert_eq!(s.rollout().unwrap(), Default::default());
        let saved = super::super::rollout::Saved {
            queue: vec!["router".into(), "gateway".into()],
            halted: true,
        };
        s.set_rollout(&saved).unwrap();
        drop(s);
        assert_eq!(Store::open(&d).unwrap().rollout().unwrap(), saved);
        let s = Store::open(&d).unwrap();
        assert_eq!(s.history(5).unwrap()[0].outcome, CommitOutcome::Invalid);
        assert_eq!(s.hosts().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn legacy_host(last_report: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "serial": 3, "desired": null, "applied_serial": 2, "applied_commit": "c2",
            "confirmed_serial": 2, "identity": null, "wireguard": {}, "connected": true,
            "last_seen": 5, "last_report": last_report, "drift": [], "error": null
        })
    }

    #[test]
    fn records_written_by_older_versions_still_load() {
        let d = scratch("legacy");
        let s = Store::open(&d).unwrap();
        // Stored as an untyped value before reports were typed: one today's
        // Report can read, and one it cannot (an outcome it does not know).
        let readable = serde_json::json!({"host": "gateway", "serial": 2, "commit": "c2",
            "outcome": "applied", "message": "ok", "changes": [], "at": 4});
        let unreadable = serde_json::json!({"host": "router", "serial": 2, "outcome": "exploded"});
        s.put("host/gateway", &legacy_host(readable)).unwrap();
        s.put("host/router", &legacy_host(unreadable)).unwrap();
        let old_commit = br#"{"commit":"c3","summary":"s","at":1,"outcome":"key-mismatch","diagnostics":["d"],"pushed":{}}"#;
        let w = s.db.begin_write().unwrap();
        w.open_table(HISTORY)
            .unwrap()
            .insert(0, old_commit.as_slice())
            .unwrap();
        w.commit().unwrap();

        let hosts = s.hosts().unwrap();
        let gw = hosts["gateway"].last_report.as_ref().unwrap();
        assert_eq!((gw.outcome, gw.serial), (warren_wire::Outcome::Applied, Some(2)));
        assert!(
            hosts["router"].last_report.is_none(),
            "an unreadable report is dropped"
        );
        assert_eq!(
            hosts["router"].applied_serial,
            Some(2),
            "the rest of the record is kept"
        );
        assert_eq!(s.history(1).unwrap()[0].outcome, CommitOutcome::KeyMismatch);

        // The next writes use today's spelling, and the snapshot works.
        s.update_host("router", |h| h.last_seen = Some(6)).unwrap();
        s.snapshot(9).unwrap();
        let text = std::fs::read_to_string(d.join("status.json")).unwrap();
        assert!(text.contains("\"key_mismatch\""), "{text}");
        assert!(!text.contains("key-mismatch"), "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn commit_outcome_names_round_trip() {
        use CommitOutcome::*;
        for o in [Compiled, Invalid, Unchanged, KeyMismatch, Error] {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{o}\""));
            assert_eq!(serde_json::from_str::<CommitOutcome>(&json).unwrap(), o);
            assert_eq!(o.label() == o.as_str(), o != KeyMismatch, "{o}");
        }
    }
}
