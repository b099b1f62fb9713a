//! The host, as the backends see it: its tools (`ip`, `wg`, `nft`,
//! `wireguard-go`) and its `/proc/sys` files, behind the small [`Sys`]
//! trait. [`Live`] runs and writes for real and counts every change that
//! succeeded; the test-only [`Recorder`] touches nothing and keeps the
//! commands, so `Op -> argv` can be checked without root.
//!
//! It knows nothing about plans or operations: what to run is the
//! backends' business, and no backend keeps the count of writes itself.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a backend may do to the host.
pub trait Sys {
    /// Run a command that only reads; its stdout.
    fn read(&self, prog: &str, args: &[&str]) -> Result<String>;
    /// Run a command that changes live state; its stdout. It counts as a
    /// write once it has succeeded.
    fn write(&mut self, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String>;
    /// Read a small file (a sysctl).
    fn read_file(&self, path: &Path) -> Result<String>;
    /// Replace the content of a small file that is live state (a sysctl).
    /// It counts as a write once it has succeeded.
    fn write_file(&mut self, path: &Path, contents: &str) -> Result<()>;
    /// Whether `path` exists (a daemon's socket).
    fn exists(&self, path: &Path) -> bool;
    /// Writes that succeeded so far (reads are not counted).
    fn writes(&self) -> usize;
}

/// The real host.
#[derive(Debug, Default)]
pub struct Live {
    writes: usize,
}

impl Sys for Live {
    fn read(&self, prog: &str, args: &[&str]) -> Result<String> {
        run(prog, args, None)
    }

    fn write(&mut self, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        tracing::debug!(command = %format!("{prog} {}", args.join(" ")), "write");
        let out = run(prog, args, stdin)?;
        self.writes += 1;
        Ok(out)
    }

    fn read_file(&self, path: &Path) -> Result<String> {
        Ok(std::fs::read_to_string(path)?)
    }

    fn write_file(&mut self, path: &Path, contents: &str) -> Result<()> {
        std::fs::write(path, contents)?;
        self.writes += 1;
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn writes(&self) -> usize {
        self.writes
    }
}

fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
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

#[cfg(test)]
pub use recorder::Recorder;

#[cfg(test)]
mod recorder {
    use super::Sys;
    use anyhow::{bail, Result};
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// A host that only pretends: reads come from `reads` and `files`,
    /// writes are recorded in `log`, one line each.
    #[derive(Debug, Default)]
    pub struct Recorder {
        /// Stdout of read commands, by command line (`ip -j -4 rule show`).
        /// A command not listed fails the way a missing object does
        /// (`ip`: "does not exist", `nft`: "No such file or directory").
        pub reads: BTreeMap<String, String>,
        /// Files and their content (`/proc/sys/...`); writes update them.
        pub files: BTreeMap<PathBuf, String>,
        /// Write commands (by command line) that fail.
        pub failing: BTreeSet<String>,
        /// Every write that succeeded: `prog args…`, then ` <<< stdin` if
        /// any; a file as `write PATH VALUE`.
        pub log: Vec<String>,
    }

    impl Sys for Recorder {
        fn read(&self, prog: &str, args: &[&str]) -> Result<String> {
            let line = format!("{prog} {}", args.join(" "));
            match self.reads.get(&line) {
                Some(out) => Ok(out.clone()),
                None => bail!("`{line}` failed: does not exist (No such file or directory)"),
            }
        }

        fn write(&mut self, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
            let line = format!("{prog} {}", args.join(" "));
            if self.failing.contains(&line) {
                bail!("`{line}` failed: refused by the test");
            }
            self.log.push(match stdin {
                Some(s) => format!("{line} <<< {s}"),
                None => line,
            });
            Ok(String::new())
        }

        fn read_file(&self, path: &Path) -> Result<String> {
            match self.files.get(path) {
                Some(s) => Ok(s.clone()),
                None => bail!("{}: No such file or directory", path.display()),
            }
        }

        fn write_file(&mut self, path: &Path, contents: &str) -> Result<()> {
            self.log.push(format!("write {} {contents}", path.display()));
            self.files.insert(path.to_path_buf(), contents.to_string());
            Ok(())
        }

        fn exists(&self, _: &Path) -> bool {
            true
        }

        fn writes(&self) -> usize {
            self.log.len()
        }
    }
}
