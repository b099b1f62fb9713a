//! The host's own (foreign) firewall: chains Warren did not create that
//! would drop Warren's traffic, and the holes Warren opens through them
//! (`foreign_firewall: auto`, see [`warren_plan::foreign`]).
//!
//! Observing reads `iptables-nft-save -t filter`, `iptables-legacy-save -t
//! filter` (only when the legacy filter table exists: reading it would
//! otherwise create it) and `nft -j list ruleset`. Applying writes only
//! Warren's owned chains (`WARREN-INPUT`/`WARREN-FORWARD`, `warren_input`/
//! `warren_forward`) and Warren's own jump rules to them (comment `warren`),
//! each hole in one transaction (`iptables-<variant>-restore --noflush` or
//! `nft -j -f -`). A rule Warren did not create is never deleted, reordered
//! or rewritten: jumps are removed by their exact spec or their handle, and
//! only those the observation found to be Warren's.

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::{anyhow, Result};
use std::path::Path;
use warren_plan::diff::ForeignOp;
use warren_plan::foreign::{self, ForeignState, Source};
use warren_plan::{Finding, Plan, Severity, State};

#[derive(Debug, Default)]
pub struct Foreign;

/// Where the kernel lists the legacy iptables tables that exist.
const LEGACY_TABLES: &str = "/proc/net/ip_tables_names";

/// Whether a read failed because the tool is not installed, or (older
/// iptables) because its table does not exist: nothing to see either way.
fn not_installed(e: &anyhow::Error) -> bool {
    let s = format!("{e:#}");
    s.contains("is it installed") || s.contains("No such file or directory") || s.contains("does not exist")
}

fn save_prog(source: Source) -> &'static str {
    match source {
        Source::IptablesLegacy => "iptables-legacy-save",
        Source::IptablesNft | Source::Nft => "iptables-nft-save",
    }
}

fn restore_prog(source: Source) -> &'static str {
    match source {
        Source::IptablesLegacy => "iptables-legacy-restore",
        Source::IptablesNft | Source::Nft => "iptables-nft-restore",
    }
}

impl Foreign {
    /// The host's own filter chains on Warren's paths, and Warren's holes.
    pub fn read(&self, sys: &dyn Sys) -> Result<ForeignState> {
        let mut out = ForeignState::default();
        let legacy = sys
            .read_file(Path::new(LEGACY_TABLES))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "filter"));
        for (source, wanted) in [(Source::IptablesNft, true), (Source::IptablesLegacy, legacy)] {
            if !wanted {
                continue;
            }
            let prog = save_prog(source);
            match sys.read(prog, &["-t", "filter"]) {
                Ok(text) => {
                    out.merge(foreign::read_iptables(source, &text).map_err(|e| anyhow!("{prog}: {e}"))?)
                }
                Err(e) if not_installed(&e) => {}
                Err(e) => return Err(e),
            }
        }
        match sys.read("nft", &["-j", "list", "ruleset"]) {
            Ok(text) => out.merge(foreign::read_nft(&text)?),
            Err(e) if not_installed(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }
}

impl Backend for Foreign {
    type Op = ForeignOp;
    fn name(&self) -> &'static str {
        "foreign firewall"
    }
    fn observe(&self, sys: &dyn Sys, _: &Scope, state: &mut State) -> Result<()> {
        state.foreign = self.read(sys)?;
        Ok(())
    }
    fn apply(&mut self, sys: &mut dyn Sys, op: &ForeignOp) -> Result<Option<Claim>> {
        match op {
            ForeignOp::OpenHole { hole, remove, insert } => match hole.source {
                Source::Nft => {
                    let j = foreign::nft_open(hole, remove, insert).to_string();
                    sys.write("nft", &["-j", "-f", "-"], Some(&j))?;
                }
                s @ (Source::IptablesNft | Source::IptablesLegacy) => {
                    let text = foreign::ipt_open(hole, remove, insert)?;
                    sys.write(restore_prog(s), &["--noflush"], Some(&text))?;
                }
            },
            ForeignOp::CloseHole { hole } => match hole.source {
                Source::Nft => {
                    let j = foreign::nft_close(hole).to_string();
                    sys.write("nft", &["-j", "-f", "-"], Some(&j))?;
                }
                s @ (Source::IptablesNft | Source::IptablesLegacy) => {
                    sys.write(restore_prog(s), &["--noflush"], Some(&foreign::ipt_close(hole)))?;
                }
            },
        }
        Ok(None)
    }
}

