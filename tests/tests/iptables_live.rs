//! The seed on `netfilter: iptables`, live: both hosts get Warren's rules
//! as owned `WARREN-*` chains instead of the nft table, each in the
//! iptables variant it already uses (the gateway has a legacy rule, the
//! router an nft one), and the same packets flow: the TCP forward, a UDP
//! forward, a port range, the private VPN inside the WAN VPN. Re-applying
//! rewrites nothing, a rule deleted by hand is drift (and healed), and
//! teardown leaves exactly the host's own rules.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;
use warren_tests::lab::Lab;
use warren_tests::world::{agent_cmd, World};

/// The host's own rule, there before Warren and after it.
const FOREIGN: &str = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT";

/// Both hosts on iptables, plus a UDP forward and a port range.
fn iptables_seed(y: String) -> String {
    y.replace("    role: gateway\n", "    role: gateway\n    netfilter: iptables\n")
        .replace("    role: router\n", "    role: router\n    netfilter: iptables\n")
        .replacen(
            "forwards:\n",
            "forwards:\n  voice: { port: 9987/udp, to: 192.168.16.10 }\n  games: { port: 27000-27010/tcp, to: 192.168.16.20 }\n",
            1,
        )
}

fn save(w: &World, host: &str, variant: &str) -> String {
    w.lab.ok(host, &[&format!("iptables-{variant}-save")])
}

/// `save` without comment lines and chain counters.
fn rules(w: &World, host: &str, variant: &str) -> Vec<String> {
    save(w, host, variant)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.split_once(" [") {
            Some((decl, _)) if l.starts_with(':') => decl.to_string(),
            _ => l.to_string(),
        })
        .collect()
}

