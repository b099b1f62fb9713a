//! The REST front end's logic, independent of the transport: one parsed
//! HTTP request in, one status and JSON body out.

use crate::db::Row;
use crate::error::RosError;
use crate::router::{Args, Cond};
use crate::schema::{self, Menu, MUTATING};
use crate::sim::Sim;
use serde_json::{json, Map, Value};

/// A parsed request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path without the query string (`/rest/ip/address`).
    pub path: String,
    /// The query string, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Basic-auth credentials, when sent.
    pub auth: Option<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`None`: empty body).
    pub body: Option<Value>,
}

impl Response {
    fn ok(v: Value) -> Self {
        Response {
            status: 200,
            body: Some(v),
        }
    }
    fn err(e: &RosError) -> Self {
        Response {
            status: e.status,
            body: Some(e.body()),
        }
    }
}

/// Decode `%XX` and `+` in a query-string component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_id(s: &str) -> bool {
    s.strip_prefix('*')
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A JSON value as a RouterOS argument string.
/// The row `x` names in a URL (`/rest/<menu>/<x>`): an `.id`, or a name in
/// a menu with names; elsewhere RouterOS says "no such command prefix".
fn item_at<'d>(db: &'d crate::db::Db, named: bool, path: &str, x: &str) -> Result<&'d Row, RosError> {
    let row = if is_id(x) {
        db.get(path, x)
    } else if named {
        db.by_name(path, x)
    } else {
        return Err(RosError::bad("no such command prefix"));
    };
    row.ok_or_else(RosError::not_found)
}

fn arg_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(arg_string).collect::<Vec<_>>().join(","),
        Value::Object(_) => v.to_string(),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, RosError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RosError::bad("JSON object expected")),
        Err(e) => Err(RosError::bad(format!("JSON parse error: {e}"))),
    }
}

fn to_args(m: &Map<String, Value>, skip: &[&str]) -> Args {
    m.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), arg_string(v)))
        .collect()
}

/// A row as GET shows it: a disabled static route comes back without
/// `distance`, `routing-table`, `scope`, `target-scope` and `dynamic`.
fn view(menu: &str, r: &Row, proplist: Option<&[String]>) -> Value {
    let mut v = r.to_json();
    if let Value::Object(o) = &mut v {
        if menu == "ip/route" && r.is("disabled") {
            for k in ["distance", "routing-table", "scope", "target-scope", "dynamic"] {
                o.remove(k);
            }
        }
        if let Some(keep) = proplist {
            o.retain(|k, _| k == ".id" || keep.iter().any(|p| p == k));
        }
    }
    v
}

fn proplist_of(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        ),
        Value::Array(a) => Some(a.iter().map(arg_string).collect()),
        _ => None,
    }
}

/// Evaluate an API `.query` (a stack of words: `k=v`, `k<v`, `k>v`, `k`,
/// `-k`, `#|`, `#&`, `#!`) on one row.
fn query_matches(r: &Row, words: &[String]) -> Result<bool, RosError> {
    let mut stack: Vec<bool> = Vec::new();
    let val = |k: &str| {
        if k == ".id" {
            Some(r.id.clone())
        } else {
            r.get(k).map(str::to_string)
        }
    };
    for w in words {
        let bad = || RosError::bad(format!("invalid query word {w}"));
        let b = if let Some(op) = w.strip_prefix('#') {
            match op {
                "|" | "&" => {
                    let (Some(x), Some(y)) = (stack.pop(), stack.pop()) else {
                        return Err(bad());
                    };
                    if op == "|" {
                        x || y
                    } else {
                        x && y
                    }
                }
                "!" => !stack.pop().ok_or_else(bad)?,
                _ => return Err(bad()),
            }
        } else if let Some(k) = w.strip_prefix('-') {
            val(k).is_none()
        } else if let Some((k, v)) = w.split_once('=') {
            Cond::Eq(k.to_string(), v.to_string()).matches(r)
        } else if let Some((k, v)) = w.split_once('<') {
            cmp(val(k).as_deref(), v).is_some_and(|o| o.is_lt())
        } else if let Some((k, v)) = w.split_once('>') {
            cmp(val(k).as_deref(), v).is_some_and(|o| o.is_gt())
        } else {
            val(w).is_some()
        };
        stack.push(b);
    }
    Ok(stack.into_iter().all(|b| b))
}

fn cmp(a: Option<&str>, b: &str) -> Option<std::cmp::Ordering> {
    let a = a?;
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => Some(x.cmp(&y)),
        _ => Some(a.cmp(b)),
    }
}

