//! `warren-agent doctor`: what on this host would break (or risks) the
//! network Warren's plan describes, each as a [`Finding`] with what was
//! seen, why it matters and the exact fix. The daemon runs the same checks
//! at start-up, after each apply and periodically, and sends the findings
//! to the controller for `status`.
//!
//! It only reads (commands and files through [`Sys`], so every check is
//! testable with the `Recorder`): it never probes by creating anything
//! (no `ip link add … type wireguard`, no test socket), and never fixes what
//! it finds.

use crate::backend::iptables::{self, Variant};
use crate::backend::wireguard::{parse_dump, WgMode};
use crate::sys::Sys;
use std::net::SocketAddrV4;
use std::path::Path;
use warren_plan::{Finding, Firewall, InterfaceState, PeerKey, Plan, Severity};

/// Seconds after an apply (or the agent's start) within which the WAN VPN's
/// first handshake must have happened.
pub const HANDSHAKE_GRACE_SECS: u64 = 20;
/// WireGuard's `REJECT_AFTER_TIME`: a session older than this carries no
/// traffic. With a keepalive the dialling side handshakes every two minutes,
/// so a latest handshake older than this means the tunnel is down.
pub const SESSION_EXPIRY_SECS: u64 = 180;
/// How far the local clock may be behind the time the controller signed
/// the running plan before it counts as wrong.
pub const CLOCK_SLACK_SECS: u64 = 300;
/// WireGuard's overhead over IPv4 (20 IP + 8 UDP + 32 WireGuard): a full-size
/// tunnel packet is the tunnel MTU plus this on the uplink.
const WG_OVERHEAD_V4: u32 = 60;
/// The overhead the compiler budgets (IPv6 outer header, worst case): the
/// YAML's path MTU is the WAN VPN's MTU plus this.
const WG_OVERHEAD_BUDGET: u32 = 80;

/// What the checks look at besides the host itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The plan to check against (the running one, or one given with
    /// `--plan`); `None`: the checks that need a plan say so and pass.
    pub plan: Option<&'a Plan>,
    /// Whether `plan` is applied on this host (so its sysctls must hold).
    pub applied: bool,
    /// Unix seconds the controller signed `plan` (its envelope's `issued_at`).
    pub issued_at: Option<u64>,
    /// Unix seconds since when the WAN VPN should have handshaken: the later
    /// of the plan's apply and this agent's start.
    pub up_since: Option<u64>,
    /// How this agent creates WireGuard interfaces.
    pub wg_mode: WgMode,
    /// Unix seconds now (the local clock).
    pub now: u64,
    /// For a RouterOS plan: the router's rows in Warren's menus as read
    /// just now over REST, or why they could not be read.
    pub router: Option<&'a Result<warren_plan::RosState, String>>,
}

/// Every check, in a fixed order.
pub fn run(sys: &dyn Sys, cx: &Context) -> Vec<Finding> {
    if let Some(p) = cx.plan.filter(|p| p.platform == warren_plan::Platform::Routeros) {
        let mut v = vec![routeros(p)];
        if let Some(r) = cx.router {
            v.extend(router_checks(p, r));
        }
        return v;
    }
    let mut v = vec![wireguard(sys, cx), netfilter(sys, cx)];
    v.extend(crate::backend::foreign::doctor_findings(sys, cx.plan));
    v.push(ip_forward(sys, cx));
    v.extend(rp_filter(sys, cx));
    v.extend(listen_ports(sys, cx));
    v.push(uplink_mtu(sys, cx));
    v.push(clock(cx));
    v.push(conntrack(sys));
    v.extend(handshakes(sys, cx));
    v
}

/// Whether any finding would break traffic.
pub fn breaks(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Breaks)
}

/// The text form: one line per finding with a marker; the why and the fix
/// of the ones that are not ok, indented below.
pub fn render_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let mark = match f.severity {
            Severity::Ok => "ok    ",
            Severity::Warn => "WARN  ",
            Severity::Breaks => "BREAKS",
        };
        s.push_str(&format!("{mark} {}: {}\n", f.check, f.what));
        if f.severity != Severity::Ok {
            if !f.why.is_empty() {
                s.push_str(&format!("         why: {}\n", f.why));
            }
            if !f.fix.is_empty() {
                s.push_str(&format!("         fix: {}\n", f.fix));
            }
        }
    }
    let count = |sev| findings.iter().filter(|f| f.severity == sev).count();
    s.push_str(&format!(
        "{} checks: {} breaks, {} warnings\n",
        findings.len(),
        count(Severity::Breaks),
        count(Severity::Warn)
    ));
    s
}

fn finding(check: &str, severity: Severity, what: String, why: &str, fix: String) -> Finding {
    Finding {
        check: check.into(),
        severity,
        what,
        why: why.into(),
        fix,
    }
}

fn ok(check: &str, what: String) -> Finding {
    finding(check, Severity::Ok, what, "", String::new())
}

/// A RouterOS plan runs on the router, not on this host: the Linux checks
/// do not apply, and the router's own state is judged by every reconcile
/// (drift names a missing row, a changed value, a jump below FastTrack).
fn routeros(plan: &Plan) -> Finding {
    let at = plan
        .routeros
        .as_ref()
        .map(|r| format!(" at {}:{}", r.access.address, r.access.port))
        .unwrap_or_default();
    ok(
        "routeros",
        format!(
            "the plan is for the RouterOS router {}{at}, driven over REST: this host's Linux checks are skipped; \
             the router's rows (and its jumps above FastTrack) are checked by every drift check",
            plan.host
        ),
    )
}

