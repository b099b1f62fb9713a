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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
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
    pub first: u16,
    pub last: u16,
}

impl Ports {
    pub fn render(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

/// A set of ports (`type inet_service; flags interval`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSet {
    pub name: String,
    pub elements: Vec<Ports>,
}

/// What a DNAT map gives for a port: the target address, or the target port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapData {
    Addr(Ipv4Addr),
    Port(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapType {
    /// `type inet_service : ipv4_addr`
    Addr,
    /// `type inet_service : inet_service`
    Port,
}

/// A DNAT map from public ports (`flags interval`) to target addresses or
/// ports. Single forwards use an address map and a port map looked up with
/// the same key (nft 1.0.6's JSON cannot express a concatenated map value);
/// ranges use an address map alone and keep their port numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnatMap {
    pub name: String,
    pub data: MapType,
    pub elements: Vec<(Ports, MapData)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    Iif(String),
    NotIif(String),
    Oif(String),
    /// `ct state new`
    CtNew,
    CtMark(u32),
    /// `<l4> dport @set`
    DportIn(L4, String),
    /// `tcp flags syn / syn,rst`
    TcpSyn,
    /// `tcp option maxseg size > N`
    MssAbove(u16),
    DaddrIs(Ipv4Cidr),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stmt {
    Accept,
    /// `dnat ip to ADDR`
    Dnat(Ipv4Addr),
    /// `dnat ip to <l4> dport map @addr_map [: <l4> dport map @port_map]`
    DnatMap {
        l4: L4,
        addr_map: String,
        port_map: Option<String>,
    },
    CtMarkSet(u32),
    MetaMarkSet(u32),
    /// `tcp option maxseg size set N`
    MssSet(u16),
    Counter,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub stmts: Vec<Stmt>,
    /// Why the rule exists; also stored as the nft rule comment.
    pub comment: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    pub name: String,
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub rules: Vec<Rule>,
}

/// Warren's own table (`table ip warren`). Policies are always `accept`:
/// Warren's chains never drop; the host's own firewall stays in charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftTable {
    pub name: String,
    pub sets: Vec<PortSet>,
    pub maps: Vec<DnatMap>,
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
            Match::DaddrIs(c) => {
                if c.len == 32 {
                    format!("ip daddr {}", c.addr)
                } else {
                    format!("ip daddr {c}")
                }
            }
        }
    }
}

impl Stmt {
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
        }
    }
}

impl Rule {
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = self.matches.iter().map(Match::render).collect();
        parts.extend(self.stmts.iter().map(Stmt::render));
        if !self.comment.is_empty() {
            parts.push(format!("comment {}", quote(&self.comment)));
        }
        parts.join(" ")
    }
}

impl NftTable {
    /// The table in `nft -f` syntax (also what `nft list table` prints, modulo
    /// counters and handles).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "table ip {} {{", self.name);
        for s in &self.sets {
            let _ = writeln!(o, "\tset {} {{", s.name);
            let _ = writeln!(o, "\t\ttype inet_service");
            let _ = writeln!(o, "\t\tflags interval");
            if !s.elements.is_empty() {
                let e: Vec<String> = s.elements.iter().map(Ports::render).collect();
                let _ = writeln!(o, "\t\telements = {{ {} }}", e.join(", "));
            }
            let _ = writeln!(o, "\t}}");
        }
        for m in &self.maps {
            let _ = writeln!(o, "\tmap {} {{", m.name);
            let value = match m.data {
                MapType::Addr => "ipv4_addr",
                MapType::Port => "inet_service",
            };
            let _ = writeln!(o, "\t\ttype inet_service : {value}");
            let _ = writeln!(o, "\t\tflags interval");
            if !m.elements.is_empty() {
                let e: Vec<String> = m
                    .elements
                    .iter()
                    .map(|(k, d)| match d {
                        MapData::Addr(a) => format!("{} : {a}", k.render()),
                        MapData::Port(p) => format!("{} : {p}", k.render()),
                    })
                    .collect();
                let _ = writeln!(o, "\t\telements = {{ {} }}", e.join(", "));
            }
            let _ = writeln!(o, "\t}}");
        }
        for c in &self.chains {
            let kind = match c.kind {
                ChainType::Filter => "filter",
                ChainType::Nat => "nat",
                ChainType::Route => "route",
            };
            let hook = serde_json::to_value(c.hook)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(o, "\tchain {} {{", c.name);
            let _ = writeln!(
                o,
                "\t\ttype {kind} hook {hook} priority {}; policy accept;",
                priority_name(c.kind, c.hook, c.priority)
            );
            for r in &c.rules {
                let _ = writeln!(o, "\t\t{}", r.render());
            }
            let _ = writeln!(o, "\t}}");
        }
        o.push_str("}\n");
        o
    }
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
            Match::DaddrIs(c) => {
                let right = if c.len == 32 {
                    json!(c.addr.to_string())
                } else {
                    json!({ "prefix": { "addr": c.addr.to_string(), "len": c.len } })
                };
                is(
                    json!({ "payload": { "protocol": "ip", "field": "daddr" } }),
                    right,
                )
            }
        }
    }
}

impl Stmt {
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
            let mut set = json!({ "family": "ip", "table": t, "name": s.name, "type": "inet_service", "flags": ["interval"] });
            if !s.elements.is_empty() {
                set["elem"] = Value::Array(s.elements.iter().map(ports_json).collect());
            }
            cmds.push(json!({ "add": { "set": set } }));
        }
        for m in &self.maps {
            let value = match m.data {
                MapType::Addr => "ipv4_addr",
                MapType::Port => "inet_service",
            };
            let mut map = json!({ "family": "ip", "table": t, "name": m.name, "type": "inet_service", "map": value, "flags": ["interval"] });
            if !m.elements.is_empty() {
                map["elem"] = Value::Array(
                    m.elements
                        .iter()
                        .map(|(k, d)| {
                            let data = match d {
                                MapData::Addr(a) => json!(a.to_string()),
                                MapData::Port(p) => json!(p),
                            };
                            json!([ports_json(k), data])
                        })
                        .collect(),
                );
            }
            cmds.push(json!({ "add": { "map": map } }));
        }
        for c in &self.chains {
            let kind = match c.kind {
                ChainType::Filter => "filter",
                ChainType::Nat => "nat",
                ChainType::Route => "route",
            };
            cmds.push(json!({ "add": { "chain": {
                "family": "ip", "table": t, "name": c.name, "type": kind,
                "hook": c.hook, "prio": c.priority, "policy": "accept"
            } } }));
            for r in &c.rules {
                let mut expr: Vec<Value> = r.matches.iter().map(Match::to_json).collect();
                expr.extend(r.stmts.iter().map(Stmt::to_json));
                let mut rule = json!({ "family": "ip", "table": t, "chain": c.name, "expr": expr });
                if !r.comment.is_empty() {
                    rule["comment"] = json!(r.comment);
                }
                cmds.push(json!({ "add": { "rule": rule } }));
            }
        }
        json!({ "nftables": cmds })
    }
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
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(nft_json).ok()?;
    let items = v.get_mut("nftables")?.as_array_mut()?;
    items.retain(|i| i.get("metainfo").is_none());
    let mut items = Value::Array(std::mem::take(items));
    strip(&mut items);
    serde_json::to_string(&items).ok()
}
