//! Database semantics: ids, order, `move`, `place-before`, dynamic rows,
//! normalisation, references and duplicates (rest-behaviour.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use warren_ros_sim::error::RosError;
use warren_ros_sim::router::{Args, Router};
use warren_ros_sim::{defconf, router};

fn args(pairs: &[(&str, &str)]) -> Args {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn home() -> Router {
    let mut r = Router::new(&["eth0".to_string(), "br-lan".to_string()]);
    defconf::seed(&mut r, "br-lan", "eth0");
    r
}

fn detail(e: RosError) -> String {
    e.detail.unwrap_or_default()
}

fn order(r: &Router, menu: &str) -> Vec<String> {
    r.db.rows(menu).iter().map(|x| x.id.clone()).collect()
}

#[test]
fn ids_come_from_a_per_menu_counter_and_are_never_reused() {
    let mut r = Router::new(&["eth0".into()]);
    let a = r.add("ip/firewall/nat", &args(&[("chain", "dstnat")])).unwrap();
    let b = r.add("ip/firewall/nat", &args(&[("chain", "dstnat")])).unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("*1", "*2"));
    r.remove("ip/firewall/nat", &b).unwrap();
    assert_eq!(
        r.add("ip/firewall/nat", &args(&[("chain", "dstnat")])).unwrap(),
        "*3"
    );
    // Another menu has its own counter.
    assert_eq!(
        r.add("ip/firewall/mangle", &args(&[("chain", "prerouting")]))
            .unwrap(),
        "*1"
    );
    // Static routes share *8000000N, connected routes *2018….
    let route = r.add("ip/route", &args(&[("gateway", "eth0")])).unwrap();
    assert_eq!(route, "*80000001");
    r.add(
        "ip/address",
        &args(&[("address", "192.168.88.1/24"), ("interface", "eth0")]),
    )
    .unwrap();
    let connected = r.db.rows("ip/route").iter().find(|x| x.is("connect")).unwrap();
    assert!(connected.id.starts_with("*2018"), "{}", connected.id);
    assert!(connected.dynamic());
    assert_eq!(connected.get("dst-address"), Some("192.168.88.0/24"));
    // The first scheduler entry is *0.
    assert_eq!(r.add("system/scheduler", &args(&[("name", "s")])).unwrap(), "*0");
}

#[test]
fn move_follows_the_probed_table() {
    let mut r = Router::new(&[]);
    for _ in 0..5 {
        r.add("ip/firewall/nat", &args(&[("chain", "dstnat")])).unwrap();
    }
    // A block, in the order given, before the destination.
    r.move_rows("ip/firewall/nat", Some("*5,*4"), Some("*2")).unwrap();
    assert_eq!(order(&r, "ip/firewall/nat"), ["*1", "*5", "*4", "*2", "*3"]);
    // Unknown destination: silently to the end.
    r.move_rows("ip/firewall/nat", Some("*1"), Some("*77")).unwrap();
    assert_eq!(order(&r, "ip/firewall/nat"), ["*5", "*4", "*2", "*3", "*1"]);
    // No destination: the end too.
    r.move_rows("ip/firewall/nat", Some("*5"), None).unwrap();
    assert_eq!(order(&r, "ip/firewall/nat"), ["*4", "*2", "*3", "*1", "*5"]);
    // Unknown numbers: 404, nothing moves.
    let e = r
        .move_rows("ip/firewall/nat", Some("*2,*99"), Some("*4"))
        .unwrap_err();
    assert_eq!(e, RosError::not_found());
    assert_eq!(order(&r, "ip/firewall/nat"), ["*4", "*2", "*3", "*1", "*5"]);
    // Before itself.
    let e = r
        .move_rows("ip/firewall/nat", Some("*3"), Some("*3"))
        .unwrap_err();
    assert_eq!(detail(e), "failure: can not move object before itself");
    // Nothing to move.
    assert_eq!(
        detail(r.move_rows("ip/firewall/nat", None, Some("*3")).unwrap_err()),
        "missing =.id="
    );
    // A bare number is a position in the table.
    r.move_rows("ip/firewall/nat", Some("0"), None).unwrap();
    assert_eq!(order(&r, "ip/firewall/nat"), ["*2", "*3", "*1", "*5", "*4"]);
}