/// What would break a RouterOS router's traffic, from its rows read over
/// REST: the API unreachable; a jump of Warren's below a rule of the
/// router's own in a built-in chain (FastTrack above it skips Warren's
/// mangle, so replies leave through the ISP); the WAN VPN without a recent
/// handshake.
pub fn router_checks(plan: &Plan, read: &Result<warren_plan::RosState, String>) -> Vec<Finding> {
    use warren_plan::ros::{Place, TAG_PREFIX};
    let Some(want) = &plan.routeros else {
        return vec![];
    };
    let at = format!("{}:{}", want.access.address, want.access.port);
    let live = match read {
        Ok(l) => l,
        Err(e) => {
            return vec![finding(
                "routeros-rest",
                Severity::Breaks,
                format!("the router's REST API at {at} cannot be read: {e}"),
                "the agent applies and checks the router only through it",
                "check that www-ssl is enabled with the certificate whose fingerprint the YAML pins, that the user and the \
                 password file match, and that nothing on the router drops this host"
                    .into(),
            )]
        }
    };
    let mut v = vec![ok(
        "routeros-rest",
        format!("the router's REST API at {at} answers"),
    )];
    for e in want.entries.iter().filter(|e| e.place == Place::Top) {
        let Some(chain) = e.props.get("chain") else {
            continue;
        };
        let rows: Vec<&warren_plan::ros::RosRow> = live
            .menus
            .get(&e.menu)
            .map(|r| r.iter().filter(|r| r.props.get("chain") == Some(chain)).collect())
            .unwrap_or_default();
        let label = format!("{} {chain}: {TAG_PREFIX}{}", e.menu, e.tag);
        match rows.iter().position(|r| r.tag() == Some(e.tag.as_str())) {
            None => v.push(finding(
                "routeros-jumps",
                Severity::Breaks,
                format!("{label} is missing"),
                "without it none of Warren's rules in that chain run",
                "let the agent apply the plan again (`warren-controller sync`), or set `drift: heal`".into(),
            )),
            Some(i) => match rows[..i].iter().find(|r| !r.dynamic() && !r.owned()) {
                Some(above) => {
                    let what = above
                        .props
                        .get("comment")
                        .cloned()
                        .or_else(|| above.props.get("action").map(|a| format!("action={a}")))
                        .unwrap_or_else(|| above.id.clone());
                    v.push(finding(
                        "routeros-jumps",
                        Severity::Breaks,
                        format!("{label} is below the router's own rule '{what}'"),
                        "a FastTrack or accept above it lets connections skip Warren's rules (replies of forwarded connections leave through the ISP)",
                        "let the agent move it back (`warren-controller sync`, or `drift: heal`)".into(),
                    ));
                }
                None => v.push(ok(
                    "routeros-jumps",
                    format!("{label} is above the router's own rules"),
                )),
            },
        }
    }
    let wan = want.entries.iter().find(|e| {
        e.menu == "interface/wireguard/peers"
            && e.props.get("endpoint-address").is_some_and(|a| !a.is_empty())
    });
    if let Some(wan) = wan {
        let row = live
            .menus
            .get(&wan.menu)
            .and_then(|rows| rows.iter().find(|r| r.tag() == Some(wan.tag.as_str())));
        let age = row
            .and_then(|r| r.props.get("last-handshake"))
            .and_then(|h| warren_plan::ros_diff::duration_secs(h));
        v.push(match age {
            Some(a) if a <= 180 => ok("routeros-wan-handshake", format!("the WAN VPN handshook {a} s ago")),
            _ => finding(
                "routeros-wan-handshake",
                Severity::Warn,
                format!("the WAN VPN peer {TAG_PREFIX}{} has no handshake in the last 3 minutes", wan.tag),
                "the router dials the gateway; without a handshake nothing reaches the LAN",
                "check that the gateway's agent has its plan with the router's key, and the router's route to the gateway".into(),
            ),
        });
    }
    v
}

fn no_plan(check: &str) -> Finding {
    ok(
        check,
        "skipped: no plan runs on this host (give one with --plan)".into(),
    )
}

/// A one-line value of a file, trimmed; `None` if it cannot be read.
fn file(sys: &dyn Sys, path: &str) -> Option<String> {
    sys.read_file(Path::new(path)).ok().map(|s| s.trim().to_string())
}

fn wg_ifaces(plan: Option<&Plan>) -> usize {
    plan.map_or(0, |p| p.wireguard.len())
}

/// Kernel WireGuard (the module loaded, or installed for loading) or
/// `wireguard-go`, as the agent's `wireguard` setting needs, and `wg`.
fn wireguard(sys: &dyn Sys, cx: &Context) -> Finding {
    const C: &str = "wireguard";
    let kernel = file(sys, "/sys/module/wireguard/version")
        .map(|v| format!("kernel module {v} loaded"))
        .or_else(|| {
            sys.read("modinfo", &["-F", "version", "wireguard"])
                .ok()
                .map(|v| format!("kernel module {} available", v.trim()))
        });
    let userspace = sys
        .read("wireguard-go", &["--version"])
        .ok()
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .map(|v| format!("wireguard-go {v}"));
    let wg = sys.read("wg", &["--version"]).is_ok();
    let sev = if wg_ifaces(cx.plan) > 0 || cx.plan.is_none() {
        Severity::Breaks
    } else {
        Severity::Warn
    };
    if !wg {
        return finding(
            C,
            sev,
            "the `wg` tool is not installed".into(),
            "the agent configures every WireGuard interface with `wg`: no tunnel can come up",
            "install wireguard-tools (apt install wireguard-tools)".into(),
        );
    }
    let need = match cx.wg_mode {
        WgMode::Kernel => kernel.clone().ok_or((
            "wireguard = \"kernel\" in agent.toml, but the kernel has no WireGuard module",
            "load it (modprobe wireguard; install linux-modules-extra for your kernel), \
             or set wireguard = \"auto\" in agent.toml and install wireguard-go",
        )),
        WgMode::Userspace => userspace.clone().ok_or((
            "wireguard = \"userspace\" in agent.toml, but wireguard-go is not on PATH",
            "install wireguard-go (apt install wireguard-go), or set wireguard = \"auto\" \
             in agent.toml on a kernel with WireGuard",
        )),
        WgMode::Auto => kernel
            .clone()
            .or_else(|| {
                userspace
                    .clone()
                    .map(|u| format!("no kernel module; userspace fallback {u}"))
            })
            .ok_or((
                "neither the kernel WireGuard module nor wireguard-go is available",
                "load the module (modprobe wireguard) or install wireguard-go",
            )),
    };
    match need {
        Ok(what) => ok(C, what),
        Err((what, fix)) => finding(
            C,
            sev,
            what.into(),
            "the agent cannot create its WireGuard interfaces: the WAN VPN and the private VPN stay down",
            fix.into(),
        ),
    }
}

