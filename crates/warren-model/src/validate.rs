//! Validation: from the document as written to a resolved [`Config`], with a
//! precise diagnostic (file, line, column, message, hint) for everything wrong.
//! Every check here has a test with its exact message (see `tests/lints.rs`).

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::model::*;
use crate::net::{parse_ipv4, Ipv4Cidr};
use crate::schema::*;
use crate::sp::{Sp, Text};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Default WireGuard overhead per layer: IPv6 outer header (40) + UDP (8) + WireGuard (32).
pub const WG_OVERHEAD: u16 = 80;

struct V<'a> {
    file: &'a str,
    diags: Diagnostics,
}

impl V<'_> {
    fn err(&mut self, code: &'static str, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(code, pos, msg).in_file(self.file));
        let last = self.diags.0.len() - 1;
        &mut self.diags.0[last]
    }
    fn warn(&mut self, code: &'static str, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::warning(code, pos, msg).in_file(self.file));
        let last = self.diags.0.len() - 1;
        &mut self.diags.0[last]
    }
}

/// Validate a parsed document. Returns the resolved config when there is no
/// error (warnings may still be present), and every diagnostic found.
pub fn validate(doc: &Document, file: &str) -> (Option<Config>, Diagnostics) {
    let mut v = V {
        file,
        diags: Diagnostics::default(),
    };
    let cfg = run(&mut v, doc);
    let diags = v.diags.sorted();
    if diags.has_errors() {
        (None, diags)
    } else {
        (cfg, diags)
    }
}

/// Parse and validate YAML text.
pub fn load_str(text: &str, file: &str) -> (Option<Config>, Diagnostics) {
    match crate::load::parse_document(text, file) {
        Ok(doc) => validate(&doc, file),
        Err(d) => (None, Diagnostics(vec![*d])),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_name(v: &mut V, what: &str, n: &Sp<String>) {
    if !valid_name(n) {
        v.err(
            "bad-name",
            n.at,
            format!("{what} name {:?} is not a valid name", n.value),
        )
        .with_hint("use letters, digits, '-' and '_', starting with a letter or digit (at most 63)");
    }
}

fn ifname(v: &mut V, n: Option<&Sp<String>>, default: &str) -> String {
    match n {
        Some(n) if !valid_ifname(n) => {
            v.err(
                "bad-interface",
                n.at,
                format!("{:?} is not a valid interface name", n.value),
            )
            .with_hint("at most 15 characters: letters, digits, '-', '_' and '.'");
            default.to_string()
        }
        Some(n) => n.value.clone(),
        None => default.to_string(),
    }
}

fn ip(v: &mut V, what: &str, t: &Sp<Text>) -> Option<Ipv4Addr> {
    let s = t.value.0.trim();
    if let Some(a) = parse_ipv4(s) {
        return Some(a);
    }
    let d = v.err(
        "bad-address",
        t.at,
        format!("{what} {s:?} is not an IPv4 address"),
    );
    if s.contains('/') {
        d.with_hint("write the address without a prefix length");
    } else {
        d.with_hint("write it as four decimal numbers, e.g. 192.168.16.20");
    }
    None
}

fn cidr(v: &mut V, what: &str, t: &Sp<Text>) -> Option<Ipv4Cidr> {
    let s = t.value.0.trim();
    match s.parse::<Ipv4Cidr>() {
        Ok(c) => Some(c),
        Err(e) => {
            v.err("bad-address", t.at, format!("{what} {s:?}: {e}"));
            None
        }
    }
}

/// A network prefix: host bits must be zero (`192.168.16.1/24` is refused).
fn subnet(v: &mut V, what: &str, t: &Sp<Text>) -> Option<Ipv4Cidr> {
    let c = cidr(v, what, t)?;
    if !c.is_network() {
        v.err("malformed-subnet", t.at, format!("{what} {c} has host bits set"))
            .with_hint(format!("did you mean {}?", c.trunc()));
        return None;
    }
    Some(c)
}

fn port(v: &mut V, what: &str, n: &Sp<u64>) -> Option<u16> {
    match u16::try_from(n.value) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            v.err(
                "bad-port",
                n.at,
                format!("{what} {} is not a port (1-65535)", n.value),
            );
            None
        }
    }
}

