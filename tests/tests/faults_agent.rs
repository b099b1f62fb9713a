//! Faults on the agent's side, injected in the namespace lab against the
//! real binaries (controller on the gateway, agents on the gateway and the
//! router): a reboot, `nft` failing or hanging mid-apply, `kill -9` during an
//! apply, a corrupt `applied.json`, wall-clock jumps, a full state
//! directory. Each test checks that nothing is lost: afterwards the router
//! runs the last confirmed plan (or the new one), real packets flow, and the
//! agent's own view (`diff`, `applied.json`) tells the truth.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use warren_tests::lab::Lab;
use warren_tests::world::{agent_cmd, World};

/// A second private-VPN client: a new peer on the router's wg1.
const TABLET: &str = "    tablet:\n      address: 192.168.17.70\n      public_key: \"YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=\"\n      routes: [192.168.17.1/32, 192.168.16.0/24]\n";

/// The seed converged through the controller, the WAN VPN up.
fn up(tag: &str) -> World {
    let mut w = World::new(tag);
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_settled(&c, Duration::from_secs(90));
    w.wait_tunnel();
    w
}

fn state(w: &World, file: &str) -> PathBuf {
    w.dir.join("state-router").join(file)
}

/// The router's `applied.json`: (serial, confirmed).
fn running(w: &World) -> (u64, bool) {
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state(w, "applied.json")).unwrap()).unwrap();
    (
        a["signed"]["envelope"]["serial"].as_u64().unwrap(),
        a["confirmed"].as_bool().unwrap(),
    )
}

/// Kill the router's agent (SIGKILL) and start it again, with `path_prefix`
/// first on its `PATH` (a directory of shims) if given. Returns its pid.
fn restart_router(w: &mut World, path_prefix: Option<&PathBuf>) -> u32 {
    kill_router(w);
    let mut args: Vec<String> = vec![];
    if let Some(p) = path_prefix {
        args.push("env".into());
        args.push(format!("PATH={}:/usr/sbin:/usr/bin:/sbin:/bin", p.display()));
    }
    args.extend(agent_cmd(&w.dir, "router", &["run"]));
    let r: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = w.lab.spawn("router", &r);
    w.agents[1] = pid;
    pid
}

