//! WireGuard interfaces through `ip` and `wg`: the same commands drive kernel
//! WireGuard and `wireguard-go` (whose UAPI socket `wg` talks to). Changing a
//! peer, its allowed IPs or the MTU never recreates the interface.

use super::{Backend, Claim, Scope};
use crate::keys::WgKeys;
use crate::sys::Sys;
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warren_plan::diff::WgOp;
use warren_plan::net::Ipv4Cidr;
use warren_plan::{InterfaceState, PeerState, State, WgPeer};

/// How interfaces are created (the agent's `wireguard` setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WgMode {
    /// Kernel WireGuard if the module is there, else `wireguard-go`.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

/// WireGuard interfaces, configured at construction with how to create
/// them and where the host's private keys live.
#[derive(Debug)]
pub struct WireGuard {
    mode: WgMode,
    keys: WgKeys,
}

impl WireGuard {
    pub fn new(mode: WgMode, keys: WgKeys) -> WireGuard {
        WireGuard { mode, keys }
    }
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

/// Whether a link named `name` exists (of any type).
pub fn link_exists(sys: &dyn Sys, name: &str) -> Result<bool> {
    match sys.read("ip", &["-j", "link", "show", "dev", name]) {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().contains("does not exist") => Ok(false),
        Err(e) => Err(e),
    }
}

fn observe_one(sys: &dyn Sys, name: &str) -> Result<Option<InterfaceState>> {
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

/// Create `name`: kernel WireGuard, `wireguard-go`, or (auto) the kernel
/// first and `wireguard-go` when the kernel cannot.
fn create(sys: &mut dyn Sys, mode: WgMode, name: &str) -> Result<()> {
    let kernel = ["link", "add", "dev", name, "type", "wireguard"];
    match mode {
        WgMode::Kernel => sys.write("ip", &kernel, None).map(drop),
        WgMode::Userspace => userspace(sys, name),
        WgMode::Auto => match sys.write("ip", &kernel, None) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::info!(
                    interface = name,
                    "kernel WireGuard unavailable ({e}); using wireguard-go"
                );
                userspace(sys, name)
            }
        },
    }
}

