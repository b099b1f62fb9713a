//! Warren's iptables chains (`netfilter: iptables`): owned `WARREN-*`
//! chains in the `mangle` and `nat` tables ([`RULESET_TABLES`]), each
//! reached by one jump rule (comment `warren`) at the top of a built-in
//! chain, written in one `iptables-restore --noflush` transaction with the
//! variant (nft or legacy) the host already uses ([`detect`]), and read
//! back with that variant's `iptables-save`, normalized.
//!
//! No chain or rule Warren did not create is ever written: the transaction
//! declares (and so flushes) only owned chains, deletes only jump rules that
//! carry Warren's comment and point to an owned chain, and deletes only
//! owned chains. `WARREN-*` chains in `filter` are not this backend's (the
//! foreign-firewall openings own them).

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::{anyhow, Result};
use std::collections::BTreeSet;
use std::fmt::Write;
use warren_plan::diff::IptOp;
use warren_plan::ipt::{
    jump_line, parse_save, rule_args, IptRuleset, SavedRule, SavedTables, CHAIN_PREFIX, JUMP_COMMENT,
    RULESET_TABLES,
};
use warren_plan::{Firewall, IptState, State};

#[derive(Debug, Default)]
pub struct Iptables;

/// The two iptables implementations; a host uses one, and Warren never
/// writes with the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `iptables-nft`: iptables rules stored as nftables tables.
    Nft,
    /// `iptables-legacy`: the x_tables kernel interface.
    Legacy,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Nft => "nft",
            Variant::Legacy => "legacy",
        }
    }
    pub fn save(self) -> &'static str {
        match self {
            Variant::Nft => "iptables-nft-save",
            Variant::Legacy => "iptables-legacy-save",
        }
    }
    pub fn restore(self) -> &'static str {
        match self {
            Variant::Nft => "iptables-nft-restore",
            Variant::Legacy => "iptables-legacy-restore",
        }
    }
}

/// The variant the host uses, its whole dump, and why it was chosen.
#[derive(Debug)]
pub struct Detected {
    pub variant: Variant,
    pub tables: SavedTables,
    pub why: String,
}

/// A command that is not installed (the `Live` and `Recorder` wordings).
fn missing(e: &anyhow::Error) -> bool {
    let s = format!("{e:#}");
    s.contains("is it installed") || s.contains("No such file or directory")
}

