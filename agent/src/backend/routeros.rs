//! A MikroTik RouterOS v7 router, driven over its REST API (HTTPS, the
//! router's certificate pinned by the plan's fingerprint, basic auth with a
//! password read from a file on this host). It observes the rows of
//! Warren's menus ([`warren_plan::ros::MENUS`]) and executes [`RosOp`]s;
//! it never touches a row without Warren's tag, nor a dynamic row.
//!
//! [`RouterOs::converge`] wraps an apply in a dead man's switch on the
//! router itself: a `/system/script` that restores the previous Warren
//! generation ([`warren_plan::ros_diff::undo_script`]) and a
//! `/system/scheduler` entry that runs it when the confirm window passes.
//! It is armed before the first write, run at once when a write fails or
//! the verification finds the router changed but wrong, and disarmed once
//! the router is verified; if the router cannot be reached after the
//! apply, it is left armed and the router rolls itself back.

use super::{Backend, Claim, Scope};
use crate::routeros::client::{Client, RestError, Transport};
use crate::sys::Sys;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warren_plan::ros::{Before, RosAccess, RosConfig, RosState, MENUS, ROLLBACK_NAME, TAG_PREFIX};
use warren_plan::{Change, Op, Platform, RosOp, State};

/// Builds a transport to a router (the live one reads the password file).
pub type Connector = Box<dyn Fn(&RosAccess) -> Result<Box<dyn Transport>>>;

/// The rollback script's and scheduler's policy.
pub const ROLLBACK_POLICY: &str = "read,write,policy,test";
/// The comment on the rollback script and scheduler.
pub const ROLLBACK_COMMENT: &str = "warren:rollback";
/// A handshake at most this old counts as recent (WireGuard re-keys every
/// two minutes while traffic or keepalives flow).
const RECENT_HANDSHAKE_SECS: u64 = 180;

/// The RouterOS backend of an agent that drives a router (`[routeros]` in
/// agent.toml).
pub struct RouterOs {
    connector: Option<Connector>,
    client: RefCell<Option<Client>>,
    /// Writes made by clients already replaced.
    past_writes: Cell<usize>,
    /// Rows created in this run, by (menu, tag): `Before::Tag` resolution.
    created: BTreeMap<(String, String), String>,
    /// How often verification polls the WAN peer's handshake.
    pub poll: Duration,
}

impl std::fmt::Debug for RouterOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOs")
            .field("configured", &self.connector.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for RouterOs {
    fn default() -> RouterOs {
        RouterOs {
            connector: None,
            client: RefCell::new(None),
            past_writes: Cell::new(0),
            created: BTreeMap::new(),
            poll: Duration::from_secs(5),
        }
    }
}

/// The password in `path`, trailing newline removed. Its content never
/// appears in an error.
pub fn read_password(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the RouterOS password file {}", path.display()))?;
    let pw = text.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("the RouterOS password file {} is empty", path.display());
    }
    Ok(pw)
}

impl RouterOs {
    /// A backend that reaches routers over HTTPS with the password in
    /// `password_file`.
    pub fn live(password_file: PathBuf) -> RouterOs {
        let connector: Connector = Box::new(move |access: &RosAccess| {
            let pw = read_password(&password_file)?;
            let t = crate::routeros::client::Https::new(access, &pw)
                .map_err(|e| anyhow!("TLS set-up for the router: {e}"))?;
            Ok(Box::new(t) as Box<dyn Transport>)
        });
        RouterOs::with_connector(connector)
    }

    /// A backend with its own way to reach routers (tests: a fake).
    pub fn with_connector(connector: Connector) -> RouterOs {
        RouterOs {
            connector: Some(connector),
            ..RouterOs::default()
        }
    }

    /// Writes to the router that succeeded so far.
    pub fn writes(&self) -> usize {
        self.past_writes.get() + self.client.borrow().as_ref().map_or(0, Client::writes)
    }

    fn connect(&self, access: &RosAccess) -> Result<()> {
        let Some(connector) = &self.connector else {
            bail!("this agent has no [routeros] configuration, so it cannot drive a router");
        };
        let client = Client::new(connector(access)?);
        if let Some(old) = self.client.replace(Some(client)) {
            self.past_writes.set(self.past_writes.get() + old.writes());
        }
        Ok(())
    }

    fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, RestError>) -> Result<T> {
        let mut c = self.client.borrow_mut();
        let c = c
            .as_mut()
            .ok_or_else(|| anyhow!("not connected to the router (nothing was observed)"))?;
        Ok(f(c)?)
    }

    /// Connect to the router at `access` and read it (the doctor).
    pub fn probe(&self, access: &RosAccess) -> Result<RosState> {
        self.connect(access)?;
        self.read()
    }

    /// Every row of Warren's menus, in the router's order.
    pub fn read(&self) -> Result<RosState> {
        let mut st = RosState::default();
        for menu in MENUS {
            let rows = self.with_client(|c| c.list(menu))?;
            st.menus.insert(menu.to_string(), rows);
        }
        Ok(st)
    }

    /// Forget the ids created in the previous run.
    pub fn begin(&mut self) {
        self.created.clear();
    }

    fn resolve(&self, menu: &str, before: &Before) -> Result<String> {
        match before {
            Before::Id(id) => Ok(id.clone()),
            Before::Tag(tag) => self
                .created
                .get(&(menu.to_string(), tag.clone()))
                .cloned()
                .ok_or_else(|| anyhow!("no row tagged {TAG_PREFIX}{tag} was created in {menu} in this run")),
        }
    }

    /// Execute one operation.
    pub fn execute(&mut self, op: &RosOp) -> Result<()> {
        match op {
            RosOp::Create { entry, before } => {
                let before = before
                    .as_ref()
                    .map(|b| self.resolve(&entry.menu, b))
                    .transpose()?;
                let mut props = entry.props.clone();
                props.insert("comment".into(), entry.comment());
                let id = self.with_client(|c| c.create(&entry.menu, &props, before.as_deref()))?;
                tracing::info!(menu = %entry.menu, tag = %entry.tag, id = %id, "routeros: created");
                self.created.insert((entry.menu.clone(), entry.tag.clone()), id);
            }
            RosOp::Set { menu, tag, id, props } => {
                self.with_client(|c| c.update(menu, id, props))?;
                tracing::info!(%menu, %tag, %id, "routeros: set");
            }
            RosOp::Remove { menu, tag, id } => {
                self.with_client(|c| c.delete(menu, id))?;
                tracing::info!(%menu, %tag, %id, "routeros: removed");
            }
            RosOp::Move {
                menu,
                tag,
                id,
                destination,
            } => {
                let dest = self.resolve(menu, destination)?;
                // An unknown destination silently moves the row to the end
                // of the table: make sure it exists first.
                let exists = self.with_client(|c| c.list(menu))?.iter().any(|r| r.id == dest);
                if !exists {
                    bail!("cannot move {TAG_PREFIX}{tag} before {dest}: that row no longer exists in {menu}");
                }
                let body = json!({"numbers": id, "destination": dest});
                self.with_client(|c| c.command(&format!("{menu}/move"), &body, true))?;
                tracing::info!(%menu, %tag, %id, destination = %dest, "routeros: moved");
            }
        }
        Ok(())
    }

    /// Ids of the rollback script's and scheduler's rows (`name` =
    /// [`ROLLBACK_NAME`]).
    fn rollback_rows(&self) -> Result<Vec<(&'static str, String)>> {
        let mut v = Vec::new();
        for menu in ["system/scheduler", "system/script"] {
            for r in self.with_client(|c| c.list(menu))? {
                if r.props.get("name").map(String::as_str) == Some(ROLLBACK_NAME) {
                    v.push((menu, r.id));
                }
            }
        }
        Ok(v)
    }

    /// Remove the rollback script and scheduler; how many rows went.
    fn disarm(&self) -> Result<usize> {
        let rows = self.rollback_rows()?;
        for (menu, id) in &rows {
            self.with_client(|c| c.delete(menu, id))?;
        }
        Ok(rows.len())
    }

    /// Install the undo script and its scheduler (firing after `secs`).
    fn arm(&self, source: &str, secs: u32) -> Result<()> {
        let script = BTreeMap::from([
            ("name".to_string(), ROLLBACK_NAME.to_string()),
            ("source".to_string(), source.to_string()),
            ("policy".to_string(), ROLLBACK_POLICY.to_string()),
            ("comment".to_string(), ROLLBACK_COMMENT.to_string()),
        ]);
        self.with_client(|c| c.create("system/script", &script, None))?;
        let scheduler = BTreeMap::from([
            ("name".to_string(), ROLLBACK_NAME.to_string()),
            ("interval".to_string(), format!("{secs}s")),
            (
                "on-event".to_string(),
                format!("/system script run {ROLLBACK_NAME}"),
            ),
            ("policy".to_string(), ROLLBACK_POLICY.to_string()),
            ("comment".to_string(), ROLLBACK_COMMENT.to_string()),
        ]);
        self.with_client(|c| c.create("system/scheduler", &scheduler, None))?;
        Ok(())
    }

    /// Run the undo script now, then remove it and its scheduler.
    fn roll_back_now(&self) -> String {
        let run =
            self.with_client(|c| c.command("system/script/run", &json!({"number": ROLLBACK_NAME}), true));
        let disarm = self.disarm();
        match (run, disarm) {
            (Ok(_), Ok(_)) => format!("ran the router's rollback script ({ROLLBACK_NAME})"),
            (Err(e), _) => format!("running the router's rollback script failed too: {e:#}"),
            (Ok(_), Err(e)) => format!("ran the router's rollback script, but removing it failed: {e:#}"),
        }
    }

    /// Apply `changes` (diffed against `live`) under the dead man's switch,
    /// then verify against `want`. The scheduler fires after `window_secs`
    /// (at least 60). Returns notes for the report.
    pub fn converge(
        &mut self,
        changes: &[Change],
        live: &RosState,
        want: Option<&RosConfig>,
        window_secs: u32,
    ) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let ops: Vec<RosOp> = changes
            .iter()
            .filter_map(|c| match &c.op {
                Op::Ros(op) => Some(op.clone()),
                Op::Wg(_) | Op::Sysctl(_) | Op::Routing(_) | Op::Nft(_) | Op::Ipt(_) | Op::Foreign(_) => None,
            })
            .collect();
        if ops.is_empty() {
            return Ok(notes);
        }
        self.begin();
        let stale = self.disarm().context("removing a stale rollback")?;
        if stale > 0 {
            let msg = format!(
                "removed a stale {ROLLBACK_NAME} script/scheduler left by a run that never disarmed it"
            );
            tracing::warn!("routeros: {msg}");
            notes.push(msg);
        }
        let secs = window_secs.max(60);
        let source = warren_plan::ros_diff::undo_script(live, &ops);
        self.arm(&source, secs)
            .context("arming the rollback on the router")?;
        tracing::info!(secs, ops = ops.len(), "routeros: rollback armed; applying");
        let wan = wan_peer(want, live);
        for (c, op) in changes.iter().zip(&ops) {
            tracing::info!(change = %c, "applying");
            if let Err(e) = self.execute(op) {
                let rolled = self.roll_back_now();
                return Err(anyhow!("{}: {e:#}; {rolled}", c.resource));
            }
        }
        match self.verify(want, wan.as_ref()) {
            Ok(mut v) => notes.append(&mut v),
            Err(Verify::Unreachable(e)) => {
                return Err(anyhow!(
                    "the router cannot be reached after the apply ({e}); its scheduler restores the previous generation within {secs} s"
                ))
            }
            Err(Verify::Wrong(e)) => {
                let rolled = self.roll_back_now();
                return Err(anyhow!("verification after the apply failed: {e}; {rolled}"));
            }
        }
        self.disarm().context("disarming the rollback")?;
        tracing::info!("routeros: verified; rollback disarmed");
        Ok(notes)
    }

    /// The router still answers on a new connection, reads back as
    /// planned, and the WAN VPN that was up is still up.
    fn verify(&self, want: Option<&RosConfig>, wan: Option<&WanPeer>) -> Result<Vec<String>, Verify> {
        let mut notes = Vec::new();
        let rest = |e: anyhow::Error| match e.downcast_ref::<RestError>() {
            Some(r) if r.unreachable() => Verify::Unreachable(format!("{e:#}")),
            Some(_) | None => Verify::Wrong(format!("{e:#}")),
        };
        self.with_client(|c| c.get("system/identity")).map_err(rest)?;
        let now = self.read().map_err(rest)?;
        let left = warren_plan::ros::diff(want, Some(&now));
        if !left.is_empty() {
            let what: Vec<String> = left.iter().map(|c| c.to_string()).collect();
            return Err(Verify::Wrong(format!(
                "{} changes remain: {}",
                left.len(),
                what.join("; ")
            )));
        }
        let Some(wan) = wan.filter(|w| w.was_up) else {
            notes.push(
                "the WAN VPN had no recent handshake before the apply: handshake and ping not checked".into(),
            );
            return Ok(notes);
        };
        let deadline = Instant::now() + Duration::from_secs(2 * wan.keepalive.max(5));
        loop {
            let rows = self
                .with_client(|c| c.list("interface/wireguard/peers"))
                .map_err(rest)?;
            let age = rows
                .iter()
                .find(|r| !r.dynamic() && r.tag() == Some(wan.tag.as_str()))
                .and_then(|r| r.props.get("last-handshake"))
                .and_then(|h| warren_plan::ros_diff::duration_secs(h));
            if age.is_some_and(|a| a <= RECENT_HANDSHAKE_SECS) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Verify::Wrong(format!(
                    "the WAN peer {TAG_PREFIX}{} had a recent handshake before the apply and has none after",
                    wan.tag
                )));
            }
            std::thread::sleep(self.poll);
        }
        if let Some(target) = &wan.ping {
            let reply = self
                .with_client(|c| c.command("ping", &json!({"address": target, "count": "3"}), false))
                .map_err(rest)?;
            let received = ping_received(&reply);
            if received == 0 {
                return Err(Verify::Wrong(format!(
                    "the gateway's tunnel address {target} does not answer ping"
                )));
            }
            notes.push(format!(
                "verified: WAN handshake recent, {target} answers ping ({received}/3)"
            ));
        }
        Ok(notes)
    }
}

