//! Projection of the simulator's configuration onto the Linux network
//! namespace it runs in, so that real packets cross the "router".
//!
//! [`render`] is pure: it turns the configuration database into a
//! [`Kernel`], the Linux state that makes the namespace behave like a
//! RouterOS v7 router with that configuration (for the subset Warren uses).
//! [`sync`] applies a [`Kernel`] to the *current* network namespace,
//! incrementally against the last one it applied (a process-wide memory).
//!
//! What it owns in the namespace, and nothing else:
//! - the nft table `ip routeros` ([`NFT_TABLE`]), replaced in one transaction;
//! - routes and rules tagged `proto 99` / `protocol 99` ([`RT_PROTO`]; Warren's
//!   own agent uses 77: those are never touched);
//! - the WireGuard links it started (`wireguard-go`), and the addresses it
//!   added (an address that was already there is never deleted);
//! - `net.ipv4.ip_forward=1`, `rp_filter` loose.
//!
//! How RouterOS maps onto Linux:
//! - RouterOS's firewall tables are separate: `filter`, `nat` and `mangle`
//!   chains are nft chains `filter_<chain>` (built-in chains, base chains at
//!   the usual hooks and priorities) and `filter-<chain>` (user chains; a
//!   `jump` to a chain that has no rules is a jump to an empty chain, as
//!   RouterOS accepts soft references).
//! - A routing mark is the routing table's number in the packet mark
//!   (`meta mark`), with an implicit `ip rule fwmark N lookup N` per table
//!   (RouterOS looks a marked packet up in its table, then in `main`).
//! - A connection mark is a number in the low 16 bits of the conntrack mark
//!   ([`CONNMARK_MASK`]), from a map of the names in sorted order (1, 2, ...).
//! - `fasttrack-connection` sets [`FASTTRACK_BIT`] in the conntrack mark; the
//!   first rule of every mangle base chain and of `filter forward` skips every
//!   rule for a packet of such a connection (accept), as RouterOS's FastTrack
//!   bypasses the firewall and mangle: a reply that needed `mark-routing`
//!   then takes the `main` table, which is the failure Warren must avoid.
//! - `mark-*` / `change-mss` with `passthrough=no` end that hook's mangle walk
//!   (`accept`), like RouterOS.
//!
//! A row this projection cannot express (an unknown matcher or action, a bad
//! value) is skipped and reported in [`Kernel::notes`], never a panic.

use crate::db::{Db, Row};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The nft table this projection owns (`table ip routeros`).
pub const NFT_TABLE: &str = "routeros";
/// The `proto`/`protocol` tag of the routes and rules it owns.
pub const RT_PROTO: u8 = 99;
/// Conntrack-mark bit meaning "this connection was fasttracked".
pub const FASTTRACK_BIT: u32 = 0x4000_0000;
/// Conntrack-mark bits holding the connection mark's number.
pub const CONNMARK_MASK: u32 = 0xffff;
/// Priority of the first `routing/rule` row (then +2 per row).
pub const RULE_BASE: u32 = 1000;
/// Priority of the first implicit "routing mark -> its table" rule.
pub const MARK_RULE_BASE: u32 = 20000;
/// The first number given to a routing table whose name ends in no number.
pub const TABLE_ALLOC_BASE: u32 = 1000;

/// What the namespace's kernel must hold for a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kernel {
    /// WireGuard interfaces by name.
    pub wireguard: BTreeMap<String, WgIface>,
    /// Addresses (`ip address add <address> dev <interface>`).
    pub addresses: BTreeSet<Address>,
    /// Routing table name -> Linux table number (`main` is 254).
    pub tables: BTreeMap<String, u32>,
    /// Connection mark name -> number (in [`CONNMARK_MASK`]).
    pub conn_marks: BTreeMap<String, u32>,
    /// Routes by (table number, destination).
    pub routes: BTreeMap<(u32, String), Route>,
    /// Policy rules: priority -> `ip rule` arguments after `priority N`
    /// (selector and action), without the `protocol` tag.
    pub rules: BTreeMap<u32, Vec<String>>,
    /// The whole nft table, as `nft -f` text (`table ip routeros { ... }`).
    pub nft: String,
    /// Sysctls (`net.ipv4.ip_forward` style keys) and their values.
    pub sysctls: Vec<(String, String)>,
    /// Rows that were skipped, and why (`<menu> <id>: <reason>`).
    pub notes: Vec<String>,
}

/// One WireGuard interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WgIface {
    /// Interface name.
    pub name: String,
    /// Base64 private key (the simulator generated it).
    pub private_key: Option<String>,
    /// UDP listen port.
    pub listen_port: Option<u16>,
    /// MTU (RouterOS default 1420).
    pub mtu: u32,
    /// Up unless the row is disabled.
    pub up: bool,
    /// Peers by public key.
    pub peers: BTreeMap<String, WgPeer>,
}

/// One WireGuard peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WgPeer {
    /// Base64 public key.
    pub public_key: String,
    /// Allowed IPs (`allowed-address`).
    pub allowed_ips: Vec<String>,
    /// `host:port`, when both are set.
    pub endpoint: Option<String>,
    /// Persistent keepalive in seconds (0 = off).
    pub keepalive: u32,
    /// Base64 preshared key.
    pub preshared_key: Option<String>,
}

/// An address on an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// Interface name.
    pub interface: String,
    /// `A.B.C.D/len`.
    pub address: String,
}

/// A route: `ip route replace <args> table <table> proto 99`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Linux table number.
    pub table: u32,
    /// Destination prefix.
    pub dst: String,
    /// Everything after the destination except table and proto
    /// (`via 10.0.0.1`, `dev wg0`, or `["blackhole"]` as the type).
    pub args: Vec<String>,
}

