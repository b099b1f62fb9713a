//! Pure tests of `kernel::render`: a defconf-like configuration with
//! Warren's objects becomes the expected nft table, routes and rules.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod kernel_common;

use kernel_common::{warren_db, DbBuilder, Ifaces, Jumps};
use warren_ros_sim::kernel::{parse_duration, render, Address, Route};

const WG: Ifaces<'static> = Ifaces {
    tunnel: "wg0",
    lan: "bridge",
    wan: "ether1",
};

/// The rule lines of one nft chain, without comments.
fn chain(nft: &str, name: &str) -> Vec<String> {
    let head = format!("  chain {name} {{");
    let mut lines = nft.lines().skip_while(|l| *l != head);
    assert!(lines.next().is_some(), "no chain {name} in\n{nft}");
    lines
        .take_while(|l| *l != "  }")
        .filter(|l| !l.contains(" hook "))
        .map(|l| l.trim().split(" comment \"").next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn warren_on_defconf_becomes_one_nft_table() {
    let k = render(&warren_db(WG, Jumps::Top));
    assert!(k.notes.is_empty(), "{:?}", k.notes);
    assert!(k.nft.starts_with("table ip routeros {\n"));
    assert!(k
        .nft
        .contains("  chain mangle_output {\n    type route hook output priority mangle; policy accept;\n"));
    assert!(k
        .nft
        .contains("  chain nat_dstnat {\n    type nat hook prerouting priority dstnat; policy accept;\n"));
    assert!(k
        .nft
        .contains("  chain nat_srcnat {\n    type nat hook postrouting priority srcnat; policy accept;\n"));
    let guard = "ct mark & 0x40000000 != 0 accept";
    assert_eq!(
        chain(&k.nft, "mangle_prerouting"),
        [guard, "jump mangle-warren-prerouting"]
    );
    assert_eq!(
        chain(&k.nft, "mangle_input"),
        [guard],
        "every mangle base chain skips fasttracked packets"
    );
    assert_eq!(
        chain(&k.nft, "mangle-warren-prerouting"),
        [
            "iifname \"wg0\" ct state { new } ct mark set ct mark & 0xffff0000 | 0x1",
            // passthrough=no: the mangle walk ends here.
            "iifname != \"wg0\" ct mark & 0xffff == 0x1 meta mark set 100 accept",
        ]
    );
    assert_eq!(
        chain(&k.nft, "mangle-warren-output"),
        ["ct mark & 0xffff == 0x1 meta mark set 100 accept"]
    );
    assert_eq!(
        chain(&k.nft, "mangle-warren-forward"),
        ["meta l4proto tcp oifname \"wg0\" tcp flags & (syn) == syn tcp option maxseg size 1381-65535 tcp option maxseg size set 1380"]
    );
    assert_eq!(
        chain(&k.nft, "nat_dstnat"),
        ["iifname \"wg0\" jump nat-warren-dstnat"]
    );
    assert_eq!(
        chain(&k.nft, "nat-warren-dstnat"),
        ["meta l4proto tcp th dport { 8080 } dnat to 192.168.77.10:80"]
    );
    // ipsec-policy=out,none always matches: the matcher disappears.
    assert_eq!(chain(&k.nft, "nat_srcnat"), ["oifname { \"ether1\" } masquerade"]);
    // The dynamic FastTrack counter rule and the in,ipsec accept are not there.
    assert_eq!(
        chain(&k.nft, "filter_forward"),
        [
            guard,
            "jump filter-warren-forward",
            "ct state { established, related } ct mark set ct mark | 0x40000000",
            "ct state { established, related, untracked } accept",
            "ct state { invalid } drop",
            "iifname { \"ether1\" } ct state { new } ct status & (dnat) == 0 drop",
        ]
    );
    assert_eq!(
        chain(&k.nft, "filter_input"),
        [
            "jump filter-warren-input",
            "ct state { established, related, untracked } accept",
            "ct state { invalid } drop",
            "meta l4proto icmp accept",
            "iifname != { \"bridge\" } drop",
        ]
    );
    assert_eq!(
        chain(&k.nft, "filter-warren-forward"),
        [
            "ct status & (dnat) != 0 ct mark & 0xffff == 0x1 accept",
            "iifname \"wg0\" ct state { new } ct status & (dnat) == 0 drop",
        ]
    );
    assert_eq!(
        chain(&k.nft, "filter-warren-input"),
        ["meta l4proto udp th dport { 51821 } iifname \"wg0\" accept"]
    );
    assert!(k
        .nft
        .contains("accept comment \"warren:filter/accept-forwarded\"\n"));
}

#[test]
fn a_jump_below_fasttrack_comes_after_it() {
    let k = render(&warren_db(WG, Jumps::BelowFastTrack));
    let fwd = chain(&k.nft, "filter_forward");
    let ft = fwd
        .iter()
        .position(|l| l.contains("ct mark set ct mark | 0x40000000"));
    let jump = fwd.iter().position(|l| l == "jump filter-warren-forward");
    assert!(ft.is_some() && jump.is_some() && ft < jump, "{fwd:?}");
}

#[test]
fn tables_routes_rules_and_marks() {
    let k = render(&warren_db(WG, Jumps::Top));
    assert_eq!(k.tables.get("warren-100"), Some(&100));
    assert_eq!(k.tables.get("main"), Some(&254));
    assert_eq!(k.conn_marks.get("warren-100"), Some(&1));
    let r = &k.routes[&(100, "0.0.0.0/0".to_string())];
    assert_eq!(
        r.command(),
        [
            "route",
            "replace",
            "0.0.0.0/0",
            "via",
            "10.100.0.1",
            "table",
            "100",
            "proto",
            "99"
        ]
    );
    assert_eq!(
        k.routes.len(),
        1,
        "the dynamic connected route is not configuration"
    );
    let rules: Vec<(u32, String)> = k.rules.iter().map(|(p, a)| (*p, a.join(" "))).collect();
    assert_eq!(
        rules,
        [
            (1000, "fwmark 100 lookup 100".to_string()),
            (1001, "fwmark 100 unreachable".to_string()),
            (20000, "fwmark 100 lookup 100".to_string()),
        ]
    );
    assert!(k.addresses.contains(&Address {
        interface: "wg0".into(),
        address: "10.100.0.2/30".into()
    }));
    assert!(k
        .sysctls
        .contains(&("net.ipv4.ip_forward".to_string(), "1".to_string())));
}

#[test]
fn table_numbers_are_deterministic() {
    let mut b = DbBuilder::default();
    for name in ["zeta", "warren-100", "x-254", "alpha", "y-100", "warren-7"] {
        b.add("routing/table", &[("name", name), ("fib", "")]);
    }
    b.add("routing/table", &[("name", "off-5"), ("disabled", "true")]);
    b.add(
        "ip/route",
        &[
            ("dst-address", "10.0.0.0/8"),
            ("gateway", "wg1"),
            ("routing-table", "alpha"),
        ],
    );
    b.add(
        "ip/route",
        &[
            ("dst-address", "10.1.0.0/16"),
            ("gateway", "10.9.0.1%wg1"),
            ("routing-table", "zeta"),
        ],
    );
    b.add("ip/route", &[("dst-address", "10.2.0.0/16"), ("blackhole", "")]);
    b.add(
        "ip/route",
        &[
            ("dst-address", "10.3.0.0/16"),
            ("gateway", "10.9.0.1"),
            ("routing-table", "nope"),
        ],
    );
    b.add(
        "ip/route",
        &[
            ("dst-address", "10.4.0.0/16"),
            ("gateway", "10.9.0.1"),
            ("disabled", "true"),
        ],
    );
    b.add(
        "routing/rule",
        &[("src-address", "192.168.1.0/24"), ("action", "drop")],
    );
    b.add(
        "routing/rule",
        &[
            ("dst-address", "10.0.0.0/8"),
            ("action", "lookup"),
            ("table", "zeta"),
        ],
    );
    let k = render(&b.db);
    let t: Vec<(&str, u32)> = k.tables.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(
        t,
        [
            ("alpha", 1000),
            ("main", 254),
            ("warren-100", 100),
            ("warren-7", 7),
            ("x-254", 1001),
            ("y-100", 1002),
            ("zeta", 1003)
        ]
    );
    let cmds: Vec<String> = k.routes.values().map(|r| r.command().join(" ")).collect();
    assert_eq!(
        cmds,
        [
            "route replace blackhole 10.2.0.0/16 table 254 proto 99",
            "route replace 10.0.0.0/8 dev wg1 table 1000 proto 99",
            "route replace 10.1.0.0/16 via 10.9.0.1 dev wg1 table 1003 proto 99",
        ]
    );
    assert!(
        k.notes
            .iter()
            .any(|n| n.contains("unknown routing-table \"nope\"")),
        "{:?}",
        k.notes
    );
    let rules: Vec<String> = k
        .rules
        .iter()
        .take(2)
        .map(|(p, a)| format!("{p} {}", a.join(" ")))
        .collect();
    assert_eq!(
        rules,
        [
            "1000 from 192.168.1.0/24 prohibit",
            "1002 to 10.0.0.0/8 lookup 1003"
        ]
    );
    assert_eq!(k.rules.len(), 2 + 6, "one implicit mark rule per table but main");
    let _ = Route::default();
}

#[test]
fn wireguard_rows_become_interfaces_and_peers() {
    let key = |c: char| format!("{}=", c.to_string().repeat(43));
    let mut b = DbBuilder::default();
    b.add(
        "interface/wireguard",
        &[
            ("name", "wg0"),
            ("private-key", &key('a')),
            ("public-key", &key('b')),
            ("listen-port", "51820"),
            ("mtu", "1420"),
            ("disabled", "false"),
            ("running", "true"),
        ],
    );
    b.add(
        "interface/wireguard",
        &[
            ("name", "wg1"),
            ("private-key", &key('c')),
            ("listen-port", "51821"),
            ("mtu", "1340"),
            ("disabled", "true"),
        ],
    );
    b.add(
        "interface/wireguard/peers",
        &[
            ("interface", "wg0"),
            ("public-key", &key('d')),
            ("allowed-address", "0.0.0.0/0"),
            ("endpoint-address", "203.0.113.10"),
            ("endpoint-port", "51820"),
            ("persistent-keepalive", "25s"),
        ],
    );
    b.add(
        "interface/wireguard/peers",
        &[
            ("interface", "wg1"),
            ("public-key", &key('e')),
            ("allowed-address", "10.101.0.2/32,10.101.0.3/32"),
            ("endpoint-port", "0"),
            ("persistent-keepalive", "1m30s"),
        ],
    );
    b.add(
        "interface/wireguard/peers",
        &[
            ("interface", "wg0"),
            ("public-key", &key('f')),
            ("disabled", "true"),
        ],
    );
    b.add(
        "interface/wireguard/peers",
        &[("interface", "ether1"), ("public-key", &key('g'))],
    );
    let k = render(&b.db);
    let wg0 = &k.wireguard["wg0"];
    assert_eq!((wg0.listen_port, wg0.mtu, wg0.up), (Some(51820), 1420, true));
    assert_eq!(wg0.private_key.as_deref(), Some(key('a').as_str()));
    assert_eq!(wg0.peers.len(), 1, "the disabled peer is not configuration");
    let p = &wg0.peers[&key('d')];
    assert_eq!(p.endpoint.as_deref(), Some("203.0.113.10:51820"));
    assert_eq!(
        (p.keepalive, p.allowed_ips.clone()),
        (25, vec!["0.0.0.0/0".to_string()])
    );
    let wg1 = &k.wireguard["wg1"];
    assert_eq!(
        (wg1.mtu, wg1.up),
        (1340, false),
        "a disabled interface exists, down"
    );
    let p = &wg1.peers[&key('e')];
    assert_eq!((p.endpoint.as_deref(), p.keepalive), (None, 90));
    assert_eq!(p.allowed_ips, ["10.101.0.2/32", "10.101.0.3/32"]);
    assert!(
        k.notes.iter().any(|n| n.contains("not a WireGuard interface")),
        "{:?}",
        k.notes
    );
}

#[test]
fn unknown_matchers_and_actions_skip_the_row_and_say_so() {
    let mut b = DbBuilder::default();
    b.add(
        "ip/firewall/filter",
        &[
            ("chain", "forward"),
            ("src-address-list", "bad"),
            ("action", "drop"),
        ],
    );
    b.add(
        "ip/firewall/filter",
        &[("chain", "forward"), ("action", "add-src-to-address-list")],
    );
    b.add(
        "ip/firewall/filter",
        &[
            ("chain", "forward"),
            ("connection-state", "bogus"),
            ("action", "drop"),
        ],
    );
    b.add(
        "ip/firewall/mangle",
        &[
            ("chain", "prerouting"),
            ("action", "mark-routing"),
            ("new-routing-mark", "no-such-table"),
        ],
    );
    b.add(
        "ip/firewall/nat",
        &[("chain", "dstnat"), ("action", "dst-nat"), ("to-ports", "80")],
    );
    b.add(
        "ip/firewall/filter",
        &[
            ("chain", "forward"),
            ("in-interface-list", "NOPE"),
            ("action", "drop"),
        ],
    );
    b.add("ip/firewall/filter", &[("action", "drop")]);
    b.add(
        "ip/firewall/filter",
        &[
            ("chain", "forward"),
            ("protocol", "tcp"),
            ("dst-port", "1000-2000,22"),
            ("tcp-flags", "syn,!ack"),
            ("action", "reject"),
        ],
    );
    let k = render(&b.db);
    assert_eq!(k.notes.len(), 7, "{:#?}", k.notes);
    for why in [
        "*1: unsupported property \"src-address-list\": skipped",
        "*2: unsupported action \"add-src-to-address-list\" in filter: skipped",
        "*3: unsupported connection-state \"bogus\": skipped",
        "*4: unknown new-routing-mark \"no-such-table\": skipped",
        "*5: dst-nat needs to-addresses (got \"\"): skipped",
        "*6: unknown interface list \"NOPE\": skipped",
        "*7: no chain: skipped",
    ] {
        assert!(
            k.notes.iter().any(|n| n.ends_with(why)),
            "{why:?} not in {:#?}",
            k.notes
        );
    }
    assert_eq!(
        chain(&k.nft, "filter_forward")[1..],
        ["meta l4proto tcp th dport { 1000-2000, 22 } tcp flags & (syn | ack) == syn reject"]
    );
}

#[test]
fn empty_lists_never_match_and_soft_jumps_get_an_empty_chain() {
    let mut b = DbBuilder::default();
    b.add("interface/list", &[("name", "EMPTY")]);
    b.add(
        "ip/firewall/filter",
        &[
            ("chain", "input"),
            ("in-interface-list", "EMPTY"),
            ("action", "drop"),
        ],
    );
    b.add(
        "ip/firewall/filter",
        &[
            ("chain", "input"),
            ("in-interface-list", "!EMPTY"),
            ("action", "jump"),
            ("jump-target", "nowhere"),
        ],
    );
    let k = render(&b.db);
    assert!(k.notes.is_empty(), "{:?}", k.notes);
    assert_eq!(chain(&k.nft, "filter_input"), ["jump filter-nowhere"]);
    assert!(k.nft.contains("  chain filter-nowhere {\n  }\n"));
}

#[test]
fn durations() {
    for (s, n) in [
        ("25s", Some(25)),
        ("1m", Some(60)),
        ("1m30s", Some(90)),
        ("0s", Some(0)),
        ("00:00:25", Some(25)),
        ("25", Some(25)),
        ("1h", Some(3600)),
        ("x", None),
        ("5q", None),
        // As the database reads it: trailing digits are seconds.
        ("5m3", Some(303)),
    ] {
        assert_eq!(parse_duration(s), n, "{s}");
    }
}
