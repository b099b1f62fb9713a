//! The router's plan on MikroTik RouterOS v7: the same network as the Linux
//! router's plan, written as RouterOS objects ([`RosEntry`]) that the agent
//! of `managed_by` applies over the router's REST API.
//!
//! It owns the translation: table and marks become one routing-table name
//! (`warren-<table>`), the nft chains become rules in Warren's own `warren-*`
//! chains reached by one jump rule at the top of each built-in chain, the
//! forwards become one `dst-nat` rule per forward and protocol, the MSS
//! clamps fixed `change-mss` rules, and the foreign-firewall openings become
//! filter accepts that must come before the default configuration's
//! FastTrack (which skips mangle) and its input drop. It must not decide
//! anything the Linux plan decides differently (ports, MTUs, which traffic
//! takes the tunnel): those come from the same model values and helpers.

use crate::mtu::Mtus;
use crate::router::{private_interface, wan_interface};
use crate::{forwards, ports::l4s, KeyBook};
use std::collections::BTreeMap;
use warren_model::model::{Config, DriftPolicy, Forward, Host, PrivateVpn, RouterOsAccess, WanVpn};
use warren_model::WG_OVERHEAD;
use warren_plan::net::Ipv4Cidr;
use warren_plan::ros::{Place, RosAccess, RosConfig, RosEntry, NAME_PREFIX};
use warren_plan::{Drift, PeerKey, Plan, Platform, WgInterface};

const TABLE: &str = "routing/table";
const WG: &str = "interface/wireguard";
const PEERS: &str = "interface/wireguard/peers";
const ADDRESS: &str = "ip/address";
const ROUTE: &str = "ip/route";
const RULE: &str = "routing/rule";
const MANGLE: &str = "ip/firewall/mangle";
const NAT: &str = "ip/firewall/nat";
const FILTER: &str = "ip/firewall/filter";

/// The RouterOS router `host`'s plan. `access` is its validated `routeros`
/// block (the model guarantees one on every RouterOS router).
pub(crate) fn plan(cfg: &Config, keys: &KeyBook, host: &Host, access: &RouterOsAccess) -> Plan {
    let wan = &cfg.wan;
    let mtus = Mtus::of(cfg);
    let served = cfg.private.as_ref().filter(|pv| pv.server == host.name);
    let mut plan = Plan {
        platform: Platform::Routeros,
        drift: match host.drift {
            DriftPolicy::Report => Drift::Report,
            DriftPolicy::Heal => Drift::Heal,
        },
        ..Plan::empty(&host.name)
    };
    plan.wireguard.push(wan_interface(cfg, keys, mtus.wan));
    if let Some(pv) = served {
        plan.wireguard.push(private_interface(pv, mtus.private));
    }
    let mut b = Builder::default();
    let table = table_name(wan);
    b.add(TABLE, &format!("table/{table}"), &[("name", &table), ("fib", "")]);
    interfaces(&mut b, cfg, served, mtus);
    let pending = peers(&mut b, &plan.wireguard);
    addresses(&mut b, &plan.wireguard);
    routing(&mut b, wan);
    mangle(&mut b, wan, served, mtus);
    nat(&mut b, wan, &cfg.forwards);
    filter(&mut b, cfg, served);
    plan.routeros = Some(RosConfig {
        access: RosAccess {
            address: access.address,
            port: access.port,
            user: access.user.clone(),
            fingerprint: access.fingerprint.clone(),
        },
        entries: b.into_entries(),
    });
    plan.notes.extend(notes(cfg, host, served, mtus));
    plan.notes.extend(pending);
    plan.notes.extend(cfg.forwards.iter().map(forwards::note));
    plan
}

/// The RouterOS routing table, connection mark and routing mark of the WAN
/// VPN's return path: one name, `warren-<table>`.
pub(crate) fn table_name(wan: &WanVpn) -> String {
    format!("{NAME_PREFIX}{}", wan.table)
}

/// Entries collected per menu, emitted in [`warren_plan::ros::MENUS`] order.
#[derive(Default)]
struct Builder {
    by_menu: BTreeMap<&'static str, Vec<RosEntry>>,
}

