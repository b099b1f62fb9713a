//! Talking to a MikroTik RouterOS v7 router: its REST API over HTTPS
//! ([`client`]) with the router's certificate pinned by fingerprint
//! ([`tls`]). What to send is decided elsewhere (the pure diff in
//! `warren_plan::ros_diff`, the backend in `backend::routeros`).

pub mod client;
pub mod tls;
