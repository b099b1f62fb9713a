//! sysctls: read and written under /proc/sys; originals remembered so that
//! teardown restores only what Warren changed.

use super::{Backend, Owned, Scope};
use crate::sys::Sys;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use warren_plan::{Op, State};

pub struct Sysctl;

/// `net.ipv4.conf.eth0.10.rp_filter` -> `/proc/sys/net/ipv4/conf/eth0.10/rp_filter`
/// (an interface name may contain dots; it sits between `conf.` and the leaf).
pub fn path(key: &str) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    for prefix in ["net.ipv4.conf.", "net.ipv6.conf."] {
        if let Some(rest) = key.strip_prefix(prefix) {
            if let Some((iface, leaf)) = rest.rsplit_once('.') {
                for part in prefix.trim_end_matches('.').split('.') {
                    p.push(part);
                }
                p.push(iface);
                p.push(leaf);
                return p;
            }
        }
    }
    for part in key.split('.') {
        p.push(part);
    }
    p
}

pub fn read(key: &str) -> Option<String> {
    std::fs::read_to_string(path(key))
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn write(sys: &mut Sys, key: &str, value: &str) -> Result<()> {
    sys.writes += 1;
    std::fs::write(path(key), value).with_context(|| format!("cannot set {key} = {value}"))
}

impl Backend for Sysctl {
    fn name(&self) -> &'static str {
        "sysctl"
    }
    fn observe(&self, _: &Sys, scope: &Scope, state: &mut State) -> Result<()> {
        for plan in &scope.plans {
            for k in plan.sysctls.keys() {
                if let Some(v) = read(k) {
                    state.sysctls.insert(k.clone(), v);
                }
            }
        }
        Ok(())
    }
    fn handles(&self, op: &Op) -> bool {
        matches!(op, Op::SetSysctl { .. })
    }
    fn apply(&mut self, sys: &mut Sys, owned: &mut Owned, _: &Path, op: &Op) -> Result<()> {
        if let Op::SetSysctl { key, value } = op {
            if !owned.sysctl_orig.contains_key(key) {
                if let Some(orig) = read(key) {
                    owned.sysctl_orig.insert(key.clone(), orig);
                }
            }
            write(sys, key, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_with_dotted_interfaces() {
        assert_eq!(
            super::path("net.ipv4.ip_forward").to_str(),
            Some("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            super::path("net.ipv4.conf.eth0.10.rp_filter").to_str(),
            Some("/proc/sys/net/ipv4/conf/eth0.10/rp_filter")
        );
    }
}