/// Handle one request.
pub fn handle(sim: &mut Sim, req: &Request) -> Response {
    let authorised = req.auth.as_ref().is_some_and(|(u, p)| sim.authorised(u, p));
    if !authorised {
        let who = req.auth.as_ref().map(|(u, _)| u.as_str()).unwrap_or("");
        sim.router.log_line(
            "system,error,critical",
            &format!("login failure for user {who} via rest-api"),
        );
        return Response::err(&RosError::unauthorized());
    }
    if req.method == "HEAD" {
        return Response::err(&RosError {
            status: 501,
            detail: None,
        });
    }
    let Some(rest) = req
        .path
        .strip_prefix("/rest/")
        .or_else(|| req.path.strip_prefix("/rest"))
    else {
        return Response::err(&RosError::not_found());
    };
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let mutating = match req.method.as_str() {
        "PUT" | "PATCH" | "DELETE" => true,
        "POST" => segs.last().is_some_and(|c| MUTATING.contains(&c.as_str())),
        _ => false,
    };
    if mutating {
        if let Some(e) = sim.fail_next.take() {
            return Response::err(&e);
        }
    }
    let resp = match route(sim, req, &segs) {
        Ok(r) => r,
        Err(e) => Response::err(&e),
    };
    if mutating && (200..300).contains(&resp.status) {
        sim.writes += 1;
    }
    sim.sync();
    resp
}

fn route(sim: &mut Sim, req: &Request, segs: &[String]) -> Result<Response, RosError> {
    if segs.len() == 1 && segs[0] == "ping" {
        return match req.method.as_str() {
            "POST" => ping(sim, &parse_body(&req.body)?),
            _ => Err(RosError::bad("no such command")),
        };
    }
    // The longest prefix that is a menu; every segment before it a directory.
    let mut path = String::new();
    let mut menu: Option<(&'static Menu, usize)> = None;
    for (i, s) in segs.iter().enumerate() {
        let next = if path.is_empty() {
            s.clone()
        } else {
            format!("{path}/{s}")
        };
        if !schema::is_dir(&next) {
            break;
        }
        path = next;
        if let Some(m) = schema::menu_of(&path) {
            menu = Some((m, i + 1));
        }
    }
    let Some((m, used)) = menu else {
        let bad = segs.iter().scan(String::new(), |p, s| {
            *p = if p.is_empty() {
                s.clone()
            } else {
                format!("{p}/{s}")
            };
            Some((s.clone(), schema::is_dir(p)))
        });
        let name = bad
            .filter(|(_, ok)| !ok)
            .map(|(s, _)| s)
            .next()
            .unwrap_or_default();
        return Err(RosError::no_such(&name));
    };
    let rest = &segs[used..];
    if rest.len() > 1 {
        return Err(RosError::no_such(&rest[1]));
    }
    let item = rest.first().map(String::as_str);
    let path = m.path;
    let router = &mut sim.router;
    match (req.method.as_str(), item) {
        ("GET", None) => {
            let rows = router.db.rows(path);
            if m.singleton {
                return Ok(Response::ok(
                    rows.first().map(|r| view(path, r, None)).unwrap_or(json!({})),
                ));
            }
            let mut conds = Vec::new();
            let mut proplist = None;
            for (k, v) in &req.query {
                if k == ".proplist" {
                    proplist = Some(v.split(',').map(str::to_string).collect::<Vec<_>>());
                } else {
                    conds.push(Cond::Eq(k.clone(), v.clone()));
                }
            }
            let out: Vec<Value> = rows
                .iter()
                .filter(|r| conds.iter().all(|c| c.matches(r)))
                .map(|r| view(path, r, proplist.as_deref()))
                .collect();
            Ok(Response::ok(Value::Array(out)))
        }
        ("GET", Some(x)) => {
            if m.has(x) || ["print", "find", "get", "export", "move", "add"].contains(&x) {
                return Err(RosError::bad("no such command"));
            }
            let row = item_at(&router.db, m.named, path, x)?;
            let proplist = req
                .query
                .iter()
                .find(|(k, _)| k == ".proplist")
                .map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>());
            Ok(Response::ok(view(path, row, proplist.as_deref())))
        }
        ("PUT", None) => {
            let body = parse_body(&req.body)?;
            let id = router.add(path, &to_args(&body, &[]))?;
            let row = router.db.get(path, &id).ok_or_else(RosError::not_found)?;
            Ok(Response::ok(view(path, row, None)))
        }
        ("PATCH", Some(x)) => {
            let body = parse_body(&req.body)?;
            let id = item_at(&router.db, m.named, path, x)?.id.clone();
            let args = to_args(&body, &[".id"]);
            if let Err(e) = router.set(path, &id, &args) {
                if !is_id(x)
                    && e.detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with("unknown parameter"))
                {
                    return Err(RosError::bad("missing or invalid resource identifier"));
                }
                return Err(e);
            }
            let row = router.db.get(path, &id).ok_or_else(RosError::not_found)?;
            Ok(Response::ok(view(path, row, None)))
        }
        ("DELETE", Some(x)) => {
            let id = item_at(&router.db, m.named, path, x)?.id.clone();
            router.remove(path, &id)?;
            Ok(Response {
                status: 204,
                body: None,
            })
        }
        ("POST", Some(cmd)) => {
            let body = parse_body(&req.body)?;
            command(sim, m, cmd, &body)
        }
        ("POST" | "PATCH" | "DELETE", None) => Err(RosError::bad("no such command")),
        (_, Some(x)) if req.method == "PUT" => Err(RosError::no_such(x)),
        _ => Err(RosError {
            status: 406,
            detail: Some("unsupported method".into()),
        }),
    }
}