fn kill_router(w: &World) {
    let pid = w.agents[1];
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    Lab::wait_for("the router's agent to die", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The router's `warren-agent diff` against its running plan: empty?
fn in_step(w: &World) -> bool {
    let v = agent_cmd(&w.dir, "router", &["diff"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    w.lab.run("router", &r).status.success()
}

/// Phone -> 203.0.113.10:25565 -> (WAN VPN) -> the laptop.
fn forward_works(w: &World) -> bool {
    w.lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(1))
        .is_ok()
}

/// Phone -> (private VPN inside the WAN VPN) -> the server.
fn nested_vpn_works(w: &World) -> bool {
    w.lab
        .connect("phone", "192.168.16.10", 9000, Duration::from_secs(1))
        .is_ok_and(|seen| seen.starts_with("192.168.17.69:"))
}

/// A power cut of the router: its agent and every wireguard-go in it die,
/// and the kernel forgets Warren's interfaces, nft table, rules, routes,
/// sysctls and `/run`.
fn reboot_router(w: &World) {
    kill_router(w);
    let ns = w.lab.ns_name("router");
    let pids = Command::new("ip").args(["netns", "pids", &ns]).output().unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "wireguard-go" {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let script = "ip link del wg0 2>/dev/null; ip link del wg1 2>/dev/null; \
        rm -f /run/wireguard/*.sock; nft delete table ip warren 2>/dev/null; \
        while ip rule del protocol 77 2>/dev/null; do :; done; \
        ip route flush table all proto 77 2>/dev/null; \
        echo 0 > /proc/sys/net/ipv4/ip_forward; true";
    w.lab.ok("router", &["sh", "-c", script]);
    assert!(!w
        .lab
        .run("router", &["ip", "link", "show", "wg0"])
        .status
        .success());
    assert!(!forward_works(w), "the reboot took the forward down");
}

#[test]
fn fault_reboot_restores_the_network() {
    let mut w = up("f-reboot");
    w.phone_vpn_up();
    let _laptop = w.lab.listen("laptop", 25565);
    let _server = w.lab.listen("server", 9000);
    Lab::wait_for("the forward before the reboot", Duration::from_secs(20), || {
        forward_works(&w)
    });
    Lab::wait_for(
        "the nested VPN before the reboot",
        Duration::from_secs(20),
        || nested_vpn_works(&w),
    );
    let serial = running(&w).0;

    reboot_router(&w);
    let pid = restart_router(&mut w, None);

    Lab::wait_for("the forward after the reboot", Duration::from_secs(60), || {
        forward_works(&w)
    });
    Lab::wait_for("the nested VPN after the reboot", Duration::from_secs(60), || {
        nested_vpn_works(&w)
    });
    assert!(in_step(&w), "the router runs its plan");
    assert_eq!(
        running(&w),
        (serial, true),
        "no push: the same plan, still confirmed"
    );
    let logs = w.lab.logs(pid);
    assert!(logs.contains("restored at start-up"), "{logs}");
}

#[test]
fn fault_nft_fails_mid_apply() {
    let mut w = up("f-nft");
    let _laptop = w.lab.listen("laptop", 25565);
    Lab::wait_for("the forward", Duration::from_secs(20), || forward_works(&w));
    let before = running(&w);
    let shim = shim(
        &w,
        "nft",
        "*\" -f \"*",
        "echo 'nft shim: refused by the fault test' >&2; exit 1",
    );
    let pid = restart_router(&mut w, Some(&shim));
    Lab::wait_for("the restarted agent to settle", Duration::from_secs(20), || {
        in_step(&w)
    });

    // A new peer on wg1 (applied before the nft step) and a new forward.
    push_tablet_and_blog(&w);
    Lab::wait_for("the failed apply", Duration::from_secs(60), || {
        w.lab.logs(pid).contains("restored the last confirmed plan")
    });
    assert_eq!(running(&w), before, "the router runs the last confirmed plan");
    assert!(
        in_step(&w),
        "live state is the last confirmed plan's: {}",
        w.lab.logs(pid)
    );
    let peers = w.lab.ok("router", &["wg", "show", "wg1", "peers"]);
    assert!(
        !peers.contains("YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="),
        "the new peer was removed: {peers}"
    );
    Lab::wait_for("the forward after the failure", Duration::from_secs(20), || {
        forward_works(&w)
    });
    let report = std::fs::read_to_string(state(&w, "report.json")).unwrap();
    assert!(alive(pid), "the daemon keeps running");
    assert!(!report.is_empty());
}

/// A commit that adds a private VPN client (a new peer on wg1, applied
/// before the nft step) and a forward (the nft step).
fn push_tablet_and_blog(w: &World) -> String {
    w.push(
        |y| {
            y.replace(
                "      routes: [192.168.17.1/32, 192.168.16.0/24]\n",
                &format!("      routes: [192.168.17.1/32, 192.168.16.0/24]\n{TABLET}"),
            )
            .replacen(
                "forwards:\n",
                "forwards:\n  blog: { port: 8080/tcp, to: 192.168.16.10 }\n",
                1,
            )
        },
        "tablet and blog",
    )
}

/// A shim for `prog` first on the agent's `PATH`: when its arguments match
/// the shell `case` pattern `when`, it runs `then` before the real program.
fn shim(w: &World, prog: &str, when: &str, then: &str) -> PathBuf {
    let dir = w.dir.join(format!("shim-{prog}"));
    std::fs::create_dir_all(&dir).unwrap();
    let real = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.exists())
        .unwrap();
    let p = dir.join(prog);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ncase \" $* \" in {when}) {then};; esac\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `kill -9` the router's agent while `prog` hangs in the middle of an apply
/// (a new private VPN client and a new forward: a `wg set … peer` and an nft
/// transaction), restart it: the host converges to N or N-1 (or N re-signed),
/// never stays half-applied, and reports nothing as `rejected`.
fn kill_9_while(tag: &str, prog: &str, when: &str) {
    let mut w = up(tag);
    let _laptop = w.lab.listen("laptop", 25565);
    let before = running(&w).0;
    let mark = w.dir.join("hanging");
    let shim = shim(&w, prog, when, &format!("touch {}; sleep 60", mark.display()));
    restart_router(&mut w, Some(&shim));
    Lab::wait_for("the restarted agent to settle", Duration::from_secs(20), || {
        in_step(&w)
    });

    let c2 = push_tablet_and_blog(&w);
    Lab::wait_for(
        &format!("{prog} to hang mid-apply"),
        Duration::from_secs(60),
        || mark.exists(),
    );
    assert!(state(&w, "pending.json").exists(), "the apply is journaled");
    let pid = restart_router(&mut w, None);

    Lab::wait_for(
        "the router to converge to N or N-1",
        Duration::from_secs(60),
        || !state(&w, "pending.json").exists() && in_step(&w),
    );
    // N-1 (undone), N (finished), or N re-signed above the agent's replay
    // floor by the controller (same content, next serial): never a serial the
    // agent would refuse, never half of two plans.
    let serial = running(&w).0;
    assert!(serial >= before, "serial {serial}, before {before}");
    w.wait_in_sync(&c2, Duration::from_secs(60));
    Lab::wait_for("the forward", Duration::from_secs(20), || forward_works(&w));
    let logs = w.lab.logs(pid);
    assert!(!logs.contains("rejected"), "no rejected report: {logs}");
    assert!(logs.contains("interrupted"), "{logs}");
}

#[test]
fn fault_kill_9_during_apply_in_nft() {
    kill_9_while("f-kill9-nft", "nft", "*\" -f \"*");
}

#[test]
fn fault_kill_9_during_apply_in_wg_peer() {
    kill_9_while("f-kill9-wg", "wg", "\" set \"*\" peer \"*");
}

#[test]
fn fault_corrupt_applied_json() {
    let mut w = up("f-corrupt");
    let _laptop = w.lab.listen("laptop", 25565);
    let before = running(&w);
    kill_router(&w);
    std::fs::write(state(&w, "applied.json"), "{").unwrap();
    w.lab.ok("router", &["nft", "delete", "table", "ip", "warren"]);
    let pid = restart_router(&mut w, None);
    Lab::wait_for(
        "the router back on its last confirmed plan",
        Duration::from_secs(60),
        || {
            std::fs::read(state(&w, "applied.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some()
                && in_step(&w)
        },
    );
    assert_eq!(running(&w), before);
    Lab::wait_for("the forward", Duration::from_secs(20), || forward_works(&w));
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(pid), "the daemon stays up: {}", w.lab.logs(pid));
    assert!(w.lab.logs(pid).contains("applied.json"), "it says why");
}

/// Restart the router's agent with its running plan unconfirmed (or not)
/// and `applied_at` moved by `jump` seconds, with no controller to confirm.
fn jump_and_restart(w: &mut World, confirmed: bool, jump: i64) -> u32 {
    kill_router(w);
    let p = state(w, "applied.json");
    let mut a: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let at = a["applied_at"].as_i64().unwrap();
    a["applied_at"] = serde_json::json!(at + jump);
    a["confirmed"] = serde_json::json!(confirmed);
    std::fs::write(&p, serde_json::to_vec(&a).unwrap()).unwrap();
    restart_router(w, None)
}

#[test]
fn fault_clock_jump_forward_and_back_keeps_confirm_windows() {
    let mut w = up("f-clock");
    w.stop_controller();
    let year = 365 * 86_400;
    let window = Duration::from_secs(30); // the World's --confirm-secs
    for jump in [year, -year] {
        let pid = jump_and_restart(&mut w, false, jump);
        let start = std::time::Instant::now();
        Lab::wait_for(
            "the unconfirmed plan's rollback",
            window + Duration::from_secs(30),
            || w.lab.logs(pid).contains("not confirmed in time"),
        );
        assert!(
            start.elapsed() >= window - Duration::from_secs(3),
            "jump {jump}: rolled back after {:?}, before its window",
            start.elapsed()
        );
        Lab::wait_for(
            "the last confirmed plan to run again",
            Duration::from_secs(30),
            || running(&w).1 && in_step(&w),
        );
    }
    for jump in [year, -year] {
        let pid = jump_and_restart(&mut w, true, jump);
        std::thread::sleep(window + Duration::from_secs(5));
        assert!(!w.lab.logs(pid).contains("not confirmed in time"), "jump {jump}");
        assert!(running(&w).1 && in_step(&w));
    }
    let _laptop = w.lab.listen("laptop", 25565);
    Lab::wait_for("the forward", Duration::from_secs(20), || forward_works(&w));
}

#[test]
fn fault_disk_full_state_dir() {
    let mut w = up("f-full");
    let _laptop = w.lab.listen("laptop", 25565);
    let (serial, _) = running(&w);
    w.stop_controller();
    kill_router(&w);
    // Unconfirm the running plan, so that a confirm has to be written.
    let p = state(&w, "applied.json");
    let mut a: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    a["confirmed"] = serde_json::json!(false);
    std::fs::write(&p, serde_json::to_vec(&a).unwrap()).unwrap();
    // A small tmpfs over the state directory, in the router's mount
    // namespace only, holding a copy of the state, then filled up.
    let dir = w.dir.join("state-router").display().to_string();
    let copy = w.dir.join("state-copy").display().to_string();
    let script = format!(
        "set -e; cp -a {dir} {copy}; mount -t tmpfs -o size=4m,mode=0700 warren-full {dir}; \
         cp -a {copy}/. {dir}/; dd if=/dev/zero of={dir}/fill bs=4k 2>/dev/null || true; df {dir}"
    );
    w.lab.ok("router", &["sh", "-c", &script]);
    let pid = restart_router(&mut w, None);
    let v = agent_cmd(&w.dir, "router", &["confirm", "--serial", &serial.to_string()]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    w.lab.ok("router", &r);
    Lab::wait_for("the clear error", Duration::from_secs(20), || {
        w.lab.logs(pid).contains("cannot record the confirmation")
    });
    // Past the window: no rollback, no crash, the plan still runs.
    std::thread::sleep(Duration::from_secs(35));
    let logs = w.lab.logs(pid);
    assert!(alive(pid), "no crash: {logs}");
    assert!(!logs.contains("not confirmed in time"), "{logs}");
    Lab::wait_for("the forward", Duration::from_secs(20), || forward_works(&w));
    // Room again: the confirmation is written at the next retry.
    let _ = std::fs::remove_dir_all(w.dir.join("state-copy"));
    w.lab.ok("router", &["sh", "-c", &format!("rm -f {dir}/fill")]);
    Lab::wait_for(
        "the confirm written once there is room",
        Duration::from_secs(20),
        || {
            w.lab
                .run(
                    "router",
                    &[
                        "grep",
                        "-q",
                        "\"confirmed\": true",
                        &format!("{dir}/applied.json"),
                    ],
                )
                .status
                .success()
        },
    );
}

#[test]
fn fault_named_routing_table() {
    let w = up("f-rt-name");
    let _laptop = w.lab.listen("laptop", 25565);
    // The fault: the router's owner names table 100 in rt_tables (only in
    // the router's own mount namespace), so `ip` prints "wan" for it.
    let tables = w.dir.join("rt_tables");
    std::fs::write(&tables, "255\tlocal\n254\tmain\n253\tdefault\n100\twan\n").unwrap();
    let target = "/etc/iproute2/rt_tables";
    w.lab.ok(
        "router",
        &["sh", "-c", &format!("[ -e {target} ] || touch {target}")],
    );
    w.lab.ok(
        "router",
        &["mount", "--bind", &tables.display().to_string(), target],
    );
    assert!(
        w.lab.ok("router", &["ip", "rule", "show"]).contains("lookup wan"),
        "the name is in effect"
    );
    // Warren still sees its own rules and routes: nothing to do, and the
    // daemon's drift checks stay quiet (no duplicate rules).
    let v = agent_cmd(&w.dir, "router", &["diff"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    let out = w.lab.run("router", &r);
    assert!(
        out.status.success(),
        "diff: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_secs(2));
    let rules = w.lab.ok("router", &["ip", "rule", "show"]);
    assert_eq!(rules.matches("lookup wan").count(), 2, "{rules}");
    Lab::wait_for("the forward", Duration::from_secs(20), || forward_works(&w));
}
