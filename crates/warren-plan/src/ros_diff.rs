//! The pure RouterOS decisions: which REST operations make a router's
//! owned rows match a [`RosConfig`] ([`diff`]), and the RouterOS script that
//! restores the previous Warren generation after those operations
//! ([`undo_script`], the dead man's switch).
//!
//! Owned rows carry `comment="warren:<tag>"` and are not `dynamic`; every
//! other row is only looked at for placement (a jump must sit above the
//! first foreign rule of its built-in chain) and never touched. Values are
//! compared after canonicalisation ([`canonical`]): booleans, `/32` on
//! addresses, durations, and an absent property equal to its RouterOS
//! default. Only the properties a plan entry sets are compared; state
//! properties ([`state_prop`]) never are.
//!
//! Pure: no I/O, no clock.

use crate::diff::Change;
use crate::ros::{
    Before, Place, RosConfig, RosEntry, RosOp, RosRow, RosState, MENUS, ROLLBACK_NAME, TAG_PREFIX,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Menus whose rows form chains, ordered by `chain` (firewall tables).
const FIREWALL: [&str; 3] = ["ip/firewall/mangle", "ip/firewall/nat", "ip/firewall/filter"];

/// Menus that take `place-before` on create.
const ORDERED: [&str; 5] = [
    "ip/firewall/mangle",
    "ip/firewall/nat",
    "ip/firewall/filter",
    "routing/rule",
    "interface/wireguard/peers",
];

/// Properties RouterOS keeps as flags: present with `""` when set.
const FLAGS: [&str; 2] = ["fib", "blackhole"];

/// Read-only or state properties, never compared nor written back
/// (`public-key` only on an interface: on a peer it is configuration).
pub fn state_prop(menu: &str, key: &str) -> bool {
    const STATE: [&str; 27] = [
        ".id",
        ".nextid",
        "bytes",
        "packets",
        "invalid",
        "dynamic",
        "running",
        "last-handshake",
        "rx",
        "tx",
        "actual-interface",
        "network",
        "immediate-gw",
        "active",
        "inactive",
        "static",
        "ecmp",
        "creation-time",
        "next-run",
        "run-count",
        "owner",
        "last-started",
        "slave",
        "connect",
        "private-key",
        "local-address",
        "hw-offload-state",
    ];
    STATE.contains(&key)
        || key.starts_with("current-endpoint-")
        || (key == "public-key" && menu == "interface/wireguard")
}

/// The value RouterOS uses when a property is absent, for the few
/// properties whose absence must compare equal to a written default.
pub fn default_value(menu: &str, key: &str) -> Option<&'static str> {
    let firewall = FIREWALL.contains(&menu);
    match key {
        "disabled" => Some("false"),
        "log" if firewall => Some("false"),
        "log-prefix" if firewall => Some(""),
        "passthrough" if menu == "ip/firewall/mangle" => Some("true"),
        "mtu" if menu == "interface/wireguard" => Some("1420"),
        "endpoint-port" if menu == "interface/wireguard/peers" => Some("0"),
        "persistent-keepalive" if menu == "interface/wireguard/peers" => Some("0s"),
        "routing-table" if menu == "ip/route" => Some("main"),
        _ => None,
    }
}

/// Properties that hold IPv4 addresses or prefixes (`/32` is implied).
const ADDRESS_PROPS: [&str; 4] = ["address", "dst-address", "src-address", "allowed-address"];

/// Properties that hold durations (`25` means `25s`).
const DURATION_PROPS: [&str; 4] = ["persistent-keepalive", "interval", "timeout", "client-keepalive"];

/// A value in the form RouterOS reads it back, so that what a plan writes
/// and what the router returns compare equal: `yes`/`no` -> `true`/`false`,
/// `10.0.0.1` -> `10.0.0.1/32` in address properties, durations in
/// seconds.
pub fn canonical(key: &str, value: &str) -> String {
    match value {
        "yes" | "true" => return "true".into(),
        "no" | "false" => return "false".into(),
        _ => {}
    }
    if ADDRESS_PROPS.contains(&key) {
        let items: Vec<String> = value
            .split(',')
            .map(|item| {
                let item = item.trim();
                if !item.contains('/') && item.parse::<std::net::Ipv4Addr>().is_ok() {
                    format!("{item}/32")
                } else {
                    item.to_string()
                }
            })
            .collect();
        return items.join(",");
    }
    if DURATION_PROPS.contains(&key) {
        if let Some(secs) = duration_secs(value) {
            return format!("{secs}s");
        }
    }
    value.to_string()
}

/// A RouterOS duration in seconds: `25`, `25s`, `1m30s`, `2h`, `1d`, `1w`,
/// `00:00:25`, `1d02:00:00`; `None` when it is not one.
pub fn duration_secs(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.contains(':') {
        // [Nd]HH:MM:SS
        let (days, clock) = match v.split_once('d') {
            Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
            None => (0, v),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        let [h, m, s] = parts.as_slice() else {
            return None;
        };
        let s = s.split('.').next()?;
        return Some(
            days * 86_400
                + h.parse::<u64>().ok()? * 3600
                + m.parse::<u64>().ok()? * 60
                + s.parse::<u64>().ok()?,
        );
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3600,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0 // milliseconds: below a second
            }
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse::<u64>().ok()?)?;
    }
    Some(total)
}

/// A live row's value for `key`, or the RouterOS default when absent.
fn live_value<'a>(menu: &str, row: &'a RosRow, key: &str) -> Option<&'a str> {
    row.props
        .get(key)
        .map(String::as_str)
        .or_else(|| default_value(menu, key))
}

