//! The REST logic without the network: paths, commands and error bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use warren_ros_sim::rest::{handle, Request, Response};
use warren_ros_sim::router::Router;
use warren_ros_sim::{defconf, sim::Sim};

fn sim() -> Sim {
    let mut r = Router::new(&["eth0".to_string(), "br-lan".to_string()]);
    defconf::seed(&mut r, "br-lan", "eth0");
    Sim::new(r, vec![("u".into(), "p".into())], false)
}

fn req(s: &mut Sim, method: &str, path: &str, body: Value) -> Response {
    let (path, q) = path.split_once('?').unwrap_or((path, ""));
    let query = q.split('&').filter(|x| !x.is_empty()).map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k.to_string(), v.to_string())
    });
    let body = if body.is_null() {
        vec![]
    } else {
        body.to_string().into_bytes()
    };
    let r = Request {
        method: method.into(),
        path: format!("/rest/{path}"),
        query: query.collect(),
        auth: Some(("u".into(), "p".into())),
        body,
    };
    handle(s, &r)
}

fn detail(r: &Response) -> &str {
    r.body.as_ref().and_then(|b| b["detail"].as_str()).unwrap_or("")
}

#[test]
fn paths_and_errors_as_routeros_answers_them() {
    let mut s = sim();
    let r = req(&mut s, "GET", "ip/firewall/filter/defconf", Value::Null);
    assert_eq!((r.status, detail(&r)), (400, "no such command prefix"));
    let r = req(&mut s, "GET", "ip/firewall/filter/print", Value::Null);
    assert_eq!((r.status, detail(&r)), (400, "no such command"));
    assert_eq!(req(&mut s, "HEAD", "ip/address", Value::Null).status, 501);
    let r = req(&mut s, "GET", "ip/firewall/raw", Value::Null);
    assert_eq!(detail(&r), "no such command or directory (raw)");
    let r = req(&mut s, "PUT", "ip/address", json!("not an object"));
    assert_eq!(r.status, 400);
    // A bad JSON body is a clear 400, not a crash.
    let bad = Request {
        method: "PUT".into(),
        path: "/rest/ip/address".into(),
        auth: Some(("u".into(), "p".into())),
        body: b"{\"address\":".to_vec(),
        ..Request::default()
    };
    assert_eq!(handle(&mut s, &bad).status, 400);
    let r = req(&mut s, "GET", "system/identity", Value::Null);
    assert_eq!(r.body.unwrap()["name"], "MikroTik");
    let r = req(&mut s, "POST", "system/identity/set", json!({"name": "home"}));
    assert_eq!(r.status, 200);
    assert_eq!(
        req(&mut s, "GET", "system/identity", Value::Null).body.unwrap()["name"],
        "home"
    );
    // ip/service has no comment.
    let r = req(&mut s, "PATCH", "ip/service/*4", json!({"comment": "x"}));
    assert_eq!(detail(&r), "unknown parameter comment");
    let r = req(&mut s, "PATCH", "ip/service/www-ssl", json!({"comment": "x"}));
    assert_eq!(detail(&r), "missing or invalid resource identifier");
    // Ping without count never ends on RouterOS.
    let r = req(&mut s, "POST", "ping", json!({"address": "10.0.0.1"}));
    assert_eq!(detail(&r), "Session closed");
}

#[test]
fn post_commands_take_numbers_ids_names_and_comments() {
    let mut s = sim();
    for c in ["a", "b", "c"] {
        let r = req(
            &mut s,
            "PUT",
            "ip/firewall/nat",
            json!({"chain": "warren-dstnat", "comment": format!("warren:nat/{c}")}),
        );
        assert_eq!(r.status, 200);
    }
    let r = req(
        &mut s,
        "POST",
        "ip/firewall/nat/set",
        json!({"numbers": "warren:nat/b", "to-ports": "80"}),
    );
    assert_eq!((r.status, r.body), (200, Some(json!([]))));
    let r = req(&mut s, "GET", "ip/firewall/nat?comment=warren:nat/b", Value::Null);
    assert_eq!(r.body.unwrap()[0]["to-ports"], "80");
    let r = req(&mut s, "POST", "ip/firewall/nat/disable", json!({".id": "*3"}));
    assert_eq!(r.status, 200);
    let r = req(
        &mut s,
        "POST",
        "ip/firewall/nat/print",
        json!({".query": ["disabled=true"], ".proplist": "comment"}),
    );
    assert_eq!(r.body.unwrap(), json!([{".id": "*3", "comment": "warren:nat/b"}]));
    let r = req(
        &mut s,
        "POST",
        "ip/firewall/nat/print",
        json!({".query": ["comment=warren:nat/a", "comment=warren:nat/c", "#|"]}),
    );
    assert_eq!(r.body.unwrap().as_array().unwrap().len(), 2);
    let r = req(
        &mut s,
        "POST",
        "ip/firewall/nat/remove",
        json!({"numbers": "*2,*4"}),
    );
    assert_eq!(r.status, 200);
    let r = req(&mut s, "GET", "ip/firewall/nat?chain=warren-dstnat", Value::Null);
    assert_eq!(r.body.unwrap().as_array().unwrap().len(), 1);
    let r = req(&mut s, "POST", "ip/firewall/nat/add", json!({"chain": "x"}));
    assert_eq!(r.body.unwrap(), json!({"ret": "*5"}));
    let r = req(&mut s, "POST", "ip/firewall/nat/frobnicate", json!({}));
    assert_eq!(detail(&r), "no such command or directory (frobnicate)");
    assert_eq!(s.writes, 7, "PUT×3, set, disable, remove, add");
}

#[test]
fn a_disabled_static_route_reads_back_smaller() {
    let mut s = sim();
    let r = req(
        &mut s,
        "PUT",
        "ip/route",
        json!({"dst-address": "10.9.0.0/24", "gateway": "eth0", "disabled": "yes"}),
    );
    let b = r.body.unwrap();
    assert_eq!(b["disabled"], "true");
    for k in ["distance", "routing-table", "scope", "target-scope", "dynamic"] {
        assert!(b.get(k).is_none(), "{k} present on a disabled route");
    }
    let r = req(&mut s, "PATCH", "ip/route/*80000001", json!({"disabled": "no"}));
    assert_eq!(r.body.unwrap()["routing-table"], "main");
}