/// The netfilter tools: `nft`, which variant `iptables` is, which variants
/// hold rules, and whether the plan's choice is available.
fn netfilter(sys: &dyn Sys, cx: &Context) -> Finding {
    const C: &str = "netfilter";
    let nft = sys.read("nft", &["--version"]).ok().map(|v| v.trim().to_string());
    let ipt = sys.read("iptables", &["-V"]).ok().map(|v| v.trim().to_string());
    let variant = ipt.as_deref().map(|v| {
        if v.contains("nf_tables") {
            "nft"
        } else if v.contains("legacy") {
            "legacy"
        } else {
            "unknown"
        }
    });
    let legacy_rules = iptables::holds_content(sys, Variant::Legacy);
    let nft_rules = iptables::holds_content(sys, Variant::Nft);
    let mut what = vec![
        nft.clone().unwrap_or_else(|| "no nft".into()),
        ipt.clone().unwrap_or_else(|| "no iptables".into()),
    ];
    let with_rules: Vec<&str> = [("iptables-legacy", legacy_rules), ("iptables-nft", nft_rules)]
        .into_iter()
        .filter(|(_, r)| *r)
        .map(|(n, _)| n)
        .collect();
    if !with_rules.is_empty() {
        what.push(format!("rules in {}", with_rules.join(" and ")));
    }
    let what = what.join("; ");
    let plan_wants = cx.plan.map(|p| &p.firewall);
    match plan_wants {
        Some(Firewall::Nftables(_)) if nft.is_none() => {
            return finding(
                C,
                Severity::Breaks,
                format!("{what}: the plan uses nftables (netfilter: nftables) but `nft` is not installed"),
                "the agent cannot install its table: no forward, DNAT or return-path mark works",
                "install nftables (apt install nftables), or set `netfilter: iptables` on this host in warren.yaml"
                    .into(),
            )
        }
        Some(Firewall::Iptables(_)) if ipt.is_none() => {
            return finding(
                C,
                Severity::Breaks,
                format!("{what}: the plan uses iptables (netfilter: iptables) but `iptables` is not installed"),
                "the agent cannot install its chains: no forward, DNAT or return-path mark works",
                "install iptables, or set `netfilter: nftables` on this host in warren.yaml".into(),
            )
        }
        _ => {}
    }
    let mixed = legacy_rules && nft_rules;
    let legacy_hidden = legacy_rules && variant == Some("nft");
    if mixed || legacy_hidden {
        return finding(
            C,
            Severity::Warn,
            what,
            "iptables-legacy rules are evaluated too, but `iptables` (nf_tables) and `nft` do not show them: \
             a DROP there is invisible to the other tools",
            "keep one variant: move the legacy rules (iptables-legacy-save) to the nft variant \
             (iptables-restore-translate, or iptables-nft-restore), then flush the legacy tables"
                .into(),
        );
    }
    ok(C, what)
}

/// `net.ipv4.ip_forward`: 0 is expected before Warren applies; a running
/// plan that sets it needs it.
fn ip_forward(sys: &dyn Sys, cx: &Context) -> Finding {
    const C: &str = "ip-forward";
    let key = "net.ipv4.ip_forward";
    let Some(now) = file(sys, "/proc/sys/net/ipv4/ip_forward") else {
        return finding(
            C,
            Severity::Warn,
            "cannot read /proc/sys/net/ipv4/ip_forward".into(),
            "whether this host forwards packets is unknown",
            "run doctor as root on the host itself".into(),
        );
    };
    let Some(plan) = cx.plan else {
        return ok(C, format!("{key} = {now} (no plan runs here yet)"));
    };
    let Some(want) = plan.sysctls.get(key) else {
        return ok(C, format!("{key} = {now} (the plan does not set it)"));
    };
    if &now == want {
        return ok(C, format!("{key} = {now}"));
    }
    if !cx.applied {
        return ok(
            C,
            format!("{key} = {now} now; the plan sets it to {want} when applied"),
        );
    }
    finding(
        C,
        Severity::Breaks,
        format!("{key} = {now}, but the running plan sets {want}"),
        "the host does not route between its interfaces: every forward, the WAN VPN's traffic and the private VPN stop here",
        format!(
            "sysctl -w {key}={want}; and find what reset it (a sysctl.d file, a network manager, a container runtime)"
        ),
    )
}

/// Effective `rp_filter` on each tunnel interface: the kernel uses the
/// higher of `conf.all` and `conf.<iface>` (an interface that does not exist
/// yet starts from `conf.default`, and Warren then sets what the plan says).
fn rp_filter(sys: &dyn Sys, cx: &Context) -> Vec<Finding> {
    const C: &str = "rp-filter";
    let Some(plan) = cx.plan else {
        return vec![no_plan(C)];
    };
    let read = |name: &str| {
        file(sys, &format!("/proc/sys/net/ipv4/conf/{name}/rp_filter")).and_then(|v| v.parse::<u8>().ok())
    };
    let all = read("all").unwrap_or(0);
    let mut out = Vec::new();
    for i in &plan.wireguard {
        let key = format!("net.ipv4.conf.{}.rp_filter", i.name);
        let planned = plan.sysctls.get(&key).and_then(|v| v.parse::<u8>().ok());
        let (own, whence) = match read(&i.name) {
            Some(v) => (v, i.name.clone()),
            None => match planned {
                // Not created yet: Warren sets it right after creating it.
                Some(p) => (p, format!("{} (planned)", i.name)),
                None => (read("default").unwrap_or(0), "default".to_string()),
            },
        };
        let effective = all.max(own);
        let what = format!(
            "rp_filter on {}: effective {effective} = max(all {all}, {whence} {own})",
            i.name
        );
        // The compiler asks for loose mode exactly where strict would drop
        // legitimate traffic (internet sources arriving through the WAN VPN).
        if planned == Some(2) && effective == 1 {
            out.push(finding(
                C,
                Severity::Breaks,
                what,
                "strict reverse-path filtering drops what arrives through the tunnel from internet \
                 addresses (their route is the uplink, not the tunnel): forwards through the gateway fail",
                format!(
                    "sysctl -w net.ipv4.conf.{}.rp_filter=2 (and set net.ipv4.conf.all.rp_filter to 0 or 2 \
                     in /etc/sysctl.d, so it survives a reboot)",
                    i.name
                ),
            ));
        } else {
            out.push(ok(C, what));
        }
    }
    if out.is_empty() {
        out.push(ok(C, "no tunnel interfaces in the plan".into()));
    }
    out
}

/// One UDP socket from `ss -H -ulpn`: its port and owning processes.
#[derive(Debug, PartialEq, Eq)]
struct UdpSocket {
    port: u16,
    local: String,
    /// `name[pid]` of each process holding it; empty for a kernel socket.
    procs: Vec<String>,
}

