//! The controller's container image (Containerfile) builds without any image
//! registry (scripts/build-image.sh: a debootstrap base, cached under
//! target/image/, `podman import`ed; the binary this test run built), and
//! runs: as uid 65532, `--version`, `keygen` into the state volume, and the
//! default `serve` on a local repo mounted read-only, with /healthz answering
//! 200 inside the container's network namespace and `status` (podman exec)
//! showing the repo's commit compiled. Everything lives in a private podman
//! store under target/image/, removed at the end.
//! Needs root, podman and debootstrap (./test.sh installs them).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use warren_tests::{bin, root, sh};

/// podman with the test's private store.
struct Podman {
    store: PathBuf,
    runroot: PathBuf,
    driver: String,
    names: std::cell::RefCell<Vec<(&'static str, String)>>,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.store)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", &self.driver])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            // runc, not crun: crun 1.8 refuses hosts with cgroup v1 plus a
            // cgroup2 mount (hybrid), as this CI's are.
            .args(["--runtime", "runc"]);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("podman")
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for (kind, name) in self.names.take().iter().rev() {
            let _ = match *kind {
                "container" => self.run(&["rm", "-f", "-t", "0", name]),
                "volume" => self.run(&["volume", "rm", "-f", name]),
                _ => self.run(&["rmi", "-f", name]),
            };
        }
        // Everything else in the private store (the imported base, build
        // cache). Not `system reset`: that would also drop podman networks,
        // which are not per store.
        let _ = self.run(&["rmi", "-a", "-f"]);
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.store.join("overlay"))
            .output();
        let _ = Command::new("umount").arg("-R").arg(&self.runroot).output();
        let _ = std::fs::remove_dir_all(&self.store);
        let _ = std::fs::remove_dir_all(&self.runroot);
    }
}

