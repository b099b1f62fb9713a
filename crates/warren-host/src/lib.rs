//! What the agent and the controller binaries share on the machine they run
//! on: atomic writes of private files (0600, file and directory fsynced),
//! secret key files (one base64 line of 32 bytes, refused when others can
//! read them), the wall clock as Unix seconds, stdout that ends quietly on a
//! closed pipe, output formats and log set-up.
//!
//! It owns no domain knowledge: nothing about plans, YAML, WireGuard
//! semantics or the wire protocol lives here. The pure crates
//! (`warren-model`, `warren-compiler`, `warren-plan`) must not depend on it,
//! because it reads the clock and touches the filesystem.

#![warn(missing_docs)]

pub mod cli;
pub mod fs;
pub mod gendocs;
pub mod secret;

pub use fs::write_atomic;

/// Seconds since the Unix epoch by the wall clock (0 if the clock is set
/// before 1970). The one place the binaries read wall-clock time; the pure
/// crates take it as an argument.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