impl Route {
    /// The `ip route replace` arguments.
    pub fn command(&self) -> Vec<String> {
        let mut a = vec!["route".to_string(), "replace".to_string()];
        if self.args.first().map(String::as_str) == Some("blackhole") {
            a.push("blackhole".into());
            a.push(self.dst.clone());
        } else {
            a.push(self.dst.clone());
            a.extend(self.args.iter().cloned());
        }
        a.extend([
            "table".into(),
            self.table.to_string(),
            "proto".into(),
            RT_PROTO.to_string(),
        ]);
        a
    }
}

const MAIN_TABLE: u32 = 254;
const TAG: &str = "ros-sim kernel";

/// Derive the kernel configuration (pure).
pub fn render(db: &Db) -> Kernel {
    let mut k = Kernel {
        sysctls: vec![
            ("net.ipv4.ip_forward".into(), "1".into()),
            ("net.ipv4.conf.all.rp_filter".into(), "2".into()),
            ("net.ipv4.conf.default.rp_filter".into(), "2".into()),
        ],
        ..Kernel::default()
    };
    render_wireguard(db, &mut k);
    render_addresses(db, &mut k);
    k.tables = tables(db);
    render_routes(db, &mut k);
    render_rules(db, &mut k);
    k.conn_marks = conn_marks(db);
    let mut fw = Firewall {
        tables: &k.tables,
        marks: &k.conn_marks,
        lists: interface_lists(db),
        notes: Vec::new(),
    };
    k.nft = fw.render(db);
    k.notes.append(&mut fw.notes);
    k
}

/// Configuration rows of a menu: enabled and not dynamic.
fn config_rows<'a>(db: &'a Db, menu: &str) -> impl Iterator<Item = &'a Row> {
    db.rows(menu).iter().filter(|r| r.enabled() && !r.is("dynamic"))
}

fn note(notes: &mut Vec<String>, menu: &str, row: &Row, why: &str) {
    notes.push(format!("{menu} {}: {why}", row.id));
}

fn render_wireguard(db: &Db, k: &mut Kernel) {
    const M: &str = "interface/wireguard";
    for row in db.rows(M).iter().filter(|r| !r.is("dynamic")) {
        let Some(name) = row.get("name").filter(|n| valid_ifname(n)) else {
            note(&mut k.notes, M, row, "no valid name: skipped");
            continue;
        };
        let listen_port = match row.get("listen-port").filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    note(&mut k.notes, M, row, &format!("bad listen-port {p:?}: ignored"));
                    None
                }
            },
        };
        let mtu = match row.get("mtu").filter(|m| !m.is_empty()) {
            None => 1420,
            Some(m) => m.parse::<u32>().unwrap_or_else(|_| {
                note(&mut k.notes, M, row, &format!("bad mtu {m:?}: using 1420"));
                1420
            }),
        };
        let private_key = row
            .get("private-key")
            .filter(|k| valid_key(k))
            .map(str::to_string);
        if private_key.is_none() {
            note(&mut k.notes, M, row, "no valid private-key: interface has no key");
        }
        k.wireguard.insert(
            name.to_string(),
            WgIface {
                name: name.to_string(),
                private_key,
                listen_port,
                mtu,
                up: row.enabled(),
                peers: BTreeMap::new(),
            },
        );
    }
    const P: &str = "interface/wireguard/peers";
    for row in config_rows(db, P) {
        let Some(iface) = row.get("interface").and_then(|i| k.wireguard.get_mut(i)) else {
            note(
                &mut k.notes,
                P,
                row,
                "interface is not a WireGuard interface: skipped",
            );
            continue;
        };
        let Some(key) = row.get("public-key").filter(|k| valid_key(k)) else {
            note(&mut k.notes, P, row, "no valid public-key: skipped");
            continue;
        };
        let allowed_ips: Vec<String> = row
            .get("allowed-address")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = allowed_ips
            .iter()
            .find(|a| !a.chars().all(|c| c.is_ascii_hexdigit() || ".:/".contains(c)))
        {
            note(
                &mut k.notes,
                P,
                row,
                &format!("bad allowed-address {bad:?}: skipped"),
            );
            continue;
        }
        let host = row.get("endpoint-address").unwrap_or("");
        let port = row.get("endpoint-port").unwrap_or("");
        let endpoint = match (host, port.parse::<u16>()) {
            ("", _) | (_, Ok(0)) | (_, Err(_)) => None,
            (h, Ok(p)) if h.contains(':') => Some(format!("[{h}]:{p}")),
            (h, Ok(p)) => Some(format!("{h}:{p}")),
        };
        let keepalive = match row.get("persistent-keepalive").filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => parse_duration(v).unwrap_or_else(|| {
                note(
                    &mut k.notes,
                    P,
                    row,
                    &format!("bad persistent-keepalive {v:?}: off"),
                );
                0
            }),
        };
        let preshared_key = row
            .get("preshared-key")
            .filter(|k| valid_key(k))
            .map(str::to_string);
        iface.peers.insert(
            key.to_string(),
            WgPeer {
                public_key: key.to_string(),
                allowed_ips,
                endpoint,
                keepalive,
                preshared_key,
            },
        );
    }
}

fn render_addresses(db: &Db, k: &mut Kernel) {
    const M: &str = "ip/address";
    for row in config_rows(db, M) {
        let (Some(address), Some(interface)) = (row.get("address"), row.get("interface")) else {
            note(&mut k.notes, M, row, "address or interface missing: skipped");
            continue;
        };
        let address = if address.contains('/') {
            address.to_string()
        } else {
            format!("{address}/32")
        };
        if !is_cidr(&address) || !valid_ifname(interface) {
            note(&mut k.notes, M, row, "bad address or interface: skipped");
            continue;
        }
        k.addresses.insert(Address {
            interface: interface.to_string(),
            address,
        });
    }
}

