//! The agent's configuration file (TOML): its schema, defaults and the
//! checks that make a bad file fail at start-up. It only reads the file;
//! what the settings mean is up to the modules that use them.

use crate::backend::wireguard::WgMode;
use anyhow::{bail, Context, Result};
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host's name, as in `warren.yaml`; plans for other hosts are refused.
    pub host: String,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Controller public keys (base64 ed25519, as printed by `warren-controller
    /// keygen`, or an `ssh-ed25519` line).
    pub trusted_controller_keys: Vec<String>,
    #[serde(default)]
    pub wireguard: WgMode,
    /// Seconds between drift checks in `run`.
    #[serde(default = "default_drift_interval")]
    pub drift_interval_secs: u64,
    /// Seconds between the daemon's `doctor` runs (it also runs at start-up
    /// and after each apply).
    #[serde(default = "default_doctor_interval")]
    pub doctor_interval_secs: u64,
    /// How the controller and this agent find each other (omit for a
    /// standalone agent driven by `apply`/`submit`).
    #[serde(default)]
    pub controller: Option<Link>,
    /// This agent drives a MikroTik RouterOS router (its address, user and
    /// certificate come with each plan): `host` is the router's name.
    #[serde(default)]
    pub routeros: Option<RouterOs>,
}

/// `[routeros]`: what the agent needs besides the plan to log in to the
/// router's REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterOs {
    /// A file holding the RouterOS user's password (one line; a trailing
    /// newline is ignored). Read at every connection, never logged.
    pub password_file: PathBuf,
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

/// The longest drift interval accepted: one day.
pub const MAX_DRIFT_INTERVAL_SECS: u64 = 86_400;

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/warren-agent")
}
fn default_drift_interval() -> u64 {
    30
}
fn default_doctor_interval() -> u64 {
    300
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
        c.check_durations()
            .with_context(|| format!("config {}", path.display()))?;
        if let Some(r) = &c.routeros {
            if !r.password_file.is_absolute() {
                bail!(
                    "config {}: [routeros] password_file = {:?} must be an absolute path",
                    path.display(),
                    r.password_file
                );
            }
        }
        Ok(c)
    }

    /// Durations the daemon adds to a clock: zero would spin, and a huge
    /// value would overflow it (a panic) or mean "never".
    fn check_durations(&self) -> Result<()> {
        let secs = self.drift_interval_secs;
        if !(1..=MAX_DRIFT_INTERVAL_SECS).contains(&secs) {
            bail!("drift_interval_secs = {secs}: must be between 1 and {MAX_DRIFT_INTERVAL_SECS} (one day)");
        }
        let secs = self.doctor_interval_secs;
        if !(1..=MAX_DRIFT_INTERVAL_SECS).contains(&secs) {
            bail!("doctor_interval_secs = {secs}: must be between 1 and {MAX_DRIFT_INTERVAL_SECS} (one day)");
        }
        Ok(())
    }

    pub fn trusted(&self) -> Result<Vec<VerifyingKey>> {
        self.trusted_controller_keys
            .iter()
            .map(|k| {
                let key = warren_wire::parse_public_key(k).with_context(|| format!("trusted key {k:?}"))?;
                // A small-order key would accept forged plans and SSH logins.
                anyhow::ensure!(
                    !key.is_weak(),
                    "trusted key {k:?} is a weak (small-order) ed25519 key"
                );
                Ok(key)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        let dir = crate::testing::scratch(&format!("config-{}", text.len()));
        let path = dir.join("agent.toml");
        std::fs::write(&path, text)?;
        Config::load(&path)
    }

    #[test]
    fn trusted_keys_are_checked_at_load() {
        let key = warren_wire::key_base64(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
        let c = load(&format!(
            "host = \"router\"\ntrusted_controller_keys = [\"{key}\"]\n"
        ))
        .unwrap();
        assert_eq!(c.trusted().unwrap().len(), 1);
        assert_eq!(c.wireguard, WgMode::Auto);
        let e = load("host = \"router\"\ntrusted_controller_keys = [\"AAAA\"]\n").unwrap_err();
        assert!(format!("{e:#}").contains("trusted key \"AAAA\""), "{e:#}");
        let e = load("host = \"router\"\ntrusted_controller_keys = []\n").unwrap_err();
        assert!(e.to_string().contains("no plan could ever be accepted"), "{e}");
        let weak = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let e = load(&format!(
            "host = \"router\"\ntrusted_controller_keys = [\"{weak}\"]\n"
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("weak (small-order)"), "{e:#}");
    }

    #[test]
    fn a_routeros_section_names_an_absolute_password_file() {
        let key = warren_wire::key_base64(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
        let with = |section: &str| {
            load(&format!(
                "host = \"mikrotik\"\ntrusted_controller_keys = [\"{key}\"]\n{section}"
            ))
        };
        let c = with("[routeros]\npassword_file = \"/etc/warren/routeros.pw\"\n").unwrap();
        assert_eq!(
            c.routeros.unwrap().password_file,
            PathBuf::from("/etc/warren/routeros.pw")
        );
        assert!(with("").unwrap().routeros.is_none());
        let e = with("[routeros]\npassword_file = \"pw\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("must be an absolute path"), "{e:#}");
        let e = with("[routeros]\npassword = \"x\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `password`"), "{e:#}");
    }

    #[test]
    fn absurd_drift_intervals_are_refused_naming_the_key() {
        let key = warren_wire::key_base64(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
        let with = |v: &str| {
            load(&format!(
                "host = \"router\"\ntrusted_controller_keys = [\"{key}\"]\ndrift_interval_secs = {v}\n"
            ))
        };
        for bad in ["0", "86401", "18446744073709551615"] {
            let e = with(bad).unwrap_err();
            assert!(
                format!("{e:#}").contains(&format!(
                    "drift_interval_secs = {bad}: must be between 1 and 86400"
                )),
                "{e:#}"
            );
        }
        assert_eq!(with("86400").unwrap().drift_interval_secs, 86_400);
        assert_eq!(with("1").unwrap().drift_interval_secs, 1);
        assert_eq!(with("1").unwrap().doctor_interval_secs, 300);
        let e = load(&format!(
            "host = \"router\"\ntrusted_controller_keys = [\"{key}\"]\ndoctor_interval_secs = 0\n"
        ))
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("doctor_interval_secs = 0: must be between 1"),
            "{e:#}"
        );
    }
}
