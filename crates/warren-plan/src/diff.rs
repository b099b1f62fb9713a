//! The pure diff: desired plan + observed state -> ordered operations.
//!
//! Operations are data with a human rendering; backends execute them. The
//! same function serves apply (what to change) and drift (what no longer
//! matches the last applied plan). Equal inputs give no operation at all.
//!
//! Each subsystem is compared by a function of its own (interfaces and their
//! peers, sysctls, routes, rules, the nft table); [`Phases`] alone decides
//! the order in which the results are applied. Like the rest of the crate it
//! must not touch the host: no I/O, no clock.

use crate::foreign::{self, ForeignState, Hole, Jump, WantHole};
use crate::ipt::IptRuleset;
use crate::net::Ipv4Cidr;
use crate::nft::{NftTable, TABLE};
use crate::plan::{Firewall, PeerKey, Plan, PolicyRule, Route, WgInterface, WgPeer};
use crate::ros::RosOp;
use crate::state::{InterfaceState, IptState, NftMemory, NftState, PeerState, State};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One operation on the host, grouped by the subsystem that executes it, so
/// an agent routes each one to its backend with one exhaustive `match`.
///
/// The group is not serialized: the JSON is the operation's own form
/// (`{"set_mtu":{"interface":"wg0","mtu":1420}}`, `"delete_table"`), the
/// same as before operations were grouped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Op {
    /// A WireGuard interface, its settings or its peers.
    Wg(WgOp),
    /// A kernel parameter under `/proc/sys`.
    Sysctl(SysctlOp),
    /// A route or policy rule tagged with [`crate::RT_PROTO`].
    Routing(RoutingOp),
    /// Warren's nftables table ([`crate::nft::TABLE`]).
    Nft(NftOp),
    /// Warren's iptables chains ([`crate::ipt::CHAIN_PREFIX`]).
    Ipt(IptOp),
    /// Warren's holes in the host's own firewall ([`crate::foreign`]).
    Foreign(ForeignOp),
    /// An object on a RouterOS router ([`crate::ros`]).
    Ros(RosOp),
}

/// An operation on a WireGuard interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WgOp {
    /// Create the interface (kernel WireGuard or `wireguard-go`).
    CreateInterface {
        /// The interface.
        name: String,
    },
    /// Configure the host's own private key for the interface (the key
    /// stays on the host; plans never carry it).
    SetPrivateKey {
        /// The interface.
        interface: String,
    },
    /// Set the UDP port the interface listens on.
    SetListenPort {
        /// The interface.
        interface: String,
        /// The port; `None` lets WireGuard pick one.
        port: Option<u16>,
    },
    /// Set the interface's MTU.
    SetMtu {
        /// The interface.
        interface: String,
        /// The MTU in bytes.
        mtu: u16,
    },
    /// Add an address to the interface.
    AddAddress {
        /// The interface.
        interface: String,
        /// The address and prefix length.
        address: Ipv4Cidr,
    },
    /// Remove an address from the interface.
    DelAddress {
        /// The interface.
        interface: String,
        /// The address and prefix length.
        address: Ipv4Cidr,
    },
    /// Bring the interface up.
    SetUp {
        /// The interface.
        interface: String,
    },
    /// Add a peer, or change it in place (its sessions survive).
    SetPeer {
        /// The interface.
        interface: String,
        /// The peer as the plan describes it.
        peer: WgPeer,
        /// The peer's public key (the plan's key, known by now).
        key: String,
    },
    /// Remove a peer.
    RemovePeer {
        /// The interface.
        interface: String,
        /// The peer's public key.
        key: String,
    },
    /// Delete an interface Warren created and no longer plans.
    DeleteInterface {
        /// The interface.
        name: String,
    },
}

/// An operation on a sysctl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SysctlOp {
    /// Write a value (the original is remembered by the agent for teardown).
    SetSysctl {
        /// The dotted name, `net.ipv4.ip_forward`.
        key: String,
        /// The value to write.
        value: String,
    },
}

/// An operation on Warren's routes and policy rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingOp {
    /// Add (or replace) a route.
    AddRoute {
        /// The route.
        route: Route,
    },
    /// Delete a route.
    DelRoute {
        /// The route.
        route: Route,
    },
    /// Add a policy rule.
    AddRule {
        /// The rule.
        rule: PolicyRule,
    },
    /// Delete a policy rule.
    DelRule {
        /// The rule.
        rule: PolicyRule,
    },
}

/// An operation on Warren's nftables table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NftOp {
    /// Replace the whole table in one atomic transaction.
    ReplaceTable {
        /// The table the plan wants.
        table: NftTable,
    },
    /// Delete the table.
    DeleteTable,
}

/// An operation on Warren's iptables chains (`netfilter: iptables`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IptOp {
    /// Make the owned chains and their jump rules exactly `ruleset`, in one
    /// `iptables-restore --noflush` transaction.
    ReplaceChains {
        /// The chains the plan wants.
        ruleset: IptRuleset,
    },
    /// Remove every owned chain and its jump rule.
    DeleteChains,
}

