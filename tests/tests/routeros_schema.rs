//! Conformance of the RouterOS compile target with RouterOS's own command
//! schema: every command `plan --format routeros` prints for
//! `examples/mikrotik` (and a variant with a UDP forward, a port range and a
//! target port, and with every peer key known), read back by the script
//! parser, names a menu, a command and arguments that RouterOS 7.24 has;
//! every entry's property is an `add` argument of its menu; and the keyword
//! values Warren writes (`action`, `connection-state`, `protocol`, …) are
//! among RouterOS's completions.
//!
//! The schema is the `/console/inspect` dump in `<root>/../shared/data/routeros/`
//! (not part of the project): when it is absent the checks against it are
//! skipped, said plainly. 7.15.3 is checked too, and its differences are
//! reported, not failed.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use warren_compiler::{compile, KeyBook};
use warren_plan::ros::{Place, RosEntry};
use warren_plan::ros_script::{parse, ScriptCommand};
use warren_plan::Plan;
use warren_tests::{compile_example, root};

/// menu (no leading slash) -> command -> argument names.
#[derive(Debug, Default)]
struct Schema {
    version: String,
    menus: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Schema {
    fn from_json(v: &serde_json::Value) -> Schema {
        let mut menus = BTreeMap::new();
        let Some(obj) = v["menus"].as_object() else {
            panic!("schema has no `menus` object")
        };
        for (path, m) in obj {
            let mut commands = BTreeMap::new();
            for (cmd, args) in m["commands"].as_object().into_iter().flatten() {
                let names: BTreeSet<String> = args
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone())
                    .collect();
                commands.insert(cmd.clone(), names);
            }
            menus.insert(path.trim_start_matches('/').to_string(), commands);
        }
        Schema {
            version: v["_meta"]["routeros_version"].as_str().unwrap_or("?").to_string(),
            menus,
        }
    }

    /// What is wrong with one command: an unknown menu, command or argument.
    fn check(&self, c: &ScriptCommand) -> Vec<String> {
        let Some(commands) = self.menus.get(&c.menu) else {
            return vec![format!("RouterOS {}: no menu /{}", self.version, c.menu)];
        };
        let Some(args) = commands.get(&c.command) else {
            return vec![format!(
                "RouterOS {}: /{} has no command {:?}",
                self.version, c.menu, c.command
            )];
        };
        c.args
            .iter()
            .filter(|(k, _)| !args.contains(k))
            .map(|(k, _)| {
                format!(
                    "RouterOS {}: /{}/{} has no argument {k:?}",
                    self.version, c.menu, c.command
                )
            })
            .collect()
    }

    /// Every property of an entry is an `add` argument of its menu.
    fn check_entry(&self, e: &RosEntry) -> Vec<String> {
        let c = ScriptCommand {
            menu: e.menu.clone(),
            command: "add".into(),
            args: e.props.keys().map(|k| (k.clone(), Some(String::new()))).collect(),
        };
        self.check(&c)
            .into_iter()
            .map(|p| format!("entry {}: {p}", e.tag))
            .collect()
    }
}

/// `<root>/../shared/data/routeros/<file>`, when present.
fn shared(file: &str) -> Option<PathBuf> {
    let p = root().join("../shared/data/routeros").join(file);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared/data/routeros/{file} not present");
        None
    }
}

