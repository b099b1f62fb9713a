//! The controller's metrics: counters, gauges and one histogram, updated
//! from any thread (the reconcile loop, agent sessions) and rendered in the
//! Prometheus text exposition format 0.0.4 for `GET /metrics`.
//!
//! It owns the metric names, help texts and bucket bounds. It does no I/O and
//! knows nothing about HTTP: the server in `crate::http` only serves
//! [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Upper bounds (seconds) of the `warren_push_to_applied_seconds` buckets.
pub const PUSH_TO_APPLIED_BUCKETS: [f64; 12] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a histogram half-updated
    // in a way that matters; keep counting.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one reconcile (one commit through the pipeline) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// Compiled, signed and handed out.
    Applied,
    /// The desired state had errors; nothing compiled.
    Invalid,
    /// Fetching, compiling or storing failed.
    Failed,
}

impl ReconcileOutcome {
    pub const ALL: [ReconcileOutcome; 3] = [
        ReconcileOutcome::Applied,
        ReconcileOutcome::Invalid,
        ReconcileOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileOutcome::Applied => "applied",
            ReconcileOutcome::Invalid => "invalid",
            ReconcileOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug)]
struct HistogramData {
    /// Per bucket (not cumulative); one more than the bounds, for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A Prometheus histogram with fixed buckets.
#[derive(Debug)]
struct Histogram {
    bounds: Vec<f64>,
    data: Mutex<HistogramData>,
}

impl Histogram {
    /// `bounds` are the bucket upper bounds; they are sorted, and non-finite
    /// values and duplicates dropped (`+Inf` is always implied).
    fn new(bounds: &[f64]) -> Self {
        let mut b: Vec<f64> = bounds.iter().copied().filter(|x| x.is_finite()).collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        let n = b.len() + 1;
        Histogram {
            bounds: b,
            data: Mutex::new(HistogramData {
                counts: vec![0; n],
                sum: 0.0,
                count: 0,
            }),
        }
    }

