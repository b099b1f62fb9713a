//! `warren-agent doctor` and the truth in `status`, in the namespace lab
//! against the real binaries: a network that drops the WAN VPN's UDP port
//! (the internet core, where no agent can open it) leaves both hosts "in
//! sync" by their plans, but the
//! router's WAN handshake check says it breaks, and `warren-controller
//! status` shows it under the host until the drop is gone. Then a healthy
//! converged lab passes `doctor` (exit 0), and the problems the test
//! creates (`ip_forward` = 0 after the apply, a process on the WireGuard
//! port, strict `rp_filter` on the tunnel, an uplink MTU below the path
//! MTU) are each named with their fix, with exit 6.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;
use warren_tests::bin;
use warren_tests::lab::Lab;
use warren_tests::world::{agent_cmd, World};

/// A table in the internet core that drops the WAN VPN's handshakes: not
/// on a Warren host, so `foreign_firewall: auto` cannot open it (a drop on
/// the gateway itself would be opened, see foreign_live.rs).
const BLOCK: &str = "table inet blocker {
  chain forward {
    type filter hook forward priority -10; policy accept;
    udp dport 51820 drop
  }
}
";

/// `warren-agent doctor` on `host`: (exit code, stdout).
fn doctor(w: &World, host: &str, format: &str) -> (i32, String) {
    let v = agent_cmd(&w.dir, host, &["doctor", "--format", format]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    let o = w.lab.run(host, &r);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn status_text(w: &World) -> String {
    let o = Command::new(bin("warren-controller"))
        .args(["status", "--state-dir"])
        .arg(w.dir.join("controller"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The checks of `host`'s findings in `status --format json` with severity `breaks`.
fn breaks_in_status(w: &World, host: &str) -> Vec<String> {
    w.status()["hosts"][host]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] == "breaks")
        .map(|f| f["check"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn doctor_names_what_breaks_traffic_and_status_shows_it() {
    let mut w = World::new("doctor");
    // The daemon's doctor every second, so the test need not wait minutes.
    for host in ["gateway", "router"] {
        let p = w.dir.join(format!("{host}.toml"));
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{text}doctor_interval_secs = 1\n")).unwrap();
    }
    w.lab.ok_with_stdin("inet", &["nft", "-f", "-"], BLOCK);
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_settled(&c, Duration::from_secs(90));

    // 1. Both hosts are in sync by their plans, but the router's WAN VPN
    //    never handshakes: status says so under the host.
    Lab::wait_for(
        "the router's wan-handshake finding in status",
        Duration::from_secs(60),
        || breaks_in_status(&w, "router").contains(&"wan-handshake".to_string()),
    );
    let s = w.status();
    assert_eq!(s["hosts"]["router"]["state"], "in_sync", "{s:#}");
    let text = status_text(&w);
    eprintln!("status with the drop:\n{text}");
    let router_line = text.lines().find(|l| l.starts_with("router")).unwrap();
    assert!(router_line.contains("in sync, 1 breaking"), "{text}");
    assert!(
        text.contains("  BREAKS wan-handshake: no handshake on wg0 with gateway (203.0.113.10:51820) within 20 s of apply"),
        "{text}"
    );
    assert!(text.contains("    fix: something drops udp/51820"), "{text}");
    let (code, out) = doctor(&w, "router", "text");
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("BREAKS wan-handshake"), "{out}");

    // 2. The drop goes: the tunnel comes up, the periodic doctor clears the
    //    finding, and doctor passes on both hosts.
    w.lab.ok("inet", &["nft", "delete", "table", "inet", "blocker"]);
    w.wait_tunnel();
    Lab::wait_for(
        "the router's findings to clear in status",
        Duration::from_secs(30),
        || breaks_in_status(&w, "router").is_empty() && !w.status()["hosts"]["router"].is_null(),
    );
    assert!(!status_text(&w).contains("BREAKS"), "{}", status_text(&w));
    for host in ["gateway", "router"] {
        let (code, out) = doctor(&w, host, "text");
        assert_eq!(code, 0, "{host}:\n{out}");
        assert!(out.contains(" 0 breaks"), "{host}:\n{out}");
        let (code, json) = doctor(&w, host, "json");
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(
            v.as_array().unwrap().iter().all(|f| f["severity"] != "breaks"),
            "{json}"
        );
    }
    let (_, out) = doctor(&w, "router", "text");
    assert!(
        out.contains("ok     wan-handshake: wg0 peer gateway: latest handshake"),
        "{out}"
    );

    // 3. The gateway: Warren's wg0 gone (its agent stopped), another process
    //    on udp/51820, and ip_forward reset to 0 after the apply.
    let gw_agent = w.agents[0];
    let _ = Command::new("kill").arg(gw_agent.to_string()).status();
    w.lab.ok("gateway", &["ip", "link", "del", "wg0"]);
    w.lab.spawn(
        "gateway",
        &[
            "python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',51820))\ntime.sleep(600)",
        ],
    );
    Lab::wait_for("python on udp/51820", Duration::from_secs(10), || {
        w.lab.ok("gateway", &["ss", "-H", "-ulpn"]).contains(":51820")
    });
    w.lab.ok("gateway", &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let (code, out) = doctor(&w, "gateway", "text");
    eprintln!("gateway doctor:\n{out}");
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("BREAKS listen-port: udp/51820 (wg0's port) is taken by process python3"),
        "{out}"
    );
    assert!(
        out.contains("fix: stop or reconfigure what holds udp/51820"),
        "{out}"
    );
    assert!(
        out.contains("BREAKS ip-forward: net.ipv4.ip_forward = 0, but the running plan sets 1"),
        "{out}"
    );
    assert!(out.contains("fix: sysctl -w net.ipv4.ip_forward=1"), "{out}");

    // 4. The router: strict rp_filter on the WAN VPN (all and wg0), and an
    //    uplink MTU of 1400 under the seed's default path MTU of 1500.
    w.lab
        .ok("router", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    w.lab
        .ok("router", &["sysctl", "-qw", "net.ipv4.conf.wg0.rp_filter=1"]);
    w.lab
        .ok("router", &["ip", "link", "set", "dev", "eth0", "mtu", "1400"]);
    let (code, out) = doctor(&w, "router", "text");
    eprintln!("router doctor:\n{out}");
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("BREAKS rp-filter: rp_filter on wg0: effective 1 = max(all 1, wg0 1)"),
        "{out}"
    );
    assert!(
        out.contains("fix: sysctl -w net.ipv4.conf.wg0.rp_filter=2"),
        "{out}"
    );
    assert!(
        out.contains("BREAKS uplink-mtu: uplink eth0 MTU 1400 is below the path MTU 1500"),
        "{out}"
    );
    assert!(out.contains("fix: set `path_mtu: 1400`"), "{out}");
    // Strict `all` alone does not break wg0: Warren's wg0 = 2 wins (the max).
    w.lab
        .ok("router", &["sysctl", "-qw", "net.ipv4.conf.wg0.rp_filter=2"]);
    let (_, out) = doctor(&w, "router", "text");
    assert!(
        out.contains("ok     rp-filter: rp_filter on wg0: effective 2 = max(all 1, wg0 2)"),
        "{out}"
    );
}