/// Whether the router cannot change `key` of a row in place.
fn immutable(menu: &str, key: &str) -> bool {
    menu == "interface/wireguard/peers" && matches!(key, "public-key" | "interface")
}

/// How a change names a row.
fn resource(menu: &str, tag: &str) -> String {
    format!("routeros {menu} {TAG_PREFIX}{tag}")
}

/// `key=value` for people; `key=(unset)` when absent.
fn shown(key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{key}={v}"),
        None => format!("{key}=(unset)"),
    }
}

/// How a foreign row is named in a misplacement: its comment, else its
/// action.
fn describe_row(row: &RosRow) -> String {
    match row.props.get("comment") {
        Some(c) => format!("'{c}'"),
        None => format!(
            "rule {} (action={})",
            row.id,
            row.props.get("action").map_or("?", String::as_str)
        ),
    }
}

/// Owned rows of one menu: the first per tag (kept), and the rest
/// (duplicates and rows of tags not wanted).
struct Owned<'a> {
    first: BTreeMap<&'a str, &'a RosRow>,
    duplicates: Vec<&'a RosRow>,
}

fn owned_rows(rows: &[RosRow]) -> Owned<'_> {
    let mut first = BTreeMap::new();
    let mut duplicates = Vec::new();
    for row in rows.iter().filter(|r| !r.dynamic()) {
        let Some(tag) = row.tag() else { continue };
        if first.contains_key(tag) {
            duplicates.push(row);
        } else {
            first.insert(tag, row);
        }
    }
    Owned { first, duplicates }
}

/// The changes that make the router's owned rows match `want` (`None`:
/// remove them all). See [`crate::ros::diff`] for the order.
pub fn diff(want: Option<&RosConfig>, live: Option<&RosState>) -> Vec<Change> {
    let empty = RosState::default();
    let live = live.unwrap_or(&empty);
    let entries: &[RosEntry] = want.map_or(&[], |w| &w.entries);
    let no_rows: Vec<RosRow> = Vec::new();
    let rows_of = |menu: &str| live.menus.get(menu).unwrap_or(&no_rows);
    let mut owned: BTreeMap<&str, Owned<'_>> = BTreeMap::new();
    for (menu, rows) in &live.menus {
        owned.insert(menu.as_str(), owned_rows(rows));
    }

    let mut creates = Vec::new();
    let mut sets = Vec::new();
    let mut moves = Vec::new();
    // Removals: (menu, tag, row, expected, actual).
    let mut removes: Vec<(String, &RosRow, String, String)> = Vec::new();
    // Creations that must wait for the removal of the row they replace.
    let mut after_removal = Vec::new();
    // Tags created in this run, per menu.
    let mut created: BTreeSet<(&str, &str)> = BTreeSet::new();
    // Wanted tags per menu.
    let wanted: BTreeSet<(&str, &str)> = entries
        .iter()
        .map(|e| (e.menu.as_str(), e.tag.as_str()))
        .collect();

    for (i, e) in entries.iter().enumerate() {
        let menu = e.menu.as_str();
        let res = resource(menu, &e.tag);
        let row = owned.get(menu).and_then(|o| o.first.get(e.tag.as_str())).copied();
        let Some(row) = row else {
            let before = placement(e, i, entries, rows_of(menu), &owned, &created);
            created.insert((menu, e.tag.as_str()));
            creates.push(Change::new(
                res,
                "present",
                "absent",
                RosOp::Create {
                    entry: e.clone(),
                    before,
                },
            ));
            continue;
        };
        let differing: Vec<(&String, &String)> = e
            .props
            .iter()
            .filter(|(k, _)| !state_prop(menu, k))
            .filter(|(k, v)| live_value(menu, row, k).map(|l| canonical(k, l)) != Some(canonical(k, v)))
            .collect();
        if differing.is_empty() {
            continue;
        }
        let expected: Vec<String> = differing.iter().map(|(k, v)| shown(k, Some(v))).collect();
        let actual: Vec<String> = differing
            .iter()
            .map(|(k, _)| shown(k, row.props.get(k.as_str()).map(String::as_str)))
            .collect();
        if differing.iter().any(|(k, _)| immutable(menu, k)) {
            let why = " (cannot change in place: replaced)";
            // A new key on the same interface would overlap the old peer's
            // allowed addresses, which RouterOS refuses: remove it first.
            let same_interface = !differing.iter().any(|(k, _)| k.as_str() == "interface");
            let create = Change::new(
                res.clone(),
                expected.join(" "),
                format!("{}{why}", actual.join(" ")),
                RosOp::Create {
                    entry: e.clone(),
                    before: ORDERED
                        .contains(&menu)
                        .then(|| Before::Id(row.id.clone()))
                        .filter(|_| !same_interface),
                },
            );
            removes.push((
                menu.to_string(),
                row,
                "absent (replaced)".into(),
                "present".into(),
            ));
            if same_interface {
                after_removal.push(create);
            } else {
                creates.push(create);
            }
            continue;
        }
        let props = differing
            .iter()
            .map(|(k, v)| ((*k).clone(), (*v).clone()))
            .collect();
        sets.push(Change::new(
            res,
            expected.join(" "),
            actual.join(" "),
            RosOp::Set {
                menu: menu.to_string(),
                tag: e.tag.clone(),
                id: row.id.clone(),
                props,
            },
        ));
    }

    // Placement of what already exists.
    let removed_ids: BTreeSet<&str> = removes.iter().map(|(_, r, _, _)| r.id.as_str()).collect();
    for menu in FIREWALL {
        let rows = rows_of(menu);
        let Some(o) = owned.get(menu) else { continue };
        for e in entries.iter().filter(|e| e.menu == menu && e.place == Place::Top) {
            let Some(jump) = o.first.get(e.tag.as_str()) else {
                continue;
            };
            if removed_ids.contains(jump.id.as_str()) {
                continue;
            }
            if let Some(foreign) = misplaced_jump(jump, rows) {
                moves.push(Change::new(
                    resource(menu, &e.tag),
                    format!(
                        "above every other rule of chain {}",
                        jump.props.get("chain").map_or("?", String::as_str)
                    ),
                    format!("misplaced: below {}", describe_row(foreign)),
                    RosOp::Move {
                        menu: menu.to_string(),
                        tag: e.tag.clone(),
                        id: jump.id.clone(),
                        destination: Before::Id(foreign.id.clone()),
                    },
                ));
            }
        }
        moves.extend(chain_order_moves(menu, entries, rows, o, &creates, &removed_ids));
    }

    // Owned rows no longer wanted, and duplicates.
    for (menu, o) in &owned {
        for (tag, row) in &o.first {
            if !wanted.contains(&(menu, tag)) {
                removes.push((menu.to_string(), row, "absent".into(), "present".into()));
            }
        }
        for row in &o.duplicates {
            removes.push((
                menu.to_string(),
                row,
                "absent (duplicate tag)".into(),
                "present".into(),
            ));
        }
    }
    // Reverse dependency order; menus Warren does not know last.
    let rank = |menu: &str| {
        MENUS
            .iter()
            .position(|m| *m == menu)
            .map_or(0, |p| MENUS.len() - p)
    };
    removes.sort_by_key(|(menu, _, _, _)| rank(menu));
    let mut out = creates;
    out.extend(sets);
    out.extend(moves);
    for (menu, row, expected, actual) in removes {
        let tag = row.tag().unwrap_or_default().to_string();
        out.push(Change::new(
            resource(&menu, &tag),
            expected,
            actual,
            RosOp::Remove {
                menu,
                tag,
                id: row.id.clone(),
            },
        ));
    }
    out.extend(after_removal);
    out
}