/// An operation on Warren's holes in the host's own (foreign) firewall:
/// owned chains and Warren's own jump rules to them, never a foreign rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignOp {
    /// Make the owned chain exactly the hole's rules, delete Warren's
    /// misplaced jumps (`remove`) and put one jump at the top of each chain
    /// of `insert`, in one transaction.
    OpenHole {
        /// The hole the plan wants.
        hole: WantHole,
        /// Warren's jumps to delete first (not at the top, duplicated, or
        /// from a chain no longer wanted).
        remove: Vec<Jump>,
        /// The foreign chains that need Warren's jump at their top.
        insert: Vec<String>,
    },
    /// Remove Warren's jumps to the owned chain, then the chain.
    CloseHole {
        /// The hole as observed.
        hole: Hole,
    },
}

impl From<RosOp> for Op {
    fn from(op: RosOp) -> Op {
        Op::Ros(op)
    }
}

impl From<ForeignOp> for Op {
    fn from(op: ForeignOp) -> Op {
        Op::Foreign(op)
    }
}

impl From<IptOp> for Op {
    fn from(op: IptOp) -> Op {
        Op::Ipt(op)
    }
}

impl From<WgOp> for Op {
    fn from(op: WgOp) -> Op {
        Op::Wg(op)
    }
}

impl From<SysctlOp> for Op {
    fn from(op: SysctlOp) -> Op {
        Op::Sysctl(op)
    }
}

impl From<RoutingOp> for Op {
    fn from(op: RoutingOp) -> Op {
        Op::Routing(op)
    }
}

impl From<NftOp> for Op {
    fn from(op: NftOp) -> Op {
        Op::Nft(op)
    }
}

/// One operation and why: the resource, what the plan wants, what is there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The resource, as people name it (`interface wg0 mtu`, `rule 456: …`).
    pub resource: String,
    /// What the plan wants.
    pub expected: String,
    /// What is there now.
    pub actual: String,
    /// What to do about it.
    pub op: Op,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.resource, self.expected, self.actual
        )
    }
}

impl Change {
    pub(crate) fn new(
        resource: String,
        expected: impl Into<String>,
        actual: impl Into<String>,
        op: impl Into<Op>,
    ) -> Change {
        Change {
            resource,
            expected: expected.into(),
            actual: actual.into(),
            op: op.into(),
        }
    }

    /// Something the plan wants that is not there.
    fn missing(resource: String, op: impl Into<Op>) -> Change {
        Change::new(resource, "present", "absent", op)
    }

    /// Something of Warren's that the plan no longer wants.
    fn unwanted(resource: String, op: impl Into<Op>) -> Change {
        Change::new(resource, "absent", "present", op)
    }
}

/// This host's own key for one interface, as the diff sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnKey {
    /// The private key exists; this is its public half (base64).
    Public(String),
    /// No private key exists yet (a read-only diff must not create one): the
    /// diff expects a new key, generated on apply.
    ToGenerate,
}

/// Everything `diff` needs besides the plan and the live state.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// This host's own key per interface (from its local private keys).
    pub own_keys: BTreeMap<String, OwnKey>,
    /// Interfaces Warren created earlier on this host (so it may delete them).
    pub owned_interfaces: BTreeSet<String>,
    /// What the last apply left in the nft table, if anything.
    pub nft_memory: Option<&'a NftMemory>,
}

/// Compare `plan` with `live`. The result is ordered so that it can be
/// applied as is (see [`Phases::into_ordered`]).
pub fn diff(plan: &Plan, live: &State, cx: &Context) -> Vec<Change> {
    if plan.platform == crate::Platform::Routeros {
        // The agent drives the router, not its own host: only RouterOS
        // objects are compared (and a plan without them wants none).
        return crate::ros::diff(plan.routeros.as_ref(), live.routeros.as_ref());
    }
    let mut phases = Phases::default();
    for want in &plan.wireguard {
        interface(want, live.interfaces.get(&want.name), cx, &mut phases);
    }
    phases.sysctls = sysctls(&plan.sysctls, &live.sysctls);
    (phases.routes, phases.stale_routes) = routes(&plan.routes, &live.routes);
    (phases.rules, phases.stale_rules) = rules(&plan.rules, &live.rules);
    match &plan.firewall {
        Firewall::Nftables(table) => {
            phases
                .table
                .extend(replace_table(table, live.nft.as_ref(), cx.nft_memory))
        }
        Firewall::Iptables(ruleset) => {
            phases
                .table
                .extend(replace_chains(ruleset, live.iptables.as_ref(), cx.nft_memory))
        }
        Firewall::None => {}
    }
    if !matches!(plan.firewall, Firewall::Nftables(_)) && live.nft.is_some() {
        phases
            .stale_table
            .push(Change::unwanted(table_resource(), NftOp::DeleteTable));
    }
    if !matches!(plan.firewall, Firewall::Iptables(_)) && live.iptables.is_some() {
        phases
            .stale_table
            .push(Change::unwanted(chains_resource(), IptOp::DeleteChains));
    }
    phases.stale_interfaces = stale_interfaces(plan, live, &cx.owned_interfaces);
    (phases.foreign, phases.stale_foreign) = foreign_holes(plan, &live.foreign);
    phases.into_ordered()
}

