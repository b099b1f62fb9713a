//! iptables: Warren's rules as owned `WARREN-*` chains, and the host's own
//! rules as `iptables-save` prints them.
//!
//! Warren's iptables rules are the same [`Rule`]s as its nft table (the
//! same vocabulary, so one reviewer's language), rendered to iptables
//! arguments here ([`rule_args`]). Everything is pure: the agent runs
//! `iptables-restore --noflush` and `iptables-save`, this module writes and
//! reads their text. [`parse_save`] reads a whole `iptables-save` dump
//! (foreign rules included) without judging it; it must never be used to
//! write a foreign rule back.

use crate::nft::{Chain, ChainType, Hook, MapData, Match, NftTable, Ports, Rule, Stmt, L4};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The prefix of every chain Warren owns in iptables.
pub const CHAIN_PREFIX: &str = "WARREN-";

/// The comment on every rule Warren puts into a chain it does not own (the
/// one jump rule per foreign chain): how Warren recognises its own rule.
pub const JUMP_COMMENT: &str = "warren";

/// An iptables table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IptTable {
    /// `filter`
    Filter,
    /// `nat`
    Nat,
    /// `mangle`
    Mangle,
}

impl IptTable {
    /// The table's name (`-t NAME`, `*NAME` in restore files).
    pub fn as_str(self) -> &'static str {
        match self {
            IptTable::Filter => "filter",
            IptTable::Nat => "nat",
            IptTable::Mangle => "mangle",
        }
    }
}

/// One chain Warren owns: `name` (always starting with [`CHAIN_PREFIX`]) in
/// `table`, reached by one jump rule (comment [`JUMP_COMMENT`]) at the top
/// of the built-in chain `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IptChain {
    /// The table.
    pub table: IptTable,
    /// The chain's name, `WARREN-…`.
    pub name: String,
    /// The built-in chain that jumps to it (`PREROUTING`, `FORWARD`, …).
    pub from: String,
    /// Its rules, in order; each renders with [`rule_args`].
    pub rules: Vec<Rule>,
}

/// Warren's iptables rules on one host (`netfilter: iptables`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IptRuleset {
    /// The owned chains, in the order they are created.
    pub chains: Vec<IptChain>,
}

impl IptRuleset {
    /// What a reviewer reads: per table, the chains, their jump rules and
    /// their rules in `iptables-save` words.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for table in [IptTable::Mangle, IptTable::Nat, IptTable::Filter] {
            let chains: Vec<&IptChain> = self.chains.iter().filter(|c| c.table == table).collect();
            if chains.is_empty() {
                continue;
            }
            let _ = writeln!(o, "*{}", table.as_str());
            for c in &chains {
                let _ = writeln!(o, ":{} - [0:0]", c.name);
            }
            for c in &chains {
                let _ = writeln!(o, "{}", jump_line(&c.from, &c.name));
                for r in &c.rules {
                    let args = rule_args(r).unwrap_or_else(|e| vec![format!("<{e}>")]);
                    let _ = writeln!(o, "-A {} {}", c.name, args.join(" "));
                }
            }
            let _ = writeln!(o, "COMMIT");
        }
        o
    }
}

/// The jump rule Warren puts at the top of the foreign or built-in chain
/// `from`, in restore syntax.
pub fn jump_line(from: &str, to: &str) -> String {
    format!("-I {from} 1 -m comment --comment {JUMP_COMMENT} -j {to}")
}

/// Quote a word for `iptables-restore` if it needs it. A double quote
/// cannot be quoted there, so it becomes a single one.
pub fn quote_word(s: &str) -> String {
    let s = s.replace('"', "'");
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/,+=@".contains(&b))
    {
        s
    } else {
        format!("\"{s}\"")
    }
}

/// Why a rule cannot be written in iptables.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// A match iptables has no word for (sets and maps are expanded by the
    /// compiler before they get here).
    #[error("iptables cannot express `{0}` (expand sets and maps first)")]
    Match(String),
    /// A statement iptables has no target for.
    #[error("iptables cannot express `{0}`")]
    Stmt(String),
    /// Two matches need different protocols (`-p tcp` and `-p udp`).
    #[error("one rule matches both tcp and udp")]
    TwoProtocols,
    /// iptables rules take exactly one target.
    #[error("an iptables rule needs exactly one target, this one has {0}")]
    Targets(usize),
    /// A base chain with no iptables table and built-in chain to match it,
    /// or whose name cannot become an owned chain name.
    #[error("nft chain {0}: {1}")]
    Chain(String, String),
    /// A rule looks up a set or map the table does not have.
    #[error("rule `{0}` refers to a set or map the table does not have")]
    Missing(String),
}