/// podman's default limits (nofile 1048576) are above what this machine
/// lets a process without CAP_SYS_RESOURCE set; these match the systemd
/// unit's LimitNOFILE.
const ULIMITS: [&str; 4] = ["--ulimit", "nofile=16384:16384", "--ulimit", "nproc=4096:4096"];

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// overlay when the kernel lets podman mount it here, else vfs (copies
/// every layer: slower and bigger, same image).
fn pick_driver(store: &Path) -> String {
    let probe = store.join("probe");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(probe.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
        probe.display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(probe.join("merged"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        let _ = Command::new("umount").arg(probe.join("merged")).output();
    }
    let _ = std::fs::remove_dir_all(&probe);
    if ok { "overlay" } else { "vfs" }.to_string()
}

#[test]
fn image_builds_and_runs() {
    let t0 = Instant::now();
    let missing: Vec<&str> = ["podman", "runc", "debootstrap", "nsenter", "curl", "git"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        println!(
            "image: SKIPPED: {} not installed (./test.sh installs them via scripts/deps.sh)",
            missing.join(", ")
        );
        return;
    }
    let pid = std::process::id();
    let store = root().join(format!("target/image/test-store-{pid}"));
    std::fs::create_dir_all(&store).unwrap();
    let store = store.canonicalize().unwrap();
    // podman wants its run directory within 50 characters.
    let runroot = PathBuf::from(format!("/run/warren-image-{pid}"));
    let driver = pick_driver(&store);
    let pm = Podman {
        store: store.clone(),
        runroot: runroot.clone(),
        driver: driver.clone(),
        names: Default::default(),
    };
    let tag = format!("localhost/warren-controller:test-{pid}");
    pm.names.borrow_mut().push(("image", tag.clone()));

    // Build, as a user would without a registry (the debootstrap base is
    // cached in target/image/base-bookworm.tar after the first run).
    let cached = root().join("target/image/base-bookworm.tar").is_file();
    // This run's controller, without its debug info (the debug build is
    // 200+ MB; the release build is stripped too).
    let binary = store.join("warren-controller");
    std::fs::copy(bin("warren-controller"), &binary).unwrap();
    let stripped = have("strip")
        && Command::new("strip")
            .arg(&binary)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    let o = Command::new(root().join("scripts/build-image.sh"))
        .arg("--binary")
        .arg(&binary)
        .args(["--tag", &tag])
        .arg("--root")
        .arg(&store)
        .arg("--runroot")
        .arg(&runroot)
        .env("WARREN_PODMAN_DRIVER", &driver)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "build-image.sh failed:\n{err}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().last(),
        Some(tag.as_str())
    );
    let build_secs = t0.elapsed().as_secs_f64();

    // The image's shape: non-root, entrypoint, ports, volume, no shell.
    let cfg = pm.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Size}}",
        &tag,
    ]);
    let f: Vec<&str> = cfg.split('|').collect();
    assert_eq!(f.len(), 5, "{cfg}");
    assert_eq!(f[0], "65532:65532", "USER");
    assert_eq!(f[1], r#"["/usr/bin/warren-controller"]"#, "ENTRYPOINT");
    assert!(
        f[2].contains("7701/tcp") && f[2].contains("9180/tcp"),
        "EXPOSE: {}",
        f[2]
    );
    assert!(f[3].contains("/var/lib/warren-controller"), "VOLUME: {}", f[3]);
    let size: u64 = f[4].parse().unwrap();
    let bin_size = std::fs::metadata(&binary).unwrap().len();

    // --version.
    let run = |args: &[&str]| -> Output {
        let mut a = vec!["run", "--rm", "--network=none"];
        a.extend_from_slice(&ULIMITS);
        a.extend_from_slice(args);
        pm.run(&a)
    };
    let o = run(&[&tag, "--version"]);
    let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        o.status.success() && version.starts_with("warren-controller "),
        "--version: {version} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No shell, no package manager: the image is the binary and its libraries.
    let o = run(&["--entrypoint", "/bin/sh", &tag, "-c", "true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(127) && err.contains("no such file"),
        "the image has a /bin/sh, or the check failed for another reason: {:?} {err}",
        o.status.code()
    );

    // keygen into the state volume, as uid 65532.
    let vol = format!("warren-test-state-{pid}");
    pm.ok(&["volume", "create", &vol]);
    pm.names.borrow_mut().push(("volume", vol.clone()));
    let mount = format!("{vol}:/var/lib/warren-controller");
    let o = run(&[
        "-v",
        &mount,
        &tag,
        "keygen",
        "--out",
        "/var/lib/warren-controller/controller.key",
    ]);
    let public = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        o.status.success() && public.len() == 44 && public.ends_with('='),
        "keygen: {public} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let voldir = PathBuf::from(pm.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &vol]));
    let meta = std::fs::metadata(voldir.join("controller.key")).unwrap();
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(meta.uid(), 65532, "controller.key owner");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "controller.key mode");
    }

    // A local desired-state repo (the seed network), mounted read-only at
    // /repo, where the image's default command serves from.
    let repo = std::env::temp_dir().join(format!("warren-image-repo-{pid}"));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(root().join("examples/seed/warren.yaml"), repo.join("warren.yaml")).unwrap();
    sh(
        &repo,
        "git init -q -b main && git add warren.yaml && \
         git -c user.name=t -c user.email=t@t commit -q -m seed && chmod -R a+rX .",
    );
    let head = sh(&repo, "git rev-parse HEAD");
    let name = format!("warren-test-{pid}");
    let repo_mount = format!("{}:/repo:ro", repo.display());
    let mut args = vec!["run", "-d", "--network=none", "--name", &name];
    args.extend_from_slice(&ULIMITS);
    args.extend_from_slice(&[
        "--read-only",
        "--cap-drop=all",
        "-v",
        &mount,
        "-v",
        &repo_mount,
        &tag,
    ]);
    pm.ok(&args);
    pm.names.borrow_mut().push(("container", name.clone()));
    let cpid = pm.ok(&["inspect", "--format", "{{.State.Pid}}", &name]);
    let status_file = std::fs::read_to_string(format!("/proc/{cpid}/status")).unwrap_or_default();
    let uid_line = status_file.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65532"),
        "the controller runs as {uid_line}"
    );

    // /healthz from inside the container's network namespace (the image has
    // no curl; nsenter lends it the host's).
    let started = Instant::now();
    let mut code = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        let o = Command::new("nsenter")
            .args([
                "-t",
                &cpid,
                "-n",
                "curl",
                "-s",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("http://127.0.0.1:9180/healthz")
            .output()
            .unwrap();
        code = String::from_utf8_lossy(&o.stdout).to_string();
        if code == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = || {
        let o = pm.run(&["logs", &name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(code, "200", "/healthz; the controller's log:\n{}", logs());
    let healthz_secs = started.elapsed().as_secs_f64();

    // The repo was fetched and compiled in there: status (podman exec, no
    // shell needed) shows the commit as desired.
    let mut status = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        let o = pm.run(&[
            "exec",
            &name,
            "/usr/bin/warren-controller",
            "status",
            "--format",
            "json",
        ]);
        status = String::from_utf8_lossy(&o.stdout).to_string();
        if status.contains(&format!("\"desired_commit\": \"{head}\"")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        status.contains(&format!("\"desired_commit\": \"{head}\""))
            && status.contains("\"outcome\": \"compiled\""),
        "status never showed {head}:\n{status}\nthe controller's log:\n{}",
        logs()
    );
    let _ = std::fs::remove_dir_all(&repo);

    println!(
        "image: built in {build_secs:.1}s (debootstrap base {}), {} storage; \
         image {:.1} MB of which the binary ({}debug build) {:.1} MB; /healthz 200 after {healthz_secs:.1}s; \
         served commit {} as uid 65532; total {:.1}s",
        if cached { "cached" } else { "made now" },
        driver,
        size as f64 / 1e6,
        if stripped { "stripped " } else { "" },
        bin_size as f64 / 1e6,
        &head[..12],
        t0.elapsed().as_secs_f64()
    );
}
