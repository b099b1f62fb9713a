//! The seed with its router on RouterOS, live: `warren-ros-sim` plays the
//! MikroTik in the router namespace (configured only through REST by an
//! agent on a separate LAN host, its default firewall with FastTrack and
//! the input drop in place), and real packets cross it.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;
use warren_tests::lab::Lab;
use warren_tests::mikrotik::{self, winbox, Sim, AGENT_HOST};
use warren_tests::world::World;

fn up(tag: &str) -> (World, Sim) {
    let (mut w, sim) = mikrotik::world(tag);
    w.start_controller();
    let c = w.head();
    w.wait_settled(&c, Duration::from_secs(90));
    w.wait_tunnel();
    (w, sim)
}

fn logs(w: &World, sim: &Sim) -> String {
    let mut s = w.lab.logs(sim.pid);
    for p in &w.agents {
        s.push_str(&w.lab.logs(*p));
    }
    s
}

#[test]
fn a_mikrotik_router_configured_only_through_rest_carries_the_seed() {
    let (w, sim) = up("ros-seed");

    // Every Warren object is tagged; the default firewall is still there.
    let nat = sim.rows("ip/firewall/nat");
    assert!(
        nat.iter().any(|r| r["action"] == "masquerade"
            && r.get("comment")
                .is_none_or(|c| !c.as_str().unwrap_or("").starts_with("warren:"))),
        "defconf masquerade kept: {nat:?}"
    );
    let filter = sim.rows("ip/firewall/filter");
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| filter.iter().position(pred);
    let jump = pos(&|r| r["chain"] == "forward" && r["action"] == "jump").expect("forward jump");
    let fasttrack = pos(&|r| r["action"] == "fasttrack-connection").expect("defconf fasttrack");
    assert!(
        jump < fasttrack,
        "Warren's forward jump sits above FastTrack: {filter:#?}"
    );

    // The phone reaches the laptop through gateway:25565, with its own address.
    let _laptop = w.lab.listen("laptop", 25565);
    let seen = w
        .lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("phone -> gateway:25565 -> laptop: {e}\n{}", logs(&w, &sim)));
    assert!(
        seen.starts_with("198.51.100.50:"),
        "the laptop sees the phone's address: {seen}"
    );
    // Long enough for FastTrack to have taken the connection, were it first.
    let held = w.lab.hold("phone", "203.0.113.10", 25565);
    std::thread::sleep(Duration::from_secs(2));
    assert!(held.alive(), "a held connection survives FastTrack");
    drop(held);

    // A no-op reconcile writes nothing: the agent checks for drift every second.
    let before = sim.writes();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        sim.writes(),
        before,
        "no writes while nothing changes\n{}",
        logs(&w, &sim)
    );

    // The nested private VPN, through the gateway, to the router itself.
    w.phone_vpn_up();
    Lab::wait_for("the private VPN handshake", Duration::from_secs(20), || {
        let _ = w
            .lab
            .connect("phone", "192.168.16.20", 9, Duration::from_millis(300));
        let out = w.lab.ok("phone", &["wg", "show", "wgp", "latest-handshakes"]);
        out.split_whitespace().nth(1).is_some_and(|t| t != "0")
    });
    let _l9 = w.lab.listen("laptop", 9000);
    let seen = w
        .lab
        .connect("phone", "192.168.16.20", 9000, Duration::from_secs(5))
        .expect("phone -> laptop through the private VPN");
    assert!(seen.starts_with("192.168.17.69:"), "{seen}");

    // A pushed forward appears; a removed one disappears.
    let _l8080 = w.lab.listen("laptop", 8080);
    let c = w.push_forward("web", "8080/tcp", "192.168.16.20");
    w.wait_in_sync(&c, Duration::from_secs(30));
    w.lab
        .connect("phone", "203.0.113.10", 8080, Duration::from_secs(5))
        .expect("the pushed forward works");
    let c = w.push(
        |y| y.replace("  web: { port: 8080/tcp, to: 192.168.16.20 }\n", ""),
        "no web",
    );
    w.wait_in_sync(&c, Duration::from_secs(30));
    assert!(
        w.lab
            .connect("phone", "203.0.113.10", 8080, Duration::from_secs(2))
            .is_err(),
        "the removed forward is gone"
    );
    assert!(
        sim.rows("ip/firewall/nat")
            .iter()
            .all(|r| r["dst-port"] != "8080"),
        "no nat row for 8080 left"
    );

    // An edit "in WinBox" is drift, named per entry.
    let minecraft = sim
        .rows("ip/firewall/nat")
        .into_iter()
        .find(|r| r["dst-port"] == "25565" && r["action"] == "dst-nat")
        .expect("the minecraft dst-nat");
    let id = minecraft[".id"].as_str().unwrap();
    let (code, body) = winbox(
        &w.lab,
        "PATCH",
        &format!("ip/firewall/nat/{id}"),
        Some(r#"{"to-addresses":"192.168.16.21"}"#),
    );
    assert_eq!(code, 200, "{body}");
    Lab::wait_for("the router's drift in status", Duration::from_secs(15), || {
        w.status()["hosts"]["router"]["state"] == "drifted"
    });
    let drift = w.status()["hosts"]["router"]["drift"].to_string();
    assert!(
        drift.contains(minecraft["comment"].as_str().unwrap()),
        "drift names the entry: {drift}"
    );

    // Someone moves Warren's forward jump below FastTrack: drift, naming it.
    let filter = sim.rows("ip/firewall/filter");
    let id_of = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        filter
            .iter()
            .find(|r| pred(r))
            .map(|r| r[".id"].as_str().unwrap().to_string())
    };
    let jump = id_of(&|r| r["comment"] == "warren:jump/filter-forward").expect("the jump");
    let fasttrack_at = filter
        .iter()
        .position(|r| r["action"] == "fasttrack-connection")
        .unwrap();
    let below = filter[fasttrack_at + 1][".id"].as_str().unwrap().to_string();
    let body = format!(r#"{{"numbers":"{jump}","destination":"{below}"}}"#);
    let (code, out) = winbox(&w.lab, "POST", "ip/firewall/filter/move", Some(&body));
    assert_eq!(code, 200, "{out}");
    Lab::wait_for("the misplaced jump in status", Duration::from_secs(15), || {
        w.status()["hosts"]["router"]["drift"]
            .to_string()
            .contains("warren:jump/filter-forward")
    });

    // The agent host's doctor reads the router over REST and names it.
    let v = warren_tests::world::agent_cmd(&w.dir, "router", &["doctor"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    let out = w.lab.run(AGENT_HOST, &r);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(6), "doctor exits 6 (breaks): {text}");
    assert!(
        text.contains("routeros-rest: the router's REST API at 192.168.16.1:443 answers"),
        "{text}"
    );
    assert!(
        text.contains("warren:jump/filter-forward is below the router's own rule"),
        "{text}"
    );

    // With `drift: heal` the agent puts both back, through REST.
    let c = w.push(
        |y| {
            y.replace(
                "    platform: routeros\n",
                "    platform: routeros\n    drift: heal\n",
            )
        },
        "heal the router",
    );
    w.wait_in_sync(&c, Duration::from_secs(30));
    Lab::wait_for("the router healed", Duration::from_secs(20), || {
        let nat = sim.row("ip/firewall/nat", minecraft["comment"].as_str().unwrap());
        let filter = sim.rows("ip/firewall/filter");
        let jump = filter
            .iter()
            .position(|r| r["comment"] == "warren:jump/filter-forward");
        let fast = filter.iter().position(|r| r["action"] == "fasttrack-connection");
        nat.is_some_and(|r| r["to-addresses"] == "192.168.16.20")
            && matches!((jump, fast), (Some(j), Some(f)) if j < f)
    });
    w.lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(5))
        .expect("the healed forward works");
}