fn parse_ss(out: &str) -> Vec<UdpSocket> {
    let mut v = Vec::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // State Recv-Q Send-Q Local Peer [users:(...)]
        let Some(local) = f.get(3) else { continue };
        let Some(port) = local.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()) else {
            continue;
        };
        let mut procs = Vec::new();
        if let Some(users) = l.find("users:(").map(|i| &l[i..]) {
            for part in users.split("((").skip(1).chain(users.split("),(").skip(1)) {
                let name = part.split('"').nth(1).unwrap_or("?");
                let pid = part
                    .split("pid=")
                    .nth(1)
                    .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
                    .unwrap_or("?");
                procs.push(format!("{name}[{pid}]"));
            }
        }
        v.push(UdpSocket {
            port,
            local: local.to_string(),
            procs,
        });
    }
    v
}

/// Another interface or process on a WireGuard listen port of the plan.
/// Warren's own interface (a kernel socket, or its `wireguard-go`) is fine.
fn listen_ports(sys: &dyn Sys, cx: &Context) -> Vec<Finding> {
    const C: &str = "listen-port";
    let Some(plan) = cx.plan else {
        return vec![no_plan(C)];
    };
    let wanted: Vec<(&str, u16)> = plan
        .wireguard
        .iter()
        .filter_map(|i| i.listen_port.map(|p| (i.name.as_str(), p)))
        .collect();
    if wanted.is_empty() {
        return vec![ok(C, "no WireGuard interface of the plan listens".into())];
    }
    let sockets = match sys.read("ss", &["-H", "-ulpn"]) {
        Ok(out) => parse_ss(&out),
        Err(e) => {
            return vec![finding(
                C,
                Severity::Warn,
                format!("cannot list UDP sockets: {e}"),
                "another program on a WireGuard port would make the interface fail to come up",
                "install iproute2 (`ss`) and run doctor as root".into(),
            )]
        }
    };
    // `wg show all listen-port`: "iface\tport" per WireGuard interface.
    let wg_ports: Vec<(String, u16)> = sys
        .read("wg", &["show", "all", "listen-port"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (i, p) = l.split_once('\t')?;
            Some((i.to_string(), p.trim().parse().ok()?))
        })
        .collect();
    let mut out = Vec::new();
    for (iface, port) in wanted {
        let mut others: Vec<String> = wg_ports
            .iter()
            .filter(|(i, p)| *p == port && i != iface)
            .map(|(i, _)| format!("WireGuard interface {i}"))
            .collect();
        let ours_listens = wg_ports.iter().any(|(i, p)| i == iface && *p == port);
        for s in sockets.iter().filter(|s| s.port == port) {
            if s.procs.is_empty() {
                // A kernel socket: a WireGuard interface's (ours or one listed
                // above), or something else in the kernel.
                let any_wg = wg_ports.iter().any(|(_, p)| *p == port);
                if !any_wg {
                    others.push(format!("a kernel socket on {}", s.local));
                }
            } else {
                for p in &s.procs {
                    let wg_go = p.starts_with("wireguard-go[");
                    if !(wg_go && ours_listens) {
                        others.push(format!("process {p} on {}", s.local));
                    }
                }
            }
        }
        others.sort();
        others.dedup();
        if others.is_empty() {
            out.push(ok(C, format!("udp/{port} is {iface}'s alone")));
        } else {
            out.push(finding(
                C,
                Severity::Breaks,
                format!("udp/{port} ({iface}'s port) is taken by {}", others.join(", ")),
                "the port can have one owner: Warren's interface cannot listen on it (the apply fails), \
                 or the other owner receives the peers' packets and the handshakes never complete",
                format!(
                    "stop or reconfigure what holds udp/{port} (`ss -ulpn 'sport = :{port}'` shows it; a wg-quick \
                     interface: `wg-quick down IFACE`), or choose another port in warren.yaml"
                ),
            ));
        }
    }
    out
}

/// The interface packets to the WAN VPN's peer leave by: the route to the
/// dialled endpoint, or (on the listening side) the main default route.
fn uplink(sys: &dyn Sys, plan: &Plan) -> Option<String> {
    let endpoint = plan
        .wireguard
        .iter()
        .flat_map(|i| &i.peers)
        .find_map(|p| p.endpoint.as_deref()?.parse::<SocketAddrV4>().ok());
    let json = match endpoint {
        Some(ep) => sys.read("ip", &["-j", "-4", "route", "get", &ep.ip().to_string()]),
        None => sys.read("ip", &["-j", "-4", "route", "show", "default"]),
    }
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&json).ok()?;
    v.get(0)?.get("dev")?.as_str().map(str::to_string)
}

/// The uplink's MTU against the path MTU the plan was compiled for. The
/// plan carries the WAN VPN's MTU, which the compiler derives as the YAML's
/// (smallest) `path_mtu` less 80: so the path MTU is the largest tunnel MTU
/// plus 80.
fn uplink_mtu(sys: &dyn Sys, cx: &Context) -> Finding {
    const C: &str = "uplink-mtu";
    let Some(plan) = cx.plan else { return no_plan(C) };
    let Some(wan_mtu) = plan.wireguard.iter().map(|i| u32::from(i.mtu)).max() else {
        return ok(C, "no tunnel in the plan".into());
    };
    let path = wan_mtu + WG_OVERHEAD_BUDGET;
    let Some(dev) = uplink(sys, plan) else {
        return finding(
            C,
            Severity::Warn,
            "cannot tell the uplink (no route to the WAN VPN's peer, no default route)".into(),
            "without a route to the peer the WAN VPN cannot come up",
            "check `ip route` (a default route via the ISP)".into(),
        );
    };
    let Some(mtu) = file(sys, &format!("/sys/class/net/{dev}/mtu")).and_then(|m| m.parse::<u32>().ok())
    else {
        return finding(
            C,
            Severity::Warn,
            format!("cannot read the MTU of the uplink {dev}"),
            "",
            String::new(),
        );
    };
    if mtu >= path {
        return ok(
            C,
            format!("uplink {dev} MTU {mtu} >= path MTU {path} (WAN VPN MTU {wan_mtu} + 80)"),
        );
    }
    let sev = if mtu < wan_mtu + WG_OVERHEAD_V4 {
        Severity::Breaks
    } else {
        Severity::Warn
    };
    finding(
        C,
        sev,
        format!(
            "uplink {dev} MTU {mtu} is below the path MTU {path} the tunnels were sized for \
             (WAN VPN MTU {wan_mtu} + 80; path_mtu in warren.yaml)"
        ),
        if sev == Severity::Breaks {
            "a full-size tunnel packet (MTU + 60 bytes of WireGuard over IPv4) does not fit the uplink: it is \
             fragmented or dropped (PPPoE, CGNAT), so large transfers stall while pings work"
        } else {
            "over IPv4 full-size tunnel packets still fit, but not with an IPv6 outer header"
        },
        format!(
            "set `path_mtu: {mtu}` on this host in warren.yaml (Warren lowers the tunnel MTUs and MSS clamps), \
             or raise the uplink's MTU (ip link set dev {dev} mtu {path}) if the link allows it"
        ),
    )
}