fn userspace(sys: &mut dyn Sys, name: &str) -> Result<()> {
    sys.write("wireguard-go", &[name], None)?;
    // wireguard-go daemonizes; wait for its UAPI socket.
    let sock = PathBuf::from(format!("/var/run/wireguard/{name}.sock"));
    let t = Instant::now();
    while !sys.exists(&sock) {
        if t.elapsed() > Duration::from_secs(5) {
            bail!("wireguard-go started but {} did not appear", sock.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn set_peer(sys: &mut dyn Sys, interface: &str, peer: &WgPeer, key: &str) -> Result<()> {
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
    Ok(())
}

/// Run `prog args`; nothing to claim.
fn write(sys: &mut dyn Sys, prog: &str, args: &[&str]) -> Result<Option<Claim>> {
    sys.write(prog, args, None)?;
    Ok(None)
}

impl Backend for WireGuard {
    type Op = WgOp;
    fn name(&self) -> &'static str {
        "wireguard"
    }
    fn observe(&self, sys: &dyn Sys, scope: &Scope, state: &mut State) -> Result<()> {
        let mut names: BTreeSet<&String> = scope.owned_interfaces.iter().collect();
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
    fn apply(&mut self, sys: &mut dyn Sys, op: &WgOp) -> Result<Option<Claim>> {
        match op {
            WgOp::CreateInterface { name } => {
                create(sys, self.mode, name)?;
                Ok(Some(Claim::Created(name.clone())))
            }
            WgOp::SetPrivateKey { interface } => {
                self.keys.ensure(interface)?;
                let key = self.keys.path(interface)?;
                write(
                    sys,
                    "wg",
                    &["set", interface, "private-key", &key.to_string_lossy()],
                )
            }
            WgOp::SetListenPort { interface, port } => {
                let port = port.unwrap_or(0).to_string();
                write(sys, "wg", &["set", interface, "listen-port", &port])
            }
            WgOp::SetMtu { interface, mtu } => write(
                sys,
                "ip",
                &["link", "set", "dev", interface, "mtu", &mtu.to_string()],
            ),
            WgOp::AddAddress { interface, address } => write(
                sys,
                "ip",
                &["address", "add", &address.to_string(), "dev", interface],
            ),
            WgOp::DelAddress { interface, address } => write(
                sys,
                "ip",
                &["address", "del", &address.to_string(), "dev", interface],
            ),
            WgOp::SetUp { interface } => write(sys, "ip", &["link", "set", "dev", interface, "up"]),
            WgOp::SetPeer { interface, peer, key } => {
                set_peer(sys, interface, peer, key)?;
                Ok(None)
            }
            WgOp::RemovePeer { interface, key } => {
                write(sys, "wg", &["set", interface, "peer", key, "remove"])
            }
            WgOp::DeleteInterface { name } => {
                sys.write("ip", &["link", "del", "dev", name], None)?;
                Ok(Some(Claim::Deleted(name.clone())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use warren_plan::PeerKey;

    fn wireguard(mode: WgMode, state: &std::path::Path) -> WireGuard {
        WireGuard::new(mode, WgKeys::in_state_dir(state))
    }

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

    #[test]
    fn interface_commands() {
        let dir = crate::testing::scratch("wg-apply");
        let mut wg = wireguard(WgMode::Kernel, &dir);
        let mut sys = Recorder::default();
        let peer = WgPeer {
            name: "gateway".into(),
            public_key: PeerKey::Known("R0FURQ==".into()),
            endpoint: Some("203.0.113.10:51820".into()),
            allowed_ips: vec!["10.0.18.1/32".parse().unwrap(), "0.0.0.0/0".parse().unwrap()],
            persistent_keepalive: Some(25),
        };
        let ops = [
            WgOp::CreateInterface { name: "wg0".into() },
            WgOp::SetListenPort {
                interface: "wg0".into(),
                port: None,
            },
            WgOp::SetMtu {
                interface: "wg0".into(),
                mtu: 1420,
            },
            WgOp::AddAddress {
                interface: "wg0".into(),
                address: "10.0.18.2/24".parse().unwrap(),
            },
            WgOp::SetUp {
                interface: "wg0".into(),
            },
            WgOp::SetPeer {
                interface: "wg0".into(),
                peer,
                key: "R0FURQ==".into(),
            },
            WgOp::RemovePeer {
                interface: "wg0".into(),
                key: "T0xE".into(),
            },
            WgOp::DelAddress {
                interface: "wg0".into(),
                address: "10.0.17.2/24".parse().unwrap(),
            },
            WgOp::DeleteInterface { name: "wg9".into() },
        ];
        let claims: Vec<Option<Claim>> = ops.iter().map(|op| wg.apply(&mut sys, op).unwrap()).collect();
        assert_eq!(
            sys.log,
            [
                "ip link add dev wg0 type wireguard",
                "wg set wg0 listen-port 0",
                "ip link set dev wg0 mtu 1420",
                "ip address add 10.0.18.2/24 dev wg0",
                "ip link set dev wg0 up",
                "wg set wg0 peer R0FURQ== allowed-ips 10.0.18.1/32,0.0.0.0/0 persistent-keepalive 25 endpoint 203.0.113.10:51820",
                "wg set wg0 peer T0xE remove",
                "ip address del 10.0.17.2/24 dev wg0",
                "ip link del dev wg9",
            ]
        );
        assert_eq!(claims[0], Some(Claim::Created("wg0".into())));
        assert_eq!(claims[8], Some(Claim::Deleted("wg9".into())));
        assert!(claims[1..8].iter().all(Option::is_none));
    }

    #[test]
    fn the_private_key_is_generated_in_the_key_directory_and_passed_by_path() {
        let dir = crate::testing::scratch("wg-key");
        let mut wg = wireguard(WgMode::Kernel, &dir);
        let mut sys = Recorder::default();
        let op = WgOp::SetPrivateKey {
            interface: "wg0".into(),
        };
        wg.apply(&mut sys, &op).unwrap();
        let path = dir.join("wg").join("wg0.key");
        assert_eq!(sys.log, [format!("wg set wg0 private-key {}", path.display())]);
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(
            !sys.log[0].contains(secret.trim()),
            "the key itself is never on a command line"
        );
    }

    #[test]
    fn auto_falls_back_to_wireguard_go_and_counts_only_what_succeeded() {
        let dir = crate::testing::scratch("wg-auto");
        let mut sys = Recorder::default();
        sys.failing.insert("ip link add dev wg0 type wireguard".into());
        let op = WgOp::CreateInterface { name: "wg0".into() };
        let claim = wireguard(WgMode::Auto, &dir).apply(&mut sys, &op).unwrap();
        assert_eq!(claim, Some(Claim::Created("wg0".into())));
        assert_eq!(sys.log, ["wireguard-go wg0"]);
        assert_eq!(sys.writes(), 1);
        // The kernel alone: the failure is the answer, and nothing is claimed.
        let mut kernel = wireguard(WgMode::Kernel, &dir);
        assert!(kernel.apply(&mut sys, &op).is_err());
        assert_eq!(sys.writes(), 1);
    }
}
