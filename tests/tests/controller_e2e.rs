//! warren-controller serve, end to end in the namespace lab: the controller
//! runs on the gateway, dials the gateway's agent (over loopback) and accepts
//! the router's agent, which dials out through CGNAT. A `git push` to a local
//! bare repo reaches both agents, signed and verified, with real packets.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use warren_tests::lab::Lab;
use warren_tests::{bin, root};

fn git(dir: &Path, args: &[&str]) -> String {
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

fn agent_cmd(dir: &Path, host: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        bin("warren-agent").display().to_string(),
        "--config".into(),
        dir.join(format!("{host}.toml")).display().to_string(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn run_in(lab: &Lab, host: &str, v: &[String]) -> String {
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    lab.ok(host, &r)
}

struct World {
    lab: Lab,
    dir: PathBuf,
    work: PathBuf,
    controller: Option<u32>,
    agents: Vec<u32>,
}

impl World {
    /// Lab, controller key, agent configs and identities, and a bare repo
    /// holding the seed (plus the agents' identities and the controller's
    /// port kept on the gateway).
    fn new(tag: &str) -> World {
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
        let seed = std::fs::read_to_string(root().join("examples/seed/warren.yaml")).unwrap();
        let yaml = seed
            .replace("    management: [2222/tcp]", &format!("    management: [2222/tcp, 7701/tcp]   # SSH, and the controller for agents that dial in\n    agent: {{ address: \"127.0.0.1:7700\", identity: \"{}\" }}", ids[0]))
            .replace("    uplink: eth0 ", &format!("    agent: {{ identity: \"{}\" }}   # dials the controller\n    uplink: eth0 ", ids[1]));
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
        }
    }

    fn start_agents(&mut self) {
        for host in ["gateway", "router"] {
            let v = agent_cmd(&self.dir, host, &["run"]);
            let r: Vec<&str> = v.iter().map(String::as_str).collect();
            let pid = self.lab.spawn(host, &r);
            self.agents.push(pid);
        }
    }

    fn start_controller(&mut self) {
        let c = bin("warren-controller").display().to_string();
        let bare = self.dir.join("repo.git").display().to_string();
        let state = self.dir.join("controller").display().to_string();
        let pid = self.lab.spawn(
            "gateway",
            &[
                &c,
                "serve",
                "--repo",
                &bare,
                "--state-dir",
                &state,
                "--poll-secs",
                "0.2",
                "--listen",
                "0.0.0.0:7701",
                "--confirm-secs",
                "30",
            ],
        );
        self.controller = Some(pid);
    }

    fn stop_controller(&mut self) {
        if let Some(pid) = self.controller.take() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn status(&self) -> serde_json::Value {
        let o = Command::new(bin("warren-controller"))
            .args(["status", "--format", "json", "--state-dir"])
            .arg(self.dir.join("controller"))
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self, f: impl Fn(String) -> String, msg: &str) -> String {
        let p = self.work.join("warren.yaml");
        std::fs::write(&p, f(std::fs::read_to_string(&p).unwrap())).unwrap();
        git(&self.work, &["commit", "-qam", msg]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        self.head()
    }

    fn wait_in_sync(&self, commit: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let s = self.status();
            if ["gateway", "router"]
                .iter()
                .all(|h| s["hosts"][h]["state"] == "in sync" && s["hosts"][h]["applied_commit"] == commit)
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

    fn serial(&self, host: &str) -> u64 {
        self.status()["hosts"][host]["applied_serial"]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_push_reaches_both_agents_in_both_directions_and_survives_a_restart() {
    let mut w = World::new("push");
    w.start_agents();
    w.start_controller();
    let c1 = w.head();
    w.wait_in_sync(&c1, Duration::from_secs(40));
    // Real packets: the forward works, and the laptop sees the phone.
    let _laptop = w.lab.listen("laptop", 25565);
    Lab::wait_for("the forward", Duration::from_secs(10), || {
        w.lab
            .connect("phone", "203.0.113.10", 25565, Duration::from_secs(1))
            .is_ok()
    });

    // A new forward: pushed, applied, confirmed; the gateway needs no new plan.
    let gw_serial = w.serial("gateway");
    let rt_serial = w.serial("router");
    let c2 = w.push(
        |y| {
            y.replace(
                "forwards:\n",
                "forwards:\n  blog: { port: 8080/tcp, to: 192.168.16.10 }\n",
            )
        },
        "blog",
    );
    w.wait_in_sync(&c2, Duration::from_secs(15));
    assert_eq!(
        w.serial("gateway"),
        gw_serial,
        "unchanged plan: gateway not re-applied"
    );
    assert_eq!(w.serial("router"), rt_serial + 1);
    let _server = w.lab.listen("server", 8080);
    Lab::wait_for("the new forward", Duration::from_secs(10), || {
        w.lab
            .connect("phone", "203.0.113.10", 8080, Duration::from_secs(1))
            .is_ok()
    });

    // An invalid commit: refused with its diagnostics, agents keep the plan.
    let bad = w.push(|y| y.replace("port: 8080/tcp", "port: 2222/tcp"), "oops");
    Lab::wait_for(
        "the invalid commit to be recorded",
        Duration::from_secs(10),
        || w.status()["last_commit"]["commit"] == bad.as_str(),
    );
    let s = w.status();
    assert_eq!(s["last_commit"]["outcome"], "invalid");
    assert!(
        s["last_commit"]["diagnostics"][0]
            .as_str()
            .unwrap()
            .contains("error[forward-lockout]"),
        "{s}"
    );
    assert_eq!(s["desired_commit"], c2.as_str());
    assert_eq!(s["hosts"]["router"]["state"], "in sync");

    // Restart the controller: it remembers, serials continue, nothing is re-applied.
    let before = w.serial("router");
    w.stop_controller();
    w.start_controller();
    std::thread::sleep(Duration::from_secs(2));
    w.wait_in_sync(&c2, Duration::from_secs(15));
    assert_eq!(w.serial("router"), before, "no needless re-apply after a restart");
    let c3 = w.push(|y| y.replace("port: 2222/tcp", "port: 8081/tcp"), "fix");
    w.wait_in_sync(&c3, Duration::from_secs(15));
    assert_eq!(w.serial("router"), before + 1, "serials continue after a restart");
}
