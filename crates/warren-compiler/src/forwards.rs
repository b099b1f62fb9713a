//! The router's port forwards as DNAT maps, so that a packet costs one map
//! lookup per protocol whatever the number of forwards.
//!
//! It owns the maps' names and layout and the `forwards` chain that looks
//! them up; it must not decide which ports reach the router (the gateway's
//! inbound chain does that).

use crate::ports::{interval, l4s};
use warren_model::model::Forward;
use warren_plan::nft::{Chain, ChainType, DnatMap, Hook, MapData, MapType, Match, Ports, Rule, Stmt, L4};

/// One protocol's three DNAT maps.
///
/// A single-port forward is an element of both `addr` and `port` under the
/// same key, and one rule looks both up (nft 1.0.6's JSON cannot express a
/// concatenated `addr . port` map value). A port-range forward is an element
/// of `range` alone: it keeps its port numbers.
#[derive(Debug)]
pub(crate) struct ForwardMaps {
    /// The protocol all three maps match.
    pub l4: L4,
    /// `fwd_<l4>_addr`: forwarded single port → target address.
    pub addr: DnatMap,
    /// `fwd_<l4>_port`: forwarded single port → target port (the public port
    /// itself unless the forward names another).
    pub port: DnatMap,
    /// `fwd_<l4>_range`: forwarded port range → target address.
    pub range: DnatMap,
}

impl ForwardMaps {
    /// The maps for the `forwards` of protocol `l4`, each sorted by port.
    pub(crate) fn of(l4: L4, forwards: &[Forward]) -> Self {
        let (mut addr, mut port, mut range) = (Vec::new(), Vec::new(), Vec::new());
        for f in forwards.iter().filter(|f| l4s(&f.protos).contains(&l4)) {
            let key = interval(f.ports);
            if f.ports.is_single() {
                addr.push((key, MapData::Addr(f.to)));
                port.push((key, MapData::Port(f.to_port.unwrap_or(f.ports.first))));
            } else {
                range.push((key, MapData::Addr(f.to)));
            }
        }
        let name = |suffix: &str| format!("fwd_{}_{suffix}", l4.as_str());
        ForwardMaps {
            l4,
            addr: sorted_map(name("addr"), MapType::Addr, addr),
            port: sorted_map(name("port"), MapType::Port, port),
            range: sorted_map(name("range"), MapType::Addr, range),
        }
    }

    /// The two rules that DNAT packets arriving on `wan_if` through these maps.
    pub(crate) fn rules(&self, wan_if: &str) -> [Rule; 2] {
        let l4 = self.l4;
        let l = l4.as_str();
        [
            Rule {
                matches: vec![Match::Iif(wan_if.to_string())],
                stmts: vec![Stmt::DnatMap {
                    l4,
                    addr_map: self.addr.name.clone(),
                    port_map: Some(self.port.name.clone()),
                }],
                comment: format!("{l} port forwards: one lookup per map, whatever their number"),
            },
            Rule {
                matches: vec![Match::Iif(wan_if.to_string())],
                stmts: vec![Stmt::DnatMap {
                    l4,
                    addr_map: self.range.name.clone(),
                    port_map: None,
                }],
                comment: format!("{l} port-range forwards keep their port numbers"),
            },
        ]
    }

    /// The maps in table order: `addr`, `port`, `range`.
    pub(crate) fn into_maps(self) -> [DnatMap; 3] {
        [self.addr, self.port, self.range]
    }
}

fn sorted_map(name: String, data: MapType, mut elements: Vec<(Ports, MapData)>) -> DnatMap {
    elements.sort_by_key(|e| e.0);
    DnatMap { name, data, elements }
}

/// The router's `forwards` chain (DNAT of what arrives on `wan_if`) and the
/// maps it looks up, TCP's before UDP's.
pub(crate) fn chain_and_maps(wan_if: &str, forwards: &[Forward]) -> (Chain, Vec<DnatMap>) {
    let mut rules = Vec::new();
    let mut maps = Vec::new();
    for l4 in [L4::Tcp, L4::Udp] {
        let by_l4 = ForwardMaps::of(l4, forwards);
        rules.extend(by_l4.rules(wan_if));
        maps.extend(by_l4.into_maps());
    }
    let chain = Chain {
        name: "forwards".into(),
        kind: ChainType::Nat,
        hook: Hook::Prerouting,
        priority: -100,
        rules,
    };
    (chain, maps)
}

/// The reviewer's one-line summary of a forward.
pub(crate) fn note(f: &Forward) -> String {
    let protos: Vec<&str> = f.protos.iter().map(|p| p.as_str()).collect();
    let to = match f.to_port {
        Some(tp) => format!("{}:{tp}", f.to),
        None => f.to.to_string(),
    };
    let description = f
        .description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    format!(
        "forward {}: {}/{} -> {to}{description}",
        f.name,
        f.ports,
        protos.join("+")
    )
}
