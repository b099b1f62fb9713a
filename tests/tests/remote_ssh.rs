//! The controller fetches the desired state from an ssh remote (a real
//! OpenSSH server in a throwaway network namespace, serving a bare repo with
//! git-upload-pack) with a deploy key and a pinned host key, and refuses to
//! fetch when the host key is not the pinned one or not pinned at all.
//! Needs root and openssh-server (./test.sh installs it).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warren_tests::{bin, root, sh, Netns};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &Netns, args: &[&str]) -> Kill {
    Kill(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Run the controller against the ssh remote until `done` or the timeout;
/// return the controller's log.
fn serve(
    ns: &Netns,
    dir: &Path,
    state: &str,
    host_key: Option<&str>,
    wait: Duration,
    done: impl Fn() -> bool,
) -> String {
    let c = bin("warren-controller").display().to_string();
    let url = format!("ssh://root@127.0.0.1:2222{}", dir.join("repo.git").display());
    let key = dir.join("deploy").display().to_string();
    let state_dir = dir.join(state).display().to_string();
    let mut args = vec![
        c.as_str(),
        "serve",
        "--repo",
        &url,
        "--state-dir",
        &state_dir,
        "--poll-secs",
        "0.2",
        "--repo-ssh-key",
        &key,
    ];
    if let Some(k) = host_key {
        args.extend(["--repo-host-key", k]);
    }
    let mut child = spawn_in(ns, &args);
    let t = Instant::now();
    while !done() && t.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.0.kill();
    let out = child.0.wait_with_output_stderr();
    std::mem::forget(child);
    out
}

trait StderrOf {
    fn wait_with_output_stderr(&mut self) -> String;
}
impl StderrOf for Child {
    fn wait_with_output_stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

fn status_commit(dir: &Path, state: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(state).join("status.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["good_commit"].as_str().map(str::to_string)
}

#[test]
fn fetches_over_ssh_with_a_pinned_host_key_and_refuses_any_other() {
    let dir: PathBuf = std::env::temp_dir().join(format!("warren-ssh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    sh(&dir, "ssh-keygen -q -t ed25519 -N '' -f hostkey && ssh-keygen -q -t ed25519 -N '' -f otherkey && ssh-keygen -q -t ed25519 -N '' -f deploy && cp deploy.pub authorized_keys");
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port 2222\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    sh(
        &dir,
        "git init -q --bare -b main repo.git && git clone -q repo.git work 2>/dev/null",
    );
    std::fs::copy(
        root().join("examples/seed/warren.yaml"),
        dir.join("work/warren.yaml"),
    )
    .unwrap();
    sh(&dir.join("work"), "git checkout -q -b main && git add . && git -c user.name=t -c user.email=t@t commit -qm seed && git push -q origin main");
    let head = sh(&dir.join("work"), "git rev-parse HEAD");
    let host_key = std::fs::read_to_string(dir.join("hostkey.pub")).unwrap();
    let other_key = std::fs::read_to_string(dir.join("otherkey.pub")).unwrap();

    let ns = Netns::new("ssh");
    ns.run(&["ip", "link", "set", "lo", "up"], None);
    let sshd = spawn_in(
        &ns,
        &[
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-f",
            &dir.join("sshd_config").display().to_string(),
        ],
    );
    let t = Instant::now();
    while !ns
        .run(&["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2222"], None)
        .status
        .success()
    {
        assert!(t.elapsed() < Duration::from_secs(5), "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The pinned key: fetched and compiled.
    let log = serve(
        &ns,
        &dir,
        "ok",
        Some(host_key.trim()),
        Duration::from_secs(10),
        || status_commit(&dir, "ok").as_deref() == Some(head.as_str()),
    );
    assert_eq!(
        status_commit(&dir, "ok").as_deref(),
        Some(head.as_str()),
        "fetched over ssh:\n{log}"
    );
    // Another key pinned: nothing fetched, and the log says why.
    let log = serve(
        &ns,
        &dir,
        "wrong",
        Some(other_key.trim()),
        Duration::from_secs(2),
        || false,
    );
    assert_eq!(status_commit(&dir, "wrong"), None);
    assert!(log.contains("does not match --repo-host-key"), "{log}");
    // No key pinned: no trust on first use.
    let log = serve(&ns, &dir, "unpinned", None, Duration::from_secs(2), || false);
    assert_eq!(status_commit(&dir, "unpinned"), None);
    assert!(log.contains("pin its host key with --repo-host-key"), "{log}");
    drop(sshd);
    let _ = std::fs::remove_dir_all(&dir);
}