#[test]
fn place_before_only_on_create_and_dynamic_rows_stay_put() {
    let mut r = home();
    let rows = r.db.rows("ip/firewall/filter");
    assert!(rows[0].dynamic(), "the dummy fasttrack rule leads the table");
    let dummy = rows[0].id.clone();
    let first_forward = rows
        .iter()
        .find(|x| x.get("chain") == Some("forward") && !x.dynamic())
        .unwrap()
        .id
        .clone();
    let jump = r
        .add(
            "ip/firewall/filter",
            &args(&[
                ("chain", "forward"),
                ("action", "jump"),
                ("jump-target", "warren-forward"),
                ("place-before", &first_forward),
            ]),
        )
        .unwrap();
    let ids = order(&r, "ip/firewall/filter");
    let at = ids.iter().position(|i| *i == jump).unwrap();
    assert_eq!(ids[at + 1], first_forward);
    let e = r
        .set(
            "ip/firewall/filter",
            &jump,
            &args(&[("place-before", &first_forward)]),
        )
        .unwrap_err();
    assert_eq!(detail(e), "unknown parameter place-before");
    assert!(r.remove("ip/firewall/filter", &dummy).is_err());
    assert!(r
        .set("ip/firewall/filter", &dummy, &args(&[("comment", "x")]))
        .is_err());
    assert!(r.move_rows("ip/firewall/filter", Some(&dummy), None).is_err());
    assert_eq!(r.db.rows("ip/firewall/filter")[0].id, dummy);
    // The dynamic main table cannot go either.
    let main = r.db.by_name("routing/table", "main").unwrap().id.clone();
    assert!(r.remove("routing/table", &main).is_err());
}

#[test]
fn values_are_stored_as_they_read_back() {
    let mut r = Router::new(&["eth0".into()]);
    let f = r
        .add(
            "ip/firewall/filter",
            &args(&[("chain", "input"), ("comment", ""), ("log", "yes")]),
        )
        .unwrap();
    let row = r.db.get("ip/firewall/filter", &f).unwrap();
    assert_eq!(row.get("log"), Some("true"));
    assert_eq!(row.get("comment"), None, "an empty comment is absent");
    assert_eq!(
        row.get("disabled"),
        None,
        "firewall disabled is absent until written"
    );
    assert_eq!(row.get("action"), Some("accept"));
    r.set("ip/firewall/filter", &f, &args(&[("disabled", "no")]))
        .unwrap();
    assert_eq!(
        r.db.get("ip/firewall/filter", &f).unwrap().get("disabled"),
        Some("false")
    );

    let a = r
        .add(
            "ip/address",
            &args(&[("address", "10.1.2.3"), ("interface", "eth0")]),
        )
        .unwrap();
    let row = r.db.get("ip/address", &a).unwrap();
    assert_eq!(row.get("address"), Some("10.1.2.3/32"));
    assert_eq!(
        row.get("disabled"),
        Some("false"),
        "outside the firewall, defaults are explicit"
    );

    let t = r
        .add("routing/table", &args(&[("name", "warren-100"), ("fib", "yes")]))
        .unwrap();
    assert_eq!(r.db.get("routing/table", &t).unwrap().get("fib"), Some(""));
    let t2 = r.add("routing/table", &args(&[("name", "warren-101")])).unwrap();
    assert_eq!(r.db.get("routing/table", &t2).unwrap().get("fib"), None);

    let wg = r.add("interface/wireguard", &args(&[("name", "wg0")])).unwrap();
    let wgrow = r.db.get("interface/wireguard", &wg).unwrap().clone();
    let private = wgrow.get("private-key").unwrap();
    assert_eq!(
        wgrow.get("public-key").map(str::to_string),
        router::wg_public(private)
    );
    assert_eq!(wgrow.get("running"), Some("true"));
    assert_eq!(wgrow.get("mtu"), Some("1420"));
    assert!(
        r.db.by_name("interface", "wg0").is_some(),
        "a WireGuard interface is an interface"
    );
    let peer = r
        .add(
            "interface/wireguard/peers",
            &args(&[
                ("interface", "wg0"),
                ("public-key", wgrow.get("public-key").unwrap()),
                ("allowed-address", "10.9.0.2,10.8.0.0/24"),
                ("persistent-keepalive", "25"),
            ]),
        )
        .unwrap();
    let p = r.db.get("interface/wireguard/peers", &peer).unwrap();
    assert_eq!(p.get("allowed-address"), Some("10.9.0.2/32,10.8.0.0/24"));
    assert_eq!(p.get("persistent-keepalive"), Some("25s"));
    let s = r
        .add("system/scheduler", &args(&[("name", "x"), ("interval", "300")]))
        .unwrap();
    assert_eq!(
        r.db.get("system/scheduler", &s).unwrap().get("interval"),
        Some("5m")
    );
    // State cannot be written.
    let e = r
        .set("interface/wireguard", &wg, &args(&[("public-key", "x")]))
        .unwrap_err();
    assert_eq!(detail(e), "unknown parameter public-key");
    let e = r
        .add("ip/firewall/filter", &args(&[("chain", "input"), ("bytes", "1")]))
        .unwrap_err();
    assert_eq!(detail(e), "unknown parameter bytes");
}