/// Routing table name -> number: a trailing number of the name, else
/// allocated from [`TABLE_ALLOC_BASE`] upward in name order.
fn tables(db: &Db) -> BTreeMap<String, u32> {
    let reserved = |n: u32| n == 0 || (253..=255).contains(&n);
    let names: BTreeSet<&str> = config_rows(db, "routing/table")
        .filter_map(|r| r.get("name"))
        .filter(|n| *n != "main")
        .collect();
    let mut out = BTreeMap::from([("main".to_string(), MAIN_TABLE)]);
    let mut used: BTreeSet<u32> = BTreeSet::from([MAIN_TABLE]);
    let mut rest = Vec::new();
    for name in names {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let n = name[name.len() - digits..].parse::<u32>().ok();
        match n {
            Some(n) if digits > 0 && !reserved(n) && n < 0xffff_0000 && used.insert(n) => {
                out.insert(name.to_string(), n);
            }
            _ => rest.push(name),
        }
    }
    let mut next = TABLE_ALLOC_BASE;
    for name in rest {
        while used.contains(&next) {
            next += 1;
        }
        used.insert(next);
        out.insert(name.to_string(), next);
    }
    out
}

fn render_routes(db: &Db, k: &mut Kernel) {
    const M: &str = "ip/route";
    for row in config_rows(db, M) {
        let table_name = row.get("routing-table").unwrap_or("main");
        let Some(&table) = k.tables.get(table_name) else {
            note(
                &mut k.notes,
                M,
                row,
                &format!("unknown routing-table {table_name:?}: skipped"),
            );
            continue;
        };
        let dst = row.get("dst-address").unwrap_or("0.0.0.0/0").to_string();
        if !is_cidr(&dst) {
            note(&mut k.notes, M, row, &format!("bad dst-address {dst:?}: skipped"));
            continue;
        }
        let args = if row.get("blackhole").is_some() {
            vec!["blackhole".to_string()]
        } else {
            let gw = row.get("gateway").unwrap_or("");
            let mut gws = gw.split(',').filter(|g| !g.is_empty());
            let Some(first) = gws.next() else {
                note(&mut k.notes, M, row, "no gateway: skipped");
                continue;
            };
            if gws.next().is_some() {
                note(
                    &mut k.notes,
                    M,
                    row,
                    "several gateways: only the first is projected",
                );
            }
            let (ip, dev) = match first.split_once('%') {
                Some((ip, dev)) => (Some(ip), Some(dev)),
                None if first.parse::<Ipv4Addr>().is_ok() => (Some(first), None),
                None => (None, Some(first)),
            };
            let mut a = Vec::new();
            if let Some(ip) = ip {
                if ip.parse::<Ipv4Addr>().is_err() {
                    note(&mut k.notes, M, row, &format!("bad gateway {first:?}: skipped"));
                    continue;
                }
                a.extend(["via".to_string(), ip.to_string()]);
            }
            if let Some(dev) = dev {
                if !valid_ifname(dev) {
                    note(&mut k.notes, M, row, &format!("bad gateway {first:?}: skipped"));
                    continue;
                }
                a.extend(["dev".to_string(), dev.to_string()]);
            }
            a
        };
        let key = (table, dst.clone());
        if k.routes.contains_key(&key) {
            note(
                &mut k.notes,
                M,
                row,
                "a route to the same destination in the same table comes first: skipped",
            );
            continue;
        }
        k.routes.insert(key, Route { table, dst, args });
    }
}

fn render_rules(db: &Db, k: &mut Kernel) {
    const M: &str = "routing/rule";
    for (i, row) in config_rows(db, M).enumerate() {
        let prio = RULE_BASE + 2 * u32::try_from(i).unwrap_or(0);
        let mut sel = Vec::new();
        let mut bad = None;
        for (key, word) in [("src-address", "from"), ("dst-address", "to")] {
            if let Some(v) = row.get(key).filter(|v| !v.is_empty()) {
                if is_cidr(v) {
                    sel.extend([word.to_string(), v.to_string()]);
                } else {
                    bad = Some(format!("bad {key} {v:?}"));
                }
            }
        }
        if let Some(v) = row.get("routing-mark").filter(|v| !v.is_empty()) {
            match k.tables.get(v) {
                Some(n) => sel.extend(["fwmark".to_string(), n.to_string()]),
                None => bad = Some(format!("unknown routing-mark {v:?}")),
            }
        }
        if let Some(v) = row.get("interface").filter(|v| !v.is_empty()) {
            if valid_ifname(v) {
                sel.extend(["iif".to_string(), v.to_string()]);
            } else {
                bad = Some(format!("bad interface {v:?}"));
            }
        }
        let table = row.get("table").unwrap_or("main");
        let action = row.get("action").unwrap_or("lookup");
        let lookup = k
            .tables
            .get(table)
            .map(|n| vec!["lookup".to_string(), n.to_string()]);
        let (first, second): (Option<Vec<String>>, Option<Vec<String>>) = match action {
            "lookup" => (lookup, None),
            "lookup-only-in-table" => (lookup, Some(vec!["unreachable".to_string()])),
            "drop" => (Some(vec!["prohibit".to_string()]), None),
            "unreachable" => (Some(vec!["unreachable".to_string()]), None),
            other => {
                bad = Some(format!("unknown action {other:?}"));
                (None, None)
            }
        };
        if let Some(why) = bad {
            note(&mut k.notes, M, row, &format!("{why}: skipped"));
            continue;
        }
        let Some(first) = first else {
            note(&mut k.notes, M, row, &format!("unknown table {table:?}: skipped"));
            continue;
        };
        k.rules.insert(prio, [sel.clone(), first].concat());
        if let Some(second) = second {
            k.rules.insert(prio + 1, [sel, second].concat());
        }
    }
    for (i, n) in k.tables.values().filter(|n| **n != MAIN_TABLE).enumerate() {
        let prio = MARK_RULE_BASE + u32::try_from(i).unwrap_or(0);
        k.rules.insert(
            prio,
            vec!["fwmark".into(), n.to_string(), "lookup".into(), n.to_string()],
        );
    }
}

