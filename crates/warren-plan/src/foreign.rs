//! The host's own (foreign) firewall, as plain data, and what Warren does
//! about it (`foreign_firewall: auto`).
//!
//! In netfilter a drop in any base chain is final: Warren's accepting table
//! cannot save a packet that the host's iptables `FORWARD DROP` (Docker), a
//! cloud image's `INPUT … REJECT` or a home firewall's nft `policy drop`
//! drops. Where such a chain would drop Warren's traffic, Warren opens
//! exactly the plan's [`Openings`] through it: an owned chain
//! (`WARREN-INPUT`/`WARREN-FORWARD` in iptables, `warren_input`/
//! `warren_forward` in a foreign nft table) holding those accepting rules,
//! reached by ONE jump rule (comment [`JUMP_COMMENT`]) at the top of the
//! foreign chain (`DOCKER-USER` on Docker hosts, as Docker documents).
//!
//! This module reads the dumps the agent collects (`iptables-save`,
//! `nft -j list ruleset`) into a [`ForeignState`], decides the holes a plan
//! wants ([`desired`]), and says what is wrong for `doctor` ([`findings`]).
//! It is pure; it never produces an operation on a rule Warren did not
//! create: only owned chains are written, and only jump rules that are
//! Warren's own (comment `warren`, target an owned chain) are removed.
//!
//! Each rule in an owned chain carries a digest of the plan's rule in its
//! comment (`warren: forward minecraft [1a2b3c4d5e6f]`), so the diff can
//! compare what is in the kernel with what the plan wants without a memory
//! of the last apply: a rule added, removed, reordered or replaced by one
//! with another comment is drift (see [`tagged_comment`]).

use crate::ipt::{self, SavedTable, JUMP_COMMENT};
use crate::nft::{Match, Rule};
use crate::plan::{ForeignPolicy, Plan};
use crate::{Finding, Severity};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The owned chain for the input hook, in iptables.
pub const IPT_INPUT: &str = "WARREN-INPUT";
/// The owned chain for the forward hook, in iptables.
pub const IPT_FORWARD: &str = "WARREN-FORWARD";
/// The owned chain for the input hook, in a foreign nft table.
pub const NFT_INPUT: &str = "warren_input";
/// The owned chain for the forward hook, in a foreign nft table.
pub const NFT_FORWARD: &str = "warren_forward";

/// Where a foreign chain lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// iptables over nf_tables (`iptables-nft-save`).
    IptablesNft,
    /// The legacy iptables (`iptables-legacy-save`).
    IptablesLegacy,
    /// A native nft table (`nft -j list ruleset`).
    Nft,
}

impl Source {
    /// The name people (and the agent's argv) use: `iptables-nft`,
    /// `iptables-legacy`, `nft`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::IptablesNft => "iptables-nft",
            Source::IptablesLegacy => "iptables-legacy",
            Source::Nft => "nft",
        }
    }

    /// Whether this is one of the iptables variants.
    pub fn is_iptables(self) -> bool {
        matches!(self, Source::IptablesNft | Source::IptablesLegacy)
    }
}

/// The netfilter hook a chain filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// Packets for the host itself.
    Input,
    /// Packets the host routes.
    Forward,
}

impl HookKind {
    /// `input` / `forward`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Input => "input",
            HookKind::Forward => "forward",
        }
    }

    /// The owned chain's name for this hook in `source`.
    pub fn owned_chain(self, source: Source) -> &'static str {
        match (source.is_iptables(), self) {
            (true, HookKind::Input) => IPT_INPUT,
            (true, HookKind::Forward) => IPT_FORWARD,
            (false, HookKind::Input) => NFT_INPUT,
            (false, HookKind::Forward) => NFT_FORWARD,
        }
    }

    /// The hook of an owned chain name, if it is one.
    pub fn of_owned(name: &str) -> Option<HookKind> {
        match name {
            IPT_INPUT | NFT_INPUT => Some(HookKind::Input),
            IPT_FORWARD | NFT_FORWARD => Some(HookKind::Forward),
            _ => None,
        }
    }
}

/// A firewall manager that owns foreign rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Manager {
    /// Docker (`DOCKER-USER`, `DOCKER` chains).
    Docker,
    /// ufw (`ufw-*` chains).
    Ufw,
    /// firewalld (`table inet firewalld`).
    Firewalld,
}

impl Manager {
    /// The manager's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Docker => "docker",
            Manager::Ufw => "ufw",
            Manager::Firewalld => "firewalld",
        }
    }
}

/// One foreign filter chain on the input or forward path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignChain {
    /// Where it lives.
    pub source: Source,
    /// The nft family (`ip`, `inet`); `ip` for iptables.
    pub family: String,
    /// The table (`filter` for iptables).
    pub table: String,
    /// The chain (`INPUT`, `FORWARD`, `DOCKER-USER`, `forward`).
    pub chain: String,
    /// The hook whose packets it sees.
    pub hook: HookKind,
    /// Its policy (`ACCEPT`/`DROP`, `accept`/`drop`); `None` for a chain
    /// without one (`DOCKER-USER`).
    pub policy: Option<String>,
    /// Whether its policy drops.
    pub policy_drops: bool,
    /// How many rules in it (or in user chains it jumps to) drop or reject.
    pub drop_rules: usize,
    /// Whether it is a base chain (built-in `INPUT`/`FORWARD`, or an nft
    /// chain with a hook) rather than `DOCKER-USER`.
    pub base: bool,
    /// The table belongs to a manager that rewrites it (firewalld): Warren
    /// must not write into it.
    pub managed: bool,
}

impl ForeignChain {
    /// Whether a packet of Warren's might be dropped here.
    pub fn would_drop(&self) -> bool {
        self.policy_drops || self.drop_rules > 0
    }

    /// `iptables-nft filter FORWARD`, `nft inet filter forward`.
    pub fn name(&self) -> String {
        match self.source {
            Source::Nft => format!("nft {} {} {}", self.family, self.table, self.chain),
            s @ (Source::IptablesNft | Source::IptablesLegacy) => {
                format!("{} {} {}", s.as_str(), self.table, self.chain)
            }
        }
    }
}

/// One of Warren's jump rules to an owned chain, as observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jump {
    /// The chain it is in.
    pub from: String,
    /// Its position in that chain (0: the first rule).
    pub position: usize,
    /// Its nft handle (native nft and, informationally, nothing else).
    pub handle: Option<u64>,
    /// Its spec after `-A CHAIN` (iptables), to delete it by `-D`.
    pub spec: String,
}

