//! `warren-agent`: the daemon that verifies signed plans and applies them on
//! its host (WireGuard, nftables, policy routing, sysctls).
//!
//! NOT IMPLEMENTED YET: this binary only reserves its place in the workspace
//! and says so. It will own the host's Warren-tagged state and nothing else,
//! and will depend on `warren-plan` only (no YAML, no git). See docs/status.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("warren-agent: not implemented yet; see docs/status.md");
    ExitCode::from(2)
}