impl Builder {
    fn push(&mut self, menu: &'static str, tag: &str, props: &[(&str, &str)], place: Place) {
        self.by_menu.entry(menu).or_default().push(RosEntry {
            menu: menu.to_string(),
            tag: tag.to_string(),
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            place,
        });
    }
    fn add(&mut self, menu: &'static str, tag: &str, props: &[(&str, &str)]) {
        self.push(menu, tag, props, Place::InOrder);
    }
    /// A rule in Warren's chain `warren-<chain>` (the chain prop is added).
    fn rule(&mut self, menu: &'static str, chain: &str, tag: &str, props: &[(&str, &str)]) {
        let chain = format!("{NAME_PREFIX}{chain}");
        let mut all = vec![("chain", chain.as_str())];
        all.extend_from_slice(props);
        self.push(menu, tag, &all, Place::InOrder);
    }
    /// The jump from built-in `chain` to `warren-<chain>`, at the top.
    fn jump(&mut self, menu: &'static str, short: &str, chain: &str) {
        let target = format!("{NAME_PREFIX}{chain}");
        self.push(
            menu,
            &format!("jump/{short}-{chain}"),
            &[("chain", chain), ("action", "jump"), ("jump-target", &target)],
            Place::Top,
        );
    }
    fn into_entries(mut self) -> Vec<RosEntry> {
        warren_plan::ros::MENUS
            .iter()
            .flat_map(|m| self.by_menu.remove(m).unwrap_or_default())
            .collect()
    }
}

/// Both tunnels, each with its port written out: RouterOS gives every
/// WireGuard interface 13231 by default, and two would collide. No private
/// key: the router generates its own.
fn interfaces(b: &mut Builder, cfg: &Config, served: Option<&PrivateVpn>, mtus: Mtus) {
    let wan = &cfg.wan;
    let mut ifs = vec![(wan.interface.as_str(), wan.port, mtus.wan)];
    if let Some(pv) = served {
        ifs.push((pv.interface.as_str(), pv.port, mtus.private));
    }
    for (name, port, mtu) in ifs {
        b.add(
            WG,
            &format!("if/{name}"),
            &[
                ("name", name),
                ("listen-port", &port.to_string()),
                ("mtu", &mtu.to_string()),
            ],
        );
    }
}

/// One peer entry per WireGuard peer whose key is known; a peer still
/// awaiting its key is left out (returned as a note).
fn peers(b: &mut Builder, wg: &[WgInterface]) -> Vec<String> {
    let mut notes = Vec::new();
    for i in wg {
        for p in &i.peers {
            let key = match &p.public_key {
                PeerKey::Known(k) => k,
                PeerKey::Pending { host, interface } => {
                    notes.push(format!(
                        "peer {} of {} is not on the router yet: it waits for {host}'s public key for {interface} (its agent reports it)",
                        p.name, i.name
                    ));
                    continue;
                }
            };
            let allowed: Vec<String> = p.allowed_ips.iter().map(Ipv4Cidr::to_string).collect();
            let allowed = allowed.join(",");
            let mut props = vec![
                ("interface", i.name.as_str()),
                ("name", p.name.as_str()),
                ("public-key", key.as_str()),
                ("allowed-address", allowed.as_str()),
            ];
            let endpoint = p.endpoint.as_deref().and_then(|e| e.rsplit_once(':'));
            if let Some((addr, port)) = endpoint {
                props.push(("endpoint-address", addr));
                props.push(("endpoint-port", port));
            }
            let keepalive = p.persistent_keepalive.map(|k| format!("{k}s"));
            if let Some(k) = &keepalive {
                props.push(("persistent-keepalive", k));
            }
            b.add(PEERS, &format!("peer/{}/{}", i.name, p.name), &props);
        }
    }
    notes
}

fn addresses(b: &mut Builder, wg: &[WgInterface]) {
    for i in wg {
        for a in &i.addresses {
            b.add(
                ADDRESS,
                &format!("addr/{}", i.name),
                &[("address", &a.to_string()), ("interface", &i.name)],
            );
        }
    }
}

/// The return path's table: its default route through the tunnel, and the
/// two rules the Linux plan has (marked replies, the router's own tunnel
/// address), strict so that nothing falls back to `main`.
fn routing(b: &mut Builder, wan: &WanVpn) {
    let table = table_name(wan);
    b.add(
        ROUTE,
        &format!("route/{table}/0.0.0.0/0"),
        &[
            ("dst-address", "0.0.0.0/0"),
            ("gateway", &wan.gateway_address.to_string()),
            ("routing-table", &table),
        ],
    );
    b.add(
        RULE,
        "rule/marked-replies",
        &[
            ("routing-mark", &table),
            ("action", "lookup-only-in-table"),
            ("table", &table),
        ],
    );
    b.add(
        RULE,
        "rule/from-tunnel-address",
        &[
            ("src-address", &Ipv4Cidr::host(wan.router_address).to_string()),
            ("action", "lookup-only-in-table"),
            ("table", &table),
        ],
    );
}