#[test]
fn hard_references_are_checked_and_soft_ones_accepted() {
    let mut r = home();
    let e = r
        .add(
            "ip/address",
            &args(&[("address", "10.0.0.1/24"), ("interface", "wg9")]),
        )
        .unwrap_err();
    assert_eq!(detail(e), "input does not match any value of interface");
    let e = r
        .add(
            "ip/route",
            &args(&[("gateway", "10.0.0.1"), ("routing-table", "warren-7")]),
        )
        .unwrap_err();
    assert_eq!(detail(e), "input does not match any value of routing-table");
    let e = r.add("ip/route", &args(&[("gateway", "wg9")])).unwrap_err();
    assert_eq!(detail(e), "invalid or unexpected argument base");
    let e = r
        .add(
            "ip/firewall/filter",
            &args(&[("chain", "input"), ("in-interface", "!wg9")]),
        )
        .unwrap_err();
    assert_eq!(detail(e), "input does not match any value of in-interface");
    let e = r
        .add(
            "ip/firewall/filter",
            &args(&[("chain", "input"), ("in-interface-list", "DMZ")]),
        )
        .unwrap_err();
    assert_eq!(detail(e), "input does not match any value of in-interface-list");
    let e = r.add("routing/rule", &args(&[("table", "nope")])).unwrap_err();
    assert_eq!(detail(e), "input does not match any value of table");
    // A jump to a chain that does not exist yet is accepted, and invalid.
    let j = r
        .add(
            "ip/firewall/nat",
            &args(&[
                ("chain", "dstnat"),
                ("action", "jump"),
                ("jump-target", "warren-dstnat"),
            ]),
        )
        .unwrap();
    assert_eq!(
        r.db.get("ip/firewall/nat", &j).unwrap().get("invalid"),
        Some("true")
    );
    r.add(
        "ip/firewall/nat",
        &args(&[("chain", "warren-dstnat"), ("action", "return")]),
    )
    .unwrap();
    assert_eq!(
        r.db.get("ip/firewall/nat", &j).unwrap().get("invalid"),
        Some("false")
    );
    // Duplicates.
    r.add(
        "ip/firewall/address-list",
        &args(&[("list", "l"), ("address", "1.2.3.4")]),
    )
    .unwrap();
    let e = r
        .add(
            "ip/firewall/address-list",
            &args(&[("list", "l"), ("address", "1.2.3.4/32"), ("comment", "other")]),
        )
        .unwrap_err();
    assert_eq!(detail(e), "failure: already have such entry");
    r.add(
        "ip/firewall/address-list",
        &args(&[("list", "l"), ("address", "1.2.3.4"), ("disabled", "yes")]),
    )
    .unwrap();
    r.add("interface/wireguard", &args(&[("name", "wg0")])).unwrap();
    let e = r
        .add("interface/wireguard", &args(&[("name", "wg0")]))
        .unwrap_err();
    assert_eq!(detail(e), "failure: already have interface with such name");
    let e = r
        .add("interface/wireguard", &args(&[("name", "eth0")]))
        .unwrap_err();
    assert_eq!(detail(e), "failure: already have interface with such name");
    // Deleting a referenced object is allowed; the reference keeps the dead id.
    let t = r
        .add("routing/table", &args(&[("name", "warren-100"), ("fib", "")]))
        .unwrap();
    let rt = r
        .add(
            "ip/route",
            &args(&[("gateway", "eth0"), ("routing-table", "warren-100")]),
        )
        .unwrap();
    r.remove("routing/table", &t).unwrap();
    assert_eq!(
        r.db.get("ip/route", &rt).unwrap().get("routing-table"),
        Some(t.as_str())
    );
}

#[test]
fn a_refused_write_changes_nothing() {
    let mut r = home();
    let before = r.db.clone();
    assert!(r
        .add(
            "ip/address",
            &args(&[("address", "10.0.0.1/24"), ("interface", "nope")])
        )
        .is_err());
    assert!(r
        .add(
            "ip/firewall/filter",
            &args(&[("chain", "input"), ("frobnicate", "1")])
        )
        .is_err());
    assert_eq!(r.db, before);
}
