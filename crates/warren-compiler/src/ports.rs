//! The model's protocols and port ranges in nft's vocabulary.
//!
//! The model keeps its own `Proto`/`PortRange` so that it does not depend on
//! the plan's AST; this module is the one place that converts between them.
//! It must not decide which ports go where.

use warren_model::model::{PortRange, Proto};
use warren_plan::nft::{Ports, L4};

/// The nft protocols of a port spec (`53/tcp+udp` gives both).
pub(crate) fn l4s(protos: &[Proto]) -> Vec<L4> {
    protos
        .iter()
        .map(|p| match p {
            Proto::Tcp => L4::Tcp,
            Proto::Udp => L4::Udp,
        })
        .collect()
}

/// The nft interval of a model port range.
pub(crate) fn interval(r: PortRange) -> Ports {
    Ports {
        first: r.first,
        last: r.last,
    }
}

/// A single port as an nft interval.
pub(crate) fn single(port: u16) -> Ports {
    Ports {
        first: port,
        last: port,
    }
}

/// Sorted, merged port intervals (nft refuses overlapping interval elements).
pub(crate) fn merge(mut v: Vec<Ports>) -> Vec<Ports> {
    v.sort();
    let mut out: Vec<Ports> = Vec::new();
    for p in v {
        match out.last_mut() {
            Some(l) if u32::from(p.first) <= u32::from(l.last) + 1 => l.last = l.last.max(p.last),
            _ => out.push(p),
        }
    }
    out
}
