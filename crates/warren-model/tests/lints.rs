//! Every lint, with its exact message and location.
//!
//! Each test starts from BASE (valid), changes one thing, and asserts the
//! complete rendered diagnostics. Line numbers refer to the edited text.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use warren_model::load_str;

const BASE: &str = "\
version: 1
hosts:
  gateway:
    role: gateway
    public_address: 203.0.113.10
    uplink: enp0s6
    management: [2222/tcp]
  router:
    role: router
    lans:
      lan: { interface: br-lan, address: 192.168.16.1/24 }
wan_vpn:
  gateway: gateway
  router: router
  subnet: 10.0.18.0/30
  port: 51820
private_vpn:
  server: router
  port: 13131
  subnet: 192.168.17.0/24
  clients:
    phone:
      address: 192.168.17.69
      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=
forwards:
  minecraft: { port: 25565/tcp, to: 192.168.16.20 }
";

/// BASE with `from` replaced by `to` (exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "edit target {from:?} must be unique"
    );
    BASE.replace(from, to)
}

fn diags(text: &str) -> String {
    let (cfg, d) = load_str(text, "warren.yaml");
    if d.has_errors() {
        assert!(cfg.is_none(), "an invalid file must compile to nothing");
    }
    d.to_string()
}

#[track_caller]
fn check(text: &str, expected: &str) {
    let got = diags(text);
    assert_eq!(got.trim_end(), expected.trim_end(), "\n--- got ---\n{got}");
}

#[test]
fn base_is_valid() {
    let (cfg, d) = load_str(BASE, "warren.yaml");
    assert!(d.is_empty(), "{d}");
    let cfg = cfg.expect("valid");
    assert_eq!(cfg.wan.table, 100);
    assert_eq!(cfg.wan.mark, 10);
    assert_eq!(cfg.wan.router_address.to_string(), "10.0.18.2");
    assert_eq!(
        cfg.private.as_ref().map(|p| p.address.to_string()),
        Some("192.168.17.1".into())
    );
}

#[test]
fn yaml_syntax_error_has_position() {
    check(
        &edit(
            "    public_address: 203.0.113.10\n",
            "   public_address: 203.0.113.10\n",
        ),
        "warren.yaml:5:4: error[yaml-syntax]: while parsing a block mapping, did not find expected key",
    );
}

#[test]
fn unknown_key() {
    check(
        &edit("  port: 51820\n", "  prot: 51820\n"),
        "warren.yaml:16:3: error[unknown-key]: unknown field `prot`, expected one of gateway, router, subnet, gateway_address, router_address, port, keepalive, interface, forward_all, table, mark, rule_priority\n  hint: check the spelling; docs/reference.md lists every key",
    );
}

#[test]
fn duplicate_key() {
    check(
        &edit("  port: 51820\n", "  port: 51820\n  port: 51821\n"),
        "warren.yaml:17:3: error[duplicate-key]: duplicate mapping key: port\n  hint: each key may appear once in a mapping",
    );
}

#[test]
fn malformed_subnet() {
    check(
        &edit("subnet: 10.0.18.0/30", "subnet: 10.0.18.1/30"),
        "warren.yaml:15:11: error[malformed-subnet]: wan_vpn.subnet 10.0.18.1/30 has host bits set\n  hint: did you mean 10.0.18.0/30?",
    );
}

#[test]
fn bad_prefix_length() {
    check(
        &edit("subnet: 10.0.18.0/30", "subnet: 10.0.18.0/33"),
        "warren.yaml:15:11: error[bad-address]: wan_vpn.subnet \"10.0.18.0/33\": prefix length must be a number from 0 to 32",
    );
}

#[test]
fn overlapping_subnets() {
    check(
        &edit("  subnet: 192.168.17.0/24\n", "  subnet: 192.168.16.0/23\n"),
        "warren.yaml:20:11: error[subnet-overlap]: private_vpn.subnet 192.168.16.0/23 overlaps LAN \"lan\" 192.168.16.0/24\n  note: LAN \"lan\" is declared at line 11, column 42\n  hint: each network needs its own address range",
    );
}