/// One of Warren's owned chains in a foreign table, as observed: what
/// [`desired`] holes are compared with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hole {
    /// Where it lives.
    pub source: Source,
    /// The nft family (`ip` for iptables).
    pub family: String,
    /// The table.
    pub table: String,
    /// The owned chain (`WARREN-FORWARD`, `warren_forward`).
    pub chain: String,
    /// Warren's jump rules to it.
    pub jumps: Vec<Jump>,
    /// The comments of its rules, in order (`""` for a rule without one).
    pub rules: Vec<String>,
}

impl Hole {
    /// `iptables-nft filter WARREN-FORWARD`, `nft inet filter warren_forward`.
    pub fn name(&self) -> String {
        hole_name(self.source, &self.family, &self.table, &self.chain)
    }
}

fn hole_name(source: Source, family: &str, table: &str, chain: &str) -> String {
    match source {
        Source::Nft => format!("nft {family} {table} {chain}"),
        s @ (Source::IptablesNft | Source::IptablesLegacy) => format!("{} {table} {chain}", s.as_str()),
    }
}

/// What the agent saw of the host's own firewall, and of Warren's holes in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignState {
    /// Foreign filter chains on the input and forward paths.
    pub chains: Vec<ForeignChain>,
    /// The managers detected.
    pub managers: BTreeSet<Manager>,
    /// Warren's own holes.
    pub holes: Vec<Hole>,
}

impl ForeignState {
    /// Add another source's observation.
    pub fn merge(&mut self, other: ForeignState) {
        self.chains.extend(other.chains);
        self.managers.extend(other.managers);
        self.holes.extend(other.holes);
    }
}

/// A hole the plan wants: an owned chain with exactly `rules`, reached by
/// one jump at the top of each chain of `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantHole {
    /// Where it goes.
    pub source: Source,
    /// The nft family (`ip` for iptables).
    pub family: String,
    /// The table.
    pub table: String,
    /// The owned chain.
    pub chain: String,
    /// The hook it opens.
    pub hook: HookKind,
    /// The foreign chains that jump to it, each with one rule at the top.
    pub from: Vec<String>,
    /// The plan's openings for that hook.
    pub rules: Vec<Rule>,
}

impl WantHole {
    /// Its name, as [`Hole::name`].
    pub fn name(&self) -> String {
        hole_name(self.source, &self.family, &self.table, &self.chain)
    }

    /// The rules with their tagged comments, as they go into the chain.
    pub fn tagged(&self) -> Vec<Rule> {
        self.rules
            .iter()
            .map(|r| Rule {
                comment: tagged_comment(r),
                ..r.clone()
            })
            .collect()
    }
}

