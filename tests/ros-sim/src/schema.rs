//! The menus the simulator serves: their commands and the argument names of
//! `add` and `set`, written from RouterOS v7's documented menus (the
//! MikroTik manual pages for WireGuard, IP addressing, routing, firewall,
//! scheduler and scripting). A conformance test checks every name here
//! against a `/console/inspect` dump of RouterOS 7.24 when one is present.
//!
//! The lists are the arguments the simulator implements, a subset of
//! RouterOS's: an argument RouterOS has but this table lacks is refused with
//! `unknown parameter <name>`, as RouterOS refuses an argument it lacks.

use std::sync::OnceLock;

/// One menu (`ip/firewall/nat`, no leading slash).
#[derive(Clone, Debug)]
pub struct Menu {
    /// The path.
    pub path: &'static str,
    /// Commands served through `POST /rest/<path>/<command>` (and the verbs:
    /// `add` = PUT, `set` = PATCH, `remove` = DELETE, `print` = GET).
    pub commands: Vec<&'static str>,
    /// Arguments of `add` (without `place-before`, see [`Menu::ordered`]).
    pub add: Vec<&'static str>,
    /// Arguments of `set` (without `numbers`).
    pub set: Vec<&'static str>,
    /// Whether rows are ordered by the user: `place-before` on add, `move`.
    pub ordered: bool,
    /// Whether items can be addressed by `name`.
    pub named: bool,
    /// A single object (`GET` returns a bare object).
    pub singleton: bool,
    /// Whether `disabled` (and `log`, `log-prefix`) is left out of a row
    /// until it is written (firewall rules, static routes).
    pub sparse_disabled: bool,
    /// Whether the menu is in the 7.24 inspect subset the conformance test
    /// reads (menus outside it are listed as not checked).
    pub in_subset: bool,
}

impl Menu {
    /// Argument names a command takes, as `/console/inspect` lists them.
    pub fn args_of(&self, command: &str) -> Vec<&'static str> {
        match command {
            "add" => {
                let mut a = self.add.clone();
                if self.ordered {
                    a.push("place-before");
                }
                a
            }
            "set" => {
                let mut a = self.set.clone();
                if !self.singleton {
                    a.push("numbers");
                }
                a
            }
            "remove" | "enable" | "disable" => vec!["numbers"],
            "unset" => vec!["numbers", "value-name"],
            "move" => vec!["numbers", "destination"],
            "run" => vec!["number"],
            _ => vec![],
        }
    }
    /// Whether the menu serves this command.
    pub fn has(&self, command: &str) -> bool {
        self.commands.contains(&command)
    }
}

