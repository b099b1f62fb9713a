//! `warren-ros-sim`: a test-only stand-in for a MikroTik router running
//! RouterOS v7, so that Warren's RouterOS agent can be tested without
//! hardware. It is **not** RouterOS: it implements the subset Warren uses,
//! with the semantics recorded from real routers (see docs/routeros.md,
//! "What was tested and against what").
//!
//! It owns: an in-memory configuration database ([`db`]) with RouterOS's
//! ids, ordering, string values and dynamic rows; and the projection of that
//! configuration onto the Linux network namespace it runs in ([`kernel`]),
//! so real packets cross the "router". It must never be shipped in a Warren
//! binary, and it must not reach outside the namespace it is started in.

pub mod db;
pub mod defconf;
pub mod error;
pub mod kernel;
pub mod rest;
pub mod router;
pub mod schema;
pub mod script;
pub mod server;
pub mod sim;