/// Why a verification failed.
enum Verify {
    /// The router cannot be reached: leave the switch armed.
    Unreachable(String),
    /// It answers but is wrong: roll back now.
    Wrong(String),
}

/// The WAN VPN's peer (the one the router dials), as it was before an apply.
#[derive(Debug)]
struct WanPeer {
    tag: String,
    was_up: bool,
    keepalive: u64,
    /// The gateway's tunnel address, to ping.
    ping: Option<String>,
}

/// The desired peer with an endpoint, whether it had a recent handshake in
/// `live`, and the address to ping: a route's IPv4 gateway, else the other
/// host of the interface's /30 or /31.
fn wan_peer(want: Option<&RosConfig>, live: &RosState) -> Option<WanPeer> {
    let want = want?;
    let peer = want.entries.iter().find(|e| {
        e.menu == "interface/wireguard/peers"
            && e.props.get("endpoint-address").is_some_and(|a| !a.is_empty())
    })?;
    let was_up = live
        .menus
        .get("interface/wireguard/peers")
        .and_then(|rows| {
            rows.iter()
                .find(|r| !r.dynamic() && r.tag() == Some(peer.tag.as_str()))
        })
        .and_then(|r| r.props.get("last-handshake"))
        .and_then(|h| warren_plan::ros_diff::duration_secs(h))
        .is_some_and(|a| a <= RECENT_HANDSHAKE_SECS);
    let keepalive = peer
        .props
        .get("persistent-keepalive")
        .and_then(|k| warren_plan::ros_diff::duration_secs(k))
        .filter(|k| *k > 0)
        .unwrap_or(25);
    let iface = peer.props.get("interface");
    let gateway = want
        .entries
        .iter()
        .filter(|e| e.menu == "ip/route")
        .filter_map(|e| e.props.get("gateway"))
        .find(|g| g.parse::<std::net::Ipv4Addr>().is_ok())
        .cloned();
    let other_host = || {
        let addr = want
            .entries
            .iter()
            .find(|e| e.menu == "ip/address" && e.props.get("interface") == iface)?
            .props
            .get("address")?;
        let cidr: warren_plan::net::Ipv4Cidr = addr.parse().ok()?;
        let ip = u32::from(cidr.addr);
        let other = match cidr.len {
            31 => ip ^ 1,
            30 => {
                let net = ip & !3;
                if ip == net + 1 {
                    net + 2
                } else {
                    net + 1
                }
            }
            _ => return None,
        };
        Some(std::net::Ipv4Addr::from(other).to_string())
    };
    Some(WanPeer {
        tag: peer.tag.clone(),
        was_up,
        keepalive,
        ping: gateway.or_else(other_host),
    })
}