/// Changes sorted by when they are applied.
#[derive(Default)]
struct Phases {
    create: Vec<Change>,
    settings: Vec<Change>,
    sysctls: Vec<Change>,
    peers: Vec<Change>,
    routes: Vec<Change>,
    rules: Vec<Change>,
    foreign: Vec<Change>,
    table: Vec<Change>,
    stale_peers: Vec<Change>,
    stale_addresses: Vec<Change>,
    stale_rules: Vec<Change>,
    stale_routes: Vec<Change>,
    stale_table: Vec<Change>,
    stale_interfaces: Vec<Change>,
    stale_foreign: Vec<Change>,
}

impl Phases {
    /// Interfaces first (per-interface sysctls need them), then their
    /// settings, sysctls, peers, routes, rules, the holes in the host's own
    /// firewall, the nft table, and removals last (the holes at the very
    /// end), so that nothing the new state relies on is missing meanwhile.
    fn into_ordered(self) -> Vec<Change> {
        let Phases {
            create,
            settings,
            sysctls,
            peers,
            routes,
            rules,
            foreign,
            table,
            stale_peers,
            stale_addresses,
            stale_rules,
            stale_routes,
            stale_table,
            stale_interfaces,
            stale_foreign,
        } = self;
        let mut out = create;
        for phase in [settings, sysctls, peers, routes, rules, foreign, table] {
            out.extend(phase);
        }
        // Newest first: the order agents have always reported them in.
        out.extend(stale_peers.into_iter().rev());
        for phase in [
            stale_addresses,
            stale_rules,
            stale_routes,
            stale_table,
            stale_interfaces,
            stale_foreign,
        ] {
            out.extend(phase);
        }
        out
    }
}

/// The holes in the host's own firewall the plan wants that are missing or
/// not exactly right (to open), and Warren's holes it no longer wants (to
/// close: all of them under `own-table-only` or with no openings).
fn foreign_holes(plan: &Plan, live: &ForeignState) -> (Vec<Change>, Vec<Change>) {
    let want = foreign::desired(live, plan);
    let same = |w: &WantHole, h: &Hole| {
        w.source == h.source && w.family == h.family && w.table == h.table && w.chain == h.chain
    };
    let mut open = Vec::new();
    for w in &want {
        let have = live.holes.iter().find(|h| same(w, h));
        let Some((remove, insert, rules_differ)) = foreign::compare(w, have) else {
            continue;
        };
        let actual = match have {
            None => "absent".to_string(),
            Some(h) => {
                let mut why = Vec::new();
                for f in &insert {
                    match h.jumps.iter().find(|j| &j.from == f) {
                        Some(j) => {
                            why.push(format!("jump at position {} of {f}, not the top", j.position + 1))
                        }
                        None => why.push(format!("no jump in {f}")),
                    }
                }
                for j in remove.iter().filter(|j| !w.from.contains(&j.from)) {
                    why.push(format!("a jump from {} the plan no longer wants", j.from));
                }
                if rules_differ {
                    why.push(format!(
                        "its rules differ ({} found, {} expected)",
                        h.rules.len(),
                        w.rules.len()
                    ));
                }
                if why.is_empty() {
                    why.push("a duplicated jump".into());
                }
                why.join("; ")
            }
        };
        open.push(Change::new(
            w.name(),
            format!(
                "{} rule(s), one jump at the top of {}",
                w.rules.len(),
                w.from.join(", ")
            ),
            actual,
            ForeignOp::OpenHole {
                hole: w.clone(),
                remove,
                insert,
            },
        ));
    }
    let close = live
        .holes
        .iter()
        .filter(|h| !want.iter().any(|w| same(w, h)))
        .map(|h| Change::unwanted(h.name(), ForeignOp::CloseHole { hole: h.clone() }))
        .collect();
    (open, close)
}

/// One planned interface: created if missing, then its settings and peers.
fn interface(want: &WgInterface, have: Option<&InterfaceState>, cx: &Context, out: &mut Phases) {
    let name = &want.name;
    let empty = InterfaceState::default();
    let have = have.unwrap_or_else(|| {
        out.create.push(Change::missing(
            format!("interface {name}"),
            WgOp::CreateInterface { name: name.clone() },
        ));
        &empty
    });
    out.settings.extend(settings(want, have, cx.own_keys.get(name)));
    out.stale_addresses.extend(
        have.addresses
            .iter()
            .filter(|a| !want.addresses.contains(a))
            .map(|a| {
                Change::unwanted(
                    format!("interface {name} address {a}"),
                    WgOp::DelAddress {
                        interface: name.clone(),
                        address: *a,
                    },
                )
            }),
    );
    let (set, stale) = peers(name, &want.peers, &have.peers);
    out.peers.extend(set);
    out.stale_peers.extend(stale);
}

