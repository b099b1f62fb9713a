//! `warren-agent init`: enrol this host. Writes `agent.toml` (host name,
//! state directory, the controller's trusted key, how the controller and the
//! agent find each other), creates the identity and WireGuard keys as `keys`
//! does, and prints the one YAML line to paste under the host in
//! `warren.yaml`, so nobody copies keys between files by hand.
//!
//! It runs before any configuration exists, so `main` calls it without
//! loading one. It never replaces an existing configuration (unless
//! `--force`) nor an existing key.

use crate::config::Config;
use crate::keys::{ensure_identity, valid_ifname, WgKeys};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("link").required(true).args(["listen", "dial"])))]
pub struct Args {
    /// This host's name, as in `warren.yaml` (e.g. `gateway`, `router`).
    #[arg(long)]
    pub host: String,
    /// The controller's public key, as `warren-controller keygen` printed it
    /// (base64, or an `ssh-ed25519 AAAA…` line).
    #[arg(long)]
    pub controller_key: String,
    /// The controller dials this agent here (IPv4:port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This agent dials the controller here (HOST:port), for a host the
    /// controller cannot reach (behind CGNAT).
    #[arg(long)]
    pub dial: Option<String>,
    /// With --listen 0.0.0.0:PORT: the address the controller reaches this
    /// agent at, for the printed `agent.address` (default: the listen address).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Where the agent keeps its keys and plans.
    #[arg(long, default_value = "/var/lib/warren-agent")]
    pub state_dir: PathBuf,
    /// How WireGuard interfaces are created: auto, kernel or userspace.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kernel", "userspace"])]
    pub wireguard: String,
    /// Create a WireGuard key for this interface now (repeatable).
    #[arg(long = "interface", default_value = "wg0")]
    pub interfaces: Vec<String>,
    /// Replace an existing configuration file (keys are never replaced).
    #[arg(long)]
    pub force: bool,
}