fn parse_protos(s: &str) -> Option<Vec<Proto>> {
    let mut out = Vec::new();
    for p in s.split('+') {
        let p = match p.trim().to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return None,
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.sort();
    Some(out)
}

fn parse_port_number(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// `25565/tcp`, `27000-27015/udp`, `53/tcp+udp`.
fn port_spec(v: &mut V, what: &str, t: &Sp<Text>) -> Option<PortSpec> {
    let s = t.value.0.trim();
    let Some((ports, protos)) = s.split_once('/') else {
        v.err("bad-port", t.at, format!("{what} {s:?} has no protocol"))
            .with_hint(format!("write {s}/tcp, {s}/udp or {s}/tcp+udp"));
        return None;
    };
    let Some(protos) = parse_protos(protos) else {
        v.err(
            "bad-port",
            t.at,
            format!("{what} {s:?}: unknown protocol {protos:?}"),
        )
        .with_hint("the protocol is tcp, udp or tcp+udp");
        return None;
    };
    let range = match ports.split_once('-') {
        Some((a, b)) => match (parse_port_number(a), parse_port_number(b)) {
            (Some(a), Some(b)) if a <= b => Some(PortRange { first: a, last: b }),
            (Some(a), Some(b)) => {
                v.err(
                    "bad-port",
                    t.at,
                    format!("{what} {s:?}: range {a}-{b} is reversed"),
                )
                .with_hint(format!("write {b}-{a}"));
                return None;
            }
            _ => None,
        },
        None => parse_port_number(ports).map(PortRange::single),
    };
    match range {
        Some(ports) => Some(PortSpec { protos, ports }),
        None => {
            v.err(
                "bad-port",
                t.at,
                format!("{what} {s:?}: {ports:?} is not a port or range of ports"),
            )
            .with_hint("ports are numbers from 1 to 65535; a range is written 27000-27015");
            None
        }
    }
}

fn wg_key(v: &mut V, what: &str, k: &Sp<String>) -> Option<WgKey> {
    use base64::Engine;
    let s = k.value.trim();
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(b) if b.len() == 32 => Some(WgKey(s.to_string())),
        _ => {
            v.err("bad-key", k.at, format!("{what} is not a WireGuard public key"))
                .with_hint("a key is 44 characters of base64 ending in '=', as printed by `wg pubkey`");
            None
        }
    }
}

fn ssh_ed25519(v: &mut V, what: &str, k: &Sp<String>) -> Option<String> {
    use base64::Engine;
    let mut parts = k.value.split_whitespace();
    let ok = parts.next() == Some("ssh-ed25519")
        && parts
            .next()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|b| b.len() == 51 && b.starts_with(b"\0\0\0\x0bssh-ed25519\0\0\0\x20"));
    if ok {
        Some(k.value.trim().to_string())
    } else {
        v.err(
            "bad-key",
            k.at,
            format!("{what} is not an ed25519 SSH public key"),
        )
        .with_hint("write it as `ssh-ed25519 AAAAC3Nza…` (only ed25519 keys are accepted)");
        None
    }
}

fn endpoint(v: &mut V, what: &str, t: &Sp<Text>) -> Option<(Ipv4Addr, u16)> {
    let s = t.value.0.trim();
    let parsed = s
        .rsplit_once(':')
        .and_then(|(a, p)| Some((parse_ipv4(a)?, parse_port_number(p)?)));
    if parsed.is_none() {
        v.err(
            "bad-address",
            t.at,
            format!("{what} {s:?} is not an address:port"),
        )
        .with_hint("write it as 10.0.18.1:7700");
    }
    parsed
}

struct HostParts {
    host: Host,
    at: Pos,
    role_at: Pos,
    management_at: Vec<Pos>,
    public_at: Pos,
    keys_at: BTreeMap<String, Pos>,
}

