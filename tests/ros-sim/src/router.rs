//! The router: the configuration database with RouterOS's semantics (ids,
//! order, normalisation, references, dynamic rows), a controllable clock,
//! the scheduler and the log. REST and scripts both go through here.

use crate::db::{Db, Row};
use crate::error::RosError;
use crate::schema::{self, Menu, BOOLEANS, FLAGS};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Arguments of one command, name -> value (strings, as RouterOS takes them).
pub type Args = BTreeMap<String, String>;

/// Seconds since the Unix epoch that the simulator's clock shows at `now = 0`
/// (2026-01-01 00:00:00 UTC).
pub const EPOCH: u64 = 1_767_225_600;

const FIREWALL: [&str; 3] = ["ip/firewall/filter", "ip/firewall/nat", "ip/firewall/mangle"];
const DEFAULT_POLICY: &str = "ftp,reboot,read,write,policy,test,password,sniff,sensitive,romon";

/// The simulated router.
#[derive(Debug, Default)]
pub struct Router {
    /// The configuration.
    pub db: Db,
    /// Virtual seconds since start.
    pub now: u64,
    /// `:log` lines and script errors, oldest first.
    pub log: Vec<String>,
    /// Bumped by every successful change (REST, script, scheduler).
    pub generation: u64,
    counters: BTreeMap<String, u64>,
    /// Scheduler `.id` -> virtual time it fires next.
    due: BTreeMap<String, u64>,
    /// Depth of nested script runs (guards against a script running itself).
    depth: u32,
}

fn menu(path: &str) -> Result<&'static Menu, RosError> {
    schema::menu_of(path).ok_or_else(|| RosError::no_such(path.rsplit('/').next().unwrap_or(path)))
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parse a RouterOS duration (`25`, `25s`, `5m`, `1h30m`, `1d`, `2w`,
/// `00:05:00`) into seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return None;
        }
        let mut total = 0u64;
        for p in parts {
            total = total.checked_mul(60)?.checked_add(p.parse::<u64>().ok()?)?;
        }
        return Some(total);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse::<u64>().ok()?)?;
    }
    Some(total)
}

/// A duration as RouterOS prints it (`5m`, `1h30m`, `25s`, `0s`).
pub fn format_duration(mut secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")] {
        if secs >= unit {
            out.push_str(&format!("{}{name}", secs / unit));
            secs %= unit;
        }
    }
    out
}

/// Virtual time as RouterOS prints a timestamp (`2026-01-01 00:05:00`).
pub fn timestamp(now: u64) -> String {
    let t = EPOCH + now;
    let (days, rem) = (t / 86_400, t % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `a.b.c.d/len` -> (address, prefix length); a bare address is `/32`.
pub fn parse_prefix(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let len: u8 = l.parse().ok()?;
    (len <= 32).then_some(())?;
    Some((a.parse().ok()?, len))
}

fn network_of(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Ipv4Addr::from(u32::from(a) & mask)
}

/// A WireGuard key pair from 32 random bytes: (private, public), base64.
pub fn wg_keypair() -> Result<(String, String), RosError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RosError::bad(format!("failure: no randomness: {e}")))?;
    let secret = x25519_dalek::StaticSecret::from(bytes);
    Ok((
        b64(&secret.to_bytes()),
        b64(x25519_dalek::PublicKey::from(&secret).as_bytes()),
    ))
}

