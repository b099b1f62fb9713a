//! A MikroTik RouterOS v7 router, driven over its REST API (HTTPS, the
//! router's certificate pinned by the plan's fingerprint, basic auth with a
//! password read from a file on this host). It observes the rows of
//! Warren's menus ([`warren_plan::ros::MENUS`]) and executes [`RosOp`]s;
//! it never touches a row without Warren's tag, nor a dynamic row.

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::{bail, Result};
use warren_plan::{RosOp, State};

/// The RouterOS backend of an agent that drives a router (`[routeros]` in
/// agent.toml).
#[derive(Debug, Default)]
pub struct RouterOs {}

impl Backend for RouterOs {
    type Op = RosOp;
    fn name(&self) -> &'static str {
        "routeros"
    }
    fn observe(&self, _sys: &dyn Sys, scope: &Scope, _state: &mut State) -> Result<()> {
        // FOUNDATION STUB: the REST client arrives with the backend.
        let _ = scope;
        Ok(())
    }
    fn apply(&mut self, _sys: &mut dyn Sys, op: &RosOp) -> Result<Option<Claim>> {
        bail!("the RouterOS backend is not built yet: {op:?}")
    }
}