/// The interface's key, listen port, MTU, missing addresses and link state.
fn settings(want: &WgInterface, have: &InterfaceState, own_key: Option<&OwnKey>) -> Vec<Change> {
    let name = &want.name;
    let mut out: Vec<Change> = [
        private_key(name, have, own_key),
        listen_port(want, have),
        mtu(want, have),
    ]
    .into_iter()
    .flatten()
    .collect();
    out.extend(
        want.addresses
            .iter()
            .filter(|a| !have.addresses.contains(a))
            .map(|a| {
                Change::missing(
                    format!("interface {name} address {a}"),
                    WgOp::AddAddress {
                        interface: name.clone(),
                        address: *a,
                    },
                )
            }),
    );
    if !have.up {
        out.push(Change::new(
            format!("interface {name} state"),
            "up",
            "down",
            WgOp::SetUp {
                interface: name.clone(),
            },
        ));
    }
    out
}

fn private_key(name: &str, have: &InterfaceState, own_key: Option<&OwnKey>) -> Option<Change> {
    let expected = match own_key? {
        OwnKey::Public(key) if have.public_key.as_deref() == Some(key.as_str()) => return None,
        OwnKey::Public(key) => format!("the key whose public half is {key}"),
        OwnKey::ToGenerate => "a new key, generated on apply".to_string(),
    };
    let actual = have
        .public_key
        .as_ref()
        .map_or("no key".into(), |p| format!("public key {p}"));
    Some(Change::new(
        format!("interface {name} private key"),
        expected,
        actual,
        WgOp::SetPrivateKey {
            interface: name.to_string(),
        },
    ))
}

fn listen_port(want: &WgInterface, have: &InterfaceState) -> Option<Change> {
    let port = want.listen_port?;
    (have.listen_port != Some(port)).then(|| {
        Change::new(
            format!("interface {} listen-port", want.name),
            format!("{port:?}"),
            have.listen_port.map_or("none".into(), |p| p.to_string()),
            WgOp::SetListenPort {
                interface: want.name.clone(),
                port: Some(port),
            },
        )
    })
}

fn mtu(want: &WgInterface, have: &InterfaceState) -> Option<Change> {
    (have.mtu != want.mtu).then(|| {
        Change::new(
            format!("interface {} mtu", want.name),
            want.mtu.to_string(),
            have.mtu.to_string(),
            WgOp::SetMtu {
                interface: want.name.clone(),
                mtu: want.mtu,
            },
        )
    })
}

/// Peers to set (new or changed) and live peers to remove. A peer whose key
/// is still pending is left out until its agent reports the key.
fn peers(name: &str, want: &[WgPeer], have: &[PeerState]) -> (Vec<Change>, Vec<Change>) {
    let mut wanted_keys = BTreeSet::new();
    let mut set = Vec::new();
    for p in want {
        let PeerKey::Known(key) = &p.public_key else {
            continue;
        };
        wanted_keys.insert(key);
        let live = have.iter().find(|x| &x.public_key == key);
        if live.is_some_and(|lp| peer_matches(p, lp)) {
            continue;
        }
        set.push(Change::new(
            format!("interface {name} peer {}", p.name),
            peer_text(p),
            live.map_or("absent".into(), live_peer_text),
            WgOp::SetPeer {
                interface: name.to_string(),
                peer: p.clone(),
                key: key.clone(),
            },
        ));
    }
    let stale = have
        .iter()
        .filter(|lp| !wanted_keys.contains(&lp.public_key))
        .map(|lp| {
            Change::unwanted(
                format!("interface {name} peer {}", lp.public_key),
                WgOp::RemovePeer {
                    interface: name.to_string(),
                    key: lp.public_key.clone(),
                },
            )
        })
        .collect();
    (set, stale)
}

fn peer_matches(want: &WgPeer, live: &PeerState) -> bool {
    let mut a = live.allowed_ips.clone();
    let mut b = want.allowed_ips.clone();
    a.sort();
    b.sort();
    a == b
        && live.persistent_keepalive == want.persistent_keepalive
        // A peer without a configured endpoint roams: whatever endpoint
        // WireGuard learned is fine.
        && (want.endpoint.is_none() || live.endpoint == want.endpoint)
}

fn sysctls(want: &BTreeMap<String, String>, have: &BTreeMap<String, String>) -> Vec<Change> {
    let mut out = Vec::new();
    for (key, value) in want {
        let live = have.get(key);
        if live == Some(value) {
            continue;
        }
        let change = Change::new(
            format!("sysctl {key}"),
            value.clone(),
            live.cloned().unwrap_or_else(|| "unset".into()),
            SysctlOp::SetSysctl {
                key: key.clone(),
                value: value.clone(),
            },
        );
        // ip_forward goes first; per-interface sysctls after the interface exists.
        if key == "net.ipv4.ip_forward" {
            out.insert(0, change);
        } else {
            out.push(change);
        }
    }
    out
}

