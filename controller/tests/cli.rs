//! The `warren-controller` command line, run as a user runs it.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_warren-controller")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .expect("run warren-controller")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("warren-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn validate_seed_succeeds() {
    let o = run(&["validate", "examples/seed"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "examples/seed/warren.yaml: valid (2 hosts, 1 forwards, 1 private VPN clients)\n"
    );
}

#[test]
fn invalid_input_exits_1_with_diagnostics_and_compiles_nothing() {
    let d = tmpdir("invalid");
    let seed = std::fs::read_to_string(root().join("examples/seed/warren.yaml")).expect("seed");
    let bad = seed.replace("port: 25565/tcp", "port: 2222/tcp");
    std::fs::write(d.join("warren.yaml"), bad).expect("write");
    let dir = d.to_string_lossy().to_string();
    for cmd in ["validate", "plan"] {
        let o = run(&[cmd, &dir]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert_eq!(text(&o.stdout), "", "{cmd} must print no plan");
        let err = text(&o.stderr);
        assert!(err.contains("warren.yaml:47:22: error[forward-lockout]: forward \"minecraft\" (2222/tcp) would capture the gateway's management port 2222/tcp"), "{err}");
        assert!(err.ends_with("1 error; nothing compiled\n"), "{err}");
    }
}

#[test]
fn yaml_bomb_is_refused_under_a_hard_memory_limit() {
    // 256 MiB of address space: a bomb that expanded would abort the process.
    let d = tmpdir("bomb");
    let mut s = String::from("a0: &a0 [lol]\n");
    for i in 1..=9 {
        let refs: Vec<String> = (0..9).map(|_| format!("*a{}", i - 1)).collect();
        s.push_str(&format!("a{i}: &a{i} [{}]\n", refs.join(", ")));
    }
    std::fs::write(d.join("warren.yaml"), s).expect("write");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 262144 && exec {} validate {}",
            bin(),
            d.display()
        ))
        .output()
        .expect("sh");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error[yaml-limit]: aliases expand to more than 10000 nodes"),
        "{err}"
    );
}

#[test]
fn plan_reads_a_git_revision() {
    let d = tmpdir("git");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&d)
            .output()
            .expect("git");
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::copy(root().join("examples/seed/warren.yaml"), d.join("warren.yaml")).expect("copy");
    git(&["add", "warren.yaml"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "seed",
    ]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    // Break the work tree; the committed revision still compiles.
    std::fs::write(d.join("warren.yaml"), "version: 1\nnonsense: true\n").expect("write");
    let dir = d.to_string_lossy().to_string();
    assert_eq!(run(&["validate", &dir]).status.code(), Some(1));
    let o = run(&["plan", &dir, "--rev", "HEAD", "--host", "router"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with(&format!("# commit {head}\n")), "{out}");
    assert!(out.contains("host router (linux, drift: report)"), "{out}");
    assert!(!out.contains("host gateway"), "--host filters");
    let o = run(&["plan", &dir, "--rev", "no-such-rev"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("unknown revision \"no-such-rev\""));
}

#[test]
fn plan_json_carries_hashes_that_match_the_plans() {
    let o = run(&["plan", "examples/seed", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["commit"], "worktree");
    for host in ["gateway", "router"] {
        let plan: warren_plan::Plan = serde_json::from_value(v["hosts"][host]["plan"].clone()).expect("plan");
        assert_eq!(v["hosts"][host]["sha256"], warren_plan::hash_hex(&plan).as_str());
    }
    // Two runs, same bytes.
    assert_eq!(
        o.stdout,
        run(&["plan", "examples/seed", "--format", "json"]).stdout
    );
}

#[test]
fn unknown_host_and_missing_path_are_usage_errors() {
    let o = run(&["plan", "examples/seed", "--host", "laptop"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: no plan for host \"laptop\"; hosts with plans: gateway, router\n"
    );
    let o = run(&["validate", "does/not/exist"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).starts_with("error: cannot read does/not/exist"));
}

#[test]
fn client_config_is_a_wg_quick_file_with_the_nested_mtu() {
    let o = run(&["client-config", "examples/seed", "phone"]);
    assert_eq!(o.status.code(), Some(0));
    let s = text(&o.stdout);
    assert!(s.contains("Address = 192.168.17.69/24\nMTU = 1340\n"), "{s}");
    assert!(
        s.contains("Endpoint = 203.0.113.10:13131\nAllowedIPs = 192.168.17.1/32, 192.168.16.0/24\n"),
        "{s}"
    );
    assert!(
        s.contains("PrivateKey = <this device's private key>"),
        "private keys never leave devices"
    );
}

#[test]
fn committed_json_schema_is_current() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let committed = std::fs::read_to_string(root().join("docs/warren.schema.json")).unwrap_or_default();
    assert!(
        committed == text(&o.stdout),
        "docs/warren.schema.json is stale: run `cargo run -p warren-controller -- schema > docs/warren.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&committed).expect("schema is JSON");
    assert_eq!(v["title"], "Document");
    assert!(v["properties"]["forwards"].is_object());
}

#[test]
fn plan_format_routeros_prints_the_router_script() {
    let o = run(&["plan", "examples/mikrotik", "--format", "routeros"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(
        s.starts_with("# commit worktree\n\n# warren plan for router (RouterOS v7): "),
        "{s}"
    );
    assert!(
        s.contains("\n/routing/table/add name=warren-100 fib comment=\"warren:table/warren-100\"\n"),
        "{s}"
    );
    assert!(
        s.contains("\n/ip/firewall/nat/add chain=warren-dstnat dst-port=25565 in-interface=wg0 protocol=tcp action=dst-nat to-addresses=192.168.16.20 comment=\"warren:nat/minecraft-tcp\"\n"),
        "{s}"
    );
    assert!(!s.contains("private-key"), "the router makes its own key: {s}");
    // Every line is a comment, blank, a /menu/add or an :if placing a jump.
    for l in s.lines() {
        assert!(
            l.is_empty() || l.starts_with('#') || l.starts_with("/") || l.starts_with(":if "),
            "{l}"
        );
    }
    // Only the RouterOS host, and the same with --host.
    let o2 = run(&[
        "plan",
        "examples/mikrotik",
        "--format",
        "routeros",
        "--host",
        "router",
    ]);
    assert_eq!((o2.status.code(), &o2.stdout), (Some(0), &o.stdout));
}

#[test]
fn plan_format_routeros_refuses_linux_hosts() {
    let o = run(&[
        "plan",
        "examples/mikrotik",
        "--format",
        "routeros",
        "--host",
        "gateway",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stdout), "");
    assert_eq!(
        text(&o.stderr),
        "error: host \"gateway\" is not a RouterOS router (platform linux); --format routeros prints only RouterOS plans\n"
    );
    let o = run(&["plan", "examples/seed", "--format", "routeros"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "error: examples/seed has no RouterOS router (platform: routeros); --format routeros prints only RouterOS plans\n"
    );
}

#[test]
fn validate_mikrotik_succeeds() {
    let o = run(&["validate", "examples/mikrotik"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "examples/mikrotik/warren.yaml: valid (3 hosts, 1 forwards, 1 private VPN clients)\n"
    );
}