const FW_MENUS: [(&str, &str); 3] = [
    ("mangle", "ip/firewall/mangle"),
    ("nat", "ip/firewall/nat"),
    ("filter", "ip/firewall/filter"),
];

/// Connection mark names (set or matched anywhere) -> 1, 2, ... in name order.
fn conn_marks(db: &Db) -> BTreeMap<String, u32> {
    let mut names = BTreeSet::new();
    for (_, menu) in FW_MENUS {
        for row in config_rows(db, menu) {
            for key in ["new-connection-mark", "connection-mark"] {
                if let Some(v) = row.get(key) {
                    let v = v.strip_prefix('!').unwrap_or(v);
                    if !v.is_empty() && v != "no-mark" {
                        names.insert(v.to_string());
                    }
                }
            }
        }
    }
    names.into_iter().zip(1..=CONNMARK_MASK).collect()
}

fn interface_lists(db: &Db) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in config_rows(db, "interface/list") {
        if let Some(n) = row.get("name") {
            out.entry(n.to_string()).or_default();
        }
    }
    for row in config_rows(db, "interface/list/member") {
        if let (Some(l), Some(i)) = (row.get("list"), row.get("interface")) {
            out.entry(l.to_string()).or_default().insert(i.to_string());
        }
    }
    out
}

/// A built-in chain: (RouterOS table, chain, nft type, hook, priority).
const BASE_CHAINS: [(&str, &str, &str, &str, &str); 10] = [
    ("mangle", "prerouting", "filter", "prerouting", "mangle"),
    ("mangle", "input", "filter", "input", "mangle"),
    ("mangle", "forward", "filter", "forward", "mangle"),
    ("mangle", "output", "route", "output", "mangle"),
    ("mangle", "postrouting", "filter", "postrouting", "mangle"),
    ("nat", "dstnat", "nat", "prerouting", "dstnat"),
    ("nat", "srcnat", "nat", "postrouting", "srcnat"),
    ("filter", "input", "filter", "input", "filter"),
    ("filter", "forward", "filter", "forward", "filter"),
    ("filter", "output", "filter", "output", "filter"),
];

fn is_base(t: &str, chain: &str) -> bool {
    BASE_CHAINS.iter().any(|b| b.0 == t && b.1 == chain)
}

/// The nft name of a RouterOS chain: `filter_forward` (built-in) or
/// `filter-warren-forward` (user chain).
pub fn nft_chain(t: &str, chain: &str) -> String {
    if is_base(t, chain) {
        format!("{t}_{chain}")
    } else {
        format!("{t}-{chain}")
    }
}

struct Firewall<'a> {
    tables: &'a BTreeMap<String, u32>,
    marks: &'a BTreeMap<String, u32>,
    lists: BTreeMap<String, BTreeSet<String>>,
    notes: Vec<String>,
}

/// Properties of a firewall row that are not matchers.
const NOT_MATCHERS: [&str; 22] = [
    "chain",
    "action",
    "comment",
    "disabled",
    "dynamic",
    "invalid",
    "bytes",
    "packets",
    "log",
    "log-prefix",
    "passthrough",
    "jump-target",
    "new-connection-mark",
    "new-routing-mark",
    "new-mss",
    "to-addresses",
    "to-ports",
    "reject-with",
    "hw-offload",
    "place-before",
    ".id",
    ".nextid",
];

/// Matchers handled, in the order they are written.
const MATCHERS: [&str; 18] = [
    "protocol",
    "src-address",
    "dst-address",
    "src-port",
    "dst-port",
    "in-interface",
    "out-interface",
    "in-interface-list",
    "out-interface-list",
    "connection-state",
    "connection-nat-state",
    "connection-mark",
    "routing-mark",
    "tcp-flags",
    "tcp-mss",
    "dst-address-type",
    "src-address-type",
    "ipsec-policy",
];

/// A translated matcher: an nft expression, or a constant.
enum Match {
    Expr(String),
    Always,
    Never,
}