/// Where a missing entry goes when created.
fn placement(
    e: &RosEntry,
    index: usize,
    entries: &[RosEntry],
    rows: &[RosRow],
    owned: &BTreeMap<&str, Owned<'_>>,
    created: &BTreeSet<(&str, &str)>,
) -> Option<Before> {
    let menu = e.menu.as_str();
    if !FIREWALL.contains(&menu) {
        return None;
    }
    let chain = e.props.get("chain");
    match e.place {
        Place::Top => rows
            .iter()
            .find(|r| !r.dynamic() && r.props.get("chain") == chain && r.tag() != Some(e.tag.as_str()))
            .map(|r| Before::Id(r.id.clone())),
        Place::InOrder => {
            // Before the next entry of the chain that already exists (those
            // created later in this run are placed before it too).
            let o = owned.get(menu)?;
            entries[index + 1..]
                .iter()
                .filter(|n| n.menu == menu && n.props.get("chain") == chain && n.place == Place::InOrder)
                .find_map(|n| {
                    if created.contains(&(menu, n.tag.as_str())) {
                        return Some(Before::Tag(n.tag.clone()));
                    }
                    o.first.get(n.tag.as_str()).map(|r| Before::Id(r.id.clone()))
                })
        }
    }
}

/// The first foreign, static row of the jump's chain above which the jump
/// should be, if the jump is below it.
fn misplaced_jump<'a>(jump: &RosRow, rows: &'a [RosRow]) -> Option<&'a RosRow> {
    let chain = jump.props.get("chain");
    let pos = rows.iter().position(|r| r.id == jump.id)?;
    rows[..pos]
        .iter()
        .find(|r| !r.dynamic() && !r.owned() && r.props.get("chain") == chain)
}

/// Moves that put Warren's existing rows of each `warren-*` chain in plan
/// order, given where this run's creations land.
fn chain_order_moves(
    menu: &str,
    entries: &[RosEntry],
    rows: &[RosRow],
    o: &Owned<'_>,
    creates: &[Change],
    removed: &BTreeSet<&str>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let chains: BTreeSet<&String> = entries
        .iter()
        .filter(|e| e.menu == menu && e.place == Place::InOrder)
        .filter_map(|e| e.props.get("chain"))
        .collect();
    for chain in chains {
        let target: Vec<&str> = entries
            .iter()
            .filter(|e| e.menu == menu && e.place == Place::InOrder && e.props.get("chain") == Some(chain))
            .map(|e| e.tag.as_str())
            .collect();
        // Simulate the chain's owned rows after the creations.
        let mut current: Vec<&str> = rows
            .iter()
            .filter(|r| !removed.contains(r.id.as_str()))
            .filter_map(|r| r.tag().filter(|t| o.first.get(t).is_some_and(|k| k.id == r.id)))
            .filter(|t| target.contains(t))
            .collect();
        for c in creates {
            let crate::diff::Op::Ros(RosOp::Create { entry, before }) = &c.op else {
                continue;
            };
            if entry.menu != menu || !target.contains(&entry.tag.as_str()) {
                continue;
            }
            let at = match before {
                Some(Before::Tag(t)) => current.iter().position(|x| x == t),
                Some(Before::Id(id)) => rows
                    .iter()
                    .find(|r| &r.id == id)
                    .and_then(|r| r.tag())
                    .and_then(|t| current.iter().position(|x| *x == t)),
                None => None,
            };
            match at {
                Some(p) => current.insert(p, entry.tag.as_str()),
                None => current.push(entry.tag.as_str()),
            }
        }
        for i in (0..target.len().saturating_sub(1)).rev() {
            let (tag, next) = (target[i], target[i + 1]);
            let pos = current.iter().position(|t| *t == tag);
            let next_pos = current.iter().position(|t| *t == next);
            let (Some(pos), Some(next_pos)) = (pos, next_pos) else {
                continue;
            };
            if pos + 1 == next_pos {
                continue;
            }
            let moved = current.remove(pos);
            let np = current.iter().position(|t| *t == next).unwrap_or(current.len());
            current.insert(np, moved);
            // Only rows that exist before this run are moved; a created one
            // was placed right.
            let Some(row) = o.first.get(tag) else { continue };
            let destination = match o.first.get(next) {
                Some(r) => Before::Id(r.id.clone()),
                None => Before::Tag(next.to_string()),
            };
            out.push(Change::new(
                resource(menu, tag),
                format!("before {TAG_PREFIX}{next} in chain {chain}"),
                "misplaced: out of plan order".to_string(),
                RosOp::Move {
                    menu: menu.to_string(),
                    tag: tag.to_string(),
                    id: row.id.clone(),
                    destination,
                },
            ));
        }
    }
    out
}

