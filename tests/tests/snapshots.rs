//! Snapshot of every example's plans (reviewer text and canonical JSON).
//! A change in compiler output shows up here as a diff to review.
//! Refresh deliberately with `WARREN_BLESS=1 cargo test -p warren-tests --test snapshots`.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use warren_tests::{compile_example, examples, root};

fn check(path: &Path, got: &str) {
    if std::env::var_os("WARREN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, got).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; create it with WARREN_BLESS=1",
            path.display()
        )
    });
    if want != got {
        let first = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs from the compiler's output (first differing line {}):\n  snapshot: {:?}\n  compiled: {:?}\nreview the change, then refresh with WARREN_BLESS=1",
            path.display(),
            first + 1,
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}

#[test]
fn every_example_matches_its_snapshot() {
    let ex = examples();
    assert!(ex.iter().any(|(n, _)| n == "seed"), "examples/seed must exist");
    assert!(ex.len() >= 2, "at least two examples");
    for (name, dir) in ex {
        let plans = compile_example(&dir);
        assert!(!plans.is_empty(), "{name} compiles to no plan");
        for (host, plan) in plans {
            let base = root().join("tests/snapshots").join(&name);
            check(&base.join(format!("{host}.txt")), &plan.render_text());
            let json = serde_json::to_string_pretty(&plan).expect("json");
            check(&base.join(format!("{host}.json")), &(json + "\n"));
        }
    }
}

/// The acceptance points of the seed example, asserted on the typed plan.
#[test]
fn seed_plan_has_what_the_blog_post_built_by_hand() {
    use warren_plan::nft::{Match, Stmt};
    use warren_plan::{Firewall, PeerKey};
    let plans = compile_example(&root().join("examples/seed"));
    let gw = &plans["gateway"];
    let rt = &plans["router"];
    let gw_text = gw.render_text();
    assert!(
        gw_text.contains("elements = { 2222 }") && gw_text.contains("elements = { 51820 }"),
        "{gw_text}"
    );
    assert!(
        gw_text.contains("iifname \"enp0s6\" dnat ip to 10.0.18.2"),
        "{gw_text}"
    );
    let Firewall::Nftables(t) = &rt.firewall else {
        panic!("router has nft")
    };
    let rules: Vec<_> = t.chains.iter().flat_map(|c| c.rules.iter()).collect();
    assert!(rules
        .iter()
        .any(|r| r.matches == [Match::Iif("wg0".into()), Match::CtNew] && r.stmts == [Stmt::CtMarkSet(10)]));
    assert!(rules
        .iter()
        .any(|r| r.matches == [Match::NotIif("wg0".into()), Match::CtMark(10)]
            && r.stmts == [Stmt::MetaMarkSet(10)]));
    use warren_plan::nft::MapData;
    let map = |n: &str| t.maps.iter().find(|m| m.name == n).expect(n).elements.clone();
    assert_eq!(
        map("fwd_tcp_addr"),
        [(
            warren_plan::nft::Ports {
                first: 25565,
                last: 25565
            },
            MapData::Addr("192.168.16.20".parse().unwrap())
        )]
    );
    assert_eq!(
        map("fwd_tcp_port"),
        [(
            warren_plan::nft::Ports {
                first: 25565,
                last: 25565
            },
            MapData::Port(25565)
        )]
    );
    assert!(map("fwd_udp_addr").is_empty() && map("fwd_tcp_range").is_empty());
    assert!(rules.iter().any(|r| r.stmts == [Stmt::MssSet(1380)]));
    assert!(rules.iter().any(|r| r.stmts == [Stmt::MssSet(1300)]));
    let rt_text = rt.render_text();
    assert!(
        rt_text.contains("456: from all fwmark 0xa lookup 100"),
        "{rt_text}"
    );
    assert!(rt_text.contains("456: from 10.0.18.2 lookup 100"), "{rt_text}");
    assert!(rt_text.contains("default dev wg0 table 100"), "{rt_text}");
    let wan = rt.wireguard.iter().find(|i| i.name == "wg0").expect("wg0");
    assert_eq!(wan.mtu, 1420);
    assert_eq!(wan.peers[0].allowed_ips[0].to_string(), "0.0.0.0/0");
    assert_eq!(wan.peers[0].endpoint.as_deref(), Some("203.0.113.10:51820"));
    assert_eq!(wan.peers[0].persistent_keepalive, Some(25));
    assert!(matches!(wan.peers[0].public_key, PeerKey::Pending { .. }));
    let private = rt.wireguard.iter().find(|i| i.name == "wg1").expect("wg1");
    assert_eq!((private.mtu, private.listen_port), (1340, Some(13131)));
    assert_eq!(private.addresses[0].to_string(), "192.168.17.1/24");
    assert_eq!(gw.wireguard[0].listen_port, Some(51820));
    assert_eq!(
        gw.wireguard[0].peers[0].allowed_ips[0].to_string(),
        "10.0.18.2/32"
    );
    assert_eq!(
        gw.sysctls.get("net.ipv4.ip_forward").map(String::as_str),
        Some("1")
    );
}

