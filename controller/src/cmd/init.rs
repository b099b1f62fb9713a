//! `warren-controller init DIR`: scaffold a desired-state repository: a
//! commented `warren.yaml` built from a few flags (validated before anything
//! is written), the JSON Schema and the hooks editors read it from (the
//! `yaml-language-server` comment, `.vscode/settings.json`), a README, a
//! `.gitignore` keeping private keys out, `git init` and a first commit.
//! A directory that exists and is not empty is refused.

use super::{usage, Failure, Outcome};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory to create (or an empty one).
    pub dir: PathBuf,
    /// The gateway VPS's public IPv4 address.
    #[arg(long)]
    pub gateway_address: String,
    /// The gateway's interface towards the internet.
    #[arg(long, default_value = "eth0")]
    pub uplink: String,
    /// The router's interface towards the ISP (behind CGNAT).
    #[arg(long, default_value = "eth0")]
    pub router_uplink: String,
    /// The router's LAN: INTERFACE=ADDRESS/PREFIX, e.g. br-lan=192.168.16.1/24.
    #[arg(long)]
    pub router_lan: String,
    /// A port the gateway keeps for itself (its SSH), PORT/PROTO; repeatable.
    #[arg(long = "management", default_value = "22/tcp")]
    pub management: Vec<String>,
    /// The controller's port for agents that dial in, kept on the gateway
    /// (the controller runs there); 0 when it runs elsewhere.
    #[arg(long, default_value_t = 7701)]
    pub controller_port: u16,
    /// A port forward NAME=PORT/PROTO:ADDRESS[:PORT], e.g.
    /// minecraft=25565/tcp:192.168.16.20; repeatable.
    #[arg(long = "forward")]
    pub forwards: Vec<String>,
    /// The WAN VPN's transfer network.
    #[arg(long, default_value = "10.0.18.0/30")]
    pub wan_subnet: String,
    /// The WAN VPN's UDP port on the gateway.
    #[arg(long, default_value_t = 51820)]
    pub wan_port: u16,
    /// The private VPN's network (phones).
    #[arg(long, default_value = "192.168.17.0/24")]
    pub vpn_subnet: String,
    /// The private VPN's UDP port on the gateway's public address.
    #[arg(long, default_value_t = 13131)]
    pub vpn_port: u16,
    /// The first commit's branch.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

/// Values go into YAML unquoted: only characters that cannot start a YAML
/// construct are allowed (the model validates their meaning).
fn plain(flag: &str, value: &str) -> Result<String, Failure> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b':' | b'-' | b'_' | b'+'))
        && !value.starts_with('-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(usage(format!(
            "{flag} {value:?}: expected letters, digits and . / : - _ + only"
        )))
    }
}

/// `NAME=PORT/PROTO:TO` as (name, port, to).
fn forward(value: &str) -> Result<(String, String, String), Failure> {
    let bad = || {
        usage(format!(
            "--forward {value:?}: expected NAME=PORT/PROTO:ADDRESS, e.g. minecraft=25565/tcp:192.168.16.20"
        ))
    };
    let (name, rest) = value.split_once('=').ok_or_else(bad)?;
    let (port, to) = rest.split_once(':').ok_or_else(bad)?;
    Ok((
        plain("--forward", name)?,
        plain("--forward", port)?,
        plain("--forward", to)?,
    ))
}

