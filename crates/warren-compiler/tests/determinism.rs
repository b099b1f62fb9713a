//! Compiling is deterministic, and the order of keys in YAML mappings does
//! not change any plan hash.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use proptest::prelude::*;
use warren_compiler::{compile, KeyBook};

/// A tiny YAML tree, emitted in block style with a chosen key order.
#[derive(Clone, Debug)]
enum Node {
    S(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn s(x: impl ToString) -> Node {
    Node::S(x.to_string())
}
fn map(v: Vec<(&str, Node)>) -> Node {
    Node::Map(v.into_iter().map(|(k, n)| (k.to_string(), n)).collect())
}

/// Fisher-Yates with a xorshift generator seeded by proptest.
fn shuffle<T>(v: &mut [T], rng: &mut u64) {
    for i in (1..v.len()).rev() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let j = (*rng % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

fn reorder(n: &Node, rng: &mut u64) -> Node {
    match n {
        Node::S(x) => Node::S(x.clone()),
        Node::Seq(v) => Node::Seq(v.iter().map(|c| reorder(c, rng)).collect()),
        Node::Map(v) => {
            let mut v: Vec<(String, Node)> = v.iter().map(|(k, c)| (k.clone(), reorder(c, rng))).collect();
            shuffle(&mut v, rng);
            Node::Map(v)
        }
    }
}

fn emit(n: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match n {
        Node::S(x) => {
            out.push(' ');
            out.push_str(x);
            out.push('\n');
        }
        Node::Seq(v) => {
            let items: Vec<String> = v
                .iter()
                .map(|c| match c {
                    Node::S(x) => x.clone(),
                    _ => String::new(),
                })
                .collect();
            out.push_str(&format!(" [{}]\n", items.join(", ")));
        }
        Node::Map(v) => {
            out.push('\n');
            for (k, c) in v {
                out.push_str(&format!("{pad}{k}:"));
                emit(c, indent + 2, out);
            }
        }
    }
}

fn to_yaml(n: &Node) -> String {
    let mut out = String::new();
    emit(n, 0, &mut out);
    out.trim_start_matches('\n').to_string()
}

const KEYS: [&str; 4] = [
    "m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=",
    "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU=",
    "Q2hhbmdlIG1lOiB0aGlzIGlzIG5vdCBhIHJlYWwga2s=",
    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
];

/// A valid document with `nf` forwards on distinct ports and `nc` clients.
fn document(nf: usize, nc: usize, forward_all: bool, protos: &[u8]) -> Node {
    let forwards: Vec<(String, Node)> = (0..nf)
        .map(|i| {
            let proto = ["tcp", "udp", "tcp+udp"][usize::from(protos[i % protos.len()] % 3)];
            let port = if i % 4 == 3 {
                format!("{}-{}/{proto}", 30000 + i * 10, 30000 + i * 10 + 5)
            } else {
                format!("{}/{proto}", 20000 + i)
            };
            let to = if i % 3 == 1 && i % 4 != 3 {
                format!("\"192.168.16.{}:{}\"", 10 + i, 8000 + i)
            } else {
                format!("192.168.16.{}", 10 + i)
            };
            (format!("svc{i}"), map(vec![("port", s(port)), ("to", s(to))]))
        })
        .collect();
    let clients: Vec<(String, Node)> = (0..nc)
        .map(|i| {
            (
                format!("dev{i}"),
                map(vec![
                    ("address", s(format!("192.168.17.{}", 10 + i))),
                    ("public_key", s(KEYS[i])),
                ]),
            )
        })
        .collect();
    let mut top = vec![
        ("version", s(1)),
        (
            "hosts",
            map(vec![
                (
                    "gw",
                    map(vec![
                        ("role", s("gateway")),
                        ("public_address", s("203.0.113.10")),
                        ("uplink", s("eth0")),
                        ("management", Node::Seq(vec![s("22/tcp"), s("9100/tcp")])),
                    ]),
                ),
                (
                    "rt",
                    map(vec![
                        ("role", s("router")),
                        (
                            "lans",
                            map(vec![
                                (
                                    "lan",
                                    map(vec![("interface", s("br0")), ("address", s("192.168.16.1/24"))]),
                                ),
                                (
                                    "iot",
                                    map(vec![("interface", s("br1")), ("address", s("192.168.30.1/24"))]),
                                ),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "wan_vpn",
            map(vec![
                ("gateway", s("gw")),
                ("router", s("rt")),
                ("subnet", s("10.0.18.0/30")),
                ("forward_all", s(forward_all)),
            ]),
        ),
        ("forwards", Node::Map(forwards)),
    ];
    if nc > 0 {
        top.push((
            "private_vpn",
            map(vec![
                ("server", s("rt")),
                ("port", s(13131)),
                ("subnet", s("192.168.17.0/24")),
                ("clients", Node::Map(clients)),
            ]),
        ));
    }
    map(top)
}

fn hashes(yaml: &str) -> Vec<(String, String, Vec<u8>)> {
    let (cfg, d) = warren_model::load_str(yaml, "gen.yaml");
    let cfg = cfg.unwrap_or_else(|| panic!("generated YAML is invalid:\n{d}\n{yaml}"));
    let plans = compile(&cfg, &KeyBook::pinned(&cfg)).expect("compiles");
    plans
        .iter()
        .map(|(h, p)| (h.clone(), warren_plan::hash_hex(p), warren_plan::canonical(p)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn key_order_does_not_change_plans(nf in 0usize..12, nc in 0usize..4, fa in any::<bool>(),
                                       protos in proptest::collection::vec(any::<u8>(), 1..4),
                                       seed in 1u64..u64::MAX) {
        let doc = document(nf, nc, fa, &protos);
        let base = hashes(&to_yaml(&doc));
        let mut rng = seed;
        let shuffled = to_yaml(&reorder(&doc, &mut rng));
        let again = hashes(&shuffled);
        prop_assert_eq!(&base, &again, "reordered YAML:\n{}", shuffled);
        // Compiling the same input twice is byte-identical.
        prop_assert_eq!(base, hashes(&shuffled));
    }
}

#[test]
fn a_different_forward_changes_only_the_router_and_gateway_plans_it_touches() {
    let a = hashes(&to_yaml(&document(3, 1, true, &[0])));
    let b = hashes(&to_yaml(&document(4, 1, true, &[0])));
    // forward_all: the gateway does not list forwards, so its plan is unchanged.
    assert_eq!(a[0].0, "gw");
    assert_eq!(
        a[0].1, b[0].1,
        "gateway plan must not change when a forward is added under forward_all"
    );
    assert_ne!(a[1].1, b[1].1, "router plan must change");
    let c = hashes(&to_yaml(&document(3, 1, false, &[0])));
    let d = hashes(&to_yaml(&document(4, 1, false, &[0])));
    assert_ne!(
        c[0].1, d[0].1,
        "with forward_all: false the gateway lists the ports"
    );
}
