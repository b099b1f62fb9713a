//! The simulator's shared state: the router plus what the REST front end
//! and the control socket add (users, write count, injected failure, the
//! kernel projection switch).

use crate::error::RosError;
use crate::router::Router;
use serde_json::{json, Value};

/// Everything one `ros-sim` process holds.
#[derive(Debug)]
pub struct Sim {
    /// The router.
    pub router: Router,
    /// Accepted basic-auth credentials (name, password).
    pub users: Vec<(String, String)>,
    /// Successful mutating REST requests since start.
    pub writes: u64,
    /// The error the next mutating REST request fails with (changing nothing).
    pub fail_next: Option<RosError>,
    /// Whether to project the configuration onto the namespace's kernel
    /// (`--kernel`) and run real pings.
    pub kernel: bool,
    synced: Option<u64>,
}

impl Sim {
    /// A simulator around `router`.
    pub fn new(router: Router, users: Vec<(String, String)>, kernel: bool) -> Self {
        Sim {
            router,
            users,
            writes: 0,
            fail_next: None,
            kernel,
            synced: None,
        }
    }

    /// Whether a basic-auth pair is accepted.
    pub fn authorised(&self, user: &str, password: &str) -> bool {
        self.users.iter().any(|(u, p)| u == user && p == password)
    }

    /// With `--kernel`: after a change (or at start), project the database
    /// onto the namespace. A failure is logged; the simulator keeps serving.
    pub fn sync(&mut self) {
        if !self.kernel || self.synced == Some(self.router.generation) {
            return;
        }
        self.synced = Some(self.router.generation);
        if let Err(e) = crate::kernel::sync(&self.router.db) {
            let msg = format!("kernel sync failed: {e:#}");
            eprintln!("ros-sim: {msg}");
            self.router.log_line("system,error", &msg);
        }
    }

    /// One line of the control protocol -> one JSON reply.
    pub fn control(&mut self, line: &str) -> Value {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or_default();
        match cmd {
            "now" => json!({"now": self.router.now}),
            "advance" => match words.next().and_then(|s| s.parse::<u64>().ok()) {
                Some(secs) => {
                    let ran = self.router.advance(secs);
                    self.sync();
                    json!({"now": self.router.now, "ran": ran})
                }
                None => json!({"error": "usage: advance SECS"}),
            },
            "dump" => json!({"menus": self.router.db.to_json()}),
            "writes" => json!({"writes": self.writes}),
            "log" => json!({"log": self.router.log}),
            "fail-next" => match words.next().and_then(|s| s.parse::<u16>().ok()) {
                Some(status) if (400..600).contains(&status) => {
                    let detail: Vec<&str> = words.collect();
                    let detail = (!detail.is_empty()).then(|| detail.join(" "));
                    self.fail_next = Some(RosError { status, detail });
                    json!({"ok": true})
                }
                _ => json!({"error": "usage: fail-next STATUS DETAIL..."}),
            },
            _ => json!({"error": format!("unknown control command {cmd:?}")}),
        }
    }
}
