//! Warren's iptables chains (`netfilter: iptables`): owned `WARREN-*`
//! chains, each reached by one jump rule at the top of a built-in chain,
//! written in one `iptables-restore --noflush` transaction with the
//! variant (nft or legacy) the host already uses.
//! No chain or rule Warren did not create is ever written.

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::{bail, Result};
use warren_plan::diff::IptOp;
use warren_plan::{IptState, State};

#[derive(Debug, Default)]
pub struct Iptables;

impl Iptables {
    /// Warren's chains as the kernel has them, normalized; `None` when there
    /// are none.
    pub fn read(&self, _sys: &dyn Sys) -> Result<Option<IptState>> {
        Ok(None)
    }
}

impl Backend for Iptables {
    type Op = IptOp;
    fn name(&self) -> &'static str {
        "iptables"
    }
    fn observe(&self, sys: &dyn Sys, _: &Scope, state: &mut State) -> Result<()> {
        state.iptables = self.read(sys)?;
        Ok(())
    }
    fn apply(&mut self, _sys: &mut dyn Sys, op: &IptOp) -> Result<Option<Claim>> {
        bail!("the iptables backend cannot apply {op:?} yet")
    }
}
