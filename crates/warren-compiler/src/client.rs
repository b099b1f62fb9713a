//! wg-quick files for the private VPN's clients (phones, laptops).
//!
//! Clients run no agent, so this is the only way their side of the tunnel is
//! described. It must never hold a client's private key: the file carries a
//! placeholder the user fills in on the device.

use crate::{KeyBook, Mtus};
use warren_model::model::Config;
use warren_plan::net::Ipv4Cidr;
use warren_plan::PeerKey;

/// A wg-quick configuration for a private VPN client (its private key stays
/// on the device: the file carries a placeholder for it).
pub fn client_config(cfg: &Config, keys: &KeyBook, client: &str) -> Option<String> {
    let pv = cfg.private.as_ref()?;
    let c = pv.clients.iter().find(|c| c.name == client)?;
    let mtus = Mtus::of(cfg);
    let server_key = match keys.peer_key(&pv.server, &pv.interface) {
        PeerKey::Known(k) => k,
        PeerKey::Pending { host, interface } => format!("<awaiting {host}'s key for {interface}>"),
    };
    let routes: Vec<String> = c.routes.iter().map(Ipv4Cidr::to_string).collect();
    let mut s = format!(
        "# Warren private VPN client {:?}\n[Interface]\nPrivateKey = <this device's private key>\nAddress = {}/{}\nMTU = {}\n\n[Peer]\n# {} through the gateway's public address, nested in the WAN VPN\nPublicKey = {server_key}\nEndpoint = {}:{}\nAllowedIPs = {}\n",
        c.name,
        c.address,
        pv.subnet.len,
        mtus.private,
        pv.server,
        cfg.public_address(),
        pv.port,
        routes.join(", ")
    );
    if c.keepalive > 0 {
        s.push_str(&format!("PersistentKeepalive = {}\n", c.keepalive));
    }
    Some(s)
}
