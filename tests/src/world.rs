//! A whole Warren site in the namespace lab: controller key, agent configs and
//! identities, a bare git repo holding the seed, and helpers to push, read
//! `status`, and talk HTTP to the controller. Used by the end-to-end tests and
//! the push-latency benchmark.

// Test support fails loudly: a panic here is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use crate::lab::Lab;
use crate::{bin, root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=warren-test",
            "-c",
            "user.email=t@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn agent_cmd(dir: &Path, host: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        bin("warren-agent").display().to_string(),
        "--config".into(),
        dir.join(format!("{host}.toml")).display().to_string(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

pub fn run_in(lab: &Lab, host: &str, v: &[String]) -> String {
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    lab.ok(host, &r)
}

#[derive(Debug)]
pub struct World {
    pub lab: Lab,
    pub dir: PathBuf,
    pub work: PathBuf,
    pub controller: Option<u32>,
    pub agents: Vec<u32>,
    /// The phone's WireGuard private key (generated here, as on a real phone).
    pub phone_private: String,
}

impl World {
    /// Lab, controller key, agent configs and identities, and a bare repo
    /// holding the seed (plus the agents' identities and the controller's
    /// port kept on the gateway).
    pub fn new(tag: &str) -> World {
        World::with_yaml(tag, |y| y)
    }

    /// [`World::new`], with the seed's YAML passed through `edit` before the
    /// first commit (e.g. to put a host on `netfilter: iptables`).
    pub fn with_yaml(tag: &str, edit: impl Fn(String) -> String) -> World {
        let lab = Lab::new();
        let dir = std::env::temp_dir().join(format!("warren-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("controller")).unwrap();
        let out = Command::new(bin("warren-controller"))
            .args(["keygen", "--out"])
            .arg(dir.join("controller/controller.key"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut ids = Vec::new();
        for (host, link) in [
            ("gateway", "listen = \"127.0.0.1:7700\""),
            ("router", "dial = \"203.0.113.10:7701\""),
        ] {
            std::fs::write(
                dir.join(format!("{host}.toml")),
                format!(
                    "host = \"{host}\"\nstate_dir = \"{}\"\ntrusted_controller_keys = [\"{public}\"]\nwireguard = \"userspace\"\ndrift_interval_secs = 1\ncontroller = {{ {link} }}\n",
                    dir.join(format!("state-{host}")).display()
                ),
            )
            .unwrap();
            let j: serde_json::Value = serde_json::from_str(&run_in(
                &lab,
                host,
                &agent_cmd(&dir, host, &["keys", "--format", "json"]),
            ))
            .unwrap();
            ids.push(j["identity"].as_str().unwrap().to_string());
        }
        let phone_private = wg_genkey();
        let phone_public = wg_pubkey(&phone_private);
        let seed = std::fs::read_to_string(root().join("examples/seed/warren.yaml"))
            .unwrap()
            .replace("m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=", &phone_public);
        let yaml = seed
            .replace("    management: [2222/tcp]", &format!("    management: [2222/tcp, 7701/tcp]   # SSH, and the controller for agents that dial in\n    agent: {{ address: \"127.0.0.1:7700\", identity: \"{}\" }}", ids[0]))
            .replace("    uplink: eth0 ", &format!("    agent: {{ identity: \"{}\" }}   # dials the controller\n    uplink: eth0 ", ids[1]));
        let yaml = edit(yaml);
        let bare = dir.join("repo.git");
        git(
            &dir,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        let work = dir.join("work");
        git(
            &dir,
            &["clone", "-q", bare.to_str().unwrap(), work.to_str().unwrap()],
        );
        git(&work, &["checkout", "-q", "-b", "main"]);
        std::fs::write(work.join("warren.yaml"), yaml).unwrap();
        git(&work, &["add", "warren.yaml"]);
        git(&work, &["commit", "-qm", "seed"]);
        git(&work, &["push", "-q", "origin", "main"]);
        World {
            lab,
            dir,
            work,
            controller: None,
            agents: vec![],
            phone_private,
        }
    }

    pub fn start_agents(&mut self) {
        for host in ["gateway", "router"] {
            let v = agent_cmd(&self.dir, host, &["run"]);
            let r: Vec<&str> = v.iter().map(String::as_str).collect();
            let pid = self.lab.spawn(host, &r);
            self.agents.push(pid);
        }
    }

    pub fn start_controller(&mut self) {
        self.start_controller_with(&["--poll-secs", "0.2"]);
    }

    pub fn start_controller_with(&mut self, extra: &[&str]) {
        let c = bin("warren-controller").display().to_string();
        let bare = self.dir.join("repo.git").display().to_string();
        let state = self.dir.join("controller").display().to_string();
        let mut args = vec![
            c.as_str(),
            "serve",
            "--repo",
            &bare,
            "--state-dir",
            &state,
            "--listen",
            "0.0.0.0:7701",
            "--confirm-secs",
            "30",
        ];
        args.extend_from_slice(extra);
        let pid = self.lab.spawn("gateway", &args);
        self.controller = Some(pid);
    }

    /// An HTTP/1.1 request from inside the gateway (bash's /dev/tcp); the status line.
    pub fn http(&self, port: u16, request: &str) -> String {
        use std::io::Write;
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; cat >&3; timeout 2 head -n1 <&3");
        let mut child = self
            .lab
            .cmd("gateway", &["bash", "-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn webhook(&self, body: &str, signature: Option<&str>, delivery: &str) -> String {
        let sig = signature
            .map(|s| format!("X-Hub-Signature-256: {s}\r\n"))
            .unwrap_or_default();
        self.http(
            9180,
            &format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n{sig}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    pub fn stop_controller(&mut self) {
        if let Some(pid) = self.controller.take() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let o = Command::new(bin("warren-controller"))
            .args(["status", "--format", "json", "--state-dir"])
            .arg(self.dir.join("controller"))
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn push(&self, f: impl Fn(String) -> String, msg: &str) -> String {
        let p = self.work.join("warren.yaml");
        std::fs::write(&p, f(std::fs::read_to_string(&p).unwrap())).unwrap();
        git(&self.work, &["commit", "-qam", msg]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        self.head()
    }

    pub fn wait_in_sync(&self, commit: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let s = self.status();
            if ["gateway", "router"]
                .iter()
                .all(|h| s["hosts"][h]["state"] == "in_sync" && s["hosts"][h]["applied_commit"] == commit)
            {
                return;
            }
            if std::time::Instant::now() > deadline {
                let mut logs = self.controller.map(|p| self.lab.logs(p)).unwrap_or_default();
                for p in &self.agents {
                    logs.push_str(&self.lab.logs(*p));
                }
                panic!("timed out after {timeout:?} waiting for both hosts in sync at {commit}\nstatus: {s:#}\ncontroller log:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn serial(&self, host: &str) -> u64 {
        self.status()["hosts"][host]["applied_serial"]
            .as_u64()
            .unwrap_or(0)
    }
}

impl World {
    /// Both hosts in sync at `commit` with the same serials for a whole
    /// second: the first convergence's key exchange has finished.
    pub fn wait_settled(&self, commit: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            self.wait_in_sync(
                commit,
                deadline.saturating_duration_since(std::time::Instant::now()),
            );
            let now = (self.serial("gateway"), self.serial("router"));
            if last == Some(now) {
                return;
            }
            last = Some(now);
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Push a commit adding the forward `name: { port: PORT, to: TO }`.
    pub fn push_forward(&self, name: &str, port: &str, to: &str) -> String {
        let line = format!("forwards:\n  {name}: {{ port: {port}, to: {to} }}\n");
        self.push(|y| y.replacen("forwards:\n", &line, 1), name)
    }

    /// In sync means applied; wait for the WAN VPN's first handshake too.
    pub fn wait_tunnel(&self) {
        Lab::wait_for("the WAN VPN handshake", Duration::from_secs(15), || {
            let out = self
                .lab
                .ok("gateway", &["wg", "show", "wg0", "latest-handshakes"]);
            out.split_whitespace().nth(1).is_some_and(|t| t != "0")
        });
    }

    /// The phone's private VPN, as a user brings it up: the controller's
    /// client config (with the keys the agents reported), the phone's own
    /// private key filled in, and plain `wg-quick up` (userspace fallback).
    pub fn phone_vpn_up(&self) -> String {
        self.vpn_client_up("phone", &self.phone_private, "wgp")
    }

    /// The private VPN client `client` on the phone's namespace, with its
    /// private key filled in, as `wg-quick up` of interface `iface`.
    pub fn vpn_client_up(&self, client: &str, private: &str, iface: &str) -> String {
        let o = Command::new(bin("warren-controller"))
            .arg("client-config")
            .arg(&self.work)
            .arg(client)
            .arg("--state-dir")
            .arg(self.dir.join("controller"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "client-config: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let conf = String::from_utf8(o.stdout).unwrap();
        assert!(!conf.contains("awaiting"), "the router's key is known: {conf}");
        let conf = conf.replace("<this device's private key>", private);
        let path = self.dir.join(format!("{iface}.conf"));
        std::fs::write(&path, &conf).unwrap();
        let p = path.display().to_string();
        self.lab.ok("phone", &["wg-quick", "up", &p]);
        conf
    }
}

pub fn wg_genkey() -> String {
    let o = Command::new("wg")
        .arg("genkey")
        .output()
        .expect("wg genkey (wireguard-tools)");
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

pub fn wg_pubkey(private: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(private.as_bytes()).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
