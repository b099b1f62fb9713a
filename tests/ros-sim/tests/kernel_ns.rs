//! `kernel::sync` in real network namespaces: the simulator's configuration
//! applied to a namespace's kernel carries real packets.
//!
//! The test process never enters a namespace itself: it re-runs this test
//! binary inside one (`ip netns exec`, which gives it a private mount
//! namespace too, where `/run/wireguard` is a fresh tmpfs), selecting the
//! ignored test `kernel_child` with `WK_ROLE`:
//! - `sync`: reads one JSON database per stdin line, runs `kernel::sync`, and
//!   answers `WK-OK` or `WK-ERR <error>` (one process: incremental syncs);
//! - `listen`: a TCP server on port `WK_ARG` answering `hello <peer ip>`;
//! - `connect`: connects to `WK_ARG`, prints `WK-GOT <reply>` or `WK-FAIL`.
//!
//! Needs root, `nft`, `wg` and `wireguard-go`; without them each test prints
//! `SKIPPED: ...` and passes. Namespaces are named `wk<pid>-<n>-<host>` and
//! removed (with every process inside) by a drop guard, also on failure.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod kernel_common;

use kernel_common::{warren_db, DbBuilder, Ifaces, Jumps};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warren_ros_sim::db::{Db, Row};
use warren_ros_sim::kernel;

fn db_to_json(db: &Db) -> String {
    let mut menus = Map::new();
    for (menu, rows) in &db.menus {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut o: Map<String, Value> = r
                    .props
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                o.insert(".id".into(), Value::String(r.id.clone()));
                Value::Object(o)
            })
            .collect();
        menus.insert(menu.clone(), Value::Array(rows));
    }
    Value::Object(menus).to_string()
}

fn db_from_json(s: &str) -> Db {
    let v: BTreeMap<String, Vec<BTreeMap<String, String>>> = serde_json::from_str(s).unwrap();
    let mut db = Db::default();
    for (menu, rows) in v {
        let rows = rows
            .into_iter()
            .map(|mut p| Row {
                id: p.remove(".id").unwrap_or_default(),
                props: p,
            })
            .collect();
        db.menus.insert(menu, rows);
    }
    db
}

/// The child side (run only when re-executed by the tests below).
#[test]
#[ignore = "run inside a namespace by the other tests"]
fn kernel_child() {
    let arg = std::env::var("WK_ARG").unwrap_or_default();
    match std::env::var("WK_ROLE").as_deref() {
        Ok("sync") => {
            for line in std::io::stdin().lock().lines() {
                let line = line.unwrap();
                let reply = match kernel::sync(&db_from_json(&line)) {
                    Ok(()) => "WK-OK".to_string(),
                    Err(e) => format!("WK-ERR {}", format!("{e:#}").replace('\n', " | ")),
                };
                println!("{reply}");
                std::io::stdout().flush().unwrap();
            }
        }
        Ok("listen") => {
            let l = TcpListener::bind(("0.0.0.0", arg.parse::<u16>().unwrap())).unwrap();
            println!("WK-READY");
            std::io::stdout().flush().unwrap();
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
                let _ = s.write_all(format!("hello {peer}\n").as_bytes());
            }
        }
        Ok("connect") => {
            let addr = arg.parse().unwrap();
            let out = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Err(e) => format!("WK-FAIL connect: {e}"),
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut text = String::new();
                    match s.read_to_string(&mut text) {
                        Ok(_) if !text.is_empty() => format!("WK-GOT {}", text.trim()),
                        Ok(_) => "WK-FAIL read: empty".to_string(),
                        Err(e) => format!("WK-FAIL read: {e}"),
                    }
                }
            };
            println!("{out}");
        }
        _ => {}
    }
}

fn skip_reason() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .map(|l| l.split_whitespace().nth(1) == Some("0"))
    });
    if uid != Some(true) {
        return Some("not root".into());
    }
    for tool in ["nft", "wg", "wireguard-go", "ip"] {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| std::path::Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! need_namespaces {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!(
                "SKIPPED: namespace test ({why}; `{}` not present)",
                "root with nft, wg and wireguard-go"
            );
            return;
        }
    };
}