const FW_COMMON: &[&str] = &[
    "action",
    "address-list",
    "address-list-timeout",
    "chain",
    "comment",
    "connection-bytes",
    "connection-limit",
    "connection-mark",
    "connection-rate",
    "connection-type",
    "content",
    "disabled",
    "dscp",
    "dst-address",
    "dst-address-list",
    "dst-address-type",
    "dst-limit",
    "dst-port",
    "fragment",
    "icmp-options",
    "in-bridge-port",
    "in-interface",
    "in-interface-list",
    "ingress-priority",
    "ipsec-policy",
    "jump-target",
    "limit",
    "log",
    "log-prefix",
    "nth",
    "out-bridge-port",
    "out-interface",
    "out-interface-list",
    "packet-mark",
    "packet-size",
    "per-connection-classifier",
    "port",
    "priority",
    "protocol",
    "random",
    "routing-mark",
    "src-address",
    "src-address-list",
    "src-address-type",
    "src-mac-address",
    "src-port",
    "tcp-mss",
    "time",
    "ttl",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = base.iter().chain(extra).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[allow(clippy::too_many_arguments)]
fn menu(
    path: &'static str,
    commands: &[&'static str],
    set: Vec<&'static str>,
    add_only: &[&'static str],
    ordered: bool,
    named: bool,
    sparse_disabled: bool,
    in_subset: bool,
) -> Menu {
    let add = if commands.contains(&"add") {
        with(&set, add_only)
    } else {
        vec![]
    };
    Menu {
        path,
        commands: commands.to_vec(),
        add,
        set,
        ordered,
        named,
        singleton: false,
        sparse_disabled,
        in_subset,
    }
}

const TABLE: &[&str] = &["add", "set", "remove", "print", "enable", "disable"];
const FW: &[&str] = &[
    "add", "set", "remove", "print", "enable", "disable", "unset", "move",
];

fn build() -> Vec<Menu> {
    let fw_stateful = &["connection-nat-state", "connection-state", "tcp-flags"];
    let mut filter = with(FW_COMMON, fw_stateful);
    filter = with(&filter, &["reject-with", "tls-host"]);
    let nat = with(FW_COMMON, &["to-addresses", "to-ports", "randomise-ports"]);
    let mangle = with(
        &with(FW_COMMON, fw_stateful),
        &[
            "new-connection-mark",
            "new-dscp",
            "new-mss",
            "new-packet-mark",
            "new-priority",
            "new-routing-mark",
            "new-ttl",
            "passthrough",
            "route-dst",
        ],
    );
    let mut v = vec![
        menu(
            "routing/table",
            &["add", "set", "remove", "print", "enable", "disable", "unset"],
            with(&["comment", "disabled", "fib", "name"], &[]),
            &[],
            false,
            true,
            false,
            true,
        ),
        // Ethernet, bridge and WireGuard interfaces alike: no `add` here.
        menu(
            "interface",
            &["set", "print", "enable", "disable"],
            with(&["comment", "disabled", "mtu"], &[]),
            &[],
            false,
            true,
            false,
            false,
        ),
        menu(
            "interface/list",
            &["add", "set", "remove", "print"],
            with(&["comment", "exclude", "include", "name"], &[]),
            &[],
            false,
            true,
            false,
            true,
        ),
        menu(
            "interface/list/member",
            TABLE,
            with(&["comment", "disabled", "interface", "list"], &[]),
            &[],
            false,
            false,
            false,
            true,
        ),
        menu(
            "interface/wireguard",
            TABLE,
            with(
                &["comment", "disabled", "listen-port", "mtu", "name", "private-key"],
                &[],
            ),
            &[],
            false,
            true,
            false,
            true,
        ),
        menu(
            "interface/wireguard/peers",
            &["add", "set", "remove", "print", "enable", "disable", "move"],
            with(
                &[
                    "allowed-address",
                    "comment",
                    "disabled",
                    "endpoint-address",
                    "endpoint-port",
                    "interface",
                    "name",
                    "persistent-keepalive",
                    "preshared-key",
                    "public-key",
                    "responder",
                ],
                &[],
            ),
            &[],
            true,
            true,
            false,
            true,
        ),
        menu(
            "ip/address",
            TABLE,
            with(&["address", "comment", "disabled", "interface", "network"], &[]),
            &[],
            false,
            false,
            false,
            true,
        ),
        menu(
            "ip/route",
            &["add", "set", "remove", "print", "enable", "disable", "unset"],
            with(
                &[
                    "blackhole",
                    "check-gateway",
                    "comment",
                    "disabled",
                    "distance",
                    "dst-address",
                    "gateway",
                    "pref-src",
                    "routing-table",
                    "scope",
                    "target-scope",
                ],
                &[],
            ),
            &[],
            false,
            false,
            true,
            true,
        ),
        menu(
            "routing/rule",
            FW,
            with(
                &[
                    "action",
                    "comment",
                    "disabled",
                    "dst-address",
                    "interface",
                    "min-prefix",
                    "routing-mark",
                    "src-address",
                    "table",
                ],
                &[],
            ),
            &[],
            true,
            false,
            false,
            true,
        ),
        menu("ip/firewall/filter", FW, filter, &[], true, false, true, true),
        menu("ip/firewall/nat", FW, nat, &[], true, false, true, true),
        menu("ip/firewall/mangle", FW, mangle, &[], true, false, true, true),
        menu(
            "ip/firewall/address-list",
            TABLE,
            with(&["address", "comment", "disabled", "list", "timeout"], &[]),
            &[],
            false,
            false,
            false,
            true,
        ),
        menu(
            "system/script",
            &["add", "set", "remove", "print", "run"],
            with(
                &["comment", "dont-require-permissions", "name", "policy", "source"],
                &[],
            ),
            &[],
            false,
            true,
            false,
            true,
        ),
        menu(
            "system/scheduler",
            TABLE,
            with(
                &[
                    "comment",
                    "disabled",
                    "interval",
                    "name",
                    "on-event",
                    "policy",
                    "start-date",
                    "start-time",
                ],
                &[],
            ),
            &[],
            false,
            true,
            false,
            true,
        ),
        menu(
            "ip/service",
            &["set", "print", "enable", "disable"],
            with(
                &[
                    "address",
                    "certificate",
                    "disabled",
                    "max-sessions",
                    "port",
                    "tls-version",
                ],
                &[],
            ),
            &[],
            false,
            true,
            false,
            true,
        ),
    ];
    let mut identity = menu(
        "system/identity",
        &["set", "print"],
        vec!["name"],
        &[],
        false,
        false,
        false,
        false,
    );
    identity.singleton = true;
    let mut resource = menu(
        "system/resource",
        &["print"],
        vec![],
        &[],
        false,
        false,
        false,
        false,
    );
    resource.singleton = true;
    v.push(identity);
    v.push(resource);
    v
}

/// Every menu the simulator serves.
pub fn menus() -> &'static [Menu] {
    static MENUS: OnceLock<Vec<Menu>> = OnceLock::new();
    MENUS.get_or_init(build)
}

/// One menu by path.
pub fn menu_of(path: &str) -> Option<&'static Menu> {
    menus().iter().find(|m| m.path == path)
}

/// Whether `path` is a menu the simulator knows, or a directory above one
/// (`ip`, `ip/firewall`).
pub fn is_dir(path: &str) -> bool {
    menus()
        .iter()
        .any(|m| m.path == path || m.path.starts_with(&format!("{path}/")))
}

/// Properties RouterOS reads back as `"true"`/`"false"` (writes accept
/// `yes`/`no` too).
pub const BOOLEANS: &[&str] = &[
    "disabled",
    "log",
    "passthrough",
    "responder",
    "dont-require-permissions",
    "randomise-ports",
];

/// Flags: `""` when set, absent when not.
pub const FLAGS: &[&str] = &["fib", "blackhole"];

/// Commands that change the configuration (counted as writes over REST).
pub const MUTATING: &[&str] = &[
    "add", "set", "remove", "enable", "disable", "unset", "move", "run",
];