/// `warren-agent doctor`'s findings about foreign firewalls on the paths
/// `plan`'s traffic takes. Without a plan, each chain that would drop is a
/// warning (which paths it breaks depends on the plan).
pub fn doctor_findings(sys: &dyn Sys, plan: Option<&Plan>) -> Vec<Finding> {
    let observed = match Foreign.read(sys) {
        Ok(o) => o,
        Err(e) => {
            return vec![Finding {
                check: "foreign-firewall".into(),
                severity: Severity::Warn,
                what: format!("cannot read the host's own firewall: {e:#}"),
                why: "a foreign chain that drops Warren's traffic would go unnoticed".into(),
                fix: "run `warren-agent doctor` as root with iptables-save and nft installed".into(),
            }]
        }
    };
    match plan {
        Some(plan) => foreign::findings(&observed, plan),
        None => {
            let v: Vec<Finding> = observed
                .chains
                .iter()
                .filter(|c| c.base && c.would_drop())
                .map(|c| Finding {
                    check: "foreign-firewall".into(),
                    severity: Severity::Warn,
                    what: format!("{} would drop some traffic", c.name()),
                    why: "no plan is applied yet, so which of Warren's paths it drops is not known".into(),
                    fix: String::new(),
                })
                .collect();
            if v.is_empty() {
                foreign::findings(&observed, &Plan::empty(""))
            } else {
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use warren_plan::nft::{Match, Ports, Rule, Stmt, L4};
    use warren_plan::{diff, Context, ForeignPolicy, Op};

    const CLOUD: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                         -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
                         -A INPUT -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n";

    const HOME: &str = r#"{"nftables":[{"table":{"family":"inet","name":"filter","handle":2}},
        {"chain":{"family":"inet","table":"filter","name":"forward","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},
        {"chain":{"family":"inet","table":"filter","name":"warren_forward","handle":5}},
        {"rule":{"family":"inet","table":"filter","chain":"forward","handle":3,"expr":[{"accept":null}]}},
        {"rule":{"family":"inet","table":"filter","chain":"forward","handle":7,"comment":"warren","expr":[{"jump":{"target":"warren_forward"}}]}}]}"#;

    fn plan() -> Plan {
        let mut p = Plan::empty("gateway");
        p.openings.policy = ForeignPolicy::Auto;
        let rule = |m: Vec<Match>, c: &str| Rule {
            matches: m,
            stmts: vec![Stmt::Accept],
            comment: c.into(),
        };
        p.openings.input = vec![rule(
            vec![Match::Dport(
                L4::Udp,
                Ports {
                    first: 51820,
                    last: 51820,
                },
            )],
            "warren: WAN VPN",
        )];
        p.openings.forward = vec![rule(vec![Match::Oif("wg0".into())], "warren: fwd")];
        p
    }

    fn host() -> Recorder {
        let mut sys = Recorder::default();
        sys.reads
            .insert("iptables-nft-save -t filter".into(), CLOUD.into());
        sys.reads.insert("nft -j list ruleset".into(), HOME.into());
        sys
    }

    #[test]
    fn legacy_is_read_only_when_its_filter_table_exists() {
        let mut sys = host();
        let seen = Foreign.read(&sys).unwrap();
        assert!(seen.chains.iter().all(|c| c.source != Source::IptablesLegacy));
        sys.files.insert(LEGACY_TABLES.into(), "nat\nfilter\n".into());
        // Listed but the tool is missing: nothing to read, no error.
        assert!(Foreign.read(&sys).is_ok());
        sys.reads
            .insert("iptables-legacy-save -t filter".into(), CLOUD.into());
        let seen = Foreign.read(&sys).unwrap();
        assert!(seen
            .chains
            .iter()
            .any(|c| c.source == Source::IptablesLegacy && c.would_drop()));
    }

    #[test]
    fn each_hole_is_one_transaction_and_closing_removes_only_warren_s_rules() {
        let mut sys = host();
        let p = plan();
        let live = State {
            foreign: Foreign.read(&sys).unwrap(),
            ..State::default()
        };
        let changes = diff(&p, &live, &Context::default());
        let mut be = Foreign;
        for c in &changes {
            let Op::Foreign(op) = &c.op else { panic!("{c}") };
            be.apply(&mut sys, op).unwrap();
        }
        let tag = foreign::tagged_comment(&p.openings.input[0]);
        let tag_fwd = foreign::tagged_comment(&p.openings.forward[0]);
        assert_eq!(
            sys.log,
            [
                format!(
                    "iptables-nft-restore --noflush <<< *filter\n:WARREN-INPUT - [0:0]\n\
                     -A WARREN-INPUT -p udp --dport 51820 -m comment --comment \"{tag}\" -j ACCEPT\n\
                     -I INPUT 1 -m comment --comment warren -j WARREN-INPUT\nCOMMIT\n"
                ),
                // The jump (handle 7) is not first: deleted by handle, inserted at the top.
                format!(
                    "nft -j -f - <<< {{\"nftables\":[{{\"add\":{{\"chain\":{{\"family\":\"inet\",\"name\":\"warren_forward\",\"table\":\"filter\"}}}}}},\
                     {{\"flush\":{{\"chain\":{{\"family\":\"inet\",\"name\":\"warren_forward\",\"table\":\"filter\"}}}}}},\
                     {{\"add\":{{\"rule\":{{\"chain\":\"warren_forward\",\"comment\":\"{tag_fwd}\",\"expr\":[{{\"match\":{{\"left\":{{\"meta\":{{\"key\":\"oifname\"}}}},\"op\":\"==\",\"right\":\"wg0\"}}}},{{\"accept\":null}}],\"family\":\"inet\",\"table\":\"filter\"}}}}}},\
                     {{\"delete\":{{\"rule\":{{\"chain\":\"forward\",\"family\":\"inet\",\"handle\":7,\"table\":\"filter\"}}}}}},\
                     {{\"insert\":{{\"rule\":{{\"chain\":\"forward\",\"comment\":\"warren\",\"expr\":[{{\"jump\":{{\"target\":\"warren_forward\"}}}}],\"family\":\"inet\",\"table\":\"filter\"}}}}}}]}}"
                ),
            ]
        );
        // Teardown: the plan that wants nothing closes what is there.
        sys.log.clear();
        let live = State {
            foreign: Foreign.read(&sys).unwrap(),
            ..State::default()
        };
        for c in diff(&Plan::empty("gateway"), &live, &Context::default()) {
            let Op::Foreign(op) = &c.op else { panic!("{c}") };
            be.apply(&mut sys, op).unwrap();
        }
        assert_eq!(
            sys.log,
            [
                r#"nft -j -f - <<< {"nftables":[{"delete":{"rule":{"chain":"forward","family":"inet","handle":7,"table":"filter"}}},{"delete":{"chain":{"family":"inet","name":"warren_forward","table":"filter"}}}]}"#
            ]
        );
    }

    #[test]
    fn doctor_names_the_dropping_chains() {
        let sys = host();
        let mut p = plan();
        p.openings.policy = ForeignPolicy::OwnTableOnly;
        let f = doctor_findings(&sys, Some(&p));
        let what: Vec<(Severity, &str)> = f.iter().map(|f| (f.severity, f.what.as_str())).collect();
        assert_eq!(
            what,
            [
                (
                    Severity::Breaks,
                    "iptables-nft filter INPUT (1 DROP/REJECT rule(s)) would drop Warren's 1 input path(s)"
                ),
                (
                    Severity::Breaks,
                    "nft inet filter forward (policy drop) would drop Warren's 1 forward path(s)"
                )
            ]
        );
        assert_eq!(
            f[1].fix,
            "nft insert rule inet filter forward oifname \"wg0\" accept"
        );
        assert_eq!(doctor_findings(&sys, None).len(), 2);
        let broken = Recorder::default();
        let mut broken = broken;
        broken
            .reads
            .insert("iptables-nft-save -t filter".into(), "garbage".into());
        assert_eq!(doctor_findings(&broken, Some(&p))[0].severity, Severity::Warn);
    }
}