/// Routes to add and routes to remove.
fn routes(want: &[Route], have: &[Route]) -> (Vec<Change>, Vec<Change>) {
    added_and_removed(
        want,
        have,
        |r| format!("route {}", route_text(r)),
        |route, add| {
            if add {
                RoutingOp::AddRoute { route }
            } else {
                RoutingOp::DelRoute { route }
            }
        },
    )
}

/// Rules to add and rules to remove.
fn rules(want: &[PolicyRule], have: &[PolicyRule]) -> (Vec<Change>, Vec<Change>) {
    added_and_removed(
        want,
        have,
        |r| format!("rule {}", rule_text(r)),
        |rule, add| {
            if add {
                RoutingOp::AddRule { rule }
            } else {
                RoutingOp::DelRule { rule }
            }
        },
    )
}

/// What `want` has that `have` lacks (to add, `op(item, true)`), and what
/// `have` has that `want` lacks (to remove, `op(item, false)`), in order.
fn added_and_removed<T: PartialEq + Clone>(
    want: &[T],
    have: &[T],
    resource: impl Fn(&T) -> String,
    op: impl Fn(T, bool) -> RoutingOp,
) -> (Vec<Change>, Vec<Change>) {
    let add = want
        .iter()
        .filter(|x| !have.contains(x))
        .map(|x| Change::missing(resource(x), op(x.clone(), true)))
        .collect();
    let del = have
        .iter()
        .filter(|x| !want.contains(x))
        .map(|x| Change::unwanted(resource(x), op(x.clone(), false)))
        .collect();
    (add, del)
}

fn table_resource() -> String {
    format!("table ip {TABLE}")
}

/// How the live firewall content (the nft table, or the iptables chains)
/// compares with what the plan wants, judged by the agent's memory of its
/// last apply: `None` when it is exactly what that apply of the same
/// content (`digest`) left there, else what is there instead. `what` names
/// the content (`table`, `chains`); `drift` describes a changed read-back
/// (remembered, live).
fn firewall_verdict(
    digest: &str,
    live: Option<&str>,
    memory: Option<&NftMemory>,
    what: &str,
    drift: impl FnOnce(&str, &str) -> String,
) -> Option<String> {
    Some(match (live, memory) {
        (None, _) => "absent".to_string(),
        (Some(_), None) => "present, not applied by this agent".to_string(),
        (Some(_), Some(m)) if m.digest != digest => format!("an older plan's {what}"),
        (Some(l), Some(m)) if l != m.normalized => drift(&m.normalized, l),
        (Some(_), Some(_)) => return None,
    })
}

/// The plan's table replaces the live one unless the live one is exactly
/// what this agent's last apply of the same table left there.
fn replace_table(table: &NftTable, live: Option<&NftState>, memory: Option<&NftMemory>) -> Option<Change> {
    let digest = crate::hash_hex(table);
    let live = live.map(|l| l.normalized.as_str());
    let actual = firewall_verdict(&digest, live, memory, "table", describe_nft_drift)?;
    Some(Change::new(
        table_resource(),
        format!("the plan's table (sha256 {})", &digest[..12]),
        actual,
        NftOp::ReplaceTable { table: table.clone() },
    ))
}

fn chains_resource() -> String {
    format!("iptables chains {}*", crate::ipt::CHAIN_PREFIX)
}

/// The plan's chains replace the live ones unless the live ones are exactly
/// what this agent's last apply of the same ruleset left there (the same
/// memory as the nft table's: the digest and the read-back).
fn replace_chains(
    ruleset: &IptRuleset,
    live: Option<&IptState>,
    memory: Option<&NftMemory>,
) -> Option<Change> {
    let digest = crate::hash_hex(ruleset);
    let live = live.map(|l| l.normalized.as_str());
    let actual = firewall_verdict(&digest, live, memory, "chains", |_, _| {
        "changed since it was applied (iptables-save differs)".to_string()
    })?;
    Some(Change::new(
        chains_resource(),
        format!("the plan's chains (sha256 {})", &digest[..12]),
        actual,
        IptOp::ReplaceChains {
            ruleset: ruleset.clone(),
        },
    ))
}

/// Interfaces Warren created that the plan no longer has.
fn stale_interfaces(plan: &Plan, live: &State, owned: &BTreeSet<String>) -> Vec<Change> {
    let planned: BTreeSet<&String> = plan.wireguard.iter().map(|i| &i.name).collect();
    live.interfaces
        .keys()
        .filter(|name| !planned.contains(name) && owned.contains(*name))
        .map(|name| {
            Change::unwanted(
                format!("interface {name}"),
                WgOp::DeleteInterface { name: name.clone() },
            )
        })
        .collect()
}

