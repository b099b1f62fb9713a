//! sysctls: read and written under /proc/sys. Before each write the current
//! value is claimed as the original, so that teardown restores only what
//! Warren changed (the engine keeps the first one).

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use warren_plan::diff::SysctlOp;
use warren_plan::State;

#[derive(Debug)]
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

/// [`path`], refusing a key that would leave `/proc/sys` (a part that is
/// empty, `.`, `..` or holds a `/`). Plans are checked before this
/// (`admit`); this also covers keys remembered in `owned.json`.
fn checked_path(key: &str) -> Result<PathBuf> {
    let p = path(key);
    let escapes = key.contains('/')
        || key.split('.').any(str::is_empty)
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::RootDir));
    if escapes {
        bail!("sysctl key {key:?} is not a /proc/sys name");
    }
    Ok(p)
}

pub fn read(sys: &dyn Sys, key: &str) -> Option<String> {
    let p = checked_path(key).ok()?;
    sys.read_file(&p).ok().map(|s| s.trim().to_string())
}

pub fn write(sys: &mut dyn Sys, key: &str, value: &str) -> Result<()> {
    sys.write_file(&checked_path(key)?, value)
        .with_context(|| format!("cannot set {key} = {value}"))
}

impl Backend for Sysctl {
    type Op = SysctlOp;
    fn name(&self) -> &'static str {
        "sysctl"
    }
    fn observe(&self, sys: &dyn Sys, scope: &Scope, state: &mut State) -> Result<()> {
        for plan in &scope.plans {
            for k in plan.sysctls.keys() {
                if let Some(v) = read(sys, k) {
                    state.sysctls.insert(k.clone(), v);
                }
            }
        }
        Ok(())
    }
    fn apply(&mut self, sys: &mut dyn Sys, op: &SysctlOp) -> Result<Option<Claim>> {
        match op {
            SysctlOp::SetSysctl { key, value } => {
                let original = read(sys, key);
                write(sys, key, value)?;
                Ok(original.map(|value| Claim::SysctlOriginal {
                    key: key.clone(),
                    value,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;

    #[test]
    fn paths_with_dotted_interfaces() {
        assert_eq!(
            path("net.ipv4.ip_forward").to_str(),
            Some("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path("net.ipv4.conf.eth0.10.rp_filter").to_str(),
            Some("/proc/sys/net/ipv4/conf/eth0.10/rp_filter")
        );
    }

    #[test]
    fn keys_that_leave_proc_sys_are_never_written() {
        let mut sys = Recorder::default();
        for key in ["x./var/tmp/pwned", "net.ipv4.conf...rp_filter", "net..ipv4"] {
            let e = write(&mut sys, key, "1").unwrap_err();
            assert!(e.to_string().contains("is not a /proc/sys name"), "{e}");
        }
        assert!(sys.log.is_empty(), "{:?}", sys.log);
    }

    #[test]
    fn a_write_claims_the_value_it_replaces() {
        let mut sys = Recorder::default();
        sys.files.insert(path("net.ipv4.ip_forward"), "0\n".into());
        let op = SysctlOp::SetSysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        };
        let claim = Sysctl.apply(&mut sys, &op).unwrap();
        assert_eq!(
            claim,
            Some(Claim::SysctlOriginal {
                key: "net.ipv4.ip_forward".into(),
                value: "0".into()
            })
        );
        assert_eq!(sys.log, ["write /proc/sys/net/ipv4/ip_forward 1"]);
        assert_eq!(read(&sys, "net.ipv4.ip_forward").as_deref(), Some("1"));
    }
}