    /// Record one observation. NaN and infinities are ignored; negative
    /// values (a clock stepping back) count as 0.
    fn observe(&self, v: f64) {
        if !v.is_finite() {
            tracing::debug!(value = v, "histogram: ignoring a non-finite observation");
            return;
        }
        let v = v.max(0.0);
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        let mut d = lock(&self.data);
        if let Some(c) = d.counts.get_mut(i) {
            *c += 1;
        }
        d.sum += v;
        d.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let (counts, sum, count) = {
            let d = lock(&self.data);
            (d.counts.clone(), d.sum, d.count)
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut acc = 0u64;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            match self.bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {acc}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The controller's metrics. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    push_to_applied: Histogram,
    reconciles: [AtomicU64; 3],
    drifted_resources: AtomicU64,
    connected_agents: AtomicU64,
    commits: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            push_to_applied: Histogram::new(&PUSH_TO_APPLIED_BUCKETS),
            reconciles: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            drifted_resources: AtomicU64::new(0),
            connected_agents: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    /// `warren_push_to_applied_seconds`: from a commit reaching the controller
    /// to an agent reporting its plan applied.
    pub fn observe_push_to_applied(&self, seconds: f64) {
        self.push_to_applied.observe(seconds);
    }

    /// `warren_reconciles_total{outcome=...}` += 1.
    pub fn record_reconcile(&self, outcome: ReconcileOutcome) {
        let i = outcome as usize;
        if let Some(c) = self.reconciles.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `warren_drifted_resources`: resources the agents currently report drifted.
    pub fn set_drifted_resources(&self, n: u64) {
        self.drifted_resources.store(n, Ordering::Relaxed);
    }

    /// `warren_connected_agents`: agent sessions currently up.
    pub fn set_connected_agents(&self, n: u64) {
        self.connected_agents.store(n, Ordering::Relaxed);
    }

    /// `warren_commits_total` += 1: a new commit was processed.
    pub fn inc_commits(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything, in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        self.push_to_applied.render(
            &mut out,
            "warren_push_to_applied_seconds",
            "Seconds from a commit reaching the controller to an agent reporting its plan applied.",
        );
        out.push_str("# HELP warren_reconciles_total Commits processed, by outcome.\n");
        out.push_str("# TYPE warren_reconciles_total counter\n");
        for o in ReconcileOutcome::ALL {
            let v = self
                .reconciles
                .get(o as usize)
                .map(|c| c.load(Ordering::Relaxed))
                .unwrap_or(0);
            let _ = writeln!(out, "warren_reconciles_total{{outcome=\"{}\"}} {v}", o.as_str());
        }
        let simple: [(&str, &str, &str, &AtomicU64); 3] = [
            (
                "warren_drifted_resources",
                "gauge",
                "Resources the agents currently report drifted from their plan.",
                &self.drifted_resources,
            ),
            (
                "warren_connected_agents",
                "gauge",
                "Agent sessions currently connected.",
                &self.connected_agents,
            ),
            (
                "warren_commits_total",
                "counter",
                "Commits the controller has processed.",
                &self.commits,
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    /// A small parser of the text format: checks its structure and returns
    /// every sample as (name with labels, value).
    fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
        let mut help = HashSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').unwrap();
                assert!(!doc.is_empty());
                assert!(help.insert(name.to_string()), "two HELP lines for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(help.contains(name), "TYPE before HELP for {name}");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none());
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let (key, value) = line.rsplit_once(' ').unwrap();
                let name = key.split('{').next().unwrap();
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                    "{line}"
                );
                if let Some(labels) = key.strip_prefix(name) {
                    if !labels.is_empty() {
                        assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                        let inner = &labels[1..labels.len() - 1];
                        for pair in inner.split(',') {
                            let (k, v) = pair.split_once('=').unwrap();
                            assert!(!k.is_empty() && v.starts_with('"') && v.ends_with('"'), "{line}");
                        }
                    }
                }
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                    })
                    .unwrap_or(name);
                assert!(types.contains_key(family), "sample before its TYPE: {line}");
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
                assert!(
                    samples.insert(key.to_string(), v).is_none(),
                    "duplicate sample {key}"
                );
            }
        }
        samples
    }

    #[test]
    fn metrics_render_and_parse() {
        let m = Metrics::new();
        for v in [0.01, 0.05, 0.3, 0.3, 2.0, 59.0, 61.0, 1e6, -1.0] {
            m.observe_push_to_applied(v);
        }
        m.observe_push_to_applied(f64::NAN); // ignored
        m.observe_push_to_applied(f64::INFINITY); // ignored
        m.record_reconcile(ReconcileOutcome::Applied);
        m.record_reconcile(ReconcileOutcome::Applied);
        m.record_reconcile(ReconcileOutcome::Invalid);
        m.set_drifted_resources(3);
        m.set_connected_agents(2);
        m.inc_commits();
        m.inc_commits();

        let body = m.render();
        let s = parse_exposition(&body);
        for name in [
            "warren_push_to_applied_seconds",
            "warren_reconciles_total",
            "warren_drifted_resources",
            "warren_connected_agents",
            "warren_commits_total",
        ] {
            assert!(body.contains(&format!("# HELP {name} ")), "{name}");
            assert!(body.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(body.contains("# TYPE warren_push_to_applied_seconds histogram\n"));

        // Buckets: in order, cumulative, +Inf last and equal to _count.
        let buckets: Vec<(String, f64)> = body
            .lines()
            .filter(|l| l.starts_with("warren_push_to_applied_seconds_bucket{"))
            .map(|l| {
                let le = l
                    .split("le=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string();
                (le, l.rsplit_once(' ').unwrap().1.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), PUSH_TO_APPLIED_BUCKETS.len() + 1);
        let mut prev_le = f64::NEG_INFINITY;
        let mut prev_n = 0.0;
        for (le, n) in &buckets {
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            assert!(le > prev_le && *n >= prev_n, "not cumulative: {buckets:?}");
            (prev_le, prev_n) = (le, *n);
        }
        assert_eq!(buckets.last().unwrap().0, "+Inf");
        let count = s["warren_push_to_applied_seconds_count"];
        assert_eq!(count, 9.0);
        assert_eq!(buckets.last().unwrap().1, count);
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"0.05\"}"], 3.0); // 0.01, 0.05, -1 → 0
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"0.5\"}"], 5.0);
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"60\"}"], 7.0);
        let sum = s["warren_push_to_applied_seconds_sum"];
        assert!(
            (sum - (0.01 + 0.05 + 0.6 + 2.0 + 59.0 + 61.0 + 1e6)).abs() < 1e-6,
            "{sum}"
        );

        assert_eq!(s["warren_reconciles_total{outcome=\"applied\"}"], 2.0);
        assert_eq!(s["warren_reconciles_total{outcome=\"invalid\"}"], 1.0);
        assert_eq!(s["warren_reconciles_total{outcome=\"failed\"}"], 0.0);
        assert_eq!(s["warren_drifted_resources"], 3.0);
        assert_eq!(s["warren_connected_agents"], 2.0);
        assert_eq!(s["warren_commits_total"], 2.0);
    }

    #[test]
    fn empty_metrics_parse_too() {
        let s = parse_exposition(&Metrics::new().render());
        assert_eq!(s["warren_push_to_applied_seconds_bucket{le=\"+Inf\"}"], 0.0);
        assert_eq!(s["warren_push_to_applied_seconds_count"], 0.0);
    }
}