fn load(file: &str) -> Option<serde_json::Value> {
    let p = shared(file)?;
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// The RouterOS plans to check: examples/mikrotik as is (the gateway's key
/// pending), and a variant with a UDP forward, a port range, a target port
/// and every key known.
fn plans() -> Vec<(String, Plan)> {
    let mut out: Vec<(String, Plan)> = compile_example(&root().join("examples/mikrotik"))
        .into_iter()
        .filter(|(_, p)| p.routeros.is_some())
        .map(|(h, p)| (format!("mikrotik/{h}"), p))
        .collect();
    assert_eq!(out.len(), 1, "examples/mikrotik has one RouterOS router");
    let yaml = std::fs::read_to_string(root().join("examples/mikrotik/warren.yaml"))
        .expect("mikrotik")
        .replace(
            "forwards:\n",
            "forwards:\n  voice: { port: 9987/udp, to: 192.168.16.10 }\n  games: { port: 27000-27010/tcp+udp, to: 192.168.16.20 }\n  web: { port: 8443/tcp, to: \"192.168.16.10:443\" }\n",
        );
    let (cfg, diags) = warren_model::load_str(&yaml, "mikrotik-variant/warren.yaml");
    let cfg = cfg.unwrap_or_else(|| panic!("variant is invalid:\n{diags}"));
    let mut keys = KeyBook::pinned(&cfg);
    keys.insert("gateway", "wg0", "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU=");
    let p = compile(&cfg, &keys)
        .expect("compiles")
        .remove("router")
        .expect("router plan");
    out.push(("mikrotik-variant/router".into(), p));
    out
}

/// The script of a plan, parsed back: every line reads, and every entry is
/// in it as an `add` carrying its tag.
fn commands(what: &str, p: &Plan) -> Vec<ScriptCommand> {
    let script = p.routeros_script().expect("a RouterOS plan has a script");
    let cmds =
        parse(&script).unwrap_or_else(|e| panic!("{what}: the script does not read back: {e}\n{script}"));
    let cfg = p.routeros.as_ref().expect("routeros");
    for e in &cfg.entries {
        let adds: Vec<&ScriptCommand> = cmds
            .iter()
            .filter(|c| c.command == "add" && c.arg("comment") == Some(e.comment().as_str()))
            .collect();
        let want = if e.place == Place::Top { 2 } else { 1 };
        assert_eq!(
            adds.len(),
            want,
            "{what}: entry {} in the script:\n{script}",
            e.tag
        );
        for a in adds {
            assert_eq!(a.menu, e.menu, "{what}: {}", e.tag);
            for (k, v) in &e.props {
                let got = a.arg(k).unwrap_or("");
                assert_eq!(got, v, "{what}: {} {k} reads back", e.tag);
            }
        }
    }
    cmds
}

#[test]
fn the_variant_has_what_it_is_for() {
    let plans = plans();
    let (_, v) = &plans[1];
    let cfg = v.routeros.as_ref().unwrap();
    let tags: Vec<&str> = cfg.entries.iter().map(|e| e.tag.as_str()).collect();
    for t in [
        "nat/voice-udp",
        "nat/games-tcp",
        "nat/games-udp",
        "nat/web-tcp",
        "peer/wg0/gateway",
    ] {
        assert!(tags.contains(&t), "{t} in {tags:?}");
    }
    let web = cfg.entries.iter().find(|e| e.tag == "nat/web-tcp").unwrap();
    assert_eq!(web.props.get("to-ports").map(String::as_str), Some("443"));
    let games = cfg.entries.iter().find(|e| e.tag == "nat/games-udp").unwrap();
    assert_eq!(
        games.props.get("dst-port").map(String::as_str),
        Some("27000-27010")
    );
    assert!(!games.props.contains_key("to-ports"));
    let (_, m) = &plans[0];
    let tags: Vec<&str> = m
        .routeros
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.tag.as_str())
        .collect();
    assert!(!tags.contains(&"peer/wg0/gateway"), "a pending peer is left out");
}

