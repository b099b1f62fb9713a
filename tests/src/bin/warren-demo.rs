//! The demo (`./demo.sh`): the blog post's network, built by Warren from a
//! git repo, in network namespaces on this machine. It sets up the lab, a
//! bare repo holding `examples/seed`, the controller and two agents, waits
//! for convergence, proves the forward and the nested private VPN with real
//! packets, and prints how to try it. It keeps running until Enter (or end of
//! input), then tears everything down. `warren-demo cleanup` removes what a
//! killed demo left behind.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::io::BufRead;
use std::time::{Duration, Instant};
use warren_tests::world::World;

const ENV: &str = "/run/warren-demo.env";

fn main() {
    if std::env::args().nth(1).as_deref() == Some("cleanup") {
        warren_tests::lab::cleanup_stale();
        let _ = std::fs::remove_file(ENV);
        println!("removed the namespaces of labs whose process is gone");
        return;
    }
    let t0 = Instant::now();
    let step = |s: &str| println!("[{:>5.1}s] {s}", t0.elapsed().as_secs_f64());
    step("building the lab: phone, internet, gateway (203.0.113.10), CGNAT, router, laptop, server");
    let mut w = World::new("demo");
    std::fs::write(
        ENV,
        format!(
            "LAB_NS_PREFIX={}\nLAB_MNT={}\nWARREN_STATE={}\nWARREN_WORK={}\n",
            w.lab.ns_name("phone").trim_end_matches("-phone"),
            w.lab.mount_dir().display(),
            w.dir.join("controller").display(),
            w.work.display()
        ),
    )
    .unwrap();
    step("starting agents on the gateway (listens for the controller) and the router (dials out through CGNAT)");
    w.start_agents();
    step("starting warren-controller serve on the gateway, watching a local bare repo holding examples/seed");
    w.start_controller();
    let c = w.head();
    w.wait_in_sync(&c, Duration::from_secs(60));
    w.wait_tunnel();
    step(&format!(
        "both hosts in sync at commit {} (keys exchanged, plans signed, applied, confirmed)",
        &c[..12]
    ));

    let _laptop = w.lab.listen("laptop", 25565);
    let seen = w
        .lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(3))
        .expect("forward");
    step(&format!(
        "phone -> 203.0.113.10:25565 reaches the laptop's listener, which sees the phone as {seen}"
    ));
    let conf = w.phone_vpn_up();
    let _server = w.lab.listen("server", 8080);
    let mut vpn = Err(String::new());
    for _ in 0..50 {
        vpn = w
            .lab
            .connect("phone", "192.168.16.10", 8080, Duration::from_millis(500));
        if vpn.is_ok() {
            break;
        }
    }
    let vpn = vpn.expect("private VPN");
    step(&format!(
        "phone's private VPN (wg-quick, nested in the WAN VPN) reaches the server, seen as {vpn}"
    ));
    println!(
        "\nThe phone's WireGuard config, as the controller emits it (private key filled in on the phone):\n"
    );
    for l in conf.lines() {
        println!(
            "    {}",
            if l.starts_with("PrivateKey") {
                "PrivateKey = (the phone's own key)"
            } else {
                l
            }
        );
    }
    let status = std::process::Command::new(warren_tests::bin("warren-controller"))
        .args(["status", "--state-dir"])
        .arg(w.dir.join("controller"))
        .output()
        .unwrap();
    println!("\nwarren-controller status:\n");
    for l in String::from_utf8_lossy(&status.stdout).lines() {
        println!("    {l}");
    }
    let bin = warren_tests::bin("warren-controller")
        .parent()
        .unwrap()
        .display()
        .to_string();
    println!(
        r#"
Try it from another terminal (scripts/lab HOST COMMAND runs COMMAND on that lab host):

  Reach the forwarded service from the phone (the laptop's listener answers with your address):
    scripts/lab phone {bin}/wt-net connect 203.0.113.10 25565 2000
  Look at what Warren built:
    scripts/lab router nft list table ip warren
    scripts/lab router ip rule
    scripts/lab gateway wg show
  Change the network with git (a new forward to the server's listener on 8080):
    cd {work}
    sed -i 's|^forwards:|forwards:\n  blog: {{ port: 8080/tcp, to: 192.168.16.10 }}|' warren.yaml
    git commit -qam "blog" && git push -q
    {bin}/warren-controller status --state-dir {state}
    scripts/lab phone {bin}/wt-net connect 203.0.113.10 8080 2000
  Make a mistake (forward the gateway's SSH port 2222) and push: it is refused, nothing changes:
    sed -i 's|port: 25565/tcp|port: 2222/tcp|' warren.yaml && git commit -qam oops && git push -q
    {bin}/warren-controller status --state-dir {state}
  Tamper with the router and watch the drift appear in status:
    scripts/lab router nft flush table ip warren
    {bin}/warren-controller status --state-dir {state}

Press Enter here to tear everything down (Ctrl-C works too; `scripts/lab down` cleans up after it)."#,
        work = w.work.display(),
        state = w.dir.join("controller").display(),
    );
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    step("tearing down");
    drop(w);
    let _ = std::fs::remove_file(ENV);
    step("done: no namespace, process or file of the demo is left");
}