/// The packet counter of the first rule in `iptables-<variant>-save -c`
/// output containing `needle` (a rewrite of the chain resets it).
fn counter(w: &World, host: &str, variant: &str, table: &str, needle: &str) -> u64 {
    let out = w
        .lab
        .ok(host, &[&format!("iptables-{variant}-save"), "-c", "-t", table]);
    let line = out
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no rule with {needle:?}:\n{out}"));
    line.trim_start_matches('[')
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// IPv4 fragments created, summed over every namespace of the lab.
fn frag_creates(w: &World) -> u64 {
    warren_tests::lab::HOSTS
        .iter()
        .map(|h| {
            let snmp = w.lab.ok(h, &["cat", "/proc/net/snmp"]);
            let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
            let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
            let i = names.split_whitespace().position(|n| n == "FragCreates").unwrap();
            values.split_whitespace().nth(i).unwrap().parse::<u64>().unwrap()
        })
        .sum()
}

fn agent(w: &World, host: &str, args: &[&str]) -> std::process::Output {
    let v = agent_cmd(&w.dir, host, args);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    w.lab.run(host, &r)
}

/// A UDP datagram from the phone to the gateway's public 9987, answered by
/// an echo on the server with the sender's address as it saw it.
fn udp_forward(w: &World) -> Option<String> {
    let client = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'hi',('203.0.113.10',9987))\ntry:\n print(s.recv(100).decode())\nexcept OSError:\n sys.exit(1)\n";
    let out = w.lab.run("phone", &["/usr/bin/python3", "-c", client]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wg(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("wg")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    String::from_utf8(c.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// Push a second client, `tablet` (192.168.17.70), with a fresh key, and
/// bring it up in the internet core with the controller's client config.
/// Returns the commit.
fn tablet_vpn_up(w: &World) -> String {
    let private = wg(&["genkey"], None);
    let public = wg(&["pubkey"], Some(&private));
    let client = format!(
        "    tablet:\n      address: 192.168.17.70\n      public_key: \"{public}\"\n      routes: [192.168.17.1/32, 192.168.16.0/24]\n"
    );
    let c = w.push(
        |y| {
            y.replace(
                "      routes: [192.168.17.1/32, 192.168.16.0/24]\n",
                &format!("      routes: [192.168.17.1/32, 192.168.16.0/24]\n{client}"),
            )
        },
        "tablet",
    );
    w.wait_in_sync(&c, Duration::from_secs(20));
    let o = std::process::Command::new(warren_tests::bin("warren-controller"))
        .arg("client-config")
        .arg(&w.work)
        .arg("tablet")
        .arg("--state-dir")
        .arg(w.dir.join("controller"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conf = String::from_utf8(o.stdout)
        .unwrap()
        .replace("<this device's private key>", &private);
    let path = w.dir.join("wgt.conf");
    std::fs::write(&path, &conf).unwrap();
    w.lab.ok("inet", &["wg-quick", "up", &path.display().to_string()]);
    c
}

#[test]
fn the_seed_on_iptables_carries_the_same_packets_in_each_hosts_own_variant() {
    let mut w = World::with_yaml("ipt", iptables_seed);
    // The host's own firewall, before Warren: legacy on the gateway, nft on the router.
    w.lab.ok(
        "gateway",
        &[
            "iptables-legacy",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "ACCEPT",
        ],
    );
    w.lab.ok(
        "router",
        &[
            "iptables-nft",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "ACCEPT",
        ],
    );
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_settled(&c, Duration::from_secs(90));
    w.wait_tunnel();

    // Each host's chains are in the variant it already used, and only there.
    for (host, used, other, chain) in [
        ("gateway", "legacy", "nft", "WARREN-INBOUND"),
        ("router", "nft", "legacy", "WARREN-FORWARDS"),
    ] {
        let live = rules(&w, host, used);
        assert!(live.contains(&format!(":{chain} -")), "{host} {used}:\n{live:#?}");
        assert!(live.iter().any(|l| l == FOREIGN), "{host}: foreign rule kept");
        assert!(
            !save(&w, host, other).contains("WARREN"),
            "{host}: nothing in {other}"
        );
        assert!(
            !w.lab
                .run(host, &["nft", "list", "table", "ip", "warren"])
                .status
                .success(),
            "{host}: no nft table on an iptables host"
        );
    }
    let gw = rules(&w, "gateway", "legacy");
    assert!(
        gw.iter().any(|l| l.starts_with("-A WARREN-INBOUND ")
            && l.contains("--dport 2222 ")
            && l.ends_with("-j RETURN")),
        "{gw:#?}"
    );

    // The TCP forward: the laptop sees the phone's real address.
    let _laptop = w.lab.listen("laptop", 25565);
    let seen = w
        .lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(3))
        .expect("phone -> gateway:25565 -> laptop");
    assert!(seen.starts_with("198.51.100.50:"), "{seen}");
    // The gateway keeps its own port (RETURN, not DNAT).
    let _ssh = w.lab.listen("gateway", 2222);
    let seen = w
        .lab
        .connect("phone", "203.0.113.10", 2222, Duration::from_secs(3))
        .expect("gateway:2222 stays on the gateway");
    assert!(seen.starts_with("198.51.100.50:"), "{seen}");
    // A port range keeps its port numbers.
    let _games = w.lab.listen("laptop", 27005);
    w.lab
        .connect("phone", "203.0.113.10", 27005, Duration::from_secs(3))
        .expect("phone -> gateway:27005 -> laptop (range 27000-27010)");
    // A UDP forward.
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9987))\nwhile True:\n d,a=s.recvfrom(100)\n s.sendto(('peer %s:%d' % a).encode(),a)\n";
    w.lab.spawn("server", &["/usr/bin/python3", "-c", echo]);
    let mut udp = None;
    Lab::wait_for("the UDP forward", Duration::from_secs(10), || {
        udp = udp_forward(&w);
        udp.is_some()
    });
    let udp = udp.unwrap();
    assert!(udp.starts_with("peer 198.51.100.50:"), "{udp}");

    // The private VPN, inside the WAN VPN, reaches the LAN.
    w.phone_vpn_up();
    let _server = w.lab.listen("server", 9000);
    let mut seen = Err(String::new());
    Lab::wait_for(
        "phone -> server through the private VPN",
        Duration::from_secs(15),
        || {
            seen = w
                .lab
                .connect("phone", "192.168.16.10", 9000, Duration::from_millis(500));
            seen.is_ok()
        },
    );
    let seen = seen.unwrap();
    assert!(seen.starts_with("192.168.17.69:"), "{seen}");

    // The MSS clamps (TCPMSS in mangle FORWARD): large transfers through
    // the nested VPN and through the WAN VPN create no IPv4 fragment.
    let before = frag_creates(&w);
    let _sink = w.lab.sink("server", 9001);
    w.lab.transfer("phone", "192.168.16.10", 9001, 4 << 20);
    let _wan_sink = w.lab.sink("laptop", 27001);
    w.lab.transfer("phone", "203.0.113.10", 27001, 4 << 20);
    assert_eq!(frag_creates(&w), before, "no IPv4 fragment was created anywhere");
    for (host, variant) in [("gateway", "legacy"), ("router", "nft")] {
        assert!(
            counter(&w, host, variant, "mangle", "--set-mss 1380") > 0,
            "{host}: the clamp saw the SYNs"
        );
    }

    // A second private VPN client (pushed), from the internet core.
    let tablet = tablet_vpn_up(&w);
    let mut seen = Err(String::new());
    Lab::wait_for(
        "tablet -> server through the private VPN",
        Duration::from_secs(15),
        || {
            seen = w
                .lab
                .connect("inet", "192.168.16.10", 9000, Duration::from_millis(500));
            seen.is_ok()
        },
    );
    let seen = seen.unwrap();
    assert!(seen.starts_with("192.168.17.70:"), "{seen} ({tablet})");

    // In step: nothing to change, and neither the tablet's push (a new
    // peer, the same chains) nor the daemons' drift checks (every second)
    // rewrote the chains: the counter of the forward used before the push
    // was not reset.
    for host in ["gateway", "router"] {
        let out = agent(&w, host, &["diff"]);
        assert!(
            out.status.success(),
            "{host} is in step: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let before = counter(&w, "router", "nft", "nat", "--dport 25565");
    assert!(before > 0, "the forward's rule counted the connection");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        counter(&w, "router", "nft", "nat", "--dport 25565") >= before,
        "no rewrite of Warren's chains while in step"
    );

    // A rule deleted by hand is drift, named in status.
    w.lab.ok(
        "gateway",
        &["iptables-legacy", "-t", "nat", "-D", "WARREN-INBOUND", "1"],
    );
    Lab::wait_for("the gateway's drift in status", Duration::from_secs(15), || {
        w.status()["hosts"]["gateway"]["state"] == "drifted"
    });
    let drift = w.status()["hosts"]["gateway"]["drift"].clone();
    assert_eq!(drift, serde_json::json!(["iptables chains WARREN-*"]), "{drift}");
    // With drift: heal, the gateway restores it (the jump rule too).
    let c2 = w.push(
        |y| {
            y.replace(
                "    netfilter: iptables\n    public_address",
                "    netfilter: iptables\n    drift: heal\n    public_address",
            )
        },
        "heal",
    );
    w.wait_in_sync(&c2, Duration::from_secs(20));
    w.lab.ok(
        "gateway",
        &["iptables-legacy", "-t", "nat", "-F", "WARREN-INBOUND"],
    );
    w.lab.ok(
        "gateway",
        &[
            "iptables-legacy",
            "-t",
            "nat",
            "-D",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "warren",
            "-j",
            "WARREN-INBOUND",
        ],
    );
    Lab::wait_for("the gateway to heal", Duration::from_secs(15), || {
        let live = rules(&w, "gateway", "legacy");
        live.iter()
            .any(|l| l.contains("-j DNAT --to-destination 10.0.18.2"))
            && live
                .iter()
                .any(|l| l.contains("--comment warren -j WARREN-INBOUND"))
    });
    w.lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(3))
        .expect("the healed gateway forwards again");

    // Teardown leaves exactly the host's own rules.
    w.stop_controller();
    for pid in std::mem::take(&mut w.agents) {
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }
    for (host, used) in [("gateway", "legacy"), ("router", "nft")] {
        let out = agent(&w, host, &["teardown"]);
        assert!(
            out.status.success(),
            "{host} teardown: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for variant in ["legacy", "nft"] {
            let dump = save(&w, host, variant);
            assert!(
                !dump.contains("WARREN") && !dump.contains("warren"),
                "{host} {variant}:\n{dump}"
            );
        }
        let left: Vec<String> = rules(&w, host, used)
            .into_iter()
            .filter(|l| l.starts_with("-A"))
            .collect();
        assert_eq!(left, [FOREIGN], "{host}: only the host's own rule is left");
    }
}