/// The seed as written: the router's private VPN interface is 10.0.17.1/24
/// while the phone expects the server at 192.168.17.1.
#[test]
fn seed_private_vpn_address_inconsistency() {
    let text = edit(
        "  subnet: 192.168.17.0/24\n",
        "  subnet: 192.168.17.0/24\n  address: 10.0.17.1\n",
    );
    check(
        &text,
        "warren.yaml:21:12: error[address-outside-subnet]: private_vpn.address 10.0.17.1 is outside its subnet 192.168.17.0/24\n  hint: clients route 192.168.17.0/24 into the VPN and expect the server inside it; use address: 192.168.17.1",
    );
}

#[test]
fn client_routes_miss_the_server() {
    let text = edit(
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n",
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n      routes: [192.168.16.0/24]\n",
    );
    check(
        &text,
        "warren.yaml:25:16: error[unreachable-server]: client \"phone\" routes do not include the server's address 192.168.17.1\n  hint: add 192.168.17.1/32 (or the whole VPN subnet) to its routes",
    );
}

#[test]
fn client_address_outside_subnet() {
    check(
        &edit("address: 192.168.17.69", "address: 192.168.18.69"),
        "warren.yaml:23:16: error[address-outside-subnet]: client \"phone\" address 192.168.18.69 is outside the private VPN subnet 192.168.17.0/24\n  hint: use an address from 192.168.17.0/24",
    );
}

#[test]
fn lan_address_is_network_address() {
    check(
        &edit("address: 192.168.16.1/24", "address: 192.168.16.0/24"),
        "warren.yaml:11:42: error[address-outside-subnet]: LAN \"lan\" address 192.168.16.0/24 is the network address, not the router's address\n  hint: write the router's own address with the prefix, e.g. 192.168.16.1/24",
    );
}

#[test]
fn duplicate_forward_ports() {
    let text = edit(
        "  minecraft: { port: 25565/tcp, to: 192.168.16.20 }\n",
        "  minecraft: { port: 25565/tcp, to: 192.168.16.20 }\n  minecraft2: { port: 25560-25570/tcp, to: 192.168.16.21 }\n",
    );
    check(
        &text,
        "warren.yaml:27:23: error[forward-overlap]: forward \"minecraft2\" (25560-25570/tcp) overlaps forward \"minecraft\" (25565/tcp)\n  note: it is declared at line 26, column 22",
    );
}

#[test]
fn forward_overlapping_private_vpn_port() {
    let text = edit(
        "  minecraft: { port: 25565/tcp, to: 192.168.16.20 }\n",
        "  minecraft: { port: 25565/tcp, to: 192.168.16.20 }\n  voice: { port: 13000-14000/tcp+udp, to: 192.168.16.21 }\n",
    );
    check(
        &text,
        "warren.yaml:27:18: error[forward-overlap]: forward \"voice\" (13000-14000/udp) overlaps the private VPN port 13131/udp\n  note: it is declared at line 19, column 9",
    );
}

#[test]
fn forward_capturing_gateway_ssh_is_a_lockout() {
    check(
        &edit("port: 25565/tcp", "port: 2222/tcp"),
        "warren.yaml:26:22: error[forward-lockout]: forward \"minecraft\" (2222/tcp) would capture the gateway's management port 2222/tcp\n  note: it is declared at line 7, column 18\n  hint: the gateway never forwards its own ports; pick another public port for this service",
    );
}

#[test]
fn forward_capturing_wan_vpn_port_is_a_lockout() {
    check(
        &edit("port: 25565/tcp", "port: 51820/udp"),
        "warren.yaml:26:22: error[forward-lockout]: forward \"minecraft\" (51820/udp) would capture the WAN VPN port 51820/udp of the gateway\n  note: it is declared at line 16, column 9\n  hint: the gateway never forwards its own ports; pick another public port for this service",
    );
}