fn cidrs(v: &[Ipv4Cidr]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let mut s: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    s.sort();
    s.join(",")
}

fn route_text(r: &Route) -> String {
    let dst = if r.dst.len == 0 {
        "default".to_string()
    } else {
        r.dst.to_string()
    };
    format!("{dst} dev {} table {}", r.dev, r.table)
}

fn rule_text(r: &PolicyRule) -> String {
    let from = r.from.map_or("all".to_string(), |f| f.to_string());
    let mark = r.fwmark.map(|m| format!(" fwmark {m:#x}")).unwrap_or_default();
    format!("{}: from {from}{mark} lookup {}", r.priority, r.table)
}

fn peer_text(p: &WgPeer) -> String {
    let mut s = format!("allowed-ips {}", cidrs(&p.allowed_ips));
    if let Some(e) = &p.endpoint {
        s.push_str(&format!(" endpoint {e}"));
    }
    if let Some(k) = p.persistent_keepalive {
        s.push_str(&format!(" keepalive {k}"));
    }
    s
}

fn live_peer_text(lp: &PeerState) -> String {
    peer_text(&WgPeer {
        name: String::new(),
        public_key: PeerKey::Known(lp.public_key.clone()),
        endpoint: lp.endpoint.clone(),
        allowed_ips: lp.allowed_ips.clone(),
        persistent_keepalive: lp.persistent_keepalive,
    })
}

/// The parts of a normalized `nft -j` listing that a reader can name
/// (`chain input`, `set to_router_tcp`, the rules of `chain input`), each
/// with its JSON, for comparing two listings.
fn nft_parts(listing: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(listing).unwrap_or_default();
    let mut parts = BTreeMap::new();
    for item in v.as_array().into_iter().flatten() {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let name = body.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let key = match kind.as_str() {
            "rule" => format!(
                "chain {} rule",
                body.get("chain").and_then(|c| c.as_str()).unwrap_or("")
            ),
            k => format!("{k} {name}"),
        };
        parts
            .entry(key)
            .or_insert_with(String::new)
            .push_str(&body.to_string());
    }
    parts
}

