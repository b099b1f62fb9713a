//! The default configuration of a home MikroTik (RouterOS v7 `defconf`):
//! interface lists LAN and WAN, the default firewall with FastTrack and the
//! input drop, and masquerade. Rows are seeded as RouterOS creates them,
//! without the REST validation (defconf's FastTrack rule carries
//! `hw-offload`, which 7.24's `add` no longer accepts).

use crate::router::Router;

/// Seed defconf: `lan` is the LAN bridge, `wan` the uplink.
pub fn seed(r: &mut Router, lan: &str, wan: &str) {
    r.seed(
        "interface/list",
        false,
        &[
            ("name", "WAN"),
            ("comment", "defconf"),
            ("builtin", "false"),
            ("include", ""),
            ("exclude", ""),
        ],
    );
    r.seed(
        "interface/list",
        false,
        &[
            ("name", "LAN"),
            ("comment", "defconf"),
            ("builtin", "false"),
            ("include", ""),
            ("exclude", ""),
        ],
    );
    r.seed(
        "interface/list/member",
        false,
        &[
            ("list", "LAN"),
            ("interface", lan),
            ("comment", "defconf"),
            ("disabled", "false"),
        ],
    );
    r.seed(
        "interface/list/member",
        false,
        &[
            ("list", "WAN"),
            ("interface", wan),
            ("comment", "defconf"),
            ("disabled", "false"),
        ],
    );

    let f = "ip/firewall/filter";
    let rule = |r: &mut Router, menu: &str, dynamic: bool, pairs: &[(&str, &str)]| {
        let mut p: Vec<(&str, &str)> = pairs.to_vec();
        p.extend([("bytes", "0"), ("packets", "0"), ("invalid", "false")]);
        r.seed(menu, dynamic, &p);
    };
    rule(
        r,
        f,
        true,
        &[
            ("chain", "forward"),
            ("action", "passthrough"),
            ("comment", "special dummy rule to show fasttrack counters"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "input"),
            ("action", "accept"),
            ("connection-state", "established,related,untracked"),
            ("comment", "defconf: accept established,related,untracked"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "input"),
            ("action", "drop"),
            ("connection-state", "invalid"),
            ("comment", "defconf: drop invalid"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "input"),
            ("action", "accept"),
            ("protocol", "icmp"),
            ("comment", "defconf: accept ICMP"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "input"),
            ("action", "accept"),
            ("dst-address", "127.0.0.1"),
            ("comment", "defconf: accept to local loopback (for CAPsMAN)"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "input"),
            ("action", "drop"),
            ("in-interface-list", "!LAN"),
            ("comment", "defconf: drop all not coming from LAN"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "forward"),
            ("action", "accept"),
            ("ipsec-policy", "in,ipsec"),
            ("comment", "defconf: accept in ipsec policy"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "forward"),
            ("action", "accept"),
            ("ipsec-policy", "out,ipsec"),
            ("comment", "defconf: accept out ipsec policy"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "forward"),
            ("action", "fasttrack-connection"),
            ("connection-state", "established,related"),
            ("hw-offload", "true"),
            ("comment", "defconf: fasttrack"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "forward"),
            ("action", "accept"),
            ("connection-state", "established,related,untracked"),
            ("comment", "defconf: accept established,related, untracked"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "forward"),
            ("action", "drop"),
            ("connection-state", "invalid"),
            ("comment", "defconf: drop invalid"),
        ],
    );
    rule(
        r,
        f,
        false,
        &[
            ("chain", "forward"),
            ("action", "drop"),
            ("connection-state", "new"),
            ("connection-nat-state", "!dstnat"),
            ("in-interface-list", "WAN"),
            ("comment", "defconf: drop all from WAN not DSTNATed"),
        ],
    );
    rule(
        r,
        "ip/firewall/nat",
        false,
        &[
            ("chain", "srcnat"),
            ("action", "masquerade"),
            ("out-interface-list", "WAN"),
            ("ipsec-policy", "out,none"),
            ("comment", "defconf: masquerade"),
        ],
    );
    r.refresh();
}