#[test]
fn forward_all_without_management_port_is_a_lockout() {
    check(
        &edit("    management: [2222/tcp]\n", ""),
        "warren.yaml:4:5: error[management-missing]: gateway \"gateway\" keeps no management port, and wan_vpn.forward_all sends every other inbound port to the router: you would lose SSH to the gateway\n  hint: list the gateway's SSH port, e.g. management: [22/tcp]",
    );
}

#[test]
fn forward_only_listed_ports_needs_no_management_port() {
    let text = edit("    management: [2222/tcp]\n", "")
        .replace("  port: 51820\n", "  port: 51820\n  forward_all: false\n");
    check(&text, "");
}

#[test]
fn private_vpn_on_wan_vpn_port() {
    check(
        &edit("  port: 13131\n", "  port: 51820\n"),
        "warren.yaml:19:9: error[forward-lockout]: private_vpn.port 51820/udp is the WAN VPN's port, which the gateway keeps for itself: clients would never reach the router\n  hint: pick another port, e.g. 13131",
    );
}

#[test]
fn forward_target_outside_every_lan() {
    check(
        &edit("to: 192.168.16.20", "to: 192.168.17.20"),
        "warren.yaml:26:37: error[target-outside-lan]: forward \"minecraft\" target 192.168.17.20 is not on any LAN of the router\n  hint: the router's LANs are: lan 192.168.16.0/24",
    );
}

#[test]
fn forward_without_protocol() {
    check(
        &edit("port: 25565/tcp", "port: 25565"),
        "warren.yaml:26:22: error[bad-port]: forward \"minecraft\" port \"25565\" has no protocol\n  hint: write 25565/tcp, 25565/udp or 25565/tcp+udp",
    );
}

#[test]
fn forward_range_with_target_port() {
    check(
        &edit("{ port: 25565/tcp, to: 192.168.16.20 }", "{ port: 25565-25566/tcp, to: \"192.168.16.20:80\" }"),
        "warren.yaml:26:43: error[bad-target]: forward \"minecraft\" maps the range 25565-25566 to a single port\n  hint: a range keeps its port numbers; write to: 192.168.16.20",
    );
}

#[test]
fn endpoint_routed_into_its_own_tunnel() {
    check(
        &edit("public_address: 203.0.113.10", "public_address: 192.168.16.200"),
        "warren.yaml:5:21: error[endpoint-in-tunnel]: the gateway's public address 192.168.16.200 is inside LAN \"lan\" 192.168.16.0/24: the router would route the WAN VPN's own packets into a tunnel\n  hint: public_address is the VPS's internet address; the tunnel and LAN networks must be private ranges that do not contain it",
    );
}

#[test]
fn client_route_containing_the_gateway() {
    let text = edit(
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n",
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n      routes: [192.168.17.0/24, 203.0.113.0/24]\n",
    );
    check(
        &text,
        "warren.yaml:25:33: error[endpoint-in-tunnel]: client \"phone\" route 203.0.113.0/24 contains the gateway's public address 203.0.113.10: the client would send its own tunnel packets into the tunnel\n  hint: route only the VPN subnet and the LANs (the default), or everything with 0.0.0.0/0, which clients exclude their endpoint from",
    );
}

#[test]
fn full_tunnel_client_is_fine() {
    let text = edit(
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n",
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n      routes: [0.0.0.0/0]\n",
    );
    check(&text, "");
}

#[test]
fn bad_public_key() {
    check(
        &edit("public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=", "public_key: not-a-key"),
        "warren.yaml:24:19: error[bad-key]: client \"phone\" public_key is not a WireGuard public key\n  hint: a key is 44 characters of base64 ending in '=', as printed by `wg pubkey`",
    );
}

