//! The Debian packages (scripts/build-debs.sh): built from this checkout,
//! checked by lintian (errors fail; warnings are listed), installed on this
//! machine with `dpkg -i`, their files and units checked (`systemd-analyze
//! verify` on the installed units), the packaged agent run, then removed
//! (conffile and state kept) and purged (nothing left). Needs root and dpkg.
//!
//! Binaries: `target/release` when both are there and at least as new as
//! this build's (the script's default is a release build); otherwise the
//! binaries this test run was built with (`cargo build --bins`, as
//! ./test.sh does), stripped like the release ones. Set
//! WARREN_DEBS_RELEASE=1 to have the script run `cargo build --release`.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;
use warren_tests::{bin, root};

const PACKAGES: [&str; 2] = ["warren-agent", "warren-controller"];

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// dpkg's state of `pkg`: "installed", "config-files", "not-installed"...
/// ("" when dpkg has never heard of it).
fn state(pkg: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn installed(pkg: &str) -> bool {
    state(pkg) == "installed"
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Purges both packages when the test ends, passed or not, and deletes the
/// watched paths that were not there before (a failed purge leaves them).
struct Purge(Vec<(&'static str, bool)>, PathBuf);
impl Drop for Purge {
    fn drop(&mut self) {
        for p in PACKAGES {
            if !matches!(state(p).as_str(), "" | "not-installed") {
                let _ = Command::new("dpkg").args(["--purge", p]).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.1);
        for (path, existed) in &self.0 {
            let p = Path::new(path);
            if !existed && p.symlink_metadata().is_ok() {
                let _ = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
            }
        }
    }
}

/// The newest modification time of `path`, if it exists.
fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Where the binaries to package come from, and what to say about it.
fn binaries() -> (Option<PathBuf>, String) {
    if std::env::var_os("WARREN_DEBS_RELEASE").is_some() {
        return (None, "cargo build --release (WARREN_DEBS_RELEASE)".into());
    }
    let release = root().join("target/release");
    let fresh = PACKAGES
        .iter()
        .all(|p| match (mtime(&release.join(p)), mtime(&bin(p))) {
            (Some(r), Some(d)) => r >= d,
            _ => false,
        });
    if fresh {
        return (
            Some(release),
            "target/release (at least as new as this build)".into(),
        );
    }
    let dir = bin("warren-agent").parent().unwrap().to_path_buf();
    let why = format!(
        "{} (this build's; target/release is missing or older; stripped)",
        dir.display()
    );
    (Some(dir), why)
}

#[test]
fn debs_build_lint_install_verify_purge() {
    let uid = ok(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        println!("SKIPPED debs: needs root (dpkg -i on this machine)");
        return;
    }
    if !have("dpkg-deb") || !have("dpkg-shlibdeps") {
        println!("SKIPPED debs: not a Debian system with dpkg-dev (dpkg-deb, dpkg-shlibdeps)");
        return;
    }
    if let Some(p) = PACKAGES
        .iter()
        .find(|p| !matches!(state(p).as_str(), "" | "not-installed"))
    {
        println!(
            "SKIPPED debs: {p} is already installed on this machine; the test will not replace or purge it"
        );
        return;
    }
    assert!(
        have("lintian"),
        "lintian is not installed: scripts/deps.sh (warren_install_deps test) installs it"
    );
    for dep in ["nftables", "iproute2", "wireguard-tools"] {
        assert!(
            installed(dep),
            "{dep} (a Depends of warren-agent) is not installed: scripts/deps.sh installs it"
        );
    }
    let out = std::env::temp_dir().join(format!("warren-debs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    // What exists before, to prove the purge leaves nothing new behind.
    let watched = [
        "/etc/warren",
        "/var/lib/warren-agent",
        "/var/lib/warren-controller",
        "/var/lib/private/warren-controller",
        "/var/lib/private",
        "/var/lib/systemd/deb-systemd-helper-enabled/warren-agent.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/warren-controller.service.dsh-also",
    ];
    let before: Vec<bool> = watched
        .iter()
        .map(|p| Path::new(p).symlink_metadata().is_ok())
        .collect();
    let _purge = Purge(
        watched.iter().copied().zip(before.iter().copied()).collect(),
        out.clone(),
    );

    // 1. Build.
    let t = Instant::now();
    let (bindir, source) = binaries();
    let mut build = Command::new(root().join("scripts/build-debs.sh"));
    build.arg("--out").arg(&out);
    if let Some(dir) = &bindir {
        build.arg("--bin-dir").arg(dir);
    }
    let debs: Vec<PathBuf> = ok(&mut build).lines().map(PathBuf::from).collect();
    let build_secs = t.elapsed().as_secs_f64();
    assert_eq!(debs.len(), 2, "{debs:?}");
    for (deb, pkg) in debs.iter().zip(PACKAGES) {
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("{pkg}_")), "{name}");
        let fields = ok(Command::new("dpkg-deb").args(["-f"]).arg(deb));
        println!(
            "debs: {name}: {} KiB; {}",
            std::fs::metadata(deb).unwrap().len() / 1024,
            fields
                .lines()
                .filter(|l| l.starts_with("Depends") || l.starts_with("Recommends"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let control = ok(Command::new("dpkg-deb").arg("-f").arg(&debs[0]));
    for dep in ["nftables", "iproute2", "wireguard-tools", "libc6"] {
        assert!(
            control.contains(dep),
            "warren-agent Depends lacks {dep}:\n{control}"
        );
    }
    assert!(control.contains("Recommends: wireguard-go"), "{control}");

    // 2. lintian: errors fail, warnings are listed.
    let t = Instant::now();
    let lint = run(Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .args(&debs));
    let lint_secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&lint.stdout).into_owned();
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("W: ")).collect();
    println!(
        "debs: lintian: {} errors, {} warnings",
        errors.len(),
        warnings.len()
    );
    for w in &warnings {
        println!("debs: lintian {w}");
    }
    assert!(
        errors.is_empty(),
        "lintian errors:\n{}\n{}",
        errors.join("\n"),
        String::from_utf8_lossy(&lint.stderr)
    );

    // 3. Install both.
    let t = Instant::now();
    ok(Command::new("dpkg").arg("-i").args(&debs));
    let install_secs = t.elapsed().as_secs_f64();
    for p in PACKAGES {
        assert!(installed(p), "{p} not installed after dpkg -i");
    }

    // 4. The files.
    let agent_files = ok(Command::new("dpkg").args(["-L", "warren-agent"]));
    let ctl_files = ok(Command::new("dpkg").args(["-L", "warren-controller"]));
    for f in [
        "/usr/bin/warren-agent",
        "/lib/systemd/system/warren-agent.service",
        "/etc/warren/agent.toml",
        "/usr/lib/tmpfiles.d/warren-agent.conf",
        "/usr/share/man/man1/warren-agent.1.gz",
        "/usr/share/man/man1/warren-agent-doctor.1.gz",
        "/usr/share/bash-completion/completions/warren-agent",
        "/usr/share/zsh/vendor-completions/_warren-agent",
        "/usr/share/fish/vendor_completions.d/warren-agent.fish",
        "/usr/share/doc/warren-agent/copyright",
        "/usr/share/doc/warren-agent/changelog.Debian.gz",
    ] {
        assert!(agent_files.lines().any(|l| l == f), "warren-agent lacks {f}");
        assert!(Path::new(f).is_file(), "{f} not on disk");
    }
    for f in [
        "/usr/bin/warren-controller",
        "/lib/systemd/system/warren-controller.service",
        "/usr/share/man/man1/warren-controller.1.gz",
        "/usr/share/man/man1/warren-controller-serve.1.gz",
        "/usr/share/bash-completion/completions/warren-controller",
        "/usr/share/zsh/vendor-completions/_warren-controller",
        "/usr/share/fish/vendor_completions.d/warren-controller.fish",
    ] {
        assert!(ctl_files.lines().any(|l| l == f), "warren-controller lacks {f}");
        assert!(Path::new(f).is_file(), "{f} not on disk");
    }
    // The hidden packaging subcommand has no page and is not offered.
    assert!(!agent_files.contains("generate-docs"), "{agent_files}");
    for shell in [
        "/usr/share/bash-completion/completions/warren-agent",
        "/usr/share/zsh/vendor-completions/_warren-agent",
        "/usr/share/fish/vendor_completions.d/warren-agent.fish",
    ] {
        let text = std::fs::read_to_string(shell).unwrap();
        assert!(
            text.contains("doctor") && !text.contains("generate-docs"),
            "{shell}"
        );
    }
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "warren-agent"]));
    assert!(
        conffiles.contains("/etc/warren/agent.toml"),
        "conffiles: {conffiles}"
    );
    let pages = agent_files
        .lines()
        .chain(ctl_files.lines())
        .filter(|l| l.ends_with(".1.gz"))
        .count();
    println!("debs: {pages} man pages, 6 completion files");
    // State directories, owner-only.
    for d in ["/var/lib/warren-agent", "/var/lib/warren-controller"] {
        let m = std::fs::metadata(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{d}");
    }
    // DynamicUser: the controller's state lives where systemd keeps it.
    assert_eq!(
        std::fs::read_link("/var/lib/warren-controller").unwrap(),
        Path::new("private/warren-controller")
    );
    // The units run the packaged binaries.
    for p in PACKAGES {
        let unit = std::fs::read_to_string(format!("/lib/systemd/system/{p}.service")).unwrap();
        assert!(unit.contains(&format!("ExecStart=/usr/bin/{p} ")), "{p}.service");
        assert!(!unit.contains("/usr/local/bin"), "{p}.service");
    }

    // 5. systemd-analyze verify on the installed units.
    let t = Instant::now();
    let mut verified = 0;
    if have("systemd-analyze") {
        for p in PACKAGES {
            let unit = format!("/lib/systemd/system/{p}.service");
            let o = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
            let err = String::from_utf8_lossy(&o.stderr);
            // Only complaints about this unit count (the host's own units may be odd).
            let ours: Vec<&str> = err
                .lines()
                .filter(|l| l.contains(&format!("{p}.service")))
                .collect();
            assert!(o.status.success() && ours.is_empty(), "{unit}:\n{err}");
            verified += 1;
        }
    } else {
        panic!("systemd-analyze is missing: install systemd (scripts/deps.sh test does)");
    }
    let verify_secs = t.elapsed().as_secs_f64();

    // 6. The packaged binaries run; the default configuration is refused
    // until it is edited.
    let v = ok(Command::new("/usr/bin/warren-agent").arg("--version"));
    assert!(v.starts_with("warren-agent "), "{v}");
    println!("debs: /usr/bin/warren-agent --version: {}", v.trim());
    let v = ok(Command::new("/usr/bin/warren-controller").arg("--version"));
    assert!(v.starts_with("warren-controller "), "{v}");
    let o = run(Command::new("/usr/bin/warren-agent").arg("keys"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "the placeholder config was accepted: {err}"
    );
    assert!(err.contains("REPLACE-WITH-THE-CONTROLLER-PUBLIC-KEY"), "{err}");
    assert!(
        std::fs::read_dir("/var/lib/warren-agent")
            .unwrap()
            .next()
            .is_none(),
        "the refused agent wrote state"
    );

    // 7. Remove: the conffile and state stay. Purge: nothing stays.
    let t = Instant::now();
    ok(Command::new("dpkg").args(["-r"]).args(PACKAGES));
    assert!(
        Path::new("/etc/warren/agent.toml").is_file(),
        "remove deleted the conffile"
    );
    assert!(
        Path::new("/var/lib/warren-agent").is_dir(),
        "remove deleted the state"
    );
    assert!(!Path::new("/usr/bin/warren-agent").exists());
    ok(Command::new("dpkg").arg("--purge").args(PACKAGES));
    let purge_secs = t.elapsed().as_secs_f64();
    for p in PACKAGES {
        let st = state(p);
        assert!(
            matches!(st.as_str(), "" | "not-installed"),
            "{p} after purge: {st}"
        );
    }
    let mut left: Vec<String> = agent_files
        .lines()
        .chain(ctl_files.lines())
        .filter(|f| f.starts_with('/') && !Path::new(f).is_dir())
        .filter(|f| Path::new(f).symlink_metadata().is_ok())
        .map(String::from)
        .collect();
    for (p, existed) in watched.iter().zip(&before) {
        if !existed && Path::new(p).symlink_metadata().is_ok() {
            left.push(p.to_string());
        }
    }
    assert!(left.is_empty(), "left after purge: {left:?}");

    println!("debs: binaries from {source}");
    println!(
        "debs: timings: build {build_secs:.1}s, lintian {lint_secs:.1}s, dpkg -i {install_secs:.1}s, \
         systemd-analyze verify {verified} units {verify_secs:.1}s, remove+purge {purge_secs:.1}s"
    );
}
