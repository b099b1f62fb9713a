//! docs/getting-started.md, followed literally in the namespace lab.
//!
//! The guide's code blocks are extracted and run in order, each in the lab
//! host its tag names (`controller` is the VPS, the lab's `gateway`), as
//! `bash -euo pipefail` with `$HOME` a fresh directory per host and the
//! workspace's binaries first on `$PATH`. Each host gets a private `/etc`
//! and `/var/lib` (overlays in its mount namespace), so the guide's real
//! paths (`/etc/warren/agent.toml`, `/var/lib/warren-agent`, …) are
//! separate per host and nothing is written to this machine's.
//!
//! Tags: `install` blocks are skipped (packages; systemctl). `service`
//! blocks are started in the background (what the units run).
//! `capture=VAR` keeps the block's last output line as `$VAR` for later
//! blocks. `yaml paste=HOST` is the person pasting `HOST`'s captured agent
//! line into `warren.yaml`. `wait` blocks run once both hosts are in sync
//! at the working copy's HEAD. `qr` blocks' QR codes are decoded (rqrr);
//! `phone receive=FILE` gets the QR's text as `~/FILE`, checked to be
//! exactly the controller host's `~/FILE` (`--out`).
//!
//! Then: a phone on the internet reaches the laptop and the server through
//! the gateway's forwards, and the server through the private VPN.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warren_tests::lab::Lab;
use warren_tests::{bin, root};

#[derive(Debug)]
struct Block {
    lang: String,
    host: Option<String>,
    attrs: BTreeMap<String, String>,
    flags: Vec<String>,
    text: String,
    line: usize,
}

impl Block {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

const HOST_TAGS: [&str; 4] = ["controller", "gateway", "router", "phone"];

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        match (&mut cur, line.strip_prefix("```")) {
            (None, Some(info)) => {
                let mut words = info.split_whitespace();
                let lang = words.next().unwrap_or_default().to_string();
                let mut b = Block {
                    lang,
                    host: None,
                    attrs: BTreeMap::new(),
                    flags: vec![],
                    text: String::new(),
                    line: i + 1,
                };
                for w in words {
                    if let Some((k, v)) = w.split_once('=') {
                        b.attrs.insert(k.into(), v.into());
                    } else if HOST_TAGS.contains(&w) {
                        b.host = Some(w.into());
                    } else {
                        b.flags.push(w.into());
                    }
                }
                cur = Some(b);
            }
            (Some(_), Some("")) => out.push(cur.take().unwrap()),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(cur.is_none(), "an unterminated code block");
    out
}

/// The lab host a tag runs in.
fn lab_host(tag: &str) -> &'static str {
    match tag {
        "controller" | "gateway" => "gateway",
        "router" => "router",
        "phone" => "phone",
        other => panic!("unknown host tag {other:?}"),
    }
}

