//! Fault injection on the controller's side of delivery, in the namespace
//! lab with the real binaries: a re-keyed agent, a hostile agent, a stalled
//! git host, a pre-authentication flood. Each checks that nothing is lost:
//! both hosts end in sync on the newest plan, packets flow through the
//! forward (and so through the WAN VPN), and `status` tells the truth.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;
use warren_tests::bin;
use warren_tests::lab::Lab;
use warren_tests::world::{agent_cmd, World};

const LONG: Duration = Duration::from_secs(60);

fn kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
    std::thread::sleep(Duration::from_millis(300));
}

/// Stop the router's agent (index 1 in `World::agents`).
fn stop_router(w: &mut World) {
    kill(w.agents[1]);
}

fn start_router(w: &mut World) {
    let v = agent_cmd(&w.dir, "router", &["run"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    w.agents[1] = w.lab.spawn("router", &r);
}

/// Packets through the WAN VPN: the phone reaches the laptop's forward.
fn forward_works(w: &World) {
    forward_works_within(w, Duration::from_secs(20));
}

fn forward_works_within(w: &World, timeout: Duration) {
    let _laptop = w.lab.listen("laptop", 25565);
    Lab::wait_for("the forward to carry packets", timeout, || {
        w.lab
            .connect("phone", "203.0.113.10", 25565, Duration::from_secs(1))
            .is_ok()
    });
}

/// The controller's public key, as the agents trust it.
fn controller_key(w: &World) -> String {
    let t = std::fs::read_to_string(w.dir.join("router.toml")).unwrap();
    let pat = "trusted_controller_keys = [\"";
    let i = t.find(pat).unwrap() + pat.len();
    t[i..].split('"').next().unwrap().to_string()
}

fn identity_line(w: &World, host: &str) -> String {
    let j: serde_json::Value = serde_json::from_str(
        &w.lab.ok(
            host,
            &agent_cmd(&w.dir, host, &["keys", "--format", "json"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
    )
    .unwrap();
    j["identity"].as_str().unwrap().to_string()
}

/// Replace the router's identity key (a reinstall), pin the new one in the
/// YAML: the router reconnects under it and both hosts end in sync.
#[test]
fn fault_rekeyed_agent() {
    let mut w = World::new("rekey");
    w.start_agents();
    w.start_controller();
    let c1 = w.head();
    w.wait_settled(&c1, LONG);
    let old = identity_line(&w, "router");
    stop_router(&mut w);
    std::fs::remove_file(w.dir.join("state-router/identity.key")).unwrap();
    let new = identity_line(&w, "router");
    assert_ne!(old, new);
    // Pinned with a comment, as people paste keys.
    let c2 = w.push(
        |y| y.replace(&old, &format!("{new} root@router")),
        "router re-keyed",
    );
    start_router(&mut w);
    w.wait_in_sync(&c2, LONG);
    let s = w.status();
    assert_eq!(s["hosts"]["router"]["error"], serde_json::Value::Null, "{s:#}");
    forward_works(&w);
    // And later commits still go out.
    let c3 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    w.wait_in_sync(&c3, LONG);
}

/// A client authenticated as the router (its own identity key) sends
/// garbage and another host's WireGuard key, lies about its identity, and
/// sends an 8 MiB report: the gateway keeps its plan, the controller stays
/// responsive and `status` names the problem; the real router then fixes it.
#[test]
fn fault_hostile_reports() {
    let mut w = World::new("hostile");
    w.start_agents();
    w.start_controller();
    let c1 = w.head();
    w.wait_settled(&c1, LONG);
    let gw_serial = w.serial("gateway");
    let gw_key = w.lab.ok("gateway", &["wg", "show", "wg0", "public-key"]);
    stop_router(&mut w);
    let hostile = |extra: &[&str]| {
        let b = bin("wt-agent").display().to_string();
        let key = w.dir.join("state-router/identity.key").display().to_string();
        let ck = controller_key(&w);
        let mut args = vec![
            b.as_str(),
            key.as_str(),
            ck.as_str(),
            "203.0.113.10:7701",
            "router",
        ];
        args.extend_from_slice(extra);
        w.lab.ok("router", &args)
    };
    for bad in ["not-a-key", gw_key.trim()] {
        let wg = format!("wg0={bad}");
        hostile(&["--wg", &wg]);
        Lab::wait_for(
            "status to name the router's bad key",
            Duration::from_secs(20),
            || {
                let s = w.status();
                s["hosts"]["router"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("keys refused") && e.contains("wg0"))
            },
        );
        let s = w.status();
        assert_eq!(
            w.serial("gateway"),
            gw_serial,
            "the gateway keeps its plan: {s:#}"
        );
        assert_eq!(s["hosts"]["gateway"]["state"], "in_sync", "{s:#}");
        assert!(
            !s["hosts"]["router"]["identity"]
                .as_str()
                .unwrap_or("")
                .contains("Hostile"),
            "the identity is the authenticated key: {s:#}"
        );
    }
    // An 8 MiB report: refused, the session closed, the controller fine.
    // (With the router's true key, so that only the report is at fault.)
    let rt_key = w.lab.ok("router", &["wg", "show", "wg0", "public-key"]);
    let wg = format!("wg0={}", rt_key.trim());
    let big = (8 * 1024 * 1024 - 4096).to_string();
    let out = hostile(&["--wg", &wg, "--report-bytes", &big]);
    assert!(!out.contains("still open"), "the session must be closed: {out}");
    Lab::wait_for("the router's error to clear", Duration::from_secs(20), || {
        w.status()["hosts"]["router"]["error"].is_null()
    });
    let s = w.status();
    assert_eq!(s["hosts"]["gateway"]["state"], "in_sync", "{s:#}");
    assert_eq!(w.serial("gateway"), gw_serial, "the gateway kept its plan: {s:#}");
    // The real router comes back: its keys clear the error, pushes flow.
    start_router(&mut w);
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    w.wait_in_sync(&c2, LONG);
    let s = w.status();
    assert_eq!(s["hosts"]["router"]["error"], serde_json::Value::Null, "{s:#}");
    forward_works(&w);
}

fn start_controller(w: &mut World, repo: &str, confirm: &str) {
    let c = bin("warren-controller").display().to_string();
    let state = w.dir.join("controller").display().to_string();
    let args = [
        c.as_str(),
        "serve",
        "--repo",
        repo,
        "--state-dir",
        &state,
        "--listen",
        "0.0.0.0:7701",
        "--confirm-secs",
        confirm,
        "--poll-secs",
        "0.2",
        "--no-fs-watch",
    ];
    w.controller = Some(w.lab.spawn("gateway", &args));
}

/// The git host accepts and never answers (every open of the source
/// repository blocks) while a plan goes out to a reconnecting agent: it is
/// applied and confirmed, and stays, past the confirm window.
#[test]
fn fault_git_host_stalls() {
    let mut w = World::new("stall");
    w.start_agents();
    w.start_controller();
    let c1 = w.head();
    w.wait_settled(&c1, LONG);
    // The router is away while a new forward is compiled for it.
    stop_router(&mut w);
    let c2 = w.push_forward("blog", "8080/tcp", "192.168.16.10");
    Lab::wait_for("the commit to be compiled", LONG, || {
        w.status()["desired_commit"] == c2.as_str()
    });
    w.stop_controller();
    // Now the git host stalls: opening the source blocks for ever.
    let fifo = w.dir.join("repo.git/objects/info/alternates");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let repo = w.dir.join("repo.git").display().to_string();
    start_controller(&mut w, &repo, "8");
    start_router(&mut w);
    w.wait_in_sync(&c2, LONG);
    // Past the confirm window (8 s): confirmed, not rolled back (a rollback
    // shows as the router's error and an older applied commit).
    std::thread::sleep(Duration::from_secs(12));
    w.wait_in_sync(&c2, Duration::from_secs(5));
    let _server = w.lab.listen("server", 8080);
    Lab::wait_for("the new forward", Duration::from_secs(20), || {
        w.lab
            .connect("phone", "203.0.113.10", 8080, Duration::from_secs(1))
            .is_ok()
    });
    // Let any stuck open go before the lab is torn down.
    let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
}

/// Hold 1 100 connections that send an SSH banner and nothing else.
const FLOOD: &str = r#"
import socket, sys, time
target, port, src, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def one():
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(2)
    try:
        s.connect((target, port))
        s.send(b"SSH-2.0-x\r\n")
    except OSError:
        pass
    s.setblocking(False)
    return s
socks = [one() for _ in range(n)]
print("flooding", flush=True)
while True:
    time.sleep(0.5)
    for i, s in enumerate(socks):
        try:
            if s.recv(65536) == b"":
                raise OSError()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            s.close()
            socks[i] = one()
"#;

/// 1 100 pre-authentication connections to the gateway agent's port (it
/// runs with systemd's default 1024 file descriptors) while a change to both
/// hosts is pushed: it reaches both and applies.
#[test]
fn fault_preauth_flood() {
    let mut w = World::new("flood");
    // The agent listens on every address, as on a real gateway; the
    // controller still dials it over loopback.
    let toml = w.dir.join("gateway.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, t.replace("127.0.0.1:7700", "0.0.0.0:7700")).unwrap();
    for host in ["gateway", "router"] {
        let mut v = vec![
            "prlimit".to_string(),
            "--nofile=1024:1024".to_string(),
            "--".to_string(),
        ];
        v.extend(agent_cmd(&w.dir, host, &["run"]));
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        let pid = w.lab.spawn(host, &r);
        w.agents.push(pid);
    }
    w.start_controller();
    let c1 = w.head();
    w.wait_settled(&c1, LONG);
    let script = w.dir.join("flood.py");
    std::fs::write(&script, FLOOD).unwrap();
    let s = script.display().to_string();
    let py = python();
    let flood = w.lab.spawn(
        "gateway",
        &[py.as_str(), s.as_str(), "127.0.0.2", "7700", "127.0.0.3", "1100"],
    );
    Lab::wait_for("the flood to be up", Duration::from_secs(60), || {
        w.lab.logs(flood).contains("flooding")
    });
    // Both plans change: the WAN VPN's port.
    let c2 = w.push(|y| y.replace("port: 51820", "port: 51821"), "new tunnel port");
    w.wait_in_sync(&c2, Duration::from_secs(90));
    let logs: String = w.agents.iter().map(|p| w.lab.logs(*p)).collect();
    assert!(!logs.contains("Too many open files"), "{logs}");
    // A new tunnel port takes a few handshake retries to settle.
    forward_works_within(&w, LONG);
    kill(flood);
}

fn python() -> String {
    let o = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap();
    let p = String::from_utf8(o.stdout).unwrap().trim().to_string();
    // pyenv shims re-exec; use the real interpreter.
    let o = Command::new(&p)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A restart of the agent must not take wireguard-go (and every userspace
/// tunnel) down with it, and both daemons get room for file descriptors.
#[test]
fn units_keep_wireguard_go_and_raise_nofile() {
    let dir = warren_tests::root().join("examples/systemd");
    let agent = std::fs::read_to_string(dir.join("warren-agent.service")).unwrap();
    assert!(agent.lines().any(|l| l == "KillMode=process"), "{agent}");
    for unit in ["warren-agent.service", "warren-controller.service"] {
        let t = std::fs::read_to_string(dir.join(unit)).unwrap();
        assert!(t.lines().any(|l| l.starts_with("LimitNOFILE=")), "{unit}");
    }
}
