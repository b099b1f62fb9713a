//! The host, as the backends see it: its tools (`ip`, `wg`, `nft`,
//! `wireguard-go`) and its `/proc/sys` files, behind the small [`Sys`]
//! trait. [`Live`] runs and writes for real and counts every change that
//! succeeded; the test-only [`Recorder`] touches nothing and keeps the
//! commands, so `Op -> argv` can be checked without root.
//!
//! It knows nothing about plans or operations: what to run is the
//! backends' business, and no backend keeps the count of writes itself.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// Longest any one command may run: a hung `wg` (a wedged wireguard-go
/// socket) or `nft` must not stall the engine, its rollbacks and drift
/// checks with it. `nft` gets more for a large table.
pub fn deadline(prog: &str) -> Duration {
    match prog {
        "nft" => Duration::from_secs(30),
        _ => Duration::from_secs(10),
    }
}

fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    run_for(prog, args, stdin, deadline(prog))
}

/// Run `prog args`, feeding `stdin`, within `limit`; its stdout. On timeout
/// the child is killed and the error names the command. Stdin is written
/// and stdout/stderr read at the same time, so no size of input or output
/// can deadlock.
pub fn run_for(prog: &str, args: &[&str], stdin: Option<&str>, limit: Duration) -> Result<String> {
    let line = format!("{prog} {}", args.join(" "));
    let until = Instant::now() + limit;
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
        let s = s.to_string();
        // A child that exits early makes this fail (EPIPE); its exit status
        // says why. Dropping `si` closes the child's stdin.
        std::thread::spawn(move || si.write_all(s.as_bytes()));
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let timed_out = || anyhow!("`{line}` timed out after {}s and was killed", limit.as_secs_f64());
    // The pipes close when the child exits (so this wakes at once), or
    // never if it hangs, or late if a leftover grandchild holds them.
    let (Some(out), Some(err)) = (collect(&out, until), collect(&err, until)) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(timed_out());
    };
    let Some(status) = wait_until(&mut child, until)? else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(timed_out());
    };
    if !status.success() {
        bail!("`{line}` failed: {}", String::from_utf8_lossy(&err).trim());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Read a pipe to its end in a thread of its own; the bytes arrive on the
/// channel.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

fn collect(rx: &mpsc::Receiver<Vec<u8>>, until: Instant) -> Option<Vec<u8>> {
    rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        .ok()
}

/// The child's exit status, or `None` if it is still running at `until`.
fn wait_until(child: &mut Child, until: Instant) -> Result<Option<ExitStatus>> {
    // Most commands take milliseconds: poll fast first, then back off.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= until {
            return Ok(None);
        }
        std::thread::sleep(pause.min(until - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod timeouts {
    use super::*;

    #[test]
    fn a_hung_command_is_killed_and_named() {
        let t = Instant::now();
        let e = run_for("sleep", &["30"], None, Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(e.to_string().contains("`sleep 30` timed out after 0.3s"), "{e}");
    }

    #[test]
    fn a_grandchild_holding_the_output_open_is_bounded_too() {
        let t = Instant::now();
        let e = run_for(
            "sh",
            &["-c", "sleep 30 & echo started"],
            None,
            Duration::from_millis(300),
        );
        assert!(e.unwrap_err().to_string().contains("timed out"));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn large_input_and_output_do_not_deadlock() {
        // 4 MiB through `cat`: far more than a pipe buffer each way.
        let big = "x".repeat(4 << 20);
        let out = run_for("cat", &[], Some(&big), Duration::from_secs(20)).unwrap();
        assert_eq!(out.len(), big.len());
    }

    #[test]
    fn failures_keep_their_stderr() {
        let e = run_for(
            "sh",
            &["-c", "echo nope >&2; exit 3"],
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "`sh -c echo nope >&2; exit 3` failed: nope");
        assert_eq!(
            run_for("echo", &["hi"], None, Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
    }
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
        /// Stdout of read commands, by command line (`ip -N -j -4 rule show`).
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
