//! Fixtures shared by the kernel projection tests: a RouterOS defconf-like
//! configuration and Warren's objects on top of it, as the simulator's
//! database would hold them (written from the facts in docs/routeros.md).

#![allow(dead_code)]

use std::collections::BTreeMap;
use warren_ros_sim::db::{Db, Row};

/// Builds a database row by row, allocating `.id`s as RouterOS does.
#[derive(Debug, Default)]
pub struct DbBuilder {
    pub db: Db,
    next: u32,
}

impl DbBuilder {
    pub fn add(&mut self, menu: &str, kv: &[(&str, &str)]) -> &mut Self {
        self.next += 1;
        let props: BTreeMap<String, String> =
            kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.db.menus.entry(menu.to_string()).or_default().push(Row {
            id: format!("*{:X}", self.next),
            props,
        });
        self
    }
}

/// Interface names the fixture uses.
#[derive(Clone, Copy, Debug)]
pub struct Ifaces<'a> {
    /// The WAN tunnel (wg0 on a real Warren router; a veth in the FastTrack test).
    pub tunnel: &'a str,
    /// The LAN interface (defconf's `bridge`).
    pub lan: &'a str,
    /// The ISP uplink (defconf's `ether1`).
    pub wan: &'a str,
}

/// Which order Warren's jumps have relative to defconf's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jumps {
    /// Warren's jumps at the top of each built-in chain (what Warren places).
    Top,
    /// The filter forward jump moved below defconf's FastTrack rule.
    BelowFastTrack,
}

const FILTER: &str = "ip/firewall/filter";
const NAT: &str = "ip/firewall/nat";
const MANGLE: &str = "ip/firewall/mangle";

fn defconf_filter(b: &mut DbBuilder, chain: &str) {
    if chain == "input" {
        b.add(
            FILTER,
            &[
                ("chain", "input"),
                ("action", "accept"),
                ("connection-state", "established,related,untracked"),
                ("comment", "defconf: accept established,related,untracked"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "input"),
                ("action", "drop"),
                ("connection-state", "invalid"),
                ("comment", "defconf: drop invalid"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "input"),
                ("action", "accept"),
                ("protocol", "icmp"),
                ("comment", "defconf: accept ICMP"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "input"),
                ("action", "drop"),
                ("in-interface-list", "!LAN"),
                ("comment", "defconf: drop all not coming from LAN"),
            ],
        );
    } else {
        b.add(
            FILTER,
            &[
                ("chain", "forward"),
                ("action", "accept"),
                ("ipsec-policy", "in,ipsec"),
                ("comment", "defconf: accept in ipsec policy"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "forward"),
                ("action", "fasttrack-connection"),
                ("connection-state", "established,related"),
                ("hw-offload", "true"),
                ("comment", "defconf: fasttrack"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "forward"),
                ("action", "accept"),
                ("connection-state", "established,related,untracked"),
                ("comment", "defconf: accept established,related, untracked"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "forward"),
                ("action", "drop"),
                ("connection-state", "invalid"),
                ("comment", "defconf: drop invalid"),
            ],
        );
        b.add(
            FILTER,
            &[
                ("chain", "forward"),
                ("action", "drop"),
                ("connection-state", "new"),
                ("connection-nat-state", "!dstnat"),
                ("in-interface-list", "WAN"),
                ("comment", "defconf: drop all from WAN not DSTNATed"),
            ],
        );
    }
}

