//! Hosts as they really are: the gateway is a cloud VPS with the image's
//! default iptables rules and Docker's (iptables-nft), the router a home
//! router with a default-drop firewall in iptables-legacy and a native nft
//! `table inet filter`. With `foreign_firewall: auto` (the default) Warren
//! opens exactly its own paths through them and every path works; the
//! foreign rules are all still there, in the same order, and teardown
//! leaves exactly them. With `own-table-only` the traffic is dropped,
//! nothing foreign is touched, and the findings name each problem with a
//! fix that, pasted, makes it work.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;
use warren_plan::foreign::{self, ForeignState};
use warren_plan::{Finding, Plan, Severity, State};
use warren_tests::lab::{wt_net, Lab};
use warren_tests::world::{agent_cmd, run_in, wg_genkey, wg_pubkey, World};

/// A cloud Ubuntu image's INPUT and FORWARD, plus what Docker adds
/// (`FORWARD DROP`, `DOCKER-USER` jumped to first). 7701/tcp is the port
/// of the controller the operator runs on this VPS (the lab runs it
/// there), opened by the operator like SSH: it is not a path of Warren's
/// agent, which listens on loopback here.
const GATEWAY_IPTABLES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 7701 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
-A DOCKER-USER -j RETURN
COMMIT
";

/// A home router's firewall in iptables-legacy: forwarded traffic dropped
/// unless it is a reply or leaves the LAN.
const ROUTER_IPTABLES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i br-lan -j ACCEPT
COMMIT
";

/// And a native nft firewall next to it (as a distribution's nftables.conf
/// has it): input and forward default-drop.
const ROUTER_NFT: &str = "table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname \"lo\" accept
    iifname \"br-lan\" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"br-lan\" oifname \"eth0\" accept
  }
}
";

fn install_foreign_firewalls(w: &World) {
    w.lab
        .ok_with_stdin("gateway", &["iptables-nft-restore"], GATEWAY_IPTABLES);
    w.lab
        .ok_with_stdin("router", &["iptables-legacy-restore"], ROUTER_IPTABLES);
    w.lab.ok_with_stdin("router", &["nft", "-f", "-"], ROUTER_NFT);
}

