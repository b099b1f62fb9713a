//! The controller's memory, in an embedded database (redb) in its state
//! directory: per host the serial high-water mark (never goes backwards, even
//! across a crash: it is committed before a plan leaves), the last plan sent,
//! agent keys and reports; and the history of commits with their outcome.
//! A JSON snapshot (`status.json`) is written after every change for
//! `warren-controller status`, which must not open the database while the
//! service holds it.

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warren_plan::SignedPlan;

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
    pub last_report: Option<serde_json::Value>,
    /// Drift summary from the last report (empty when in sync).
    pub drift: Vec<String>,
    /// The last error for this host (key mismatch, apply failed...).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitRecord {
    pub commit: String,
    pub summary: String,
    pub at: u64,
    /// `compiled` | `invalid` | `unchanged` | `key-mismatch` | `error`
    pub outcome: String,
    pub diagnostics: Vec<String>,
    /// Hosts that got a new plan, with its serial.
    pub pushed: BTreeMap<String, u64>,
}

pub struct Store {
    db: Database,
    dir: PathBuf,
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).context("corrupt record in the controller's store")
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = Database::create(dir.join("controller.redb")).with_context(|| {
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

    /// Write `status.json` for `warren-controller status`.
    pub fn snapshot(&self, now: u64) -> Result<()> {
        let s = serde_json::json!({
            "at": now,
            "good_commit": self.good_commit()?,
            "last_commit": self.last_commit()?,
            "hosts": self.hosts()?.into_iter().map(|(k, mut h)| {
                let pending = h.desired.as_ref().map_or(0, |d| d.plan.pending_keys().len());
                let desired = h.desired.take().map(|d| (d.envelope.serial, d.envelope.commit));
                let mut v = serde_json::to_value(&h).unwrap_or_default();
                v["desired_serial"] = serde_json::json!(desired.as_ref().map(|d| d.0));
                v["plan_commit"] = serde_json::json!(desired.map(|d| d.1));
                // Peers whose keys the agents have not reported yet.
                v["pending_keys"] = serde_json::json!(pending);
                (k, v)
            }).collect::<BTreeMap<_, _>>(),
            "history": self.history(20)?,
        });
        let tmp = self.dir.join("status.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&s)?)?;
        std::fs::rename(&tmp, self.dir.join("status.json"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn serials_survive_reopening_and_never_go_back() {
        let d = std::env::temp_dir().join(format!("warren-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        {
            let s = Store::open(&d).unwrap();
            assert_eq!(s.next_serial("router").unwrap(), 1);
            assert_eq!(s.next_serial("router").unwrap(), 2);
            assert_eq!(s.next_serial("gateway").unwrap(), 1);
            s.record(&CommitRecord {
                commit: "a".into(),
                summary: "s".into(),
                at: 1,
                outcome: "invalid".into(),
                diagnostics: vec!["d".into()],
                pushed: BTreeMap::new(),
            })
            .unwrap();
        }
        let s = Store::open(&d).unwrap();
        assert_eq!(s.next_serial("router").unwrap(), 3);
        assert_eq!(s.history(5).unwrap()[0].outcome, "invalid");
        assert_eq!(s.hosts().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }
}