/// One variant's whole dump; `None` when that variant is not installed.
fn dump(sys: &dyn Sys, v: Variant) -> Result<Option<SavedTables>> {
    match sys.read(v.save(), &[]) {
        Ok(text) => Ok(Some(parse_save(&text).map_err(|e| anyhow!("{}: {e}", v.save()))?)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Rules, user chains, or a built-in chain whose policy is not ACCEPT.
fn has_content(t: &SavedTables) -> bool {
    t.values().any(|table| {
        !table.rules.is_empty()
            || table
                .chains
                .values()
                .any(|policy| policy.as_deref() != Some("ACCEPT"))
    })
}

/// Whether `v` is installed and holds anything ([`has_content`]): the same
/// judgement [`detect`] makes, for `doctor` to report.
pub fn holds_content(sys: &dyn Sys, v: Variant) -> bool {
    dump(sys, v).ok().flatten().is_some_and(|t| has_content(&t))
}

fn holds_warren(t: &SavedTables) -> bool {
    t.values()
        .any(|table| table.chains.keys().any(|c| c.starts_with(CHAIN_PREFIX)))
}

/// The variant this host already uses, so Warren never mixes them: the one
/// with rules or chains if only one has any; if both have, the one holding
/// Warren's chains, else nft (logged); if neither has, what `iptables -V`
/// names. `None` when no iptables is installed.
pub fn detect(sys: &dyn Sys) -> Result<Option<Detected>> {
    let legacy = dump(sys, Variant::Legacy)?;
    let nft = dump(sys, Variant::Nft)?;
    let pick = |variant: Variant, why: String| {
        let tables = match variant {
            Variant::Nft => nft.clone(),
            Variant::Legacy => legacy.clone(),
        };
        tables.map(|tables| Detected { variant, tables, why })
    };
    let l = legacy.as_ref().is_some_and(has_content);
    let n = nft.as_ref().is_some_and(has_content);
    Ok(match (legacy.is_some(), nft.is_some()) {
        (false, false) => None,
        (true, false) => pick(Variant::Legacy, "only iptables-legacy is installed".into()),
        (false, true) => pick(Variant::Nft, "only iptables-nft is installed".into()),
        (true, true) => match (l, n) {
            (true, false) => pick(Variant::Legacy, "the host's rules are in iptables-legacy".into()),
            (false, true) => pick(Variant::Nft, "the host's rules are in iptables-nft".into()),
            (true, true) => {
                let (v, why) = match (
                    legacy.as_ref().is_some_and(holds_warren),
                    nft.as_ref().is_some_and(holds_warren),
                ) {
                    (true, false) => (Variant::Legacy, "it holds Warren's chains"),
                    (false, true) => (Variant::Nft, "it holds Warren's chains"),
                    _ => (Variant::Nft, "the default"),
                };
                tracing::warn!(
                    variant = v.as_str(),
                    "both iptables-legacy and iptables-nft hold rules on this host; Warren uses {} ({why}) and never writes the other",
                    v.as_str()
                );
                pick(
                    v,
                    format!("both variants hold rules; {} because {why}", v.as_str()),
                )
            }
            (false, false) => {
                let version = sys.read("iptables", &["-V"]).unwrap_or_default();
                if version.contains("legacy") {
                    pick(Variant::Legacy, format!("`iptables -V`: {}", version.trim()))
                } else {
                    pick(Variant::Nft, format!("`iptables -V`: {}", version.trim()))
                }
            }
        },
    })
}

/// A jump rule Warren put there: its comment, and an owned target.
fn is_jump(r: &SavedRule) -> bool {
    r.comment.as_deref() == Some(JUMP_COMMENT)
        && r.target.as_deref().is_some_and(|t| t.starts_with(CHAIN_PREFIX))
        && !r.chain.starts_with(CHAIN_PREFIX)
}

/// Warren's part of a dump, normalized: per ruleset table, the owned
/// chains' names, then Warren's jump rules and the owned chains' rules in
/// the dump's order (no counters, no comment lines); `None` if there is none.
pub fn normalize(variant: Variant, tables: &SavedTables) -> Option<String> {
    let mut o = String::new();
    for t in RULESET_TABLES {
        let Some(table) = tables.get(t.as_str()) else {
            continue;
        };
        let owned: Vec<&String> = table
            .chains
            .keys()
            .filter(|c| c.starts_with(CHAIN_PREFIX))
            .collect();
        let rules: Vec<&SavedRule> = table
            .rules
            .iter()
            .filter(|r| r.chain.starts_with(CHAIN_PREFIX) || is_jump(r))
            .collect();
        if owned.is_empty() && rules.is_empty() {
            continue;
        }
        let _ = writeln!(o, "*{}", t.as_str());
        for c in owned {
            let _ = writeln!(o, ":{c}");
        }
        for r in rules {
            let _ = writeln!(o, "-A {} {}", r.chain, r.spec);
        }
    }
    (!o.is_empty()).then(|| format!("variant {}\n{o}", variant.as_str()))
}

/// The one `iptables-restore --noflush` input that turns the owned chains
/// of `tables` into `ruleset` (an empty ruleset removes them all); `None`
/// when there is nothing to write.
pub fn restore_text(tables: &SavedTables, ruleset: &IptRuleset) -> Result<Option<String>> {
    let mut o = String::new();
    for t in RULESET_TABLES {
        let saved = tables.get(t.as_str());
        let wanted: Vec<_> = ruleset.chains.iter().filter(|c| c.table == t).collect();
        let mut lines = Vec::new();
        // Declaring an existing chain in --noflush mode flushes it.
        for c in &wanted {
            lines.push(format!(":{} - [0:0]", c.name));
        }
        // Keep the first jump to each wanted chain from its built-in
        // chain; delete Warren's other jumps (stale, duplicated, moved).
        let mut kept = BTreeSet::new();
        for j in saved.iter().flat_map(|s| s.rules.iter()).filter(|r| is_jump(r)) {
            let target = j.target.clone().unwrap_or_default();
            let wanted_here = wanted.iter().any(|c| c.from == j.chain && c.name == target);
            if !(wanted_here && kept.insert((j.chain.clone(), target))) {
                lines.push(format!("-D {} {}", j.chain, j.spec));
            }
        }
        for c in &wanted {
            for r in &c.rules {
                let args = rule_args(r).map_err(|e| anyhow!("iptables chain {}: {e}", c.name))?;
                lines.push(format!("-A {} {}", c.name, args.join(" ")));
            }
        }
        // Each jump is inserted at the top: the last one inserted runs
        // first, so insert in reverse to keep the ruleset's order.
        for c in wanted.iter().rev() {
            if !kept.contains(&(c.from.clone(), c.name.clone())) {
                lines.push(jump_line(&c.from, &c.name));
            }
        }
        let stale = saved
            .iter()
            .flat_map(|s| s.chains.keys())
            .filter(|n| n.starts_with(CHAIN_PREFIX) && !wanted.iter().any(|c| &c.name == *n));
        for name in stale {
            lines.push(format!("-F {name}"));
            lines.push(format!("-X {name}"));
        }
        if !lines.is_empty() {
            let _ = writeln!(o, "*{}", t.as_str());
            for l in lines {
                let _ = writeln!(o, "{l}");
            }
            let _ = writeln!(o, "COMMIT");
        }
    }
    Ok((!o.is_empty()).then_some(o))
}

impl Iptables {
    /// Warren's chains as the kernel has them, normalized; `None` when there
    /// are none or no iptables is installed.
    pub fn read(&self, sys: &dyn Sys) -> Result<Option<IptState>> {
        Ok(detect(sys)?
            .and_then(|d| normalize(d.variant, &d.tables))
            .map(|normalized| IptState { normalized }))
    }

    /// Write `ruleset` (empty: remove everything) in one transaction.
    fn converge(&self, sys: &mut dyn Sys, ruleset: &IptRuleset) -> Result<()> {
        let Some(d) = detect(sys)? else {
            if ruleset.chains.is_empty() {
                return Ok(());
            }
            return Err(anyhow!(
                "netfilter: iptables, but neither iptables-nft-restore nor iptables-legacy-restore is installed"
            ));
        };
        let Some(text) = restore_text(&d.tables, ruleset)? else {
            return Ok(());
        };
        tracing::info!(variant = d.variant.as_str(), why = %d.why, "iptables-restore --noflush");
        // -w: legacy iptables takes the xtables lock; wait for it rather than fail.
        sys.write(d.variant.restore(), &["--noflush", "-w", "5"], Some(&text))?;
        Ok(())
    }
}

impl Backend for Iptables {
    type Op = IptOp;
    fn name(&self) -> &'static str {
        "iptables"
    }
    /// Only when a plan in scope is on iptables (the desired one, or the
    /// applied one being converged away from or torn down): a host on nft
    /// that never used iptables runs no iptables command at all.
    fn observe(&self, sys: &dyn Sys, scope: &Scope, state: &mut State) -> Result<()> {
        let relevant = scope
            .plans
            .iter()
            .any(|p| matches!(p.firewall, Firewall::Iptables(_)));
        state.iptables = if relevant { self.read(sys)? } else { None };
        Ok(())
    }
    fn apply(&mut self, sys: &mut dyn Sys, op: &IptOp) -> Result<Option<Claim>> {
        match op {
            IptOp::ReplaceChains { ruleset } => self.converge(sys, ruleset)?,
            IptOp::DeleteChains => self.converge(sys, &IptRuleset::default())?,
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use std::collections::BTreeSet;
    use warren_plan::ipt::{IptChain, IptTable};
    use warren_plan::nft::{Match, Ports, Rule, Stmt, L4};
    use warren_plan::Plan;

    const EMPTY_NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
    const FOREIGN: &str = "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [10:600]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";

    fn host(legacy: Option<&str>, nft: Option<&str>) -> Recorder {
        let mut sys = Recorder::default();
        if let Some(l) = legacy {
            sys.reads.insert("iptables-legacy-save ".into(), l.into());
        }
        if let Some(n) = nft {
            sys.reads.insert("iptables-nft-save ".into(), n.into());
        }
        sys
    }

    fn ruleset() -> IptRuleset {
        IptRuleset {
            chains: vec![
                IptChain {
                    table: IptTable::Nat,
                    name: "WARREN-INBOUND".into(),
                    from: "PREROUTING".into(),
                    rules: vec![
                        Rule {
                            matches: vec![
                                Match::Iif("enp0s6".into()),
                                Match::Dport(
                                    L4::Udp,
                                    Ports {
                                        first: 51820,
                                        last: 51820,
                                    },
                                ),
                            ],
                            stmts: vec![Stmt::Return],
                            comment: "kept".into(),
                        },
                        Rule {
                            matches: vec![Match::Iif("enp0s6".into())],
                            stmts: vec![Stmt::Dnat("10.0.18.2".parse().unwrap())],
                            comment: "".into(),
                        },
                    ],
                },
                IptChain {
                    table: IptTable::Mangle,
                    name: "WARREN-CLAMP".into(),
                    from: "FORWARD".into(),
                    rules: vec![Rule {
                        matches: vec![Match::Oif("wg0".into()), Match::TcpSyn, Match::MssAbove(1380)],
                        stmts: vec![Stmt::MssSet(1380)],
                        comment: "".into(),
                    }],
                },
            ],
        }
    }

    #[test]
    fn the_variant_is_the_one_the_host_already_uses() {
        let legacy_rules = FOREIGN;
        let d = detect(&host(Some(legacy_rules), Some(""))).unwrap().unwrap();
        assert_eq!(d.variant, Variant::Legacy, "{}", d.why);
        let d = detect(&host(Some(EMPTY_NAT), Some(FOREIGN))).unwrap().unwrap();
        assert_eq!(d.variant, Variant::Nft, "{}", d.why);
        // Neither has rules: `iptables -V` decides.
        let mut sys = host(Some(EMPTY_NAT), Some(""));
        sys.reads
            .insert("iptables -V".into(), "iptables v1.8.9 (legacy)\n".into());
        assert_eq!(detect(&sys).unwrap().unwrap().variant, Variant::Legacy);
        sys.reads
            .insert("iptables -V".into(), "iptables v1.8.9 (nf_tables)\n".into());
        assert_eq!(detect(&sys).unwrap().unwrap().variant, Variant::Nft);
        // Both have rules: the one holding Warren's chains, else nft.
        let ours = "*nat\n:PREROUTING ACCEPT [0:0]\n:WARREN-INBOUND - [0:0]\nCOMMIT\n";
        let d = detect(&host(Some(ours), Some(FOREIGN))).unwrap().unwrap();
        assert_eq!(d.variant, Variant::Legacy);
        let d = detect(&host(Some(FOREIGN), Some(FOREIGN))).unwrap().unwrap();
        assert_eq!(d.variant, Variant::Nft);
        // No iptables installed: nothing to read, and reading costs nothing.
        assert!(detect(&host(None, None)).unwrap().is_none());
        assert_eq!(Iptables.read(&host(None, None)).unwrap(), None);
        assert_eq!(
            detect(&host(Some(""), None)).unwrap().unwrap().variant,
            Variant::Legacy
        );
    }

    #[test]
    fn the_chains_are_created_in_one_noflush_transaction_of_the_hosts_variant() {
        let mut sys = host(Some(FOREIGN), Some(""));
        let op = IptOp::ReplaceChains { ruleset: ruleset() };
        assert_eq!(Iptables.apply(&mut sys, &op).unwrap(), None);
        assert_eq!(
            sys.log,
            ["iptables-legacy-restore --noflush -w 5 <<< *mangle\n\
:WARREN-CLAMP - [0:0]\n\
-A WARREN-CLAMP -p tcp -o wg0 --tcp-flags SYN,RST SYN -m tcpmss --mss 1381:65535 -j TCPMSS --set-mss 1380\n\
-I FORWARD 1 -m comment --comment warren -j WARREN-CLAMP\n\
COMMIT\n\
*nat\n\
:WARREN-INBOUND - [0:0]\n\
-A WARREN-INBOUND -p udp -i enp0s6 --dport 51820 -m comment --comment kept -j RETURN\n\
-A WARREN-INBOUND -i enp0s6 -j DNAT --to-destination 10.0.18.2\n\
-I PREROUTING 1 -m comment --comment warren -j WARREN-INBOUND\n\
COMMIT\n"]
        );
    }

    /// What iptables-save prints once the ruleset and some leftovers are in.
    const LIVE: &str = "# Generated by iptables-save v1.8.9\n*nat\n:PREROUTING ACCEPT [5:300]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:WARREN-INBOUND - [0:0]\n:WARREN-OLD - [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m comment --comment warren -j WARREN-INBOUND\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A PREROUTING -m comment --comment warren -j WARREN-INBOUND\n-A POSTROUTING -m comment --comment warren -j WARREN-OLD\n-A WARREN-INBOUND -i enp0s6 -j DNAT --to-destination 10.0.18.2\n-A WARREN-OLD -j RETURN\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:WARREN-INPUT - [0:0]\n-A INPUT -m comment --comment warren -j WARREN-INPUT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";

    #[test]
    fn existing_jumps_are_kept_and_stale_owned_chains_removed_in_the_same_transaction() {
        let mut sys = host(Some(""), Some(LIVE));
        let mut r = ruleset();
        r.chains.retain(|c| c.table == IptTable::Nat);
        Iptables
            .apply(&mut sys, &IptOp::ReplaceChains { ruleset: r })
            .unwrap();
        assert_eq!(
            sys.log,
            ["iptables-nft-restore --noflush -w 5 <<< *nat\n\
:WARREN-INBOUND - [0:0]\n\
-D PREROUTING -m comment --comment warren -j WARREN-INBOUND\n\
-D POSTROUTING -m comment --comment warren -j WARREN-OLD\n\
-A WARREN-INBOUND -p udp -i enp0s6 --dport 51820 -m comment --comment kept -j RETURN\n\
-A WARREN-INBOUND -i enp0s6 -j DNAT --to-destination 10.0.18.2\n\
-F WARREN-OLD\n\
-X WARREN-OLD\n\
COMMIT\n"],
            "one jump kept, its duplicate and the stale chain's jump deleted; DOCKER and filter untouched"
        );
    }

    #[test]
    fn delete_removes_only_warrens_chains_and_jumps_and_nothing_is_no_write() {
        let mut sys = host(Some(""), Some(LIVE));
        Iptables.apply(&mut sys, &IptOp::DeleteChains).unwrap();
        assert_eq!(
            sys.log,
            ["iptables-nft-restore --noflush -w 5 <<< *nat\n\
-D PREROUTING -m comment --comment warren -j WARREN-INBOUND\n\
-D PREROUTING -m comment --comment warren -j WARREN-INBOUND\n\
-D POSTROUTING -m comment --comment warren -j WARREN-OLD\n\
-F WARREN-INBOUND\n\
-X WARREN-INBOUND\n\
-F WARREN-OLD\n\
-X WARREN-OLD\n\
COMMIT\n"]
        );
        let mut clean = host(Some(FOREIGN), Some(""));
        Iptables.apply(&mut clean, &IptOp::DeleteChains).unwrap();
        let mut none = host(None, None);
        Iptables.apply(&mut none, &IptOp::DeleteChains).unwrap();
        assert_eq!(clean.writes() + none.writes(), 0);
        let mut none = host(None, None);
        let err = Iptables
            .apply(&mut none, &IptOp::ReplaceChains { ruleset: ruleset() })
            .unwrap_err();
        assert!(err.to_string().contains("is installed"), "{err}");
    }

    #[test]
    fn the_read_back_is_warrens_part_without_counters_and_in_order() {
        let n = Iptables
            .read(&host(Some(""), Some(LIVE)))
            .unwrap()
            .unwrap()
            .normalized;
        assert_eq!(
            n,
            "variant nft\n*nat\n:WARREN-INBOUND\n:WARREN-OLD\n\
-A PREROUTING -m comment --comment warren -j WARREN-INBOUND\n\
-A PREROUTING -m comment --comment warren -j WARREN-INBOUND\n\
-A POSTROUTING -m comment --comment warren -j WARREN-OLD\n\
-A WARREN-INBOUND -i enp0s6 -j DNAT --to-destination 10.0.18.2\n\
-A WARREN-OLD -j RETURN\n"
        );
        let counted = LIVE.replace("[5:300]", "[9:999]");
        let again = Iptables.read(&host(Some(""), Some(&counted))).unwrap().unwrap();
        assert_eq!(again.normalized, n, "counters are not drift");
        assert_eq!(Iptables.read(&host(Some(""), Some(FOREIGN))).unwrap(), None);
    }

    #[test]
    fn a_host_whose_plans_are_not_on_iptables_is_not_observed() {
        let sys = host(Some(""), Some(LIVE));
        let owned = BTreeSet::new();
        let nft_plan = Plan::empty("h");
        let mut state = State::default();
        let scope = Scope {
            plans: vec![&nft_plan],
            owned_interfaces: &owned,
        };
        Iptables.observe(&sys, &scope, &mut state).unwrap();
        assert_eq!(state.iptables, None);
        let mut ipt_plan = Plan::empty("h");
        ipt_plan.firewall = Firewall::Iptables(ruleset());
        let scope = Scope {
            plans: vec![&nft_plan, &ipt_plan],
            owned_interfaces: &owned,
        };
        Iptables.observe(&sys, &scope, &mut state).unwrap();
        assert!(state.iptables.is_some());
    }
}