fn ports_arg(p: &Ports) -> String {
    if p.first == p.last {
        p.first.to_string()
    } else {
        format!("{}:{}", p.first, p.last)
    }
}

/// The protocol a match needs (`-p`), if any.
fn match_l4(m: &Match) -> Option<L4> {
    match m {
        Match::TcpSyn | Match::MssAbove(_) => Some(L4::Tcp),
        Match::Dport(l4, _) | Match::Sport(l4, _) | Match::DportIn(l4, _) => Some(*l4),
        Match::Iif(_)
        | Match::NotIif(_)
        | Match::Oif(_)
        | Match::CtNew
        | Match::CtMark(_)
        | Match::DaddrIs(_)
        | Match::SaddrIs(_)
        | Match::CtEstablished
        | Match::CtDnat => None,
    }
}

fn match_args(m: &Match) -> Result<Vec<String>, Unsupported> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Ok(match m {
        Match::Iif(i) => vec!["-i".into(), i.clone()],
        Match::NotIif(i) => vec!["!".into(), "-i".into(), i.clone()],
        Match::Oif(i) => vec!["-o".into(), i.clone()],
        Match::CtNew => v(&["-m", "conntrack", "--ctstate", "NEW"]),
        Match::CtEstablished => v(&["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]),
        Match::CtDnat => v(&["-m", "conntrack", "--ctstate", "DNAT"]),
        Match::CtMark(m) => vec!["-m".into(), "connmark".into(), "--mark".into(), format!("{m:#x}")],
        Match::TcpSyn => v(&["--tcp-flags", "SYN,RST", "SYN"]),
        Match::MssAbove(n) => vec![
            "-m".into(),
            "tcpmss".into(),
            "--mss".into(),
            format!("{}:65535", u32::from(*n) + 1),
        ],
        Match::DaddrIs(c) => vec!["-d".into(), c.to_string()],
        Match::SaddrIs(c) => vec!["-s".into(), c.to_string()],
        Match::Dport(_, p) => vec!["--dport".into(), ports_arg(p)],
        Match::Sport(_, p) => vec!["--sport".into(), ports_arg(p)],
        Match::DportIn(..) => return Err(Unsupported::Match(m.render())),
    })
}

/// The target of a statement; `None` for statements iptables does anyway
/// (`counter`: every iptables rule counts).
fn stmt_args(s: &Stmt) -> Result<Option<Vec<String>>, Unsupported> {
    Ok(Some(match s {
        Stmt::Counter => return Ok(None),
        Stmt::Accept => vec!["-j".into(), "ACCEPT".into()],
        Stmt::Dnat(a) => vec![
            "-j".into(),
            "DNAT".into(),
            "--to-destination".into(),
            a.to_string(),
        ],
        Stmt::CtMarkSet(m) => vec![
            "-j".into(),
            "CONNMARK".into(),
            "--set-mark".into(),
            format!("{m:#x}"),
        ],
        Stmt::MetaMarkSet(m) => vec!["-j".into(), "MARK".into(), "--set-mark".into(), format!("{m:#x}")],
        Stmt::MssSet(n) => vec!["-j".into(), "TCPMSS".into(), "--set-mss".into(), n.to_string()],
        Stmt::Return => vec!["-j".into(), "RETURN".into()],
        Stmt::DnatTo { addr, port } => vec![
            "-j".into(),
            "DNAT".into(),
            "--to-destination".into(),
            format!("{addr}:{port}"),
        ],
        Stmt::DnatMap { .. } => return Err(Unsupported::Stmt(s.render())),
    }))
}

/// The rule as iptables arguments after `-A CHAIN`: the protocol first,
/// then the matches, the comment, and the one target.
pub fn rule_args(r: &Rule) -> Result<Vec<String>, Unsupported> {
    let mut l4 = None;
    for m in &r.matches {
        match (l4, match_l4(m)) {
            (Some(a), Some(b)) if a != b => return Err(Unsupported::TwoProtocols),
            (_, Some(b)) => l4 = Some(b),
            (_, None) => {}
        }
    }
    let mut args = Vec::new();
    if let Some(l4) = l4 {
        args.extend(["-p".to_string(), l4.as_str().to_string()]);
    }
    for m in &r.matches {
        args.extend(match_args(m)?);
    }
    if !r.comment.is_empty() {
        args.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            quote_word(&r.comment),
        ]);
    }
    let targets: Vec<Vec<String>> = r
        .stmts
        .iter()
        .filter_map(|s| stmt_args(s).transpose())
        .collect::<Result<_, _>>()?;
    if targets.len() != 1 {
        return Err(Unsupported::Targets(targets.len()));
    }
    args.extend(targets.into_iter().flatten());
    Ok(args)
}

