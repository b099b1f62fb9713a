//! A typed subset of nftables: exactly the vocabulary Warren's plans use.
//!
//! Plans carry this AST, not rule strings, so that the agent can render it to
//! `nft -j` JSON for one atomic transaction and compare it with what it reads
//! back. [`NftTable::render`] gives the `nft list table` text reviewers read.

use crate::net::Ipv4Cidr;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The name of Warren's own nftables table (`table ip warren`): the only
/// table an agent creates, reads back, replaces or deletes.
pub const TABLE: &str = "warren";

/// A transport protocol whose ports Warren matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    /// `tcp`
    Tcp,
    /// `udp`
    Udp,
}

impl L4 {
    /// The protocol's nft name (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// Inclusive port interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ports {
    /// The first port of the interval.
    pub first: u16,
    /// The last port of the interval (`first` for a single port).
    pub last: u16,
}

impl Ports {
    /// `80` or `1000-1010`, as nft writes set elements.
    pub fn render(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }
}

/// The netfilter hook a base chain is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// `prerouting`: every packet arriving, before the routing decision.
    Prerouting,
    /// `input`: packets for the host itself.
    Input,
    /// `forward`: packets the host routes.
    Forward,
    /// `output`: packets the host sends.
    Output,
    /// `postrouting`: every packet leaving.
    Postrouting,
}

impl Hook {
    /// The hook's nft name, the same in the text and the JSON syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// The type of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    /// `filter`: match and mark.
    Filter,
    /// `nat`: address translation (first packet of a connection only).
    Nat,
    /// `route`: output packets are rerouted if a mark changed.
    Route,
}

impl ChainType {
    /// The chain type's nft name, the same in the text and the JSON syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// A set of ports (`type inet_service; flags interval`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSet {
    /// The set's name, referenced as `@name` by rules.
    pub name: String,
    /// Sorted, non-overlapping intervals (nft refuses overlapping ones).
    pub elements: Vec<Ports>,
}

/// What a DNAT map gives for a port: the target address, or the target port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapData {
    /// The DNAT target address (in a [`MapType::Addr`] map).
    Addr(Ipv4Addr),
    /// The DNAT target port (in a [`MapType::Port`] map).
    Port(u16),
}

/// What a DNAT map's values are; its keys are always ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapType {
    /// `type inet_service : ipv4_addr`
    Addr,
    /// `type inet_service : inet_service`
    Port,
}

impl MapType {
    /// The nft type of the map's values (`ipv4_addr`, `inet_service`), the
    /// same in the text and the JSON syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            MapType::Addr => "ipv4_addr",
            MapType::Port => "inet_service",
        }
    }
}

/// A DNAT map from public ports (`flags interval`) to target addresses or
/// ports. Single forwards use an address map and a port map looked up with
/// the same key (nft 1.0.6's JSON cannot express a concatenated map value);
/// ranges use an address map alone and keep their port numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnatMap {
    /// The map's name, referenced as `@name` by rules.
    pub name: String,
    /// What the values are.
    pub data: MapType,
    /// Public port interval → value, sorted by interval.
    pub elements: Vec<(Ports, MapData)>,
}

/// One condition of a rule; a rule's matches must all hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// `iifname "IF"`
    Iif(String),
    /// `iifname != "IF"`
    NotIif(String),
    /// `oifname "IF"`
    Oif(String),
    /// `ct state new`
    CtNew,
    /// `ct mark MARK`
    CtMark(u32),
    /// `<l4> dport @set`
    DportIn(L4, String),
    /// `tcp flags syn / syn,rst`
    TcpSyn,
    /// `tcp option maxseg size > N`
    MssAbove(u16),
    /// `ip daddr ADDR` or `ip daddr PREFIX`
    DaddrIs(Ipv4Cidr),
    /// `ip saddr ADDR` or `ip saddr PREFIX`
    SaddrIs(Ipv4Cidr),
    /// `<l4> dport PORTS` (one port or an interval)
    Dport(L4, Ports),
    /// `<l4> sport PORTS` (one port or an interval)
    Sport(L4, Ports),
    /// `ct state established,related`
    CtEstablished,
    /// `ct status dnat`: the connection was destination-NATed
    CtDnat,
}