/// A plan that cuts the agent off from the router's REST API is undone by
/// the router itself: the dead man's switch armed before the apply fires.
#[test]
fn a_plan_that_locks_the_agent_out_is_rolled_back_by_the_routers_scheduler() {
    use warren_plan::ros::{Place, RosEntry};
    let (w, sim) = mikrotik::world("ros-lockout");
    // The router's plan as the controller would compile it, plus a rule that
    // drops the agent host's HTTPS to the router: signed by the trusted key.
    let yaml = std::fs::read_to_string(w.work.join("warren.yaml")).unwrap();
    let (cfg, diags) = warren_model::validate::load_str(&yaml, "warren.yaml");
    let cfg = cfg.unwrap_or_else(|| panic!("valid: {diags:?}"));
    let mut plan = warren_compiler::compile_host(&cfg, &warren_compiler::KeyBook::pinned(&cfg), "router")
        .unwrap()
        .unwrap();
    let ros = plan.routeros.as_mut().unwrap();
    let first_input = ros
        .entries
        .iter()
        .position(|e| {
            e.menu == "ip/firewall/filter" && e.props.get("chain").is_some_and(|c| c == "warren-input")
        })
        .expect("a warren-input rule");
    ros.entries.insert(
        first_input,
        RosEntry {
            menu: "ip/firewall/filter".into(),
            tag: "filter/lockout".into(),
            props: [
                ("chain", "warren-input"),
                ("src-address", "192.168.16.10"),
                ("protocol", "tcp"),
                ("dst-port", "443"),
                ("action", "drop"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            place: Place::InOrder,
        },
    );
    let key = warren_controller_key(&w);
    let signed = warren_plan::sign(plan, 1, "lockout", 60, warren_host::unix_now(), &key);
    let file = w.dir.join("lockout.plan.json");
    std::fs::write(&file, warren_plan::canonical(&signed)).unwrap();
    // The daemon is not needed: a one-shot apply from the agent host.
    for p in w.agents.clone() {
        let _ = std::process::Command::new("kill").arg(p.to_string()).status();
    }
    let v = warren_tests::world::agent_cmd(
        &w.dir,
        "router",
        &["apply", "--plan", &file.display().to_string()],
    );
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    let out = w.lab.run(AGENT_HOST, &r);
    let said = format!(
        "agent: {}{}\nsimulator: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        w.lab.logs(sim.pid)
    );
    assert!(!out.status.success(), "the apply cannot verify: {said}");
    assert!(
        said.contains("cannot reach the router at 192.168.16.1:443"),
        "cut off mid-apply, the agent cannot undo it itself: {said}"
    );
    assert!(
        sim.row("ip/firewall/filter", "warren:filter/lockout").is_some(),
        "the lockout rule is live: {said}"
    );
    let (code, _) = winbox(&w.lab, "GET", "system/identity", None);
    assert_eq!(code, 0, "the agent host is locked out of REST");
    // The router's own scheduler, after its window, restores the previous
    // (empty) generation.
    let ran = sim.ctl("advance 61");
    assert!(ran["ran"].to_string().contains("warren-rollback"), "{ran}");
    assert!(
        sim.row("ip/firewall/filter", "warren:filter/lockout").is_none(),
        "rolled back: {:?}",
        sim.rows("ip/firewall/filter")
    );
    let (code, body) = winbox(&w.lab, "GET", "system/identity", None);
    assert_eq!(code, 200, "REST reachable again: {body}");
    assert!(
        sim.rows("system/scheduler")
            .iter()
            .all(|r| r["name"] != "warren-rollback"),
        "the switch removed itself"
    );
}

fn warren_controller_key(w: &World) -> ed25519_dalek::SigningKey {
    let seed = warren_host::secret::read(&w.dir.join("controller/controller.key"))
        .unwrap()
        .expect("controller key");
    ed25519_dalek::SigningKey::from_bytes(&seed)
}
