//! Running the host's tools (`ip`, `wg`, `nft`, `wireguard-go`), counting
//! every command that changes something.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, Default)]
pub struct Sys {
    /// Commands run that change live state (reads are not counted).
    pub writes: usize,
}

impl Sys {
    /// Run a read-only command; its stdout.
    pub fn read(&self, prog: &str, args: &[&str]) -> Result<String> {
        run(prog, args, None)
    }

    /// Run a command that changes live state.
    pub fn write(&mut self, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        self.writes += 1;
        tracing::debug!(command = %format!("{prog} {}", args.join(" ")), "write");
        run(prog, args, stdin)
    }
}

pub fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(prog)
        .args(args)
        .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {prog} (is it installed?)"))?;
    if let (Some(s), Some(mut si)) = (stdin, child.stdin.take()) {
        si.write_all(s.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
