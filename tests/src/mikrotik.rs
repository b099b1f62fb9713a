//! The seed with a "MikroTik" router: `warren-ros-sim` plays RouterOS v7 in
//! the lab's router namespace (its configuration projected onto that
//! namespace's kernel, default firewall with FastTrack included), and the
//! router's agent runs on a separate LAN host (the lab's `server`, the
//! design's Raspberry Pi), driving the router only through REST.
//!
//! The router's TLS certificate is made here with `openssl` before the lab
//! starts, so that its fingerprint can be pinned in the first commit; the
//! simulator uses a certificate it finds in its `--cert-dir`.

// Test support fails loudly: a panic here is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use crate::bin;
use crate::lab::Lab;
use crate::world::{agent_cmd, World};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The RouterOS user Warren's agent logs in as, and its password.
pub const USER: &str = "warren";
const PASSWORD: &str = "warren-lab-password";
/// The router's administrator (a person in WinBox).
pub const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-lab-password";
/// The router's REST address, on its LAN.
pub const ROUTER_LAN: &str = "192.168.16.1";
/// The LAN host the router's agent runs on.
pub const AGENT_HOST: &str = "server";

/// A self-signed certificate in `dir` (`cert.der`, `key.der` as the simulator
/// reads them, and their PEM forms), and its
/// SHA-256 fingerprint (lowercase hex of the DER).
pub fn make_cert(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=router",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The simulator reads DER: the certificate, and the key as PKCS#8.
    let der = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap();
    assert!(der.status.success());
    std::fs::write(dir.join("cert.der"), &der.stdout).unwrap();
    let key = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "der", "-in"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("key.der"))
        .output()
        .unwrap();
    assert!(
        key.status.success(),
        "openssl pkcs8: {}",
        String::from_utf8_lossy(&key.stderr)
    );
    use sha2::Digest;
    let d = sha2::Sha256::digest(&der.stdout);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed's YAML (as [`World`] writes it) with the router on RouterOS,
/// managed by the `server` LAN host, whose agent takes the router's identity.
pub fn routeros_yaml(y: String, fingerprint: &str) -> String {
    let start = y.find("  router:\n").expect("router block");
    let at = start
        + y[start..]
            .find("    agent: { identity: \"")
            .expect("router agent line");
    let end = at + y[at..].find('\n').expect("line end") + 1;
    let agent_line = y[at..end].to_string();
    let mut out = format!(
        "{}    platform: routeros\n    managed_by: {AGENT_HOST}\n    routeros: {{ address: {ROUTER_LAN}, user: {USER}, fingerprint: \"{fingerprint}\" }}\n{}",
        &y[..at],
        &y[end..]
    );
    let wan = out.find("\nwan_vpn:").expect("wan_vpn");
    out.insert_str(
        wan,
        &format!(
            "  {AGENT_HOST}:\n    role: agent                  # the Pi next to the router\n{agent_line}"
        ),
    );
    out
}

/// The simulator and what the test needs to talk to it.
#[derive(Debug)]
pub struct Sim {
    pub pid: u32,
    pub dir: PathBuf,
    pub fingerprint: String,
}

impl Sim {
    /// Start `ros-sim` in the lab's router namespace, its default
    /// configuration like a home MikroTik's, serving REST on the LAN address.
    pub fn start(lab: &Lab, dir: &Path) -> Sim {
        let fingerprint = if dir.join("cert.der").is_file() {
            std::fs::read_to_string(dir.join("fingerprint"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        } else {
            make_cert(dir)
        };
        let _ = std::fs::remove_file(dir.join("ctl.sock"));
        let sim = bin("ros-sim").display().to_string();
        let listen = format!("{ROUTER_LAN}:443");
        let cert_dir = dir.display().to_string();
        let user = format!("{USER}:{PASSWORD}");
        let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
        let ctl = dir.join("ctl.sock").display().to_string();
        let pid = lab.spawn(
            "router",
            &[
                &sim,
                "--listen",
                &listen,
                "--cert-dir",
                &cert_dir,
                "--user",
                &user,
                "--user",
                &admin,
                "--control",
                &ctl,
                "--interfaces",
                "eth0,br-lan,lan-laptop,lan-server",
                "--defconf",
                "--lan",
                "br-lan",
                "--wan",
                "eth0",
                "--kernel",
            ],
        );
        Lab::wait_for("ros-sim ready", Duration::from_secs(20), || {
            lab.logs(pid).contains("ready ")
        });
        let logs = lab.logs(pid);
        let said = logs
            .lines()
            .find_map(|l| l.strip_prefix("ready "))
            .unwrap_or_default()
            .trim()
            .to_string();
        assert_eq!(
            said, fingerprint,
            "the simulator serves the certificate made for it"
        );
        Sim {
            pid,
            dir: dir.to_path_buf(),
            fingerprint,
        }
    }

    /// One control command; its JSON reply.
    pub fn ctl(&self, cmd: &str) -> serde_json::Value {
        let mut s = std::os::unix::net::UnixStream::connect(self.dir.join("ctl.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        writeln!(s, "{cmd}").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("ctl {cmd}: {e}: {line:?}"))
    }

    /// Successful mutating REST requests since the simulator started.
    pub fn writes(&self) -> u64 {
        self.ctl("writes")["writes"].as_u64().unwrap()
    }

    /// The rows of `menu` (`ip/firewall/nat`) as the simulator holds them.
    pub fn rows(&self, menu: &str) -> Vec<serde_json::Value> {
        self.ctl("dump")["menus"][menu]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The row of `menu` carrying `comment`.
    pub fn row(&self, menu: &str, comment: &str) -> Option<serde_json::Value> {
        self.rows(menu).into_iter().find(|r| r["comment"] == comment)
    }
}

/// A REST request to the router as a person would make it (curl, admin),
/// from the agent's LAN host: (HTTP status, body).
pub fn winbox(lab: &Lab, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let url = format!("https://{ROUTER_LAN}/rest/{path}");
    let auth = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let mut args = vec![
        "curl",
        "-sk",
        "--max-time",
        "5",
        "-u",
        &auth,
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    if let Some(b) = body {
        args.extend(["-H", "content-type: application/json", "--data", b]);
    }
    args.push(&url);
    let o = lab.run(AGENT_HOST, &args);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The agent config lines that make an agent drive a RouterOS router.
pub fn routeros_agent_toml(dir: &Path) -> String {
    let pw = dir.join("routeros.password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    format!("\n[routeros]\npassword_file = \"{}\"\n", pw.display())
}

/// The seed with the router on the simulator, committed; the simulator
/// running; the gateway's agent and the router's agent (on `server`)
/// running; the controller not yet started.
pub fn world(tag: &str) -> (World, Sim) {
    let pre = std::env::temp_dir().join(format!("warren-sim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pre);
    let fp = make_cert(&pre);
    std::fs::write(pre.join("fingerprint"), &fp).unwrap();
    let mut w = World::with_yaml(tag, |y| routeros_yaml(y, &fp));
    let toml = w.dir.join("router.toml");
    let mut t = std::fs::read_to_string(&toml).unwrap();
    t.push_str(&routeros_agent_toml(&w.dir));
    std::fs::write(&toml, t).unwrap();
    let sim = Sim::start(&w.lab, &pre);
    for (host, ns) in [("gateway", "gateway"), ("router", AGENT_HOST)] {
        let v = agent_cmd(&w.dir, host, &["run"]);
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        let pid = w.lab.spawn(ns, &r);
        w.agents.push(pid);
    }
    (w, sim)
}