/// The commented `warren.yaml`.
pub fn yaml(args: &Args) -> Result<String, Failure> {
    let (lan_if, lan_addr) = args.router_lan.split_once('=').ok_or_else(|| {
        usage(format!(
            "--router-lan {:?}: expected INTERFACE=ADDRESS/PREFIX, e.g. br-lan=192.168.16.1/24",
            args.router_lan
        ))
    })?;
    let lan_if = plain("--router-lan", lan_if)?;
    let lan_addr = plain("--router-lan", lan_addr)?;
    let mut management = args
        .management
        .iter()
        .map(|m| plain("--management", m))
        .collect::<Result<Vec<_>, _>>()?;
    if args.controller_port != 0 {
        management.push(format!("{}/tcp", args.controller_port));
    }
    let mut forwards = String::new();
    for f in &args.forwards {
        let (name, port, to) = forward(f)?;
        let _ = writeln!(forwards, "  {name}: {{ port: {port}, to: {to} }}");
    }
    let controller = if args.controller_port == 0 {
        String::new()
    } else {
        format!(
            "\n    # {}/tcp: the controller, for agents that dial in (warren-controller serve --listen).",
            args.controller_port
        )
    };
    Ok(format!(
        r#"# yaml-language-server: $schema=./warren.schema.json
# The desired state of this network, written by `warren-controller init`.
# Edit it, commit, push: the controller validates every commit and applies
# it to the hosts (`warren-controller validate .` shows what it will say).
# Every key, with defaults and limits: docs/reference.md in Warren's source.
version: 1

hosts:
  gateway:
    role: gateway
    public_address: {gw}   # the VPS's public IPv4
    uplink: {uplink}   # its interface towards the internet
    # Ports the gateway keeps for itself and never forwards: its SSH.{controller}
    management: [{management}]
    # agent: paste the line `warren-agent init` printed on this host
  router:
    role: router
    uplink: {router_uplink}   # towards the ISP (CGNAT)
    lans:
      lan: {{ interface: {lan_if}, address: {lan_addr} }}
    # agent: paste the line `warren-agent init` printed on this host

# The tunnel the router dials out through CGNAT; inbound connections to the
# gateway ride it to the router (everything but the gateway's own ports).
wan_vpn:
  gateway: gateway
  router: router
  subnet: {wan_subnet}
  port: {wan_port}

# Phones and laptops reach the LAN through the router, nested in the WAN VPN.
private_vpn:
  server: router
  port: {vpn_port}   # on the gateway's public address
  subnet: {vpn_subnet}
  clients:
    # phone: {{ address: 192.168.17.69, public_key: "…" }}   # wg pubkey < phone.key

# Port forwards: public port on the gateway -> a LAN address.
# e.g.  minecraft: {{ port: 25565/tcp, to: 192.168.16.20 }}
forwards:
{forwards}"#,
        gw = plain("--gateway-address", &args.gateway_address)?,
        uplink = plain("--uplink", &args.uplink)?,
        router_uplink = plain("--router-uplink", &args.router_uplink)?,
        management = management.join(", "),
        wan_subnet = plain("--wan-subnet", &args.wan_subnet)?,
        wan_port = args.wan_port,
        vpn_port = args.vpn_port,
        vpn_subnet = plain("--vpn-subnet", &args.vpn_subnet)?,
    ))
}

const README: &str = "# The network's desired state

`warren.yaml` describes this network; Warren's controller applies every
commit pushed to this repository's main branch.

- Edit `warren.yaml` (editors that speak the YAML language server check it
  against `warren.schema.json` as you type), then `warren-controller validate .`
- `git commit -am \"…\" && git push`: the controller compiles, signs and pushes
  one plan per host; `warren-controller status` shows each host in sync.
- Enrol a host with `warren-agent init` on it and paste the line it prints
  under the host in `warren.yaml`.
- A phone: `warren-controller client-config . phone --private-key phone.key --qr`
  on the controller's host (add `--state-dir /var/lib/warren-controller`).

Never commit private keys: `.gitignore` keeps `*.key` and `*.conf` out.
";

const VSCODE: &str = "{\n  \"yaml.schemas\": {\n    \"./warren.schema.json\": [\"warren.yaml\"]\n  }\n}\n";

const GITIGNORE: &str =
    "# Private keys and client configurations never belong in the repository.\n*.key\n*.conf\n";

/// Refuse a directory that exists and holds anything.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            anyhow::ensure!(
                entries.next().is_none(),
                "{} is not empty: init only creates a new repository",
                dir.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("read {}", dir.display())),
    }
}

pub fn run(args: Args) -> Outcome {
    let text = yaml(&args)?;
    let name = args.dir.join("warren.yaml").display().to_string();
    let (cfg, diags) = warren_model::load_str(&text, &name);
    eprint!("{diags}");
    if cfg.is_none() {
        eprintln!("{name}: these flags make an invalid warren.yaml; nothing written");
        return Err(Failure::Invalid);
    }
    if args.branch.is_empty() || args.branch.starts_with('-') || args.branch.contains(char::is_whitespace) {
        return Err(usage(format!("--branch {:?} is not a branch name", args.branch)));
    }
    check_empty(&args.dir)?;
    std::fs::create_dir_all(args.dir.join(".vscode"))
        .with_context(|| format!("create {}", args.dir.display()))?;
    let schema = serde_json::to_string_pretty(&warren_model::json_schema())? + "\n";
    for (file, content) in [
        ("warren.yaml", text.as_str()),
        ("warren.schema.json", schema.as_str()),
        ("README.md", README),
        (".gitignore", GITIGNORE),
        (".vscode/settings.json", VSCODE),
    ] {
        let path = args.dir.join(file);
        std::fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
    }
    let commit = first_commit(&args.dir, &args.branch)?;
    eprintln!(
        "initialised {} on branch {} (commit {}): edit warren.yaml, then enrol each host with `warren-agent init`",
        args.dir.display(),
        args.branch,
        &commit[..12.min(commit.len())]
    );
    Ok(())
}