/// Name what changed inside the table: which chains, sets or maps differ.
fn describe_nft_drift(expected: &str, live: &str) -> String {
    let (a, b) = (nft_parts(expected), nft_parts(live));
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        let chain_rules = k.strip_suffix(" rule");
        match (a.get(k), b.get(k), chain_rules) {
            (Some(x), Some(y), _) if x == y => {}
            (Some(_), None, Some(chain)) => diffs.push(format!("{chain} rules missing")),
            (Some(_), None, None) => diffs.push(format!("{k} missing")),
            (None, Some(_), Some(chain)) => diffs.push(format!("{chain} has foreign rules")),
            (None, Some(_), None) => diffs.push(format!("unexpected {k}")),
            (_, _, Some(chain)) => diffs.push(format!("{chain} rules changed")),
            (_, _, None) => diffs.push(format!("{k} changed")),
        }
    }
    if diffs.is_empty() {
        "a modified table".into()
    } else {
        diffs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Drift, Platform, WgInterface};
    use crate::state::{NftState, PeerState};

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn peer(name: &str, key: &str, ips: &[&str]) -> WgPeer {
        WgPeer {
            name: name.into(),
            public_key: PeerKey::Known(key.into()),
            endpoint: Some("192.0.2.1:51820".into()),
            allowed_ips: ips.iter().map(|c| cidr(c)).collect(),
            persistent_keepalive: Some(25),
        }
    }

    fn live_peer(key: &str) -> PeerState {
        PeerState {
            public_key: key.into(),
            endpoint: None,
            allowed_ips: vec![cidr("10.9.9.9/32")],
            persistent_keepalive: None,
            latest_handshake: 0,
        }
    }

    fn table() -> NftTable {
        NftTable {
            name: crate::nft::TABLE.into(),
            sets: vec![],
            maps: vec![],
            chains: vec![],
        }
    }

    fn route(dst: &str, table: u32) -> Route {
        Route {
            table,
            dst: cidr(dst),
            dev: "wg0".into(),
            via: None,
        }
    }

    fn rule(priority: u32, fwmark: Option<u32>) -> PolicyRule {
        PolicyRule {
            priority,
            fwmark,
            from: None,
            table: 100,
        }
    }

    /// A plan and a live state that differ in every way the diff knows.
    fn everything() -> (Plan, State, BTreeMap<String, OwnKey>) {
        let wg0 = WgInterface {
            name: "wg0".into(),
            addresses: vec![cidr("10.0.18.1/24")],
            listen_port: Some(51820),
            mtu: 1420,
            peers: vec![
                peer("gw", "AAAA", &["10.0.18.2/32"]),
                peer("phone", "BBBB", &["10.0.18.3/32"]),
            ],
        };
        let wg1 = WgInterface {
            name: "wg1".into(),
            addresses: vec![cidr("10.0.19.1/24")],
            listen_port: None,
            mtu: 1380,
            peers: vec![peer("p", "CCCC", &["10.0.19.2/32"])],
        };
        let plan = Plan {
            format: crate::FORMAT,
            host: "router".into(),
            platform: Platform::Linux,
            drift: Drift::Report,
            sysctls: [
                ("net.ipv4.conf.wg1.rp_filter".to_string(), "0".to_string()),
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ]
            .into(),
            wireguard: vec![wg0, wg1],
            routes: vec![route("0.0.0.0/0", 100)],
            rules: vec![rule(456, Some(10))],
            firewall: Firewall::Nftables(table()),
            openings: Default::default(),
            routeros: None,
            notes: vec![],
        };
        let mut live = State::default();
        live.interfaces.insert(
            "wg0".into(),
            InterfaceState {
                public_key: Some("someone-else".into()),
                listen_port: None,
                mtu: 1500,
                up: false,
                addresses: vec![cidr("10.0.17.1/24"), cidr("10.0.16.1/24")],
                peers: vec![live_peer("AAAA"), live_peer("OLD1"), live_peer("OLD2")],
            },
        );
        live.interfaces.insert(
            "wg7".into(),
            InterfaceState {
                peers: vec![live_peer("OLD3")],
                ..InterfaceState::default()
            },
        );
        live.interfaces.insert("wg9".into(), InterfaceState::default());
        live.routes = vec![route("10.5.0.0/16", 100), route("10.6.0.0/16", 100)];
        live.rules = vec![rule(500, None)];
        live.nft = Some(NftState {
            normalized: "[]".into(),
        });
        let own = [
            ("wg0".to_string(), OwnKey::Public("OWN0".into())),
            ("wg1".to_string(), OwnKey::Public("OWN1".into())),
        ]
        .into();
        (plan, live, own)
    }

    #[test]
    fn order_and_text_of_every_kind_of_change() {
        let (mut plan, live, own_keys) = everything();
        plan.wireguard.push(WgInterface {
            name: "wg7".into(),
            addresses: vec![],
            listen_port: None,
            mtu: 0,
            peers: vec![],
        });
        let cx = Context {
            own_keys,
            owned_interfaces: ["wg9".to_string()].into(),
            nft_memory: None,
        };
        let text: Vec<String> = diff(&plan, &live, &cx).iter().map(|c| c.to_string()).collect();
        let want = [
            "interface wg1: expected present, found absent",
            "interface wg0 private key: expected the key whose public half is OWN0, found public key someone-else",
            "interface wg0 listen-port: expected 51820, found none",
            "interface wg0 mtu: expected 1420, found 1500",
            "interface wg0 address 10.0.18.1/24: expected present, found absent",
            "interface wg0 state: expected up, found down",
            "interface wg1 private key: expected the key whose public half is OWN1, found no key",
            "interface wg1 mtu: expected 1380, found 0",
            "interface wg1 address 10.0.19.1/24: expected present, found absent",
            "interface wg1 state: expected up, found down",
            "interface wg7 state: expected up, found down",
            "sysctl net.ipv4.ip_forward: expected 1, found unset",
            "sysctl net.ipv4.conf.wg1.rp_filter: expected 0, found unset",
            "interface wg0 peer gw: expected allowed-ips 10.0.18.2/32 endpoint 192.0.2.1:51820 keepalive 25, found allowed-ips 10.9.9.9/32",
            "interface wg0 peer phone: expected allowed-ips 10.0.18.3/32 endpoint 192.0.2.1:51820 keepalive 25, found absent",
            "interface wg1 peer p: expected allowed-ips 10.0.19.2/32 endpoint 192.0.2.1:51820 keepalive 25, found absent",
            "route default dev wg0 table 100: expected present, found absent",
            "rule 456: from all fwmark 0xa lookup 100: expected present, found absent",
            "table ip warren: expected the plan's table (sha256 ",
            "interface wg7 peer OLD3: expected absent, found present",
            "interface wg0 peer OLD2: expected absent, found present",
            "interface wg0 peer OLD1: expected absent, found present",
            "interface wg0 address 10.0.17.1/24: expected absent, found present",
            "interface wg0 address 10.0.16.1/24: expected absent, found present",
            "rule 500: from all lookup 100: expected absent, found present",
            "route 10.5.0.0/16 dev wg0 table 100: expected absent, found present",
            "route 10.6.0.0/16 dev wg0 table 100: expected absent, found present",
            "interface wg9: expected absent, found present",
        ];
        assert_eq!(text.len(), want.len(), "{text:#?}");
        for (got, want) in text.iter().zip(want) {
            assert!(
                got.starts_with(want),
                "{got:?} should start with {want:?}\n{text:#?}"
            );
        }
        assert!(
            text[18].ends_with("), found present, not applied by this agent"),
            "{}",
            text[18]
        );
    }

    #[test]
    fn the_table_is_replaced_for_a_reason_and_deleted_when_unplanned() {
        let (mut plan, mut live, _) = everything();
        plan.wireguard.clear();
        live.interfaces.clear();
        let Firewall::Nftables(t) = plan.firewall.clone() else {
            unreachable!()
        };
        let mem = NftMemory {
            digest: crate::hash_hex(&t),
            normalized: r#"[{"chain":{"name":"input"}}]"#.into(),
        };
        let nft_text = |live: &State, mem: Option<&NftMemory>| -> Vec<String> {
            let cx = Context {
                nft_memory: mem,
                ..Context::default()
            };
            diff(&plan, live, &cx)
                .into_iter()
                .filter(|c| c.resource.starts_with("table"))
                .map(|c| c.actual)
                .collect()
        };
        assert_eq!(nft_text(&live, Some(&mem)), ["chain input missing"]);
        let older = NftMemory {
            digest: "0".into(),
            ..mem.clone()
        };
        assert_eq!(nft_text(&live, Some(&older)), ["an older plan's table"]);
        live.nft = None;
        assert_eq!(nft_text(&live, Some(&mem)), ["absent"]);
        live.nft = Some(NftState {
            normalized: mem.normalized.clone(),
        });
        assert!(nft_text(&live, Some(&mem)).is_empty());

        plan.firewall = Firewall::None;
        let last = diff(&plan, &live, &Context::default()).pop().unwrap();
        assert_eq!(
            last.to_string(),
            "table ip warren: expected absent, found present"
        );
        live.nft = None;
        assert!(!diff(&plan, &live, &Context::default())
            .iter()
            .any(|c| c.resource.starts_with("table")));
    }

    /// Reports and `warren-agent diff --format json` print changes: their
    /// JSON is an interface and must not move when `Op` is reorganised.
    #[test]
    fn json_shape_of_every_op() {
        let (mut plan, live, own_keys) = everything();
        let cx = Context {
            own_keys,
            owned_interfaces: ["wg9".to_string()].into(),
            nft_memory: None,
        };
        let mut changes = diff(&plan, &live, &cx);
        plan.firewall = Firewall::None;
        changes.extend(
            diff(&plan, &live, &cx)
                .into_iter()
                .filter(|c| c.resource.starts_with("table")),
        );
        let mut seen = BTreeMap::new();
        for c in &changes {
            let json = serde_json::to_string(&c.op).unwrap();
            let back: Op = serde_json::from_str(&json).unwrap();
            assert_eq!(back, c.op, "{json}");
            let kind = json
                .trim_start_matches(['{', '"'])
                .split('"')
                .next()
                .unwrap()
                .to_string();
            seen.entry(kind).or_insert(json);
        }
        let all: Vec<String> = seen.values().cloned().collect();
        assert_eq!(all, GOLDEN);
        let c = &changes[0];
        assert_eq!(
            serde_json::to_string(c).unwrap(),
            r#"{"resource":"interface wg1","expected":"present","actual":"absent","op":{"create_interface":{"name":"wg1"}}}"#
        );
    }

    /// The serialized form of each operation before `Op` was grouped by subsystem.
    const GOLDEN: [&str; 17] = [
        r#"{"add_address":{"interface":"wg0","address":"10.0.18.1/24"}}"#,
        r#"{"add_route":{"route":{"table":100,"dst":"0.0.0.0/0","dev":"wg0","via":null}}}"#,
        r#"{"add_rule":{"rule":{"priority":456,"fwmark":10,"from":null,"table":100}}}"#,
        r#"{"create_interface":{"name":"wg1"}}"#,
        r#"{"del_address":{"interface":"wg0","address":"10.0.17.1/24"}}"#,
        r#"{"del_route":{"route":{"table":100,"dst":"10.5.0.0/16","dev":"wg0","via":null}}}"#,
        r#"{"del_rule":{"rule":{"priority":500,"fwmark":null,"from":null,"table":100}}}"#,
        r#"{"delete_interface":{"name":"wg9"}}"#,
        r#""delete_table""#,
        r#"{"remove_peer":{"interface":"wg0","key":"OLD2"}}"#,
        r#"{"replace_table":{"table":{"name":"warren","sets":[],"maps":[],"chains":[]}}}"#,
        r#"{"set_listen_port":{"interface":"wg0","port":51820}}"#,
        r#"{"set_mtu":{"interface":"wg0","mtu":1420}}"#,
        r#"{"set_peer":{"interface":"wg0","peer":{"name":"gw","public_key":{"known":"AAAA"},"endpoint":"192.0.2.1:51820","allowed_ips":["10.0.18.2/32"],"persistent_keepalive":25},"key":"AAAA"}}"#,
        r#"{"set_private_key":{"interface":"wg0"}}"#,
        r#"{"set_sysctl":{"key":"net.ipv4.ip_forward","value":"1"}}"#,
        r#"{"set_up":{"interface":"wg0"}}"#,
    ];
}