#[test]
fn reserved_table() {
    check(
        &edit("  port: 51820\n", "  port: 51820\n  table: 254\n"),
        "warren.yaml:17:10: error[reserved-table]: routing table 254 is reserved or invalid\n  hint: 0, 253 (default), 254 (main) and 255 (local) belong to the kernel; pick e.g. 100",
    );
}

#[test]
fn wrong_role_reference() {
    check(
        &edit("  router: router\n", "  router: gateway\n"),
        "warren.yaml:14:11: error[wrong-role]: wan_vpn.router names host \"gateway\", whose role is not router",
    );
}

#[test]
fn unknown_host_reference() {
    check(
        &edit("  server: router\n", "  server: rooter\n"),
        "warren.yaml:18:11: error[unknown-host]: private_vpn.server names host \"rooter\", which is not in `hosts`",
    );
}

#[test]
fn key_that_applies_to_another_role() {
    check(
        &edit("    role: router\n", "    role: router\n    management: [22/tcp]\n"),
        "warren.yaml:10:18: error[wrong-role-key]: `management` does not apply to host \"router\" (role router)",
    );
}

#[test]
fn interface_name_too_long() {
    check(
        &edit("  port: 51820\n", "  port: 51820\n  interface: wireguard-to-the-vps\n"),
        "warren.yaml:17:14: error[bad-interface]: \"wireguard-to-the-vps\" is not a valid interface name\n  hint: at most 15 characters: letters, digits, '-', '_' and '.'",
    );
}

#[test]
fn keepalive_zero_is_a_warning_only() {
    let text = edit("  port: 51820\n", "  port: 51820\n  keepalive: 0\n");
    let (cfg, d) = load_str(&text, "warren.yaml");
    assert!(cfg.is_some(), "a warning does not stop compilation");
    assert_eq!(
        d.to_string().trim_end(),
        "warren.yaml:17:14: warning[keepalive-off]: wan_vpn.keepalive is 0: the router's CGNAT mapping will expire and the gateway will lose the tunnel while nobody sends\n  hint: keep the default (25 seconds)"
    );
}

#[test]
fn unsupported_version() {
    check(
        &edit("version: 1\n", "version: 2\n"),
        "warren.yaml:1:10: error[unsupported-version]: version 2 is not supported\n  hint: this Warren reads version: 1",
    );
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let text =
        edit("port: 25565/tcp", "port: 2222/tcp").replace("subnet: 10.0.18.0/30", "subnet: 10.0.18.1/30");
    let out = diags(&text);
    let codes: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("warren.yaml"))
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        ["error[malformed-subnet]", "error[forward-lockout]"],
        "{out}"
    );
}

#[test]
fn empty_collections_mean_none() {
    // Deleting the last forward leaves `forwards:` with nothing under it.
    let text = edit("  minecraft: { port: 25565/tcp, to: 192.168.16.20 }\n", "");
    let (cfg, d) = load_str(&text, "warren.yaml");
    assert!(d.is_empty(), "{d}");
    assert!(cfg.is_some_and(|c| c.forwards.is_empty()));
}

#[test]
fn empty_client_routes() {
    let text = edit(
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n",
        "      public_key: m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\n      routes: []\n",
    );
    check(
        &text,
        "warren.yaml:23:7: error[unreachable-server]: client \"phone\" has `routes: []`: it would send nothing into the VPN\n  hint: omit `routes` for the default (the VPN subnet and the LANs)",
    );
}

#[test]
fn private_subnet_without_room_for_clients() {
    check(
        &edit("  subnet: 192.168.17.0/24\n", "  subnet: 192.168.17.0/31\n"),
        "warren.yaml:20:11: error[subnet-too-small]: private_vpn.subnet 192.168.17.0/31 has no room for the server and its clients\n  hint: use a /24 or similar, e.g. 192.168.17.0/24",
    );
}