/// The local clock against the time the controller signed the plan. A
/// clock far behind is what a router without a real-time clock has after
/// a reboot, before NTP.
fn clock(cx: &Context) -> Finding {
    const C: &str = "clock";
    let Some(issued) = cx.issued_at.filter(|t| *t > 0) else {
        return ok(C, "skipped: no signed plan to compare the clock with".into());
    };
    if cx.now + CLOCK_SLACK_SECS >= issued {
        return ok(
            C,
            format!("the local clock is not behind the plan's signing time ({issued})"),
        );
    }
    finding(
        C,
        Severity::Breaks,
        format!(
            "the local clock ({}) is {} s behind the time the controller signed the running plan ({issued})",
            cx.now,
            issued - cx.now
        ),
        "WireGuard handshake initiations carry the sender's time, and a peer ignores one older than the \
         last it accepted from this host: after a clock step back the WAN VPN stays down until the clock \
         catches up (confirm windows are not affected: they run on the monotonic clock)",
        "set the clock: enable NTP (timedatectl set-ntp true, or chronyc makestep); on a router without a \
         real-time clock, start NTP before the agent"
            .into(),
    )
}

/// The conntrack table's fill level.
fn conntrack(sys: &dyn Sys) -> Finding {
    const C: &str = "conntrack";
    let num = |p: &str| file(sys, p).and_then(|v| v.parse::<u64>().ok());
    let (Some(count), Some(max)) = (
        num("/proc/sys/net/netfilter/nf_conntrack_count"),
        num("/proc/sys/net/netfilter/nf_conntrack_max"),
    ) else {
        return ok(C, "conntrack not loaded".into());
    };
    let pct = count.saturating_mul(100).checked_div(max).unwrap_or(100);
    let what = format!("{count} of {max} conntrack entries in use ({pct}%)");
    let sev = if pct > 90 {
        Severity::Breaks
    } else if pct > 75 {
        Severity::Warn
    } else {
        return ok(C, what);
    };
    finding(
        C,
        sev,
        what,
        "when the table is full the kernel drops new connections (\"nf_conntrack: table full\"): DNAT \
         forwards and the return-path marks need an entry per connection",
        format!(
            "raise the limit (sysctl -w net.netfilter.nf_conntrack_max={}) and find what opens so many \
             connections (conntrack -L | sort | uniq -c)",
            max.saturating_mul(2).max(65_536)
        ),
    )
}