fn host(v: &mut V, name: &Sp<String>, h: &Sp<HostDoc>) -> HostParts {
    check_name(v, "host", name);
    let role = h.role.value;
    let platform = h.platform.as_ref().map_or(Platform::Linux, |p| p.value);
    let not_for = |v: &mut V, key: &str, at: Pos, role: Role| {
        let r = match role {
            Role::Gateway => "gateway",
            Role::Router => "router",
            Role::Agent => "agent",
        };
        v.err(
            "wrong-role-key",
            at,
            format!("`{key}` does not apply to host {:?} (role {r})", name.value),
        );
    };
    let mut public_address = None;
    let mut public_at = Pos::UNKNOWN;
    if let Some(a) = &h.public_address {
        public_at = a.at;
        if role == Role::Gateway {
            public_address = ip(v, "public_address", a);
        } else {
            not_for(v, "public_address", a.at, role);
        }
    } else if role == Role::Gateway {
        v.err(
            "missing-key",
            h.at,
            format!("gateway {:?} has no `public_address`", name.value),
        )
        .with_hint("the public IPv4 address of the VPS, e.g. public_address: 203.0.113.10");
    }
    let uplink = h.uplink.as_ref().map(|u| ifname(v, Some(u), "eth0"));
    if role == Role::Gateway && uplink.is_none() {
        v.err(
            "missing-key",
            h.at,
            format!("gateway {:?} has no `uplink`", name.value),
        )
        .with_hint("the gateway's public interface, e.g. uplink: enp0s6");
    }
    let path_mtu = match &h.path_mtu {
        Some(m) if !(1280..=9000).contains(&m.value) => {
            v.err(
                "bad-mtu",
                m.at,
                format!("path_mtu {} is outside 1280-9000", m.value),
            );
            1500
        }
        Some(m) => m.value as u16,
        None => 1500,
    };
    let mut management = Vec::new();
    let mut management_at = Vec::new();
    for m in &h.management {
        if role != Role::Gateway {
            not_for(v, "management", m.at, role);
            break;
        }
        if let Some(p) = port_spec(v, "management port", m) {
            management.push(p);
            management_at.push(m.at);
        }
    }
    let mut lans = Vec::new();
    for (lname, l) in &h.lans {
        if role != Role::Router {
            not_for(v, "lans", lname.at, role);
            break;
        }
        check_name(v, "LAN", lname);
        let interface = ifname(v, Some(&l.interface), "lan");
        if let Some(address) = cidr(v, &format!("LAN {:?} address", lname.value), &l.address) {
            if address.is_network() && address.len < 31 {
                v.err(
                    "address-outside-subnet",
                    l.address.at,
                    format!(
                        "LAN {:?} address {address} is the network address, not the router's address",
                        lname.value
                    ),
                )
                .with_hint(format!(
                    "write the router's own address with the prefix, e.g. {}/{}",
                    address.nth_host(0).unwrap_or(address.addr),
                    address.len
                ));
            } else if !address.is_usable_host(address.addr) {
                v.err(
                    "address-outside-subnet",
                    l.address.at,
                    format!(
                        "LAN {:?} address {address} is the broadcast address of {}",
                        lname.value,
                        address.trunc()
                    ),
                );
            } else {
                lans.push(Lan {
                    name: lname.value.clone(),
                    interface,
                    address,
                });
            }
        }
    }
    if role == Role::Router && h.lans.is_empty() {
        v.err("missing-key", h.at, format!("router {:?} has no `lans`", name.value))
            .with_hint("list the LANs behind the router, e.g. lans: {lan: {interface: br-lan, address: 192.168.16.1/24}}");
    }
    if platform == Platform::Routeros && role != Role::Router {
        if let Some(p) = &h.platform {
            v.err(
                "wrong-role-key",
                p.at,
                format!(
                    "only a router can be `platform: routeros` (host {:?})",
                    name.value
                ),
            );
        }
    }
    let managed_by = h.managed_by.as_ref().map(|m| m.value.clone());
    let mut routeros = None;
    if platform == Platform::Routeros && role == Role::Router {
        if h.managed_by.is_none() {
            v.err(
                "missing-key",
                h.at,
                format!("RouterOS router {:?} has no `managed_by`", name.value),
            )
            .with_hint("name the agent host that drives it over SSH");
        }
        match &h.routeros {
            None => {
                v.err(
                    "missing-key",
                    h.at,
                    format!("RouterOS router {:?} has no `routeros` access block", name.value),
                )
                .with_hint("routeros: {address: 192.168.16.1, user: warren, host_key: ssh-ed25519 …}");
            }
            Some(r) => {
                let address = ip(v, "routeros address", &r.address);
                let ssh_port = r
                    .ssh_port
                    .as_ref()
                    .and_then(|p| port(v, "ssh_port", p))
                    .unwrap_or(22);
                let host_key = r
                    .host_key
                    .as_ref()
                    .and_then(|k| ssh_ed25519(v, "routeros host_key", k));
                if let Some(address) = address {
                    routeros = Some(RouterOsAccess {
                        address,
                        ssh_port,
                        user: r
                            .user
                            .as_ref()
                            .map_or_else(|| "warren".to_string(), |u| u.value.clone()),
                        host_key,
                    });
                }
            }
        }
    } else {
        if let Some(m) = &h.managed_by {
            v.err(
                "wrong-role-key",
                m.at,
                format!(
                    "`managed_by` applies only to a RouterOS router (host {:?})",
                    name.value
                ),
            );
        }
        if let Some(r) = &h.routeros {
            v.err(
                "wrong-role-key",
                r.at,
                format!(
                    "`routeros` applies only to a RouterOS router (host {:?})",
                    name.value
                ),
            );
        }
    }
    let agent = h.agent.as_ref().map(|a| AgentAccess {
        address: a.address.as_ref().and_then(|x| endpoint(v, "agent address", x)),
        identity: a
            .identity
            .as_ref()
            .and_then(|k| ssh_ed25519(v, "agent identity", k)),
    });
    let mut wireguard_keys = BTreeMap::new();
    let mut keys_at = BTreeMap::new();
    for (iface, k) in &h.wireguard_keys {
        if let Some(key) = wg_key(v, &format!("wireguard_keys.{}", iface.value), k) {
            wireguard_keys.insert(iface.value.clone(), key);
            keys_at.insert(iface.value.clone(), iface.at);
        }
    }
    HostParts {
        host: Host {
            name: name.value.clone(),
            role,
            platform,
            public_address,
            uplink,
            path_mtu,
            management,
            lans,
            managed_by,
            routeros,
            agent,
            wireguard_keys,
            drift: h.drift.as_ref().map_or(DriftPolicy::Report, |d| d.value),
        },
        at: h.at,
        role_at: h.role.at,
        management_at,
        public_at,
        keys_at,
    }
}

