//! The script subset and the scheduler on the controllable clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use warren_ros_sim::defconf;
use warren_ros_sim::router::{Args, Router};

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

fn tagged(r: &Router, menu: &str) -> Vec<String> {
    r.db.rows(menu)
        .iter()
        .filter_map(|x| x.get("comment"))
        .filter(|c| c.starts_with("warren:"))
        .map(str::to_string)
        .collect()
}

const ROLLBACK: &str = r#"# warren rollback
/system scheduler remove [find where comment="warren:rollback"]
:do { /ip firewall nat remove [find where comment~"^warren:"] } on-error={}
:do {
  /ip/firewall/filter/remove [find where comment~"^warren:"]
} on-error={ :log error "warren rollback: filter" }
:do { /routing table remove [find name="warren-100"] } on-error={}
/routing/table/add name=warren-100 fib comment="warren:table/100"
/ip/firewall/nat/add chain=warren-dstnat action=dst-nat protocol=tcp dst-port=25565 \
    to-addresses=192.168.88.20 to-ports=25565 comment="warren:nat/minecraft"
/ip firewall nat
add chain=dstnat action=jump jump-target=warren-dstnat comment="warren:jump/nat-dstnat"
set [find where comment="warren:nat/minecraft"] comment="warren:nat/mc\_\"q\"" ; :log warning "warren: rolled back"
"#;

#[test]
fn the_rollback_subset_runs() {
    let mut r = home();
    r.add(
        "ip/firewall/nat",
        &args(&[("chain", "dstnat"), ("comment", "warren:nat/old")]),
    )
    .unwrap();
    r.add(
        "ip/firewall/filter",
        &args(&[("chain", "input"), ("comment", "warren:filter/old")]),
    )
    .unwrap();
    r.add(
        "routing/table",
        &args(&[("name", "warren-100"), ("comment", "warren:table/old")]),
    )
    .unwrap();
    r.add(
        "system/scheduler",
        &args(&[
            ("name", "warren-rollback"),
            ("comment", "warren:rollback"),
            ("interval", "5m"),
        ]),
    )
    .unwrap();
    let foreign =
        r.db.rows("ip/firewall/nat")
            .iter()
            .filter(|x| !x.get("comment").unwrap_or("").starts_with("warren:"))
            .count();
    r.run_source(ROLLBACK).unwrap();
    assert!(r.db.rows("system/scheduler").is_empty());
    assert!(tagged(&r, "ip/firewall/filter").is_empty());
    assert_eq!(
        tagged(&r, "ip/firewall/nat"),
        ["warren:nat/mc \"q\"", "warren:jump/nat-dstnat"]
    );
    let fwd =
        r.db.rows("ip/firewall/nat")
            .iter()
            .find(|x| x.get("action") == Some("dst-nat"))
            .unwrap();
    assert_eq!(fwd.get("to-addresses"), Some("192.168.88.20"));
    assert_eq!(fwd.get("dst-port"), Some("25565"));
    let t = r.db.by_name("routing/table", "warren-100").unwrap();
    assert_eq!(
        (t.get("fib"), t.get("comment")),
        (Some(""), Some("warren:table/100"))
    );
    let kept =
        r.db.rows("ip/firewall/nat")
            .iter()
            .filter(|x| !x.get("comment").unwrap_or("").starts_with("warren:"))
            .count();
    assert_eq!(kept, foreign, "foreign rules are untouched");
    assert!(
        r.log
            .iter()
            .any(|l| l.ends_with("script,warning warren: rolled back")),
        "{:?}",
        r.log
    );
}

#[test]
fn on_error_catches_and_an_uncaught_error_stops_the_script() {
    let mut r = home();
    let src = r#":do { /ip address add address=10.0.0.1/24 interface=nope } on-error={ :log error "caught" }
/ip address add address=10.0.0.1/24 interface=nope
/ip firewall nat add chain=dstnat comment="warren:never"
"#;
    let e = r.run_source(src).unwrap_err();
    assert_eq!(
        e.detail.as_deref(),
        Some("input does not match any value of interface")
    );
    assert!(r.log.iter().any(|l| l.ends_with("script,error caught")));
    assert!(
        r.log
            .iter()
            .any(|l| l.contains("script,error input does not match")),
        "{:?}",
        r.log
    );
    assert!(
        tagged(&r, "ip/firewall/nat").is_empty(),
        "the script stopped at the error"
    );
}

