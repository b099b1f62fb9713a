//! The RouterOS v7 side of a plan: the objects Warren wants on a MikroTik
//! router, as RouterOS itself names them (menus, argument names, string
//! values), the live slice Warren owns there, and the pure decisions about
//! it (diff, scripts).
//!
//! A RouterOS plan ([`crate::Platform::Routeros`]) carries a [`RosConfig`]:
//! one [`RosEntry`] per object, in apply order (dependencies first; within a
//! firewall chain, the rule order). Every entry is identified by its tag,
//! written on the router as `comment="warren:<tag>"` ([`TAG_PREFIX`]); rows
//! without that prefix, and `dynamic` rows, are never touched. Warren's
//! firewall rules live in its own `warren-*` chains, reached by one jump rule
//! per built-in chain ([`Place::Top`]).
//!
//! Values are RouterOS's own strings (`"1420"`, `"yes"`, `"25s"`), as the
//! REST API and the console take them. `.id`s are never part of a plan or a
//! stored state: they are read again on every run and only travel inside the
//! operations of that run.
//!
//! Like the rest of the crate this module is pure: no I/O, no clock.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The comment prefix that marks a RouterOS row as Warren's.
pub const TAG_PREFIX: &str = "warren:";

/// Prefix of Warren's own firewall chains and of its named objects
/// (routing table, scripts, schedulers).
pub const NAME_PREFIX: &str = "warren-";

/// The menus Warren writes, in dependency order (create in this order,
/// delete in reverse). Paths as in REST (`/rest/<menu>`) and in the console
/// (`/<menu>`).
pub const MENUS: [&str; 9] = [
    "routing/table",
    "interface/wireguard",
    "interface/wireguard/peers",
    "ip/address",
    "ip/route",
    "routing/rule",
    "ip/firewall/mangle",
    "ip/firewall/nat",
    "ip/firewall/filter",
];

/// Name of the rollback script and of its scheduler entry on the router.
pub const ROLLBACK_NAME: &str = "warren-rollback";

/// How the agent host reaches the router's REST API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosAccess {
    /// The router's address as seen from its agent host.
    pub address: Ipv4Addr,
    /// The `www-ssl` port (443 by default).
    pub port: u16,
    /// The RouterOS user Warren logs in as (its password stays in a file on
    /// the agent host, never in git, plans or logs).
    pub user: String,
    /// SHA-256 of the router's TLS certificate (DER), lowercase hex without
    /// separators: the only certificate the agent accepts.
    pub fingerprint: String,
}

/// Where an entry sits in its menu.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// Anywhere (unordered menus), or, in a firewall menu, in the order of
    /// the plan's entries among Warren's rows of the same chain.
    InOrder,
    /// A jump rule in a built-in chain: above every row of that chain that is
    /// not Warren's and not dynamic.
    Top,
}

/// One RouterOS object Warren wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosEntry {
    /// The menu, e.g. `ip/firewall/nat` (one of [`MENUS`]).
    pub menu: String,
    /// The identity: the row carries `comment="warren:<tag>"`. Unique within
    /// the menu, e.g. `dnat/minecraft-tcp`.
    pub tag: String,
    /// The properties Warren sets, RouterOS argument name -> value, without
    /// `comment`, `.id` or `place-before`.
    pub props: BTreeMap<String, String>,
    /// Where the row goes.
    pub place: Place,
}

impl RosEntry {
    /// The comment the row carries on the router.
    pub fn comment(&self) -> String {
        format!("{TAG_PREFIX}{}", self.tag)
    }
}

/// Everything Warren wants on one RouterOS router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosConfig {
    /// How the agent reaches the router.
    pub access: RosAccess,
    /// The objects, in apply order.
    pub entries: Vec<RosEntry>,
}

/// One row as the router returns it: every value a string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosRow {
    /// The row's `.id` (`*1A`), valid for this run only.
    pub id: String,
    /// Every property returned, `.id` excluded.
    pub props: BTreeMap<String, String>,
}

impl RosRow {
    /// Whether the router made the row itself (`dynamic=true`).
    pub fn dynamic(&self) -> bool {
        self.props.get("dynamic").is_some_and(|v| v == "true")
    }
    /// Whether the row carries Warren's tag.
    pub fn owned(&self) -> bool {
        self.tag().is_some()
    }
    /// The tag, when the comment is Warren's.
    pub fn tag(&self) -> Option<&str> {
        self.props.get("comment")?.strip_prefix(TAG_PREFIX)
    }
}

/// The live router as the agent read it: for each of [`MENUS`], every row in
/// table order (Warren's and foreign ones: placement needs both).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosState {
    /// Menu -> rows in the router's order.
    pub menus: BTreeMap<String, Vec<RosRow>>,
}

/// Where a created row goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Before {
    /// Before the row with this `.id` (read in this run).
    Id(String),
    /// Before Warren's row with this tag, created earlier in this run.
    Tag(String),
}

/// An operation on the router (one REST request each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RosOp {
    /// `PUT /rest/<menu>`: create the entry, before `before` if given.
    Create {
        /// The entry, as the plan wants it.
        entry: RosEntry,
        /// `place-before`, for ordered menus.
        before: Option<Before>,
    },
    /// `PATCH /rest/<menu>/<id>`: set these properties on Warren's row
    /// (`"!name": ""` unsets one).
    Set {
        /// The menu.
        menu: String,
        /// The row's tag.
        tag: String,
        /// The row's `.id`.
        id: String,
        /// The properties to write.
        props: BTreeMap<String, String>,
    },
    /// `DELETE /rest/<menu>/<id>`: remove Warren's row.
    Remove {
        /// The menu.
        menu: String,
        /// The row's tag.
        tag: String,
        /// The row's `.id`.
        id: String,
    },
    /// `POST /rest/<menu>/move`: put Warren's row just before `destination`.
    Move {
        /// The menu.
        menu: String,
        /// The row's tag.
        tag: String,
        /// The row's `.id`.
        id: String,
        /// The row it must come before.
        destination: Before,
    },
}

/// Compare the RouterOS objects a plan wants with the router's live rows.
/// `None` wants nothing (teardown) / means nothing could be read. The result
/// is ordered to be applied as is: creations (dependencies first, a
/// replacement before the row it replaces), changes, moves, then removals in
/// reverse dependency order. Equal inputs give no change at all.
pub fn diff(want: Option<&RosConfig>, live: Option<&RosState>) -> Vec<crate::Change> {
    crate::ros_diff::diff(want, live)
}

/// The plan as a RouterOS script a person could paste into a terminal: one
/// `/menu add …` line per entry, in apply order, values quoted as the
/// console wants them.
/// The header names the router by its address; [`crate::Plan::routeros_script`]
/// names it by its host. See [`crate::ros_script`].
pub fn render_script(cfg: &RosConfig) -> String {
    crate::ros_script::render(&cfg.access.address.to_string(), cfg)
}