/// What a rule does to the packets it matches, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stmt {
    /// `accept` (leave this chain; later chains still see the packet)
    Accept,
    /// `dnat ip to ADDR`
    Dnat(Ipv4Addr),
    /// `dnat ip to <l4> dport map @addr_map [: <l4> dport map @port_map]`
    DnatMap {
        /// The protocol whose destination port is the lookup key.
        l4: L4,
        /// The map giving the target address.
        addr_map: String,
        /// The map giving the target port, looked up with the same key;
        /// `None` keeps the packet's port.
        port_map: Option<String>,
    },
    /// `ct mark set MARK`
    CtMarkSet(u32),
    /// `meta mark set MARK` (the fwmark policy rules match)
    MetaMarkSet(u32),
    /// `tcp option maxseg size set N`
    MssSet(u16),
    /// `counter`
    Counter,
    /// `return` (leave this chain; in an iptables owned chain, go back to
    /// the built-in chain that jumped to it)
    Return,
    /// `dnat ip to ADDR:PORT`
    DnatTo {
        /// The target address.
        addr: Ipv4Addr,
        /// The target port.
        port: u16,
    },
}

/// One rule: matches, then statements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// What to do with a matching packet.
    pub stmts: Vec<Stmt>,
    /// Why the rule exists; also stored as the nft rule comment.
    pub comment: String,
}

/// A base chain (policy `accept`, see [`NftTable`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// The chain's name within the table.
    pub name: String,
    /// The chain type.
    pub kind: ChainType,
    /// Where it is attached.
    pub hook: Hook,
    /// Its priority at that hook (lower runs first; -150 is `mangle`, -100
    /// `dstnat`).
    pub priority: i32,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// Warren's own table (`table ip warren`). Policies are always `accept`:
/// Warren's chains never drop; the host's own firewall stays in charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftTable {
    /// The table's name: always [`TABLE`] in compiled plans.
    pub name: String,
    /// Named port sets.
    pub sets: Vec<PortSet>,
    /// Named DNAT maps.
    pub maps: Vec<DnatMap>,
    /// Base chains, in the order they are created.
    pub chains: Vec<Chain>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn priority_name(kind: ChainType, hook: Hook, p: i32) -> String {
    match (kind, hook, p) {
        (_, _, -150) => "mangle".into(),
        (ChainType::Nat, Hook::Prerouting, -100) => "dstnat".into(),
        (ChainType::Nat, Hook::Postrouting, 100) => "srcnat".into(),
        (_, _, 0) => "filter".into(),
        _ => p.to_string(),
    }
}

impl Match {
    /// The match in `nft -f` syntax.
    pub fn render(&self) -> String {
        match self {
            Match::Iif(i) => format!("iifname {}", quote(i)),
            Match::NotIif(i) => format!("iifname != {}", quote(i)),
            Match::Oif(i) => format!("oifname {}", quote(i)),
            Match::CtNew => "ct state new".into(),
            Match::CtMark(m) => format!("ct mark {m:#010x}"),
            Match::DportIn(l4, set) => format!("{} dport @{set}", l4.as_str()),
            Match::TcpSyn => "tcp flags syn / syn,rst".into(),
            Match::MssAbove(n) => format!("tcp option maxseg size > {n}"),
            Match::DaddrIs(c) => format!("ip daddr {}", addr_text(c)),
            Match::SaddrIs(c) => format!("ip saddr {}", addr_text(c)),
            Match::Dport(l4, p) => format!("{} dport {}", l4.as_str(), p.render()),
            Match::Sport(l4, p) => format!("{} sport {}", l4.as_str(), p.render()),
            Match::CtEstablished => "ct state established,related".into(),
            Match::CtDnat => "ct status dnat".into(),
        }
    }
}

/// `1.2.3.4` for a host, `1.2.3.0/24` for a prefix.
fn addr_text(c: &Ipv4Cidr) -> String {
    if c.len == 32 {
        c.addr.to_string()
    } else {
        c.to_string()
    }
}

impl Stmt {
    /// The statement in `nft -f` syntax.
    pub fn render(&self) -> String {
        match self {
            Stmt::Accept => "accept".into(),
            Stmt::Dnat(a) => format!("dnat ip to {a}"),
            Stmt::DnatMap {
                l4,
                addr_map,
                port_map,
            } => {
                let l = l4.as_str();
                match port_map {
                    Some(p) => format!("dnat ip to {l} dport map @{addr_map} : {l} dport map @{p}"),
                    None => format!("dnat ip to {l} dport map @{addr_map}"),
                }
            }
            Stmt::CtMarkSet(m) => format!("ct mark set {m:#010x}"),
            Stmt::MetaMarkSet(m) => format!("meta mark set {m:#010x}"),
            Stmt::MssSet(n) => format!("tcp option maxseg size set {n}"),
            Stmt::Counter => "counter".into(),
            Stmt::Return => "return".into(),
            Stmt::DnatTo { addr, port } => format!("dnat ip to {addr}:{port}"),
        }
    }
}

impl Rule {
    /// The rule in `nft -f` syntax, with its comment.
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = self.matches.iter().map(Match::render).collect();
        parts.extend(self.stmts.iter().map(Stmt::render));
        if !self.comment.is_empty() {
            parts.push(format!("comment {}", quote(&self.comment)));
        }
        parts.join(" ")
    }
}