/// Removes the test's directory after the lab (declared first, dropped last).
struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The ANSI half-block QR code back as text.
fn decode_qr(ansi: &str) -> String {
    let rows: Vec<Vec<bool>> = ansi
        .lines()
        .filter(|l| l.contains('█') || l.contains('▀') || l.contains('▄'))
        .flat_map(|l| {
            let l = l
                .replace("\x1b[40m", "")
                .replace("\x1b[37m", "")
                .replace("\x1b[0m", "");
            let top: Vec<bool> = l.chars().map(|c| matches!(c, '█' | '▀')).collect();
            let bottom: Vec<bool> = l.chars().map(|c| matches!(c, '█' | '▄')).collect();
            [top, bottom]
        })
        .collect();
    assert!(!rows.is_empty(), "no QR code in {ansi:?}");
    let scale = 4;
    let (w, h) = (rows[0].len() * scale, rows.len() * scale);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        if rows[y / scale].get(x / scale).copied().unwrap_or(true) {
            255
        } else {
            0
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("the QR code decodes").1
}

struct Run {
    lab: Lab,
    homes: BTreeMap<&'static str, PathBuf>,
    env: BTreeMap<String, String>,
    path: String,
}

impl Run {
    fn script(&self, host: &str, text: &str) -> String {
        let mut s = format!(
            "set -euo pipefail\nexport HOME='{}' PATH='{}'\nexport GIT_AUTHOR_NAME=guide GIT_AUTHOR_EMAIL=guide@example.invalid GIT_COMMITTER_NAME=guide GIT_COMMITTER_EMAIL=guide@example.invalid\n",
            self.homes[host].display(),
            self.path
        );
        for (k, v) in &self.env {
            s += &format!("export {k}='{}'\n", v.replace('\'', "'\\''"));
        }
        s += "cd \"$HOME\"\n";
        s + text
    }

    fn exec(&self, host: &str, text: &str, line: usize) -> String {
        let out = self.lab.run(host, &["bash", "-c", &self.script(host, text)]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "getting-started.md line {line} ({host}) failed ({}):\n{text}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        stdout
    }

    fn status(&self) -> serde_json::Value {
        let out = self.lab.run(
            "gateway",
            &[
                bin("warren-controller").to_str().unwrap(),
                "status",
                "--format",
                "json",
                "--state-dir",
                "/var/lib/warren-controller",
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn head(&self) -> String {
        let o = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(self.homes["gateway"].join("warren"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Both hosts in sync at HEAD with unchanged serials for a second (the
    /// first convergence's key exchange recompiles once).
    fn wait_in_sync(&self, services: &[u32]) {
        let head = self.head();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = None;
        loop {
            let s = self.status();
            let ok = ["gateway", "router"].iter().all(|h| {
                s["hosts"][h]["state"] == "in_sync" && s["hosts"][h]["applied_commit"] == head.as_str()
            });
            let serials = (
                s["hosts"]["gateway"]["applied_serial"].as_u64(),
                s["hosts"]["router"]["applied_serial"].as_u64(),
            );
            if ok && last == Some(serials) {
                return;
            }
            last = ok.then_some(serials);
            if Instant::now() > deadline {
                let logs: String = services.iter().map(|p| self.lab.logs(*p)).collect();
                panic!("both hosts not in sync at {head} after 90 s\nstatus: {s:#}\nservices:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn getting_started_md_runs_literally_from_empty_hosts_to_a_forward_and_a_phone() {
    let t0 = Instant::now();
    let md = std::fs::read_to_string(root().join("docs/getting-started.md")).unwrap();
    let all = blocks(&md);
    // What this test proves must stay in the guide.
    let count = |f: &dyn Fn(&Block) -> bool| all.iter().filter(|b| f(b)).count();
    assert!(count(&|b| b.has("install")) >= 2, "install steps are marked");
    assert_eq!(
        count(&|b| b.attrs.contains_key("paste")),
        2,
        "a paste step per agent"
    );
    assert_eq!(count(&|b| b.has("service")), 3, "two agents and the controller");
    assert_eq!(count(&|b| b.has("qr")), 1, "the phone's QR code");
    assert_eq!(
        count(&|b| b.attrs.contains_key("receive")),
        1,
        "the phone's tunnel"
    );
    assert!(count(&|b| b.text.contains("warren-agent init")) >= 2);
    assert!(count(&|b| b.text.contains("warren-controller init")) >= 1);

    let dir = Dir(std::env::temp_dir().join(format!("warren-guide-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let lab = Lab::new();
    let mut homes = BTreeMap::new();
    for host in ["gateway", "router", "phone"] {
        let home = dir.0.join(format!("home-{host}"));
        std::fs::create_dir_all(&home).unwrap();
        let ov = dir.0.join(format!("overlay-{host}"));
        let mut sh = String::from("set -e\n");
        for (lower, name) in [("/etc", "etc"), ("/var/lib", "varlib")] {
            let (u, w) = (ov.join(format!("{name}-upper")), ov.join(format!("{name}-work")));
            sh += &format!(
                "mkdir -p '{u}' '{w}'\nmount -t overlay warren-guide -o lowerdir={lower},upperdir='{u}',workdir='{w}' {lower}\n",
                u = u.display(),
                w = w.display()
            );
        }
        // Whatever this machine has there itself (an installed package) stays out of sight.
        sh += "for d in /etc/warren /var/lib/warren-agent /var/lib/warren-controller; do if [ -d $d ]; then mount -t tmpfs warren-guide $d; fi; done\n";
        lab.ok(host, &["sh", "-c", &sh]);
        homes.insert(host, home);
    }
    let bindir = bin("warren-controller").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bindir.display()
    );
    let mut run = Run {
        lab,
        homes,
        env: BTreeMap::new(),
        path,
    };
    let mut services = Vec::new();
    let mut qr_text: Option<String> = None;
    let (mut ran, mut skipped) = (0, 0);
    for b in &all {
        let t = Instant::now();
        if b.has("install") {
            skipped += 1;
            println!("line {:>3}: skipped (install step)", b.line);
            continue;
        }
        if let Some(host) = b.attrs.get("paste") {
            // The person pastes the line `warren-agent init` printed on HOST.
            let var = format!("{}_AGENT", host.to_uppercase());
            let line = run
                .env
                .get(&var)
                .unwrap_or_else(|| panic!("no {var} captured before line {}", b.line))
                .clone();
            let shown = b
                .text
                .lines()
                .find(|l| l.trim_start().starts_with("agent:"))
                .expect("the paste block shows the agent line");
            assert_eq!(
                shown.contains("address:"),
                line.contains("address:"),
                "the guide shows {shown:?}, the agent printed {line:?}"
            );
            let file = run.homes["gateway"].join("warren/warren.yaml");
            let yaml = std::fs::read_to_string(&file).unwrap();
            let start = yaml
                .find(&format!("\n  {host}:\n"))
                .unwrap_or_else(|| panic!("no host {host} in {yaml}"));
            let at = start
                + yaml[start..]
                    .find("    # agent: paste")
                    .expect("init's marker for the agent line");
            let end = at + yaml[at..].find('\n').unwrap();
            let pasted = format!("{}{}{}", &yaml[..at], line, &yaml[end..]);
            std::fs::write(&file, pasted).unwrap();
            println!("line {:>3}: pasted {host}'s agent line into warren.yaml", b.line);
            continue;
        }
        if b.lang != "sh" {
            continue;
        }
        let tag = b
            .host
            .clone()
            .unwrap_or_else(|| panic!("line {}: a sh block without a host tag", b.line));
        let host = lab_host(&tag);
        if b.has("service") {
            let pid = run.lab.spawn(host, &["bash", "-c", &run.script(host, &b.text)]);
            services.push(pid);
            ran += 1;
            println!(
                "line {:>3}: {tag}: started in the background: {}",
                b.line,
                b.text.trim()
            );
            continue;
        }
        if b.has("wait") {
            run.wait_in_sync(&services);
        }
        if let Some(file) = b.attrs.get("receive") {
            // Scanning the QR code: the phone gets exactly the QR's text.
            let qr = qr_text
                .clone()
                .expect("the QR code comes before the phone's tunnel");
            let out = std::fs::read_to_string(run.homes["gateway"].join(file)).expect("the --out file");
            assert_eq!(qr, out, "the QR code holds exactly the --out configuration");
            assert!(!qr.contains("<this device's private key>"), "{qr}");
            let p = run.homes["phone"].join(file);
            std::fs::write(&p, &qr).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let out = run.exec(host, &b.text, b.line);
        ran += 1;
        if b.text.contains("--version") {
            // `NAME VERSION (commit SHA)`: the git commit it was built from (build.rs).
            for l in out.lines() {
                let commit = l.rsplit_once("(commit ").and_then(|(_, c)| c.strip_suffix(')'));
                let ok = commit.is_some_and(|c| {
                    c == "unknown" || (c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
                });
                assert!(l.starts_with("warren-") && ok, "--version: {l:?}");
            }
            assert_eq!(out.lines().count(), 2, "{out}");
        }
        if b.has("qr") {
            qr_text = Some(decode_qr(&out));
        }
        if b.has("wait") {
            for h in ["gateway", "router"] {
                assert!(
                    out.lines().any(|l| l.starts_with(h) && l.contains("in sync")),
                    "status shows {h} in sync:\n{out}"
                );
            }
        }
        if let Some(var) = b.attrs.get("capture") {
            let last = out.lines().last().unwrap_or_default().to_string();
            assert!(!last.is_empty(), "line {}: nothing to capture", b.line);
            run.env.insert(var.clone(), last);
        }
        println!(
            "line {:>3}: {tag}: ok in {:.2}s: {}",
            b.line,
            t.elapsed().as_secs_f64(),
            b.text.lines().next().unwrap_or_default()
        );
    }

    // The guide's outcome, with real packets.
    let conf_mode = std::fs::metadata(run.homes["gateway"].join("phone.conf")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(conf_mode.permissions().mode() & 0o777, 0o600, "--out writes 0600");
    let lab = &run.lab;
    Lab::wait_for("the WAN VPN handshake", Duration::from_secs(20), || {
        let out = lab.ok("gateway", &["wg", "show", "wg0", "latest-handshakes"]);
        out.split_whitespace().nth(1).is_some_and(|t| t != "0")
    });
    let _laptop = lab.listen("laptop", 25565);
    let seen = lab
        .connect("phone", "203.0.113.10", 25565, Duration::from_secs(3))
        .expect("phone -> 203.0.113.10:25565 (init's --forward) reaches the laptop");
    assert!(
        seen.starts_with("198.51.100.50:"),
        "the laptop sees the phone's own address: {seen}"
    );
    let _web = lab.listen("server", 8080);
    let seen = lab
        .connect("phone", "203.0.113.10", 8080, Duration::from_secs(3))
        .expect("phone -> 203.0.113.10:8080 (the forward added in step 7) reaches the server");
    assert!(seen.starts_with("198.51.100.50:"), "{seen}");
    Lab::wait_for(
        "the phone's private VPN handshake",
        Duration::from_secs(20),
        || {
            let _ = lab.connect("phone", "192.168.16.10", 9, Duration::from_millis(300));
            let out = lab.ok("phone", &["wg", "show", "phone", "latest-handshakes"]);
            out.split_whitespace().nth(1).is_some_and(|t| t != "0")
        },
    );
    let _server = lab.listen("server", 9000);
    let seen = lab
        .connect("phone", "192.168.16.10", 9000, Duration::from_secs(3))
        .expect("phone -> server through the private VPN configured from the QR code");
    assert!(
        seen.starts_with("192.168.17.69:"),
        "the server sees the phone's VPN address: {seen}"
    );
    println!(
        "getting-started.md: {} code blocks, {ran} run in the lab, {skipped} install blocks skipped, 2 pastes; forwards 25565 and 8080 and the phone's VPN work; {:.1}s",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    drop(run);
    drop(dir);
}
