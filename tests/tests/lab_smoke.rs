//! The namespace lab itself, with real packets and without Warren: the
//! topology behaves like a home network behind a CGNAT next to a cloud VPS,
//! userspace WireGuard can run on both the gateway and the router, and a
//! dropped lab leaves nothing behind. Needs root, iproute2, util-linux,
//! nftables and wireguard-go (`./test.sh` installs them).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;
use warren_tests::lab::{cleanup_stale, wt_net, Lab, HOSTS, LAB_ROOT};

const T: Duration = Duration::from_secs(2);

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mountinfo_mentions(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.display().to_string();
    info.lines().any(|l| l.contains(&p))
}

#[test]
fn the_lab_finds_the_wt_net_this_test_was_built_with() {
    let found = wt_net().canonicalize().unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_wt-net")).canonicalize().unwrap();
    assert_eq!(found, built);
}

#[test]
fn phone_reaches_a_listener_on_the_gateway_public_address() {
    let lab = Lab::new();
    let l = lab.listen("gateway", 8080);
    let peer = lab.connect("phone", "203.0.113.10", 8080, T).unwrap();
    assert!(peer.starts_with("198.51.100.50:"), "gateway saw {peer}");
    // The listener logs each client too (read by a background thread).
    Lab::wait_for("the listener to log its client", T, || {
        l.peers() == [peer.clone()]
    });
}

#[test]
fn router_reaches_out_through_the_cgnat_masquerade() {
    let lab = Lab::new();
    let _l = lab.listen("gateway", 8080);
    let peer = lab.connect("router", "203.0.113.10", 8080, T).unwrap();
    assert!(
        peer.starts_with("192.0.2.2:"),
        "gateway saw {peer}, not the CGNAT's address"
    );
}

#[test]
fn the_cgnat_refuses_inbound_connections() {
    let lab = Lab::new();
    let _l = lab.listen("router", 8080);
    // The listener is fine: the CGNAT itself (its ISP side) reaches it.
    let peer = lab.connect("cgnat", "100.64.0.2", 8080, T).unwrap();
    assert!(peer.starts_with("100.64.0.1:"), "router saw {peer}");
    // From the internet, neither the router's address nor the CGNAT's public one leads there.
    let quick = Duration::from_millis(1000);
    let e = lab.connect("phone", "100.64.0.2", 8080, quick).unwrap_err();
    println!("phone -> 100.64.0.2: {e}");
    let e = lab.connect("phone", "192.0.2.2", 8080, quick).unwrap_err();
    println!("phone -> 192.0.2.2: {e}");
}

#[test]
fn laptop_reaches_the_server_through_br_lan_and_forwarding_is_left_to_warren() {
    let lab = Lab::new();
    let _l = lab.listen("server", 8080);
    let peer = lab.connect("laptop", "192.168.16.10", 8080, T).unwrap();
    assert!(peer.starts_with("192.168.16.20:"), "server saw {peer}");
    let bridged = lab.ok("router", &["ip", "-o", "link", "show", "master", "br-lan"]);
    assert!(
        bridged.contains("lan-laptop") && bridged.contains("lan-server"),
        "{bridged}"
    );
    for (host, want) in [
        ("inet", "1"),
        ("cgnat", "1"),
        ("gateway", "0"),
        ("router", "0"),
        ("phone", "0"),
    ] {
        let got = lab.ok(host, &["cat", "/proc/sys/net/ipv4/ip_forward"]);
        assert_eq!(got.trim(), want, "{host} ip_forward");
    }
    // The router does not forward until Warren says so: the LAN has no way out yet.
    let _g = lab.listen("gateway", 8080);
    assert!(lab
        .connect("laptop", "203.0.113.10", 8080, Duration::from_millis(500))
        .is_err());
}

#[test]
fn hold_and_transfer_helpers_work() {
    let lab = Lab::new();
    let l = lab.listen("gateway", 8080);
    let held = lab.hold("phone", "203.0.113.10", 8080);
    assert!(held.peer().starts_with("198.51.100.50:"), "{}", held.peer());
    std::thread::sleep(Duration::from_millis(700));
    assert!(held.alive(), "{}", held.output());
    assert!(held.count() >= 2, "{}", held.output());
    // Killing the listener kills the connection, and the hold notices.
    drop(l);
    Lab::wait_for("the held connection to die", Duration::from_secs(3), || {
        !held.alive()
    });

    let _s = lab.sink("gateway", 9000);
    let bytes = 16 << 20;
    let took = lab.transfer("phone", "203.0.113.10", 9000, bytes);
    println!(
        "phone -> gateway: {bytes} bytes in {took:?} ({:.0} Mbit/s)",
        bytes as f64 * 8.0 / took.as_secs_f64() / 1e6
    );
}

