//! warren-agent on Linux, end to end, with real packets: two agents (gateway
//! and router namespaces) apply plans compiled from `examples/seed` over
//! userspace WireGuard, nftables and policy routing in the namespace lab.
//! Needs root, nftables, iproute2, wireguard-go and wireguard-tools (./test.sh).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use warren_tests::lab::Lab;
use warren_tests::{bin, root};

/// A lab with a controller key, two agents' state and configs, and the seed.
struct Site {
    lab: Lab,
    dir: PathBuf,
    key: PathBuf,
    yaml: PathBuf,
    keys: PathBuf,
}

impl Site {
    fn new(tag: &str, edit: impl Fn(String) -> String) -> Site {
        let lab = Lab::new();
        let dir = std::env::temp_dir().join(format!("warren-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("repo")).unwrap();
        let yaml = dir.join("repo/warren.yaml");
        std::fs::write(
            &yaml,
            edit(std::fs::read_to_string(root().join("examples/seed/warren.yaml")).unwrap()),
        )
        .unwrap();
        let key = dir.join("controller.key");
        let out = std::process::Command::new(bin("warren-controller"))
            .args(["keygen", "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let mut keys = serde_json::Map::new();
        for (host, ifaces) in [("gateway", vec!["wg0"]), ("router", vec!["wg0", "wg1"])] {
            let cfg = dir.join(format!("{host}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "host = \"{host}\"\nstate_dir = \"{}\"\ntrusted_controller_keys = [\"{public}\"]\nwireguard = \"userspace\"\ndrift_interval_secs = 1\n",
                    dir.join(format!("state-{host}")).display()
                ),
            )
            .unwrap();
            let mut args = vec!["keys", "--format", "json"];
            for i in &ifaces {
                args.extend(["--interface", i]);
            }
            let j: serde_json::Value =
                serde_json::from_str(&Site::agent_ok(&lab, &dir, host, &args)).unwrap();
            assert!(j["identity"].as_str().unwrap().starts_with("ssh-ed25519 "));
            keys.insert(host.to_string(), j["wireguard"].clone());
        }
        let keyfile = dir.join("keys.json");
        std::fs::write(&keyfile, serde_json::to_string(&keys).unwrap()).unwrap();
        Site {
            lab,
            dir,
            key,
            yaml,
            keys: keyfile,
        }
    }

    fn agent_args(dir: &Path, host: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            bin("warren-agent").display().to_string(),
            "--config".into(),
            dir.join(format!("{host}.toml")).display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn agent_ok(lab: &Lab, dir: &Path, host: &str, args: &[&str]) -> String {
        let v = Site::agent_args(dir, host, args);
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        lab.ok(host, &r)
    }

    /// Run the agent in `host`; (exit code, stdout, stderr).
    fn agent(&self, host: &str, args: &[&str]) -> (i32, String, String) {
        let v = Site::agent_args(&self.dir, host, args);
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        let o = self.lab.run(host, &r);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }

    fn spawn_agent(&self, host: &str) -> u32 {
        let v = Site::agent_args(&self.dir, host, &["run"]);
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        self.lab.spawn(host, &r)
    }

    /// Compile and sign the current YAML at `serial`; the plan file for `host`.
    fn sign(&self, serial: u64, host: &str, confirm_secs: u32) -> PathBuf {
        self.sign_with(serial, host, confirm_secs, &self.keys)
    }

    fn sign_with(&self, serial: u64, host: &str, confirm_secs: u32, keys: &Path) -> PathBuf {
        let out = self.dir.join(format!("plans-{serial}"));
        let o = std::process::Command::new(bin("warren-controller"))
            .arg("sign")
            .arg(self.yaml.parent().unwrap())
            .arg("--key")
            .arg(&self.key)
            .args([
                "--serial",
                &serial.to_string(),
                "--confirm-secs",
                &confirm_secs.to_string(),
            ])
            .arg("--out")
            .arg(&out)
            .arg("--keys")
            .arg(keys)
            .output()
            .unwrap();
        assert!(o.status.success(), "sign: {}", String::from_utf8_lossy(&o.stderr));
        out.join(format!("{host}.plan.json"))
    }

    fn apply(&self, host: &str, plan: &Path) -> String {
        let (code, out, err) = self.agent(host, &["apply", "--plan", &plan.display().to_string()]);
        assert_eq!(code, 0, "{host} apply failed: {err}\n{out}");
        out
    }

    fn edit_yaml(&self, f: impl Fn(String) -> String) {
        std::fs::write(&self.yaml, f(std::fs::read_to_string(&self.yaml).unwrap())).unwrap();
    }

    fn report(&self, host: &str) -> serde_json::Value {
        let (_, out, _) = self.agent(host, &["report"]);
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    }

    /// Both agents apply serial 1; the WAN VPN handshakes.
    fn converge(&self) {
        for host in ["gateway", "router"] {
            let plan = self.sign(1, host, 60);
            self.apply(host, &plan);
        }
        Lab::wait_for("the WAN VPN handshake", Duration::from_secs(15), || {
            let out = self
                .lab
                .ok("gateway", &["wg", "show", "wg0", "latest-handshakes"]);
            out.split_whitespace().nth(1).is_some_and(|t| t != "0")
        });
    }

    fn phone_reaches(&self, port: u16) -> Result<String, String> {
        self.lab
            .connect("phone", "203.0.113.10", port, Duration::from_secs(2))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn seed_port_forward_carries_real_packets_and_reapplying_changes_nothing() {
    let s = Site::new("seed", |y| y);
    s.converge();
    let _laptop = s.lab.listen("laptop", 25565);
    let seen = s.phone_reaches(25565).expect("phone -> gateway:25565 -> laptop");
    assert!(
        seen.starts_with("198.51.100.50:"),
        "the laptop sees the phone's real address: {seen}"
    );
    // The gateway keeps its SSH port.
    let _ssh = s.lab.listen("gateway", 2222);
    let seen = s.phone_reaches(2222).expect("gateway:2222 stays on the gateway");
    assert!(seen.starts_with("198.51.100.50:"), "{seen}");

    // A connection through the tunnel stays open across re-applies and a new forward.
    let held = s.lab.hold("phone", "203.0.113.10", 25565);
    Lab::wait_for("the held connection", Duration::from_secs(5), || held.alive());
    for host in ["gateway", "router"] {
        let out = s.apply(host, &s.sign(2, host, 60));
        assert!(
            out.ends_with("0 operations (0 writes)\n"),
            "{host}: re-applying the same plan must write nothing:\n{out}"
        );
    }
    s.edit_yaml(|y| {
        y.replace(
            "forwards:\n",
            "forwards:\n  blog: { port: 8080/tcp, to: 192.168.16.10 }\n",
        )
    });
    let gw = s.apply("gateway", &s.sign(3, "gateway", 60));
    assert!(
        gw.ends_with("0 operations (0 writes)\n"),
        "forward_all: the gateway is unchanged:\n{gw}"
    );
    let rt = s.apply("router", &s.sign(3, "router", 60));
    assert!(
        rt.starts_with("table ip warren: expected the plan's table") && rt.contains("1 operations"),
        "only the table changes:\n{rt}"
    );
    let _server = s.lab.listen("server", 8080);
    assert!(s
        .phone_reaches(8080)
        .expect("the new forward works")
        .starts_with("198.51.100.50:"));
    std::thread::sleep(Duration::from_millis(600));
    assert!(held.alive(), "the held connection survived: {}", held.output());
    assert!(s.phone_reaches(25565).is_ok());
}

#[test]
fn drift_is_reported_with_the_resource_named_and_healed_when_asked() {
    let s = Site::new("drift", |y| {
        y.replace("    uplink: eth0 ", "    drift: heal\n    uplink: eth0 ")
    });
    s.converge();
    // Report only on the gateway (policy report): delete its table by hand.
    s.lab.ok("gateway", &["nft", "flush", "table", "ip", "warren"]);
    let (code, out, _) = s.agent("gateway", &["diff"]);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("table ip warren: expected the plan's table")
            && out.contains("chain inbound rules missing"),
        "{out}"
    );
    // Router: a policy rule deleted by hand is named...
    s.lab.ok(
        "router",
        &[
            "ip", "rule", "del", "fwmark", "0xa", "table", "100", "priority", "456",
        ],
    );
    let (code, out, _) = s.agent("router", &["diff"]);
    assert_eq!(code, 5);
    assert_eq!(
        out,
        "rule 456: from all fwmark 0xa lookup 100: expected present, found absent\n1 operations\n"
    );
    // ...and healed by the daemon, since the router's policy is heal.
    let _d = s.spawn_agent("router");
    Lab::wait_for("the router to heal", Duration::from_secs(10), || {
        s.lab
            .ok("router", &["ip", "rule", "show"])
            .contains("fwmark 0xa lookup 100")
    });
    // The report is written just after the rule: wait for it, do not race it.
    Lab::wait_for("the router's healed report", Duration::from_secs(10), || {
        s.report("router")["outcome"] == "healed"
    });
    // At start-up the daemon restores its plan whatever the policy (a
    // reboot is not drift); tampering after that is only reported.
    let _g = s.spawn_agent("gateway");
    Lab::wait_for(
        "the gateway restored at start-up",
        Duration::from_secs(10),
        || {
            s.report("gateway")["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("restored at start-up"))
        },
    );
    s.lab.ok("gateway", &["nft", "flush", "table", "ip", "warren"]);
    Lab::wait_for("the gateway's drift report", Duration::from_secs(10), || {
        s.report("gateway")["outcome"] == "drift"
    });
    let r = s.report("gateway");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("chain inbound rules missing"),
        "{r}"
    );
    assert!(
        !s.lab
            .ok("gateway", &["nft", "list", "table", "ip", "warren"])
            .contains("dnat"),
        "policy report: the gateway is not healed"
    );
}

#[test]
fn bad_plans_are_rejected_and_change_nothing() {
    let s = Site::new("reject", |y| y);
    s.converge();
    let before = |h: &str| s.agent(h, &["observe", "--format", "json"]).1;
    let gw0 = before("gateway");
    let rt0 = before("router");
    let good = s.sign(5, "router", 60);
    let text = std::fs::read_to_string(&good).unwrap();
    let write = |name: &str, t: String| {
        let p = s.dir.join(name);
        std::fs::write(&p, t).unwrap();
        p.display().to_string()
    };
    let tampered = write("tampered.json", text.replace("192.168.16.20", "192.168.16.66"));
    let mut unsigned: serde_json::Value = serde_json::from_str(&text).unwrap();
    unsigned["signature"] = serde_json::Value::String(String::new());
    let unsigned = write("unsigned.json", unsigned.to_string());
    let cases = [
        (tampered, "router", "plan content does not match the signed hash"),
        (unsigned, "router", "signature is malformed"),
        (
            s.sign(6, "gateway", 60).display().to_string(),
            "router",
            "plan is for host \"gateway\", this is \"router\"",
        ),
        (
            write("garbage.json", "{\"envelope\": 7}".into()),
            "router",
            "is not a signed plan",
        ),
    ];
    for (plan, host, why) in cases {
        let (code, out, err) = s.agent(host, &["apply", "--plan", &plan]);
        let want = if why.contains("not a signed plan") { 3 } else { 4 };
        assert_eq!(code, want, "{plan}: {err}{out}");
        assert!(err.contains(why), "{plan}: {err}");
    }
    // The running plan delivered again is converged again, not a replay.
    let again = s.dir.join("plans-1/router.plan.json").display().to_string();
    let (code, out, err) = s.agent("router", &["apply", "--plan", &again]);
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(s.report("router")["outcome"], "unchanged");
    // Apply serial 5, then an old serial (4) is refused too.
    s.apply("router", &good);
    let (code, _, err) = s.agent(
        "router",
        &["apply", "--plan", &s.sign(4, "router", 60).display().to_string()],
    );
    assert_eq!(code, 4);
    assert!(
        err.contains("plan serial 4 is not above the last applied serial 5"),
        "{err}"
    );
    assert_eq!(before("gateway"), gw0);
    let rt1 = before("router");
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("latest_handshake"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&rt1), strip(&rt0), "rejected plans changed nothing");
}

#[test]
fn an_unconfirmed_plan_that_cuts_the_tunnel_is_rolled_back() {
    let s = Site::new("rollback", |y| y);
    s.converge();
    let _laptop = s.lab.listen("laptop", 25565);
    s.phone_reaches(25565).expect("works before");
    let pid = s.spawn_agent("router");
    // A botched key rotation: the router's plan names a wrong key for the
    // gateway. (A wrong endpoint would not do: WireGuard roams back to the
    // address the gateway's packets come from.)
    let mut keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&s.keys).unwrap()).unwrap();
    keys["gateway"]["wg0"] = serde_json::Value::String("QkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkFEQkE=".into());
    let bad_keys = s.dir.join("bad-keys.json");
    std::fs::write(&bad_keys, keys.to_string()).unwrap();
    let plan = s.sign_with(7, "router", 4, &bad_keys);
    let (code, _, err) = s.agent("router", &["submit", "--plan", &plan.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    Lab::wait_for("the daemon to apply serial 7", Duration::from_secs(5), || {
        let r = s.report("router");
        r["serial"] == 7 && r["outcome"] == "applied"
    });
    assert!(s.phone_reaches(25565).is_err(), "the bad plan cuts the path");
    Lab::wait_for("the rollback", Duration::from_secs(10), || {
        s.report("router")["outcome"] == "rolled_back"
    });
    Lab::wait_for("traffic to flow again", Duration::from_secs(15), || {
        s.phone_reaches(25565).is_ok()
    });
    // The bad serial stays spent; a confirmed plan is kept.
    let plan = s.sign(8, "router", 2);
    s.agent("router", &["submit", "--plan", &plan.display().to_string()]);
    Lab::wait_for("serial 8", Duration::from_secs(5), || {
        s.report("router")["serial"] == 8
    });
    s.agent("router", &["confirm", "--serial", "8"]);
    std::thread::sleep(Duration::from_secs(4));
    let r = s.report("router");
    assert_ne!(
        r["outcome"],
        "rolled_back",
        "a confirmed plan stays: {r}\n{}",
        s.lab.logs(pid)
    );
    assert!(s.phone_reaches(25565).is_ok());
}

#[test]
fn private_keys_stay_on_the_host_and_teardown_removes_only_warrens_state() {
    use std::os::unix::fs::PermissionsExt;
    let s = Site::new("keys", |y| y);
    // A foreign route and rule on the router: Warren must leave them alone.
    s.lab.ok(
        "router",
        &[
            "ip", "rule", "add", "fwmark", "0x99", "table", "99", "priority", "999",
        ],
    );
    s.lab.ok(
        "router",
        &["ip", "route", "add", "10.99.0.0/16", "dev", "eth0", "table", "99"],
    );
    s.converge();
    let mut outputs = String::new();
    for host in ["gateway", "router"] {
        for args in [
            &["keys"][..],
            &["keys", "--format", "json"],
            &["observe"],
            &["observe", "--format", "json"],
            &["report"],
            &["diff"],
        ] {
            let (_, out, err) = s.agent(host, args);
            outputs.push_str(&out);
            outputs.push_str(&err);
        }
        for f in [
            "plans-1/gateway.plan.json",
            "plans-1/router.plan.json",
            "keys.json",
        ] {
            outputs.push_str(&std::fs::read_to_string(s.dir.join(f)).unwrap());
        }
        for f in ["applied.json", "report.json", "owned.json"] {
            outputs.push_str(
                &std::fs::read_to_string(s.dir.join(format!("state-{host}/{f}"))).unwrap_or_default(),
            );
        }
    }
    for host in ["gateway", "router"] {
        let wg = s.dir.join(format!("state-{host}/wg"));
        for e in std::fs::read_dir(&wg).unwrap() {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
            let secret = std::fs::read_to_string(&p).unwrap();
            assert!(
                !outputs.contains(secret.trim()),
                "private key of {} leaked",
                p.display()
            );
        }
        let id = s.dir.join(format!("state-{host}/identity.key"));
        assert_eq!(
            std::fs::metadata(&id).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!outputs.contains(std::fs::read_to_string(&id).unwrap().trim()));
    }
    // Teardown: Warren's interfaces, routes, rules and table go; sysctls return.
    let (code, out, err) = s.agent("router", &["teardown"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("interface wg0: expected absent, found present"),
        "{out}"
    );
    let rules = s.lab.ok("router", &["ip", "rule", "show"]);
    assert!(
        !rules.contains("lookup 100") && rules.contains("fwmark 0x99 lookup 99"),
        "{rules}"
    );
    assert!(s
        .lab
        .ok("router", &["ip", "route", "show", "table", "99"])
        .contains("10.99.0.0/16"));
    assert!(
        s.lab
            .run("router", &["nft", "list", "table", "ip", "warren"])
            .status
            .code()
            != Some(0)
    );
    assert!(s.lab.run("router", &["ip", "link", "show", "wg0"]).status.code() != Some(0));
    assert_eq!(
        s.lab
            .ok("router", &["cat", "/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "0",
        "ip_forward restored"
    );
    let (_, obs, _) = s.agent("router", &["observe"]);
    assert_eq!(obs.trim(), "nft table ip warren: absent", "{obs}");
}