/// For every peer this host dials with a keepalive (the router's WAN peer):
/// the latest handshake is recent, or the tunnel is down whatever the
/// rules say.
fn handshakes(sys: &dyn Sys, cx: &Context) -> Vec<Finding> {
    const C: &str = "wan-handshake";
    let Some(plan) = cx.plan.filter(|_| cx.applied) else {
        return vec![];
    };
    let mut out = Vec::new();
    for i in &plan.wireguard {
        let dialled = i
            .peers
            .iter()
            .filter(|p| p.endpoint.is_some() && p.persistent_keepalive.is_some());
        for p in dialled {
            let PeerKey::Known(key) = &p.public_key else {
                out.push(ok(C, format!("{} peer {}: key not known yet", i.name, p.name)));
                continue;
            };
            let mut st = InterfaceState::default();
            let Ok(dump) = sys.read("wg", &["show", &i.name, "dump"]) else {
                out.push(finding(
                    C,
                    Severity::Breaks,
                    format!("{} does not exist or cannot be read", i.name),
                    "the WAN VPN is down",
                    "see `warren-agent diff` and the agent's log".into(),
                ));
                continue;
            };
            parse_dump(&dump, &mut st);
            let hs = st
                .peers
                .iter()
                .find(|x| &x.public_key == key)
                .map_or(0, |x| x.latest_handshake);
            let endpoint = p.endpoint.as_deref().unwrap_or("?");
            let port = endpoint.rsplit_once(':').map_or("51820", |(_, p)| p);
            let fix = format!(
                "something drops udp/{port} between this host and {endpoint}: run `warren-agent doctor` on both \
                 ends (foreign firewall, listen port), and check the provider's security list for udp/{port}"
            );
            let since = cx.up_since.unwrap_or(0);
            if hs == 0 {
                let waited = cx.now.saturating_sub(since);
                if waited < HANDSHAKE_GRACE_SECS {
                    out.push(ok(
                        C,
                        format!(
                            "{} peer {}: waiting for the first handshake ({waited} s)",
                            i.name, p.name
                        ),
                    ));
                } else {
                    out.push(finding(
                        C,
                        Severity::Breaks,
                        format!(
                            "no handshake on {} with {} ({endpoint}) within {HANDSHAKE_GRACE_SECS} s of apply",
                            i.name, p.name
                        ),
                        "the WAN VPN is down: nothing reaches this host through the gateway, though the plan is applied",
                        fix,
                    ));
                }
                continue;
            }
            let age = cx.now.saturating_sub(hs);
            if age <= SESSION_EXPIRY_SECS {
                out.push(ok(
                    C,
                    format!("{} peer {}: latest handshake {age} s ago", i.name, p.name),
                ));
            } else {
                out.push(finding(
                    C,
                    Severity::Breaks,
                    format!(
                        "{} peer {} ({endpoint}): latest handshake {age} s ago (sessions expire after {SESSION_EXPIRY_SECS} s)",
                        i.name, p.name
                    ),
                    "the WAN VPN's session has expired and no new handshake completes: the tunnel carries nothing",
                    fix,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use std::path::PathBuf;
    use warren_plan::net::Ipv4Cidr;
    use warren_plan::{WgInterface, WgPeer};

    const GW_KEY: &str = "R1dLRVlHV0tFWUdXS0VZR1dLRVlHV0tFWUdXS0VZR1c=";

    fn router_plan() -> Plan {
        let mut p = Plan::empty("router");
        p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        p.sysctls.insert("net.ipv4.conf.wg0.rp_filter".into(), "2".into());
        p.wireguard.push(WgInterface {
            name: "wg0".into(),
            addresses: vec![],
            listen_port: None,
            mtu: 1420,
            peers: vec![WgPeer {
                name: "gateway".into(),
                public_key: PeerKey::Known(GW_KEY.into()),
                endpoint: Some("203.0.113.10:51820".into()),
                allowed_ips: vec![Ipv4Cidr::default_route()],
                persistent_keepalive: Some(25),
            }],
        });
        p.wireguard.push(WgInterface {
            name: "wg1".into(),
            addresses: vec![],
            listen_port: Some(13131),
            mtu: 1340,
            peers: vec![],
        });
        p
    }

    fn cx(plan: &Plan) -> Context<'_> {
        Context {
            plan: Some(plan),
            applied: true,
            issued_at: Some(1_000_000),
            up_since: Some(1_000_000),
            wg_mode: WgMode::Userspace,
            now: 1_000_100,
            router: None,
        }
    }

    fn f(sys: &mut Recorder, path: &str, v: &str) {
        sys.files.insert(PathBuf::from(path), format!("{v}\n"));
    }

    fn r(sys: &mut Recorder, cmd: &str, out: &str) {
        sys.reads.insert(cmd.into(), out.into());
    }

    fn sev(v: &[Finding]) -> Vec<(&str, Severity)> {
        v.iter().map(|f| (f.check.as_str(), f.severity)).collect()
    }

    #[test]
    fn wireguard_modes() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        r(&mut sys, "wg --version", "wireguard-tools v1.0.20210914\n");
        let mut c = cx(&plan);
        let x = wireguard(&sys, &c);
        assert_eq!(x.severity, Severity::Breaks, "{x:?}");
        assert!(x.what.contains("wireguard-go is not on PATH"), "{x:?}");
        r(
            &mut sys,
            "wireguard-go --version",
            "wireguard-go v0.0.20220316\n\nUserspace\n",
        );
        assert_eq!(wireguard(&sys, &c).what, "wireguard-go v0.0.20220316");
        c.wg_mode = WgMode::Kernel;
        let x = wireguard(&sys, &c);
        assert_eq!(x.severity, Severity::Breaks);
        assert!(x.fix.contains("modprobe wireguard"), "{x:?}");
        c.wg_mode = WgMode::Auto;
        assert_eq!(
            wireguard(&sys, &c).what,
            "no kernel module; userspace fallback wireguard-go v0.0.20220316"
        );
        f(&mut sys, "/sys/module/wireguard/version", "1.0.0");
        c.wg_mode = WgMode::Kernel;
        assert_eq!(wireguard(&sys, &c).what, "kernel module 1.0.0 loaded");
        sys.reads.remove("wg --version");
        assert!(wireguard(&sys, &c).what.contains("`wg` tool is not installed"));
    }

    #[test]
    fn netfilter_variants() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        r(&mut sys, "iptables -V", "iptables v1.8.9 (nf_tables)\n");
        r(
            &mut sys,
            "iptables-nft-save ",
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n",
        );
        r(&mut sys, "iptables-legacy-save ", "");
        let mut p = plan.clone();
        p.firewall = Firewall::Nftables(warren_plan::nft::NftTable {
            name: "warren".into(),
            sets: vec![],
            maps: vec![],
            chains: vec![],
        });
        let x = netfilter(&sys, &cx(&p));
        assert_eq!(x.severity, Severity::Breaks, "{x:?}");
        assert!(
            x.what.contains("`nft` is not installed") && x.what.contains("rules in iptables-nft"),
            "{x:?}"
        );
        r(&mut sys, "nft --version", "nftables v1.0.6 (Lester Gooch #5)\n");
        let x = netfilter(&sys, &cx(&p));
        assert_eq!(x.severity, Severity::Ok, "{x:?}");
        assert_eq!(
            x.what,
            "nftables v1.0.6 (Lester Gooch #5); iptables v1.8.9 (nf_tables); rules in iptables-nft"
        );
        r(
            &mut sys,
            "iptables-legacy-save ",
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n",
        );
        let x = netfilter(&sys, &cx(&p));
        assert_eq!(x.severity, Severity::Warn, "{x:?}");
        assert!(x.what.contains("rules in iptables-legacy and iptables-nft"));
        r(
            &mut sys,
            "iptables-legacy-save ",
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [3:4]\nCOMMIT\n",
        );
        assert!(!iptables::holds_content(&sys, Variant::Legacy));
    }

    #[test]
    fn ip_forward_before_and_after_apply() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        f(&mut sys, "/proc/sys/net/ipv4/ip_forward", "0");
        let mut c = cx(&plan);
        let x = ip_forward(&sys, &c);
        assert_eq!(x.severity, Severity::Breaks);
        assert!(x.fix.starts_with("sysctl -w net.ipv4.ip_forward=1"), "{x:?}");
        c.applied = false;
        assert_eq!(ip_forward(&sys, &c).severity, Severity::Ok);
        c.plan = None;
        assert_eq!(
            ip_forward(&sys, &c).what,
            "net.ipv4.ip_forward = 0 (no plan runs here yet)"
        );
        f(&mut sys, "/proc/sys/net/ipv4/ip_forward", "1");
        assert_eq!(ip_forward(&sys, &cx(&plan)).severity, Severity::Ok);
    }

    #[test]
    fn rp_filter_is_the_max_of_all_and_the_interface() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        f(&mut sys, "/proc/sys/net/ipv4/conf/all/rp_filter", "1");
        f(&mut sys, "/proc/sys/net/ipv4/conf/default/rp_filter", "1");
        f(&mut sys, "/proc/sys/net/ipv4/conf/wg0/rp_filter", "2");
        f(&mut sys, "/proc/sys/net/ipv4/conf/wg1/rp_filter", "1");
        let v = rp_filter(&sys, &cx(&plan));
        assert_eq!(
            sev(&v),
            [("rp-filter", Severity::Ok), ("rp-filter", Severity::Ok)]
        );
        assert_eq!(v[0].what, "rp_filter on wg0: effective 2 = max(all 1, wg0 2)");
        // wg0 drifted to strict: strict wins over all = 0 too.
        f(&mut sys, "/proc/sys/net/ipv4/conf/all/rp_filter", "0");
        f(&mut sys, "/proc/sys/net/ipv4/conf/wg0/rp_filter", "1");
        let v = rp_filter(&sys, &cx(&plan));
        assert_eq!(v[0].severity, Severity::Breaks, "{v:?}");
        assert!(v[0].fix.starts_with("sysctl -w net.ipv4.conf.wg0.rp_filter=2"));
        // Not created yet: Warren sets the planned value.
        sys.files
            .remove(&PathBuf::from("/proc/sys/net/ipv4/conf/wg0/rp_filter"));
        f(&mut sys, "/proc/sys/net/ipv4/conf/all/rp_filter", "1");
        let v = rp_filter(&sys, &cx(&plan));
        assert_eq!(
            v[0].what,
            "rp_filter on wg0: effective 2 = max(all 1, wg0 (planned) 2)"
        );
        assert_eq!(v[0].severity, Severity::Ok);
    }

    #[test]
    fn ss_lines_parse() {
        let out = "UNCONN 0      0            0.0.0.0:13131      0.0.0.0:*    users:((\"python3\",pid=412,fd=3))\n\
                   UNCONN 0      0               [::]:51820         [::]:*\n\
                   UNCONN 0      0                  *:13131            *:*    users:((\"wireguard-go\",pid=9,fd=7),(\"x\",pid=10,fd=1))\n";
        let v = parse_ss(out);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].port, 13131);
        assert_eq!(v[0].procs, ["python3[412]"]);
        assert_eq!(v[1].port, 51820);
        assert!(v[1].procs.is_empty());
        assert_eq!(v[2].procs, ["wireguard-go[9]", "x[10]"]);
    }

    #[test]
    fn listen_port_owners() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        r(&mut sys, "wg show all listen-port", "wg1\t13131\n");
        r(
            &mut sys,
            "ss -H -ulpn",
            "UNCONN 0 0 *:13131 *:* users:((\"wireguard-go\",pid=9,fd=7))\n",
        );
        assert_eq!(listen_ports(&sys, &cx(&plan))[0].severity, Severity::Ok);
        r(
            &mut sys,
            "ss -H -ulpn",
            "UNCONN 0 0 0.0.0.0:13131 0.0.0.0:* users:((\"socat\",pid=77,fd=5))\n",
        );
        r(&mut sys, "wg show all listen-port", "");
        let x = &listen_ports(&sys, &cx(&plan))[0];
        assert_eq!(x.severity, Severity::Breaks);
        assert_eq!(
            x.what,
            "udp/13131 (wg1's port) is taken by process socat[77] on 0.0.0.0:13131"
        );
        // A wg-quick interface with the same port (kernel socket).
        r(&mut sys, "ss -H -ulpn", "UNCONN 0 0 0.0.0.0:13131 0.0.0.0:*\n");
        r(&mut sys, "wg show all listen-port", "wg9\t13131\n");
        let x = &listen_ports(&sys, &cx(&plan))[0];
        assert_eq!(
            x.what,
            "udp/13131 (wg1's port) is taken by WireGuard interface wg9"
        );
        // Warren's own kernel interface.
        r(&mut sys, "wg show all listen-port", "wg1\t13131\n");
        assert_eq!(listen_ports(&sys, &cx(&plan))[0].severity, Severity::Ok);
    }

    #[test]
    fn uplink_mtu_from_the_route_to_the_peer() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        r(
            &mut sys,
            "ip -j -4 route get 203.0.113.10",
            r#"[{"dst":"203.0.113.10","gateway":"100.64.0.1","dev":"eth0","prefsrc":"100.64.0.2","flags":[],"uid":0,"cache":[]}]"#,
        );
        f(&mut sys, "/sys/class/net/eth0/mtu", "1500");
        assert_eq!(uplink_mtu(&sys, &cx(&plan)).severity, Severity::Ok);
        f(&mut sys, "/sys/class/net/eth0/mtu", "1492");
        let x = uplink_mtu(&sys, &cx(&plan));
        assert_eq!(x.severity, Severity::Warn, "{x:?}");
        f(&mut sys, "/sys/class/net/eth0/mtu", "1400");
        let x = uplink_mtu(&sys, &cx(&plan));
        assert_eq!(x.severity, Severity::Breaks, "{x:?}");
        assert!(x.fix.starts_with("set `path_mtu: 1400`"), "{x:?}");
        // The listening side: the default route.
        let mut gw = plan.clone();
        gw.wireguard[0].peers[0].endpoint = None;
        r(
            &mut sys,
            "ip -j -4 route show default",
            r#"[{"dst":"default","gateway":"203.0.113.1","dev":"enp0s6","flags":[]}]"#,
        );
        f(&mut sys, "/sys/class/net/enp0s6/mtu", "9000");
        assert!(uplink_mtu(&sys, &cx(&gw))
            .what
            .starts_with("uplink enp0s6 MTU 9000 >= path MTU 1500"));
    }

    #[test]
    fn clock_behind_the_signing_time() {
        let plan = router_plan();
        let mut c = cx(&plan);
        assert_eq!(clock(&c).severity, Severity::Ok);
        c.now = 1000;
        let x = clock(&c);
        assert_eq!(x.severity, Severity::Breaks);
        assert!(x.what.contains("999000 s behind"), "{x:?}");
        c.issued_at = None;
        assert_eq!(clock(&c).severity, Severity::Ok);
    }

    #[test]
    fn conntrack_fill() {
        let mut sys = Recorder::default();
        assert_eq!(conntrack(&sys).what, "conntrack not loaded");
        f(&mut sys, "/proc/sys/net/netfilter/nf_conntrack_max", "1000");
        for (count, want) in [
            ("10", Severity::Ok),
            ("800", Severity::Warn),
            ("950", Severity::Breaks),
        ] {
            f(&mut sys, "/proc/sys/net/netfilter/nf_conntrack_count", count);
            assert_eq!(conntrack(&sys).severity, want, "{count}");
        }
    }

    #[test]
    fn wan_handshake() {
        let plan = router_plan();
        let mut sys = Recorder::default();
        let dump = |hs: u64| {
            format!("PRIV\tPUB\t0\toff\n{GW_KEY}\t(none)\t203.0.113.10:51820\t0.0.0.0/0\t{hs}\t0\t0\t25\n")
        };
        r(&mut sys, "wg show wg0 dump", &dump(0));
        let mut c = cx(&plan);
        c.now = c.up_since.unwrap() + 5;
        let v = handshakes(&sys, &c);
        assert_eq!(sev(&v), [("wan-handshake", Severity::Ok)]);
        assert!(v[0].what.contains("waiting for the first handshake"));
        c.now += HANDSHAKE_GRACE_SECS;
        let v = handshakes(&sys, &c);
        assert_eq!(v[0].severity, Severity::Breaks);
        assert_eq!(
            v[0].what,
            "no handshake on wg0 with gateway (203.0.113.10:51820) within 20 s of apply"
        );
        assert!(v[0].fix.starts_with("something drops udp/51820"), "{v:?}");
        r(&mut sys, "wg show wg0 dump", &dump(c.now - 30));
        assert_eq!(handshakes(&sys, &c)[0].severity, Severity::Ok);
        r(&mut sys, "wg show wg0 dump", &dump(c.now - 400));
        let v = handshakes(&sys, &c);
        assert_eq!(v[0].severity, Severity::Breaks);
        assert!(v[0].what.contains("latest handshake 400 s ago"));
        // Not applied: nothing to check.
        c.applied = false;
        assert!(handshakes(&sys, &c).is_empty());
    }

    #[test]
    fn text_output_shows_why_and_fix_of_problems_only() {
        let v = vec![
            ok("a", "fine".into()),
            finding("b", Severity::Breaks, "bad".into(), "because", "do this".into()),
        ];
        assert_eq!(
            render_text(&v),
            "ok     a: fine\nBREAKS b: bad\n         why: because\n         fix: do this\n2 checks: 1 breaks, 0 warnings\n"
        );
        assert!(breaks(&v));
        assert!(!breaks(&v[..1]));
    }

    fn mikrotik_plan() -> Plan {
        use warren_plan::ros::{Place, RosAccess, RosConfig, RosEntry};
        let entry = |menu: &str, tag: &str, props: &[(&str, &str)], place| RosEntry {
            menu: menu.into(),
            tag: tag.into(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            place,
        };
        Plan {
            platform: warren_plan::Platform::Routeros,
            routeros: Some(RosConfig {
                access: RosAccess {
                    address: "192.168.16.1".parse().unwrap(),
                    port: 443,
                    user: "warren".into(),
                    fingerprint: "ab".repeat(32),
                },
                entries: vec![
                    entry(
                        "interface/wireguard/peers",
                        "peer/wg0/gateway",
                        &[("interface", "wg0"), ("endpoint-address", "203.0.113.10")],
                        Place::InOrder,
                    ),
                    entry(
                        "ip/firewall/filter",
                        "jump/filter-forward",
                        &[
                            ("chain", "forward"),
                            ("action", "jump"),
                            ("jump-target", "warren-forward"),
                        ],
                        Place::Top,
                    ),
                ],
            }),
            ..Plan::empty("router")
        }
    }

    fn row(id: &str, props: &[(&str, &str)]) -> warren_plan::ros::RosRow {
        warren_plan::ros::RosRow {
            id: id.into(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn router_state(filter: Vec<warren_plan::ros::RosRow>, handshake: &str) -> warren_plan::RosState {
        let mut st = warren_plan::RosState::default();
        st.menus.insert("ip/firewall/filter".into(), filter);
        st.menus.insert(
            "interface/wireguard/peers".into(),
            vec![row(
                "*1",
                &[
                    ("comment", "warren:peer/wg0/gateway"),
                    ("last-handshake", handshake),
                ],
            )],
        );
        st
    }

    #[test]
    fn a_router_jump_below_fasttrack_or_missing_breaks_and_an_unreachable_api_breaks() {
        let plan = mikrotik_plan();
        let dummy = row(
            "*1",
            &[
                ("chain", "forward"),
                ("dynamic", "true"),
                ("action", "passthrough"),
            ],
        );
        let jump = row(
            "*A",
            &[("chain", "forward"), ("comment", "warren:jump/filter-forward")],
        );
        let fast = row(
            "*3",
            &[
                ("chain", "forward"),
                ("action", "fasttrack-connection"),
                ("comment", "defconf: fasttrack"),
            ],
        );
        let good = Ok(router_state(
            vec![dummy.clone(), jump.clone(), fast.clone()],
            "1m5s",
        ));
        let v = router_checks(&plan, &good);
        assert!(!breaks(&v), "{v:#?}");
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v[2].what.contains("65 s ago"), "{v:#?}");

        let moved = Ok(router_state(vec![dummy.clone(), fast.clone(), jump], "10m"));
        let v = router_checks(&plan, &moved);
        let j = v.iter().find(|f| f.check == "routeros-jumps").unwrap();
        assert_eq!(j.severity, Severity::Breaks);
        assert!(
            j.what
                .contains("below the router's own rule 'defconf: fasttrack'"),
            "{}",
            j.what
        );
        let h = v.iter().find(|f| f.check == "routeros-wan-handshake").unwrap();
        assert_eq!(h.severity, Severity::Warn);

        let missing = Ok(router_state(vec![dummy, fast], "5s"));
        let v = router_checks(&plan, &missing);
        assert!(
            v.iter()
                .any(|f| f.severity == Severity::Breaks && f.what.ends_with("is missing")),
            "{v:#?}"
        );

        let v = router_checks(&plan, &Err("connection timed out".into()));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].severity, Severity::Breaks);
        assert!(
            v[0].what
                .contains("192.168.16.1:443 cannot be read: connection timed out"),
            "{}",
            v[0].what
        );

        // Through `run`, after the line that says the Linux checks are skipped.
        let r = Ok(router_state(vec![], "5s"));
        let cx = Context {
            plan: Some(&plan),
            applied: true,
            issued_at: None,
            up_since: None,
            wg_mode: WgMode::Userspace,
            now: 0,
            router: Some(&r),
        };
        let v = run(&crate::sys::Recorder::default(), &cx);
        assert_eq!(v[0].check, "routeros");
        assert!(breaks(&v), "the jump is missing: {v:#?}");
    }
}
