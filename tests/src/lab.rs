//! A network-namespace lab reproducing the home-network-behind-CGNAT topology
//! (see `examples/seed/warren.yaml`), for end-to-end tests of Warren's agents.
//!
//! ```text
//!  phone 198.51.100.50 ── inet (internet core, forwarding) ── 203.0.113.10 gateway
//!                              │ 192.0.2.1
//!                              │
//!                         192.0.2.2 wan
//!                            cgnat (masquerade out of wan; forward: drop new inbound)
//!                         100.64.0.1 lan
//!                              │
//!                       100.64.0.2 eth0
//!                            router ── br-lan 192.168.16.1/24 ── laptop .20, server .10
//! ```
//!
//! The gateway and the router are bare hosts (address, default route, and
//! `net.ipv4.ip_forward=0`): WireGuard, DNAT, policy routing and forwarding are
//! for Warren's plans to set. Forwarding is set explicitly on every host (a new
//! network namespace inherits the root namespace's value).
//!
//! Every host has its own network namespace (`ip netns`, named
//! [`Lab::ns_name`]) and its own persistent mount namespace, a private copy of
//! the root one except for:
//! - a private tmpfs on `/run/wireguard`, so that two userspace `wireguard-go
//!   wg0` (gateway and router) each get their own `/var/run/wireguard/wg0.sock`;
//! - a fresh sysfs on `/sys` showing the host's own interfaces (as `ip netns
//!   exec` does);
//! - no copies of `/run/netns/*` nor of other labs' mount-namespace files, so a
//!   host's mount namespace never keeps another lab's namespaces alive.
//!
//! The mount namespaces are kept by bind mounts of `nsfs` files at
//! `/run/warren-lab/<id>/<host>.mnt`, where `/run/warren-lab/<id>` is bound onto
//! itself with private propagation (a persistent mount namespace cannot be
//! bound onto a shared mount). Every command the lab runs for a host goes
//! through `nsenter --net=/run/netns/<ns> --mount=/run/warren-lab/<id>/<host>.mnt`.
//!
//! `<id>` is `wl<pid>-<counter>`; `/run/warren-lab/<id>/owner` records the pid
//! and its start time, so [`cleanup_stale`] can tell a crashed run's leftovers
//! (owner dead) from a lab of a live process, including parallel test threads.
//!
//! The TCP helpers run `wt-net` (this crate's binary, `src/bin/wt-net.rs`) in the
//! hosts; see [`wt_net`] for how it is found.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The lab's logical host names.
pub const HOSTS: [&str; 7] = ["phone", "inet", "gateway", "cgnat", "router", "laptop", "server"];

/// Where labs keep their mount-namespace files.
pub const LAB_ROOT: &str = "/run/warren-lab";

/// Veth pairs: (host, interface, peer host, peer interface).
const LINKS: [(&str, &str, &str, &str); 6] = [
    ("inet", "to-phone", "phone", "eth0"),
    ("inet", "to-gw", "gateway", "enp0s6"),
    ("inet", "to-cgnat", "cgnat", "wan"),
    ("cgnat", "lan", "router", "eth0"),
    ("router", "lan-laptop", "laptop", "eth0"),
    ("router", "lan-server", "server", "eth0"),
];

/// Per host: `ip -batch` lines run inside it after the links exist, and its ip_forward.
fn host_setup(host: &str) -> (&'static str, bool) {
    match host {
        "phone" => (
            "addr add 198.51.100.50/24 dev eth0\nlink set eth0 up\nroute add default via 198.51.100.1\n",
            false,
        ),
        "inet" => (
            "addr add 198.51.100.1/24 dev to-phone\nlink set to-phone up\n\
             addr add 203.0.113.1/24 dev to-gw\nlink set to-gw up\n\
             addr add 192.0.2.1/24 dev to-cgnat\nlink set to-cgnat up\n",
            true,
        ),
        "gateway" => (
            "addr add 203.0.113.10/24 dev enp0s6\nlink set enp0s6 up\nroute add default via 203.0.113.1\n",
            false,
        ),
        "cgnat" => (
            "addr add 192.0.2.2/24 dev wan\nlink set wan up\nroute add default via 192.0.2.1\n\
             addr add 100.64.0.1/24 dev lan\nlink set lan up\n",
            true,
        ),
        "router" => (
            "addr add 100.64.0.2/24 dev eth0\nlink set eth0 up\nroute add default via 100.64.0.1\n\
             link add name br-lan type bridge\n\
             link set lan-laptop master br-lan\nlink set lan-server master br-lan\n\
             addr add 192.168.16.1/24 dev br-lan\nlink set br-lan up\n\
             link set lan-laptop up\nlink set lan-server up\n",
            false,
        ),
        "laptop" => (
            "addr add 192.168.16.20/24 dev eth0\nlink set eth0 up\nroute add default via 192.168.16.1\n",
            false,
        ),
        "server" => (
            "addr add 192.168.16.10/24 dev eth0\nlink set eth0 up\nroute add default via 192.168.16.1\n",
            false,
        ),
        _ => panic!("unknown lab host {host:?}"),
    }
}