// ---------------------------------------------------------------------------
// From Warren's nft table

/// The tables a translated ruleset writes: `mangle` and `nat`. Warren's
/// nft table has no chain at the filter priority (it never decides what the
/// host accepts), so neither has its iptables translation; `WARREN-*` chains
/// in `filter` belong to the foreign-firewall openings, not to the ruleset.
pub const RULESET_TABLES: [IptTable; 2] = [IptTable::Mangle, IptTable::Nat];

/// The owned chain for the nft chain `name`: [`CHAIN_PREFIX`] and the name
/// in capitals, `_` as `-` (`mark_in` → `WARREN-MARK-IN`).
pub fn chain_name(name: &str) -> String {
    format!("{CHAIN_PREFIX}{}", name.to_ascii_uppercase().replace('_', "-"))
}

fn builtin(hook: Hook) -> &'static str {
    match hook {
        Hook::Prerouting => "PREROUTING",
        Hook::Input => "INPUT",
        Hook::Forward => "FORWARD",
        Hook::Output => "OUTPUT",
        Hook::Postrouting => "POSTROUTING",
    }
}

/// Where an nft base chain's rules go in iptables: the table whose
/// built-in chain sits at the same hook and priority.
fn place(c: &Chain) -> Result<(IptTable, &'static str), Unsupported> {
    let no = |why: &str| Err(Unsupported::Chain(c.name.clone(), why.to_string()));
    let table = match (c.kind, c.hook) {
        // iptables' nat table has no forward hook.
        (ChainType::Nat, Hook::Forward) => return no("nat chains cannot hook forward"),
        (ChainType::Nat, _) => IptTable::Nat,
        // mangle OUTPUT reroutes a packet whose mark changed, as a route chain does.
        (ChainType::Route, Hook::Output) => IptTable::Mangle,
        (ChainType::Route, _) => return no("route chains hook output only"),
        (ChainType::Filter, _) if c.priority == -150 => IptTable::Mangle,
        (ChainType::Filter, _) => {
            return no(&format!(
                "priority {} has no iptables table Warren writes (only mangle, -150)",
                c.priority
            ))
        }
    };
    Ok((table, builtin(c.hook)))
}

/// The same behaviour as `table`, in owned iptables chains: each base chain
/// becomes `WARREN-<NAME>` in the table at its hook and priority (`nat`, or
/// `mangle` for the mangle priority and route chains), jumped to from the
/// top of that table's built-in chain. Sets and maps have no iptables
/// equivalent, so their rules are expanded: one rule per set interval, one
/// DNAT rule per map element (with its target port, or keeping the port for
/// a range). `accept` becomes `RETURN`: in nft it ends only Warren's base
/// chain and the host's other chains still see the packet; in iptables
/// `ACCEPT` would also skip the host's rules after the jump in the same
/// built-in chain, while `RETURN` goes back to them.
pub fn from_nft(table: &NftTable) -> Result<IptRuleset, Unsupported> {
    let mut chains = Vec::new();
    for c in &table.chains {
        let (t, from) = place(c)?;
        let name = chain_name(&c.name);
        let valid = name.len() <= 28
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Unsupported::Chain(
                c.name.clone(),
                format!("{name} is not a valid iptables chain name (at most 28 of A-Z 0-9 - _)"),
            ));
        }
        let mut rules = Vec::new();
        for r in &c.rules {
            for expanded in expand(table, r)? {
                rule_args(&expanded)?;
                rules.push(expanded);
            }
        }
        chains.push(IptChain {
            table: t,
            name,
            from: from.to_string(),
            rules,
        });
    }
    Ok(IptRuleset { chains })
}