#[test]
fn values_of_the_wrong_type() {
    let hint = "\n  hint: this key takes another type of value; docs/reference.md gives each key's type";
    check(
        &edit("  port: 51820\n", "  port: fifty\n"),
        &format!("warren.yaml:16:9: error[bad-value]: invalid u64{hint}"),
    );
    check(
        &edit("    management: [2222/tcp]\n", "    management: 2222/tcp\n"),
        &format!("warren.yaml:7:17: error[bad-value]: expected sequence start{hint}"),
    );
    check(
        &edit("  port: 51820\n", "  port: 51820\n  forward_all: yes\n"),
        &format!(
            "warren.yaml:17:16: error[bad-value]: invalid boolean (strict mode expects true/false){hint}"
        ),
    );
}

#[test]
fn forward_capturing_the_gateway_agent_port_is_a_lockout() {
    check(
        &edit(
            "    management: [2222/tcp]\n",
            "    management: [2222/tcp]\n    agent: { address: \"203.0.113.10:7700\" }\n",
        )
        .replace("port: 25565/tcp", "port: 7700/tcp"),
        "warren.yaml:27:22: error[forward-lockout]: forward \"minecraft\" (7700/tcp) would capture the gateway's agent port 7700/tcp\n  note: it is declared at line 8, column 12\n  hint: the gateway never forwards its own ports; pick another public port for this service",
    );
}

#[test]
fn managed_by_names_a_host_that_is_no_agent() {
    check(
        &edit(
            "    role: router\n",
            &format!("    role: router\n    platform: routeros\n    managed_by: gateway\n    routeros: {{ address: 192.168.16.1, fingerprint: {FP} }}\n"),
        ),
        "warren.yaml:11:17: error[unknown-host]: managed_by names \"gateway\", which is not a host with role agent",
    );
}

/// A target is checked against the LANs only once they all resolved: the broken
/// LAN is the one error to fix, not a target that may well be on it.
#[test]
fn forward_targets_wait_for_every_lan_to_resolve() {
    check(
        &edit(
            "      lan: { interface: br-lan, address: 192.168.16.1/24 }\n",
            "      lan: { interface: br-lan, address: 192.168.16.1/24 }\n      iot: { interface: br-iot, address: 192.168.30.0/24 }\n",
        )
        .replace("to: 192.168.16.20", "to: 192.168.99.20"),
        "warren.yaml:12:42: error[address-outside-subnet]: LAN \"iot\" address 192.168.30.0/24 is the network address, not the router's address\n  hint: write the router's own address with the prefix, e.g. 192.168.30.1/24",
    );
}

#[test]
fn firewall_keys_only_on_a_linux_gateway_or_router() {
    check(
        &edit(
            "      lan: { interface: br-lan, address: 192.168.16.1/24 }\n",
            "      lan: { interface: br-lan, address: 192.168.16.1/24 }\n  pi:\n    role: agent\n    netfilter: iptables\n",
        ),
        "warren.yaml:14:16: error[wrong-role-key]: `netfilter` applies only to a Linux gateway or router (host \"pi\")",
    );
}

/// A plausible SHA-256 certificate fingerprint.
const FP: &str = "bc5ce827fe6be014b4a479c2d8bb6caae0accee8466203184f8b319265d30d54";

/// BASE with the router on RouterOS, driven by agent host `pi`, its
/// `routeros` block written as `routeros` (a flow mapping's inside).
fn on_routeros(routeros: &str) -> String {
    edit(
        "    role: router\n",
        &format!(
            "    role: router\n    platform: routeros\n    managed_by: pi\n    routeros: {{ {routeros} }}\n"
        ),
    )
    .replace("wan_vpn:\n", "  pi:\n    role: agent\nwan_vpn:\n")
}