#[test]
fn malformed_scripts_fail_cleanly() {
    for src in [
        "/ip firewall nat add comment=\"unterminated",
        ":do { /ip address print",
        ":foreach i in=[/ip address find] do={}",
        "/ip firewall nat add chain=x comment=$var",
        "/no/such/menu/add a=b",
        "/ip firewall nat frobnicate",
        "/ip firewall nat remove [/ip address print]",
        "}",
        "=x",
    ] {
        let mut r = home();
        let before = r.db.clone();
        let e = r.run_source(src);
        assert!(e.is_err(), "{src:?} should fail");
        assert_eq!(r.db, before, "{src:?} changed the database");
        assert!(!r.log.is_empty(), "{src:?}: the error is logged");
    }
}

#[test]
fn script_run_counts_and_scheduler_fires_on_the_clock() {
    let mut r = home();
    r.add(
        "system/script",
        &args(&[("name", "warren-rollback"), ("source", ":log info \"ran\"")]),
    )
    .unwrap();
    r.add(
        "system/scheduler",
        &args(&[
            ("name", "warren-rollback"),
            ("interval", "5m"),
            ("on-event", "/system script run warren-rollback"),
        ]),
    )
    .unwrap();
    r.add(
        "system/scheduler",
        &args(&[
            ("name", "inline"),
            ("interval", "7m"),
            ("on-event", ":log info inline"),
        ]),
    )
    .unwrap();
    let s = r.db.by_name("system/scheduler", "warren-rollback").unwrap();
    assert_eq!(s.get("next-run"), Some("2026-01-01 00:05:00"));
    assert_eq!(r.advance(299), Vec::<String>::new(), "not before the interval");
    assert_eq!(r.advance(1), ["warren-rollback"]);
    assert_eq!(r.now, 300);
    assert_eq!(r.advance(300), ["inline", "warren-rollback"], "7m then 10m");
    let script = r.db.by_name("system/script", "warren-rollback").unwrap();
    assert_eq!(script.get("run-count"), Some("2"));
    assert_eq!(script.get("last-started"), Some("2026-01-01 00:10:00"));
    assert_eq!(
        r.db.by_name("system/scheduler", "warren-rollback")
            .unwrap()
            .get("run-count"),
        Some("2")
    );
    assert_eq!(r.log.iter().filter(|l| l.ends_with("script,info ran")).count(), 2);
    // A disabled entry does not fire; a removed one neither.
    let id = r.db.by_name("system/scheduler", "inline").unwrap().id.clone();
    r.enable("system/scheduler", &id, false).unwrap();
    r.remove("system/scheduler", "warren-rollback").unwrap();
    assert!(r.advance(3600).is_empty());
}

#[test]
fn a_scheduler_can_remove_itself_and_restore_state() {
    let mut r = home();
    r.add(
        "ip/firewall/nat",
        &args(&[("chain", "dstnat"), ("comment", "warren:nat/new")]),
    )
    .unwrap();
    let src = "/system scheduler remove [find name=\"warren-rollback\"]\n/ip firewall nat remove [find where comment~\"^warren:\"]";
    r.add(
        "system/script",
        &args(&[("name", "warren-rollback"), ("source", src)]),
    )
    .unwrap();
    r.add(
        "system/scheduler",
        &args(&[
            ("name", "warren-rollback"),
            ("interval", "300s"),
            ("on-event", "warren-rollback"),
            ("comment", "warren:rollback"),
        ]),
    )
    .unwrap();
    assert_eq!(
        r.advance(1000),
        ["warren-rollback"],
        "fires once, then it is gone"
    );
    assert!(tagged(&r, "ip/firewall/nat").is_empty());
    assert!(r.db.rows("system/scheduler").is_empty());
}
