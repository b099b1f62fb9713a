//! Backends, one per subsystem, each with the same small shape: `observe`
//! fills in the part of the live [`State`] it owns, `apply` executes one of
//! its own operations (its `Op` group in `warren_plan::diff`) and says what
//! that changed in what Warren owns ([`Claim`]).
//!
//! Backends touch only Warren's own resources, and only through [`Sys`].
//! They do not read or write the state directory (the engine remembers what
//! Warren owns); the one thing on disk they use, WireGuard's key directory,
//! is handed to [`wireguard::WireGuard`] when it is built.

pub mod foreign;
pub mod iptables;
pub mod nft;
pub mod routeros;
pub mod routing;
pub mod sysctl;
pub mod wireguard;

use crate::keys::WgKeys;
use crate::sys::Sys;
use anyhow::{anyhow, Result};
use std::collections::BTreeSet;
use warren_plan::{Plan, Platform, State};

/// What to observe: the resources of these plans and what Warren owns.
#[derive(Debug)]
pub struct Scope<'a> {
    /// Plans whose resources to look at (the desired one, and the applied one).
    pub plans: Vec<&'a Plan>,
    /// Interfaces Warren created earlier.
    pub owned_interfaces: &'a BTreeSet<String>,
}

/// What an applied operation changed in what Warren owns on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Warren created this interface (so it may delete it later).
    Created(String),
    /// Warren deleted this interface.
    Deleted(String),
    /// The value a sysctl had just before Warren wrote it (only the first
    /// one is kept, to restore on teardown).
    SysctlOriginal { key: String, value: String },
}

/// One subsystem.
pub trait Backend {
    /// The operations it executes.
    type Op;
    /// Its name, for errors.
    fn name(&self) -> &'static str;
    /// Add what it owns to `state`.
    fn observe(&self, sys: &dyn Sys, scope: &Scope, state: &mut State) -> Result<()>;
    /// Execute one operation.
    fn apply(&mut self, sys: &mut dyn Sys, op: &Self::Op) -> Result<Option<Claim>>;
}

/// All the backends of this host, configured.
#[derive(Debug)]
pub struct Backends {
    pub wireguard: wireguard::WireGuard,
    pub sysctl: sysctl::Sysctl,
    pub routing: routing::Routing,
    pub nft: nft::Nft,
    pub iptables: iptables::Iptables,
    pub foreign: foreign::Foreign,
    pub routeros: routeros::RouterOs,
}

impl Backends {
    pub fn new(mode: wireguard::WgMode, keys: WgKeys) -> Backends {
        Backends {
            wireguard: wireguard::WireGuard::new(mode, keys),
            sysctl: sysctl::Sysctl,
            routing: routing::Routing,
            nft: nft::Nft,
            iptables: iptables::Iptables,
            foreign: foreign::Foreign,
            routeros: routeros::RouterOs::default(),
        }
    }

    /// The live state Warren owns within `scope`. For a RouterOS plan only
    /// the router is read: the agent drives the router, and the firewall
    /// and interfaces of its own host are none of the plan's business.
    pub fn observe(&self, sys: &dyn Sys, scope: &Scope) -> Result<State> {
        let mut state = State::default();
        if scope.plans.iter().any(|p| p.platform == Platform::Routeros) {
            observe_with(&self.routeros, sys, scope, &mut state)?;
            return Ok(state);
        }
        observe_with(&self.wireguard, sys, scope, &mut state)?;
        observe_with(&self.sysctl, sys, scope, &mut state)?;
        observe_with(&self.routing, sys, scope, &mut state)?;
        observe_with(&self.nft, sys, scope, &mut state)?;
        observe_with(&self.iptables, sys, scope, &mut state)?;
        observe_with(&self.foreign, sys, scope, &mut state)?;
        observe_with(&self.routeros, sys, scope, &mut state)?;
        Ok(state)
    }
}

fn observe_with<B: Backend>(b: &B, sys: &dyn Sys, scope: &Scope, state: &mut State) -> Result<()> {
    b.observe(sys, scope, state)
        .map_err(|e| anyhow!("observing {}: {e:#}", b.name()))
}
