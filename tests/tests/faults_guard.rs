//! Faults at the agent's guard: plans a stolen controller key could sign,
//! a WireGuard interface Warren does not own, a hung `wg`. Each runs the
//! real `warren-agent` in the namespace lab against plans signed here with a
//! test key the agent trusts. Needs root, iproute2, wireguard-go and
//! wireguard-tools (./test.sh).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use base64::Engine;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use warren_plan::{Drift, Firewall, PeerKey, Plan, Platform, WgInterface, WgPeer, FORMAT};
use warren_tests::bin;
use warren_tests::lab::Lab;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The router's agent, trusting a test key, with its state in a scratch dir.
struct Router {
    lab: Lab,
    dir: PathBuf,
    key: SigningKey,
}

impl Router {
    fn new(tag: &str) -> Router {
        let lab = Lab::new();
        let dir = std::env::temp_dir().join(format!("warren-guard-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::from_bytes(&[42; 32]);
        let public = B64.encode(key.verifying_key().as_bytes());
        // No drift checks during the test: the report we look at stays the last one.
        std::fs::write(
            dir.join("router.toml"),
            format!(
                "host = \"router\"\nstate_dir = \"{}\"\ntrusted_controller_keys = [\"{public}\"]\nwireguard = \"userspace\"\ndrift_interval_secs = 3600\n",
                dir.join("state").display()
            ),
        )
        .unwrap();
        Router { lab, dir, key }
    }

    fn agent_args(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            bin("warren-agent").display().to_string(),
            "--config".into(),
            self.dir.join("router.toml").display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Run the agent; (exit code, stdout, stderr).
    fn agent(&self, args: &[&str]) -> (i32, String, String) {
        let v = self.agent_args(args);
        let o = self
            .lab
            .run("router", &v.iter().map(String::as_str).collect::<Vec<_>>());
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }

    /// `warren-agent run`, with `path_first` ahead of the usual PATH.
    fn spawn_daemon(&self, path_first: Option<&Path>) -> u32 {
        let mut v = vec!["/usr/bin/env".to_string()];
        if let Some(p) = path_first {
            v.push(format!(
                "PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                p.display()
            ));
        }
        v.extend(self.agent_args(&["run"]));
        self.lab
            .spawn("router", &v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Sign `plan` at `serial` with the trusted test key; the plan file.
    fn sign(&self, plan: Plan, serial: u64) -> PathBuf {
        let sp = warren_plan::sign(plan, serial, "fault", 60, 1_700_000_000, &self.key);
        let path = self.dir.join(format!("plan-{serial}.json"));
        std::fs::write(&path, serde_json::to_vec(&sp).unwrap()).unwrap();
        path
    }

    fn submit(&self, plan: &Path) {
        let (code, _, err) = self.agent(&["submit", "--plan", &plan.display().to_string()]);
        assert_eq!(code, 0, "submit: {err}");
    }

    fn report(&self) -> serde_json::Value {
        let (_, out, _) = self.agent(&["report"]);
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    }

    /// Wait for the report about `serial`; it is returned.
    fn wait_report(&self, serial: u64, timeout: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        Lab::wait_for(&format!("a report about serial {serial}"), timeout, || {
            last = self.report();
            last["serial"] == serial
        });
        last
    }

    /// What the host's network looks like, as the kernel tells it.
    fn live(&self) -> String {
        let mut s = String::new();
        for args in [
            &["ip", "-j", "link", "show"][..],
            &["ip", "-j", "-4", "addr", "show"],
            &["ip", "-j", "-4", "rule", "show"],
            &["ip", "-j", "-4", "route", "show", "table", "all"],
            &["cat", "/proc/sys/net/ipv4/ip_forward"],
        ] {
            s.push_str(&self.lab.ok("router", args));
        }
        s.push_str(&self.agent(&["observe", "--format", "json"]).1);
        s
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A router plan with one WireGuard interface and a peer.
fn plan(sysctls: &[(&str, &str)]) -> Plan {
    Plan {
        format: FORMAT,
        host: "router".into(),
        platform: Platform::Linux,
        drift: Drift::Report,
        sysctls: sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        wireguard: vec![WgInterface {
            name: "wg0".into(),
            addresses: vec!["10.0.18.2/30".parse().unwrap()],
            listen_port: None,
            mtu: 1420,
            peers: vec![WgPeer {
                name: "gateway".into(),
                public_key: PeerKey::Known(B64.encode([7u8; 32])),
                endpoint: Some("203.0.113.10:51820".into()),
                allowed_ips: vec!["10.0.18.1/32".parse().unwrap()],
                persistent_keepalive: Some(25),
            }],
        }],
        routes: vec![],
        rules: vec![],
        firewall: Firewall::None,
        openings: Default::default(),
        routeros: None,
        notes: vec![],
    }
}

#[test]
fn fault_hostile_plan_is_refused() {
    let r = Router::new("hostile");
    let pwned = Path::new("/var/tmp/pwned");
    let _ = std::fs::remove_file(pwned);
    let before = r.live();
    let hostile = r.sign(
        plan(&[("net.ipv4.ip_forward", "1"), ("x./var/tmp/pwned", "1")]),
        1,
    );
    let why = "sysctl \"x./var/tmp/pwned\" is not one a network plan needs";

    // `apply --plan` and `diff --plan` refuse it (exit 4: rejected).
    let (code, _, err) = r.agent(&["apply", "--plan", &hostile.display().to_string()]);
    assert_eq!(code, 4, "apply: {err}");
    assert!(err.contains(why), "{err}");
    let (code, _, err) = r.agent(&["diff", "--plan", &hostile.display().to_string()]);
    assert_eq!(code, 4, "diff: {err}");

    // So does the daemon, and it says why.
    let pid = r.spawn_daemon(None);
    r.submit(&hostile);
    let report = r.wait_report(1, Duration::from_secs(30));
    assert_eq!(report["outcome"], "rejected", "{report}");
    assert!(report["message"].as_str().unwrap().contains(why), "{report}");

    // Nothing was written: no file, no key, no interface, no sysctl.
    assert!(!pwned.exists());
    assert!(!r
        .lab
        .run("router", &["test", "-e", "/var/tmp/pwned"])
        .status
        .success());
    assert!(!r.dir.join("state/wg").exists(), "a WireGuard key was generated");
    assert_eq!(r.live(), before, "the live state changed");

    // The agent goes on: the same plan without the hostile key applies.
    r.submit(&r.sign(plan(&[("net.ipv4.ip_forward", "1")]), 2));
    let report = r.wait_report(2, Duration::from_secs(60));
    assert_eq!(report["outcome"], "applied", "{report}");
    assert!(Router::alive(pid));
}

#[test]
fn fault_foreign_wg0_is_not_taken_over() {
    let r = Router::new("foreign");
    // A hand-made wg0 (wg-quick's, say): its own key, a peer, an address.
    r.lab.ok("router", &["wireguard-go", "wg0"]);
    Lab::wait_for("wireguard-go's socket", Duration::from_secs(10), || {
        r.lab.run("router", &["wg", "show", "wg0"]).status.success()
    });
    let secret = r.dir.join("foreign.key");
    std::fs::write(&secret, r.lab.ok("router", &["wg", "genkey"])).unwrap();
    let peer = B64.encode([9u8; 32]);
    r.lab.ok(
        "router",
        &[
            "wg",
            "set",
            "wg0",
            "private-key",
            &secret.display().to_string(),
            "peer",
            &peer,
            "allowed-ips",
            "10.9.9.9/32",
        ],
    );
    r.lab
        .ok("router", &["ip", "addr", "add", "10.9.9.1/24", "dev", "wg0"]);
    r.lab.ok("router", &["ip", "link", "set", "wg0", "up"]);
    let foreign = || {
        (
            r.lab.ok("router", &["wg", "show", "wg0", "public-key"]),
            r.lab.ok("router", &["wg", "show", "wg0", "allowed-ips"]),
            r.lab
                .ok("router", &["ip", "-j", "-4", "addr", "show", "dev", "wg0"]),
        )
    };
    let before = foreign();
    assert!(before.1.contains(&peer), "{before:?}");

    let router_plan = r.sign(plan(&[("net.ipv4.ip_forward", "1")]), 1);
    let why = "interface wg0 already exists on this host and Warren did not create it";
    let (code, _, err) = r.agent(&["apply", "--plan", &router_plan.display().to_string()]);
    assert_eq!(code, 4, "apply: {err}");
    assert!(err.contains(why) && err.contains("ip link del wg0"), "{err}");

    let pid = r.spawn_daemon(None);
    r.submit(&router_plan);
    let report = r.wait_report(1, Duration::from_secs(30));
    assert_eq!(report["outcome"], "rejected", "{report}");
    assert!(report["message"].as_str().unwrap().contains(why), "{report}");
    assert_eq!(foreign(), before, "the foreign wg0 was changed");
    assert!(
        !r.dir.join("state/wg/wg0.key").exists(),
        "a key for wg0 was generated"
    );
    assert!(Router::alive(pid));
}

#[test]
fn fault_hung_wg_times_out() {
    let r = Router::new("hung-wg");
    let shims = r.dir.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let wg = shims.join("wg");
    std::fs::write(&wg, "#!/bin/sh\nexec sleep 100000\n").unwrap();
    std::fs::set_permissions(&wg, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let pid = r.spawn_daemon(Some(&shims));
    r.submit(&r.sign(plan(&[("net.ipv4.ip_forward", "1")]), 1));
    // One `wg` call hangs for its 10 s deadline, then the apply fails.
    let report = r.wait_report(1, Duration::from_secs(60));
    assert_eq!(report["outcome"], "failed", "{report}");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains("`wg set wg0") && message.contains("timed out after 10s"),
        "{report}"
    );
    assert!(Router::alive(pid), "the agent died:\n{}", r.lab.logs(pid));
    // The hung child was killed, not left behind.
    Lab::wait_for("the hung wg to be gone", Duration::from_secs(10), || {
        !r.lab
            .run("router", &["pgrep", "-f", "sleep 100000"])
            .status
            .success()
    });
}
