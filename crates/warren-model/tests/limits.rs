//! Hostile YAML (it arrives through pull requests) is refused with a
//! `yaml-limit` diagnostic before it can use much memory or time.
//! `cargo run --release -p warren-model --example limits` prints the figures
//! (time and peak memory per input); here we assert the outcome only.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use warren_model::load_str;

fn first_code(text: &str) -> String {
    let (cfg, d) = load_str(text, "bomb.yaml");
    assert!(cfg.is_none());
    let first = d.iter().next().map(|d| d.to_string()).unwrap_or_default();
    first
}

/// The classic "billion laughs": 9 levels of 9 aliases each, 9^9 nodes expanded.
pub fn billion_laughs() -> String {
    let mut s = String::from("a0: &a0 [lol]\n");
    for i in 1..=9 {
        let refs: Vec<String> = (0..9).map(|_| format!("*a{}", i - 1)).collect();
        s.push_str(&format!("a{i}: &a{i} [{}]\n", refs.join(", ")));
    }
    s.push_str("version: *a9\n");
    s
}

#[test]
fn billion_laughs_is_refused() {
    let d = first_code(&billion_laughs());
    assert!(
        d.contains("error[yaml-limit]: aliases expand to more than 10000 nodes (an alias bomb?)"),
        "{d}"
    );
}

#[test]
fn alias_bomb_inside_a_real_key_is_refused() {
    // The same bomb placed where the schema expects a value.
    let mut s = String::from("version: 1\nx0: &x0 {a: 1, b: 2, c: 3, d: 4}\n");
    for i in 1..=8 {
        let refs: Vec<String> = (0..8).map(|j| format!("k{j}: *x{}", i - 1)).collect();
        s.push_str(&format!("x{i}: &x{i} {{{}}}\n", refs.join(", ")));
    }
    s.push_str("hosts: *x8\n");
    let d = first_code(&s);
    assert!(d.contains("error[yaml-limit]"), "{d}");
}

#[test]
fn deep_flow_nesting_is_refused_without_stack_overflow() {
    let depth = 100_000;
    let s = format!("version: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let d = first_code(&s);
    assert!(
        d.contains("error[yaml-limit]: nesting is deeper than 24 levels"),
        "{d}"
    );
}

#[test]
fn deep_block_nesting_is_refused() {
    let mut s = String::from("version: 1\nhosts:\n");
    for i in 0..200 {
        s.push_str(&" ".repeat(2 * (i + 1)));
        s.push_str(&format!("k{i}:\n"));
    }
    let d = first_code(&s);
    assert!(
        d.contains("error[yaml-limit]: nesting is deeper than 24 levels"),
        "{d}"
    );
}

#[test]
fn too_many_aliases_are_refused() {
    // One anchor aliased thousands of times.
    let mut s = String::from("version: 1\nv: &v 1\nlist: [");
    s.push_str(&vec!["*v"; 5000].join(","));
    s.push_str("]\n");
    let d = first_code(&s);
    assert!(
        d.contains("error[yaml-limit]: an anchor is used by more than 64 aliases"),
        "{d}"
    );
    // Many anchors, each aliased a few times.
    let mut s = String::from("version: 1\n");
    for i in 0..300 {
        s.push_str(&format!("a{i}: &a{i} 1\nb{i}: *a{i}\n"));
    }
    let d = first_code(&s);
    assert!(
        d.contains("error[yaml-limit]: more than 256 aliases or anchors"),
        "{d}"
    );
}

#[test]
fn oversized_file_is_refused_before_parsing() {
    let s = format!("version: 1\n# {}\n", "x".repeat(2 * 1024 * 1024));
    let d = first_code(&s);
    assert_eq!(
        d,
        "bomb.yaml: error[yaml-limit]: file is 2097166 bytes; the limit is 1048576\n  hint: a warren.yaml is a few kilobytes; is this the right file?"
    );
}

#[test]
fn a_few_anchors_are_still_fine() {
    // Reasonable reuse of anchors stays allowed.
    let text = "\
version: 1
hosts:
  gateway:
    role: gateway
    public_address: 203.0.113.10
    uplink: enp0s6
    management: &mgmt [2222/tcp]
  router:
    role: router
    lans:
      lan: { interface: br-lan, address: 192.168.16.1/24 }
wan_vpn: { gateway: gateway, router: router, subnet: 10.0.18.0/30 }
forwards:
  a: &fw { port: 25565/tcp, to: 192.168.16.20 }
  b: { port: 25566/tcp, to: 192.168.16.20 }
";
    let (cfg, d) = load_str(text, "ok.yaml");
    assert!(cfg.is_some(), "{d}");
}

#[test]
fn garbage_never_panics() {
    // A spread of malformed inputs: every one yields diagnostics, none panics.
    let inputs = [
        "",
        "---",
        "...",
        "\0",
        "version",
        "version: 1",
        "[1, 2",
        "{a: b",
        "!!binary AAAA",
        "&a *a",
        "*x",
        "version: !!str 1",
        "version: 1\nhosts: []",
        "version: 1\nhosts: 5\nwan_vpn: []",
        "\u{feff}version: 1",
        "version: 1\n---\nversion: 1\n",
        "? [a]\n: b",
        "version: 99999999999999999999999",
    ];
    for i in inputs {
        let (cfg, d) = load_str(i, "junk.yaml");
        assert!(cfg.is_none() && d.has_errors(), "{i:?} was accepted");
    }
}