#[test]
fn routeros_access_defaults_and_fingerprint_forms() {
    let upper: Vec<String> = FP
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    for fp in [FP.to_string(), FP.to_ascii_uppercase(), upper.join(":")] {
        let text = on_routeros(&format!("address: 192.168.16.1, fingerprint: \"{fp}\""));
        let (cfg, d) = load_str(&text, "warren.yaml");
        assert!(d.is_empty(), "{fp}: {d}");
        let r = cfg.expect("valid").hosts["router"]
            .routeros
            .clone()
            .expect("routeros");
        assert_eq!(
            (
                r.address.to_string(),
                r.port,
                r.user.as_str(),
                r.fingerprint.as_str()
            ),
            ("192.168.16.1".to_string(), 443, "warren", FP)
        );
    }
    let text = on_routeros(&format!(
        "address: 192.168.16.1, port: 8443, user: wr, fingerprint: {FP}"
    ));
    let r = load_str(&text, "warren.yaml").0.expect("valid").hosts["router"]
        .routeros
        .clone()
        .expect("routeros");
    assert_eq!((r.port, r.user.as_str()), (8443, "wr"));
}

#[test]
fn routeros_fingerprint_is_required_and_checked() {
    check(
        &on_routeros("address: 192.168.16.1"),
        "warren.yaml:12:15: error[missing-key]: RouterOS router \"router\" has no `routeros.fingerprint`\n  hint: the agent accepts only the router's own certificate: copy `fingerprint` from `/certificate print detail` on the router (the certificate of `/ip/service www-ssl`)",
    );
    check(
        &on_routeros("address: 192.168.16.1, fingerprint: \"AB:CD:EF\""),
        "warren.yaml:12:53: error[bad-fingerprint]: routeros fingerprint \"AB:CD:EF\" is not a SHA-256 certificate fingerprint\n  hint: write the 64 hex digits (or AB:CD:… pairs) that `/certificate print detail` shows as `fingerprint` for the certificate of `/ip/service www-ssl`",
    );
    check(
        &on_routeros(&format!("address: 192.168.16.1, fingerprint: {}zz", &FP[..62])),
        &format!("warren.yaml:12:53: error[bad-fingerprint]: routeros fingerprint \"{}zz\" is not a SHA-256 certificate fingerprint\n  hint: write the 64 hex digits (or AB:CD:… pairs) that `/certificate print detail` shows as `fingerprint` for the certificate of `/ip/service www-ssl`", &FP[..62]),
    );
}

#[test]
fn routeros_ssh_keys_were_replaced() {
    check(
        &on_routeros(&format!("address: 192.168.16.1, ssh_port: 22, host_key: ssh-ed25519 AAAA, fingerprint: {FP}")),
        "warren.yaml:12:50: error[replaced-key]: routeros.ssh_port was replaced: Warren drives RouterOS over its REST API (HTTPS), not SSH\n  hint: remove `ssh_port`; use `port` (the HTTPS port, default 443)\nwarren.yaml:12:64: error[replaced-key]: routeros.host_key was replaced: Warren drives RouterOS over its REST API (HTTPS), not SSH\n  hint: remove `host_key`; use `fingerprint` (the SHA-256 of the router's www-ssl certificate)",
    );
}

#[test]
fn managed_by_an_agent_that_already_drives_a_router() {
    let text = on_routeros(&format!("address: 192.168.16.1, fingerprint: {FP}")).replace(
        "  pi:\n",
        &format!("  router2:\n    role: router\n    platform: routeros\n    managed_by: pi\n    routeros: {{ address: 192.168.30.1, fingerprint: {FP} }}\n    lans:\n      lan: {{ interface: bridge, address: 192.168.30.1/24 }}\n  pi:\n"),
    );
    check(
        &text,
        "warren.yaml:16:11: error[one-per-role]: a second router (\"router2\"); Warren v1 manages one router\n  note: the first router is \"router\" at line 9, column 11\nwarren.yaml:18:17: error[managed-by-shared]: agent host \"pi\" already drives RouterOS router \"router\"; one agent host drives one router\n  note: \"router\" names it at line 11, column 17\n  hint: give each RouterOS router its own `role: agent` host",
    );
}
