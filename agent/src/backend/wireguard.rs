//! WireGuard interfaces through `ip` and `wg`: the same commands drive kernel
//! WireGuard and `wireguard-go` (whose UAPI socket `wg` talks to). Changing a
//! peer, its allowed IPs or the MTU never recreates the interface.

use super::{Backend, Owned, Scope};
use crate::config::WgMode;
use crate::sys::Sys;
use anyhow::{bail, Result};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use warren_plan::net::Ipv4Cidr;
use warren_plan::{InterfaceState, Op, PeerState, State};

pub struct WireGuard {
    pub mode: WgMode,
}

/// Parse `wg show IFACE dump`. The first line carries the private key: it is
/// skipped here and never stored, printed or logged.
pub fn parse_dump(dump: &str, st: &mut InterfaceState) {
    let mut lines = dump.lines();
    if let Some(first) = lines.next() {
        let f: Vec<&str> = first.split('\t').collect();
        st.public_key = f.get(1).filter(|k| **k != "(none)").map(|k| k.to_string());
        st.listen_port = f.get(2).and_then(|p| p.parse().ok()).filter(|p| *p != 0);
    }
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 8 {
            continue;
        }
        let mut allowed: Vec<Ipv4Cidr> = f[3].split(',').filter_map(|c| c.trim().parse().ok()).collect();
        allowed.sort();
        st.peers.push(PeerState {
            public_key: f[0].to_string(),
            endpoint: Some(f[2].to_string()).filter(|e| e != "(none)"),
            allowed_ips: allowed,
            persistent_keepalive: f[7].parse().ok().filter(|k| *k != 0),
            latest_handshake: f[4].parse().unwrap_or(0),
        });
    }
}

fn observe_one(sys: &Sys, name: &str) -> Result<Option<InterfaceState>> {
    let link = match sys.read("ip", &["-j", "link", "show", "dev", name]) {
        Ok(l) => l,
        Err(e) if e.to_string().contains("does not exist") => return Ok(None),
        Err(e) => return Err(e),
    };
    let link: Value = serde_json::from_str(&link).unwrap_or_default();
    let mut st = InterfaceState {
        mtu: link[0]["mtu"]
            .as_u64()
            .and_then(|m| u16::try_from(m).ok())
            .unwrap_or(0),
        up: link[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        ..InterfaceState::default()
    };
    let addrs: Value = serde_json::from_str(&sys.read("ip", &["-j", "-4", "addr", "show", "dev", name])?)
        .unwrap_or_default();
    for a in addrs[0]["addr_info"].as_array().into_iter().flatten() {
        if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
            if let Some(c) = ip.parse().ok().and_then(|ip| Ipv4Cidr::new(ip, len as u8)) {
                st.addresses.push(c);
            }
        }
    }
    st.addresses.sort();
    match sys.read("wg", &["show", name, "dump"]) {
        Ok(d) => parse_dump(&d, &mut st),
        // A link with this name that is not WireGuard: report it as such.
        Err(e) => bail!("interface {name} exists but is not a WireGuard interface: {e}"),
    }
    Ok(Some(st))
}