/// Defconf (lists, firewall with FastTrack and the input drop, masquerade,
/// the dynamic FastTrack counter rule) plus Warren's objects for one WAN
/// tunnel with a port forward `tcp 8080 -> 192.168.77.10:80`.
pub fn warren_db(i: Ifaces<'_>, jumps: Jumps) -> Db {
    let mut b = DbBuilder::default();
    b.add("interface/list", &[("name", "LAN"), ("comment", "defconf")]);
    b.add("interface/list", &[("name", "WAN"), ("comment", "defconf")]);
    b.add(
        "interface/list/member",
        &[("list", "LAN"), ("interface", i.lan), ("comment", "defconf")],
    );
    b.add(
        "interface/list/member",
        &[("list", "WAN"), ("interface", i.wan), ("comment", "defconf")],
    );
    b.add(
        "ip/address",
        &[
            ("address", "192.168.77.1/24"),
            ("interface", i.lan),
            ("comment", "defconf"),
        ],
    );
    b.add(
        "ip/address",
        &[
            ("address", "10.100.0.2/30"),
            ("interface", i.tunnel),
            ("comment", "warren:addr/wg0"),
        ],
    );
    b.add(
        "routing/table",
        &[("name", "main"), ("fib", ""), ("dynamic", "true")],
    );
    b.add(
        "routing/table",
        &[
            ("name", "warren-100"),
            ("fib", ""),
            ("comment", "warren:table/warren-100"),
        ],
    );
    b.add(
        "ip/route",
        &[
            ("dst-address", "0.0.0.0/0"),
            ("gateway", "10.100.0.1"),
            ("routing-table", "warren-100"),
            ("comment", "warren:route/warren-100/0.0.0.0/0"),
        ],
    );
    b.add(
        "ip/route",
        &[
            ("dst-address", "192.168.77.0/24"),
            ("gateway", i.lan),
            ("routing-table", "main"),
            ("dynamic", "true"),
            ("connect", "true"),
        ],
    );
    b.add(
        "routing/rule",
        &[
            ("routing-mark", "warren-100"),
            ("action", "lookup-only-in-table"),
            ("table", "warren-100"),
            ("comment", "warren:rule/wan"),
        ],
    );

    // Warren's chains (created first, as the agent does).
    let t = i.tunnel;
    let not_t = format!("!{t}");
    b.add(
        MANGLE,
        &[
            ("chain", "warren-prerouting"),
            ("in-interface", t),
            ("connection-state", "new"),
            ("action", "mark-connection"),
            ("new-connection-mark", "warren-100"),
            ("passthrough", "true"),
            ("comment", "warren:mangle/mark-conn"),
        ],
    );
    b.add(
        MANGLE,
        &[
            ("chain", "warren-prerouting"),
            ("in-interface", &not_t),
            ("connection-mark", "warren-100"),
            ("action", "mark-routing"),
            ("new-routing-mark", "warren-100"),
            ("passthrough", "false"),
            ("comment", "warren:mangle/route-replies"),
        ],
    );
    b.add(
        MANGLE,
        &[
            ("chain", "warren-output"),
            ("connection-mark", "warren-100"),
            ("action", "mark-routing"),
            ("new-routing-mark", "warren-100"),
            ("passthrough", "false"),
            ("comment", "warren:mangle/route-local-replies"),
        ],
    );
    b.add(
        MANGLE,
        &[
            ("chain", "warren-forward"),
            ("protocol", "tcp"),
            ("tcp-flags", "syn"),
            ("out-interface", t),
            ("tcp-mss", "1381-65535"),
            ("action", "change-mss"),
            ("new-mss", "1380"),
            ("passthrough", "true"),
            ("comment", "warren:mangle/mss-out"),
        ],
    );
    b.add(
        NAT,
        &[
            ("chain", "warren-dstnat"),
            ("protocol", "tcp"),
            ("dst-port", "8080"),
            ("action", "dst-nat"),
            ("to-addresses", "192.168.77.10"),
            ("to-ports", "80"),
            ("comment", "warren:nat/tcp-8080"),
        ],
    );
    b.add(
        FILTER,
        &[
            ("chain", "warren-forward"),
            ("connection-mark", "warren-100"),
            ("connection-nat-state", "dstnat"),
            ("action", "accept"),
            ("comment", "warren:filter/accept-forwarded"),
        ],
    );
    b.add(
        FILTER,
        &[
            ("chain", "warren-forward"),
            ("in-interface", t),
            ("connection-state", "new"),
            ("connection-nat-state", "!dstnat"),
            ("action", "drop"),
            ("comment", "warren:filter/drop-unforwarded"),
        ],
    );
    b.add(
        FILTER,
        &[
            ("chain", "warren-input"),
            ("in-interface", t),
            ("protocol", "udp"),
            ("dst-port", "51821"),
            ("action", "accept"),
            ("comment", "warren:filter/vpn-port"),
        ],
    );

    // Built-in chains: Warren's jumps at the top, then defconf.
    b.add(
        MANGLE,
        &[
            ("chain", "prerouting"),
            ("action", "jump"),
            ("jump-target", "warren-prerouting"),
            ("comment", "warren:jump/mangle-prerouting"),
        ],
    );
    b.add(
        MANGLE,
        &[
            ("chain", "output"),
            ("action", "jump"),
            ("jump-target", "warren-output"),
            ("comment", "warren:jump/mangle-output"),
        ],
    );
    b.add(
        MANGLE,
        &[
            ("chain", "forward"),
            ("action", "jump"),
            ("jump-target", "warren-forward"),
            ("comment", "warren:jump/mangle-forward"),
        ],
    );
    b.add(
        NAT,
        &[
            ("chain", "dstnat"),
            ("in-interface", t),
            ("action", "jump"),
            ("jump-target", "warren-dstnat"),
            ("comment", "warren:jump/nat-dstnat"),
        ],
    );
    b.add(
        NAT,
        &[
            ("chain", "srcnat"),
            ("action", "masquerade"),
            ("out-interface-list", "WAN"),
            ("ipsec-policy", "out,none"),
            ("comment", "defconf: masquerade"),
        ],
    );
    b.add(
        FILTER,
        &[
            ("chain", "input"),
            ("action", "jump"),
            ("jump-target", "warren-input"),
            ("comment", "warren:jump/filter-input"),
        ],
    );
    defconf_filter(&mut b, "input");
    let jump_fwd: &[(&str, &str)] = &[
        ("chain", "forward"),
        ("action", "jump"),
        ("jump-target", "warren-forward"),
        ("comment", "warren:jump/filter-forward"),
    ];
    if jumps == Jumps::Top {
        b.add(FILTER, jump_fwd);
    }
    b.add(
        FILTER,
        &[
            ("chain", "forward"),
            ("action", "passthrough"),
            ("dynamic", "true"),
            ("comment", "special dummy rule to show fasttrack counters"),
        ],
    );
    defconf_filter(&mut b, "forward");
    if jumps == Jumps::BelowFastTrack {
        b.add(FILTER, jump_fwd);
    }
    b.db
}