/// The console path of a menu: `ip/firewall/nat` -> `/ip firewall nat`.
pub fn console_path(menu: &str) -> String {
    format!("/{}", menu.replace('/', " "))
}

pub use crate::ros_script::quote;

/// `[find where comment="warren:<tag>"]`.
fn find_tag(tag: &str) -> String {
    format!("[find where comment={}]", quote(&format!("{TAG_PREFIX}{tag}")))
}

/// `key=value` arguments of a console command; flags set as bare words.
fn args<'a>(props: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        if FLAGS.contains(&k.as_str()) {
            if v.is_empty() || v == "true" || v == "yes" {
                let _ = write!(out, " {k}");
            }
            continue;
        }
        let _ = write!(out, " {k}={}", quote(v));
    }
    out
}

/// One mutating line, guarded so a failure does not stop the rest.
fn guarded(out: &mut String, command: &str, tag: &str) {
    let _ = writeln!(
        out,
        ":do {{ {command} }} on-error={{ :log error {} }}",
        quote(&format!("warren rollback: {tag}"))
    );
}

/// The RouterOS script that restores the previous Warren generation after
/// `ops` were applied on top of `live`: it disarms its own scheduler, then
/// removes what `ops` created, sets back what they changed, and re-adds
/// what they removed (moves are not undone). Every mutating line is
/// guarded with `:do {} on-error={}` so one failure does not stop the rest.
pub fn undo_script(live: &RosState, ops: &[RosOp]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "/system scheduler remove [find where name={}]",
        quote(ROLLBACK_NAME)
    );
    let row_by_id =
        |menu: &str, id: &str| -> Option<&RosRow> { live.menus.get(menu)?.iter().find(|r| r.id == id) };
    // 1. What the ops created, newest first.
    let mut seen = BTreeSet::new();
    for op in ops.iter().rev() {
        if let RosOp::Create { entry, .. } = op {
            if seen.insert((entry.menu.as_str(), entry.tag.as_str())) {
                let cmd = format!("{} remove {}", console_path(&entry.menu), find_tag(&entry.tag));
                guarded(&mut out, &cmd, &entry.tag);
            }
        }
    }
    // 2. What they changed, back to the old values.
    for op in ops.iter().rev() {
        let RosOp::Set { menu, tag, id, props } = op else {
            continue;
        };
        let row = row_by_id(menu, id);
        let old: BTreeMap<String, String> = props
            .keys()
            .filter_map(|k| {
                let v = row
                    .and_then(|r| r.props.get(k).cloned())
                    .or_else(|| default_value(menu, k).map(str::to_string))?;
                Some((k.clone(), v))
            })
            .collect();
        if old.is_empty() {
            continue;
        }
        let cmd = format!("{} set {}{}", console_path(menu), find_tag(tag), args(old.iter()));
        guarded(&mut out, &cmd, tag);
    }
    // 3. What they removed, in dependency order and table order, each
    // before the row that followed it and survives.
    let removed: BTreeSet<(&str, &str)> = ops
        .iter()
        .filter_map(|op| match op {
            RosOp::Remove { menu, id, .. } => Some((menu.as_str(), id.as_str())),
            RosOp::Create { .. } | RosOp::Set { .. } | RosOp::Move { .. } => None,
        })
        .collect();
    for menu in MENUS {
        let Some(rows) = live.menus.get(menu) else {
            continue;
        };
        for (i, row) in rows.iter().enumerate() {
            if !removed.contains(&(menu, row.id.as_str())) {
                continue;
            }
            let tag = row.tag().unwrap_or_default();
            let writable = row
                .props
                .iter()
                .filter(|(k, v)| !state_prop(menu, k) && (!v.is_empty() || FLAGS.contains(&k.as_str())));
            let add = format!("{} add{}", console_path(menu), args(writable));
            if menu == "interface/wireguard" {
                let _ = writeln!(
                    out,
                    "# {}: a re-created WireGuard interface gets a new private key; its peers must learn the new public key",
                    row.props.get("name").map_or(tag, String::as_str)
                );
            }
            let next = ORDERED
                .contains(&menu)
                .then(|| {
                    rows[i + 1..]
                        .iter()
                        .find(|r| !removed.contains(&(menu, r.id.as_str())))
                })
                .flatten();
            let cmd = match next {
                Some(n) => format!(
                    ":do {{ {add} place-before={} }} on-error={{ {add} }}",
                    quote(&n.id)
                ),
                None => add,
            };
            let cmd = format!(
                ":if ([:len [{} find where comment={}]] = 0) do={{ {cmd} }}",
                console_path(menu),
                quote(&format!("{TAG_PREFIX}{tag}"))
            );
            guarded(&mut out, &cmd, tag);
        }
    }
    let _ = writeln!(
        out,
        ":log warning {}",
        quote("warren: rolled back to the previous generation")
    );
    out
}