/// The connection mark of what arrives through the tunnel, the routing mark
/// of its replies (forwarded and the router's own), and the MSS clamps.
fn mangle(b: &mut Builder, wan: &WanVpn, served: Option<&PrivateVpn>, mtus: Mtus) {
    let mark = table_name(wan);
    let wif = wan.interface.as_str();
    let not_wif = format!("!{wif}");
    b.rule(
        MANGLE,
        "prerouting",
        "mangle/mark-tunnel-connections",
        &[
            ("in-interface", wif),
            ("connection-state", "new"),
            ("action", "mark-connection"),
            ("new-connection-mark", &mark),
            ("passthrough", "yes"),
        ],
    );
    b.rule(
        MANGLE,
        "prerouting",
        "mangle/route-replies",
        &[
            ("in-interface", &not_wif),
            ("connection-mark", &mark),
            ("action", "mark-routing"),
            ("new-routing-mark", &mark),
            ("passthrough", "no"),
        ],
    );
    b.rule(
        MANGLE,
        "output",
        "mangle/route-own-replies",
        &[
            ("connection-mark", &mark),
            ("action", "mark-routing"),
            ("new-routing-mark", &mark),
            ("passthrough", "no"),
        ],
    );
    let mut clamps = vec![(wif, mtus.wan)];
    if let Some(pv) = served {
        clamps.push((pv.interface.as_str(), mtus.private));
    }
    for (iface, mtu) in clamps {
        let mss = Mtus::mss(mtu);
        let new_mss = mss.to_string();
        let above = format!("{}-65535", mss + 1);
        for (dir, key) in [("out", "out-interface"), ("in", "in-interface")] {
            b.rule(
                MANGLE,
                "forward",
                &format!("mangle/mss-{iface}-{dir}"),
                &[
                    (key, iface),
                    ("protocol", "tcp"),
                    ("tcp-flags", "syn"),
                    ("tcp-mss", &above),
                    ("action", "change-mss"),
                    ("new-mss", &new_mss),
                    ("passthrough", "yes"),
                ],
            );
        }
    }
    for chain in ["prerouting", "output", "forward"] {
        b.jump(MANGLE, "mangle", chain);
    }
}

/// One `dst-nat` per forward and protocol, for what arrives on the tunnel.
/// A range keeps its port numbers (no `to-ports`), as on Linux.
fn nat(b: &mut Builder, wan: &WanVpn, forwards: &[Forward]) {
    for f in forwards {
        let ports = f.ports.to_string();
        let to = f.to.to_string();
        let to_port = f.to_port.map(|p| p.to_string());
        for l4 in l4s(&f.protos) {
            let mut props = vec![
                ("in-interface", wan.interface.as_str()),
                ("protocol", l4.as_str()),
                ("dst-port", ports.as_str()),
                ("action", "dst-nat"),
                ("to-addresses", to.as_str()),
            ];
            if let Some(tp) = &to_port {
                props.push(("to-ports", tp));
            }
            b.rule(NAT, "dstnat", &format!("nat/{}-{}", f.name, l4.as_str()), &props);
        }
    }
    if !forwards.is_empty() {
        b.jump(NAT, "nat", "dstnat");
    }
}

/// The Linux plan's openings as RouterOS accepts (before the default
/// configuration's FastTrack and input drop), and the drop of new
/// connections from the tunnel that were not forwarded.
fn filter(b: &mut Builder, cfg: &Config, served: Option<&PrivateVpn>) {
    let wan = &cfg.wan;
    let wif = wan.interface.as_str();
    let mark = table_name(wan);
    let gateway = cfg.public_address().to_string();
    let wan_port = wan.port.to_string();
    b.rule(
        FILTER,
        "input",
        "filter/wan-vpn-from-gateway",
        &[
            ("src-address", &gateway),
            ("protocol", "udp"),
            ("src-port", &wan_port),
            ("action", "accept"),
        ],
    );
    b.rule(
        FILTER,
        "input",
        "filter/tunnel-established",
        &[
            ("in-interface", wif),
            ("connection-state", "established,related"),
            ("action", "accept"),
        ],
    );
    if let Some(pv) = served {
        b.rule(
            FILTER,
            "input",
            "filter/private-vpn-handshake",
            &[
                ("in-interface", wif),
                ("dst-address", &wan.router_address.to_string()),
                ("protocol", "udp"),
                ("dst-port", &pv.port.to_string()),
                ("action", "accept"),
            ],
        );
    }
    for f in &cfg.forwards {
        let ports = match f.to_port {
            Some(p) => p.to_string(),
            None => f.ports.to_string(),
        };
        for l4 in l4s(&f.protos) {
            b.rule(
                FILTER,
                "forward",
                &format!("filter/forward-{}-{}", f.name, l4.as_str()),
                &[
                    ("in-interface", wif),
                    ("connection-nat-state", "dstnat"),
                    ("protocol", l4.as_str()),
                    ("dst-address", &f.to.to_string()),
                    ("dst-port", &ports),
                    ("action", "accept"),
                ],
            );
        }
    }
    b.rule(
        FILTER,
        "forward",
        "filter/tunnel-replies",
        &[
            ("out-interface", wif),
            ("connection-mark", &mark),
            ("connection-state", "established,related"),
            ("action", "accept"),
        ],
    );
    if let Some(pv) = served {
        let vpn = pv.subnet.to_string();
        for lan in &cfg.router().lans {
            b.rule(
                FILTER,
                "forward",
                &format!("filter/private-to-{}", lan.name),
                &[
                    ("in-interface", &pv.interface),
                    ("src-address", &vpn),
                    ("dst-address", &lan.subnet().to_string()),
                    ("action", "accept"),
                ],
            );
        }
        b.rule(
            FILTER,
            "forward",
            "filter/private-replies",
            &[
                ("out-interface", &pv.interface),
                ("dst-address", &vpn),
                ("connection-state", "established,related"),
                ("action", "accept"),
            ],
        );
    }
    b.rule(
        FILTER,
        "forward",
        "filter/drop-unforwarded",
        &[
            ("in-interface", wif),
            ("connection-state", "new"),
            ("connection-nat-state", "!dstnat"),
            ("action", "drop"),
        ],
    );
    b.jump(FILTER, "filter", "input");
    b.jump(FILTER, "filter", "forward");
}

