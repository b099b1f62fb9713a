//! The networks Warren routes (the WAN VPN's subnet, the router's LANs, the
//! private VPN's subnet) must not overlap each other, nor contain the
//! gateway's public address.

use super::hosts::HostParts;
use super::private_vpn::PrivateParts;
use super::wan_vpn::WanParts;
use super::V;
use crate::diag::Pos;
use crate::net::Ipv4Cidr;

/// One routed network, named as in messages (`LAN "lan"`), with where it is written.
struct Net {
    what: String,
    net: Ipv4Cidr,
    at: Pos,
}

/// Every network that resolved, in the order: WAN VPN, LANs, private VPN.
pub(super) fn validate_networks(
    v: &mut V,
    wan: &WanParts,
    gateway: Option<&HostParts>,
    router: Option<&HostParts>,
    private: Option<&PrivateParts>,
) {
    let nets = networks(wan, router, private);
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[..i] {
            if a.net.overlaps(&b.net) {
                v.err(
                    "subnet-overlap",
                    a.at,
                    format!("{} {} overlaps {} {}", a.what, a.net, b.what, b.net),
                )
                .with_note_at(&format!("{} is declared", b.what), b.at)
                .with_hint("each network needs its own address range");
            }
        }
    }
    let Some(g) = gateway else { return };
    let Some(pa) = g.host.public_address else { return };
    for Net { what, net, .. } in &nets {
        if net.contains(pa) {
            v.err("endpoint-in-tunnel", g.public_at, format!("the gateway's public address {pa} is inside {what} {net}: the router would route the WAN VPN's own packets into a tunnel"))
                .with_hint("public_address is the VPS's internet address; the tunnel and LAN networks must be private ranges that do not contain it");
        }
    }
}

fn networks(wan: &WanParts, router: Option<&HostParts>, private: Option<&PrivateParts>) -> Vec<Net> {
    let mut nets = Vec::new();
    if let Some(net) = wan.subnet {
        nets.push(Net {
            what: "wan_vpn.subnet".into(),
            net,
            at: wan.subnet_at,
        });
    }
    if let Some(r) = router {
        for (lan, at) in r.host.lans.iter().zip(&r.lan_address_at) {
            nets.push(Net {
                what: format!("LAN {:?}", lan.name),
                net: lan.subnet(),
                at: *at,
            });
        }
    }
    if let Some(p) = private {
        if let Some(net) = p.subnet {
            nets.push(Net {
                what: "private_vpn.subnet".into(),
                net,
                at: p.subnet_at,
            });
        }
    }
    nets
}