#[test]
fn every_command_and_argument_exists_in_routeros_7_24() {
    let Some(json) = load("inspect-7.24-subset.json") else {
        return;
    };
    let schema = Schema::from_json(&json);
    assert_eq!(schema.version, "7.24");
    let mut problems = Vec::new();
    let mut checked = 0;
    for (what, p) in plans() {
        for c in commands(&what, &p) {
            problems.extend(schema.check(&c).into_iter().map(|x| format!("{what}: {x}")));
            checked += 1;
        }
        for e in &p.routeros.as_ref().unwrap().entries {
            problems.extend(schema.check_entry(e).into_iter().map(|x| format!("{what}: {x}")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 60, "only {checked} commands checked");
    eprintln!("checked {checked} commands against RouterOS 7.24");
}

#[test]
fn differences_from_routeros_7_15_3_are_reported() {
    let Some(json) = load("inspect-7.15.3-subset.json") else {
        return;
    };
    let schema = Schema::from_json(&json);
    let mut problems = BTreeSet::new();
    for (what, p) in plans() {
        for c in commands(&what, &p) {
            problems.extend(schema.check(&c));
        }
    }
    if problems.is_empty() {
        eprintln!("RouterOS 7.15.3 has every command and argument the plans use");
    } else {
        eprintln!("RouterOS 7.15.3 differs (reported, not failed):");
        for p in problems {
            eprintln!("  {p}");
        }
    }
}

/// Keyword values: those arguments whose completions are fixed keywords.
#[test]
fn keyword_values_are_routeros_keywords() {
    let Some(json) = load("deep-inspect-7.22.3-subset.json") else {
        return;
    };
    const KEYWORDS: [&str; 6] = [
        "action",
        "connection-state",
        "connection-nat-state",
        "passthrough",
        "tcp-flags",
        "protocol",
    ];
    let mut problems = Vec::new();
    for (what, p) in plans() {
        for e in &p.routeros.as_ref().unwrap().entries {
            let mut keys: Vec<&str> = KEYWORDS.to_vec();
            if e.place == Place::Top {
                keys.push("chain");
            }
            for k in keys {
                let Some(v) = e.props.get(k) else { continue };
                let completion = &json["menus"][format!("/{}", e.menu)]["commands"]["add"][k]["completion"];
                let Some(known) = completion.as_object() else {
                    problems.push(format!("{what}: {} {k}: no completions for /{}", e.tag, e.menu));
                    continue;
                };
                for word in v.split(',') {
                    let word = word.strip_prefix('!').unwrap_or(word);
                    if !known.contains_key(word) {
                        problems.push(format!(
                            "{what}: {} {k}={v}: {word:?} is not a RouterOS keyword",
                            e.tag
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself rejects what RouterOS would: a misspelled argument,
/// an unknown command, an unknown menu (on a schema written here, so this
/// runs without the shared data too).
#[test]
fn the_checker_rejects_unknown_names() {
    let schema = Schema::from_json(&serde_json::json!({
        "_meta": {"routeros_version": "test"},
        "menus": {"/ip/firewall/filter": {"subdirs": [], "commands": {
            "add": {"chain": {}, "action": {}, "comment": {}, "place-before": {}},
            "find": {"where": {}}
        }}}
    }));
    let cmds =
        parse("/ip/firewall/filter/add chain=warren-input action=accept comment=\"warren:x\"").unwrap();
    assert_eq!(schema.check(&cmds[0]), Vec::<String>::new());
    let bad = parse("/ip/firewall/filter/add chian=warren-input action=accept").unwrap();
    assert_eq!(
        schema.check(&bad[0]),
        ["RouterOS test: /ip/firewall/filter/add has no argument \"chian\""]
    );
    let bad = parse("/ip/firewall/filter/ad chain=input").unwrap();
    assert_eq!(
        schema.check(&bad[0]),
        ["RouterOS test: /ip/firewall/filter has no command \"ad\""]
    );
    let bad = parse("/ip/firewall/filtre/add chain=input").unwrap();
    assert_eq!(
        schema.check(&bad[0]),
        ["RouterOS test: no menu /ip/firewall/filtre"]
    );
    let flag = parse("/ip/firewall/filter/add chain=input fib").unwrap();
    assert_eq!(schema.check(&flag[0]).len(), 1, "a bare flag is an argument too");
    // And on the real schema, when present.
    if let Some(json) = load("inspect-7.24-subset.json") {
        let real = Schema::from_json(&json);
        let bad = parse("/ip/firewall/mangle/add chain=warren-forward new-mms=1380").unwrap();
        assert_eq!(
            real.check(&bad[0]),
            ["RouterOS 7.24: /ip/firewall/mangle/add has no argument \"new-mms\""]
        );
        let e = RosEntry {
            menu: "routing/table".into(),
            tag: "table/x".into(),
            props: [
                ("name".to_string(), "x".to_string()),
                ("fibb".to_string(), String::new()),
            ]
            .into(),
            place: Place::InOrder,
        };
        assert_eq!(
            real.check_entry(&e),
            ["entry table/x: RouterOS 7.24: /routing/table/add has no argument \"fibb\""]
        );
    }
}

/// The RouterOS plan describes the same network as the Linux router's plan
/// of the seed: the same WireGuard interfaces and peers (so the key flow is
/// unchanged), MTUs, ports, MSS values and forward targets.
#[test]
fn the_router_keeps_the_linux_plans_numbers() {
    let linux = compile_example(&root().join("examples/seed"))
        .remove("router")
        .unwrap();
    let ros = compile_example(&root().join("examples/mikrotik"))
        .remove("router")
        .unwrap();
    assert_eq!(ros.wireguard, linux.wireguard);
    assert!(ros.sysctls.is_empty() && ros.routes.is_empty() && ros.rules.is_empty());
    assert_eq!(ros.firewall, warren_plan::Firewall::None);
    let cfg = ros.routeros.as_ref().unwrap();
    let get = |tag: &str, k: &str| {
        let e = cfg
            .entries
            .iter()
            .find(|e| e.tag == tag)
            .unwrap_or_else(|| panic!("{tag}"));
        e.props.get(k).cloned().unwrap_or_else(|| panic!("{tag} {k}"))
    };
    for i in &linux.wireguard {
        assert_eq!(get(&format!("if/{}", i.name), "mtu"), i.mtu.to_string());
        if let Some(p) = i.listen_port {
            assert_eq!(get(&format!("if/{}", i.name), "listen-port"), p.to_string());
        }
        assert_eq!(
            get(&format!("addr/{}", i.name), "address"),
            i.addresses[0].to_string()
        );
    }
    assert_eq!(get("if/wg0", "listen-port"), "51820", "the WAN VPN port");
    assert_eq!(get("mangle/mss-wg0-out", "new-mss"), "1380");
    assert_eq!(get("mangle/mss-wg1-in", "new-mss"), "1300");
    assert_eq!(get("nat/minecraft-tcp", "to-addresses"), "192.168.16.20");
    assert_eq!(get("table/warren-100", "fib"), "");
    assert_eq!(
        get("mangle/mark-tunnel-connections", "new-connection-mark"),
        "warren-100"
    );
    // Menus in dependency order; every entry has a unique tag in its menu;
    // the jumps come after the rules of their menu.
    let menus = warren_plan::ros::MENUS;
    let order: Vec<usize> = cfg
        .entries
        .iter()
        .map(|e| menus.iter().position(|m| *m == e.menu).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    let mut seen = BTreeSet::new();
    for e in &cfg.entries {
        assert!(
            seen.insert((e.menu.clone(), e.tag.clone())),
            "duplicate {}",
            e.tag
        );
    }
    let tops: Vec<&str> = cfg
        .entries
        .iter()
        .filter(|e| e.place == Place::Top)
        .map(|e| e.tag.as_str())
        .collect();
    assert_eq!(
        tops,
        [
            "jump/mangle-prerouting",
            "jump/mangle-output",
            "jump/mangle-forward",
            "jump/nat-dstnat",
            "jump/filter-input",
            "jump/filter-forward"
        ]
    );
}
