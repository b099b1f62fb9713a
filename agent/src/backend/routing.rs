//! Routes and policy rules tagged `proto 77` / `protocol 77` (Warren's own).
//! Untagged routes and rules are never read into the state, so never removed.

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::Result;
use serde_json::Value;
use warren_plan::diff::RoutingOp;
use warren_plan::net::Ipv4Cidr;
use warren_plan::{PolicyRule, Route, State, RT_PROTO};

#[derive(Debug)]
pub struct Routing;

fn cidr(s: &str, len: Option<u8>) -> Option<Ipv4Cidr> {
    if s == "default" || s == "all" {
        return Some(Ipv4Cidr::default_route());
    }
    if s.contains('/') {
        return s.parse().ok();
    }
    Ipv4Cidr::new(s.parse().ok()?, len.unwrap_or(32))
}

fn num(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.strip_prefix("0x").map_or_else(
            || s.parse().ok(),
            |h| u32::from_str_radix(h.split('/').next().unwrap_or(h), 16).ok(),
        ),
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

pub fn parse_routes(json: &str) -> Vec<Route> {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Array(vec![]));
    let mut out = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        let (Some(dst), Some(dev), Some(table)) = (
            r["dst"].as_str().and_then(|d| cidr(d, None)),
            r["dev"].as_str(),
            num(&r["table"]),
        ) else {
            continue;
        };
        out.push(Route {
            table,
            dst,
            dev: dev.to_string(),
            via: r["gateway"].as_str().and_then(|g| g.parse().ok()),
        });
    }
    out.sort();
    out
}

pub fn parse_rules(json: &str) -> Vec<PolicyRule> {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Array(vec![]));
    let mut out = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        if r["protocol"].as_str() != Some(&RT_PROTO.to_string()) {
            continue;
        }
        let (Some(priority), Some(table)) = (num(&r["priority"]), num(&r["table"])) else {
            continue;
        };
        let len = r["srclen"].as_u64().and_then(|l| u8::try_from(l).ok());
        // `all` parses as 0.0.0.0/0: no source selector.
        let from = r["src"].as_str().and_then(|s| cidr(s, len)).filter(|c| c.len > 0);
        out.push(PolicyRule {
            priority,
            fwmark: r.get("fwmark").and_then(num),
            from,
            table,
        });
    }
    out.sort();
    out
}

fn route_args(r: &Route) -> Vec<String> {
    let mut a = vec![if r.dst.len == 0 {
        "default".to_string()
    } else {
        r.dst.to_string()
    }];
    if let Some(v) = r.via {
        a.extend(["via".into(), v.to_string()]);
    }
    a.extend([
        "dev".into(),
        r.dev.clone(),
        "table".into(),
        r.table.to_string(),
        "proto".into(),
        RT_PROTO.to_string(),
    ]);
    a
}

fn rule_args(r: &PolicyRule) -> Vec<String> {
    let mut a = vec!["priority".to_string(), r.priority.to_string()];
    if let Some(m) = r.fwmark {
        a.extend(["fwmark".into(), format!("{m:#x}")]);
    }
    if let Some(f) = r.from {
        a.extend(["from".into(), f.to_string()]);
    }
    a.extend([
        "table".into(),
        r.table.to_string(),
        "protocol".into(),
        RT_PROTO.to_string(),
    ]);
    a
}

impl Backend for Routing {
    type Op = RoutingOp;
    fn name(&self) -> &'static str {
        "routing"
    }
    fn observe(&self, sys: &dyn Sys, _: &Scope, state: &mut State) -> Result<()> {
        let proto = RT_PROTO.to_string();
        // `-N`: tables and protocols as numbers even where /etc/iproute2
        // names them (`100 wan` in rt_tables is common); a name would make
        // Warren's routes and rules invisible, and heal would add them again
        // and again.
        state.routes = parse_routes(&sys.read(
            "ip",
            &["-N", "-j", "-4", "route", "show", "table", "all", "proto", &proto],
        )?);
        state.rules = parse_rules(&sys.read("ip", &["-N", "-j", "-4", "rule", "show"])?);
        Ok(())
    }
    fn apply(&mut self, sys: &mut dyn Sys, op: &RoutingOp) -> Result<Option<Claim>> {
        let (verb, obj, args) = match op {
            RoutingOp::AddRoute { route } => ("replace", "route", route_args(route)),
            RoutingOp::DelRoute { route } => ("del", "route", route_args(route)),
            RoutingOp::AddRule { rule } => ("add", "rule", rule_args(rule)),
            RoutingOp::DelRule { rule } => ("del", "rule", rule_args(rule)),
        };
        let mut a: Vec<&str> = vec!["-4", obj, verb];
        a.extend(args.iter().map(String::as_str));
        sys.write("ip", &a, None)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iproute2_json() {
        let rules = parse_rules(
            r#"[{"priority":0,"src":"all","table":"local"},{"priority":456,"src":"all","fwmark":"0xa","table":"100","protocol":"77"},{"priority":456,"src":"10.0.18.2","table":"100","protocol":"77"},{"priority":500,"src":"10.1.0.0","srclen":16,"table":"100","protocol":"boot"}]"#,
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].fwmark, None);
        assert_eq!(rules[0].from.map(|f| f.to_string()), Some("10.0.18.2/32".into()));
        assert_eq!(rules[1].fwmark, Some(10));
        assert_eq!(rules[1].from, None);
        let routes = parse_routes(
            r#"[{"dst":"default","dev":"wg0","table":"100","scope":"link","flags":[]},{"dst":"10.9.0.0/16","gateway":"10.0.0.1","dev":"v0","table":"200","flags":[]}]"#,
        );
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].dst.len, 0);
        assert_eq!(routes[1].via.map(|v| v.to_string()), Some("10.0.0.1".into()));
        assert!(parse_rules("garbage").is_empty());
    }

    #[test]
    fn routes_and_rules_are_tagged_with_warrens_protocol() {
        let cidr = |s: &str| -> Ipv4Cidr { s.parse().unwrap() };
        let default = Route {
            table: 100,
            dst: cidr("0.0.0.0/0"),
            dev: "wg0".into(),
            via: None,
        };
        let via = Route {
            table: 200,
            dst: cidr("10.9.0.0/16"),
            dev: "v0".into(),
            via: Some("10.0.0.1".parse().unwrap()),
        };
        let marked = PolicyRule {
            priority: 456,
            fwmark: Some(10),
            from: None,
            table: 100,
        };
        let sourced = PolicyRule {
            priority: 457,
            fwmark: None,
            from: Some(cidr("10.0.18.2/32")),
            table: 100,
        };
        let mut sys = crate::sys::Recorder::default();
        for op in [
            RoutingOp::AddRoute { route: default },
            RoutingOp::DelRoute { route: via },
            RoutingOp::AddRule { rule: marked },
            RoutingOp::DelRule { rule: sourced },
        ] {
            assert_eq!(Routing.apply(&mut sys, &op).unwrap(), None);
        }
        assert_eq!(
            sys.log,
            [
                "ip -4 route replace default dev wg0 table 100 proto 77",
                "ip -4 route del 10.9.0.0/16 via 10.0.0.1 dev v0 table 200 proto 77",
                "ip -4 rule add priority 456 fwmark 0xa table 100 protocol 77",
                "ip -4 rule del priority 457 from 10.0.18.2/32 table 100 protocol 77",
            ]
        );
    }
}
