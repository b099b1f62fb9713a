//! The tunnels' MTUs and the MSS clamps that follow from them.
//!
//! It owns the arithmetic (path MTU → WAN VPN → private VPN, MTU → MSS) and
//! the `clamp` chain both roles carry; it must not decide which interfaces a
//! host has (the role modules pass them in).

use warren_model::model::Config;
use warren_model::WG_OVERHEAD;
use warren_plan::nft::{Chain, ChainType, Hook, Match, Rule, Stmt};

/// The MTUs and MSS values of both tunnels, derived from the path MTUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtus {
    /// The smaller of the gateway's and the router's path MTU.
    pub path: u16,
    /// The WAN VPN's MTU: the path MTU less one WireGuard overhead.
    pub wan: u16,
    /// The private VPN's MTU: it rides inside the WAN VPN, so one more overhead.
    pub private: u16,
}

impl Mtus {
    /// The MTUs for `cfg`'s gateway and router.
    pub fn of(cfg: &Config) -> Self {
        let path = cfg.gateway().path_mtu.min(cfg.router().path_mtu);
        let wan = path - WG_OVERHEAD;
        Mtus {
            path,
            wan,
            private: wan - WG_OVERHEAD,
        }
    }

    /// IPv4 TCP MSS for a given MTU (20 bytes IP + 20 bytes TCP).
    pub fn mss(mtu: u16) -> u16 {
        mtu - 40
    }
}

/// Clamp the MSS of TCP SYNs leaving and entering `iface` to fit `mtu`;
/// `what` names the tunnel in the rule comments.
pub(crate) fn mss_clamp(iface: &str, mtu: u16, what: &str) -> Vec<Rule> {
    let mss = Mtus::mss(mtu);
    vec![
        Rule {
            matches: vec![Match::Oif(iface.to_string()), Match::TcpSyn, Match::MssAbove(mss)],
            stmts: vec![Stmt::MssSet(mss)],
            comment: format!("clamp MSS to {mss}: {what} MTU {mtu}"),
        },
        Rule {
            matches: vec![Match::Iif(iface.to_string()), Match::TcpSyn, Match::MssAbove(mss)],
            stmts: vec![Stmt::MssSet(mss)],
            comment: format!("clamp MSS to {mss} both ways: {what} MTU {mtu}"),
        },
    ]
}

/// The `clamp` chain (filter, forward hook, mangle priority) holding `rules`.
pub(crate) fn clamp_chain(rules: Vec<Rule>) -> Chain {
    Chain {
        name: "clamp".into(),
        kind: ChainType::Filter,
        hook: Hook::Forward,
        priority: -150,
        rules,
    }
}