fn numbers_of(body: &Map<String, Value>) -> Option<String> {
    body.get("numbers").or_else(|| body.get(".id")).map(arg_string)
}

fn command(sim: &mut Sim, m: &Menu, cmd: &str, body: &Map<String, Value>) -> Result<Response, RosError> {
    let path = m.path;
    let router = &mut sim.router;
    if cmd != "print" && !m.has(cmd) {
        return Err(RosError::no_such(cmd));
    }
    let check = |allowed: &[&str]| -> Result<(), RosError> {
        match body.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(RosError::unknown_parameter(k)),
            None => Ok(()),
        }
    };
    match cmd {
        "print" => {
            check(&[".proplist", ".query"])?;
            let proplist = proplist_of(body.get(".proplist"));
            let words: Vec<String> = match body.get(".query") {
                Some(Value::Array(a)) => a.iter().map(arg_string).collect(),
                Some(v) => vec![arg_string(v)],
                None => vec![],
            };
            let rows = router.db.rows(path);
            if m.singleton {
                return Ok(Response::ok(Value::Array(
                    rows.iter().map(|r| view(path, r, proplist.as_deref())).collect(),
                )));
            }
            let mut out = Vec::new();
            for r in rows {
                if query_matches(r, &words)? {
                    out.push(view(path, r, proplist.as_deref()));
                }
            }
            Ok(Response::ok(Value::Array(out)))
        }
        "add" => {
            let id = router.add(path, &to_args(body, &[]))?;
            Ok(Response::ok(json!({"ret": id})))
        }
        "set" => {
            let numbers = if m.singleton {
                String::new()
            } else {
                numbers_of(body).unwrap_or_default()
            };
            router.set(path, &numbers, &to_args(body, &["numbers", ".id"]))?;
            Ok(Response::ok(json!([])))
        }
        "remove" | "enable" | "disable" => {
            check(&["numbers", ".id"])?;
            let numbers = numbers_of(body).ok_or_else(|| RosError::bad("missing =.id="))?;
            match cmd {
                "remove" => router.remove(path, &numbers)?,
                "enable" => router.enable(path, &numbers, true)?,
                _ => router.enable(path, &numbers, false)?,
            }
            Ok(Response::ok(json!([])))
        }
        "unset" => {
            check(&["numbers", ".id", "value-name"])?;
            let numbers = numbers_of(body).ok_or_else(|| RosError::bad("missing =.id="))?;
            let name = body
                .get("value-name")
                .map(arg_string)
                .ok_or_else(|| RosError::bad("missing =value-name="))?;
            let mut a = Args::new();
            a.insert(format!("!{name}"), String::new());
            router.set(path, &numbers, &a)?;
            Ok(Response::ok(json!([])))
        }
        "move" => {
            check(&["numbers", ".id", "destination"])?;
            let numbers = numbers_of(body);
            let dest = body.get("destination").map(arg_string);
            router.move_rows(path, numbers.as_deref(), dest.as_deref())?;
            Ok(Response::ok(json!([])))
        }
        "run" => {
            check(&["number", ".id"])?;
            let n = body.get("number").or_else(|| body.get(".id")).map(arg_string);
            let n = n.ok_or_else(|| RosError::bad("missing =number="))?;
            router.run_script(&n)?;
            Ok(Response::ok(json!([])))
        }
        other => Err(RosError::no_such(other)),
    }
}

fn ping(sim: &mut Sim, body: &Map<String, Value>) -> Result<Response, RosError> {
    let address = body
        .get("address")
        .map(arg_string)
        .ok_or_else(|| RosError::bad("missing =address="))?;
    // Without `count` RouterOS pings until the REST session times out.
    let count: u32 = match body.get("count").map(arg_string) {
        Some(c) => c
            .parse()
            .map_err(|_| RosError::bad("invalid value for argument count"))?,
        None => return Err(RosError::bad("Session closed")),
    };
    if address.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(RosError::bad("invalid value for argument address"));
    }
    let count = count.clamp(1, 100);
    let received = if sim.kernel {
        let out = std::process::Command::new("ping")
            .args(["-c", &count.to_string(), "-W", "1", "-n", &address])
            .output()
            .map_err(|e| RosError::bad(format!("failure: ping: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.contains("received"))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    } else {
        count
    };
    let rows: Vec<Value> = (1..=count)
        .map(|sent| {
            let rec = received.min(sent);
            let loss = (sent - rec) * 100 / sent;
            json!({
                "seq": (sent - 1).to_string(),
                "host": address,
                "sent": sent.to_string(),
                "received": rec.to_string(),
                "packet-loss": loss.to_string(),
            })
        })
        .collect();
    Ok(Response::ok(Value::Array(rows)))
}