#[cfg(test)]
#[allow(clippy::wildcard_enum_match_arm)]
mod tests {
    use super::*;
    use crate::diff::Op;
    use crate::ros::RosAccess;

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn entry(menu: &str, tag: &str, kv: &[(&str, &str)], place: Place) -> RosEntry {
        RosEntry {
            menu: menu.into(),
            tag: tag.into(),
            props: props(kv),
            place,
        }
    }

    fn row(id: &str, comment: Option<&str>, kv: &[(&str, &str)]) -> RosRow {
        let mut p = props(kv);
        if let Some(c) = comment {
            p.insert("comment".into(), c.into());
        }
        RosRow {
            id: id.into(),
            props: p,
        }
    }

    fn config(entries: Vec<RosEntry>) -> RosConfig {
        RosConfig {
            access: RosAccess {
                address: "192.168.88.1".parse().unwrap(),
                port: 443,
                user: "warren".into(),
                fingerprint: "00".repeat(32),
            },
            entries,
        }
    }

    fn state(menus: &[(&str, Vec<RosRow>)]) -> RosState {
        RosState {
            menus: menus.iter().map(|(m, r)| (m.to_string(), r.clone())).collect(),
        }
    }

    fn ops(changes: &[Change]) -> Vec<RosOp> {
        changes
            .iter()
            .map(|c| match &c.op {
                Op::Ros(op) => op.clone(),
                other => panic!("not a RouterOS op: {other:?}"),
            })
            .collect()
    }

    const NAT: &str = "ip/firewall/nat";
    const FILTER: &str = "ip/firewall/filter";

    fn dnat(tag: &str, to: &str) -> RosEntry {
        entry(
            NAT,
            tag,
            &[
                ("chain", "warren-dstnat"),
                ("action", "dst-nat"),
                ("protocol", "tcp"),
                ("dst-port", "25565"),
                ("to-addresses", to),
            ],
            Place::InOrder,
        )
    }

    fn dnat_row(id: &str, tag: &str, to: &str) -> RosRow {
        row(
            id,
            Some(&format!("warren:{tag}")),
            &[
                ("chain", "warren-dstnat"),
                ("action", "dst-nat"),
                ("protocol", "tcp"),
                ("dst-port", "25565"),
                ("to-addresses", to),
                ("bytes", "100"),
                ("packets", "2"),
                ("invalid", "false"),
                ("dynamic", "false"),
            ],
        )
    }

