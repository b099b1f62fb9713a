//! warren-controller serve, end to end in the namespace lab: the controller
//! runs on the gateway, dials the gateway's agent (over loopback) and accepts
//! the router's agent, which dials out through CGNAT. A `git push` to a local
//! bare repo reaches both agents, signed and verified, with real packets.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;
use warren_tests::lab::Lab;
use warren_tests::world::{agent_cmd, World};

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
    w.wait_settled(&c1, Duration::from_secs(20));
    let gw_serial = w.serial("gateway");
    let rt_serial = w.serial("router");
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
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
    assert_eq!(s["hosts"]["router"]["state"], "in_sync");

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

fn sign(secret: &[u8], body: &str) -> String {
    use hmac::{Mac, SimpleHmac};
    let mut m = SimpleHmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(body.as_bytes());
    let h: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={h}")
}

#[test]
fn webhook_triggers_a_fetch_and_the_controller_survives_bad_peers_and_lost_agents() {
    let mut w = World::new("hook");
    let secret = w.dir.join("webhook.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    w.start_agents();
    // No polling to speak of, no fs watch: only the webhook tells it.
    w.start_controller_with(&[
        "--poll-secs",
        "3600",
        "--no-fs-watch",
        "--http",
        "127.0.0.1:9180",
        "--webhook-secret-file",
        secret.to_str().unwrap(),
    ]);
    let c1 = w.head();
    w.wait_in_sync(&c1, Duration::from_secs(40));
    assert_eq!(
        w.http(
            9180,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        "HTTP/1.1 200 OK"
    );

    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    let body = r#"{"ref":"refs/heads/main","after":"x"}"#;
    assert_eq!(
        w.webhook(body, Some("sha256=0000"), "d1"),
        "HTTP/1.1 401 Unauthorized"
    );
    assert_eq!(w.webhook(body, None, "d2"), "HTTP/1.1 401 Unauthorized");
    std::thread::sleep(Duration::from_secs(1));
    assert_ne!(
        w.status()["last_commit"]["commit"],
        c2.as_str(),
        "refused webhooks trigger nothing"
    );
    assert_eq!(
        w.webhook(body, Some(&sign(b"s3cret", body)), "d3"),
        "HTTP/1.1 202 Accepted"
    );
    w.wait_in_sync(&c2, Duration::from_secs(5));
    assert_eq!(
        w.webhook(body, Some(&sign(b"s3cret", body)), "d3"),
        "HTTP/1.1 409 Conflict",
        "replayed delivery"
    );

    // Garbage to the agents' SSH port, from inside and from the internet.
    let junk =
        "exec 3<>/dev/tcp/127.0.0.1/7701; printf 'SSH-2.0-evil\\r\\n\\0\\0\\0\\xff garbage' >&3; sleep 0.2";
    w.lab.ok("gateway", &["bash", "-c", junk]);
    let _ = w
        .lab
        .connect("phone", "203.0.113.10", 7701, Duration::from_secs(1));
    // Kill the router's agent mid-session: reported unreachable, then back.
    let router_agent = w.agents[1];
    let _ = Command::new("kill")
        .args(["-9", &router_agent.to_string()])
        .status();
    Lab::wait_for(
        "the router to be seen unreachable",
        Duration::from_secs(60),
        || w.status()["hosts"]["router"]["state"] == "unreachable",
    );
    assert_eq!(
        w.http(
            9180,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        "HTTP/1.1 200 OK",
        "controller still up"
    );
    let v = agent_cmd(&w.dir, "router", &["run"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    w.agents[1] = w.lab.spawn("router", &r);
    w.wait_in_sync(&c2, Duration::from_secs(30));
    let metrics = w.http(
        9180,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(metrics, "HTTP/1.1 200 OK");
}
