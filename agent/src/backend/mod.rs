//! Backends, one per subsystem, behind one small trait: `observe` fills in
//! the part of the live [`State`] the backend owns, `apply` executes the
//! operations it handles. Backends touch only Warren's own resources.

pub mod nft;
pub mod routing;
pub mod sysctl;
pub mod wireguard;

use crate::config::WgMode;
use crate::sys::Sys;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use warren_plan::{Op, Plan, State};

/// What Warren created on this host, so it can remove it (and nothing else).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Owned {
    pub interfaces: BTreeSet<String>,
    /// Values sysctls had before Warren first changed them.
    pub sysctl_orig: BTreeMap<String, String>,
}

pub struct Scope<'a> {
    /// Plans whose resources to look at (the desired one, and the applied one).
    pub plans: Vec<&'a Plan>,
    pub owned: &'a Owned,
}

pub trait Backend {
    fn name(&self) -> &'static str;
    fn observe(&self, sys: &Sys, scope: &Scope, state: &mut State) -> Result<()>;
    fn handles(&self, op: &Op) -> bool;
    fn apply(&mut self, sys: &mut Sys, owned: &mut Owned, state_dir: &Path, op: &Op) -> Result<()>;
}

pub fn all(mode: WgMode) -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(wireguard::WireGuard { mode }),
        Box::new(sysctl::Sysctl),
        Box::new(routing::Routing),
        Box::new(nft::Nft),
    ]
}