/// Namespaces and the processes started in them; all gone on drop.
#[derive(Debug)]
struct Net {
    prefix: String,
    hosts: Vec<String>,
    children: Vec<Child>,
    /// Stdout of the listeners, kept open while they run.
    readers: Vec<BufReader<ChildStdout>>,
}

impl Net {
    fn new(hosts: &[&str]) -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!("wk{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let mut net = Net {
            prefix,
            hosts: Vec::new(),
            children: Vec::new(),
            readers: Vec::new(),
        };
        for h in hosts {
            let ns = net.ns(h);
            sh("ip", &["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }
    fn link(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        sh(
            "ip",
            &[
                "link",
                "add",
                "name",
                a_if,
                "netns",
                &self.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                &self.ns(b),
            ],
        );
    }
    /// `ip -n <host> -batch -`.
    fn ip(&self, host: &str, batch: &str) {
        let mut c = Command::new("ip")
            .args(["-n", &self.ns(host), "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "{host}: ip -batch {batch}");
    }
    fn child(&mut self, host: &str, role: &str, arg: &str, wg_tmpfs: bool) -> &mut Child {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), "sh", "-c"]);
        let script = if wg_tmpfs {
            "mkdir -p /run/wireguard && mount -t tmpfs wk-wg /run/wireguard && exec \"$@\""
        } else {
            "exec \"$@\""
        };
        c.arg(script)
            .arg("sh")
            .arg(exe)
            .args([
                "--exact",
                "kernel_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("WK_ROLE", role)
            .env("WK_ARG", arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        self.children.push(c.spawn().unwrap());
        self.children.last_mut().unwrap()
    }
    fn syncer(&mut self, host: &str) -> Syncer {
        let c = self.child(host, "sync", "", true);
        Syncer {
            stdin: c.stdin.take().unwrap(),
            stdout: BufReader::new(c.stdout.take().unwrap()),
        }
    }
    fn listen(&mut self, host: &str, port: u16) {
        let c = self.child(host, "listen", &port.to_string(), false);
        let mut out = BufReader::new(c.stdout.take().unwrap());
        let line = wk_line(&mut out);
        assert_eq!(line, "WK-READY");
        self.readers.push(out);
    }
    fn connect(&mut self, host: &str, addr: &str) -> String {
        let c = self.child(host, "connect", addr, false);
        let mut out = BufReader::new(c.stdout.take().unwrap());
        let line = wk_line(&mut out);
        let _ = out.read_to_end(&mut Vec::new());
        line
    }
    fn out(&self, host: &str, args: &[&str]) -> String {
        let ns = self.ns(host);
        let mut a = vec!["netns", "exec", ns.as_str()];
        a.extend(args);
        let o = Command::new("ip").args(&a).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // wireguard-go daemons (and anything else) still inside.
        for ns in &self.hosts {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        for ns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn wk_line(out: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited without an answer"
        );
        if line.starts_with("WK-") {
            return line.trim().to_string();
        }
    }
}

struct Syncer {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Syncer {
    fn sync(&mut self, db: &Db) -> Result<(), String> {
        writeln!(self.stdin, "{}", db_to_json(db)).unwrap();
        self.stdin.flush().unwrap();
        match wk_line(&mut self.stdout).as_str() {
            "WK-OK" => Ok(()),
            other => Err(other.to_string()),
        }
    }
}

fn sh(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The router between a "tunnel" (a veth standing for wg0, to a client with
/// an Internet source address), an ISP uplink (the main table's default
/// route) and a LAN server. A forward `tcp 8080 -> server:80` only works when
/// replies are routed back through the tunnel by mangle's `mark-routing`:
/// with Warren's jump above defconf's FastTrack rule it works; with the jump
/// moved below FastTrack, the connection is fasttracked after its first
/// reply, later replies skip mangle, take the main table (the ISP) and are
/// lost, as on a real MikroTik.
#[test]
fn dnat_works_and_fasttrack_above_warren_breaks_it() {
    need_namespaces!();
    let mut net = Net::new(&["client", "router", "isp", "server"]);
    net.link("client", "eth0", "router", "tun");
    net.link("router", "isp", "isp", "eth0");
    net.link("router", "lan", "server", "eth0");
    net.ip(
        "client",
        "addr add 10.100.0.1/30 dev eth0 noprefixroute\nlink set eth0 up\naddr add 198.51.100.50/32 dev lo\n\
         route add 10.100.0.0/30 dev eth0 src 198.51.100.50\nroute add default via 10.100.0.2 src 198.51.100.50\n",
    );
    net.ip("isp", "addr add 10.200.0.1/24 dev eth0\nlink set eth0 up\n");
    net.ip(
        "server",
        "addr add 192.168.77.10/24 dev eth0\nlink set eth0 up\nroute add default via 192.168.77.1\n",
    );
    // The router's base (lab) addresses; the tunnel's address comes from the db.
    net.ip(
        "router",
        "link set tun up\naddr add 10.200.0.2/24 dev isp\nlink set isp up\n\
         addr add 192.168.77.1/24 dev lan\nlink set lan up\nroute add default via 10.200.0.1\n",
    );
    let ifs = Ifaces {
        tunnel: "tun",
        lan: "lan",
        wan: "isp",
    };
    let good = warren_db(ifs, Jumps::Top);
    let bad = warren_db(ifs, Jumps::BelowFastTrack);
    for db in [&good, &bad] {
        let (ok, err) = Command::new("ip")
            .args(["netns", "exec", &net.ns("router"), "nft", "-c", "-f", "-"])
            .stdin(Stdio::piped())
            .output_with(&kernel::render(db).nft);
        assert!(ok, "nft -c refused the ruleset: {err}");
    }
    // The ISP side counts replies of the forward that reach it (misrouted).
    let (ok, err) = Command::new("ip")
        .args(["netns", "exec", &net.ns("isp"), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .output_with("table ip t {\n chain c {\n  type filter hook prerouting priority 0;\n  ip saddr 10.100.0.2 tcp sport 8080 counter\n }\n}\n");
    assert!(ok, "{err}");
    let misrouted = |net: &Net| -> u64 {
        let t = net.out("isp", &["nft", "list", "table", "ip", "t"]);
        let n = t
            .split("counter packets ")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        n.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {t}"))
    };
    let mut router = net.syncer("router");
    router.sync(&good).unwrap();
    let rules = net.out("router", &["ip", "-N", "rule", "show"]);
    assert!(
        rules.contains("1000:\tfrom all fwmark 0x64 lookup 100 proto 99"),
        "{rules}"
    );
    let routes = net.out("router", &["ip", "-N", "route", "show", "table", "100"]);
    assert!(
        routes.contains("default via 10.100.0.1 dev tun proto 99"),
        "{routes}"
    );
    let addrs = net.out("router", &["ip", "-4", "addr", "show", "dev", "tun"]);
    assert!(addrs.contains("10.100.0.2/30"), "{addrs}");
    assert_eq!(
        net.out("router", &["cat", "/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "1"
    );
    net.listen("server", 80);

    assert_eq!(
        net.connect("client", "10.100.0.2:8080"),
        "WK-GOT hello 198.51.100.50",
        "the forward with the real source address"
    );

    assert_eq!(misrouted(&net), 0);

    router.sync(&bad).unwrap();
    let got = net.connect("client", "10.100.0.2:8080");
    assert!(
        got.starts_with("WK-FAIL read"),
        "connects (the first reply is marked), then the fasttracked replies are lost: {got}"
    );
    assert!(
        misrouted(&net) > 0,
        "the fasttracked replies left through the main table's ISP route"
    );

    router.sync(&good).unwrap();
    assert_eq!(
        net.connect("client", "10.100.0.2:8080"),
        "WK-GOT hello 198.51.100.50"
    );

    // Removing the configuration removes what was added, and only that.
    router.sync(&Db::default()).unwrap();
    let addrs = net.out("router", &["ip", "-4", "addr", "show"]);
    assert!(
        !addrs.contains("10.100.0.2/30") && addrs.contains("192.168.77.1/24"),
        "{addrs}"
    );
    let rules = net.out("router", &["ip", "-N", "rule", "show"]);
    assert!(!rules.contains("proto 99"), "{rules}");
    let t100 = net.out("router", &["ip", "-N", "route", "show", "table", "100"]);
    assert!(!t100.contains("proto 99"), "{t100}");
    let main = net.out("router", &["ip", "route", "show"]);
    assert!(
        main.contains("default via 10.200.0.1 dev isp"),
        "the lab's route stays: {main}"
    );
}

trait OutputWith {
    fn output_with(&mut self, stdin: &str) -> (bool, String);
}

impl OutputWith for Command {
    fn output_with(&mut self, stdin: &str) -> (bool, String) {
        let mut c = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

fn wg_key() -> (String, String) {
    let private = sh("wg", &["genkey"]).trim().to_string();
    let mut c = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{private}\n").as_bytes())
        .unwrap();
    let public = String::from_utf8(c.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    (private, public)
}

fn wg_db(private: &str, port: &str, mtu: &str, peer: &[(&str, &str)], address: &str) -> Db {
    let mut b = DbBuilder::default();
    b.add(
        "interface/wireguard",
        &[
            ("name", "wg0"),
            ("private-key", private),
            ("listen-port", port),
            ("mtu", mtu),
            ("disabled", "false"),
        ],
    );
    let mut p = vec![("interface", "wg0")];
    p.extend_from_slice(peer);
    b.add("interface/wireguard/peers", &p);
    b.add("ip/address", &[("address", address), ("interface", "wg0")]);
    b.db
}

fn ifindex(net: &Net, host: &str) -> String {
    let o = net.out(host, &["ip", "-o", "link", "show", "dev", "wg0"]);
    o.split(':').next().unwrap_or("").to_string()
}

/// Two simulated routers joined by WireGuard (wireguard-go, each in its own
/// mount namespace): the tunnel carries TCP; a change of MTU, listen port and
/// keepalive is applied in place (same link); removing the interface from
/// the database deletes the link.
#[test]
fn wireguard_tunnel_is_updated_in_place_and_removed() {
    need_namespaces!();
    let mut net = Net::new(&["gw", "rt"]);
    net.link("gw", "eth0", "rt", "eth0");
    net.ip("gw", "addr add 10.9.0.1/24 dev eth0\nlink set eth0 up\n");
    net.ip("rt", "addr add 10.9.0.2/24 dev eth0\nlink set eth0 up\n");
    let (gw_priv, gw_pub) = wg_key();
    let (rt_priv, rt_pub) = wg_key();
    let gw_db = wg_db(
        &gw_priv,
        "51820",
        "1420",
        &[("public-key", &rt_pub), ("allowed-address", "10.100.0.2/32")],
        "10.100.0.1/30",
    );
    let rt_db = |port: &str, mtu: &str, ka: &str| {
        wg_db(
            &rt_priv,
            port,
            mtu,
            &[
                ("public-key", &gw_pub),
                ("allowed-address", "0.0.0.0/0"),
                ("endpoint-address", "10.9.0.1"),
                ("endpoint-port", "51820"),
                ("persistent-keepalive", ka),
            ],
            "10.100.0.2/30",
        )
    };
    let mut gw = net.syncer("gw");
    let mut rt = net.syncer("rt");
    gw.sync(&gw_db).unwrap();
    rt.sync(&rt_db("51821", "1420", "25s")).unwrap();
    rt.sync(&rt_db("51821", "1420", "25s")).unwrap();
    net.listen("gw", 7000);
    assert_eq!(net.connect("rt", "10.100.0.1:7000"), "WK-GOT hello 10.100.0.2");

    let before = ifindex(&net, "rt");
    rt.sync(&rt_db("51822", "1380", "10s")).unwrap();
    assert_eq!(ifindex(&net, "rt"), before, "the link was not recreated");
    let link = net.out("rt", &["ip", "link", "show", "dev", "wg0"]);
    assert!(link.contains("mtu 1380"), "{link}");
    assert_eq!(
        net.connect("rt", "10.100.0.1:7000"),
        "WK-GOT hello 10.100.0.2",
        "the tunnel still works"
    );

    rt.sync(&Db::default()).unwrap();
    let link = net.out("rt", &["ip", "link", "show", "dev", "wg0"]);
    assert!(link.contains("does not exist"), "{link}");
    let _ = Row::default();
}