/// One nft rule as iptables-sayable rules (see [`from_nft`]).
fn expand(table: &NftTable, r: &Rule) -> Result<Vec<Rule>, Unsupported> {
    let missing = || Unsupported::Missing(r.render());
    let mut base = r.clone();
    for s in &mut base.stmts {
        if *s == Stmt::Accept {
            *s = Stmt::Return;
        }
    }
    let mut out = vec![base];
    for (i, m) in r.matches.iter().enumerate() {
        let Match::DportIn(l4, set) = m else { continue };
        let set = table.sets.iter().find(|s| &s.name == set).ok_or_else(missing)?;
        out = out
            .into_iter()
            .flat_map(|rule| {
                set.elements.iter().map(move |p| {
                    let mut e = rule.clone();
                    e.matches[i] = Match::Dport(*l4, *p);
                    e
                })
            })
            .collect();
    }
    for (i, s) in r.stmts.iter().enumerate() {
        let Stmt::DnatMap {
            l4,
            addr_map,
            port_map,
        } = s
        else {
            continue;
        };
        let find = |n: &str| table.maps.iter().find(|m| m.name == n).ok_or_else(missing);
        let addrs = find(addr_map)?;
        let ports = port_map.as_deref().map(find).transpose()?;
        let mut targets = Vec::new();
        for (key, data) in &addrs.elements {
            let MapData::Addr(addr) = *data else {
                return Err(missing());
            };
            let stmt = match ports {
                None => Stmt::Dnat(addr),
                Some(pm) => match pm.elements.iter().find(|(k, _)| k == key) {
                    Some((_, MapData::Port(port))) => Stmt::DnatTo { addr, port: *port },
                    Some((_, MapData::Addr(_))) => return Err(missing()),
                    // nft: a failed lookup ends the rule, nothing is DNATed.
                    None => continue,
                },
            };
            targets.push((*key, stmt));
        }
        out = out
            .into_iter()
            .flat_map(|rule| {
                targets.iter().map(move |(key, stmt)| {
                    let mut e = rule.clone();
                    e.matches.push(Match::Dport(*l4, *key));
                    e.stmts[i] = stmt.clone();
                    // One rule per forward: the map's comment ("one lookup
                    // per map") is not true of a rule list.
                    let to = stmt.render().replace("dnat ip to ", "");
                    e.comment = format!("{} port {} to {to}", l4.as_str(), key.render());
                    e
                })
            })
            .collect();
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// iptables-save

/// One rule of an `iptables-save` dump, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRule {
    /// The chain it is in.
    pub chain: String,
    /// Everything after `-A CHAIN `, verbatim.
    pub spec: String,
    /// Its `-j` or `-g` target, if any (`ACCEPT`, `DROP`, `WARREN-INPUT`).
    pub target: Option<String>,
    /// Its `--comment`, unquoted, if any.
    pub comment: Option<String>,
}

/// One table of an `iptables-save` dump.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTable {
    /// Every chain, with its policy (`ACCEPT`, `DROP`) for built-in chains
    /// and `None` (`-`) for user chains.
    pub chains: BTreeMap<String, Option<String>>,
    /// Every rule, in order.
    pub rules: Vec<SavedRule>,
}

impl SavedTable {
    /// The rules of `chain`, in order.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedRule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

/// A whole `iptables-save` dump, by table name.
pub type SavedTables = BTreeMap<String, SavedTable>;

/// Why a dump could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("iptables-save line {line}: {why}")]
pub struct SaveError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub why: String,
}

/// Split a restore/save line into words, honouring double quotes (with
/// `\"` inside them, as iptables-save writes).
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some('"') => break,
                        Some('\\') => cur.extend(chars.next()),
                        Some(x) => cur.push(x),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Read an `iptables-save` dump (any variant). Comments and counters are