/// An `iptables-save` dump without comments and counters; without Warren's
/// holes too unless `ours`.
fn ipt_rules(w: &World, host: &str, save: &str, ours: bool) -> String {
    w.lab
        .ok(host, &[save, "-t", "filter"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| ours || !(l.contains("WARREN-INPUT") || l.contains("WARREN-FORWARD")))
        .map(|l| match l.strip_prefix(':') {
            Some(decl) => format!(":{}", decl.split(" [").next().unwrap()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `table inet filter` as JSON items without handles and counters; without
/// Warren's chains and jumps unless `ours`.
fn nft_rules(w: &World, ours: bool) -> String {
    let out = w
        .lab
        .ok("router", &["nft", "-j", "list", "table", "inet", "filter"]);
    let norm = warren_plan::nft::normalize_listing(&out).unwrap();
    let items: Vec<serde_json::Value> = serde_json::from_str(&norm).unwrap();
    items
        .iter()
        .filter(|i| {
            let chain = i
                .get("chain")
                .and_then(|c| c["name"].as_str())
                .or_else(|| i.get("rule").and_then(|r| r["chain"].as_str()))
                .unwrap_or("");
            let jump = i.get("rule").is_some_and(|r| r["comment"] == "warren");
            ours || !(chain.starts_with("warren_") || jump)
        })
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every foreign rule of both hosts, in order (Warren's own left out
/// unless `ours`).
fn foreign_rules(w: &World, ours: bool) -> String {
    format!(
        "gateway\n{}\nrouter legacy\n{}\nrouter nft\n{}",
        ipt_rules(w, "gateway", "iptables-nft-save", ours),
        ipt_rules(w, "router", "iptables-legacy-save", ours),
        nft_rules(w, ours)
    )
}

fn udp_ask(w: &World, addr: &str, port: u16) -> Result<String, String> {
    let bin = wt_net().display().to_string();
    let o = w
        .lab
        .run("phone", &[&bin, "udp-ask", addr, &port.to_string(), "3000"]);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

/// The private VPN client on the phone reaches the server on the LAN,
/// seen from its VPN address.
fn vpn_reaches_the_lan(w: &World, iface: &str, address: &str) {
    let _server = w.lab.listen("server", 9000);
    Lab::wait_for(
        &format!("{iface} to reach the server"),
        Duration::from_secs(20),
        || {
            w.lab
                .connect("phone", "192.168.16.10", 9000, Duration::from_millis(500))
                .is_ok_and(|peer| peer.starts_with(&format!("{address}:")))
        },
    );
    let hs = w.lab.ok("phone", &["wg", "show", iface, "latest-handshakes"]);
    assert!(hs.split_whitespace().nth(1).is_some_and(|t| t != "0"), "{hs}");
}

fn handshake(w: &World) -> bool {
    let out = w.lab.ok("gateway", &["wg", "show", "wg0", "latest-handshakes"]);
    out.split_whitespace().nth(1).is_some_and(|t| t != "0")
}

fn stop(w: &mut World) {
    w.stop_controller();
    for pid in std::mem::take(&mut w.agents) {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    std::thread::sleep(Duration::from_millis(500));
}

const EXTRA_FORWARDS: &str = "forwards:\n  voice: { port: 9987/udp, to: 192.168.16.10 }\n  range: { port: 6000-6002/tcp, to: 192.168.16.10 }\n";

#[test]
fn auto_opens_exactly_warren_s_paths_through_cloud_docker_and_home_firewalls() {
    let mut w = World::with_yaml("foreign-auto", |y| y.replacen("forwards:\n", EXTRA_FORWARDS, 1));
    install_foreign_firewalls(&w);
    let before = foreign_rules(&w, true);
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_in_sync(&c, Duration::from_secs(60));
    w.wait_tunnel();

    // Warren's holes: one jump at the top of each dropping chain.
    let gw = ipt_rules(&w, "gateway", "iptables-nft-save", true);
    assert!(
        gw.contains(":INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n:DOCKER -\n:DOCKER-USER -\n:WARREN-FORWARD -\n:WARREN-INPUT -\n-A INPUT -m comment --comment warren -j WARREN-INPUT\n-A INPUT -m state")
            && gw.contains("-A DOCKER-USER -m comment --comment warren -j WARREN-FORWARD\n-A DOCKER-USER -j RETURN"),
        "{gw}"
    );
    assert!(
        !gw.contains("-A FORWARD -m comment --comment warren"),
        "Docker host: DOCKER-USER, not FORWARD: {gw}"
    );
    let rl = ipt_rules(&w, "router", "iptables-legacy-save", true);
    assert!(
        rl.contains("-A FORWARD -m comment --comment warren -j WARREN-FORWARD\n-A FORWARD -m conntrack"),
        "{rl}"
    );
    assert!(!rl.contains("WARREN-INPUT"), "legacy INPUT drops nothing: {rl}");
    let nft = w.lab.ok("router", &["nft", "list", "table", "inet", "filter"]);
    for hook in ["input", "forward"] {
        assert!(
            nft.contains(&format!(
                "policy drop;\n\t\tjump warren_{hook} comment \"warren\"\n"
            )),
            "{nft}"
        );
    }
    println!("gateway after converging:\n{gw}\nrouter (nft):\n{nft}");

    // TCP, UDP and a port range, phone -> LAN through the gateway and router.
    let _laptop = w.lab.listen("laptop", 25565);
    let seen = w
        .lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(3))
        .expect("TCP forward 25565 -> laptop");
    assert!(seen.starts_with("198.51.100.50:"), "{seen}");
    let udp = w
        .lab
        .spawn("server", &[wt_net().to_str().unwrap(), "udp-echo", "9987"]);
    let answer = udp_ask(&w, "203.0.113.10", 9987).expect("UDP forward 9987 -> server");
    assert!(
        answer.starts_with("peer 198.51.100.50:"),
        "{answer} ({})",
        w.lab.logs(udp)
    );
    let _range = w.lab.listen("server", 6001);
    w.lab
        .connect("phone", "203.0.113.10", 6001, Duration::from_secs(3))
        .expect("port range 6000-6002 -> server");

    // The phone's private VPN, then a tablet added by a push.
    w.phone_vpn_up();
    vpn_reaches_the_lan(&w, "wgp", "192.168.17.69");
    w.lab.ok(
        "phone",
        &["wg-quick", "down", &w.dir.join("wgp.conf").display().to_string()],
    );
    let tablet_private = wg_genkey();
    let tablet = format!(
        "    tablet:\n      address: 192.168.17.70\n      public_key: \"{}\"\n      routes: [192.168.17.1/32, 192.168.16.0/24]\n",
        wg_pubkey(&tablet_private)
    );
    let c2 = w.push(
        |y| {
            y.replace(
                "      routes: [192.168.17.1/32, 192.168.16.0/24]\n",
                &format!("      routes: [192.168.17.1/32, 192.168.16.0/24]\n{tablet}"),
            )
        },
        "tablet",
    );
    w.wait_in_sync(&c2, Duration::from_secs(20));
    w.vpn_client_up("tablet", &tablet_private, "wgt");
    vpn_reaches_the_lan(&w, "wgt", "192.168.17.70");

    // Converged means converged: the drift checks (every second) find the
    // holes exactly as applied.
    std::thread::sleep(Duration::from_secs(3));
    let st = w.status();
    for h in ["gateway", "router"] {
        assert_ne!(st["hosts"][h]["state"], "drifted", "{h}: {st:#}");
    }
    // Every foreign rule is still there, in the same order.
    let without_ours = |s: &str| {
        s.lines()
            .filter(|l| !(l.contains("WARREN-INPUT") || l.contains("WARREN-FORWARD")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let now = foreign_rules(&w, false);
    assert_eq!(now, without_ours(&before), "foreign rules changed");

    // Someone deletes Warren's jump: drift, named.
    w.lab.ok(
        "gateway",
        &[
            "iptables-nft",
            "-D",
            "DOCKER-USER",
            "-m",
            "comment",
            "--comment",
            "warren",
            "-j",
            "WARREN-FORWARD",
        ],
    );
    Lab::wait_for("the gateway's drift in status", Duration::from_secs(10), || {
        w.status()["hosts"]["gateway"]["state"] == "drifted"
    });

    // Teardown leaves exactly the foreign rules.
    stop(&mut w);
    for h in ["gateway", "router"] {
        run_in(&w.lab, h, &agent_cmd(&w.dir, h, &["teardown"]));
    }
    assert_eq!(
        foreign_rules(&w, true),
        before,
        "teardown left exactly the foreign rules"
    );
}

#[test]
fn own_table_only_touches_nothing_and_the_findings_give_the_fix() {
    let mut w = World::with_yaml("foreign-own", |y| {
        y.replacen(
            "    uplink: enp0s6",
            "    foreign_firewall: own-table-only\n    uplink: enp0s6",
            1,
        )
    });
    install_foreign_firewalls(&w);
    // Only the gateway's firewall in this test: the router's stays open.
    w.lab
        .ok("router", &["iptables-legacy", "-P", "FORWARD", "ACCEPT"]);
    w.lab.ok("router", &["nft", "delete", "table", "inet", "filter"]);
    let before = ipt_rules(&w, "gateway", "iptables-nft-save", true);
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_in_sync(&c, Duration::from_secs(60));

    // The gateway's INPUT rejects the WAN VPN: no handshake, no forward.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!handshake(&w), "the cloud image's REJECT drops the WAN VPN");
    let _laptop = w.lab.listen("laptop", 25565);
    assert!(w
        .lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(2))
        .is_err());
    assert_eq!(
        ipt_rules(&w, "gateway", "iptables-nft-save", true),
        before,
        "nothing foreign touched"
    );

    // The agent's observation and the running plan: what doctor reports.
    let state: State = serde_json::from_str(&run_in(
        &w.lab,
        "gateway",
        &agent_cmd(&w.dir, "gateway", &["observe", "--format", "json"]),
    ))
    .unwrap();
    let applied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.dir.join("state-gateway/applied.json")).unwrap()).unwrap();
    let plan: Plan = serde_json::from_value(applied["signed"]["plan"].clone()).unwrap();
    let observed: &ForeignState = &state.foreign;
    assert!(observed.holes.is_empty());
    let findings = foreign::findings(observed, &plan);
    let what: Vec<(Severity, &str)> = findings.iter().map(|f| (f.severity, f.what.as_str())).collect();
    assert_eq!(
        what,
        [
            (Severity::Breaks, "iptables-nft filter INPUT (1 DROP/REJECT rule(s)) would drop Warren's 1 input path(s)"),
            (Severity::Breaks, "iptables-nft filter FORWARD (policy DROP, 1 DROP/REJECT rule(s)) would drop Warren's 2 forward path(s)"),
        ]
    );
    assert_eq!(
        findings[0].fix,
        "iptables -I INPUT -p udp -i enp0s6 --dport 51820 -j ACCEPT"
    );
    assert!(
        findings[1].fix.contains(
            "iptables -I DOCKER-USER -i enp0s6 -o wg0 -d 10.0.18.2/32 -m conntrack --ctstate DNAT -j ACCEPT"
        ),
        "{}",
        findings[1].fix
    );

    // `warren-agent doctor` on the gateway says the same, and exits 6.
    let v = agent_cmd(&w.dir, "gateway", &["doctor", "--format", "json"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    let o = w.lab.run("gateway", &r);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(6),
        "doctor exits 6 when traffic breaks:\n{out}"
    );
    let doctor: Vec<Finding> = serde_json::from_slice(&o.stdout).unwrap();
    let foreign_breaks: Vec<&Finding> = doctor
        .iter()
        .filter(|f| f.check == "foreign-firewall" && f.severity == Severity::Breaks)
        .collect();
    assert_eq!(foreign_breaks, findings.iter().collect::<Vec<_>>(), "{out}");

    // The fix, pasted as is, makes it work.
    for f in &findings {
        for line in f.fix.lines().filter(|l| !l.starts_with('#')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            w.lab.ok("gateway", &words);
        }
    }
    w.wait_tunnel();
    w.lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(3))
        .expect("after the operator's fix, the forward works");
    stop(&mut w);
}