#[test]
fn a_dropped_lab_leaves_nothing_behind() {
    let lab = Lab::new();
    let names: Vec<String> = HOSTS.iter().map(|h| lab.ns_name(h)).collect();
    let dir = lab.mount_dir().to_path_buf();
    let listed = netns_list();
    for n in &names {
        assert!(
            listed.lines().any(|l| l.split_whitespace().next() == Some(n)),
            "{n} missing"
        );
    }
    assert!(mountinfo_mentions(&dir));
    // Something to kill: a spawned process and a daemon that is not our child.
    let pid = lab.spawn("gateway", &["sleep", "60"]);
    lab.ok("router", &["sh", "-c", "sleep 60 >/dev/null 2>&1 &"]);
    drop(lab);
    let listed = netns_list();
    for n in &names {
        assert!(!listed.contains(n.as_str()), "{n} left behind:\n{listed}");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !mountinfo_mentions(&dir),
        "mounts under {} left behind",
        dir.display()
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "spawned process {pid} survived"
    );
}

#[test]
fn stale_labs_of_dead_processes_are_cleaned_up() {
    // A dead pid: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let id = format!("wl{dead}-7");
    let ns = format!("{id}-gateway");
    let dir = Path::new(LAB_ROOT).join(&id);
    // Best effort: a parallel test's Lab::new() may sweep it away at any moment.
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("owner"), format!("{dead} 1\n"));
    let d = dir.display().to_string();
    let _ = std::process::Command::new("mount")
        .args(["--bind", &d, &d])
        .status();
    // Setup races with parallel tests' sweeps of /run/netns: retry briefly.
    let mut last = String::new();
    let added = (0..20).any(|_| {
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &ns])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success() || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    assert!(added, "ip netns add {ns}: {last}");
    // A live lab of ours must survive the sweep.
    let lab = Lab::new();
    cleanup_stale();
    let listed = netns_list();
    assert!(!listed.contains(&ns), "{ns} survived:\n{listed}");
    assert!(!dir.exists() && !mountinfo_mentions(&dir), "{d} survived");
    assert!(listed.contains(&lab.ns_name("gateway")));
    assert!(lab.mount_dir().exists());
}

#[test]
fn two_userspace_wg0_coexist_on_gateway_and_router() {
    let lab = Lab::new();
    let root_sock = Path::new("/run/wireguard/wg0.sock");
    let root_had_one = root_sock.exists();
    for (host, port) in [("gateway", "51820"), ("router", "51999")] {
        lab.ok(host, &["wireguard-go", "wg0"]);
        lab.ok(host, &["wg", "set", "wg0", "listen-port", port]);
    }
    for (host, port) in [("gateway", "51820"), ("router", "51999")] {
        let got = lab.ok(host, &["wg", "show", "wg0", "listen-port"]);
        assert_eq!(got.trim(), port, "{host} sees another wg0");
        assert_eq!(
            lab.ok(host, &["ls", "/run/wireguard"]).trim(),
            "wg0.sock",
            "{host}"
        );
        assert!(
            lab.ok(host, &["ip", "-o", "link", "show", "wg0"]).contains("wg0"),
            "{host}"
        );
        // The host's own sysfs shows its own interfaces.
        assert!(lab.ok(host, &["ls", "/sys/class/net"]).contains("wg0"), "{host}");
    }
    // Neither leaked into another host's nor the root namespace's /run/wireguard.
    assert_eq!(lab.ok("phone", &["ls", "/run/wireguard"]).trim(), "");
    assert_eq!(
        root_sock.exists(),
        root_had_one,
        "{} appeared",
        root_sock.display()
    );
    for host in ["gateway", "router"] {
        lab.ok(host, &["ip", "link", "del", "wg0"]);
    }
    for host in ["gateway", "router"] {
        let ns = lab.ns_name(host);
        Lab::wait_for(
            &format!("wireguard-go in {host} to exit"),
            Duration::from_secs(5),
            || {
                let pids = std::process::Command::new("ip")
                    .args(["netns", "pids", &ns])
                    .output()
                    .unwrap();
                pids.stdout.is_empty() && lab.ok(host, &["ls", "/run/wireguard"]).trim().is_empty()
            },
        );
    }
}
