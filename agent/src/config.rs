//! The agent's configuration file (TOML).

use anyhow::{bail, Context, Result};
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WgMode {
    /// Kernel WireGuard if the module is there, else `wireguard-go`.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host's name, as in `warren.yaml`; plans for other hosts are refused.
    pub host: String,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Controller public keys (base64 ed25519, as printed by `warren-controller keygen`).
    pub trusted_controller_keys: Vec<String>,
    #[serde(default)]
    pub wireguard: WgMode,
    /// Seconds between drift checks in `run`.
    #[serde(default = "default_drift_interval")]
    pub drift_interval_secs: u64,
    /// How the controller and this agent find each other (omit for a
    /// standalone agent driven by `apply`/`submit`).
    #[serde(default)]
    pub controller: Option<Link>,
}

/// Either the controller dials this agent (`listen`), or this agent dials
/// the controller (`dial`), for a host the controller cannot reach. After the
/// SSH session is up the protocol is the same. The controller's SSH key is
/// its signing key, so it is pinned by `trusted_controller_keys`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Link {
    Listen(std::net::SocketAddr),
    Dial(String),
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/warren-agent")
}
fn default_drift_interval() -> u64 {
    30
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let c: Config = toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        if c.trusted_controller_keys.is_empty() {
            bail!(
                "config {}: trusted_controller_keys is empty: no plan could ever be accepted",
                path.display()
            );
        }
        c.trusted()?;
        Ok(c)
    }

    pub fn trusted(&self) -> Result<Vec<VerifyingKey>> {
        self.trusted_controller_keys
            .iter()
            .map(|k| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(k.trim())
                    .with_context(|| format!("trusted key {k:?} is not base64"))?;
                let b: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("trusted key {k:?} is not 32 bytes"))?;
                VerifyingKey::from_bytes(&b)
                    .with_context(|| format!("trusted key {k:?} is not an ed25519 key"))
            })
            .collect()
    }
}