fn create(sys: &mut Sys, mode: WgMode, name: &str) -> Result<()> {
    let kernel = || -> Result<()> {
        crate::sys::run("ip", &["link", "add", "dev", name, "type", "wireguard"], None).map(|_| ())
    };
    let user = |sys: &mut Sys| -> Result<()> {
        sys.write("wireguard-go", &[name], None)?;
        // wireguard-go daemonizes; wait for its UAPI socket.
        let sock = format!("/var/run/wireguard/{name}.sock");
        let t = Instant::now();
        while !Path::new(&sock).exists() {
            if t.elapsed() > Duration::from_secs(5) {
                bail!("wireguard-go started but {sock} did not appear");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    match mode {
        WgMode::Kernel => {
            sys.writes += 1;
            kernel()
        }
        WgMode::Userspace => user(sys),
        WgMode::Auto => {
            sys.writes += 1;
            match kernel() {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::info!(
                        interface = name,
                        "kernel WireGuard unavailable ({e}); using wireguard-go"
                    );
                    sys.writes -= 1;
                    user(sys)
                }
            }
        }
    }
}

impl Backend for WireGuard {
    fn name(&self) -> &'static str {
        "wireguard"
    }
    fn observe(&self, sys: &Sys, scope: &Scope, state: &mut State) -> Result<()> {
        let mut names: BTreeSet<&String> = scope.owned.interfaces.iter().collect();
        for p in &scope.plans {
            names.extend(p.wireguard.iter().map(|i| &i.name));
        }
        for n in names {
            if let Some(st) = observe_one(sys, n)? {
                state.interfaces.insert(n.clone(), st);
            }
        }
        Ok(())
    }
    fn handles(&self, op: &Op) -> bool {
        matches!(
            op,
            Op::CreateInterface { .. }
                | Op::SetPrivateKey { .. }
                | Op::SetListenPort { .. }
                | Op::SetMtu { .. }
                | Op::AddAddress { .. }
                | Op::DelAddress { .. }
                | Op::SetUp { .. }
                | Op::SetPeer { .. }
                | Op::RemovePeer { .. }
                | Op::DeleteInterface { .. }
        )
    }
    fn apply(&mut self, sys: &mut Sys, owned: &mut Owned, state_dir: &Path, op: &Op) -> Result<()> {
        match op {
            Op::CreateInterface { name } => {
                create(sys, self.mode, name)?;
                owned.interfaces.insert(name.clone());
            }
            Op::SetPrivateKey { interface } => {
                crate::keys::ensure_wg(state_dir, interface)?;
                let p = crate::keys::wg_key_path(state_dir, interface);
                sys.write(
                    "wg",
                    &["set", interface, "private-key", &p.to_string_lossy()],
                    None,
                )?;
            }
            Op::SetListenPort { interface, port } => {
                let p = port.unwrap_or(0).to_string();
                sys.write("wg", &["set", interface, "listen-port", &p], None)?;
            }
            Op::SetMtu { interface, mtu } => {
                sys.write(
                    "ip",
                    &["link", "set", "dev", interface, "mtu", &mtu.to_string()],
                    None,
                )?;
            }
            Op::AddAddress { interface, address } => {
                sys.write(
                    "ip",
                    &["address", "add", &address.to_string(), "dev", interface],
                    None,
                )?;
            }
            Op::DelAddress { interface, address } => {
                sys.write(
                    "ip",
                    &["address", "del", &address.to_string(), "dev", interface],
                    None,
                )?;
            }
            Op::SetUp { interface } => {
                sys.write("ip", &["link", "set", "dev", interface, "up"], None)?;
            }
            Op::SetPeer { interface, peer, key } => {
                let ips: Vec<String> = peer.allowed_ips.iter().map(|c| c.to_string()).collect();
                let ka = peer.persistent_keepalive.unwrap_or(0).to_string();
                let ips = ips.join(",");
                let mut a = vec![
                    "set",
                    interface,
                    "peer",
                    key,
                    "allowed-ips",
                    &ips,
                    "persistent-keepalive",
                    &ka,
                ];
                if let Some(e) = &peer.endpoint {
                    a.extend(["endpoint", e.as_str()]);
                }
                sys.write("wg", &a, None)?;
            }
            Op::RemovePeer { interface, key } => {
                sys.write("wg", &["set", interface, "peer", key, "remove"], None)?;
            }
            Op::DeleteInterface { name } => {
                sys.write("ip", &["link", "del", "dev", name], None)?;
                owned.interfaces.remove(name);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dump_skips_the_private_key() {
        let dump = "cHJpdmF0ZQ==\tcHVibGlj\t51820\toff\npeerkey=\t(none)\t192.0.2.2:4000\t10.0.18.2/32\t1700000000\t10\t20\t25\n";
        let mut st = warren_plan::InterfaceState::default();
        super::parse_dump(dump, &mut st);
        assert_eq!(st.public_key.as_deref(), Some("cHVibGlj"));
        assert_eq!(st.listen_port, Some(51820));
        assert_eq!(st.peers[0].endpoint.as_deref(), Some("192.0.2.2:4000"));
        assert_eq!(st.peers[0].persistent_keepalive, Some(25));
        assert!(
            !format!("{st:?}").contains("cHJpdmF0ZQ"),
            "private key must not be kept"
        );
    }
}
