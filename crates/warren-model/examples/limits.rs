//! Figures, not a test: how long hostile inputs take to be refused and how
//! much memory the process peaks at. Run with
//! `cargo run --release -p warren-model --example limits`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let mut laughs = String::from("a0: &a0 [lol]\n");
    for i in 1..=9 {
        let refs: Vec<String> = (0..9).map(|_| format!("*a{}", i - 1)).collect();
        laughs.push_str(&format!("a{i}: &a{i} [{}]\n", refs.join(", ")));
    }
    laughs.push_str("version: *a9\n");
    let depth = 100_000;
    let deep = format!("version: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let big = format!("version: 1\n# {}\n", "x".repeat(2 * 1024 * 1024));
    let seed = include_str!("../../../examples/seed/warren.yaml").to_string();
    println!("{:<28} {:>10} {:>14}  outcome", "input", "time", "peak RSS");
    for (name, text) in [
        ("seed example", &seed),
        ("billion laughs (9^9)", &laughs),
        ("[[[...]]] x100000", &deep),
        ("2 MiB file", &big),
    ] {
        let t = Instant::now();
        let mut outcome = String::new();
        for _ in 0..10 {
            let (cfg, d) = warren_model::load_str(text, "input");
            outcome = match cfg {
                Some(_) => "valid".into(),
                None => d.iter().next().map(|d| d.code.to_string()).unwrap_or_default(),
            };
        }
        let per = t.elapsed() / 10;
        println!("{name:<28} {:>8.2?} {:>10} KiB  {outcome}", per, peak_kib());
    }
}