/// skipped; anything else unexpected is an error naming the line.
pub fn parse_save(text: &str) -> Result<SavedTables, SaveError> {
    let mut tables = SavedTables::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let err = |why: String| SaveError { line: i + 1, why };
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            tables.entry(name.to_string()).or_default();
            current = Some(name.to_string());
            continue;
        }
        if line == "COMMIT" {
            current = None;
            continue;
        }
        let table = current
            .as_ref()
            .and_then(|t| tables.get_mut(t))
            .ok_or_else(|| err(format!("{line:?} outside a table")))?;
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts.next().ok_or_else(|| err("chain without a name".into()))?;
            let policy = parts.next().filter(|p| *p != "-").map(str::to_string);
            table.chains.insert(name.to_string(), policy);
            continue;
        }
        let w = words(line).map_err(err)?;
        match w.first().map(String::as_str) {
            Some("-A") => {}
            _ => {
                return Err(err(format!(
                    "expected -A, :CHAIN, *TABLE or COMMIT, found {line:?}"
                )))
            }
        }
        let chain = w.get(1).ok_or_else(|| err("-A without a chain".into()))?.clone();
        let spec = line
            .split_once(&format!("-A {chain}"))
            .map(|(_, rest)| rest.trim().to_string())
            .unwrap_or_default();
        let after = |flag: &str| {
            w.iter()
                .position(|x| x == flag)
                .and_then(|p| w.get(p + 1))
                .cloned()
        };
        table.rules.push(SavedRule {
            chain,
            target: after("-j").or_else(|| after("-g")),
            comment: after("--comment"),
            spec,
        });
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Ipv4Cidr;

    fn rule(matches: Vec<Match>, stmts: Vec<Stmt>, comment: &str) -> Rule {
        Rule {
            matches,
            stmts,
            comment: comment.into(),
        }
    }

    #[test]
    fn rules_render_protocol_first_and_one_target() {
        let r = rule(
            vec![
                Match::Iif("enp0s6".into()),
                Match::Dport(
                    L4::Udp,
                    Ports {
                        first: 51820,
                        last: 51820,
                    },
                ),
            ],
            vec![Stmt::Counter, Stmt::Accept],
            "WAN VPN handshakes",
        );
        assert_eq!(
            rule_args(&r).unwrap().join(" "),
            "-p udp -i enp0s6 --dport 51820 -m comment --comment \"WAN VPN handshakes\" -j ACCEPT"
        );
        let clamp = rule(
            vec![Match::Oif("wg0".into()), Match::TcpSyn, Match::MssAbove(1380)],
            vec![Stmt::MssSet(1380)],
            "",
        );
        assert_eq!(
            rule_args(&clamp).unwrap().join(" "),
            "-p tcp -o wg0 --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380"
        );
        let fwd = rule(
            vec![
                Match::Iif("wg0".into()),
                Match::DaddrIs(Ipv4Cidr::host("192.168.16.20".parse().unwrap())),
                Match::CtDnat,
            ],
            vec![Stmt::Accept],
            "",
        );
        assert_eq!(
            rule_args(&fwd).unwrap().join(" "),
            "-i wg0 -d 192.168.16.20/32 -m conntrack --ctstate DNAT -j ACCEPT"
        );
    }

    #[test]
    fn what_iptables_cannot_say_is_an_error() {
        let both = rule(
            vec![Match::Dport(L4::Udp, Ports { first: 1, last: 1 }), Match::TcpSyn],
            vec![Stmt::Accept],
            "",
        );
        assert_eq!(rule_args(&both), Err(Unsupported::TwoProtocols));
        let set = rule(
            vec![Match::DportIn(L4::Tcp, "kept".into())],
            vec![Stmt::Accept],
            "",
        );
        assert!(matches!(rule_args(&set), Err(Unsupported::Match(_))));
        let none = rule(vec![], vec![Stmt::Counter], "");
        assert_eq!(rule_args(&none), Err(Unsupported::Targets(0)));
    }

    #[test]
    fn a_cloud_image_dump_parses_with_policies_order_and_comments() {
        let dump = "# Generated by iptables-save v1.8.9 on Wed Nov 25 2026\n\
*filter\n\
:INPUT ACCEPT [0:0]\n\
:FORWARD DROP [3:180]\n\
:OUTPUT ACCEPT [0:0]\n\
:DOCKER-USER - [0:0]\n\
:WARREN-FORWARD - [0:0]\n\
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT\n\
-A INPUT -j REJECT --reject-with icmp-host-prohibited\n\
-A FORWARD -j DOCKER-USER\n\
-A DOCKER-USER -m comment --comment warren -j WARREN-FORWARD\n\
-A DOCKER-USER -j RETURN\n\
-A WARREN-FORWARD -i wg0 -m comment --comment \"their \\\"replies\\\"\" -j ACCEPT\n\
COMMIT\r\n";
        let t = parse_save(dump).unwrap();
        let f = &t["filter"];
        assert_eq!(f.chains["FORWARD"].as_deref(), Some("DROP"));
        assert_eq!(f.chains["DOCKER-USER"], None);
        let input: Vec<_> = f.rules_of("INPUT").map(|r| r.target.clone().unwrap()).collect();
        assert_eq!(input, ["ACCEPT", "ACCEPT", "REJECT"]);
        let jump = f.rules_of("DOCKER-USER").next().unwrap();
        assert_eq!(jump.comment.as_deref(), Some(JUMP_COMMENT));
        assert_eq!(jump.target.as_deref(), Some("WARREN-FORWARD"));
        let ours = f.rules_of("WARREN-FORWARD").next().unwrap();
        assert_eq!(ours.comment.as_deref(), Some("their \"replies\""));
        assert_eq!(
            ours.spec,
            "-i wg0 -m comment --comment \"their \\\"replies\\\"\" -j ACCEPT"
        );
    }

    #[test]
    fn a_broken_dump_names_its_line() {
        let e = parse_save("*filter\n:INPUT ACCEPT [0:0]\n-X INPUT\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_save("-A INPUT -j ACCEPT\n").unwrap_err();
        assert!(e.why.contains("outside a table"), "{e}");
        let e = parse_save("*filter\n-A INPUT -m comment --comment \"open\n").unwrap_err();
        assert!(e.why.contains("unterminated"), "{e}");
    }

    #[test]
    fn the_nft_table_translates_chain_by_chain_with_sets_and_maps_expanded() {
        use crate::nft::{DnatMap, MapType, PortSet};
        let p = |first, last| Ports { first, last };
        let a: std::net::Ipv4Addr = "192.168.16.20".parse().unwrap();
        let table = NftTable {
            name: "warren".into(),
            sets: vec![PortSet {
                name: "kept_tcp".into(),
                elements: vec![p(22, 22), p(8000, 8010)],
            }],
            maps: vec![
                DnatMap {
                    name: "addr".into(),
                    data: MapType::Addr,
                    elements: vec![(p(80, 80), MapData::Addr(a)), (p(81, 81), MapData::Addr(a))],
                },
                DnatMap {
                    name: "port".into(),
                    data: MapType::Port,
                    elements: vec![(p(80, 80), MapData::Port(8080))],
                },
            ],
            chains: vec![
                Chain {
                    name: "inbound".into(),
                    kind: ChainType::Nat,
                    hook: Hook::Prerouting,
                    priority: -100,
                    rules: vec![
                        rule(
                            vec![
                                Match::Iif("up".into()),
                                Match::DportIn(L4::Tcp, "kept_tcp".into()),
                            ],
                            vec![Stmt::Accept],
                            "",
                        ),
                        rule(
                            vec![Match::Iif("wg0".into())],
                            vec![Stmt::DnatMap {
                                l4: L4::Tcp,
                                addr_map: "addr".into(),
                                port_map: Some("port".into()),
                            }],
                            "",
                        ),
                    ],
                },
                Chain {
                    name: "mark_out".into(),
                    kind: ChainType::Route,
                    hook: Hook::Output,
                    priority: -150,
                    rules: vec![],
                },
            ],
        };
        let r = from_nft(&table).unwrap();
        assert_eq!(r.chains[0].name, "WARREN-INBOUND");
        assert_eq!(
            (r.chains[0].table, r.chains[0].from.as_str()),
            (IptTable::Nat, "PREROUTING")
        );
        assert_eq!(
            (r.chains[1].table, r.chains[1].from.as_str()),
            (IptTable::Mangle, "OUTPUT")
        );
        assert_eq!(r.chains[1].name, "WARREN-MARK-OUT");
        let lines: Vec<String> = r.chains[0]
            .rules
            .iter()
            .map(|x| rule_args(x).unwrap().join(" "))
            .collect();
        // Port 81 has an address but no port: nft's lookup fails, no DNAT.
        assert_eq!(
            lines,
            [
                "-p tcp -i up --dport 22 -j RETURN",
                "-p tcp -i up --dport 8000:8010 -j RETURN",
                "-p tcp -i wg0 --dport 80 -m comment --comment \"tcp port 80 to 192.168.16.20:8080\" -j DNAT --to-destination 192.168.16.20:8080",
            ]
        );
        let mut bad = table.clone();
        bad.chains[0].kind = ChainType::Filter;
        bad.chains[0].priority = 0;
        assert!(matches!(from_nft(&bad), Err(Unsupported::Chain(..))));
        let mut missing = table;
        missing.sets.clear();
        assert!(matches!(from_nft(&missing), Err(Unsupported::Missing(_))));
    }

    #[test]
    fn words_that_need_quotes_get_them() {
        assert_eq!(quote_word("warren"), "warren");
        assert_eq!(quote_word("a b"), "\"a b\"");
        assert_eq!(quote_word("say \"hi\""), "\"say 'hi'\"");
        assert_eq!(quote_word(""), "\"\"");
    }
}