/// The comment an opening rule carries in an owned chain: its own comment
/// (at most 96 bytes, no double quote: iptables-restore cannot quote one,
/// nft caps comments at 128 bytes) and the first 12 hex digits of the
/// rule's sha256, so that the read-back says which rule each one is.
pub fn tagged_comment(r: &Rule) -> String {
    let mut text = r.comment.replace('"', "'");
    if text.len() > 96 {
        let mut cut = 96;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let digest = crate::hash_hex(r);
    format!("{text} [{}]", &digest[..12])
}

// ---------------------------------------------------------------------------
// Reading iptables-save

/// Whether a target drops or rejects.
fn drops(target: Option<&str>) -> bool {
    matches!(target, Some("DROP" | "REJECT"))
}

/// DROP/REJECT rules in `chain` and the user chains it jumps to (not
/// Warren's own), each chain counted once.
fn drop_rules_ipt(t: &SavedTable, chain: &str, seen: &mut BTreeSet<String>) -> usize {
    if !seen.insert(chain.to_string()) || chain.starts_with(ipt::CHAIN_PREFIX) {
        return 0;
    }
    let mut n = 0;
    for r in t.rules_of(chain) {
        let target = r.target.as_deref();
        if drops(target) {
            n += 1;
        } else if let Some(to) = target {
            if t.chains.get(to).is_some_and(|p| p.is_none()) {
                n += drop_rules_ipt(t, to, seen);
            }
        }
    }
    n
}

/// Read one variant's `iptables-save -t filter` dump: the built-in `INPUT`
/// and `FORWARD` chains, `DOCKER-USER` when it exists, the managers whose
/// chains are there, and Warren's holes (owned chains `WARREN-INPUT`/
/// `WARREN-FORWARD` and the jumps to them with comment `warren`; jumps to
/// any other chain are not this module's).
pub fn read_iptables(source: Source, save: &str) -> Result<ForeignState, ipt::SaveError> {
    let tables = ipt::parse_save(save)?;
    let mut out = ForeignState::default();
    let Some(t) = tables.get("filter") else {
        return Ok(out);
    };
    if t.chains.contains_key("DOCKER-USER") || t.chains.contains_key("DOCKER") {
        out.managers.insert(Manager::Docker);
    }
    if t.chains.keys().any(|c| c.starts_with("ufw-")) {
        out.managers.insert(Manager::Ufw);
    }
    for (name, hook, base) in [
        ("INPUT", HookKind::Input, true),
        ("FORWARD", HookKind::Forward, true),
        ("DOCKER-USER", HookKind::Forward, false),
    ] {
        let Some(policy) = t.chains.get(name) else {
            continue;
        };
        out.chains.push(ForeignChain {
            source,
            family: "ip".into(),
            table: "filter".into(),
            chain: name.into(),
            hook,
            policy: policy.clone(),
            policy_drops: matches!(policy.as_deref(), Some("DROP")),
            drop_rules: drop_rules_ipt(t, name, &mut BTreeSet::new()),
            base,
            managed: false,
        });
    }
    for owned in [IPT_INPUT, IPT_FORWARD] {
        let mut jumps = Vec::new();
        let mut position: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &t.rules {
            let pos = position.entry(r.chain.as_str()).or_default();
            if r.target.as_deref() == Some(owned) && r.comment.as_deref() == Some(JUMP_COMMENT) {
                jumps.push(Jump {
                    from: r.chain.clone(),
                    position: *pos,
                    handle: None,
                    spec: r.spec.clone(),
                });
            }
            *pos += 1;
        }
        if !t.chains.contains_key(owned) && jumps.is_empty() {
            continue;
        }
        out.holes.push(Hole {
            source,
            family: "ip".into(),
            table: "filter".into(),
            chain: owned.into(),
            jumps,
            rules: t
                .rules_of(owned)
                .map(|r| r.comment.clone().unwrap_or_default())
                .collect(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Reading nft -j list ruleset

/// Tables iptables-nft keeps in nf_tables: seen through `iptables-nft-save`.
const IPT_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];

/// Why an nft listing could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("nft -j list ruleset: {0}")]
pub struct NftListError(pub String);

struct NftRule<'a> {
    chain: String,
    handle: Option<u64>,
    expr: &'a [Value],
    comment: Option<String>,
}

fn verdicts<'a>(expr: &'a [Value]) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
    expr.iter().filter_map(|e| {
        let o = e.as_object()?;
        let (k, v) = o.iter().next()?;
        let target = v.get("target").and_then(Value::as_str);
        Some((k.as_str(), target))
    })
}

fn drop_rules_nft(rules: &[NftRule], chain: &str, seen: &mut BTreeSet<String>) -> usize {
    if !seen.insert(chain.to_string()) || HookKind::of_owned(chain).is_some() {
        return 0;
    }
    let mut n = 0;
    for r in rules.iter().filter(|r| r.chain == chain) {
        for (k, target) in verdicts(r.expr) {
            match (k, target) {
                ("drop" | "reject", _) => n += 1,
                ("jump" | "goto", Some(to)) => n += drop_rules_nft(rules, to, seen),
                _ => {}
            }
        }
    }
    n
}

/// Read `nft -j list ruleset`: the base chains of type filter on the input
/// and forward hooks in native `ip` and `inet` tables (not Warren's own
/// `ip warren`, not iptables-nft's tables, which [`read_iptables`] reads),
/// firewalld's table, and Warren's holes (`warren_input`/`warren_forward`
/// and the jumps to them with comment `warren`).
pub fn read_nft(listing: &str) -> Result<ForeignState, NftListError> {
    let v: Value = serde_json::from_str(listing).map_err(|e| NftListError(format!("not JSON: {e}")))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| NftListError("no \"nftables\" array".into()))?;
    let str_of = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    // Per table: chains (name → its object) and rules, in listing order.
    type TableKey = (String, String);
    let mut chains: BTreeMap<TableKey, Vec<&Value>> = BTreeMap::new();
    let mut rules: BTreeMap<TableKey, Vec<NftRule>> = BTreeMap::new();
    let mut out = ForeignState::default();
    for item in items {
        if let Some(t) = item.get("table") {
            let (family, name) = (str_of(t, "family"), str_of(t, "name"));
            if family == "inet" && name == "firewalld" {
                out.managers.insert(Manager::Firewalld);
            }
        } else if let Some(c) = item.get("chain") {
            let key = (str_of(c, "family"), str_of(c, "table"));
            chains.entry(key).or_default().push(c);
        } else if let Some(r) = item.get("rule") {
            let key = (str_of(r, "family"), str_of(r, "table"));
            rules.entry(key).or_default().push(NftRule {
                chain: str_of(r, "chain"),
                handle: r.get("handle").and_then(Value::as_u64),
                expr: r
                    .get("expr")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice),
                comment: r.get("comment").and_then(Value::as_str).map(str::to_string),
            });
        }
    }
    let none = Vec::new();
    for ((family, table), cs) in &chains {
        let native = match family.as_str() {
            "ip" => table != crate::nft::TABLE && !IPT_TABLES.contains(&table.as_str()),
            "inet" => true,
            _ => false,
        };
        if !native {
            continue;
        }
        let managed = family == "inet" && table == "firewalld";
        let rs = rules.get(&(family.clone(), table.clone())).unwrap_or(&none);
        for c in cs {
            let hook = match c.get("hook").and_then(Value::as_str) {
                Some("input") => HookKind::Input,
                Some("forward") => HookKind::Forward,
                _ => continue,
            };
            if c.get("type").and_then(Value::as_str) != Some("filter") {
                continue;
            }
            let name = str_of(c, "name");
            let policy = c.get("policy").and_then(Value::as_str).map(str::to_string);
            out.chains.push(ForeignChain {
                source: Source::Nft,
                family: family.clone(),
                table: table.clone(),
                policy_drops: policy.as_deref() == Some("drop"),
                drop_rules: drop_rules_nft(rs, &name, &mut BTreeSet::new()),
                chain: name,
                hook,
                policy,
                base: true,
                managed,
            });
        }
        for owned in [NFT_INPUT, NFT_FORWARD] {
            let exists = cs.iter().any(|c| str_of(c, "name") == owned);
            let mut jumps = Vec::new();
            let mut position: BTreeMap<&str, usize> = BTreeMap::new();
            for r in rs {
                let pos = position.entry(r.chain.as_str()).or_default();
                let to_ours = verdicts(r.expr).any(|(k, t)| k == "jump" && t == Some(owned));
                if to_ours && r.comment.as_deref() == Some(JUMP_COMMENT) {
                    jumps.push(Jump {
                        from: r.chain.clone(),
                        position: *pos,
                        handle: r.handle,
                        spec: String::new(),
                    });
                }
                *pos += 1;
            }
            if !exists && jumps.is_empty() {
                continue;
            }
            out.holes.push(Hole {
                source: Source::Nft,
                family: family.clone(),
                table: table.clone(),
                chain: owned.into(),
                jumps,
                rules: rs
                    .iter()
                    .filter(|r| r.chain == owned)
                    .map(|r| r.comment.clone().unwrap_or_default())
                    .collect(),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decisions

/// The openings of `plan` for `hook`.
fn openings(plan: &Plan, hook: HookKind) -> &[Rule] {
    match hook {
        HookKind::Input => &plan.openings.input,
        HookKind::Forward => &plan.openings.forward,
    }
}

/// The chain that must carry the jump for a dropping foreign chain: on a
/// Docker host the forward hole goes into `DOCKER-USER` (which `FORWARD`
/// jumps to first), as Docker documents; otherwise the chain itself.
fn jump_from(observed: &ForeignState, c: &ForeignChain) -> String {
    if c.source.is_iptables() && c.chain == "FORWARD" {
        let docker_user = observed
            .chains
            .iter()
            .any(|d| d.source == c.source && d.chain == "DOCKER-USER");
        if docker_user {
            return "DOCKER-USER".into();
        }
    }
    c.chain.clone()
}

/// The dropping chains on the paths of `plan`'s openings: (chain, whether
/// Warren opens it under `auto`).
fn dropping<'a>(observed: &'a ForeignState, plan: &Plan) -> Vec<&'a ForeignChain> {
    observed
        .chains
        .iter()
        // DOCKER-USER is judged as part of FORWARD, which jumps to it.
        .filter(|c| c.base && c.would_drop() && !openings(plan, c.hook).is_empty())
        .collect()
}

/// The holes `plan` wants on a host whose foreign firewall is `observed`:
/// none unless the policy is `auto`; otherwise one owned chain per table
/// and hook with a dropping base chain (not a firewalld table), jumped to
/// from each such chain (`DOCKER-USER` instead of `FORWARD` on Docker hosts).
pub fn desired(observed: &ForeignState, plan: &Plan) -> Vec<WantHole> {
    if plan.openings.policy != ForeignPolicy::Auto {
        return Vec::new();
    }
    let mut holes: Vec<WantHole> = Vec::new();
    for c in dropping(observed, plan) {
        if c.managed {
            continue;
        }
        let chain = c.hook.owned_chain(c.source).to_string();
        let from = jump_from(observed, c);
        let existing = holes
            .iter_mut()
            .find(|h| h.source == c.source && h.family == c.family && h.table == c.table && h.chain == chain);
        match existing {
            Some(h) => {
                if !h.from.contains(&from) {
                    h.from.push(from);
                }
            }
            None => holes.push(WantHole {
                source: c.source,
                family: c.family.clone(),
                table: c.table.clone(),
                chain,
                hook: c.hook,
                from: vec![from],
                rules: openings(plan, c.hook).to_vec(),
            }),
        }
    }
    holes
}

/// What is wrong with an observed hole compared with the wanted one: the
/// jumps to remove (misplaced, duplicated or from a chain no longer
/// wanted), the chains that need a jump at the top, and whether the rules
/// differ. `None` when it is exactly right.
pub fn compare(want: &WantHole, have: Option<&Hole>) -> Option<(Vec<Jump>, Vec<String>, bool)> {
    let Some(have) = have else {
        return Some((Vec::new(), want.from.clone(), true));
    };
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    let mut remove = Vec::new();
    for j in &have.jumps {
        if j.position == 0 && want.from.contains(&j.from) && keep.insert(j.from.as_str()) {
            continue;
        }
        remove.push(j.clone());
    }
    let insert: Vec<String> = want
        .from
        .iter()
        .filter(|f| !keep.contains(f.as_str()))
        .cloned()
        .collect();
    let expected: Vec<String> = want.rules.iter().map(tagged_comment).collect();
    let rules_differ = have.rules != expected;
    (!remove.is_empty() || !insert.is_empty() || rules_differ).then_some((remove, insert, rules_differ))
}

// ---------------------------------------------------------------------------
// Findings

/// The rule without its comment (fixes are for people to paste).
fn bare(r: &Rule) -> Rule {
    Rule {
        comment: String::new(),
        ..r.clone()
    }
}

/// `ufw allow …` / `ufw route allow …` for an opening; `None` for rules
/// ufw has no words for, such as replies (ufw lets established traffic
/// through by itself).
pub fn ufw_command(hook: HookKind, r: &Rule) -> Option<String> {
    let (mut iif, mut oif, mut from, mut to, mut port, mut sport, mut proto) =
        (None, None, None, None, None, None, None);
    for m in &r.matches {
        match m {
            Match::Iif(i) => iif = Some(i.clone()),
            Match::Oif(o) => oif = Some(o.clone()),
            Match::SaddrIs(c) => from = Some(addr(c)),
            Match::DaddrIs(c) => to = Some(addr(c)),
            Match::Dport(l4, p) => {
                port = Some(ufw_ports(p));
                proto = Some(l4.as_str());
            }
            Match::Sport(l4, p) => {
                sport = Some(ufw_ports(p));
                proto = Some(l4.as_str());
            }
            Match::CtEstablished => return None,
            Match::NotIif(_)
            | Match::CtNew
            | Match::CtMark(_)
            | Match::DportIn(..)
            | Match::TcpSyn
            | Match::MssAbove(_)
            | Match::CtDnat => {}
        }
    }
    let mut s = match hook {
        HookKind::Input => "ufw allow".to_string(),
        HookKind::Forward => "ufw route allow".to_string(),
    };
    if let Some(i) = iif {
        s.push_str(&format!(" in on {i}"));
    }
    if let Some(o) = oif {
        s.push_str(&format!(" out on {o}"));
    }
    s.push_str(&format!(" from {}", from.unwrap_or_else(|| "any".into())));
    if let Some(p) = sport {
        s.push_str(&format!(" port {p}"));
    }
    s.push_str(&format!(" to {}", to.unwrap_or_else(|| "any".into())));
    if let Some(p) = port {
        s.push_str(&format!(" port {p}"));
    }
    if let Some(p) = proto {
        s.push_str(&format!(" proto {p}"));
    }
    Some(s)
}

fn addr(c: &crate::net::Ipv4Cidr) -> String {
    if c.len == 32 {
        c.addr.to_string()
    } else {
        c.to_string()
    }
}

fn ufw_ports(p: &crate::nft::Ports) -> String {
    if p.first == p.last {
        p.first.to_string()
    } else {
        format!("{}:{}", p.first, p.last)
    }
}

/// firewalld commands for an opening: a rich rule in the policy `warren`
/// (forwarded traffic) or the default zone (input); `None` for replies,
/// which firewalld lets through by itself.
pub fn firewalld_command(hook: HookKind, r: &Rule) -> Option<String> {
    let mut parts = vec!["rule family=\"ipv4\"".to_string()];
    let mut port = None;
    for m in &r.matches {
        match m {
            Match::SaddrIs(c) => parts.push(format!("source address=\"{}\"", addr(c))),
            Match::DaddrIs(c) => parts.push(format!("destination address=\"{}\"", addr(c))),
            Match::Dport(l4, p) => port = Some((l4.as_str(), p.render())),
            Match::Sport(l4, p) => parts.push(format!(
                "source-port port=\"{}\" protocol=\"{}\"",
                p.render(),
                l4.as_str()
            )),
            Match::CtEstablished => return None,
            Match::Iif(_)
            | Match::NotIif(_)
            | Match::Oif(_)
            | Match::CtNew
            | Match::CtMark(_)
            | Match::DportIn(..)
            | Match::TcpSyn
            | Match::MssAbove(_)
            | Match::CtDnat => {}
        }
    }
    if let Some((l4, p)) = port {
        parts.push(format!("port port=\"{p}\" protocol=\"{l4}\""));
    }
    parts.push("accept".into());
    let rich = parts.join(" ");
    Some(match hook {
        HookKind::Input => format!("firewall-cmd --permanent --add-rich-rule='{rich}'"),
        HookKind::Forward => format!("firewall-cmd --permanent --policy warren --add-rich-rule='{rich}'"),
    })
}

/// The exact commands that open `plan`'s paths through chain `c` by hand.
fn manual_fix(observed: &ForeignState, plan: &Plan, c: &ForeignChain) -> String {
    let rules = openings(plan, c.hook);
    let mut lines = Vec::new();
    if c.managed || observed.managers.contains(&Manager::Firewalld) && c.source == Source::Nft {
        lines
            .push("# firewalld rewrites its table on reload: add Warren's paths to its configuration".into());
        if c.hook == HookKind::Forward {
            lines.push("firewall-cmd --permanent --new-policy warren".into());
            lines.push("firewall-cmd --permanent --policy warren --add-ingress-zone ANY".into());
            lines.push("firewall-cmd --permanent --policy warren --add-egress-zone ANY".into());
        }
        lines.extend(rules.iter().filter_map(|r| firewalld_command(c.hook, r)));
        lines.push("firewall-cmd --reload".into());
        return lines.join("\n");
    }
    if c.source.is_iptables() && observed.managers.contains(&Manager::Ufw) {
        lines.push("# with ufw, add them to its rules (they survive `ufw reload`):".into());
        lines.extend(rules.iter().filter_map(|r| ufw_command(c.hook, r)));
        lines.push("# or, directly:".into());
    }
    match c.source {
        Source::Nft => {
            // `insert` puts each at the top; reverse so they end up in order.
            for r in rules.iter().rev() {
                lines.push(format!(
                    "nft insert rule {} {} {} {}",
                    c.family,
                    c.table,
                    c.chain,
                    bare(r).render()
                ));
            }
        }
        Source::IptablesNft | Source::IptablesLegacy => {
            let bin = if c.source == Source::IptablesNft {
                "iptables"
            } else {
                "iptables-legacy"
            };
            let chain = jump_from(observed, c);
            for r in rules.iter().rev() {
                match ipt::rule_args(&bare(r)) {
                    Ok(a) => lines.push(format!("{bin} -I {chain} {}", a.join(" "))),
                    Err(e) => lines.push(format!("# {}: {e}", r.render())),
                }
            }
        }
    }
    lines.join("\n")
}

fn what_drops(c: &ForeignChain) -> String {
    let mut why = Vec::new();
    if c.policy_drops {
        why.push(format!("policy {}", c.policy.as_deref().unwrap_or("drop")));
    }
    if c.drop_rules > 0 {
        why.push(format!("{} DROP/REJECT rule(s)", c.drop_rules));
    }
    format!("{} ({})", c.name(), why.join(", "))
}

/// `doctor`'s findings about the host's own firewall for `plan`: one per
/// foreign chain that would drop Warren's paths (`breaks` when Warren does
/// not open it: `own-table-only`, or firewalld's table; `ok` when an owned
/// hole is in place; `warn` when it will be on the next apply), or one `ok`
/// when nothing drops.
pub fn findings(observed: &ForeignState, plan: &Plan) -> Vec<Finding> {
    let want = desired(observed, plan);
    let mut out = Vec::new();
    for c in dropping(observed, plan) {
        let hook = c.hook.as_str();
        let paths = openings(plan, c.hook).len();
        let hole = want
            .iter()
            .find(|h| h.source == c.source && h.family == c.family && h.table == c.table && h.hook == c.hook);
        let what = what_drops(c);
        let finding = match hole {
            None => Finding {
                check: "foreign-firewall".into(),
                severity: Severity::Breaks,
                what: format!("{what} would drop Warren's {paths} {hook} path(s)"),
                why: if c.managed {
                    "firewalld rewrites its own table on every reload, so Warren does not write into it; \
                     a drop in any base chain is final, whatever Warren's own table accepts"
                        .into()
                } else {
                    "foreign_firewall is own-table-only, so Warren does not touch this chain; a drop in any \
                     base chain is final, whatever Warren's own table accepts"
                        .into()
                },
                fix: manual_fix(observed, plan, c),
            },
            Some(h) => {
                let have = observed.holes.iter().find(|o| {
                    o.source == h.source && o.family == h.family && o.table == h.table && o.chain == h.chain
                });
                let from = jump_from(observed, c);
                let in_place = compare(h, have).is_none();
                let mut notes = String::new();
                if c.source.is_iptables()
                    && observed.managers.contains(&Manager::Docker)
                    && c.hook == HookKind::Forward
                {
                    notes.push_str(" (Docker host: the jump is in DOCKER-USER, as Docker documents)");
                }
                if c.source.is_iptables() && observed.managers.contains(&Manager::Ufw) {
                    notes.push_str(" (ufw: a reload keeps INPUT/FORWARD's own rules; Warren re-places its jump as drift if one goes)");
                }
                Finding {
                    check: "foreign-firewall".into(),
                    severity: if in_place { Severity::Ok } else { Severity::Warn },
                    what: if in_place {
                        format!("{what}: Warren's {paths} {hook} path(s) pass through {} (jump at the top of {from}){notes}", h.chain)
                    } else {
                        format!("{what}: Warren will open its {paths} {hook} path(s) through {} at the next apply{notes}", h.chain)
                    },
                    why: if in_place {
                        String::new()
                    } else {
                        "until then this chain drops Warren's traffic".into()
                    },
                    fix: if in_place {
                        String::new()
                    } else {
                        "warren-agent apply (or wait for the next plan)".into()
                    },
                }
            }
        };
        out.push(finding);
    }
    if out.is_empty() {
        out.push(Finding {
            check: "foreign-firewall".into(),
            severity: Severity::Ok,
            what: if observed.chains.is_empty() {
                "no foreign filter chain on the input or forward path".into()
            } else {
                "no foreign filter chain drops Warren's paths".into()
            },
            why: String::new(),
            fix: String::new(),
        });
    }
    out
}

// ---------------------------------------------------------------------------
// nft JSON for the agent

/// The `nft -j -f -` transaction that makes `want` exactly right: add the
/// owned chain (a regular chain, no hook) to the foreign table, flush it,
/// add the tagged rules, delete Warren's misplaced jumps by handle, and
/// insert a jump at the top of each chain of `insert`.
pub fn nft_open(want: &WantHole, remove: &[Jump], insert: &[String]) -> Value {
    let (f, t, c) = (&want.family, &want.table, &want.chain);
    let mut cmds = vec![
        json!({ "add": { "chain": { "family": f, "table": t, "name": c } } }),
        json!({ "flush": { "chain": { "family": f, "table": t, "name": c } } }),
    ];
    for r in want.tagged() {
        let mut expr: Vec<Value> = r.matches.iter().map(Match::to_json).collect();
        expr.extend(r.stmts.iter().map(crate::nft::Stmt::to_json));
        cmds.push(json!({ "add": { "rule": {
            "family": f, "table": t, "chain": c, "expr": expr, "comment": r.comment
        } } }));
    }
    cmds.extend(remove.iter().filter_map(|j| nft_delete_jump(f, t, j)));
    for from in insert {
        cmds.push(json!({ "insert": { "rule": {
            "family": f, "table": t, "chain": from,
            "expr": [{ "jump": { "target": c } }], "comment": JUMP_COMMENT
        } } }));
    }
    json!({ "nftables": cmds })
}

fn nft_delete_jump(family: &str, table: &str, j: &Jump) -> Option<Value> {
    let handle = j.handle?;
    Some(json!({ "delete": { "rule": {
        "family": family, "table": table, "chain": j.from, "handle": handle
    } } }))
}

/// The `nft -j -f -` transaction that removes a hole: Warren's jumps by
/// handle, then the owned chain.
pub fn nft_close(hole: &Hole) -> Value {
    let (f, t) = (&hole.family, &hole.table);
    let mut cmds: Vec<Value> = hole
        .jumps
        .iter()
        .filter_map(|j| nft_delete_jump(f, t, j))
        .collect();
    cmds.push(json!({ "delete": { "chain": { "family": f, "table": t, "name": hole.chain } } }));
    json!({ "nftables": cmds })
}

/// The `iptables-restore --noflush` input that makes `want` exactly right:
/// declare the owned chain (which flushes it), delete Warren's misplaced
/// jumps by their exact spec, add the tagged rules, and insert one jump at
/// the top of each chain of `insert`. Errors name a rule iptables cannot
/// express.
pub fn ipt_open(want: &WantHole, remove: &[Jump], insert: &[String]) -> Result<String, ipt::Unsupported> {
    let mut o = String::from("*filter\n");
    o.push_str(&format!(":{} - [0:0]\n", want.chain));
    for j in remove {
        o.push_str(&format!("-D {} {}\n", j.from, j.spec));
    }
    for r in want.tagged() {
        o.push_str(&format!("-A {} {}\n", want.chain, ipt::rule_args(&r)?.join(" ")));
    }
    for from in insert {
        o.push_str(&ipt::jump_line(from, &want.chain));
        o.push('\n');
    }
    o.push_str("COMMIT\n");
    Ok(o)
}

/// The `iptables-restore --noflush` input that removes a hole: flush the
/// owned chain, delete Warren's jumps to it by their exact spec, delete it.
pub fn ipt_close(hole: &Hole) -> String {
    let mut o = String::from("*filter\n");
    o.push_str(&format!(":{} - [0:0]\n", hole.chain));
    for j in &hole.jumps {
        o.push_str(&format!("-D {} {}\n", j.from, j.spec));
    }
    o.push_str(&format!("-X {}\nCOMMIT\n", hole.chain));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{diff, Context, ForeignOp, Op};
    use crate::nft::{Ports, Stmt, L4};
    use crate::state::State;

    fn accept(matches: Vec<Match>, comment: &str) -> Rule {
        Rule {
            matches,
            stmts: vec![Stmt::Accept],
            comment: comment.into(),
        }
    }

    fn port(p: u16) -> Ports {
        Ports { first: p, last: p }
    }

    /// The gateway's openings, as the compiler makes them.
    fn gateway_plan() -> Plan {
        let mut plan = Plan::empty("gateway");
        plan.openings.policy = ForeignPolicy::Auto;
        plan.openings.input = vec![accept(
            vec![Match::Iif("enp0s6".into()), Match::Dport(L4::Udp, port(51820))],
            "warren: WAN VPN wg0 from the router",
        )];
        plan.openings.forward = vec![
            accept(
                vec![
                    Match::Iif("enp0s6".into()),
                    Match::Oif("wg0".into()),
                    Match::DaddrIs("10.0.18.2/32".parse().unwrap()),
                    Match::CtDnat,
                ],
                "warren: inbound traffic DNATed to the router 10.0.18.2",
            ),
            accept(
                vec![
                    Match::Iif("wg0".into()),
                    Match::Oif("enp0s6".into()),
                    Match::SaddrIs("10.0.18.2/32".parse().unwrap()),
                    Match::CtEstablished,
                ],
                "warren: the router's replies to it",
            ),
        ];
        plan
    }

    /// A cloud image's rules plus Docker's, as iptables-nft-save prints them.
    const CLOUD_DOCKER: &str = "\
# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -j DOCKER-USER
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
-A DOCKER-USER -j RETURN
COMMIT
";

    /// The same host after Warren opened its holes.
    fn cloud_docker_opened(plan: &Plan) -> String {
        let w = desired(&read_iptables(Source::IptablesNft, CLOUD_DOCKER).unwrap(), plan);
        let mut s = CLOUD_DOCKER.replace(
            ":DOCKER-USER - [0:0]\n",
            ":DOCKER-USER - [0:0]\n:WARREN-FORWARD - [0:0]\n:WARREN-INPUT - [0:0]\n",
        );
        s = s.replace(
            "-A INPUT -m state",
            "-A INPUT -m comment --comment warren -j WARREN-INPUT\n-A INPUT -m state",
        );
        s = s.replace(
            "-A DOCKER-USER -j RETURN\n",
            "-A DOCKER-USER -m comment --comment warren -j WARREN-FORWARD\n-A DOCKER-USER -j RETURN\n",
        );
        let mut ours = String::new();
        for h in &w {
            for r in h.tagged() {
                ours.push_str(&format!(
                    "-A {} {}\n",
                    h.chain,
                    ipt::rule_args(&r).unwrap().join(" ")
                ));
            }
        }
        s.replace("COMMIT\n", &format!("{ours}COMMIT\n"))
    }

    #[test]
    fn a_cloud_docker_host_gets_one_hole_per_hook_with_the_forward_one_in_docker_user() {
        let plan = gateway_plan();
        let seen = read_iptables(Source::IptablesNft, CLOUD_DOCKER).unwrap();
        assert_eq!(seen.managers, [Manager::Docker].into());
        let names: Vec<String> = seen
            .chains
            .iter()
            .map(|c| format!("{} {}", c.name(), c.would_drop()))
            .collect();
        assert_eq!(
            names,
            [
                "iptables-nft filter INPUT true",
                "iptables-nft filter FORWARD true",
                "iptables-nft filter DOCKER-USER false"
            ]
        );
        let w = desired(&seen, &plan);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].chain.as_str(), w[0].from.clone()),
            (IPT_INPUT, vec!["INPUT".to_string()])
        );
        assert_eq!(
            (w[1].chain.as_str(), w[1].from.clone()),
            (IPT_FORWARD, vec!["DOCKER-USER".to_string()])
        );
        let text = ipt_open(&w[1], &[], &w[1].from).unwrap();
        let digest = &crate::hash_hex(&plan.openings.forward[0])[..12];
        assert_eq!(
            text,
            format!(
                "*filter\n:WARREN-FORWARD - [0:0]\n\
                 -A WARREN-FORWARD -i enp0s6 -o wg0 -d 10.0.18.2/32 -m conntrack --ctstate DNAT -m comment --comment \"warren: inbound traffic DNATed to the router 10.0.18.2 [{digest}]\" -j ACCEPT\n\
                 -A WARREN-FORWARD -i wg0 -o enp0s6 -s 10.0.18.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"warren: the router's replies to it [{}]\" -j ACCEPT\n\
                 -I DOCKER-USER 1 -m comment --comment warren -j WARREN-FORWARD\nCOMMIT\n",
                &crate::hash_hex(&plan.openings.forward[1])[..12]
            )
        );
        // The diff opens both, before anything else of the firewall.
        let live = State {
            foreign: seen,
            ..State::default()
        };
        let changes = diff(&plan, &live, &Context::default());
        let opens: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            opens,
            [
                "iptables-nft filter WARREN-INPUT: expected 1 rule(s), one jump at the top of INPUT, found absent",
                "iptables-nft filter WARREN-FORWARD: expected 2 rule(s), one jump at the top of DOCKER-USER, found absent"
            ]
        );
    }

    #[test]
    fn an_opened_host_is_in_sync_and_each_kind_of_drift_is_seen() {
        let plan = gateway_plan();
        let opened = cloud_docker_opened(&plan);
        let seen = read_iptables(Source::IptablesNft, &opened).unwrap();
        assert_eq!(seen.holes.len(), 2);
        let live = State {
            foreign: seen,
            ..State::default()
        };
        assert_eq!(diff(&plan, &live, &Context::default()), vec![]);
        assert_eq!(
            findings(&live.foreign, &plan)
                .iter()
                .map(|f| f.severity)
                .collect::<Vec<_>>(),
            [Severity::Ok, Severity::Ok]
        );

        // Someone inserted a rule above our jump: re-place ours only.
        let moved = opened.replace(
            "-A INPUT -m comment --comment warren -j WARREN-INPUT\n",
            "-A INPUT -s 203.0.113.9/32 -j DROP\n-A INPUT -m comment --comment warren -j WARREN-INPUT\n",
        );
        let live = State {
            foreign: read_iptables(Source::IptablesNft, &moved).unwrap(),
            ..State::default()
        };
        let c = diff(&plan, &live, &Context::default());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].actual, "jump at position 2 of INPUT, not the top");
        let Op::Foreign(ForeignOp::OpenHole { hole, remove, insert }) = &c[0].op else {
            panic!("{:?}", c[0].op)
        };
        assert_eq!(insert, &["INPUT".to_string()]);
        assert_eq!(remove.len(), 1);
        let text = ipt_open(hole, remove, insert).unwrap();
        assert!(
            text.contains("-D INPUT -m comment --comment warren -j WARREN-INPUT\n"),
            "{text}"
        );
        assert!(
            !text.contains("203.0.113.9"),
            "a foreign rule is never written: {text}"
        );

        // A rule of ours removed by hand: the chain's content differs.
        let gone = opened
            .lines()
            .filter(|l| !l.contains("router's replies"))
            .collect::<Vec<_>>()
            .join("\n");
        let live = State {
            foreign: read_iptables(Source::IptablesNft, &gone).unwrap(),
            ..State::default()
        };
        let c = diff(&plan, &live, &Context::default());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].actual, "its rules differ (1 found, 2 expected)");

        // A jump removed (a manager's reload): put back.
        let nojump = opened.replace(
            "-A DOCKER-USER -m comment --comment warren -j WARREN-FORWARD\n",
            "",
        );
        let live = State {
            foreign: read_iptables(Source::IptablesNft, &nojump).unwrap(),
            ..State::default()
        };
        let c = diff(&plan, &live, &Context::default());
        assert_eq!(c[0].actual, "no jump in DOCKER-USER");
        assert_eq!(
            findings(&live.foreign, &plan)
                .iter()
                .map(|f| f.severity)
                .collect::<Vec<_>>(),
            [Severity::Ok, Severity::Warn]
        );
    }

    #[test]
    fn teardown_and_own_table_only_close_every_hole_by_its_own_rules() {
        let plan = gateway_plan();
        let seen = read_iptables(Source::IptablesNft, &cloud_docker_opened(&plan)).unwrap();
        let live = State {
            foreign: seen,
            ..State::default()
        };
        for p in [Plan::empty("gateway"), {
            let mut p = plan.clone();
            p.openings.policy = ForeignPolicy::OwnTableOnly;
            p
        }] {
            let c = diff(&p, &live, &Context::default());
            let closes: Vec<String> = c
                .iter()
                .filter_map(|c| match &c.op {
                    Op::Foreign(ForeignOp::CloseHole { hole }) => Some(ipt_close(hole)),
                    Op::Foreign(ForeignOp::OpenHole { .. })
                    | Op::Wg(_)
                    | Op::Sysctl(_)
                    | Op::Routing(_)
                    | Op::Nft(_)
                    | Op::Ipt(_)
                    | Op::Ros(_) => None,
                })
                .collect();
            assert_eq!(
                closes,
                [
                    "*filter\n:WARREN-INPUT - [0:0]\n-D INPUT -m comment --comment warren -j WARREN-INPUT\n-X WARREN-INPUT\nCOMMIT\n",
                    "*filter\n:WARREN-FORWARD - [0:0]\n-D DOCKER-USER -m comment --comment warren -j WARREN-FORWARD\n-X WARREN-FORWARD\nCOMMIT\n"
                ]
            );
        }
    }

    #[test]
    fn jumps_of_the_iptables_backend_are_not_holes() {
        // `netfilter: iptables` uses comment `warren` too, to its own chains.
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:WARREN-INBOUND - [0:0]\n\
                    -A FORWARD -m comment --comment warren -j WARREN-INBOUND\nCOMMIT\n";
        let seen = read_iptables(Source::IptablesLegacy, save).unwrap();
        assert!(seen.holes.is_empty());
        assert!(!seen.chains.iter().any(ForeignChain::would_drop));
        assert_eq!(
            findings(&seen, &gateway_plan())[0].what,
            "no foreign filter chain drops Warren's paths"
        );
    }

    #[test]
    fn own_table_only_names_each_problem_with_the_exact_commands() {
        let mut plan = gateway_plan();
        plan.openings.policy = ForeignPolicy::OwnTableOnly;
        let seen = read_iptables(Source::IptablesNft, CLOUD_DOCKER).unwrap();
        assert!(desired(&seen, &plan).is_empty());
        let f = findings(&seen, &plan);
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|f| f.severity == Severity::Breaks));
        assert_eq!(
            f[0].what,
            "iptables-nft filter INPUT (1 DROP/REJECT rule(s)) would drop Warren's 1 input path(s)"
        );
        assert_eq!(
            f[0].fix,
            "iptables -I INPUT -p udp -i enp0s6 --dport 51820 -j ACCEPT"
        );
        assert_eq!(
            f[1].fix,
            "iptables -I DOCKER-USER -i wg0 -o enp0s6 -s 10.0.18.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             iptables -I DOCKER-USER -i enp0s6 -o wg0 -d 10.0.18.2/32 -m conntrack --ctstate DNAT -j ACCEPT"
        );
    }

    #[test]
    fn ufw_gets_ufw_commands() {
        let save = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:ufw-before-forward - [0:0]\n\
                    -A FORWARD -j ufw-before-forward\nCOMMIT\n";
        let mut plan = Plan::empty("router");
        plan.openings.forward = vec![
            accept(
                vec![
                    Match::Iif("wg0".into()),
                    Match::DaddrIs("192.168.16.20/32".parse().unwrap()),
                    Match::Dport(L4::Tcp, port(25565)),
                    Match::CtDnat,
                ],
                "warren: forward minecraft",
            ),
            accept(vec![Match::Oif("wg0".into()), Match::CtEstablished], "replies"),
        ];
        let seen = read_iptables(Source::IptablesNft, save).unwrap();
        assert_eq!(seen.managers, [Manager::Ufw].into());
        let f = findings(&seen, &plan);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].fix
                .contains("ufw route allow in on wg0 from any to 192.168.16.20 port 25565 proto tcp"),
            "{}",
            f[0].fix
        );
        // Under auto, ufw's built-in chains get Warren's jump.
        plan.openings.policy = ForeignPolicy::Auto;
        assert_eq!(desired(&seen, &plan)[0].from, ["FORWARD"]);
    }

    const HOME_NFT: &str = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
        {"table":{"family":"ip","name":"filter","handle":1}},
        {"chain":{"family":"ip","table":"filter","name":"FORWARD","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},
        {"table":{"family":"ip","name":"warren","handle":3}},
        {"chain":{"family":"ip","table":"warren","name":"forward","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"accept"}},
        {"table":{"family":"inet","name":"filter","handle":2}},
        {"chain":{"family":"inet","table":"filter","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}},
        {"chain":{"family":"inet","table":"filter","name":"forward","handle":2,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},
        {"chain":{"family":"inet","table":"filter","name":"warren_forward","handle":9}},
        {"rule":{"family":"inet","table":"filter","chain":"forward","handle":11,"comment":"warren","expr":[{"jump":{"target":"warren_forward"}}]}},
        {"rule":{"family":"inet","table":"filter","chain":"forward","handle":3,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}},
        {"rule":{"family":"inet","table":"filter","chain":"forward","handle":4,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"br-lan"}},{"accept":null}]}}
    ]}"#;

    #[test]
    fn native_nft_tables_are_read_without_warren_s_or_iptables_nft_s() {
        let seen = read_nft(HOME_NFT).unwrap();
        let names: Vec<String> = seen
            .chains
            .iter()
            .map(|c| format!("{} {}", c.name(), c.would_drop()))
            .collect();
        assert_eq!(
            names,
            ["nft inet filter input false", "nft inet filter forward true"]
        );
        assert_eq!(seen.holes.len(), 1);
        assert_eq!(seen.holes[0].jumps[0].handle, Some(11));
        assert_eq!(seen.holes[0].rules, Vec::<String>::new());
        let plan = gateway_plan();
        let w = desired(&seen, &plan);
        assert_eq!(w.len(), 1);
        // The jump is in place; the chain is empty: flush and refill only.
        let (remove, insert, differ) = compare(&w[0], Some(&seen.holes[0])).unwrap();
        assert!(remove.is_empty() && insert.is_empty() && differ);
        let j = nft_open(&w[0], &remove, &insert).to_string();
        assert!(j.starts_with(r#"{"nftables":[{"add":{"chain":{"family":"inet","name":"warren_forward","table":"filter"}}},{"flush":"#), "{j}");
        assert!(!j.contains("insert") && !j.contains("delete"), "{j}");
        assert_eq!(
            nft_close(&seen.holes[0]).to_string(),
            r#"{"nftables":[{"delete":{"rule":{"chain":"forward","family":"inet","handle":11,"table":"filter"}}},{"delete":{"chain":{"family":"inet","name":"warren_forward","table":"filter"}}}]}"#
        );
        let fresh = nft_open(&w[0], &[], &w[0].from).to_string();
        assert!(fresh.ends_with(r#"{"insert":{"rule":{"chain":"forward","comment":"warren","expr":[{"jump":{"target":"warren_forward"}}],"family":"inet","table":"filter"}}}]}"#), "{fresh}");
    }

    #[test]
    fn firewalld_is_never_written_and_doctor_says_what_to_run() {
        let listing = r#"{"nftables":[{"table":{"family":"inet","name":"firewalld","handle":5}},
            {"chain":{"family":"inet","table":"firewalld","name":"filter_FORWARD","handle":1,"type":"filter","hook":"forward","prio":10,"policy":"accept"}},
            {"rule":{"family":"inet","table":"firewalld","chain":"filter_FORWARD","handle":2,"expr":[{"reject":{"type":"icmpx","expr":"admin-prohibited"}}]}}]}"#;
        let seen = read_nft(listing).unwrap();
        assert_eq!(seen.managers, [Manager::Firewalld].into());
        let plan = gateway_plan();
        assert!(desired(&seen, &plan).is_empty());
        let f = findings(&seen, &plan);
        assert_eq!(f[0].severity, Severity::Breaks);
        assert!(
            f[0].fix.contains("firewall-cmd --permanent --new-policy warren"),
            "{}",
            f[0].fix
        );
        assert!(
            f[0].fix.contains(r#"firewall-cmd --permanent --policy warren --add-rich-rule='rule family="ipv4" destination address="10.0.18.2" accept'"#),
            "{}",
            f[0].fix
        );
        assert!(f[0].fix.ends_with("firewall-cmd --reload"));
    }

    #[test]
    fn comments_are_tagged_short_and_quotable() {
        let long = accept(vec![], &format!("warren: \"{}\"", "é".repeat(80)));
        let c = tagged_comment(&long);
        assert!(c.len() <= 96 + 15, "{}", c.len());
        assert!(!c.contains('"'));
        assert_ne!(
            tagged_comment(&long),
            tagged_comment(&accept(vec![Match::CtNew], &long.comment))
        );
        assert!(read_nft("[]").is_err());
        assert!(read_iptables(Source::IptablesNft, "-A INPUT -j DROP").is_err());
    }
}