/// Replies received by a `ping` command (the largest `received` among its
/// rows).
fn ping_received(reply: &Value) -> u64 {
    let rows = match reply {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![reply.clone()],
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => vec![],
    };
    rows.iter()
        .filter_map(|r| {
            r.get("received")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

/// The router's WireGuard public keys, by interface name, of Warren's
/// interfaces (the router made their private keys; only the public half
/// is ever read).
pub fn router_keys(st: &RosState) -> BTreeMap<String, String> {
    let rows = st
        .menus
        .get("interface/wireguard")
        .map(Vec::as_slice)
        .unwrap_or_default();
    rows.iter()
        .filter(|r| r.owned() && !r.dynamic())
        .filter_map(|r| Some((r.props.get("name")?.clone(), r.props.get("public-key")?.clone())))
        .filter(|(_, k)| !k.is_empty())
        .collect()
}

impl Backend for RouterOs {
    type Op = RosOp;
    fn name(&self) -> &'static str {
        "routeros"
    }
    fn observe(&self, _sys: &dyn Sys, scope: &Scope, state: &mut State) -> Result<()> {
        // The first RouterOS plan names the router (the desired one, else
        // the running one, for a teardown).
        let Some(access) = scope
            .plans
            .iter()
            .filter(|p| p.platform == Platform::Routeros)
            .find_map(|p| p.routeros.as_ref().map(|r| &r.access))
        else {
            return Ok(());
        };
        self.connect(access)?;
        state.routeros = Some(self.read()?);
        Ok(())
    }
    fn apply(&mut self, _sys: &mut dyn Sys, op: &RosOp) -> Result<Option<Claim>> {
        self.execute(op)?;
        Ok(None)
    }
}

#[cfg(test)]
pub mod fake {
    //! A pretend router for tests: an in-memory table per menu behind the
    //! [`Transport`] trait, recording every request.

    use super::*;
    use std::sync::{Arc, Mutex};

    /// What the fake router holds and what it was asked.
    #[derive(Debug, Default)]
    pub struct Router {
        pub menus: BTreeMap<String, Vec<warren_plan::ros::RosRow>>,
        pub log: Vec<String>,
        pub next_id: u32,
        /// Requests (`"PUT ip/route"`) that fail with a 400.
        pub failing: Vec<String>,
        /// Every request fails as unreachable once this many were served.
        pub cut_after: Option<usize>,
        /// The reply to `POST ping`.
        pub ping: Value,
    }

    /// A transport onto a shared [`Router`].
    #[derive(Clone, Debug, Default)]
    pub struct Fake(pub Arc<Mutex<Router>>);

    impl Fake {
        pub fn connector(&self) -> Connector {
            let f = self.clone();
            Box::new(move |_: &RosAccess| Ok(Box::new(f.clone()) as Box<dyn Transport>))
        }
        pub fn router(&self) -> std::sync::MutexGuard<'_, Router> {
            self.0.lock().unwrap()
        }
    }

    fn err(status: u16, method: &str, path: &str, detail: &str) -> RestError {
        RestError::Status {
            method: method.into(),
            path: path.into(),
            status,
            message: "Bad Request".into(),
            detail: Some(detail.into()),
        }
    }

    impl Transport for Fake {
        fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
            let mut r = self.0.lock().unwrap();
            let line = format!(
                "{method} {path}{}",
                body.map(|b| format!(" {b}")).unwrap_or_default()
            );
            let served = r.log.len();
            r.log.push(line);
            if r.cut_after.is_some_and(|n| served >= n) {
                return Err(RestError::Unreachable {
                    method: method.into(),
                    path: path.into(),
                    addr: "192.168.88.1:443".into(),
                    reason: "connection timed out".into(),
                });
            }
            if r.failing.iter().any(|f| *f == format!("{method} {path}")) {
                return Err(err(400, method, path, "failure: already have such entry"));
            }
            let obj = |b: Option<&Value>| -> BTreeMap<String, String> {
                b.and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let to_json = |row: &warren_plan::ros::RosRow| {
                let mut m = serde_json::Map::new();
                m.insert(".id".into(), Value::String(row.id.clone()));
                for (k, v) in &row.props {
                    m.insert(k.clone(), Value::String(v.clone()));
                }
                Value::Object(m)
            };
            match method {
                "GET" => {
                    if path == "system/identity" {
                        return Ok(json!({"name": "MikroTik"}));
                    }
                    let rows = r.menus.get(path).cloned().unwrap_or_default();
                    Ok(Value::Array(rows.iter().map(to_json).collect()))
                }
                "PUT" => {
                    let mut props = obj(body);
                    let before = props.remove("place-before");
                    r.next_id += 1;
                    let id = format!("*{:X}", r.next_id + 0x100);
                    let row = warren_plan::ros::RosRow {
                        id: id.clone(),
                        props,
                    };
                    let rows = r.menus.entry(path.to_string()).or_default();
                    let at = before
                        .and_then(|b| rows.iter().position(|x| x.id == b))
                        .unwrap_or(rows.len());
                    rows.insert(at, row.clone());
                    Ok(to_json(&row))
                }
                "PATCH" | "DELETE" => {
                    let (menu, id) = path.rsplit_once('/').unwrap_or((path, ""));
                    let rows = r.menus.entry(menu.to_string()).or_default();
                    let Some(p) = rows.iter().position(|x| x.id == id) else {
                        return Err(RestError::Status {
                            method: method.into(),
                            path: path.into(),
                            status: 404,
                            message: "Not Found".into(),
                            detail: None,
                        });
                    };
                    if method == "DELETE" {
                        rows.remove(p);
                        return Ok(Value::Null);
                    }
                    rows[p].props.extend(obj(body));
                    Ok(to_json(&rows[p]))
                }
                "POST" => {
                    let args = obj(body);
                    if path == "ping" {
                        return Ok(r.ping.clone());
                    }
                    if path == "system/script/run" {
                        return Ok(json!([]));
                    }
                    let Some(menu) = path.strip_suffix("/move") else {
                        return Err(err(400, method, path, "no such command"));
                    };
                    let rows = r.menus.entry(menu.to_string()).or_default();
                    let numbers = args.get("numbers").cloned().unwrap_or_default();
                    let Some(p) = rows.iter().position(|x| x.id == numbers) else {
                        return Err(err(404, method, path, "no such item"));
                    };
                    let row = rows.remove(p);
                    let dest = args
                        .get("destination")
                        .and_then(|d| rows.iter().position(|x| &x.id == d));
                    rows.insert(dest.unwrap_or(rows.len()), row);
                    Ok(json!([]))
                }
                _ => Err(err(400, method, path, "unsupported")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Fake;
    use super::*;
    use warren_plan::ros::{Place, RosEntry, RosRow};

    fn access() -> RosAccess {
        RosAccess {
            address: "192.168.88.1".parse().unwrap(),
            port: 443,
            user: "warren".into(),
            fingerprint: "ab".repeat(32),
        }
    }

    fn entry(menu: &str, tag: &str, kv: &[(&str, &str)], place: Place) -> RosEntry {
        RosEntry {
            menu: menu.into(),
            tag: tag.into(),
            props: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            place,
        }
    }

    fn want() -> RosConfig {
        RosConfig {
            access: access(),
            entries: vec![
                entry(
                    "interface/wireguard",
                    "if/wg0",
                    &[("name", "wg0"), ("mtu", "1420")],
                    Place::InOrder,
                ),
                entry(
                    "interface/wireguard/peers",
                    "peer/wg0/gateway",
                    &[
                        ("interface", "wg0"),
                        ("public-key", "GW="),
                        ("endpoint-address", "203.0.113.10"),
                        ("endpoint-port", "51820"),
                        ("allowed-address", "0.0.0.0/0"),
                        ("persistent-keepalive", "25s"),
                    ],
                    Place::InOrder,
                ),
                entry(
                    "ip/address",
                    "addr/wg0",
                    &[("address", "10.0.18.2/30"), ("interface", "wg0")],
                    Place::InOrder,
                ),
                entry(
                    "ip/firewall/filter",
                    "filter/a",
                    &[("chain", "warren-forward"), ("action", "accept")],
                    Place::InOrder,
                ),
                entry(
                    "ip/firewall/filter",
                    "filter/b",
                    &[("chain", "warren-forward"), ("action", "drop")],
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
        }
    }

    fn router() -> Fake {
        let f = Fake::default();
        f.router().menus.insert(
            "ip/firewall/filter".into(),
            vec![RosRow {
                id: "*5".into(),
                props: [
                    ("chain".to_string(), "forward".to_string()),
                    ("action".to_string(), "fasttrack-connection".to_string()),
                    ("comment".to_string(), "defconf: fasttrack".to_string()),
                ]
                .into(),
            }],
        );
        f.router().ping = json!([{"seq": "2", "sent": "3", "received": "3"}]);
        f
    }

    fn scope_of(plan: &warren_plan::Plan) -> (warren_plan::Plan, std::collections::BTreeSet<String>) {
        (plan.clone(), Default::default())
    }

    fn routeros_plan(cfg: Option<RosConfig>) -> warren_plan::Plan {
        warren_plan::Plan {
            platform: Platform::Routeros,
            routeros: cfg,
            ..warren_plan::Plan::empty("router")
        }
    }

    fn observe(b: &RouterOs, plan: &warren_plan::Plan) -> RosState {
        let (p, owned) = scope_of(plan);
        let scope = Scope {
            plans: vec![&p],
            owned_interfaces: &owned,
        };
        let mut st = State::default();
        b.observe(&crate::sys::Recorder::default(), &scope, &mut st)
            .unwrap();
        st.routeros.unwrap()
    }

    fn converge(b: &mut RouterOs, f: &Fake, cfg: &RosConfig) -> Result<(Vec<Change>, Vec<String>)> {
        let live = observe(b, &routeros_plan(Some(cfg.clone())));
        let changes = warren_plan::ros::diff(Some(cfg), Some(&live));
        f.router().log.clear();
        let notes = b.converge(&changes, &live, Some(cfg), 120)?;
        Ok((changes, notes))
    }

    fn writes_in(log: &[String]) -> Vec<String> {
        log.iter().filter(|l| !l.starts_with("GET")).cloned().collect()
    }

    #[test]
    fn an_apply_is_armed_executed_verified_and_disarmed_and_a_second_run_writes_nothing() {
        let f = router();
        let mut b = RouterOs::with_connector(f.connector());
        b.poll = Duration::ZERO;
        let (changes, _) = converge(&mut b, &f, &want()).unwrap();
        assert_eq!(changes.len(), 6);
        let log = f.router().log.clone();
        let w = writes_in(&log);
        assert!(w[0].starts_with("PUT system/script {\"comment\":\"warren:rollback\",\"name\":\"warren-rollback\",\"policy\":\"read,write,policy,test\",\"source\":\"/system scheduler remove"), "{w:#?}");
        assert!(
            w[0].contains(
                r#"/ip firewall filter remove [find where comment=\"warren:jump/filter-forward\"]"#
            ),
            "{}",
            w[0]
        );
        assert_eq!(
            w[1],
            r#"PUT system/scheduler {"comment":"warren:rollback","interval":"120s","name":"warren-rollback","on-event":"/system script run warren-rollback","policy":"read,write,policy,test"}"#
        );
        // The jump goes above fasttrack; the chain's rules in plan order.
        assert!(
            w.iter()
                .any(|l| l.starts_with("PUT ip/firewall/filter") && l.contains("\"place-before\":\"*5\"")),
            "{w:#?}"
        );
        let filter: Vec<String> = f.router().menus["ip/firewall/filter"]
            .iter()
            .map(|r| r.props.get("comment").cloned().unwrap_or_default())
            .collect();
        assert_eq!(
            filter,
            [
                "warren:jump/filter-forward",
                "defconf: fasttrack",
                "warren:filter/a",
                "warren:filter/b"
            ]
        );
        // Verified on a fresh request, then disarmed: nothing of the rollback left.
        assert!(log.iter().any(|l| l == "GET system/identity"));
        assert!(w[w.len() - 2].starts_with("DELETE system/scheduler/"), "{w:#?}");
        assert!(w[w.len() - 1].starts_with("DELETE system/script/"), "{w:#?}");
        assert!(f.router().menus["system/script"].is_empty());
        assert!(f.router().menus["system/scheduler"].is_empty());
        assert_eq!(b.writes(), 2 + 6 + 2);

        // The same plan again: no change, no write, nothing armed.
        let before = b.writes();
        let (changes, _) = converge(&mut b, &f, &want()).unwrap();
        assert_eq!(changes, vec![]);
        assert_eq!(b.writes(), before);
        assert!(writes_in(&f.router().log).is_empty());
    }

    #[test]
    fn a_failing_request_runs_the_rollback_at_once() {
        let f = router();
        let mut b = RouterOs::with_connector(f.connector());
        f.router().failing.push("PUT ip/address".into());
        let e = converge(&mut b, &f, &want()).unwrap_err().to_string();
        assert!(
            e.starts_with("routeros ip/address warren:addr/wg0: PUT /rest/ip/address: HTTP 400"),
            "{e}"
        );
        assert!(
            e.contains("ran the router's rollback script (warren-rollback)"),
            "{e}"
        );
        let log = f.router().log.clone();
        let run = log
            .iter()
            .position(|l| l == r#"POST system/script/run {"number":"warren-rollback"}"#);
        let failed = log.iter().position(|l| l.starts_with("PUT ip/address"));
        assert!(run.is_some() && run > failed, "{log:#?}");
        // No further op after the failure.
        assert!(!log.iter().any(|l| l.starts_with("PUT ip/firewall")), "{log:#?}");
        assert!(
            f.router().menus["system/scheduler"].is_empty(),
            "disarmed after running"
        );
    }

    #[test]
    fn an_unreachable_router_after_the_apply_is_left_to_its_scheduler() {
        let f = router();
        let mut b = RouterOs::with_connector(f.connector());
        // GETs of observe(9) + disarm check (2) + arm (2) + 6 ops: then cut.
        f.router().cut_after = Some(9 + 2 + 2 + 6);
        let live = observe(&b, &routeros_plan(Some(want())));
        let changes = warren_plan::ros::diff(Some(&want()), Some(&live));
        let e = b
            .converge(&changes, &live, Some(&want()), 30)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be reached after the apply"), "{e}");
        assert!(e.contains("within 60 s"), "{e}");
        let r = f.router();
        assert_eq!(r.menus["system/scheduler"].len(), 1, "still armed");
        assert_eq!(r.menus["system/scheduler"][0].props["interval"], "60s");
        assert!(!r.log.iter().any(|l| l.contains("system/script/run")));
    }

    #[test]
    fn a_lost_handshake_or_ping_rolls_back() {
        let f = router();
        let mut b = RouterOs::with_connector(f.connector());
        b.poll = Duration::ZERO;
        converge(&mut b, &f, &want()).unwrap();
        // The tunnel is up now.
        {
            let mut r = f.router();
            let peers = r.menus.get_mut("interface/wireguard/peers").unwrap();
            peers[0].props.insert("last-handshake".into(), "12s".into());
            r.ping = json!([{"sent": "3", "received": "0"}]);
        }
        let mut cfg = want();
        cfg.entries[3].props.insert("log".into(), "yes".into());
        let e = converge(&mut b, &f, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("the gateway's tunnel address 10.0.18.1 does not answer ping"),
            "{e}"
        );
        assert!(e.contains("ran the router's rollback script"), "{e}");
        // (The fake's rollback script restores nothing: log=yes stayed.)
        f.router().ping = json!([{"sent": "3", "received": "2"}]);
        cfg.entries[3].props.insert("log".into(), "no".into());
        let (_, notes) = converge(&mut b, &f, &cfg).unwrap();
        assert_eq!(
            notes,
            ["verified: WAN handshake recent, 10.0.18.1 answers ping (2/3)"]
        );
    }

    #[test]
    fn a_stale_rollback_is_removed_and_reported() {
        let f = router();
        f.router().menus.insert(
            "system/scheduler".into(),
            vec![RosRow {
                id: "*0".into(),
                props: [("name".to_string(), ROLLBACK_NAME.to_string())].into(),
            }],
        );
        let mut b = RouterOs::with_connector(f.connector());
        let (_, notes) = converge(&mut b, &f, &want()).unwrap();
        assert!(
            notes[0].starts_with("removed a stale warren-rollback"),
            "{notes:?}"
        );
        assert!(f.router().log.iter().any(|l| l == "DELETE system/scheduler/*0"));
    }

    #[test]
    fn before_tags_resolve_to_rows_created_in_this_run_and_moves_check_their_destination() {
        let f = router();
        let mut b = RouterOs::with_connector(f.connector());
        observe(&b, &routeros_plan(Some(want())));
        b.begin();
        let mk = |tag: &str| {
            entry(
                "ip/firewall/nat",
                tag,
                &[("chain", "warren-dstnat")],
                Place::InOrder,
            )
        };
        b.execute(&RosOp::Create {
            entry: mk("nat/b"),
            before: None,
        })
        .unwrap();
        b.execute(&RosOp::Create {
            entry: mk("nat/a"),
            before: Some(Before::Tag("nat/b".into())),
        })
        .unwrap();
        let tags: Vec<String> = f.router().menus["ip/firewall/nat"]
            .iter()
            .map(|r| r.props["comment"].clone())
            .collect();
        assert_eq!(tags, ["warren:nat/a", "warren:nat/b"]);
        let e = b
            .execute(&RosOp::Create {
                entry: mk("nat/c"),
                before: Some(Before::Tag("nat/zzz".into())),
            })
            .unwrap_err();
        assert!(
            e.to_string().contains("no row tagged warren:nat/zzz was created"),
            "{e}"
        );
        // A move to a row that is gone is refused, not sent.
        let id = f.router().menus["ip/firewall/nat"][0].id.clone();
        let e = b
            .execute(&RosOp::Move {
                menu: "ip/firewall/nat".into(),
                tag: "nat/a".into(),
                id: id.clone(),
                destination: Before::Id("*DEAD".into()),
            })
            .unwrap_err();
        assert!(e.to_string().contains("that row no longer exists"), "{e}");
        assert!(!f
            .router()
            .log
            .iter()
            .any(|l| l.starts_with("POST ip/firewall/nat/move")));
        let dest = f.router().menus["ip/firewall/nat"][1].id.clone();
        b.execute(&RosOp::Move {
            menu: "ip/firewall/nat".into(),
            tag: "nat/b".into(),
            id: dest.clone(),
            destination: Before::Id(id.clone()),
        })
        .unwrap();
        assert!(f.router().log.contains(&format!(
            r#"POST ip/firewall/nat/move {{"destination":"{id}","numbers":"{dest}"}}"#
        )));
        assert_eq!(b.writes(), 3);
    }

    #[test]
    fn router_keys_are_the_owned_interfaces_public_keys() {
        let st = RosState {
            menus: [(
                "interface/wireguard".to_string(),
                vec![
                    RosRow {
                        id: "*1".into(),
                        props: [
                            ("name".to_string(), "wg0".to_string()),
                            ("public-key".to_string(), "R0=".to_string()),
                            ("comment".to_string(), "warren:if/wg0".to_string()),
                        ]
                        .into(),
                    },
                    RosRow {
                        id: "*2".into(),
                        props: [
                            ("name".to_string(), "wg9".to_string()),
                            ("public-key".to_string(), "X=".to_string()),
                        ]
                        .into(),
                    },
                ],
            )]
            .into(),
        };
        assert_eq!(
            router_keys(&st),
            BTreeMap::from([("wg0".to_string(), "R0=".to_string())])
        );
    }

    #[test]
    fn the_password_file_is_trimmed_and_never_echoed() {
        let dir = crate::testing::scratch("ros-password");
        let p = dir.join("pw");
        std::fs::write(&p, "hunter2\n").unwrap();
        assert_eq!(read_password(&p).unwrap(), "hunter2");
        std::fs::write(&p, "\n").unwrap();
        let e = read_password(&p).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
        let e = read_password(&dir.join("missing")).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read the RouterOS password file"),
            "{e:#}"
        );
    }
}