impl Firewall<'_> {
    fn render(&mut self, db: &Db) -> String {
        // chain nft name -> rules; base chains first (fixed order), then user chains.
        let mut base: Vec<(String, String, Vec<String>)> = Vec::new();
        let mut user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, chain, ty, hook, prio) in BASE_CHAINS {
            let head = format!("type {ty} hook {hook} priority {prio}; policy accept;");
            let mut rules = Vec::new();
            if t == "mangle" || (t == "filter" && chain == "forward") {
                rules.push(format!(
                    "ct mark & {FASTTRACK_BIT:#010x} != 0 accept comment \"fasttracked: skips {t}\""
                ));
            }
            base.push((nft_chain(t, chain), head, rules));
        }
        for (t, menu) in FW_MENUS {
            for row in config_rows(db, menu) {
                let Some(chain) = row.get("chain").filter(|c| !c.is_empty()) else {
                    note(&mut self.notes, menu, row, "no chain: skipped");
                    continue;
                };
                if !is_base(t, chain) && !valid_chain(chain) {
                    note(
                        &mut self.notes,
                        menu,
                        row,
                        &format!("unsupported chain name {chain:?}: skipped"),
                    );
                    continue;
                }
                let rule = match self.rule(t, chain, row) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(why) => {
                        note(&mut self.notes, menu, row, &format!("{why}: skipped"));
                        continue;
                    }
                };
                if let Some(target) = row
                    .get("jump-target")
                    .filter(|_| row.get("action") == Some("jump"))
                {
                    user.entry(nft_chain(t, target)).or_default();
                }
                let name = nft_chain(t, chain);
                let rule = match row.get("comment") {
                    Some(c) if !c.contains(['"', '\\', '\n']) && c.len() <= 120 => {
                        format!("{rule} comment \"{c}\"")
                    }
                    _ => rule,
                };
                match base.iter_mut().find(|b| b.0 == name) {
                    Some(b) => b.2.push(rule),
                    None => user.entry(name).or_default().push(rule),
                }
            }
        }
        let mut out = format!("table ip {NFT_TABLE} {{\n");
        let chains = base
            .into_iter()
            .map(|(n, h, r)| (n, Some(h), r))
            .chain(user.into_iter().map(|(n, r)| (n, None, r)));
        for (name, head, rules) in chains {
            let _ = writeln!(out, "  chain {name} {{");
            if let Some(h) = head {
                let _ = writeln!(out, "    {h}");
            }
            for r in rules {
                let _ = writeln!(out, "    {r}");
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// One row as an nft rule; `Ok(None)` when it can never match.
    fn rule(&self, t: &str, chain: &str, row: &Row) -> std::result::Result<Option<String>, String> {
        if let Some(k) = row
            .props
            .keys()
            .find(|k| !MATCHERS.contains(&k.as_str()) && !NOT_MATCHERS.contains(&k.as_str()))
        {
            return Err(format!("unsupported property {k:?}"));
        }
        let mut parts: Vec<String> = Vec::new();
        let proto = row.get("protocol").filter(|p| !p.starts_with('!'));
        let need_proto = |parts: &mut Vec<String>, tcp_only: bool| match (proto, tcp_only) {
            (Some("tcp"), _) => {}
            (Some("udp"), false) => {}
            (_, true) => parts.push("meta l4proto tcp".into()),
            (_, false) => parts.push("meta l4proto { tcp, udp }".into()),
        };
        for key in MATCHERS {
            let Some(raw) = row.get(key).filter(|v| !v.is_empty()) else {
                continue;
            };
            let (neg, v) = match raw.strip_prefix('!') {
                Some(v) => (true, v),
                None => (false, raw),
            };
            let op = if neg { "!= " } else { "" };
            let m = match key {
                "protocol" => {
                    word(v, key)?;
                    Match::Expr(format!("meta l4proto {op}{v}"))
                }
                "src-address" | "dst-address" => {
                    if !v.chars().all(|c| c.is_ascii_digit() || "./-".contains(c)) {
                        return Err(format!("bad {key} {v:?}"));
                    }
                    let f = if key == "src-address" { "saddr" } else { "daddr" };
                    Match::Expr(format!("ip {f} {op}{v}"))
                }
                "src-port" | "dst-port" => {
                    if !v.chars().all(|c| c.is_ascii_digit() || ",-".contains(c))
                        || v.split(',').any(str::is_empty)
                    {
                        return Err(format!("bad {key} {v:?}"));
                    }
                    need_proto(&mut parts, false);
                    let f = if key == "src-port" { "sport" } else { "dport" };
                    Match::Expr(format!("th {f} {op}{{ {} }}", v.replace(',', ", ")))
                }
                "in-interface" | "out-interface" => {
                    if !valid_ifname(v) {
                        return Err(format!("bad {key} {v:?}"));
                    }
                    let f = if key == "in-interface" {
                        "iifname"
                    } else {
                        "oifname"
                    };
                    Match::Expr(format!("{f} {op}\"{v}\""))
                }
                "in-interface-list" | "out-interface-list" => {
                    let f = if key == "in-interface-list" {
                        "iifname"
                    } else {
                        "oifname"
                    };
                    let members: Option<&BTreeSet<String>> = self.lists.get(v);
                    match (v, members) {
                        ("all", _) => const_match(true, neg),
                        ("none", _) => const_match(false, neg),
                        (_, None) => return Err(format!("unknown interface list {v:?}")),
                        (_, Some(m)) if m.is_empty() => const_match(false, neg),
                        (_, Some(m)) => {
                            if let Some(bad) = m.iter().find(|i| !valid_ifname(i)) {
                                return Err(format!("bad interface {bad:?} in list {v:?}"));
                            }
                            let set: Vec<String> = m.iter().map(|i| format!("\"{i}\"")).collect();
                            Match::Expr(format!("{f} {op}{{ {} }}", set.join(", ")))
                        }
                    }
                }
                "connection-state" => {
                    let states: Vec<&str> = v.split(',').collect();
                    if let Some(s) = states
                        .iter()
                        .find(|s| !["established", "related", "new", "invalid", "untracked"].contains(s))
                    {
                        return Err(format!("unsupported connection-state {s:?}"));
                    }
                    Match::Expr(format!("ct state {op}{{ {} }}", states.join(", ")))
                }
                "connection-nat-state" => {
                    let mut bits = Vec::new();
                    for s in v.split(',') {
                        match s {
                            "dstnat" => bits.push("dnat"),
                            "srcnat" => bits.push("snat"),
                            other => return Err(format!("unsupported connection-nat-state {other:?}")),
                        }
                    }
                    let cmp = if neg { "==" } else { "!=" };
                    Match::Expr(format!("ct status & ({}) {cmp} 0", bits.join(" | ")))
                }
                "connection-mark" => {
                    let n = if v == "no-mark" {
                        0
                    } else {
                        *self
                            .marks
                            .get(v)
                            .ok_or_else(|| format!("unknown connection-mark {v:?}"))?
                    };
                    let cmp = if neg { "!=" } else { "==" };
                    Match::Expr(format!("ct mark & {CONNMARK_MASK:#06x} {cmp} {n:#x}"))
                }
                "routing-mark" => {
                    let n = self
                        .tables
                        .get(v)
                        .ok_or_else(|| format!("unknown routing-mark {v:?}"))?;
                    let cmp = if neg { "!=" } else { "==" };
                    Match::Expr(format!("meta mark {cmp} {n}"))
                }
                "tcp-flags" => {
                    const FLAGS: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"];
                    let mut mask = Vec::new();
                    let mut set = Vec::new();
                    // Each flag may be negated on its own: `syn,!ack`.
                    for f in raw.split(',') {
                        let (n, f) = match f.strip_prefix('!') {
                            Some(f) => (true, f),
                            None => (false, f),
                        };
                        if !FLAGS.contains(&f) {
                            return Err(format!("unsupported tcp flag {f:?}"));
                        }
                        mask.push(f);
                        if !n {
                            set.push(f);
                        }
                    }
                    need_proto(&mut parts, true);
                    let value = if set.is_empty() {
                        "0x0".to_string()
                    } else {
                        set.join(" | ")
                    };
                    Match::Expr(format!("tcp flags & ({}) == {value}", mask.join(" | ")))
                }
                "tcp-mss" => {
                    if !v.chars().all(|c| c.is_ascii_digit() || c == '-') || v.is_empty() {
                        return Err(format!("bad tcp-mss {v:?}"));
                    }
                    need_proto(&mut parts, true);
                    Match::Expr(format!("tcp option maxseg size {op}{v}"))
                }
                "dst-address-type" | "src-address-type" => {
                    if ![
                        "local",
                        "unicast",
                        "broadcast",
                        "multicast",
                        "blackhole",
                        "prohibit",
                        "unreachable",
                    ]
                    .contains(&v)
                    {
                        return Err(format!("unsupported {key} {v:?}"));
                    }
                    let f = if key == "dst-address-type" {
                        "daddr"
                    } else {
                        "saddr"
                    };
                    Match::Expr(format!("fib {f} type {op}{v}"))
                }
                "ipsec-policy" => match v {
                    "in,ipsec" | "out,ipsec" => const_match(false, neg),
                    "in,none" | "out,none" => const_match(true, neg),
                    _ => return Err(format!("unsupported ipsec-policy {v:?}")),
                },
                _ => return Err(format!("unsupported matcher {key:?}")),
            };
            match m {
                Match::Expr(e) => parts.push(e),
                Match::Always => {}
                Match::Never => return Ok(None),
            }
        }
        let passthrough = row.get("passthrough") != Some("false");
        let stop = |s: String| if passthrough { s } else { format!("{s} accept") };
        let action = row.get("action").unwrap_or("accept");
        let stmt = match action {
            "accept" | "drop" | "return" => action.to_string(),
            "reject" => "reject".to_string(),
            "jump" => {
                let target = row.get("jump-target").unwrap_or("");
                if !valid_chain(target) || is_base(t, target) {
                    return Err(format!("unsupported jump-target {target:?}"));
                }
                if target == chain {
                    return Err("jump to its own chain".to_string());
                }
                format!("jump {}", nft_chain(t, target))
            }
            "passthrough" | "log" => "counter".to_string(),
            "mark-connection" if t == "mangle" => {
                let name = row.get("new-connection-mark").unwrap_or("");
                let n = if name == "no-mark" {
                    0
                } else {
                    *self
                        .marks
                        .get(name)
                        .ok_or_else(|| format!("bad new-connection-mark {name:?}"))?
                };
                stop(format!("ct mark set ct mark & {:#010x} | {n:#x}", !CONNMARK_MASK))
            }
            "mark-routing" if t == "mangle" => {
                let name = row.get("new-routing-mark").unwrap_or("");
                let n = self
                    .tables
                    .get(name)
                    .ok_or_else(|| format!("unknown new-routing-mark {name:?}"))?;
                stop(format!("meta mark set {n}"))
            }
            "change-mss" if t == "mangle" => {
                let mss = row.get("new-mss").unwrap_or("");
                let value = match mss {
                    "clamp-to-pmtu" => "rt mtu".to_string(),
                    m if m.parse::<u16>().is_ok() => m.to_string(),
                    m => return Err(format!("bad new-mss {m:?}")),
                };
                need_proto(&mut parts, true);
                stop(format!("tcp option maxseg size set {value}"))
            }
            "dst-nat" | "src-nat" if t == "nat" => {
                let addrs = row.get("to-addresses").unwrap_or("");
                let ports = row.get("to-ports").unwrap_or("");
                if addrs.is_empty() || !addrs.chars().all(|c| c.is_ascii_digit() || ".-".contains(c)) {
                    return Err(format!("{action} needs to-addresses (got {addrs:?})"));
                }
                let verb = if action == "dst-nat" { "dnat" } else { "snat" };
                if ports.is_empty() {
                    format!("{verb} to {addrs}")
                } else {
                    nat_ports(ports)?;
                    need_proto(&mut parts, false);
                    format!("{verb} to {addrs}:{ports}")
                }
            }
            "masquerade" if t == "nat" => match row.get("to-ports").filter(|p| !p.is_empty()) {
                None => "masquerade".to_string(),
                Some(p) => {
                    nat_ports(p)?;
                    need_proto(&mut parts, false);
                    format!("masquerade to :{p}")
                }
            },
            "fasttrack-connection" if t == "filter" => {
                format!("ct mark set ct mark | {FASTTRACK_BIT:#010x}")
            }
            other => return Err(format!("unsupported action {other:?} in {t}")),
        };
        parts.push(stmt);
        Ok(Some(parts.join(" ")))
    }
}

fn const_match(value: bool, neg: bool) -> Match {
    if value != neg {
        Match::Always
    } else {
        Match::Never
    }
}

fn word(v: &str, key: &str) -> std::result::Result<(), String> {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(format!("bad {key} {v:?}"))
    }
}