/// `git init` and one commit of everything written, as the user's git
/// identity (or Warren's when none is configured). The commit id.
fn first_commit(dir: &Path, branch: &str) -> anyhow::Result<String> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head(branch);
    let repo =
        git2::Repository::init_opts(dir, &opts).with_context(|| format!("git init {}", dir.display()))?;
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = match repo.signature() {
        Ok(s) => s,
        Err(_) => git2::Signature::now("warren-controller init", "warren@localhost")?,
    };
    let id = repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "warren-controller init: the network's desired state",
        &tree,
        &[],
    )?;
    Ok(id.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    pub fn args(dir: &Path) -> Args {
        Args {
            dir: dir.to_path_buf(),
            gateway_address: "203.0.113.10".into(),
            uplink: "enp0s6".into(),
            router_uplink: "eth0".into(),
            router_lan: "br-lan=192.168.16.1/24".into(),
            management: vec!["2222/tcp".into()],
            controller_port: 7701,
            forwards: vec![
                "minecraft=25565/tcp:192.168.16.20".into(),
                "blog=443/tcp:192.168.16.10:8443".into(),
            ],
            wan_subnet: "10.0.18.0/30".into(),
            wan_port: 51820,
            vpn_subnet: "192.168.17.0/24".into(),
            vpn_port: 13131,
            branch: "main".into(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warren-init-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_yaml_validates_and_compiles_and_says_what_was_asked() {
        let text = yaml(&args(Path::new("/x"))).unwrap();
        let (cfg, diags) = warren_model::load_str(&text, "warren.yaml");
        let cfg = cfg.unwrap_or_else(|| panic!("{diags}\n{text}"));
        assert!(!diags.iter().any(|d| d.is_error()), "{diags}");
        let plans = warren_compiler::compile(&cfg, &warren_compiler::KeyBook::pinned(&cfg)).unwrap();
        assert_eq!(plans.len(), 2);
        assert!(text.starts_with("# yaml-language-server: $schema=./warren.schema.json\n"));
        assert!(text.contains("management: [2222/tcp, 7701/tcp]"), "{text}");
        assert!(
            text.contains("  blog: { port: 443/tcp, to: 192.168.16.10:8443 }\n"),
            "{text}"
        );
        assert!(
            text.ends_with("forwards:\n  minecraft: { port: 25565/tcp, to: 192.168.16.20 }\n  blog: { port: 443/tcp, to: 192.168.16.10:8443 }\n"),
            "forwards come last, so a new one can be appended: {text}"
        );
        // Without forwards the file still validates (`forwards:` is empty).
        let mut a = args(Path::new("/x"));
        a.forwards.clear();
        a.controller_port = 0;
        let text = yaml(&a).unwrap();
        assert!(text.contains("management: [2222/tcp]\n"), "{text}");
        assert!(warren_model::load_str(&text, "w").0.is_some());
    }

    #[test]
    fn injection_and_malformed_flags_are_usage_errors() {
        let mut a = args(Path::new("/x"));
        a.gateway_address = "1.2.3.4\nversion: 2".into();
        assert!(matches!(yaml(&a), Err(Failure::Usage(e)) if e.to_string().contains("--gateway-address")));
        let mut a = args(Path::new("/x"));
        a.forwards = vec!["web:80".into()];
        assert!(
            matches!(yaml(&a), Err(Failure::Usage(e)) if e.to_string().contains("NAME=PORT/PROTO:ADDRESS"))
        );
        let mut a = args(Path::new("/x"));
        a.router_lan = "192.168.1.1/24".into();
        assert!(matches!(yaml(&a), Err(Failure::Usage(e)) if e.to_string().contains("--router-lan")));
        let mut a = args(Path::new("/x"));
        a.forwards = vec!["x={a: 1}:1.2.3.4".into()];
        assert!(matches!(yaml(&a), Err(Failure::Usage(_))));
    }

    #[test]
    fn init_writes_the_repo_with_one_commit_and_refuses_a_non_empty_dir() {
        let dir = scratch("repo");
        run(args(&dir)).unwrap();
        for f in [
            "warren.yaml",
            "warren.schema.json",
            "README.md",
            ".gitignore",
            ".vscode/settings.json",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("warren.schema.json")).unwrap()).unwrap();
        assert_eq!(schema, serde_json::to_value(warren_model::json_schema()).unwrap());
        let repo = git2::Repository::open(&dir).unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.shorthand(), Ok("main"));
        let commit = head.peel_to_commit().unwrap();
        assert_eq!(commit.parent_count(), 0);
        assert_eq!(
            commit.tree().unwrap().len(),
            5,
            "warren.yaml, schema, README, .gitignore, .vscode"
        );
        assert!(repo.statuses(None).unwrap().is_empty(), "everything is committed");
        // A second init into the same directory refuses and changes nothing.
        let e = run(args(&dir)).unwrap_err();
        assert!(
            matches!(&e, Failure::Usage(m) if m.to_string().contains("is not empty")),
            "{e:?}"
        );
        // Invalid flags write nothing at all.
        let other = scratch("invalid");
        let mut a = args(&other);
        a.gateway_address = "10.0.0.1/8".into();
        assert!(run(a).is_err());
        assert!(!other.exists(), "an invalid init wrote files");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
