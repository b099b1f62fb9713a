//! A typed subset of nftables: exactly the vocabulary Warren's plans use.
//!
//! Plans carry this AST, not rule strings, so that the agent can render it to
//! `nft -j` JSON for one atomic transaction and compare it with what it reads
//! back. [`NftTable::render`] gives the `nft list table` text reviewers read.

use crate::net::Ipv4Cidr;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::Ipv4Addr;

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

/// What a DNAT map sends a port to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub addr: Ipv4Addr,
    /// `None`: keep the packet's port (port ranges).
    pub port: Option<u16>,
}

/// A DNAT map. `with_port` maps keys to `ipv4_addr . inet_service`
/// (single public ports, possibly rewritten), otherwise to `ipv4_addr`
/// (ranges keep their port numbers). Always `flags interval`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnatMap {
    pub name: String,
    pub with_port: bool,
    pub elements: Vec<(Ports, Target)>,
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
    /// `dnat ip [addr . port] to <l4> dport map @name`
    DnatMap {
        l4: L4,
        map: String,
        with_port: bool,
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
                map,
                with_port: true,
            } => {
                format!("dnat ip addr . port to {} dport map @{map}", l4.as_str())
            }
            Stmt::DnatMap {
                l4,
                map,
                with_port: false,
            } => {
                format!("dnat ip to {} dport map @{map}", l4.as_str())
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
            let value = if m.with_port {
                "ipv4_addr . inet_service"
            } else {
                "ipv4_addr"
            };
            let _ = writeln!(o, "\t\ttype inet_service : {value}");
            let _ = writeln!(o, "\t\tflags interval");
            if !m.elements.is_empty() {
                let e: Vec<String> = m
                    .elements
                    .iter()
                    .map(|(k, t)| match t.port {
                        Some(p) => format!("{} : {} . {p}", k.render(), t.addr),
                        None => format!("{} : {}", k.render(), t.addr),
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