    #[test]
    fn equal_inputs_give_no_change() {
        let want = config(vec![
            dnat("nat/a", "192.168.16.20"),
            entry(
                "interface/wireguard",
                "if/wg0",
                &[("name", "wg0"), ("mtu", "1420"), ("listen-port", "51820")],
                Place::InOrder,
            ),
            entry(
                "interface/wireguard/peers",
                "peer/wg0/gateway",
                &[
                    ("interface", "wg0"),
                    ("public-key", "K="),
                    ("allowed-address", "10.0.0.1"),
                    ("persistent-keepalive", "25"),
                    ("responder", "no"),
                ],
                Place::InOrder,
            ),
        ]);
        let live = state(&[
            (NAT, vec![dnat_row("*1", "nat/a", "192.168.16.20")]),
            (
                "interface/wireguard",
                vec![row(
                    "*2",
                    Some("warren:if/wg0"),
                    &[
                        ("name", "wg0"),
                        ("listen-port", "51820"),
                        ("public-key", "ROUTER="),
                        ("running", "true"),
                        ("disabled", "false"),
                    ],
                )],
            ),
            (
                "interface/wireguard/peers",
                vec![row(
                    "*3",
                    Some("warren:peer/wg0/gateway"),
                    &[
                        ("interface", "wg0"),
                        ("public-key", "K="),
                        ("allowed-address", "10.0.0.1/32"),
                        ("persistent-keepalive", "25s"),
                        ("responder", "false"),
                        ("last-handshake", "5s"),
                        ("rx", "10"),
                        ("current-endpoint-address", "1.2.3.4"),
                    ],
                )],
            ),
        ]);
        assert_eq!(diff(Some(&want), Some(&live)), vec![]);
        // The same desired state with nothing live: only creations.
        let c = diff(Some(&want), None);
        assert!(
            c.iter().all(|c| matches!(c.op, Op::Ros(RosOp::Create { .. }))),
            "{c:#?}"
        );
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn canonical_values() {
        assert_eq!(canonical("disabled", "yes"), "true");
        assert_eq!(canonical("fib", "no"), "false");
        assert_eq!(
            canonical("allowed-address", "10.0.0.1,10.1.0.0/24"),
            "10.0.0.1/32,10.1.0.0/24"
        );
        assert_eq!(canonical("persistent-keepalive", "25"), "25s");
        assert_eq!(canonical("persistent-keepalive", "00:00:25"), "25s");
        assert_eq!(canonical("interval", "1m30s"), "90s");
        assert_eq!(canonical("to-addresses", "192.168.16.20"), "192.168.16.20");
        assert_eq!(duration_secs("1d02:00:00"), Some(93_600));
        assert_eq!(duration_secs("1w2d"), Some(777_600));
        assert_eq!(duration_secs("1m5s300ms"), Some(65));
        assert_eq!(duration_secs("abc"), None);
        assert_eq!(duration_secs(""), None);
    }

    #[test]
    fn a_changed_value_is_set_alone_and_named() {
        let want = config(vec![dnat("nat/minecraft-tcp", "192.168.16.20")]);
        let live = state(&[(NAT, vec![dnat_row("*A", "nat/minecraft-tcp", "192.168.16.21")])]);
        let c = diff(Some(&want), Some(&live));
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].resource, "routeros ip/firewall/nat warren:nat/minecraft-tcp");
        assert_eq!(c[0].expected, "to-addresses=192.168.16.20");
        assert_eq!(c[0].actual, "to-addresses=192.168.16.21");
        assert_eq!(
            ops(&c),
            vec![RosOp::Set {
                menu: NAT.into(),
                tag: "nat/minecraft-tcp".into(),
                id: "*A".into(),
                props: props(&[("to-addresses", "192.168.16.20")]),
            }]
        );
    }

    #[test]
    fn absent_equals_the_default_and_router_only_props_are_ignored() {
        let want = config(vec![entry(
            "ip/firewall/mangle",
            "mangle/x",
            &[
                ("chain", "warren-prerouting"),
                ("action", "mark-connection"),
                ("passthrough", "yes"),
                ("disabled", "no"),
                ("log", "no"),
            ],
            Place::InOrder,
        )]);
        let live = state(&[(
            "ip/firewall/mangle",
            vec![row(
                "*1",
                Some("warren:mangle/x"),
                &[
                    ("chain", "warren-prerouting"),
                    ("action", "mark-connection"),
                    ("connection-state", "new"),
                ],
            )],
        )]);
        assert_eq!(diff(Some(&want), Some(&live)), vec![]);
        // Disabled in WinBox: drift, healed by a set.
        let mut live = live;
        live.menus.get_mut("ip/firewall/mangle").unwrap()[0]
            .props
            .insert("disabled".into(), "true".into());
        let c = diff(Some(&want), Some(&live));
        assert_eq!(
            (c[0].expected.as_str(), c[0].actual.as_str()),
            ("disabled=no", "disabled=true")
        );
    }

    #[test]
    fn untagged_and_dynamic_rows_are_never_touched() {
        let live = state(&[(
            FILTER,
            vec![
                row(
                    "*1",
                    None,
                    &[("chain", "forward"), ("action", "fasttrack-connection")],
                ),
                row(
                    "*2",
                    Some("warren:filter/x"),
                    &[("chain", "warren-forward"), ("dynamic", "true")],
                ),
                row(
                    "*3",
                    Some("defconf: drop"),
                    &[("chain", "input"), ("action", "drop")],
                ),
            ],
        )]);
        assert_eq!(diff(None, Some(&live)), vec![]);
        assert_eq!(diff(Some(&config(vec![])), Some(&live)), vec![]);
    }

    #[test]
    fn teardown_removes_every_owned_row_in_reverse_dependency_order() {
        let live = state(&[
            (
                "routing/table",
                vec![row(
                    "*1",
                    Some("warren:table/warren-100"),
                    &[("name", "warren-100"), ("fib", "")],
                )],
            ),
            (
                "interface/wireguard",
                vec![row("*2", Some("warren:if/wg0"), &[("name", "wg0")])],
            ),
            (
                FILTER,
                vec![
                    row("*3", Some("warren:filter/a"), &[("chain", "warren-input")]),
                    row("*4", None, &[("chain", "input")]),
                ],
            ),
            (
                "ip/route",
                vec![row("*8000001", Some("warren:route/warren-100/0.0.0.0/0"), &[])],
            ),
        ]);
        let c = diff(None, Some(&live));
        let order: Vec<(String, String)> = ops(&c)
            .into_iter()
            .map(|o| match o {
                RosOp::Remove { menu, id, .. } => (menu, id),
                other => panic!("{other:?}"),
            })
            .collect();
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order,
            pairs(&[
                (FILTER, "*3"),
                ("ip/route", "*8000001"),
                ("interface/wireguard", "*2"),
                ("routing/table", "*1")
            ])
        );
        assert_eq!(
            (c[0].expected.as_str(), c[0].actual.as_str()),
            ("absent", "present")
        );
    }

    #[test]
    fn orphans_and_duplicates_are_removed_after_every_creation() {
        let want = config(vec![dnat("nat/a", "10.0.0.1"), dnat("nat/b", "10.0.0.2")]);
        let live = state(&[(
            NAT,
            vec![
                dnat_row("*1", "nat/a", "10.0.0.1"),
                dnat_row("*2", "nat/old", "10.0.0.9"),
                dnat_row("*3", "nat/a", "10.0.0.1"),
            ],
        )]);
        let o = ops(&diff(Some(&want), Some(&live)));
        assert!(
            matches!(&o[0], RosOp::Create { entry, before: None } if entry.tag == "nat/b"),
            "{o:#?}"
        );
        let removed: Vec<&str> = o[1..]
            .iter()
            .map(|op| match op {
                RosOp::Remove { id, .. } => id.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(removed, ["*2", "*3"]);
    }

    #[test]
    fn a_new_rule_is_placed_so_the_chain_ends_in_plan_order() {
        let want = config(vec![
            dnat("nat/a", "1.1.1.1"),
            dnat("nat/b", "2.2.2.2"),
            dnat("nat/c", "3.3.3.3"),
            dnat("nat/d", "4.4.4.4"),
        ]);
        let live = state(&[(
            NAT,
            vec![
                dnat_row("*1", "nat/a", "1.1.1.1"),
                dnat_row("*3", "nat/c", "3.3.3.3"),
            ],
        )]);
        let o = ops(&diff(Some(&want), Some(&live)));
        assert_eq!(o.len(), 2, "{o:#?}");
        assert!(
            matches!(&o[0], RosOp::Create { entry, before: Some(Before::Id(id)) } if entry.tag == "nat/b" && id == "*3")
        );
        assert!(matches!(&o[1], RosOp::Create { entry, before: None } if entry.tag == "nat/d"));
        // Nothing there yet: everything appended in order, no placement.
        let o = ops(&diff(Some(&want), Some(&state(&[]))));
        assert!(
            o.iter()
                .all(|op| matches!(op, RosOp::Create { before: None, .. })),
            "{o:#?}"
        );
    }

    #[test]
    fn rows_out_of_plan_order_are_moved() {
        let want = config(vec![
            dnat("nat/a", "1.1.1.1"),
            dnat("nat/b", "2.2.2.2"),
            dnat("nat/c", "3.3.3.3"),
        ]);
        let live = state(&[(
            NAT,
            vec![
                dnat_row("*3", "nat/c", "3.3.3.3"),
                dnat_row("*1", "nat/a", "1.1.1.1"),
            ],
        )]);
        let c = diff(Some(&want), Some(&live));
        let o = ops(&c);
        assert_eq!(o.len(), 2, "{c:#?}");
        assert!(
            matches!(&o[0], RosOp::Create { entry, before: Some(Before::Id(id)) } if entry.tag == "nat/b" && id == "*3")
        );
        assert_eq!(
            o[1],
            RosOp::Move {
                menu: NAT.into(),
                tag: "nat/a".into(),
                id: "*1".into(),
                destination: Before::Tag("nat/b".into())
            }
        );
        assert_eq!(c[1].actual, "misplaced: out of plan order");
        // In order: nothing to do.
        let live = state(&[(
            NAT,
            vec![
                dnat_row("*1", "nat/a", "1.1.1.1"),
                dnat_row("*2", "nat/b", "2.2.2.2"),
                dnat_row("*3", "nat/c", "3.3.3.3"),
            ],
        )]);
        assert_eq!(diff(Some(&want), Some(&live)), vec![]);
    }

    fn jump() -> RosEntry {
        entry(
            FILTER,
            "jump/filter-forward",
            &[
                ("chain", "forward"),
                ("action", "jump"),
                ("jump-target", "warren-forward"),
            ],
            Place::Top,
        )
    }

    fn defconf() -> Vec<RosRow> {
        vec![
            row(
                "*1",
                Some("special dummy rule to show fasttrack counters"),
                &[
                    ("chain", "forward"),
                    ("action", "passthrough"),
                    ("dynamic", "true"),
                ],
            ),
            row(
                "*5",
                Some("defconf: fasttrack"),
                &[("chain", "forward"), ("action", "fasttrack-connection")],
            ),
            row("*6", None, &[("chain", "forward"), ("action", "accept")]),
        ]
    }

    #[test]
    fn a_jump_is_created_above_the_first_static_rule_of_its_chain() {
        let want = config(vec![jump()]);
        let live = state(&[(FILTER, defconf())]);
        let o = ops(&diff(Some(&want), Some(&live)));
        assert!(
            matches!(&o[0], RosOp::Create { before: Some(Before::Id(id)), .. } if id == "*5"),
            "{o:#?}"
        );
        // An empty chain: appended.
        let o = ops(&diff(Some(&want), Some(&state(&[]))));
        assert!(matches!(&o[0], RosOp::Create { before: None, .. }));
    }

    #[test]
    fn a_jump_below_fasttrack_is_moved_back_above_it() {
        let want = config(vec![jump()]);
        let mut rows = defconf();
        rows.push(row(
            "*9",
            Some("warren:jump/filter-forward"),
            &[
                ("chain", "forward"),
                ("action", "jump"),
                ("jump-target", "warren-forward"),
            ],
        ));
        let c = diff(Some(&want), Some(&state(&[(FILTER, rows.clone())])));
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].actual, "misplaced: below 'defconf: fasttrack'");
        assert_eq!(c[0].expected, "above every other rule of chain forward");
        assert_eq!(
            ops(&c)[0],
            RosOp::Move {
                menu: FILTER.into(),
                tag: "jump/filter-forward".into(),
                id: "*9".into(),
                destination: Before::Id("*5".into())
            }
        );
        // Right after the leading dynamic row: in place.
        let jump_row = rows.pop().unwrap();
        rows.insert(1, jump_row);
        assert_eq!(diff(Some(&want), Some(&state(&[(FILTER, rows)]))), vec![]);
    }

    #[test]
    fn a_peer_with_a_new_key_is_replaced_and_a_new_interface_is_created_first() {
        let peer = |iface: &str, key: &str| {
            entry(
                "interface/wireguard/peers",
                "peer/wg0/gateway",
                &[
                    ("interface", iface),
                    ("public-key", key),
                    ("allowed-address", "0.0.0.0/0"),
                ],
                Place::InOrder,
            )
        };
        let live = state(&[(
            "interface/wireguard/peers",
            vec![row(
                "*4",
                Some("warren:peer/wg0/gateway"),
                &[
                    ("interface", "wg0"),
                    ("public-key", "OLD="),
                    ("allowed-address", "0.0.0.0/0"),
                ],
            )],
        )]);
        // Same interface, new key: the old peer goes first (its allowed
        // addresses would overlap), then the new one.
        let c = diff(Some(&config(vec![peer("wg0", "NEW=")])), Some(&live));
        let o = ops(&c);
        assert!(matches!(&o[0], RosOp::Remove { id, .. } if id == "*4"), "{o:#?}");
        assert!(matches!(&o[1], RosOp::Create { before: None, .. }), "{o:#?}");
        assert_eq!(c[1].expected, "public-key=NEW=");
        assert_eq!(c[1].actual, "public-key=OLD= (cannot change in place: replaced)");
        // Another interface: create before delete, placed before the old row.
        let o = ops(&diff(Some(&config(vec![peer("wg1", "OLD=")])), Some(&live)));
        assert!(
            matches!(&o[0], RosOp::Create { before: Some(Before::Id(id)), .. } if id == "*4"),
            "{o:#?}"
        );
        assert!(matches!(&o[1], RosOp::Remove { id, .. } if id == "*4"));
    }

    #[test]
    fn quoting_follows_the_console_rules() {
        assert_eq!(quote("wg0"), "wg0");
        assert_eq!(quote("10.0.0.1/32,10.0.0.2"), "10.0.0.1/32,10.0.0.2");
        assert_eq!(quote("!warren-wan"), "!warren-wan");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\" \\ $x?"), "\"say \\\"hi\\\" \\\\ \\$x\\?\"");
        assert_eq!(quote("l1\nl2\u{1b}"), "\"l1\\nl2\\1B\"");
        assert_eq!(quote("K+/x="), "\"K+/x=\"");
        assert_eq!(
            console_path("interface/wireguard/peers"),
            "/interface wireguard peers"
        );
    }

    #[test]
    fn the_undo_script_inverts_each_op_in_reverse() {
        let live = state(&[
            (
                NAT,
                vec![
                    dnat_row("*1", "nat/a", "10.0.0.1"),
                    dnat_row("*2", "nat/old", "10.0.0.9"),
                    row("*7", None, &[("chain", "dstnat"), ("action", "accept")]),
                ],
            ),
            (
                "interface/wireguard",
                vec![row(
                    "*2",
                    Some("warren:if/wg1"),
                    &[
                        ("name", "wg1"),
                        ("mtu", "1340"),
                        ("public-key", "PUB="),
                        ("private-key", "SECRET="),
                        ("running", "true"),
                    ],
                )],
            ),
            (
                "routing/table",
                vec![row(
                    "*3",
                    Some("warren:table/warren-100"),
                    &[("name", "warren-100"), ("fib", ""), ("dynamic", "false")],
                )],
            ),
        ]);
        let ops = vec![
            RosOp::Create {
                entry: dnat("nat/new", "10.0.0.5"),
                before: None,
            },
            RosOp::Set {
                menu: NAT.into(),
                tag: "nat/a".into(),
                id: "*1".into(),
                props: props(&[("to-addresses", "10.0.0.2"), ("log", "yes")]),
            },
            RosOp::Move {
                menu: NAT.into(),
                tag: "nat/a".into(),
                id: "*1".into(),
                destination: Before::Id("*2".into()),
            },
            RosOp::Remove {
                menu: NAT.into(),
                tag: "nat/old".into(),
                id: "*2".into(),
            },
            RosOp::Remove {
                menu: "interface/wireguard".into(),
                tag: "if/wg1".into(),
                id: "*2".into(),
            },
            RosOp::Remove {
                menu: "routing/table".into(),
                tag: "table/warren-100".into(),
                id: "*3".into(),
            },
        ];
        let s = undo_script(&live, &ops);
        let expected = [
            "/system scheduler remove [find where name=warren-rollback]",
            ":do { /ip firewall nat remove [find where comment=\"warren:nat/new\"] } on-error={ :log error \"warren rollback: nat/new\" }",
            ":do { /ip firewall nat set [find where comment=\"warren:nat/a\"] log=false to-addresses=10.0.0.1 } on-error={ :log error \"warren rollback: nat/a\" }",
            ":do { :if ([:len [/routing table find where comment=\"warren:table/warren-100\"]] = 0) do={ /routing table add comment=\"warren:table/warren-100\" fib name=warren-100 } } on-error={ :log error \"warren rollback: table/warren-100\" }",
            "# wg1: a re-created WireGuard interface gets a new private key; its peers must learn the new public key",
            ":do { :if ([:len [/interface wireguard find where comment=\"warren:if/wg1\"]] = 0) do={ /interface wireguard add comment=\"warren:if/wg1\" mtu=1340 name=wg1 } } on-error={ :log error \"warren rollback: if/wg1\" }",
            ":do { :if ([:len [/ip firewall nat find where comment=\"warren:nat/old\"]] = 0) do={ :do { /ip firewall nat add action=dst-nat chain=warren-dstnat comment=\"warren:nat/old\" dst-port=25565 protocol=tcp to-addresses=10.0.0.9 place-before=*7 } on-error={ /ip firewall nat add action=dst-nat chain=warren-dstnat comment=\"warren:nat/old\" dst-port=25565 protocol=tcp to-addresses=10.0.0.9 } } } on-error={ :log error \"warren rollback: nat/old\" }",
            ":log warning \"warren: rolled back to the previous generation\"",
        ];
        assert_eq!(s.lines().collect::<Vec<_>>(), expected, "{s}");
        assert!(!s.contains("SECRET") && !s.contains("PUB="), "{s}");
        // No op: the script only disarms and logs.
        assert_eq!(undo_script(&live, &[]).lines().count(), 2);
    }
}