/// The public key of a base64 WireGuard private key.
pub fn wg_public(private: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(private).ok()?;
    let bytes: [u8; 32] = raw.try_into().ok()?;
    let secret = x25519_dalek::StaticSecret::from(bytes);
    Some(b64(x25519_dalek::PublicKey::from(&secret).as_bytes()))
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn strip_not(v: &str) -> &str {
    v.strip_prefix('!').unwrap_or(v)
}

fn is_id(s: &str) -> bool {
    s.strip_prefix('*')
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Router {
    /// An empty router with RouterOS's built-in rows: the dynamic `main`
    /// routing table, the built-in interface lists, the services, the
    /// identity and resource singletons, and one `interface` row per name.
    pub fn new(interfaces: &[String]) -> Self {
        let mut r = Router::default();
        r.seed(
            "routing/table",
            true,
            &[
                ("name", "main"),
                ("fib", ""),
                ("disabled", "false"),
                ("invalid", "false"),
            ],
        );
        for name in ["all", "none", "dynamic", "static"] {
            r.seed(
                "interface/list",
                true,
                &[
                    ("name", name),
                    ("builtin", "true"),
                    ("include", ""),
                    ("exclude", ""),
                ],
            );
        }
        for name in interfaces {
            let kind = if name.starts_with("br") || name.contains("bridge") {
                "bridge"
            } else {
                "ether"
            };
            r.seed(
                "interface",
                false,
                &[
                    ("name", name),
                    ("type", kind),
                    ("mtu", "1500"),
                    ("actual-mtu", "1500"),
                    ("running", "true"),
                    ("disabled", "false"),
                ],
            );
        }
        for (name, port, disabled) in [
            ("telnet", "23", "true"),
            ("ftp", "21", "true"),
            ("www", "80", "true"),
            ("ssh", "22", "false"),
            ("www-ssl", "443", "false"),
            ("api", "8728", "true"),
            ("winbox", "8291", "false"),
            ("api-ssl", "8729", "true"),
        ] {
            let cert = if name == "www-ssl" || name == "api-ssl" {
                "warren-sim"
            } else {
                ""
            };
            let mut p = props(&[
                ("name", name),
                ("port", port),
                ("disabled", disabled),
                ("address", ""),
                ("vrf", "main"),
                ("max-sessions", "20"),
                ("invalid", "false"),
                ("dynamic", "false"),
            ]);
            if !cert.is_empty() || name.ends_with("-ssl") {
                p.insert("certificate".into(), cert.into());
                p.insert("tls-version".into(), "any".into());
            }
            let id = r.alloc_id("ip/service", false);
            r.db.rows_mut("ip/service").push(Row::new(id, p));
        }
        r.db.rows_mut("system/identity")
            .push(Row::new("*0", props(&[("name", "MikroTik")])));
        r.db.rows_mut("system/resource").push(Row::new(
            "*0",
            props(&[
                ("version", "7.24 (stable)"),
                ("board-name", "CHR"),
                ("architecture-name", "x86_64"),
                ("platform", "MikroTik"),
                ("cpu-count", "1"),
                ("uptime", "0s"),
            ]),
        ));
        r.refresh();
        r.generation = 0;
        r
    }

    /// Insert a row without validation (built-in and default rows).
    pub fn seed(&mut self, menu: &str, dynamic: bool, pairs: &[(&str, &str)]) -> String {
        let mut p = props(pairs);
        p.insert("dynamic".into(), if dynamic { "true" } else { "false" }.into());
        let id = self.alloc_id(menu, dynamic);
        self.db.rows_mut(menu).push(Row::new(id.clone(), p));
        id
    }

    /// Append a line to the router's log.
    pub fn log_line(&mut self, topic: &str, msg: &str) {
        self.log.push(format!("{} {topic} {msg}", timestamp(self.now)));
    }

    fn alloc_id(&mut self, menu: &str, dynamic: bool) -> String {
        let (key, start) = match (menu, dynamic) {
            ("ip/route", false) => ("ip/route".to_string(), 0x8000_0001),
            ("ip/route", true) => ("ip/route#connected".to_string(), 0x2018_0001),
            ("system/scheduler" | "ip/service", _) => (menu.to_string(), 0),
            _ => (menu.to_string(), 1),
        };
        let c = self.counters.entry(key).or_insert(start);
        let id = format!("*{:X}", *c);
        *c += 1;
        id
    }

    /// Interface names (ethernet, bridge, WireGuard).
    pub fn interface_names(&self) -> BTreeSet<String> {
        self.db
            .rows("interface")
            .iter()
            .filter_map(|r| r.get("name").map(str::to_string))
            .collect()
    }

    /// Resolve one item of `numbers`: an `.id`, a console position, a name
    /// (named menus) or a comment (first match).
    pub fn resolve(&self, path: &str, token: &str) -> Result<String, RosError> {
        let rows = self.db.rows(path);
        let token = token.trim();
        if is_id(token) {
            return rows
                .iter()
                .find(|r| r.id == token)
                .map(|r| r.id.clone())
                .ok_or_else(RosError::not_found);
        }
        if let Ok(n) = token.parse::<usize>() {
            return rows.get(n).map(|r| r.id.clone()).ok_or_else(RosError::not_found);
        }
        rows.iter()
            .find(|r| r.get("name") == Some(token))
            .or_else(|| rows.iter().find(|r| r.get("comment") == Some(token)))
            .map(|r| r.id.clone())
            .ok_or_else(RosError::not_found)
    }

    /// Resolve a comma list of `numbers`.
    pub fn resolve_list(&self, path: &str, numbers: &str) -> Result<Vec<String>, RosError> {
        let mut out = Vec::new();
        for t in numbers.split(',').filter(|t| !t.trim().is_empty()) {
            let id = self.resolve(path, t)?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn check_args(m: &Menu, command: &str, args: &Args) -> Result<(), RosError> {
        let allowed = m.args_of(command);
        for k in args.keys() {
            let bare = k.strip_prefix('!').unwrap_or(k);
            if !allowed.contains(&bare) || bare == "numbers" {
                return Err(RosError::unknown_parameter(k));
            }
        }
        Ok(())
    }

    /// A value as RouterOS stores and reads it back (`None`: absent).
    fn normalise(&self, path: &str, key: &str, value: &str) -> Result<Option<String>, RosError> {
        let invalid = || RosError::bad(format!("invalid value for argument {key}"));
        if key == "comment" {
            return Ok((!value.is_empty()).then(|| value.to_string()));
        }
        if BOOLEANS.contains(&key) {
            return match value {
                "yes" | "true" => Ok(Some("true".into())),
                "no" | "false" => Ok(Some("false".into())),
                _ => Err(invalid()),
            };
        }
        if FLAGS.contains(&key) {
            return match value {
                "" | "yes" | "true" => Ok(Some(String::new())),
                "no" | "false" => Ok(None),
                _ => Err(invalid()),
            };
        }
        match (path, key) {
            ("ip/address", "address") | ("ip/route", "dst-address") => {
                let (a, l) = parse_prefix(value).ok_or_else(invalid)?;
                let a = if path == "ip/route" { network_of(a, l) } else { a };
                Ok(Some(format!("{a}/{l}")))
            }
            ("interface/wireguard/peers", "allowed-address") => {
                let mut out = Vec::new();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (a, l) = parse_prefix(item).ok_or_else(invalid)?;
                    out.push(format!("{a}/{l}"));
                }
                Ok(Some(out.join(",")))
            }
            (_, "interval" | "persistent-keepalive" | "timeout") => {
                Ok(Some(format_duration(parse_duration(value).ok_or_else(invalid)?)))
            }
            (_, "mtu" | "listen-port" | "endpoint-port" | "distance" | "port") => {
                value.parse::<u32>().map_err(|_| invalid())?;
                Ok(Some(value.to_string()))
            }
            _ => Ok(Some(value.to_string())),
        }
    }

    /// Check the references and uniqueness of a row about to be stored.
    fn validate(
        &self,
        path: &str,
        p: &BTreeMap<String, String>,
        self_id: Option<&str>,
    ) -> Result<(), RosError> {
        let missing = |k: &str| RosError::bad(format!("missing value(s) of argument(s) {k}"));
        let ifaces = self.interface_names();
        let lists: BTreeSet<&str> = self.db.names("interface/list").into_iter().collect();
        let tables: BTreeSet<&str> = self.db.names("routing/table").into_iter().collect();
        let others = |menu: &str| -> Vec<&Row> {
            self.db
                .rows(menu)
                .iter()
                .filter(|r| Some(r.id.as_str()) != self_id)
                .collect()
        };
        let dup_name = |menu: &str, msg: &str| -> Result<(), RosError> {
            if let Some(n) = p.get("name") {
                if others(menu).iter().any(|r| r.get("name") == Some(n)) {
                    return Err(RosError::bad(msg));
                }
            }
            Ok(())
        };
        let need_iface = |k: &str| -> Result<(), RosError> {
            match p.get(k) {
                Some(v) if !v.is_empty() && !ifaces.contains(strip_not(v)) => Err(RosError::no_match(k)),
                _ => Ok(()),
            }
        };
        match path {
            "interface/wireguard" => {
                if let Some(n) = p.get("name") {
                    let own = self_id
                        .and_then(|id| self.db.get(path, id))
                        .and_then(|r| r.get("name"));
                    if ifaces.contains(n.as_str()) && own != Some(n.as_str()) {
                        return Err(RosError::bad("failure: already have interface with such name"));
                    }
                }
                if let Some(k) = p.get("private-key") {
                    wg_public(k).ok_or_else(|| RosError::bad("invalid value for argument private-key"))?;
                }
            }
            "interface/wireguard/peers" => {
                let iface = p.get("interface").ok_or_else(|| missing("interface"))?;
                if !self.db.names("interface/wireguard").contains(&iface.as_str()) {
                    return Err(RosError::no_match("interface"));
                }
                if let Some(k) = p.get("public-key") {
                    use base64::Engine as _;
                    let ok = base64::engine::general_purpose::STANDARD
                        .decode(k)
                        .is_ok_and(|b| b.len() == 32);
                    if !ok {
                        return Err(RosError::bad("invalid value for argument public-key"));
                    }
                }
            }
            "ip/address" => {
                p.get("address").ok_or_else(|| missing("address"))?;
                p.get("interface").ok_or_else(|| missing("interface"))?;
                need_iface("interface")?;
            }
            "ip/route" => {
                if let Some(t) = p.get("routing-table") {
                    if !tables.contains(t.as_str()) {
                        return Err(RosError::no_match("routing-table"));
                    }
                }
                if let Some(g) = p.get("gateway") {
                    for gw in g.split(',').filter(|s| !s.is_empty()) {
                        let base = gw.split('@').next().unwrap_or(gw);
                        let (ip, dev) = match base.split_once('%') {
                            Some((ip, dev)) => (ip, Some(dev)),
                            None => (base, None),
                        };
                        let ok = match (ip.parse::<Ipv4Addr>(), dev) {
                            (Ok(_), None) => true,
                            (Ok(_), Some(d)) => ifaces.contains(d),
                            (Err(_), _) => ifaces.contains(base),
                        };
                        if !ok {
                            return Err(RosError::bad("invalid or unexpected argument base"));
                        }
                    }
                }
            }
            "routing/rule" => {
                if let Some(t) = p.get("table") {
                    if !tables.contains(t.as_str()) {
                        return Err(RosError::no_match("table"));
                    }
                }
                need_iface("interface")?;
            }
            "routing/table" => {
                p.get("name").ok_or_else(|| missing("name"))?;
                dup_name(path, "failure: already have such entry")?;
            }
            "interface/list" => {
                p.get("name").ok_or_else(|| missing("name"))?;
                dup_name(path, "failure: already have such entry")?;
            }
            "interface/list/member" => {
                let l = p.get("list").ok_or_else(|| missing("list"))?;
                if !lists.contains(l.as_str()) {
                    return Err(RosError::no_match("list"));
                }
                p.get("interface").ok_or_else(|| missing("interface"))?;
                need_iface("interface")?;
            }
            "ip/firewall/address-list" => {
                let list = p.get("list").ok_or_else(|| missing("list"))?;
                let addr = p.get("address").ok_or_else(|| missing("address"))?;
                let bare = |a: &str| a.strip_suffix("/32").unwrap_or(a).to_string();
                if p.get("disabled").map(String::as_str) != Some("true")
                    && others(path).iter().any(|r| {
                        r.enabled()
                            && r.get("list") == Some(list)
                            && r.get("address").map(bare) == Some(bare(addr))
                    })
                {
                    return Err(RosError::bad("failure: already have such entry"));
                }
            }
            "system/script" | "system/scheduler" => {
                p.get("name").ok_or_else(|| missing("name"))?;
                dup_name(path, "failure: already have such entry")?;
            }
            _ if FIREWALL.contains(&path) => {
                p.get("chain").ok_or_else(|| missing("chain"))?;
                need_iface("in-interface")?;
                need_iface("out-interface")?;
                for k in ["in-interface-list", "out-interface-list"] {
                    if let Some(v) = p.get(k) {
                        if !lists.contains(strip_not(v)) {
                            return Err(RosError::no_match(k));
                        }
                    }
                }
                if p.get("action").map(String::as_str) == Some("jump") && !p.contains_key("jump-target") {
                    return Err(RosError::bad("missing value(s) of argument(s) jump-target"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn defaults(&mut self, path: &str, p: &mut BTreeMap<String, String>) -> Result<(), RosError> {
        let mut def = |k: &str, v: &str| {
            p.entry(k.to_string()).or_insert_with(|| v.to_string());
        };
        match path {
            "routing/table" => {
                def("disabled", "false");
                def("invalid", "false");
            }
            "interface/wireguard" => {
                def("disabled", "false");
                def("mtu", "1420");
                def("listen-port", "13231");
                let n = self.db.rows(path).len() + 1;
                def("name", &format!("wireguard{n}"));
            }
            "interface/wireguard/peers" => {
                def("disabled", "false");
                def("endpoint-address", "");
                def("endpoint-port", "0");
                def("allowed-address", "");
                def("responder", "false");
                def("persistent-keepalive", "0s");
                def("preshared-key", "");
                let n = self.db.rows(path).len() + 1;
                def("name", &format!("peer{n}"));
            }
            "ip/address" => {
                def("disabled", "false");
                def("invalid", "false");
                def("slave", "false");
            }
            "ip/route" => {
                def("dst-address", "0.0.0.0/0");
                def("distance", "1");
                def("scope", "30");
                def("target-scope", "10");
                def("routing-table", "main");
                def("static", "true");
            }
            "routing/rule" => {
                def("action", "lookup");
                def("disabled", "false");
                def("invalid", "false");
            }
            "interface/list" => {
                def("builtin", "false");
                def("include", "");
                def("exclude", "");
            }
            "interface/list/member" => def("disabled", "false"),
            "ip/firewall/address-list" => {
                def("disabled", "false");
                def("creation-time", &timestamp(self.now));
                let dynamic = p.contains_key("timeout");
                p.insert("dynamic".into(), dynamic.to_string());
            }
            "system/script" => {
                def("owner", "admin");
                def("policy", DEFAULT_POLICY);
                def("source", "");
                def("dont-require-permissions", "false");
                def("run-count", "0");
                def("invalid", "false");
            }
            "system/scheduler" => {
                def("owner", "admin");
                def("policy", DEFAULT_POLICY);
                def("interval", "0s");
                def("on-event", "");
                def("disabled", "false");
                def("run-count", "0");
                let ts = timestamp(self.now);
                let (date, time) = ts.split_once(' ').unwrap_or((&ts, ""));
                def("start-date", date);
                def("start-time", time);
            }
            p2 if FIREWALL.contains(&p2) => {
                def("action", "accept");
                def("bytes", "0");
                def("packets", "0");
            }
            _ => {}
        }
        if path != "system/scheduler" && !path.starts_with("system/") && path != "ip/firewall/address-list" {
            p.entry("dynamic".into()).or_insert_with(|| "false".into());
        }
        if path == "interface/wireguard" && !p.contains_key("private-key") {
            let (private, _) = wg_keypair()?;
            p.insert("private-key".into(), private);
        }
        if path == "interface/wireguard" {
            if let Some(public) = p.get("private-key").and_then(|k| wg_public(k)) {
                p.insert("public-key".into(), public);
            }
        }
        Ok(())
    }

    /// `add`: create a row and return its `.id`.
    pub fn add(&mut self, path: &str, args: &Args) -> Result<String, RosError> {
        let m = menu(path)?;
        if !m.has("add") {
            return Err(RosError::no_such("add"));
        }
        Self::check_args(m, "add", args)?;
        let mut p = BTreeMap::new();
        let mut before = None;
        for (k, v) in args {
            if k == "place-before" {
                before = Some(v.clone());
            } else if let Some(bare) = k.strip_prefix('!') {
                p.remove(bare);
            } else if let Some(v) = self.normalise(path, k, v)? {
                p.insert(k.clone(), v);
            }
        }
        self.defaults(path, &mut p)?;
        self.validate(path, &p, None)?;
        let pos = match before {
            Some(b) => {
                let id = self
                    .resolve(path, &b)
                    .map_err(|_| RosError::bad("no such item"))?;
                self.db.index_of(path, &id)
            }
            None => None,
        };
        let id = self.alloc_id(path, false);
        let row = Row::new(id.clone(), p);
        if path == "interface/wireguard" {
            self.link_wg(&row);
        }
        let rows = self.db.rows_mut(path);
        match pos {
            Some(i) => rows.insert(i, row),
            None => rows.push(row),
        }
        self.changed();
        Ok(id)
    }

    /// `set`: change a row (by `.id`, name, position or comment).
    pub fn set(&mut self, path: &str, numbers: &str, args: &Args) -> Result<(), RosError> {
        let m = menu(path)?;
        if !m.has("set") {
            return Err(RosError::no_such("set"));
        }
        Self::check_args(m, "set", args)?;
        let ids = if m.singleton {
            self.db.rows(path).iter().map(|r| r.id.clone()).collect()
        } else {
            self.resolve_list(path, numbers)?
        };
        if ids.is_empty() && !m.singleton {
            return Err(RosError::bad("missing =.id="));
        }
        // Validate every row first, then write: a refused set changes nothing.
        let mut updates = Vec::new();
        for id in &ids {
            let row = self.db.get(path, id).ok_or_else(RosError::not_found)?;
            if row.dynamic() {
                return Err(RosError::bad("failure: can not change dynamic entry"));
            }
            let mut p = row.props.clone();
            for (k, v) in args {
                if let Some(bare) = k.strip_prefix('!') {
                    p.remove(bare);
                } else {
                    match self.normalise(path, k, v)? {
                        Some(v) => p.insert(k.clone(), v),
                        None => p.remove(k),
                    };
                }
            }
            if path == "interface/wireguard" && args.contains_key("private-key") {
                if let Some(public) = p.get("private-key").and_then(|k| wg_public(k)) {
                    p.insert("public-key".into(), public);
                }
            }
            if path == "ip/firewall/address-list" {
                p.insert("dynamic".into(), p.contains_key("timeout").to_string());
            }
            self.validate(path, &p, Some(id))?;
            updates.push((id.clone(), row.props.get("name").cloned(), p));
        }
        for (id, old_name, p) in updates {
            let new_name = p.get("name").cloned();
            if path == "system/scheduler"
                && (args.contains_key("interval") || args.contains_key("start-time"))
            {
                self.due.remove(&id);
            }
            if let Some(i) = self.db.index_of(path, &id) {
                self.db.rows_mut(path)[i].props = p;
            }
            if path == "interface/wireguard" {
                if let (Some(o), Some(n)) = (old_name, new_name) {
                    if o != n {
                        self.rename_interface(&o, &n);
                    }
                }
            }
        }
        self.changed();
        Ok(())
    }

    /// `remove` (one or more rows).
    pub fn remove(&mut self, path: &str, numbers: &str) -> Result<(), RosError> {
        let m = menu(path)?;
        if path == "interface" {
            return Err(RosError {
                status: 406,
                detail: Some("no such command or directory (remove)".into()),
            });
        }
        if !m.has("remove") {
            return Err(RosError::no_such("remove"));
        }
        let ids = self.resolve_list(path, numbers)?;
        if ids.is_empty() {
            return Err(RosError::bad("missing =.id="));
        }
        for id in &ids {
            if self.db.get(path, id).is_some_and(Row::dynamic) {
                return Err(RosError::bad("failure: can not remove dynamic entry"));
            }
        }
        for id in ids {
            let Some(i) = self.db.index_of(path, &id) else {
                continue;
            };
            let row = self.db.rows_mut(path).remove(i);
            self.due.remove(&id);
            if let Some(name) = row.get("name") {
                match path {
                    "interface/wireguard" => {
                        let if_id = self.db.by_name("interface", name).map(|r| r.id.clone());
                        self.db
                            .rows_mut("interface")
                            .retain(|r| r.get("name") != Some(name));
                        if let Some(if_id) = if_id {
                            self.dangle(&["interface", "in-interface", "out-interface"], name, &if_id);
                        }
                    }
                    "routing/table" => self.dangle(&["routing-table", "table"], name, &row.id),
                    "interface/list" => self.dangle(
                        &["list", "in-interface-list", "out-interface-list"],
                        name,
                        &row.id,
                    ),
                    _ => {}
                }
            }
        }
        self.changed();
        Ok(())
    }

    /// `enable` / `disable`.
    pub fn enable(&mut self, path: &str, numbers: &str, on: bool) -> Result<(), RosError> {
        let mut args = Args::new();
        args.insert("disabled".into(), if on { "no" } else { "yes" }.into());
        self.set(path, numbers, &args)
    }

    /// `move numbers=<ids> destination=<id>`, with RouterOS's probed
    /// behaviour (see rest-behaviour.md): the rows go, in the order given,
    /// immediately before `destination`; a missing or unknown destination
    /// moves them to the end of the whole table.
    pub fn move_rows(
        &mut self,
        path: &str,
        numbers: Option<&str>,
        destination: Option<&str>,
    ) -> Result<(), RosError> {
        let m = menu(path)?;
        if !m.has("move") {
            return Err(RosError::no_such("move"));
        }
        let numbers = numbers
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| RosError::bad("missing =.id="))?;
        let ids = self.resolve_list(path, numbers)?;
        if ids.is_empty() {
            return Err(RosError::bad("missing =.id="));
        }
        let dest = destination.and_then(|d| self.resolve(path, d).ok());
        if let Some(d) = &dest {
            if ids.contains(d) {
                return Err(RosError::bad("failure: can not move object before itself"));
            }
            if self.db.get(path, d).is_some_and(Row::dynamic) {
                return Err(RosError::bad("failure: can not move dynamic entry"));
            }
        }
        if ids
            .iter()
            .any(|id| self.db.get(path, id).is_some_and(Row::dynamic))
        {
            return Err(RosError::bad("failure: can not move dynamic entry"));
        }
        let rows = self.db.rows_mut(path);
        let mut moving = Vec::new();
        for id in &ids {
            if let Some(i) = rows.iter().position(|r| &r.id == id) {
                moving.push(rows.remove(i));
            }
        }
        let at = dest
            .and_then(|d| rows.iter().position(|r| r.id == d))
            .unwrap_or(rows.len());
        for (k, row) in moving.into_iter().enumerate() {
            rows.insert(at + k, row);
        }
        self.changed();
        Ok(())
    }

    /// `find where <conditions>`: the ids of matching rows in table order.
    pub fn find(&self, path: &str, conds: &[Cond]) -> Result<Vec<String>, RosError> {
        menu(path)?;
        let mut out = Vec::new();
        for r in self.db.rows(path) {
            if conds.iter().all(|c| c.matches(r)) {
                out.push(r.id.clone());
            }
        }
        Ok(out)
    }

    /// Replace references to a removed object's name by its dead `.id`.
    fn dangle(&mut self, keys: &[&str], name: &str, dead: &str) {
        for rows in self.db.menus.values_mut() {
            for r in rows.iter_mut() {
                for k in keys {
                    if let Some(v) = r.props.get_mut(*k) {
                        if strip_not(v) == name {
                            let neg = v.starts_with('!');
                            *v = format!("{}{dead}", if neg { "!" } else { "" });
                        }
                    }
                }
            }
        }
    }

    fn rename_interface(&mut self, old: &str, new: &str) {
        for (menu, rows) in self.db.menus.iter_mut() {
            for r in rows.iter_mut() {
                if menu == "interface" {
                    if r.get("name") == Some(old) {
                        r.props.insert("name".into(), new.into());
                    }
                    continue;
                }
                for k in ["interface", "in-interface", "out-interface", "actual-interface"] {
                    if let Some(v) = r.props.get_mut(k) {
                        if strip_not(v) == old {
                            *v = format!("{}{new}", if v.starts_with('!') { "!" } else { "" });
                        }
                    }
                }
            }
        }
    }

    fn link_wg(&mut self, wg: &Row) {
        let name = wg.get("name").unwrap_or_default().to_string();
        let mtu = wg.get("mtu").unwrap_or("1420").to_string();
        let id = self.alloc_id("interface", false);
        let p = props(&[
            ("name", &name),
            ("type", "wg"),
            ("mtu", &mtu),
            ("actual-mtu", &mtu),
            ("running", "true"),
            ("disabled", "false"),
            ("dynamic", "false"),
        ]);
        self.db.rows_mut("interface").push(Row::new(id, p));
    }

    /// After a successful change: recompute derived rows and state.
    fn changed(&mut self) {
        self.generation += 1;
        self.refresh();
    }

    /// Recompute derived state: WireGuard `running` and its `interface` row,
    /// addresses' `network`, connected routes, route activity, firewall
    /// `invalid`, scheduler `next-run`.
    pub fn refresh(&mut self) {
        // WireGuard interfaces mirrored in /interface.
        let wgs: Vec<(String, bool, String)> = self
            .db
            .rows("interface/wireguard")
            .iter()
            .map(|r| {
                (
                    r.get("name").unwrap_or_default().to_string(),
                    r.enabled(),
                    r.get("mtu").unwrap_or("1420").to_string(),
                )
            })
            .collect();
        for r in self.db.rows_mut("interface/wireguard") {
            let running = r.enabled();
            r.props.insert("running".into(), running.to_string());
        }
        for r in self.db.rows_mut("interface") {
            if r.get("type") == Some("wg") {
                if let Some((_, on, mtu)) = wgs.iter().find(|(n, _, _)| Some(n.as_str()) == r.get("name")) {
                    r.props.insert("running".into(), on.to_string());
                    r.props.insert("disabled".into(), (!on).to_string());
                    r.props.insert("mtu".into(), mtu.clone());
                    r.props.insert("actual-mtu".into(), mtu.clone());
                }
            }
        }
        let ifaces = self.interface_names();
        // Addresses.
        let mut connected = Vec::new();
        for r in self.db.rows_mut("ip/address") {
            let Some((a, l)) = r.get("address").and_then(parse_prefix) else {
                continue;
            };
            let iface = r.get("interface").unwrap_or_default().to_string();
            let net = network_of(a, l);
            r.props.insert("network".into(), net.to_string());
            r.props.insert("actual-interface".into(), iface.clone());
            let valid = ifaces.contains(&iface);
            r.props.insert("invalid".into(), (!valid).to_string());
            if valid && r.enabled() {
                connected.push((format!("{net}/{l}"), iface, a));
            }
        }
        // Connected routes: keep the ones still valid (same id), add new ones.
        let mut keep = Vec::new();
        let mut rows = std::mem::take(self.db.rows_mut("ip/route"));
        rows.retain(|r| {
            if r.get("connect") != Some("true") {
                return true;
            }
            let key = (
                r.get("dst-address").unwrap_or_default(),
                r.get("gateway").unwrap_or_default(),
            );
            let ok = connected.iter().any(|(d, i, _)| (d.as_str(), i.as_str()) == key)
                && !keep.contains(&(key.0.to_string(), key.1.to_string()));
            if ok {
                keep.push((key.0.to_string(), key.1.to_string()));
            }
            ok
        });
        for (dst, iface, a) in &connected {
            if keep.iter().any(|(d, i)| d == dst && i == iface) {
                continue;
            }
            keep.push((dst.clone(), iface.clone()));
            let id = self.alloc_id("ip/route", true);
            let local = format!("{a}%{iface}");
            rows.push(Row::new(
                id,
                props(&[
                    ("dst-address", dst),
                    ("gateway", iface),
                    ("immediate-gw", iface),
                    ("local-address", &local),
                    ("distance", "0"),
                    ("scope", "10"),
                    ("routing-table", "main"),
                    ("dynamic", "true"),
                    ("connect", "true"),
                    ("active", "true"),
                    ("inactive", "false"),
                ]),
            ));
        }
        // Static routes: resolve the gateway through a connected network.
        for r in rows.iter_mut().filter(|r| r.get("connect") != Some("true")) {
            let gw = r
                .get("gateway")
                .unwrap_or_default()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string();
            let imm = match gw.split_once('%') {
                Some((ip, dev)) => Some(format!("{ip}%{dev}")),
                None => match gw.parse::<Ipv4Addr>() {
                    Ok(ip) => connected.iter().find_map(|(dst, iface, _)| {
                        let (n, l) = parse_prefix(dst)?;
                        (network_of(ip, l) == n).then(|| format!("{ip}%{iface}"))
                    }),
                    Err(_) => ifaces.contains(&gw).then(|| gw.clone()),
                },
            };
            let active = imm.is_some() && r.enabled() || r.props.contains_key("blackhole") && r.enabled();
            match imm {
                Some(i) => r.props.insert("immediate-gw".into(), i),
                None => r.props.remove("immediate-gw"),
            };
            r.props.insert("active".into(), active.to_string());
            r.props.insert("inactive".into(), (!active).to_string());
        }
        *self.db.rows_mut("ip/route") = rows;
        // Firewall: a jump to a chain no rule lives in is `invalid`.
        for path in FIREWALL {
            let chains: BTreeSet<String> = self
                .db
                .rows(path)
                .iter()
                .filter_map(|r| r.get("chain").map(str::to_string))
                .collect();
            for r in self.db.rows_mut(path) {
                let dangling = ["in-interface", "out-interface"]
                    .iter()
                    .any(|k| r.get(k).is_some_and(|v| strip_not(v).starts_with('*')));
                let bad_jump = r.get("action") == Some("jump")
                    && r.get("jump-target").is_some_and(|t| !chains.contains(t));
                r.props
                    .insert("invalid".into(), (dangling || bad_jump).to_string());
            }
        }
        // Scheduler.
        let now = self.now;
        let live: BTreeSet<String> = self
            .db
            .rows("system/scheduler")
            .iter()
            .map(|r| r.id.clone())
            .collect();
        self.due.retain(|id, _| live.contains(id));
        let mut next = Vec::new();
        for r in self.db.rows("system/scheduler") {
            let interval = r.get("interval").and_then(parse_duration).unwrap_or(0);
            if interval == 0 || !r.enabled() {
                next.push((r.id.clone(), None));
                continue;
            }
            let due = *self.due.entry(r.id.clone()).or_insert(now + interval);
            next.push((r.id.clone(), Some(due)));
        }
        for (id, d) in &next {
            if d.is_none() {
                self.due.remove(id);
            }
        }
        for r in self.db.rows_mut("system/scheduler") {
            match next.iter().find(|(id, _)| *id == r.id).and_then(|(_, d)| *d) {
                Some(d) => r.props.insert("next-run".into(), timestamp(d)),
                None => r.props.remove("next-run"),
            };
        }
        if let Some(r) = self.db.rows_mut("system/resource").first_mut() {
            r.props.insert("uptime".into(), format_duration(now));
        }
    }

    /// Run a script by name or id (`/system script run`), counting the run.
    pub fn run_script(&mut self, number: &str) -> Result<(), RosError> {
        let id = self
            .resolve("system/script", number)
            .map_err(|_| RosError::bad("no such item"))?;
        let source = {
            let now = timestamp(self.now);
            let i = self
                .db
                .index_of("system/script", &id)
                .ok_or_else(RosError::not_found)?;
            let row = &mut self.db.rows_mut("system/script")[i];
            let n = row
                .get("run-count")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            row.props.insert("run-count".into(), n.to_string());
            row.props.insert("last-started".into(), now);
            row.get("source").unwrap_or_default().to_string()
        };
        self.run_source(&source)
    }

    /// Interpret script text; an error is logged and returned.
    pub fn run_source(&mut self, source: &str) -> Result<(), RosError> {
        if self.depth >= 8 {
            return Err(RosError::bad("failure: scripts nested too deep"));
        }
        self.depth += 1;
        let r = crate::script::run(self, source);
        self.depth -= 1;
        if let Err(e) = &r {
            let msg = e.detail.clone().unwrap_or_else(|| e.to_string());
            self.log_line("script,error", &msg);
        }
        self.changed();
        r
    }

    /// Advance the clock by `secs`, running every scheduler entry that falls
    /// due, in time order. Returns the names of the entries that ran.
    pub fn advance(&mut self, secs: u64) -> Vec<String> {
        let end = self.now.saturating_add(secs);
        let mut ran = Vec::new();
        loop {
            self.refresh();
            let next = self
                .due
                .iter()
                .filter(|(_, t)| **t <= end)
                .min_by_key(|(id, t)| (**t, (*id).clone()));
            let Some((id, t)) = next.map(|(id, t)| (id.clone(), *t)) else {
                break;
            };
            self.now = self.now.max(t);
            let Some(row) = self.db.get("system/scheduler", &id).cloned() else {
                self.due.remove(&id);
                continue;
            };
            let interval = row.get("interval").and_then(parse_duration).unwrap_or(0).max(1);
            self.due.insert(id.clone(), t + interval);
            if let Some(i) = self.db.index_of("system/scheduler", &id) {
                let r = &mut self.db.rows_mut("system/scheduler")[i];
                let n = r
                    .get("run-count")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                r.props.insert("run-count".into(), n.to_string());
            }
            let name = row.get("name").unwrap_or_default().to_string();
            ran.push(name.clone());
            let event = row.get("on-event").unwrap_or_default().trim().to_string();
            let result = if self.db.by_name("system/script", &event).is_some() {
                self.run_script(&event)
            } else {
                self.run_source(&event)
            };
            if result.is_err() {
                self.log_line("system,error", &format!("scheduler {name} failed"));
            }
        }
        self.now = end;
        self.refresh();
        ran
    }
}

/// One condition of `find where …` (or of a REST query).
#[derive(Clone, Debug)]
pub enum Cond {
    /// `key=value` (an absent key equals `""`; booleans also match yes/no).
    Eq(String, String),
    /// `key!=value`.
    Ne(String, String),
    /// `key~"regex"`.
    Re(String, regex::Regex),
    /// `key` alone: a boolean property that is true, or a flag that is set.
    True(String),
    /// `!key`.
    NotTrue(String),
}

impl Cond {
    /// Whether a row satisfies the condition.
    pub fn matches(&self, r: &Row) -> bool {
        let norm = |v: &str| match v {
            "yes" => "true".to_string(),
            "no" => "false".to_string(),
            v => v.to_string(),
        };
        let val = |k: &str| -> String {
            if k == ".id" {
                return r.id.clone();
            }
            r.get(k).unwrap_or_default().to_string()
        };
        match self {
            Cond::Eq(k, v) => {
                val(k) == norm(v) || (v == "no" || v == "false") && r.get(k).is_none() && k != ".id"
            }
            Cond::Ne(k, v) => val(k) != norm(v),
            Cond::Re(k, re) => re.is_match(&val(k)),
            Cond::True(k) => r
                .get(k)
                .is_some_and(|v| v == "true" || v.is_empty() && FLAGS.contains(&k.as_str())),
            Cond::NotTrue(k) => !Cond::True(k.clone()).matches(r),
        }
    }
}
