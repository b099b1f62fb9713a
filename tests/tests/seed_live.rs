//! The seed, live: the blog post's network built by Warren from a git repo,
//! exercised with real packets. The phone's private VPN rides inside the
//! WAN VPN; pushes add and remove forwards without breaking open
//! connections; tampering is seen as drift; nothing fragments.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;
use warren_tests::lab::{Lab, HOSTS};
use warren_tests::world::World;

fn up(tag: &str) -> World {
    let mut w = World::new(tag);
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_in_sync(&c, Duration::from_secs(60));
    w.wait_tunnel();
    w
}

/// IPv4 fragments created, summed over every namespace of the lab.
fn frag_creates(w: &World) -> u64 {
    HOSTS
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

#[test]
fn the_phone_reaches_the_lan_through_the_nested_private_vpn_without_fragmenting() {
    let w = up("private");
    let conf = w.phone_vpn_up();
    assert!(
        conf.contains("MTU = 1340") && conf.contains("Endpoint = 203.0.113.10:13131"),
        "{conf}"
    );
    Lab::wait_for("the private VPN handshake", Duration::from_secs(15), || {
        let _ = w
            .lab
            .connect("phone", "192.168.16.10", 9, Duration::from_millis(300));
        let out = w.lab.ok("phone", &["wg", "show", "wgp", "latest-handshakes"]);
        out.split_whitespace().nth(1).is_some_and(|t| t != "0")
    });
    let _server = w.lab.listen("server", 9000);
    let seen = w
        .lab
        .connect("phone", "192.168.16.10", 9000, Duration::from_secs(3))
        .expect("phone -> server through the private VPN");
    assert!(
        seen.starts_with("192.168.17.69:"),
        "the server sees the phone's VPN address: {seen}"
    );

    // Large transfers: through the nested VPN, and through the WAN VPN alone.
    let before = frag_creates(&w);
    let _sink = w.lab.sink("server", 9001);
    let nested = w.lab.transfer("phone", "192.168.16.10", 9001, 8 << 20);
    let _wan_sink = w.lab.sink("laptop", 25565);
    let wan = w.lab.transfer("phone", "203.0.113.10", 25565, 8 << 20);
    assert_eq!(
        frag_creates(&w),
        before,
        "no IPv4 fragment was created anywhere: the computed MTUs are in effect"
    );
    println!(
        "8 MiB phone -> laptop through the WAN VPN: {:.0} ms; phone -> server through the nested private VPN: {:.0} ms",
        wan.as_secs_f64() * 1e3,
        nested.as_secs_f64() * 1e3
    );
}

#[test]
fn pushes_add_and_remove_forwards_without_breaking_connections_and_drift_is_shown() {
    let w = up("pushes");
    let _laptop = w.lab.listen("laptop", 25565);
    let _ssh = w.lab.listen("gateway", 2222);
    let held = w.lab.hold("phone", "203.0.113.10", 25565);
    Lab::wait_for("the held connection", Duration::from_secs(5), || held.alive());

    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    w.wait_in_sync(&c2, Duration::from_secs(10));
    let _server = w.lab.listen("server", 8080);
    assert!(
        w.lab
            .connect("phone", "203.0.113.10", 8080, Duration::from_secs(2))
            .is_ok(),
        "the new forward works"
    );
    assert!(
        w.lab
            .connect("phone", "203.0.113.10", 2222, Duration::from_secs(2))
            .unwrap()
            .starts_with("198.51.100.50:"),
        "gateway SSH stays on the gateway"
    );

    let c3 = w.push(
        |y| y.replace("  blog: { port: 8080/tcp, to: 192.168.16.10 }\n", ""),
        "remove blog",
    );
    w.wait_in_sync(&c3, Duration::from_secs(10));
    assert!(
        w.lab
            .connect("phone", "203.0.113.10", 8080, Duration::from_secs(1))
            .is_err(),
        "the removed forward is closed"
    );

    let bad = w.push(|y| y.replace("version: 1", "version: 1\nbogus: true"), "bad yaml");
    Lab::wait_for("the invalid push to be recorded", Duration::from_secs(10), || {
        w.status()["last_commit"]["commit"] == bad.as_str()
    });
    assert_eq!(w.status()["last_commit"]["outcome"], "invalid");
    assert_eq!(w.status()["desired_commit"], c3.as_str(), "nothing changed");
    assert!(
        w.lab
            .connect("phone", "203.0.113.10", 2222, Duration::from_secs(2))
            .is_ok(),
        "gateway SSH still reachable"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        held.alive(),
        "the connection opened before the pushes is still alive: {}",
        held.output()
    );

    // Tampering on the router is drift, named in status (policy: report).
    w.lab.ok("router", &["nft", "flush", "table", "ip", "warren"]);
    Lab::wait_for("the router's drift in status", Duration::from_secs(10), || {
        w.status()["hosts"]["router"]["state"] == "drifted"
    });
    let drift = w.status()["hosts"]["router"]["drift"].clone();
    assert_eq!(drift, serde_json::json!(["table ip warren"]), "{drift}");
    // With policy heal (a push), the router restores it.
    let c4 = w.push(
        |y| {
            y.replace("bogus: true\n", "")
                .replace("    uplink: eth0 ", "    drift: heal\n    uplink: eth0 ")
        },
        "heal",
    );
    w.wait_in_sync(&c4, Duration::from_secs(15));
    w.lab.ok("router", &["nft", "flush", "table", "ip", "warren"]);
    Lab::wait_for("the router to heal", Duration::from_secs(10), || {
        w.lab
            .ok("router", &["nft", "list", "table", "ip", "warren"])
            .contains("dnat")
    });
    assert!(w
        .lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(2))
        .is_ok());
}