/// The seed with both hosts on `netfilter: iptables`, plus a UDP forward, a
/// port range and a forward to another port (the seed has only one TCP
/// forward): the reviewer text shows the iptables-restore lines.
fn seed_on_iptables() -> std::collections::BTreeMap<String, warren_plan::Plan> {
    let file = root().join("examples/seed/warren.yaml");
    let yaml = std::fs::read_to_string(&file)
        .expect("seed")
        .replace("    role: gateway\n", "    role: gateway\n    netfilter: iptables\n")
        .replace("    role: router\n", "    role: router\n    netfilter: iptables\n")
        .replace(
            "forwards:\n",
            "forwards:\n  voice: { port: 9987/udp, to: 192.168.16.10 }\n  games: { port: 27000-27010/tcp+udp, to: 192.168.16.20 }\n  web: { port: 8443/tcp, to: \"192.168.16.10:443\" }\n",
        );
    assert_eq!(yaml.matches("netfilter: iptables").count(), 2, "{yaml}");
    let (cfg, diags) = warren_model::load_str(&yaml, "seed-iptables/warren.yaml");
    let cfg = cfg.unwrap_or_else(|| panic!("seed on iptables is invalid:\n{diags}"));
    warren_compiler::compile(&cfg, &warren_compiler::KeyBook::pinned(&cfg)).expect("compiles")
}

#[test]
fn the_seed_on_iptables_matches_its_snapshot() {
    let base = root().join("tests/snapshots/seed-iptables");
    for (host, plan) in seed_on_iptables() {
        check(&base.join(format!("{host}.txt")), &plan.render_text());
        let json = serde_json::to_string_pretty(&plan).expect("json");
        check(&base.join(format!("{host}.json")), &(json + "\n"));
    }
}

/// What the iptables translation must keep of the seed's nft semantics.
#[test]
fn the_seed_on_iptables_keeps_the_nft_semantics() {
    use warren_plan::Firewall;
    let plans = seed_on_iptables();
    let text = |h: &str| {
        let Firewall::Iptables(r) = &plans[h].firewall else {
            panic!("{h} is on iptables")
        };
        r.render()
    };
    let gw = text("gateway");
    for want in [
        // kept ports go back to PREROUTING (RETURN), everything else to the router
        "-A WARREN-INBOUND -p tcp -i enp0s6 --dport 2222 -m comment --comment \"the gateway's own tcp ports stay here\" -j RETURN",
        "-A WARREN-INBOUND -p udp -i enp0s6 --dport 51820 -m comment --comment \"the gateway's own udp ports stay here\" -j RETURN",
        "-A WARREN-INBOUND -i enp0s6 -m comment --comment \"everything else goes to the router through the WAN VPN\" -j DNAT --to-destination 10.0.18.2",
        "-I PREROUTING 1 -m comment --comment warren -j WARREN-INBOUND",
        "-I FORWARD 1 -m comment --comment warren -j WARREN-CLAMP",
        "--tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535",
    ] {
        assert!(gw.contains(want), "gateway lacks {want:?}:\n{gw}");
    }
    assert!(gw.find("*mangle") < gw.find("*nat"), "{gw}");
    let rt = text("router");
    for want in [
        "-A WARREN-MARK-IN -i wg0 -m conntrack --ctstate NEW -m comment --comment \"connections arriving through the WAN VPN\" -j CONNMARK --set-mark 0xa",
        "-A WARREN-MARK-IN ! -i wg0 -m connmark --mark 0xa -m comment --comment \"their replies route via table 100\" -j MARK --set-mark 0xa",
        "-I OUTPUT 1 -m comment --comment warren -j WARREN-MARK-OUT",
        "-A WARREN-MARK-OUT -m connmark --mark 0xa",
        "-p tcp -i wg0 --dport 25565 -m comment",
        "-j DNAT --to-destination 192.168.16.20:25565",
        "-p tcp -i wg0 --dport 8443 -m comment",
        "-j DNAT --to-destination 192.168.16.10:443",
        "-p udp -i wg0 --dport 9987 -m comment",
        "-j DNAT --to-destination 192.168.16.10:9987",
        "-p udp -i wg0 --dport 27000:27010 -m comment",
        "-p tcp -i wg0 --dport 27000:27010 -m comment",
        "-j DNAT --to-destination 192.168.16.20\n",
        "-j TCPMSS --set-mss 1300",
    ] {
        assert!(rt.contains(want), "router lacks {want:?}:\n{rt}");
    }
    assert!(
        !rt.contains("ACCEPT") && !gw.contains("ACCEPT"),
        "accept is RETURN"
    );
}