/// Address inside `net`, given or defaulted to its n-th host.
fn address_in(v: &mut V, what: &str, given: Option<&Sp<Text>>, net: Ipv4Cidr, nth: u32) -> Option<Ipv4Addr> {
    match given {
        None => net.nth_host(nth).or_else(|| {
            v.err(
                "subnet-too-small",
                Pos::UNKNOWN,
                format!("{what}: {net} has no room for it"),
            );
            None
        }),
        Some(t) => {
            let a = ip(v, what, t)?;
            if !net.is_usable_host(a) {
                let why = if net.contains(a) {
                    "is not a usable host address of"
                } else {
                    "is outside its subnet"
                };
                v.err("address-outside-subnet", t.at, format!("{what} {a} {why} {net}"))
                    .with_hint(format!(
                        "use an address from {net}, e.g. {}",
                        net.nth_host(nth).unwrap_or(net.addr)
                    ));
                return None;
            }
            Some(a)
        }
    }
}

fn run(v: &mut V, doc: &Document) -> Option<Config> {
    if doc.version.value != 1 {
        v.err(
            "unsupported-version",
            doc.version.at,
            format!("version {} is not supported", doc.version.value),
        )
        .with_hint("this Warren reads version: 1");
        return None;
    }
    let mut hosts: BTreeMap<String, HostParts> = BTreeMap::new();
    for (name, h) in &doc.hosts {
        let p = host(v, name, h);
        hosts.insert(name.value.clone(), p);
    }
    for (role, label) in [(Role::Gateway, "gateway"), (Role::Router, "router")] {
        let with: Vec<&HostParts> = hosts.values().filter(|h| h.host.role == role).collect();
        if with.len() > 1 {
            v.err(
                "one-per-role",
                with[1].role_at,
                format!(
                    "a second {label} ({:?}); Warren v1 manages one {label}",
                    with[1].host.name
                ),
            )
            .with_note_at(
                &format!("the first {label} is {:?}", with[0].host.name),
                with[0].role_at,
            );
        }
    }

    // --- WAN VPN ---------------------------------------------------------
    let w = &doc.wan_vpn;
    let role_of = |name: &str| hosts.get(name).map(|h| h.host.role);
    for (n, want, label) in [
        (&w.gateway, Role::Gateway, "gateway"),
        (&w.router, Role::Router, "router"),
    ] {
        match role_of(n) {
            None => {
                v.err(
                    "unknown-host",
                    n.at,
                    format!(
                        "wan_vpn.{label} names host {:?}, which is not in `hosts`",
                        n.value
                    ),
                );
            }
            Some(r) if r != want => {
                v.err(
                    "wrong-role",
                    n.at,
                    format!(
                        "wan_vpn.{label} names host {:?}, whose role is not {label}",
                        n.value
                    ),
                );
            }
            _ => {}
        }
    }
    let wan_subnet = subnet(v, "wan_vpn.subnet", &w.subnet);
    if let Some(s) = wan_subnet {
        if s.len > 31 {
            v.err(
                "subnet-too-small",
                w.subnet.at,
                format!("wan_vpn.subnet {s} cannot hold two tunnel addresses"),
            )
            .with_hint("a /30 (or /31) is enough, e.g. 10.0.18.0/30");
        }
    }
    let wan_port = w
        .port
        .as_ref()
        .map_or(Some(51820), |p| port(v, "wan_vpn.port", p));
    let keepalive = match &w.keepalive {
        None => 25,
        Some(k) if k.value > 65535 => {
            v.err(
                "bad-value",
                k.at,
                format!("wan_vpn.keepalive {} is too large", k.value),
            );
            25
        }
        Some(k) if k.value == 0 => {
            v.warn("keepalive-off", k.at, "wan_vpn.keepalive is 0: the router's CGNAT mapping will expire and the gateway will lose the tunnel while nobody sends")
                .with_hint("keep the default (25 seconds)");
            0
        }
        Some(k) => k.value as u16,
    };
    let wan_if = ifname(v, w.interface.as_ref(), "wg0");
    let table = match &w.table {
        None => 100,
        Some(t) if matches!(t.value, 0 | 253..=255) || t.value > u64::from(u32::MAX) => {
            v.err(
                "reserved-table",
                t.at,
                format!("routing table {} is reserved or invalid", t.value),
            )
            .with_hint("0, 253 (default), 254 (main) and 255 (local) belong to the kernel; pick e.g. 100");
            100
        }
        Some(t) => t.value as u32,
    };
    let mark = match &w.mark {
        None => 10,
        Some(m) if m.value == 0 || m.value > u64::from(u32::MAX) => {
            v.err(
                "bad-value",
                m.at,
                format!("mark {} must be from 1 to 4294967295", m.value),
            );
            10
        }
        Some(m) => m.value as u32,
    };
    let rule_priority = match &w.rule_priority {
        None => 456,
        Some(p) if p.value == 0 || p.value >= 32766 => {
            v.err(
                "bad-value",
                p.at,
                format!("rule_priority {} must be from 1 to 32765", p.value),
            )
            .with_hint("the rules must come before the main table's rule (32766)");
            456
        }
        Some(p) => p.value as u32,
    };
    let forward_all = w.forward_all.as_ref().is_none_or(|b| b.value);
    let (gw_addr, rt_addr) = match wan_subnet {
        Some(s) if s.len <= 31 => {
            let g = address_in(v, "wan_vpn.gateway_address", w.gateway_address.as_ref(), s, 0);
            let r = address_in(v, "wan_vpn.router_address", w.router_address.as_ref(), s, 1);
            if let (Some(g), Some(r)) = (g, r) {
                if g == r {
                    let at = w.router_address.as_ref().map_or(w.subnet.at, |x| x.at);
                    v.err(
                        "address-clash",
                        at,
                        format!("the gateway and the router both use {g} in the WAN VPN"),
                    );
                }
            }
            (g, r)
        }
        _ => (None, None),
    };

    // --- gateway: management ports ----------------------------------------
    let gw = hosts
        .get(&w.gateway.value)
        .filter(|h| h.host.role == Role::Gateway);
    if let Some(g) = gw {
        if forward_all && g.host.management.is_empty() {
            v.err(
                "management-missing",
                g.at,
                format!("gateway {:?} keeps no management port, and wan_vpn.forward_all sends every other inbound port to the router: you would lose SSH to the gateway", g.host.name),
            )
            .with_hint("list the gateway's SSH port, e.g. management: [22/tcp]");
        }
        if let Some(wp) = wan_port {
            for (m, at) in g.host.management.iter().zip(&g.management_at) {
                if m.protos.contains(&Proto::Udp) && m.ports.contains(wp) {
                    v.warn(
                        "redundant-management",
                        *at,
                        format!("{m} includes the WAN VPN port {wp}/udp, which the gateway always keeps"),
                    );
                }
            }
        }
    }

    // --- subnets must not overlap ------------------------------------------
    let mut nets: Vec<(String, Ipv4Cidr, Pos)> = Vec::new();
    if let Some(s) = wan_subnet {
        nets.push(("wan_vpn.subnet".into(), s, w.subnet.at));
    }
    let router = hosts.get(&w.router.value).filter(|h| h.host.role == Role::Router);
    if let Some(r) = router {
        for (lname, l) in doc
            .hosts
            .iter()
            .find(|(n, _)| n.value == r.host.name)
            .map(|(_, h)| &h.lans)
            .into_iter()
            .flatten()
        {
            if let Some(lan) = r.host.lans.iter().find(|x| x.name == lname.value) {
                nets.push((format!("LAN {:?}", lan.name), lan.subnet(), l.address.at));
            }
        }
    }

    // --- private VPN -------------------------------------------------------
    let mut private = None;
    if let Some(p) = &doc.private_vpn {
        match role_of(&p.server) {
            None => {
                v.err(
                    "unknown-host",
                    p.server.at,
                    format!(
                        "private_vpn.server names host {:?}, which is not in `hosts`",
                        p.server.value
                    ),
                );
            }
            Some(Role::Router) => {}
            Some(_) => {
                v.err(
                    "wrong-role",
                    p.server.at,
                    format!(
                        "private_vpn.server must be the router; {:?} is not",
                        p.server.value
                    ),
                )
                .with_hint("the private VPN terminates on the router and rides inside the WAN VPN");
            }
        }
        let pport = port(v, "private_vpn.port", &p.port);
        let psub = subnet(v, "private_vpn.subnet", &p.subnet).filter(|s| {
            if s.len > 30 {
                v.err(
                    "subnet-too-small",
                    p.subnet.at,
                    format!("private_vpn.subnet {s} has no room for the server and its clients"),
                )
                .with_hint("use a /24 or similar, e.g. 192.168.17.0/24");
                return false;
            }
            true
        });
        let pif = ifname(v, p.interface.as_ref(), "wg1");
        if pif == wan_if {
            let at = p.interface.as_ref().map_or(p.at, |i| i.at);
            v.err(
                "interface-clash",
                at,
                format!("private_vpn.interface {pif:?} is also the WAN VPN interface"),
            );
        }
        if let (Some(pp), Some(wp)) = (pport, wan_port) {
            if pp == wp {
                v.err("forward-lockout", p.port.at, format!("private_vpn.port {pp}/udp is the WAN VPN's port, which the gateway keeps for itself: clients would never reach the router"))
                    .with_hint("pick another port, e.g. 13131");
            }
        }
        if let Some(g) = gw {
            for (m, at) in g.host.management.iter().zip(&g.management_at) {
                if let Some(pp) = pport {
                    if m.protos.contains(&Proto::Udp) && m.ports.contains(pp) {
                        v.err("forward-lockout", p.port.at, format!("private_vpn.port {pp}/udp is a management port of the gateway, so it is never forwarded to the router"))
                            .with_note_at("the management port is declared", *at);
                    }
                }
            }
        }
        let paddr = psub.and_then(|s| {
            let given = p.address.as_ref();
            let r = address_in(v, "private_vpn.address", given, s, 0);
            if r.is_none() {
                // The seed's own mistake: say what the clients expect.
                if let Some(t) = given {
                    if let Some(d) = v.diags.0.iter_mut().rev().find(|d| d.pos == t.at && d.code == "address-outside-subnet") {
                        if let Some(first) = s.nth_host(0) {
                            d.hint = Some(format!("clients route {s} into the VPN and expect the server inside it; use address: {first}"));
                        }
                    }
                }
            }
            r
        });
        if let Some(s) = psub {
            nets.push(("private_vpn.subnet".into(), s, p.subnet.at));
        }
        let lan_nets: Vec<Ipv4Cidr> = router
            .map(|r| r.host.lans.iter().map(Lan::subnet).collect())
            .unwrap_or_default();
        let mut clients = Vec::new();
        let mut seen_addr: BTreeMap<Ipv4Addr, (String, Pos)> = BTreeMap::new();
        let mut seen_key: BTreeMap<String, (String, Pos)> = BTreeMap::new();
        for (cname, c) in &p.clients {
            check_name(v, "client", cname);
            let a = ip(v, &format!("client {:?} address", cname.value), &c.address);
            let a = a.filter(|a| {
                let Some(s) = psub else { return false };
                if !s.is_usable_host(*a) {
                    v.err(
                        "address-outside-subnet",
                        c.address.at,
                        format!(
                            "client {:?} address {a} is outside the private VPN subnet {s}",
                            cname.value
                        ),
                    )
                    .with_hint(format!("use an address from {s}"));
                    return false;
                }
                if Some(*a) == paddr {
                    v.err(
                        "address-clash",
                        c.address.at,
                        format!("client {:?} uses {a}, the server's own address", cname.value),
                    );
                    return false;
                }
                if let Some((other, at)) = seen_addr.get(a) {
                    v.err(
                        "address-clash",
                        c.address.at,
                        format!(
                            "client {:?} uses {a}, already used by client {other:?}",
                            cname.value
                        ),
                    )
                    .with_note_at(&format!("{other:?} is declared"), *at);
                    return false;
                }
                seen_addr.insert(*a, (cname.value.clone(), c.address.at));
                true
            });
            let key = wg_key(v, &format!("client {:?} public_key", cname.value), &c.public_key);
            if let Some(k) = &key {
                if let Some((other, at)) = seen_key.get(&k.0) {
                    v.err(
                        "duplicate-key",
                        c.public_key.at,
                        format!(
                            "client {:?} has the same public key as client {other:?}",
                            cname.value
                        ),
                    )
                    .with_note_at(&format!("{other:?} is declared"), *at)
                    .with_hint("each device generates its own key pair");
                } else {
                    seen_key.insert(k.0.clone(), (cname.value.clone(), c.public_key.at));
                }
            }
            let routes = match &c.routes {
                None => psub.into_iter().chain(lan_nets.iter().copied()).collect(),
                Some(rs) if rs.is_empty() => {
                    let at = c.routes.as_ref().map_or(c.at, |_| c.at);
                    v.err(
                        "unreachable-server",
                        at,
                        format!(
                            "client {:?} has `routes: []`: it would send nothing into the VPN",
                            cname.value
                        ),
                    )
                    .with_hint("omit `routes` for the default (the VPN subnet and the LANs)");
                    Vec::new()
                }
                Some(rs) => {
                    let mut out = Vec::new();
                    for r in rs {
                        let Some(r) =
                            cidr(v, &format!("client {:?} route", cname.value), r).map(|x| (x, r.at))
                        else {
                            continue;
                        };
                        if !r.0.is_network() {
                            v.err(
                                "malformed-subnet",
                                r.1,
                                format!("client {:?} route {} has host bits set", cname.value, r.0),
                            )
                            .with_hint(format!("did you mean {}?", r.0.trunc()));
                            continue;
                        }
                        if let Some(g) = gw.and_then(|g| g.host.public_address) {
                            if r.0.len > 0 && r.0.contains(g) {
                                v.err("endpoint-in-tunnel", r.1, format!("client {:?} route {} contains the gateway's public address {g}: the client would send its own tunnel packets into the tunnel", cname.value, r.0))
                                    .with_hint("route only the VPN subnet and the LANs (the default), or everything with 0.0.0.0/0, which clients exclude their endpoint from");
                                continue;
                            }
                        }
                        out.push(r.0);
                    }
                    if let (Some(pa), false) = (paddr, out.is_empty()) {
                        if !out.iter().any(|r| r.contains(pa)) {
                            let at = rs.first().map_or(c.at, |r| r.at);
                            v.err(
                                "unreachable-server",
                                at,
                                format!(
                                    "client {:?} routes do not include the server's address {pa}",
                                    cname.value
                                ),
                            )
                            .with_hint(format!(
                                "add {} (or the whole VPN subnet) to its routes",
                                Ipv4Cidr::host(pa)
                            ));
                        }
                    }
                    out
                }
            };
            let keepalive = match &c.keepalive {
                Some(k) if k.value > 65535 => {
                    v.err("bad-value", k.at, format!("keepalive {} is too large", k.value));
                    25
                }
                Some(k) => k.value as u16,
                None => 25,
            };
            if let (Some(address), Some(public_key)) = (a, key) {
                clients.push(Client {
                    name: cname.value.clone(),
                    address,
                    public_key,
                    routes,
                    keepalive,
                });
            }
        }
        if let (Some(port), Some(subnet), Some(address)) = (pport, psub, paddr) {
            private = Some((
                PrivateVpn {
                    server: p.server.value.clone(),
                    port,
                    subnet,
                    address,
                    interface: pif,
                    clients,
                },
                p.port.at,
            ));
        }
    }

    for i in 0..nets.len() {
        for j in 0..i {
            let (a, b) = (&nets[i], &nets[j]);
            if a.1.overlaps(&b.1) {
                v.err(
                    "subnet-overlap",
                    a.2,
                    format!("{} {} overlaps {} {}", a.0, a.1, b.0, b.1),
                )
                .with_note_at(&format!("{} is declared", b.0), b.2)
                .with_hint("each network needs its own address range");
            }
        }
    }
    if let Some(g) = gw {
        if let Some(pa) = g.host.public_address {
            for (what, net, _) in &nets {
                if net.contains(pa) {
                    v.err("endpoint-in-tunnel", g.public_at, format!("the gateway's public address {pa} is inside {what} {net}: the router would route the WAN VPN's own packets into a tunnel"))
                        .with_hint("public_address is the VPS's internet address; the tunnel and LAN networks must be private ranges that do not contain it");
                }
            }
        }
    }

    // --- forwards ----------------------------------------------------------
    let mut forwards = Vec::new();
    // (proto, range, owner label, pos, is_lockout)
    let mut taken: Vec<(Proto, PortRange, String, Pos, bool)> = Vec::new();
    if let Some(g) = gw {
        for (m, at) in g.host.management.iter().zip(&g.management_at) {
            for p in &m.protos {
                taken.push((
                    *p,
                    m.ports,
                    format!("the gateway's management port {m}"),
                    *at,
                    true,
                ));
            }
        }
        if let Some(wp) = wan_port {
            taken.push((
                Proto::Udp,
                PortRange::single(wp),
                format!("the WAN VPN port {wp}/udp of the gateway"),
                w.port.as_ref().map_or(w.at, |p| p.at),
                true,
            ));
        }
        if let Some(AgentAccess {
            address: Some((a, p)),
            ..
        }) = &g.host.agent
        {
            if Some(*a) == g.host.public_address {
                let at = doc
                    .hosts
                    .iter()
                    .find(|(n, _)| n.value == g.host.name)
                    .and_then(|(_, h)| h.agent.as_ref())
                    .map_or(g.at, |x| x.at);
                taken.push((
                    Proto::Tcp,
                    PortRange::single(*p),
                    format!("the gateway's agent port {p}/tcp"),
                    at,
                    true,
                ));
            }
        }
    }
    if let Some((pv, at)) = &private {
        taken.push((
            Proto::Udp,
            PortRange::single(pv.port),
            format!("the private VPN port {}/udp", pv.port),
            *at,
            false,
        ));
    }
    // Check targets only against a router whose LANs all resolved; otherwise
    // the LAN's own error is the one to fix, and targets would only echo it.
    let lans_ok = router.is_some_and(|r| {
        doc.hosts
            .iter()
            .find(|(n, _)| n.value == r.host.name)
            .is_some_and(|(_, h)| !h.lans.is_empty() && h.lans.len() == r.host.lans.len())
    });
    let lan_list: Vec<Lan> = router.map(|r| r.host.lans.clone()).unwrap_or_default();
    for (fname, f) in &doc.forwards {
        check_name(v, "forward", fname);
        let spec = port_spec(v, &format!("forward {:?} port", fname.value), &f.port);
        let (to, to_port) = {
            let s = f.to.value.0.trim();
            let (a, p) = match s.rsplit_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (s, None),
            };
            let addr = parse_ipv4(a);
            let port = p.map(parse_port_number);
            match (addr, port) {
                (Some(a), None) => (Some(a), None),
                (Some(a), Some(Some(p))) => (Some(a), Some(p)),
                _ => {
                    v.err(
                        "bad-target",
                        f.to.at,
                        format!(
                            "forward {:?} target {s:?} is not an address or address:port",
                            fname.value
                        ),
                    )
                    .with_hint("write 192.168.16.20 (same port) or 192.168.16.20:8080");
                    (None, None)
                }
            }
        };
        let (Some(spec), Some(to)) = (spec, to) else {
            continue;
        };
        if to_port.is_some() && !spec.ports.is_single() {
            v.err(
                "bad-target",
                f.to.at,
                format!(
                    "forward {:?} maps the range {} to a single port",
                    fname.value, spec.ports
                ),
            )
            .with_hint(format!("a range keeps its port numbers; write to: {to}"));
            continue;
        }
        if lans_ok && !lan_list.iter().any(|l| l.subnet().is_usable_host(to)) {
            let lans: Vec<String> = lan_list
                .iter()
                .map(|l| format!("{} {}", l.name, l.subnet()))
                .collect();
            v.err(
                "target-outside-lan",
                f.to.at,
                format!(
                    "forward {:?} target {to} is not on any LAN of the router",
                    fname.value
                ),
            )
            .with_hint(if lans.is_empty() {
                "declare the router's LANs under hosts.<router>.lans".to_string()
            } else {
                format!("the router's LANs are: {}", lans.join(", "))
            });
            continue;
        }
        let mut clash = false;
        for p in &spec.protos {
            for (tp, tr, owner, at, lockout) in &taken {
                if tp == p && tr.overlaps(&spec.ports) {
                    clash = true;
                    if *lockout {
                        v.err("forward-lockout", f.port.at, format!("forward {:?} ({}/{p}) would capture {owner}", fname.value, spec.ports))
                            .with_note_at("it is declared", *at)
                            .with_hint("the gateway never forwards its own ports; pick another public port for this service");
                    } else {
                        v.err(
                            "forward-overlap",
                            f.port.at,
                            format!("forward {:?} ({}/{p}) overlaps {owner}", fname.value, spec.ports),
                        )
                        .with_note_at("it is declared", *at);
                    }
                }
            }
        }
        if clash {
            continue;
        }
        for p in &spec.protos {
            taken.push((
                *p,
                spec.ports,
                format!("forward {:?} ({}/{p})", fname.value, spec.ports),
                f.port.at,
                false,
            ));
        }
        forwards.push(Forward {
            name: fname.value.clone(),
            protos: spec.protos.clone(),
            ports: spec.ports,
            to,
            to_port: to_port
                .filter(|p| Some(*p) != Some(spec.ports.first).filter(|_| spec.ports.is_single())),
            description: f.description.clone(),
        });
    }

    // --- pinned keys name real interfaces ------------------------------------
    for h in hosts.values() {
        let mut ifaces = Vec::new();
        if h.host.role == Role::Gateway || h.host.role == Role::Router {
            ifaces.push(wan_if.clone());
        }
        if let Some((pv, _)) = &private {
            if pv.server == h.host.name {
                ifaces.push(pv.interface.clone());
            }
        }
        for (iface, at) in &h.keys_at {
            if !ifaces.contains(iface) {
                v.err(
                    "unknown-interface",
                    *at,
                    format!("host {:?} has no WireGuard interface {iface:?}", h.host.name),
                )
                .with_hint(if ifaces.is_empty() {
                    "this host runs no WireGuard interface".to_string()
                } else {
                    format!("its interfaces are: {}", ifaces.join(", "))
                });
            }
        }
        if let Some(m) = &h.host.managed_by {
            if role_of(m) != Some(Role::Agent) {
                let at = doc
                    .hosts
                    .iter()
                    .find(|(n, _)| n.value == h.host.name)
                    .and_then(|(_, d)| d.managed_by.as_ref())
                    .map_or(h.at, |x| x.at);
                v.err(
                    "unknown-host",
                    at,
                    format!("managed_by names {m:?}, which is not a host with role agent"),
                );
            }
        }
    }

    if v.diags.has_errors() {
        return None;
    }
    Some(Config {
        hosts: hosts.into_iter().map(|(k, h)| (k, h.host)).collect(),
        wan: WanVpn {
            gateway: w.gateway.value.clone(),
            router: w.router.value.clone(),
            subnet: wan_subnet?,
            gateway_address: gw_addr?,
            router_address: rt_addr?,
            port: wan_port?,
            keepalive,
            interface: wan_if,
            forward_all,
            table,
            mark,
            rule_priority,
        },
        private: private.map(|(p, _)| p),
        forwards,
    })
}