/// What differs from the Linux router's plan, and why.
fn notes(cfg: &Config, host: &Host, served: Option<&PrivateVpn>, mtus: Mtus) -> Vec<String> {
    let wan = &cfg.wan;
    let wif = &wan.interface;
    let table = table_name(wan);
    let agent = host.managed_by.as_deref().unwrap_or("its agent host");
    let mut v = vec![
        format!(
            "RouterOS v7: the agent on {agent} applies the routeros entries over the router's REST API; every entry carries comment=\"warren:<tag>\", and rows without that prefix or marked dynamic are never touched"
        ),
        "the router generates each WireGuard interface's private key itself; Warren never sends one and reads back only public-key".into(),
        format!(
            "table {} and mark {:#x} become one RouterOS name, {table}: a routing table (fib), the connection mark of what arrives through {wif} and the routing mark of its replies (RouterOS marks are names, not numbers)",
            wan.table, wan.mark
        ),
        format!(
            "the Linux rules (priority {}) become two /routing/rule entries, lookup-only-in-table {table}: RouterOS rules have no priority number, they apply in order",
            wan.rule_priority
        ),
        format!(
            "the default route in {table} goes via the gateway's tunnel address {} (Linux: dev {wif}); AllowedIPs 0.0.0.0/0 on the WAN peer, as on Linux",
            wan.gateway_address
        ),
        format!(
            "listen-port is written on every WireGuard interface (RouterOS defaults each to 13231, and two would collide): {wif} uses the WAN VPN port {} as its source port",
            wan.port
        ),
        format!(
            "WAN VPN MTU {} = path MTU {} - {WG_OVERHEAD}; MSS clamps are change-mss to a fixed MTU - 40 for SYNs above it (tcp-mss), as the Linux clamp (clamp-to-pmtu is not used)",
            mtus.wan, mtus.path
        ),
        "Warren's rules live in its own chains (warren-prerouting, warren-output, warren-forward in mangle; warren-dstnat in nat; warren-input, warren-forward in filter), each reached by one jump rule at the top of its built-in chain".into(),
        format!(
            "FastTrack skips mangle: warren-forward accepts the forwarded connections, their replies{} before the default configuration's fasttrack-connection rule, so their replies keep the routing mark",
            if served.is_some() { " and the private VPN's traffic" } else { "" }
        ),
        format!(
            "new connections from {wif} that were not DNATed are dropped in warren-forward: {wif} is in no interface list, so the default configuration's \"drop all from WAN not DSTNATed\" does not cover it (on Linux the host's own forward policy decides)"
        ),
        "rp-filter: /ip/settings rp-filter must not be strict (inbound sources are internet addresses); Warren does not manage /ip/settings (the Linux plan sets loose rp_filter on the tunnel)".into(),
    ];
    if let Some(pv) = served {
        v.push(format!(
            "the default configuration's input rule \"drop all not coming from LAN\" would drop the private VPN's handshakes: warren-input accepts udp {} arriving on {wif} for {}, and the gateway's WireGuard packets",
            pv.port, wan.router_address
        ));
        v.push(format!(
            "private VPN MTU {} = WAN VPN MTU {} - {WG_OVERHEAD}; {} listens on {} (clients reach it at {}:{})",
            mtus.private,
            mtus.wan,
            pv.interface,
            pv.port,
            cfg.public_address(),
            pv.port
        ));
    }
    v
}
