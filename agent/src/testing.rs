//! Test support: scratch state directories that clean up after themselves,
//! and an engine on a pretend host.

use crate::backend::wireguard::WgMode;
use crate::config::Config;
use crate::engine::Engine;
use crate::sys::Recorder;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory,
/// removed when dropped (also when the test fails).
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory named after the test (`name`) and this process.
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("warren-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    warren_host::fs::ensure_private_dir(&dir).unwrap();
    Scratch(dir)
}

/// An engine for host `router` on a pretend host (a [`Recorder`]: nothing
/// runs) with its state in `dir`, trusting the controller key whose seed is
/// `controller_seed`, where Warren has no routes or rules yet and
/// `ip_forward` is 0.
pub fn pretend_engine(dir: &Path, controller_seed: [u8; 32]) -> Engine<Recorder> {
    let cfg = Config {
        host: "router".into(),
        state_dir: dir.to_path_buf(),
        trusted_controller_keys: vec![warren_wire::key_base64(
            &ed25519_dalek::SigningKey::from_bytes(&controller_seed).verifying_key(),
        )],
        wireguard: WgMode::Kernel,
        drift_interval_secs: 30,
        doctor_interval_secs: 300,
        controller: None,
        routeros: None,
    };
    let mut sys = Recorder::default();
    sys.reads
        .insert("ip -N -j -4 route show table all proto 77".into(), "[]".into());
    sys.reads.insert("ip -N -j -4 rule show".into(), "[]".into());
    sys.files
        .insert(crate::backend::sysctl::path("net.ipv4.ip_forward"), "0\n".into());
    Engine::with_sys(cfg, sys).unwrap()
}
