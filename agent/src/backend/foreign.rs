//! The host's own (foreign) firewall: chains Warren did not create that
//! would drop Warren's traffic, and the openings Warren puts in front of
//! them (`foreign_firewall: auto`). Filled in by the coexistence work.

use crate::sys::Sys;
use warren_plan::{Finding, Plan};

/// `warren-agent doctor`'s findings about foreign firewalls on the paths
/// `plan`'s traffic takes.
pub fn doctor_findings(_sys: &dyn Sys, _plan: Option<&Plan>) -> Vec<Finding> {
    Vec::new()
}
