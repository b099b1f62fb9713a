//! Value parsers: one scalar as written (an address, a prefix, a port, a key,
//! a name) to its typed form, or a diagnostic at that scalar. They know
//! nothing about the rest of the document.

use super::V;
use crate::diag::Pos;
use crate::model::{PortRange, PortSpec, Proto, WgKey};
use crate::net::{parse_ipv4, Ipv4Cidr};
use crate::sp::{Sp, Text};
use std::net::Ipv4Addr;

/// A name for a host, LAN, client or forward: letters, digits, '-' and '_',
/// starting with a letter or digit, at most 63 characters (a DNS label).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What Linux accepts as an interface name (IFNAMSIZ is 16 with the NUL).
fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reports `bad-name` when `n` is not a valid name.
pub(super) fn check_name(v: &mut V, what: &str, n: &Sp<String>) {
    if !valid_name(n) {
        v.err(
            "bad-name",
            n.at,
            format!("{what} name {:?} is not a valid name", n.value),
        )
        .with_hint("use letters, digits, '-' and '_', starting with a letter or digit (at most 63)");
    }
}

/// An interface name, or `default` when none is given (or it is invalid).
pub(super) fn ifname(v: &mut V, n: Option<&Sp<String>>, default: &str) -> String {
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

/// A plain IPv4 address (no prefix).
pub(super) fn ip(v: &mut V, what: &str, t: &Sp<Text>) -> Option<Ipv4Addr> {
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

/// An IPv4 address with a prefix length; host bits may be set.
pub(super) fn cidr(v: &mut V, what: &str, t: &Sp<Text>) -> Option<Ipv4Cidr> {
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
pub(super) fn subnet(v: &mut V, what: &str, t: &Sp<Text>) -> Option<Ipv4Cidr> {
    let c = cidr(v, what, t)?;
    if !c.is_network() {
        v.err("malformed-subnet", t.at, format!("{what} {c} has host bits set"))
            .with_hint(format!("did you mean {}?", c.trunc()));
        return None;
    }
    Some(c)
}

/// A numeric port, 1-65535.
pub(super) fn port(v: &mut V, what: &str, n: &Sp<u64>) -> Option<u16> {
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

/// `tcp`, `udp` or `tcp+udp` (any case), sorted and deduplicated.
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

/// A decimal port, 1-65535, with nothing else around it.
pub(super) fn parse_port_number(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// `25565/tcp`, `27000-27015/udp`, `53/tcp+udp`.
pub(super) fn port_spec(v: &mut V, what: &str, t: &Sp<Text>) -> Option<PortSpec> {
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

/// A WireGuard public key: base64 of 32 bytes.
pub(super) fn wg_key(v: &mut V, what: &str, k: &Sp<String>) -> Option<WgKey> {
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

/// An OpenSSH `ssh-ed25519 AAAA…` public key (a trailing comment is allowed).
pub(super) fn ssh_ed25519(v: &mut V, what: &str, k: &Sp<String>) -> Option<String> {
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

/// The SHA-256 fingerprint of a TLS certificate: 64 hex digits, or 32
/// two-digit groups separated by colons (`AB:CD:…`), any case. Returned as
/// lowercase hex without separators.
pub(crate) fn parse_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let hex: String = if s.contains(':') {
        let groups: Vec<&str> = s.split(':').collect();
        if groups.len() != 32 || groups.iter().any(|g| g.len() != 2) {
            return None;
        }
        groups.concat()
    } else {
        s.to_string()
    };
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

/// `routeros.fingerprint`: see [`parse_fingerprint`].
pub(super) fn fingerprint(v: &mut V, what: &str, t: &Sp<Text>) -> Option<String> {
    let parsed = parse_fingerprint(&t.value.0);
    if parsed.is_none() {
        v.err(
            "bad-fingerprint",
            t.at,
            format!("{what} {:?} is not a SHA-256 certificate fingerprint", t.value.0.trim()),
        )
        .with_hint("write the 64 hex digits (or AB:CD:… pairs) that `/certificate print detail` shows as `fingerprint` for the certificate of `/ip/service www-ssl`");
    }
    parsed
}

/// `IPv4:port`, e.g. an agent's listening address.
pub(super) fn endpoint(v: &mut V, what: &str, t: &Sp<Text>) -> Option<(Ipv4Addr, u16)> {
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

/// Address inside `net`, given or defaulted to its n-th host.
pub(super) fn address_in(
    v: &mut V,
    what: &str,
    given: Option<&Sp<Text>>,
    net: Ipv4Cidr,
    nth: u32,
) -> Option<Ipv4Addr> {
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