fn nat_ports(p: &str) -> std::result::Result<(), String> {
    let ok = p.split('-').count() <= 2 && p.split('-').all(|x| x.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!("bad to-ports {p:?}"))
    }
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty() && n.len() <= 15 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn valid_chain(n: &str) -> bool {
    n.len() <= 100
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn valid_key(k: &str) -> bool {
    k.len() == 44 && k.ends_with('=') && k.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
}

fn is_cidr(s: &str) -> bool {
    let (ip, len) = s.split_once('/').unwrap_or((s, "32"));
    ip.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

/// A RouterOS duration (`25s`, `1m`, `1m30s`, `1h`, `00:00:25`, `25`) in
/// seconds, as the database parses it ([`crate::router::parse_duration`]),
/// within `u32`.
pub fn parse_duration(v: &str) -> Option<u32> {
    crate::router::parse_duration(v).and_then(|n| u32::try_from(n).ok())
}

// ---------------------------------------------------------------- sync

/// What was applied to this process's namespace.
#[derive(Debug, Default)]
struct Applied {
    kernel: Kernel,
    /// Addresses this process added (only those are ever deleted).
    own_addrs: BTreeSet<Address>,
    /// Notes already printed.
    reported: BTreeSet<String>,
}

static APPLIED: Mutex<Option<Applied>> = Mutex::new(None);

/// Render `db` and apply it to the current network namespace, changing only
/// what differs from the last call (the first call also clears routes and
/// rules tagged [`RT_PROTO`] left by an earlier process). Rows it cannot
/// project, and routes the kernel refuses (an unreachable gateway, a
/// destination held by a route that is not ours), are printed to stderr and
/// retried on the next call.
pub fn sync(db: &Db) -> Result<()> {
    let want = render(db);
    let mut guard = APPLIED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = guard.is_none();
    let cur = guard.get_or_insert_with(Applied::default);
    if first {
        forget_stale()?;
    }
    let result = apply(cur, &want);
    for n in &want.notes {
        if cur.reported.insert(n.clone()) {
            eprintln!("{TAG}: {n}");
        }
    }
    result
}

/// Forget what was applied (the next [`sync`] starts over, as a new process).
pub fn reset() {
    let mut guard = APPLIED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *guard = None;
}

fn forget_stale() -> Result<()> {
    let proto = RT_PROTO.to_string();
    run("ip", &["route", "flush", "table", "all", "proto", &proto], None)?;
    let rules: serde_json::Value = serde_json::from_str(&run("ip", &["-N", "-j", "rule", "show"], None)?)
        .context("ip -j rule show: bad JSON")?;
    for r in rules.as_array().into_iter().flatten() {
        if r["protocol"].as_str() == Some(proto.as_str())
            || r["protocol"].as_u64() == Some(u64::from(RT_PROTO))
        {
            if let Some(p) = r["priority"].as_u64() {
                run(
                    "ip",
                    &["rule", "del", "priority", &p.to_string(), "protocol", &proto],
                    None,
                )?;
            }
        }
    }
    Ok(())
}

fn apply(cur: &mut Applied, want: &Kernel) -> Result<()> {
    if cur.kernel.sysctls != want.sysctls {
        for (k, v) in &want.sysctls {
            let path = Path::new("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&path, format!("{v}\n"))
                .with_context(|| format!("write {v} to {}", path.display()))?;
        }
        cur.kernel.sysctls = want.sysctls.clone();
    }
    apply_wireguard(cur, want)?;
    apply_addresses(cur, want)?;
    apply_routes(cur, want)?;
    apply_rules(cur, want)?;
    if cur.kernel.nft != want.nft {
        let script = format!(
            "table ip {NFT_TABLE} {{}}\ndelete table ip {NFT_TABLE}\n{}",
            want.nft
        );
        run("nft", &["-f", "-"], Some(&script))?;
        cur.kernel.nft = want.nft.clone();
    }
    cur.kernel.tables = want.tables.clone();
    cur.kernel.conn_marks = want.conn_marks.clone();
    Ok(())
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists() || run("ip", &["link", "show", "dev", name], None).is_ok()
}

fn apply_wireguard(cur: &mut Applied, want: &Kernel) -> Result<()> {
    let gone: Vec<String> = cur
        .kernel
        .wireguard
        .keys()
        .filter(|n| !want.wireguard.contains_key(*n))
        .cloned()
        .collect();
    for name in gone {
        if link_exists(&name) {
            run("ip", &["link", "del", "dev", &name], None)?;
        }
        cur.kernel.wireguard.remove(&name);
        cur.kernel.addresses.retain(|a| a.interface != name);
        cur.own_addrs.retain(|a| a.interface != name);
    }
    for (name, w) in &want.wireguard {
        if cur.kernel.wireguard.get(name) == Some(w) {
            continue;
        }
        // Until this interface is fully configured, remember it as unknown.
        let prev = cur.kernel.wireguard.remove(name);
        let fresh = prev.is_none();
        let prev = prev.unwrap_or_default();
        if fresh && !link_exists(name) {
            start_wireguard_go(name)?;
        }
        if fresh || prev.private_key != w.private_key || prev.listen_port != w.listen_port {
            let port = w.listen_port.unwrap_or(0).to_string();
            match &w.private_key {
                Some(key) => run(
                    "wg",
                    &["set", name, "listen-port", &port, "private-key", "/dev/stdin"],
                    Some(&format!("{key}\n")),
                )?,
                None => run("wg", &["set", name, "listen-port", &port], None)?,
            };
        }
        if fresh || prev.mtu != w.mtu {
            run(
                "ip",
                &["link", "set", "dev", name, "mtu", &w.mtu.to_string()],
                None,
            )?;
        }
        if fresh || prev.up != w.up {
            let state = if w.up { "up" } else { "down" };
            run("ip", &["link", "set", "dev", name, state], None)?;
        }
        let live: BTreeSet<String> = run("wg", &["show", name, "peers"], None)?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        for key in live.iter().filter(|k| !w.peers.contains_key(*k)) {
            run("wg", &["set", name, "peer", key, "remove"], None)?;
        }
        for (key, p) in &w.peers {
            let old = prev.peers.get(key);
            if old == Some(p) && live.contains(key) {
                continue;
            }
            // `wg set` cannot clear an endpoint or a preshared key: re-add the peer.
            let lost = old.is_some_and(|o| {
                (o.endpoint.is_some() && p.endpoint.is_none())
                    || (o.preshared_key.is_some() && p.preshared_key.is_none())
            });
            if lost && live.contains(key) {
                run("wg", &["set", name, "peer", key, "remove"], None)?;
            }
            let ips = p.allowed_ips.join(",");
            let ka = p.keepalive.to_string();
            let mut args = vec![
                "set",
                name,
                "peer",
                key,
                "allowed-ips",
                &ips,
                "persistent-keepalive",
                &ka,
            ];
            if let Some(e) = &p.endpoint {
                args.extend(["endpoint", e.as_str()]);
            }
            match &p.preshared_key {
                Some(psk) => {
                    args.extend(["preshared-key", "/dev/stdin"]);
                    run("wg", &args, Some(&format!("{psk}\n")))?;
                }
                None => {
                    run("wg", &args, None)?;
                }
            }
        }
        cur.kernel.wireguard.insert(name.clone(), w.clone());
    }
    Ok(())
}

fn start_wireguard_go(name: &str) -> Result<()> {
    let status = Command::new("wireguard-go")
        .arg(name)
        .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run `wireguard-go {name}` (is wireguard-go installed?)"))?;
    if !status.success() {
        bail!("`wireguard-go {name}` failed: {status}");
    }
    let sock = Path::new("/var/run/wireguard").join(format!("{name}.sock"));
    let t = Instant::now();
    while !sock.exists() {
        if t.elapsed() > Duration::from_secs(5) {
            bail!(
                "`wireguard-go {name}` started but {} did not appear",
                sock.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn addresses_on(dev: &str) -> Result<BTreeSet<String>> {
    let out = run("ip", &["-j", "-4", "address", "show", "dev", dev], None)?;
    let v: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("ip -j address show dev {dev}: bad JSON"))?;
    let mut set = BTreeSet::new();
    for a in v[0]["addr_info"].as_array().into_iter().flatten() {
        if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
            set.insert(format!("{ip}/{len}"));
        }
    }
    Ok(set)
}

fn apply_addresses(cur: &mut Applied, want: &Kernel) -> Result<()> {
    let gone: Vec<Address> = cur
        .kernel
        .addresses
        .difference(&want.addresses)
        .cloned()
        .collect();
    for a in gone {
        if cur.own_addrs.remove(&a) && link_exists(&a.interface) {
            run("ip", &["address", "del", &a.address, "dev", &a.interface], None)?;
        }
        cur.kernel.addresses.remove(&a);
    }
    let new: Vec<Address> = want
        .addresses
        .difference(&cur.kernel.addresses)
        .cloned()
        .collect();
    for a in new {
        if !link_exists(&a.interface) {
            let n = format!(
                "address {} on {}: no such interface here (not projected)",
                a.address, a.interface
            );
            if cur.reported.insert(n.clone()) {
                eprintln!("{TAG}: {n}");
            }
            continue;
        }
        if !addresses_on(&a.interface)?.contains(&a.address) {
            run("ip", &["address", "add", &a.address, "dev", &a.interface], None)?;
            cur.own_addrs.insert(a.clone());
        }
        cur.kernel.addresses.insert(a);
    }
    Ok(())
}

fn apply_routes(cur: &mut Applied, want: &Kernel) -> Result<()> {
    let proto = RT_PROTO.to_string();
    let stale: Vec<(u32, String)> = cur
        .kernel
        .routes
        .iter()
        .filter(|(k, r)| want.routes.get(*k) != Some(*r))
        .map(|(k, _)| k.clone())
        .collect();
    for key in stale {
        let (table, dst) = &key;
        let t = table.to_string();
        // Gone already when its interface went away.
        let _ = run("ip", &["route", "del", dst, "table", &t, "proto", &proto], None);
        cur.kernel.routes.remove(&key);
    }
    for (key, r) in &want.routes {
        if cur.kernel.routes.contains_key(key) {
            continue;
        }
        let t = r.table.to_string();
        let live = match run(
            "ip",
            &["-N", "-j", "route", "show", "table", &t, "exact", &r.dst],
            None,
        ) {
            Ok(l) => l,
            // A table with no routes yet.
            Err(e) if format!("{e:#}").contains("table does not exist") => "[]".to_string(),
            Err(e) => return Err(e),
        };
        let live: serde_json::Value = serde_json::from_str(&live).unwrap_or_default();
        let foreign = live.as_array().into_iter().flatten().any(|e| {
            e["protocol"].as_str() != Some(proto.as_str())
                && e["protocol"].as_u64() != Some(u64::from(RT_PROTO))
        });
        let msg = if foreign {
            Some(format!(
                "route {} table {t}: a route that is not ours holds it (not projected)",
                r.dst
            ))
        } else {
            let args = r.command();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("ip", &args, None)
                .err()
                .map(|e| format!("{e:#} (retried on the next change)"))
        };
        match msg {
            Some(n) => eprintln!("{TAG}: {n}"),
            None => {
                cur.kernel.routes.insert(key.clone(), r.clone());
            }
        }
    }
    Ok(())
}

fn apply_rules(cur: &mut Applied, want: &Kernel) -> Result<()> {
    let proto = RT_PROTO.to_string();
    let stale: Vec<u32> = cur
        .kernel
        .rules
        .iter()
        .filter(|(p, r)| want.rules.get(*p) != Some(*r))
        .map(|(p, _)| *p)
        .collect();
    for p in stale {
        run(
            "ip",
            &["rule", "del", "priority", &p.to_string(), "protocol", &proto],
            None,
        )?;
        cur.kernel.rules.remove(&p);
    }
    for (p, r) in &want.rules {
        if cur.kernel.rules.contains_key(p) {
            continue;
        }
        let prio = p.to_string();
        let mut args = vec!["rule", "add", "priority", &prio];
        args.extend(r.iter().map(String::as_str));
        args.extend(["protocol", &proto]);
        run("ip", &args, None)?;
        cur.kernel.rules.insert(*p, r.clone());
    }
    Ok(())
}

/// Run a command to completion; its stdout, or an error naming the command
/// and its stderr.
fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let shown = format!("`{prog} {}`", args.join(" "));
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("{shown}: writing its stdin"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("{shown}: waiting"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
