//! Figures, not a test: push-to-applied latency, and throughput through the
//! WAN VPN alone and through the nested private VPN. In the namespace lab,
//! the controller (on the gateway) and two agents run the seed; each round
//! changes a forward, pushes, and measures until `status` shows both hosts
//! in sync at the new commit. Prints every round, the median and the p95,
//! then 32 MiB transfers from the phone. `./test.sh` runs it after the tests.
//!
//! `cargo run --release -p warren-tests --bin bench-push -- [ROUNDS]` (root;
//! build the workspace binaries first: `cargo build --release --workspace`).

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};
use warren_tests::world::World;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut w = World::new("bench");
    w.start_agents();
    w.start_controller();
    let c = w.head();
    w.wait_in_sync(&c, Duration::from_secs(60));
    w.wait_tunnel();
    let mut times = Vec::new();
    for i in 0..rounds {
        let port = 30000 + i;
        let t = Instant::now();
        let commit = w.push(
            |y| {
                let mut out = String::new();
                for l in y.lines() {
                    if l.starts_with("  bench:") {
                        continue;
                    }
                    out.push_str(l);
                    out.push('\n');
                    if l == "forwards:" {
                        out.push_str(&format!("  bench: {{ port: {port}/tcp, to: 192.168.16.10 }}\n"));
                    }
                }
                out
            },
            "bench",
        );
        let pushed = t.elapsed();
        w.wait_in_sync(&commit, Duration::from_secs(30));
        let d = t.elapsed();
        println!(
            "round {i:>3}: push {:>6.1} ms, push-to-applied {:>7.1} ms",
            pushed.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
        times.push(d);
    }
    let mut ordered = times.clone();
    ordered.sort();
    let times = ordered;
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "push-to-applied over {} pushes: median {:.0} ms, p95 {:.0} ms, max {:.0} ms (includes git push and the status poll, 100 ms steps)",
        times.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.95).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3)
    );
    // Throughput: the phone to the laptop through a forward (WAN VPN), and to
    // the server through the private VPN nested in it.
    w.phone_vpn_up();
    let bytes: u64 = 32 << 20;
    let _wan = w.lab.sink("laptop", 25565);
    let _lan = w.lab.sink("server", 9001);
    // Warm the private VPN (first handshake) before timing it.
    let _ = w.lab.transfer("phone", "192.168.16.10", 9001, 1 << 16);
    let mbit = |d: Duration| bytes as f64 * 8.0 / d.as_secs_f64() / 1e6;
    let wan = w.lab.transfer("phone", "203.0.113.10", 25565, bytes);
    let nested = w.lab.transfer("phone", "192.168.16.10", 9001, bytes);
    println!(
        "throughput (32 MiB, userspace wireguard-go, 2 cores): WAN VPN {:.0} Mbit/s; nested private VPN {:.0} Mbit/s",
        mbit(wan),
        mbit(nested)
    );
}