/// The ISP's carrier-grade NAT: masquerade out of `wan`, refuse new inbound.
const CGNAT_NFT: &str = "table ip cgnat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" accept
  }
}
";

/// Run inside a host's fresh mount namespace (already in its network
/// namespace) right after `unshare`; its stdin is the host's `ip -batch`.
const MOUNT_SETUP: &str = r#"set -e
mount -t tmpfs -o mode=0755 warren-lab-wg /run/wireguard
umount -l /sys 2>/dev/null || true
mount -t sysfs warren-lab-sysfs /sys 2>/dev/null || true
umount -R -l /run/netns 2>/dev/null || true
for m in /run/warren-lab/*; do umount -R -l "$m" 2>/dev/null || true; done
echo "$1" > /proc/sys/net/ipv4/ip_forward
ip link set lo up
ip -batch -
"#;

/// The lab. Dropping it (also during a panic) kills every process it started
/// and every process still inside its namespaces, deletes the namespaces and
/// unmounts its mount-namespace files.
#[derive(Debug)]
pub struct Lab {
    id: String,
    dir: PathBuf,
    /// Namespace names that may exist (deleted on drop, errors ignored).
    netns: Vec<String>,
    procs: Mutex<Vec<Proc>>,
}

impl Lab {
    /// Build the whole topology. Removes stale labs of dead processes first.
    pub fn new() -> Lab {
        cleanup_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let id = format!("wl{pid}-{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        let dir = Path::new(LAB_ROOT).join(&id);
        // From here on, a panic drops `lab`, which tears down whatever exists.
        let mut lab = Lab {
            id,
            dir,
            netns: Vec::new(),
            procs: Mutex::new(Vec::new()),
        };
        lab.setup(pid);
        lab
    }

    fn setup(&mut self, pid: u32) {
        let dir = self.dir.display().to_string();
        std::fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("create {dir}: {e} (the lab needs root)"));
        let start = proc_start_time(pid).unwrap_or_default();
        std::fs::write(self.dir.join("owner"), format!("{pid} {start}\n"))
            .unwrap_or_else(|e| panic!("write {dir}/owner: {e}"));
        host_ok("mount", &["--bind", &dir, &dir], None);
        host_ok("mount", &["--make-private", &dir], None);
        std::fs::create_dir_all("/run/wireguard").unwrap_or_else(|e| panic!("mkdir /run/wireguard: {e}"));

        // Namespaces and veths in one root batch. The veth ends are created
        // directly inside their namespaces under their final names, so no
        // temporary name ever exists in the root namespace.
        self.netns = HOSTS.iter().map(|h| self.ns_name(h)).collect();
        let mut batch: String = self.netns.iter().map(|ns| format!("netns add {ns}\n")).collect();
        for (a, a_if, b, b_if) in LINKS {
            batch += &format!(
                "link add name {a_if} netns {} type veth peer name {b_if} netns {}\n",
                self.ns_name(a),
                self.ns_name(b)
            );
        }
        host_ok("ip", &["-batch", "-"], Some(&batch));

        for host in HOSTS {
            let mnt = self.mnt_file(host);
            std::fs::write(&mnt, "").unwrap_or_else(|e| panic!("create {}: {e}", mnt.display()));
            let (ip_batch, forward) = host_setup(host);
            host_ok(
                "nsenter",
                &[
                    &format!("--net=/run/netns/{}", self.ns_name(host)),
                    "unshare",
                    &format!("--mount={}", mnt.display()),
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    MOUNT_SETUP,
                    "warren-lab-setup",
                    if forward { "1" } else { "0" },
                ],
                Some(ip_batch),
            );
        }
        self.ok_with_stdin("cgnat", &["nft", "-f", "-"], CGNAT_NFT);
    }

    /// The network namespace name of `host` (as listed by `ip netns list`).
    pub fn ns_name(&self, host: &str) -> String {
        assert!(
            HOSTS.contains(&host),
            "unknown lab host {host:?}; hosts are {HOSTS:?}"
        );
        format!("{}-{host}", self.id)
    }

    /// The directory holding this lab's mount-namespace files (gone after drop).
    pub fn mount_dir(&self) -> &Path {
        &self.dir
    }

    fn mnt_file(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.mnt"))
    }

    /// A command running `args` inside `host`'s network and mount namespaces.
    /// Its working directory is `/`, so give programs by absolute path.
    /// `WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1` is set, so that
    /// `wireguard-go` runs.
    pub fn cmd(&self, host: &str, args: &[&str]) -> Command {
        assert!(!args.is_empty(), "Lab::cmd({host}): empty command");
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns_name(host)))
            .arg(format!("--mount={}", self.mnt_file(host).display()))
            .arg("--")
            .args(args)
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1");
        c
    }

    /// Run `args` in `host` to completion (stdin empty), capturing its output.
    pub fn run(&self, host: &str, args: &[&str]) -> Output {
        self.cmd(host, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{host}: cannot run {args:?}: {e}"))
    }

    /// Run `args` in `host`, assert it succeeded, return its stdout.
    pub fn ok(&self, host: &str, args: &[&str]) -> String {
        checked(host, args, self.run(host, args))
    }

    /// Like [`Lab::ok`], feeding `stdin`.
    pub fn ok_with_stdin(&self, host: &str, args: &[&str], stdin: &str) -> String {
        checked(
            host,
            args,
            with_stdin(self.cmd(host, args), stdin, &format!("{host}: {args:?}")),
        )
    }

    /// Start `args` in the background in `host`; it is killed when the lab is
    /// dropped. Its stdout and stderr are collected: see [`Lab::logs`].
    pub fn spawn(&self, host: &str, args: &[&str]) -> u32 {
        let p = Proc::start(self.cmd(host, args), &format!("{host}: {args:?}"));
        let pid = p.pid();
        self.procs.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        pid
    }

    /// What a process from [`Lab::spawn`] printed so far (stdout, then stderr).
    pub fn logs(&self, pid: u32) -> String {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let p = procs
            .iter()
            .find(|p| p.pid() == pid)
            .unwrap_or_else(|| panic!("no spawned process {pid}"));
        p.dump()
    }

    /// Poll `f` every 50 ms until it returns true; panic naming `what` after `timeout`.
    pub fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
        let deadline = Instant::now() + timeout;
        loop {
            if f() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `wt-net listen PORT` in `host`, once it is listening. Each client is
    /// sent `peer IP:PORT` (itself as seen by the listener), then its lines echoed.
    pub fn listen(&self, host: &str, port: u16) -> Listener {
        self.start_listener(host, port, "listen")
    }

    /// A `wt-net sink PORT` in `host` (for [`Lab::transfer`]), once it is listening.
    pub fn sink(&self, host: &str, port: u16) -> Listener {
        self.start_listener(host, port, "sink")
    }

    fn start_listener(&self, host: &str, port: u16, mode: &str) -> Listener {
        let bin = wt_net();
        let port_s = port.to_string();
        let args = [bin.to_str().expect("wt-net path is UTF-8"), mode, &port_s];
        let mut proc = Proc::start(self.cmd(host, &args), &format!("{host}: wt-net {mode} {port}"));
        let what = format!("wt-net {mode} {port} in {host} to listen");
        Lab::wait_for(&what, Duration::from_secs(5), || {
            if !proc.running() {
                panic!("wt-net {mode} {port} in {host} exited:\n{}", proc.dump());
            }
            proc.lines().iter().any(|l| l.starts_with("listening "))
        });
        Listener {
            host: host.to_string(),
            port,
            proc,
        }
    }

    /// Connect from `from` to `addr:port` (a [`Lab::listen`]er) within `timeout`.
    /// Ok: the client's address as the listener saw it, `IP:PORT`.
    /// Err: why it failed (connection refused, timed out, unreachable...).
    pub fn connect(&self, from: &str, addr: &str, port: u16, timeout: Duration) -> Result<String, String> {
        let bin = wt_net();
        let ms = timeout.as_millis().max(1).to_string();
        let port_s = port.to_string();
        let out = self.run(
            from,
            &[
                bin.to_str().expect("wt-net path is UTF-8"),
                "connect",
                addr,
                &port_s,
                &ms,
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let line = stdout.lines().next().unwrap_or_default();
        match line.strip_prefix("peer ") {
            Some(peer) => Ok(peer.to_string()),
            None => Err(format!(
                "unexpected greeting {line:?} (is {addr}:{port} a wt-net listener?)"
            )),
        }
    }

    /// Open a connection from `from` to a [`Lab::listen`]er at `addr:port` and
    /// keep it busy (a ping echoed every 200 ms). Panics if it cannot be
    /// established; check it later with [`Held::alive`].
    pub fn hold(&self, from: &str, addr: &str, port: u16) -> Held {
        let bin = wt_net();
        let port_s = port.to_string();
        let args = [bin.to_str().expect("wt-net path is UTF-8"), "hold", addr, &port_s];
        let mut proc = Proc::start(
            self.cmd(from, &args),
            &format!("{from}: wt-net hold {addr} {port}"),
        );
        let what = format!("a held connection from {from} to {addr}:{port}");
        Lab::wait_for(&what, Duration::from_secs(5), || {
            if !proc.running() {
                panic!(
                    "cannot hold a connection from {from} to {addr}:{port}:\n{}",
                    proc.dump()
                );
            }
            proc.lines().iter().any(|l| l.starts_with("alive "))
        });
        let peer = proc
            .lines()
            .first()
            .and_then(|l| l.strip_prefix("peer "))
            .unwrap_or_default()
            .to_string();
        Held {
            peer,
            proc: Mutex::new(proc),
        }
    }

    /// Send `bytes` bytes over TCP from `from` to a [`Lab::sink`] at
    /// `addr:port`; returns the time until the sink confirmed receiving all.
    pub fn transfer(&self, from: &str, addr: &str, port: u16, bytes: u64) -> Duration {
        let bin = wt_net();
        let (port_s, bytes_s) = (port.to_string(), bytes.to_string());
        let out = self.ok(
            from,
            &[
                bin.to_str().expect("wt-net path is UTF-8"),
                "send",
                addr,
                &port_s,
                &bytes_s,
            ],
        );
        // "sent BYTES bytes in MICROS us"
        let words: Vec<&str> = out.split_whitespace().collect();
        match words.as_slice() {
            ["sent", _, "bytes", "in", us, "us"] => Duration::from_micros(
                us.parse()
                    .unwrap_or_else(|_| panic!("bad wt-net send output {out:?}")),
            ),
            _ => panic!("bad wt-net send output {out:?}"),
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.procs.get_mut().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            p.stop();
        }
        teardown(&self.netns, &self.dir);
    }
}

/// A background `wt-net listen`/`sink`; killed when dropped.
#[derive(Debug)]
pub struct Listener {
    pub host: String,
    pub port: u16,
    proc: Proc,
}

impl Listener {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The clients accepted so far, `IP:PORT` as the listener saw them.
    pub fn peers(&self) -> Vec<String> {
        self.proc
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("accepted ").map(str::to_string))
            .collect()
    }

    /// Its output so far (for diagnostics).
    pub fn output(&self) -> String {
        self.proc.dump()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.proc.stop();
    }
}

/// A connection kept open by `wt-net hold`; killed when dropped.
#[derive(Debug)]
pub struct Held {
    peer: String,
    proc: Mutex<Proc>,
}

impl Held {
    /// How long since the last echoed ping counts as alive. Pings go every 200 ms.
    pub const STALE_AFTER: Duration = Duration::from_millis(1000);

    /// The process still runs and a ping came back within [`Held::STALE_AFTER`].
    pub fn alive(&self) -> bool {
        let mut p = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        if !p.running() {
            return false;
        }
        let out = p.out.lock().unwrap_or_else(|e| e.into_inner());
        out.iter()
            .rev()
            .find(|(_, l)| l.starts_with("alive "))
            .is_some_and(|(t, _)| t.elapsed() < Self::STALE_AFTER)
    }

    /// How many pings came back so far.
    pub fn count(&self) -> u64 {
        let p = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        let lines = p.lines();
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("alive ")?.parse().ok())
            .unwrap_or(0)
    }

    /// The client's address as the listener saw it, `IP:PORT`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Its output so far (for diagnostics: why it died).
    pub fn output(&self) -> String {
        self.proc.lock().unwrap_or_else(|e| e.into_inner()).dump()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.proc.get_mut().unwrap_or_else(|e| e.into_inner()).stop();
    }
}

/// The `wt-net` binary: `$WARREN_WT_NET` if set, else `wt-net` in the directory
/// of the running executable or its parent. Cargo puts integration-test
/// executables in `target/<profile>/deps/` and this crate's binaries (built
/// for its integration tests) in `target/<profile>/`, so `cargo test -p
/// warren-tests` finds it without help.
pub fn wt_net() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_WT_NET") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("wt-net"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "wt-net not found next to {} or in its parent; build it (cargo build -p warren-tests --bin wt-net) \
                 or set WARREN_WT_NET",
                exe.display()
            )
        })
}

/// Remove the namespaces and mount files of labs whose creating process is
/// dead (crashed or killed runs). Labs of live processes are left alone.
pub fn cleanup_stale() {
    let netns = netns_list();
    let mut ids: BTreeSet<String> = netns.iter().filter_map(|n| lab_id_of(n)).collect();
    if let Ok(rd) = std::fs::read_dir(LAB_ROOT) {
        ids.extend(
            rd.filter_map(Result::ok)
                .filter_map(|e| lab_id_of(&e.file_name().to_string_lossy())),
        );
    }
    for id in ids {
        let dir = Path::new(LAB_ROOT).join(&id);
        if owner_alive(&id, &dir) {
            continue;
        }
        let mine: Vec<String> = netns
            .iter()
            .filter(|n| lab_id_of(n).as_deref() == Some(&id))
            .cloned()
            .collect();
        teardown(&mine, &dir);
    }
}

/// `wl<pid>-<n>` from a lab directory name or a lab namespace name `wl<pid>-<n>-<host>`.
fn lab_id_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix("wl")?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?;
    let n = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then(|| format!("wl{pid}-{n}"))
}

fn owner_alive(id: &str, dir: &Path) -> bool {
    let Some(pid) = id
        .strip_prefix("wl")
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse().ok())
    else {
        return false;
    };
    let Some(now) = proc_start_time(pid) else {
        return false;
    };
    // A recorded start time tells a reused pid from the lab's creator.
    match std::fs::read_to_string(dir.join("owner")) {
        Ok(s) => match s.split_whitespace().nth(1).and_then(|t| t.parse::<u64>().ok()) {
            Some(recorded) if recorded != 0 => recorded == now,
            _ => true,
        },
        Err(_) => true,
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), or
/// None if there is no such process or it is a zombie (an init that does not
/// reap, as in some containers and VMs, keeps dead processes around).
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Kill every process inside the namespaces, delete them, unmount and remove
/// the lab directory. Errors are ignored: parts may never have existed.
fn teardown(netns: &[String], dir: &Path) {
    for ns in netns {
        kill_all_in(ns);
    }
    for ns in netns {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    // Mount-namespace files first (deepest first), then the bind of the dir
    // itself; repeat in case of stacked mounts.
    for _ in 0..5 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let quiet = |args: &[&str]| Command::new("umount").args(args).stderr(Stdio::null()).status();
            if !quiet(&[&m]).is_ok_and(|s| s.success()) {
                let _ = quiet(&["-l", &m]);
            }
        }
    }
    if mounts_under(dir).is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn kill_all_in(ns: &str) {
    for _ in 0..20 {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", ns])
            .stderr(Stdio::null())
            .output()
        else {
            return;
        };
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == d || m.strip_prefix(&d).is_some_and(|r| r.starts_with('/')))
        .map(str::to_string)
        .collect()
}

/// Run a command in the root namespace (lab plumbing only), asserting success.
fn host_ok(prog: &str, args: &[&str], stdin: Option<&str>) {
    let what = format!("{prog} {args:?}");
    let mut c = Command::new(prog);
    c.args(args);
    let out = match stdin {
        Some(s) => with_stdin(c, s, &what),
        None => c
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
    };
    assert!(
        out.status.success(),
        "lab setup failed (it needs root, iproute2, util-linux and nftables): {what}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn with_stdin(mut c: Command, stdin: &str, what: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let Some(mut si) = child.stdin.take() {
        si.write_all(stdin.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: writing stdin: {e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn checked(host: &str, args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{host}: {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A background process whose stdout lines (time-stamped) and stderr are collected.
#[derive(Debug)]
struct Proc {
    what: String,
    child: Child,
    out: Arc<Mutex<Vec<(Instant, String)>>>,
    err: Arc<Mutex<String>>,
}

impl Proc {
    fn start(mut cmd: Command, what: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let out = Arc::clone(&out);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Instant::now(), line));
                }
            });
        }
        if let Some(mut stderr) = child.stderr.take() {
            let err = Arc::clone(&err);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    err.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Proc {
            what: what.to_string(),
            child,
            out,
            err,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn lines(&self) -> Vec<String> {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn dump(&self) -> String {
        let err = self.err.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "[{} (pid {})]\n{}\n{err}",
            self.what,
            self.pid(),
            self.lines().join("\n")
        )
    }

    fn stop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
