//! Fault injection for the controller's side of delivery, in the namespace
//! lab with the real binaries: a lost confirm, a partition inside the
//! confirm window, a controller restart mid-rollout, a controller that lost
//! its state, and drift repaired with `warren-controller sync`. Each checks
//! that nothing is lost: both hosts end running the new plan, confirmed, no
//! rollback, `status` in sync, and real packets cross the forward.
//!
//! These need agents that send `Status` and accept re-delivery of their
//! running serial (issue 9's agent side).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};
use warren_tests::bin;
use warren_tests::lab::Lab;
use warren_tests::world::World;

/// The agent's running plan: (serial, confirmed), from its state directory.
fn running(w: &World, host: &str) -> Option<(u64, bool)> {
    let p = w.dir.join(format!("state-{host}/applied.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    Some((
        v["signed"]["envelope"]["serial"].as_u64()?,
        v["confirmed"].as_bool()?,
    ))
}

/// A converged site, settled, with the minecraft forward carrying packets.
fn converged(tag: &str) -> World {
    let mut w = World::new(tag);
    w.start_agents();
    w.start_controller();
    let c1 = w.head();
    w.wait_settled(&c1, Duration::from_secs(60));
    w.wait_tunnel();
    forward_works(&w, 25565, "laptop");
    w
}

fn forward_works(w: &World, port: u16, host: &str) {
    let _l = w.lab.listen(host, port);
    Lab::wait_for("the forward to carry packets", Duration::from_secs(20), || {
        w.lab
            .connect("phone", "203.0.113.10", port, Duration::from_secs(1))
            .is_ok()
    });
}

/// Nothing lost: in sync at `commit`, each agent runs the desired serial
/// confirmed, and it stays so past the confirm window (30 s in `World`).
fn nothing_lost(w: &World, commit: &str) {
    w.wait_in_sync(commit, Duration::from_secs(60));
    for host in ["router", "gateway"] {
        let want = w.status()["hosts"][host]["desired_serial"].as_u64();
        Lab::wait_for("the plan confirmed on the agent", Duration::from_secs(40), || {
            running(w, host) == want.map(|s| (s, true))
        });
    }
    std::thread::sleep(Duration::from_secs(32));
    w.wait_in_sync(commit, Duration::from_secs(5));
    let s = w.status();
    for host in ["router", "gateway"] {
        assert!(s["hosts"][host]["error"].is_null(), "{s:#}");
    }
}

/// Wait for the router's agent to run `serial`, not confirmed yet.
fn router_applied_unconfirmed(w: &World, serial: u64) {
    Lab::wait_for("the router to apply", Duration::from_secs(30), || {
        running(w, "router").is_some_and(|(s, _)| s >= serial)
    });
}

#[test]
fn fault_lost_confirm() {
    let w = converged("lost-confirm");
    let next = w.serial("router") + 1;
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    router_applied_unconfirmed(&w, next);
    // The fault: the router's session dies with its report and the confirm.
    w.lab.run("router", &["ss", "-K", "dport", "=", "7701"]);
    nothing_lost(&w, &c2);
    forward_works(&w, 8080, "server");
}

#[test]
fn fault_lost_applied_report() {
    let w = converged("lost-report");
    let next = w.serial("router") + 1;
    let journal = w.dir.join("state-router/pending.json");
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    // The fault: from the moment the router starts applying, nothing it
    // sends reaches the controller, so its `applied` report is lost with the
    // session it was written to.
    Lab::wait_for("the router to start applying", Duration::from_secs(30), || {
        journal.exists()
    });
    let mute =
        "table inet fault {\n chain mute { type filter hook output priority -10; tcp dport 7701 drop; }\n}\n";
    w.lab.ok_with_stdin("router", &["nft", "-f", "-"], mute);
    router_applied_unconfirmed(&w, next);
    std::thread::sleep(Duration::from_secs(3));
    w.lab.run("router", &["ss", "-K", "dport", "=", "7701"]);
    w.lab.ok("router", &["nft", "delete", "table", "inet", "fault"]);
    // In sync, confirmed, no error (a rollback would be one) past the window.
    nothing_lost(&w, &c2);
    forward_works(&w, 8080, "server");
}

#[test]
fn fault_partition_during_confirm_window() {
    let w = converged("partition");
    let next = w.serial("router") + 1;
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    router_applied_unconfirmed(&w, next);
    // The fault: the CGNAT box forwards nothing for 5 s (the router's
    // only way to the controller and the gateway), and the router's session
    // does not survive it (as when the CGNAT forgets its mapping).
    let cut = "table inet fault {\n chain cut { type filter hook forward priority -10; policy drop; }\n}\n";
    w.lab.ok_with_stdin("cgnat", &["nft", "-f", "-"], cut);
    w.lab.run("router", &["ss", "-K", "dport", "=", "7701"]);
    std::thread::sleep(Duration::from_secs(5));
    w.lab.ok("cgnat", &["nft", "delete", "table", "inet", "fault"]);
    nothing_lost(&w, &c2);
    forward_works(&w, 8080, "server");
}

/// A commit that changes both hosts' plans (the private VPN's port: the
/// gateway's forward of it and the router's listen port).
fn push_both(w: &World) -> String {
    w.push(
        |y| y.replace("port: 13131", "port: 13132"),
        "move the private VPN",
    )
}

#[test]
fn fault_controller_restart_mid_rollout() {
    let mut w = converged("restart-rollout");
    let (rt, gw) = (w.serial("router"), w.serial("gateway"));
    let c2 = push_both(&w);
    router_applied_unconfirmed(&w, rt + 1);
    // The fault: the controller dies before the router is confirmed.
    if let Some(pid) = w.controller.take() {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert_eq!(running(&w, "gateway").map(|r| r.0), Some(gw), "gateway untouched");
    w.start_controller();
    // The order holds: the gateway never runs its new plan while the router's
    // is unconfirmed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let g = running(&w, "gateway").map_or(0, |r| r.0);
        if g > gw {
            let r = running(&w, "router").unwrap();
            assert!(
                r.0 > rt && r.1,
                "gateway got its plan before the router's was confirmed: {r:?}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nothing_lost(&w, &c2);
    forward_works(&w, 25565, "laptop");
}

#[test]
fn fault_controller_state_lost() {
    let mut w = converged("state-lost");
    w.stop_controller();
    // The fault: everything but the key is gone.
    let state = w.dir.join("controller");
    for e in std::fs::read_dir(&state).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n != "controller.key") {
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
    w.start_controller();
    let c1 = w.head();
    nothing_lost(&w, &c1);
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    w.wait_in_sync(&c2, Duration::from_secs(30));
    forward_works(&w, 8080, "server");
}

#[test]
fn fault_drift_repaired_by_sync() {
    let w = converged("sync");
    let c1 = w.head();
    // The fault: someone flushes the router's table (drift: report).
    w.lab.ok("router", &["nft", "flush", "table", "ip", "warren"]);
    Lab::wait_for("status to show drifted", Duration::from_secs(20), || {
        w.status()["hosts"]["router"]["state"] == "drifted"
    });
    let sync = |args: &[&str]| {
        Command::new(bin("warren-controller"))
            .arg("sync")
            .args(args)
            .arg("--state-dir")
            .arg(w.dir.join("controller"))
            .output()
            .unwrap()
    };
    let bad = sync(&["nas"]);
    assert_eq!(bad.status.code(), Some(2), "unknown host is a usage error");
    let o = sync(&["router", "--timeout", "60"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("router: in sync"), "{out}");
    w.wait_in_sync(&c1, Duration::from_secs(10));
    forward_works(&w, 25565, "laptop");
}