/// A TOML basic string: `"…"` with `\` and `"` escaped; control characters
/// are refused by the callers' checks.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A host name as `warren.yaml` accepts it (and safe inside TOML and YAML).
fn valid_host(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// `HOST:PORT` the agent dials: printable, no spaces or quotes, a port.
fn valid_dial(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// The configuration file's text.
pub fn config_text(args: &Args, key: &str) -> Result<String> {
    if !valid_host(&args.host) {
        bail!(
            "--host {:?}: use the host's name in warren.yaml (letters, digits, - and _)",
            args.host
        );
    }
    let parsed = warren_wire::parse_public_key(key)
        .with_context(|| format!("--controller-key {key:?} is not an ed25519 public key"))?;
    if parsed.is_weak() {
        bail!("--controller-key {key:?} is a weak (small-order) ed25519 key");
    }
    let state = args
        .state_dir
        .to_str()
        .filter(|s| !s.chars().any(char::is_control))
        .context("--state-dir must be a printable path")?;
    if !args.state_dir.is_absolute() {
        bail!("--state-dir {state:?} must be an absolute path");
    }
    let link = match (&args.listen, &args.dial) {
        (Some(l), None) => format!("listen = {}", toml_str(&l.to_string())),
        (None, Some(d)) if valid_dial(d) => format!("dial = {}", toml_str(d)),
        (None, Some(d)) => bail!("--dial {d:?}: expected HOST:PORT, e.g. 203.0.113.10:7701"),
        _ => bail!("give exactly one of --listen ADDR and --dial ADDR"),
    };
    let how = if args.listen.is_some() {
        "the controller dials this agent"
    } else {
        "this agent dials the controller"
    };
    Ok(format!(
        "# Warren agent configuration, written by `warren-agent init` (docs/agent.md).\n\
         # This host's name in warren.yaml: plans for any other host are refused.\n\
         host = {host}\n\
         state_dir = {state}\n\
         # The controller's signing key (`warren-controller keygen` printed it).\n\
         trusted_controller_keys = [{key}]\n\
         wireguard = {wg}\n\
         # How the controller and this agent find each other: {how}.\n\
         controller = {{ {link} }}\n",
        host = toml_str(&args.host),
        state = toml_str(state),
        key = toml_str(key.trim()),
        wg = toml_str(&args.wireguard),
    ))
}

/// The line to paste under `hosts.<host>` in `warren.yaml`.
pub fn yaml_line(args: &Args, identity: &str) -> String {
    let identity = identity.trim();
    match (args.advertise.or(args.listen), &args.dial) {
        (Some(addr), _) => format!("    agent: {{ address: \"{addr}\", identity: \"{identity}\" }}"),
        (None, _) => format!("    agent: {{ identity: \"{identity}\" }}   # dials the controller"),
    }
}

pub fn run(args: &Args, config: &Path) -> Result<()> {
    let text = config_text(args, &args.controller_key)?;
    if let Some(l) = args
        .listen
        .filter(|l| l.ip().is_unspecified() && args.advertise.is_none())
    {
        bail!("--listen {l} listens on every address: add --advertise IP:PORT, the address the controller reaches this agent at");
    }
    for i in &args.interfaces {
        if !valid_ifname(i) {
            bail!("--interface {i:?} is not a valid interface name");
        }
    }
    if config.exists() && !args.force {
        bail!(
            "{} exists: this host is already set up (use --force to rewrite the configuration; keys are kept)",
            config.display()
        );
    }
    if let Some(dir) = config.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    warren_host::fs::write_atomic(config, text.as_bytes())
        .with_context(|| format!("write {}", config.display()))?;
    // What the agent will load at start-up must load now.
    let cfg = Config::load(config)?;
    let identity = ensure_identity(&cfg.state_dir)?;
    let wg = WgKeys::in_state_dir(&cfg.state_dir);
    for i in &args.interfaces {
        wg.ensure(i)?;
    }
    eprintln!(
        "wrote {}; keys in {}\npaste this line under `{}:` in warren.yaml (hosts), then commit and push:",
        config.display(),
        cfg.state_dir.display(),
        args.host
    );
    warren_host::outln!("{}", yaml_line(args, &identity));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, dial: Option<&str>) -> Args {
        Args {
            host: "router".into(),
            controller_key: String::new(),
            listen: listen.map(|l| l.parse().unwrap()),
            dial: dial.map(str::to_string),
            advertise: None,
            state_dir: PathBuf::from("/var/lib/warren-agent"),
            wireguard: "auto".into(),
            interfaces: vec!["wg0".into()],
            force: false,
        }
    }

    fn key() -> String {
        warren_wire::key_base64(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key())
    }

    #[test]
    fn init_writes_a_config_the_agent_loads_and_prints_the_yaml_line() {
        let dir = crate::testing::scratch("init");
        let mut a = args(None, Some("203.0.113.10:7701"));
        a.controller_key = key();
        a.state_dir = dir.join("state");
        let config = dir.join("etc/agent.toml");
        run(&a, &config).unwrap();
        let cfg = Config::load(&config).unwrap();
        assert_eq!(cfg.host, "router");
        assert!(matches!(cfg.controller, Some(crate::config::Link::Dial(ref d)) if d == "203.0.113.10:7701"));
        let id = ensure_identity(&a.state_dir).unwrap();
        assert!(id.starts_with("ssh-ed25519 "), "{id}");
        assert!(WgKeys::in_state_dir(&a.state_dir)
            .public("wg0")
            .unwrap()
            .is_some());
        let line = yaml_line(&a, &id);
        assert_eq!(
            line,
            format!("    agent: {{ identity: \"{id}\" }}   # dials the controller")
        );
        // A second init refuses; --force rewrites and keeps the identity.
        let e = run(&a, &config).unwrap_err().to_string();
        assert!(e.contains("already set up"), "{e}");
        a.force = true;
        run(&a, &config).unwrap();
        assert_eq!(
            ensure_identity(&a.state_dir).unwrap(),
            id,
            "the identity was replaced"
        );
    }

    #[test]
    fn a_listening_agent_prints_its_address() {
        let mut a = args(Some("127.0.0.1:7700"), None);
        a.host = "gateway".into();
        assert_eq!(
            yaml_line(&a, "ssh-ed25519 AAAA"),
            "    agent: { address: \"127.0.0.1:7700\", identity: \"ssh-ed25519 AAAA\" }"
        );
        let text = config_text(&a, &key()).unwrap();
        assert!(
            text.contains("controller = { listen = \"127.0.0.1:7700\" }"),
            "{text}"
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_flag_named() {
        let mut a = args(None, Some("203.0.113.10:7701"));
        let e = config_text(&a, "AAAA").unwrap_err().to_string();
        assert!(e.contains("--controller-key"), "{e}");
        a.host = "bad\"name".into();
        assert!(config_text(&a, &key())
            .unwrap_err()
            .to_string()
            .contains("--host"));
        a.host = "router".into();
        a.dial = Some("no port".into());
        assert!(config_text(&a, &key())
            .unwrap_err()
            .to_string()
            .contains("--dial"));
        a.dial = Some("203.0.113.10:7701".into());
        a.state_dir = PathBuf::from("relative");
        assert!(config_text(&a, &key())
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        let weak = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        a.state_dir = PathBuf::from("/x");
        assert!(config_text(&a, weak).unwrap_err().to_string().contains("weak"));
    }

    #[test]
    fn listening_everywhere_needs_an_advertised_address() {
        let dir = crate::testing::scratch("init-any");
        let mut a = args(Some("0.0.0.0:7700"), None);
        a.controller_key = key();
        a.state_dir = dir.join("state");
        let e = run(&a, &dir.join("agent.toml")).unwrap_err().to_string();
        assert!(e.contains("--advertise"), "{e}");
        assert!(!dir.join("agent.toml").exists());
        a.advertise = Some("192.0.2.7:7700".parse().unwrap());
        run(&a, &dir.join("agent.toml")).unwrap();
        assert!(yaml_line(&a, "k").contains("address: \"192.0.2.7:7700\""));
    }
}