impl MapData {
    /// The value in `nft -f` syntax.
    pub fn render(&self) -> String {
        match self {
            MapData::Addr(a) => a.to_string(),
            MapData::Port(p) => p.to_string(),
        }
    }
}

impl NftTable {
    /// The table in `nft -f` syntax (also what `nft list table` prints, modulo
    /// counters and handles).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "table ip {} {{", self.name);
        for s in &self.sets {
            let elements = s.elements.iter().map(Ports::render).collect();
            render_collection(&mut o, "set", &s.name, "inet_service", elements);
        }
        for m in &self.maps {
            let elements = m
                .elements
                .iter()
                .map(|(k, d)| format!("{} : {}", k.render(), d.render()))
                .collect();
            let kind = format!("inet_service : {}", m.data.as_str());
            render_collection(&mut o, "map", &m.name, &kind, elements);
        }
        for c in &self.chains {
            render_chain(&mut o, c);
        }
        o.push_str("}\n");
        o
    }
}

/// A `set` or `map` block (always `flags interval`); `elements` only when
/// there are some.
fn render_collection(o: &mut String, what: &str, name: &str, kind: &str, elements: Vec<String>) {
    let _ = writeln!(o, "\t{what} {name} {{");
    let _ = writeln!(o, "\t\ttype {kind}");
    let _ = writeln!(o, "\t\tflags interval");
    if !elements.is_empty() {
        let _ = writeln!(o, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(o, "\t}}");
}

fn render_chain(o: &mut String, c: &Chain) {
    let _ = writeln!(o, "\tchain {} {{", c.name);
    let _ = writeln!(
        o,
        "\t\ttype {} hook {} priority {}; policy accept;",
        c.kind.as_str(),
        c.hook.as_str(),
        priority_name(c.kind, c.hook, c.priority)
    );
    for r in &c.rules {
        let _ = writeln!(o, "\t\t{}", r.render());
    }
    let _ = writeln!(o, "\t}}");
}

// ---------------------------------------------------------------------------
// libnftables JSON (`nft -j -f -`)

use serde_json::{json, Value};

fn ports_json(p: &Ports) -> Value {
    if p.first == p.last {
        json!(p.first)
    } else {
        json!({ "range": [p.first, p.last] })
    }
}

fn dport(l4: L4) -> Value {
    json!({ "payload": { "protocol": l4.as_str(), "field": "dport" } })
}

fn mss() -> Value {
    json!({ "tcp option": { "name": "maxseg", "field": "size" } })
}

fn is(left: Value, right: Value) -> Value {
    json!({ "match": { "op": "==", "left": left, "right": right } })
}

impl Match {
    /// The match as a libnftables JSON expression.
    pub fn to_json(&self) -> Value {
        let meta = |k: &str| json!({ "meta": { "key": k } });
        match self {
            Match::Iif(i) => is(meta("iifname"), json!(i)),
            Match::NotIif(i) => json!({ "match": { "op": "!=", "left": meta("iifname"), "right": i } }),
            Match::Oif(i) => is(meta("oifname"), json!(i)),
            Match::CtNew => {
                json!({ "match": { "op": "in", "left": { "ct": { "key": "state" } }, "right": "new" } })
            }
            Match::CtMark(m) => is(json!({ "ct": { "key": "mark" } }), json!(m)),
            Match::DportIn(l4, set) => is(dport(*l4), json!(format!("@{set}"))),
            Match::TcpSyn => is(
                json!({ "&": [{ "payload": { "protocol": "tcp", "field": "flags" } }, ["syn", "rst"]] }),
                json!("syn"),
            ),
            Match::MssAbove(n) => json!({ "match": { "op": ">", "left": mss(), "right": n } }),
            Match::DaddrIs(c) => is(
                json!({ "payload": { "protocol": "ip", "field": "daddr" } }),
                addr_json(c),
            ),
            Match::SaddrIs(c) => is(
                json!({ "payload": { "protocol": "ip", "field": "saddr" } }),
                addr_json(c),
            ),
            Match::Dport(l4, p) => is(dport(*l4), ports_json(p)),
            Match::Sport(l4, p) => is(
                json!({ "payload": { "protocol": l4.as_str(), "field": "sport" } }),
                ports_json(p),
            ),
            Match::CtEstablished => {
                json!({ "match": { "op": "in", "left": { "ct": { "key": "state" } }, "right": ["established", "related"] } })
            }
            Match::CtDnat => {
                json!({ "match": { "op": "in", "left": { "ct": { "key": "status" } }, "right": "dnat" } })
            }
        }
    }
}

fn addr_json(c: &Ipv4Cidr) -> Value {
    if c.len == 32 {
        json!(c.addr.to_string())
    } else {
        json!({ "prefix": { "addr": c.addr.to_string(), "len": c.len } })
    }
}

impl Stmt {
    /// The statement as a libnftables JSON expression.
    pub fn to_json(&self) -> Value {
        match self {
            Stmt::Accept => json!({ "accept": null }),
            Stmt::Dnat(a) => json!({ "dnat": { "family": "ip", "addr": a.to_string() } }),
            Stmt::DnatMap {
                l4,
                addr_map,
                port_map,
            } => {
                let lookup = |m: &str| json!({ "map": { "key": dport(*l4), "data": format!("@{m}") } });
                let mut d = json!({ "family": "ip", "addr": lookup(addr_map) });
                if let Some(p) = port_map {
                    d["port"] = lookup(p);
                }
                json!({ "dnat": d })
            }
            Stmt::CtMarkSet(m) => json!({ "mangle": { "key": { "ct": { "key": "mark" } }, "value": m } }),
            Stmt::MetaMarkSet(m) => json!({ "mangle": { "key": { "meta": { "key": "mark" } }, "value": m } }),
            Stmt::MssSet(n) => json!({ "mangle": { "key": mss(), "value": n } }),
            Stmt::Counter => json!({ "counter": null }),
            Stmt::Return => json!({ "return": null }),
            Stmt::DnatTo { addr, port } => {
                json!({ "dnat": { "family": "ip", "addr": addr.to_string(), "port": port } })
            }
        }
    }
}

impl MapData {
    /// The value as libnftables JSON.
    pub fn to_json(&self) -> Value {
        match self {
            MapData::Addr(a) => json!(a.to_string()),
            MapData::Port(p) => json!(p),
        }
    }
}

impl NftTable {
    /// One `nft -j -f -` transaction that replaces the table atomically:
    /// create it if missing, delete it, and add it back with its content.
    pub fn to_json_replace(&self) -> Value {
        let t = &self.name;
        let mut cmds = vec![
            json!({ "add": { "table": { "family": "ip", "name": t } } }),
            json!({ "delete": { "table": { "family": "ip", "name": t } } }),
            json!({ "add": { "table": { "family": "ip", "name": t } } }),
        ];
        for s in &self.sets {
            let set = json!({ "family": "ip", "table": t, "name": s.name, "type": "inet_service", "flags": ["interval"] });
            let elements = s.elements.iter().map(ports_json).collect();
            cmds.push(json!({ "add": { "set": with_elements(set, elements) } }));
        }
        for m in &self.maps {
            let map = json!({ "family": "ip", "table": t, "name": m.name, "type": "inet_service", "map": m.data.as_str(), "flags": ["interval"] });
            let elements = m
                .elements
                .iter()
                .map(|(k, d)| json!([ports_json(k), d.to_json()]))
                .collect();
            cmds.push(json!({ "add": { "map": with_elements(map, elements) } }));
        }
        for c in &self.chains {
            cmds.push(json!({ "add": { "chain": {
                "family": "ip", "table": t, "name": c.name, "type": c.kind.as_str(),
                "hook": c.hook.as_str(), "prio": c.priority, "policy": "accept"
            } } }));
            cmds.extend(
                c.rules
                    .iter()
                    .map(|r| json!({ "add": { "rule": rule_json(t, &c.name, r) } })),
            );
        }
        json!({ "nftables": cmds })
    }
}

/// A set or map object with its `elem` list, only when there are elements.
fn with_elements(mut collection: Value, elements: Vec<Value>) -> Value {
    if !elements.is_empty() {
        collection["elem"] = Value::Array(elements);
    }
    collection
}

fn rule_json(table: &str, chain: &str, r: &Rule) -> Value {
    let mut expr: Vec<Value> = r.matches.iter().map(Match::to_json).collect();
    expr.extend(r.stmts.iter().map(Stmt::to_json));
    let mut rule = json!({ "family": "ip", "table": table, "chain": chain, "expr": expr });
    if !r.comment.is_empty() {
        rule["comment"] = json!(r.comment);
    }
    rule
}

/// Normalize `nft -j list ...` output for comparison: drop what the kernel
/// adds or counts (handles, counters, metainfo) and keep everything that
/// defines behaviour, as canonical JSON (sorted keys). `None` if not JSON.
pub fn normalize_listing(nft_json: &str) -> Option<String> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("handle");
                m.remove("packets");
                m.remove("bytes");
                for x in m.values_mut() {
                    strip(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
    let mut v: Value = serde_json::from_str(nft_json).ok()?;
    let items = v.get_mut("nftables")?.as_array_mut()?;
    items.retain(|i| i.get("metainfo").is_none());
    let mut items = Value::Array(std::mem::take(items));
    strip(&mut items);
    serde_json::to_string(&items).ok()
}
