//! A RouterOS plan as a console script (v7 syntax, slash paths) that a
//! person can review or paste into a terminal on the router, and a small
//! parser that reads such a script back into commands and arguments (the
//! conformance test checks every one against RouterOS's own schema).
//!
//! One line per entry, in apply order: `/<menu>/add k=v … comment="warren:<tag>"`.
//! Values are quoted as the console wants them; flags (`fib`) are written
//! bare. A jump rule ([`Place::Top`]) goes before the first static rule of
//! its built-in chain, or at the end when the chain is empty, with an `:if`
//! that works on paste. Pure: no I/O.

use crate::ros::{Place, RosConfig, RosEntry};
use std::fmt::Write;

/// Properties whose empty value means "flag set", written bare (`fib`).
const FLAGS: [&str; 2] = ["fib", "blackhole"];

/// Properties written first, in this order, so lines read naturally.
const FIRST: [&str; 4] = ["chain", "name", "address", "interface"];

/// Properties written last (what the rule does), in this order.
const LAST: [&str; 12] = [
    "action",
    "jump-target",
    "new-connection-mark",
    "new-routing-mark",
    "new-mss",
    "passthrough",
    "to-addresses",
    "to-ports",
    "table",
    "routing-table",
    "gateway",
    "place-before",
];

/// The whole script for `host`'s RouterOS entries.
pub fn render(host: &str, cfg: &RosConfig) -> String {
    let mut o = String::new();
    let a = &cfg.access;
    let _ = writeln!(
        o,
        "# warren plan for {host} (RouterOS v7): {} entries, each tagged comment=\"warren:<tag>\"",
        cfg.entries.len()
    );
    let _ = writeln!(
        o,
        "# the agent applies it over REST (https://{}:{}, user {}); to do it by hand, paste it into a terminal on a router that has none of Warren's entries yet",
        a.address, a.port, a.user
    );
    for e in &cfg.entries {
        let _ = writeln!(o, "{}", line(e));
    }
    o
}

/// One entry's line.
pub fn line(e: &RosEntry) -> String {
    let add = add_command(e, None);
    match (e.place, chain_of(e)) {
        (Place::Top, Some(chain)) => {
            let find = format!("[/{}/find where chain={} dynamic=no]", e.menu, quote(chain));
            let first = format!("[:pick {find} 0]");
            format!(
                ":if ([:len {find}] = 0) do={{{add}}} else={{{}}}",
                add_command(e, Some(&first))
            )
        }
        _ => add,
    }
}

fn chain_of(e: &RosEntry) -> Option<&str> {
    e.props.get("chain").map(String::as_str)
}

/// `/<menu>/add k=v … comment="warren:<tag>" [place-before=<expr>]`.
fn add_command(e: &RosEntry, place_before: Option<&str>) -> String {
    let mut s = format!("/{}/add", e.menu);
    for (k, v) in ordered(e) {
        if v.is_empty() && FLAGS.contains(&k) {
            let _ = write!(s, " {k}");
        } else {
            let _ = write!(s, " {k}={}", quote(v));
        }
    }
    let _ = write!(s, " comment={}", always_quoted(&e.comment()));
    if let Some(p) = place_before {
        let _ = write!(s, " place-before={p}");
    }
    s
}

fn ordered(e: &RosEntry) -> Vec<(&str, &str)> {
    let rank = |k: &str| {
        if let Some(i) = FIRST.iter().position(|f| *f == k) {
            (0, i)
        } else if let Some(i) = LAST.iter().position(|f| *f == k) {
            (2, i)
        } else {
            (1, 0)
        }
    };
    let mut v: Vec<(&str, &str)> = e.props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Stable sort: within a rank, the map's (alphabetical) order stays.
    v.sort_by_key(|(k, _)| rank(k));
    v
}

/// A value as the console reads it: bare when that is unambiguous, quoted
/// otherwise.
pub fn quote(v: &str) -> String {
    // Bare only when every character is one the console reads as part of a
    // word; anything else (space, `=`, `;`, quotes, `$`, brackets, `?`, `#`,
    // control characters, non-ASCII) is quoted.
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/,+@*!%".contains(&b));
    if plain {
        v.to_string()
    } else {
        always_quoted(v)
    }
}

/// A value in double quotes, with `\"`, `\\`, `\$`, `\?` and control
/// characters escaped.
pub fn always_quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '$' => s.push_str("\\$"),
            '?' => s.push_str("\\?"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(s, "\\{b:02X}");
                }
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One console command read back from a script: `/<menu>/<command> args…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCommand {
    /// The menu without leading slash, e.g. `ip/firewall/filter`.
    pub menu: String,
    /// The command, e.g. `add`, `find`.
    pub command: String,
    /// Arguments in order: name and value (`None` for a bare flag). A
    /// quoted value is unescaped; an expression (`[...]`) is kept as written.
    pub args: Vec<(String, Option<String>)>,
}

impl ScriptCommand {
    /// The value of argument `name`, if given with one.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Why a script line cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A quote, bracket or brace is not closed (or closed twice).
    #[error("unbalanced {0:?} in {1:?}")]
    Unbalanced(char, String),
    /// A backslash escape the console does not have.
    #[error("bad escape in {0:?}")]
    BadEscape(String),
    /// A command path without a menu (`/add`) or a statement that is neither
    /// a `/menu/command` nor a `:keyword`.
    #[error("not a RouterOS command: {0:?}")]
    NotACommand(String),
    /// `=` with no argument name before it.
    #[error("argument without a name in {0:?}")]
    NoName(String),
}

/// Every console command in a script, line by line (comments and blank
/// lines skipped), including those nested in `:if` bodies and `[...]`
/// expressions, in the order they appear.
pub fn parse(script: &str) -> Result<Vec<ScriptCommand>, ScriptError> {
    let mut out = Vec::new();
    for l in script.lines() {
        out.extend(parse_line(l)?);
    }
    Ok(out)
}

/// The commands of one line (none for a comment or a blank line).
pub fn parse_line(line: &str) -> Result<Vec<ScriptCommand>, ScriptError> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    statement(t, &mut out)?;
    Ok(out)
}

/// One statement: a `/menu/command args…` or a `:keyword …` whose parts may
/// hold nested statements.
fn statement(text: &str, out: &mut Vec<ScriptCommand>) -> Result<(), ScriptError> {
    let tokens = tokenize(text)?;
    let Some(first) = tokens.first() else {
        return Ok(());
    };
    if let Some(path) = first.strip_prefix('/') {
        let (menu, command) = path
            .rsplit_once('/')
            .filter(|(m, c)| !m.is_empty() && !c.is_empty())
            .ok_or_else(|| ScriptError::NotACommand(text.to_string()))?;
        let mut cmd = ScriptCommand {
            menu: menu.to_string(),
            command: command.to_string(),
            args: Vec::new(),
        };
        let index = out.len();
        let mut rest = tokens[1..].iter();
        while let Some(tok) = rest.next() {
            if tok == "where" {
                let expr: Vec<&str> = rest.by_ref().map(String::as_str).collect();
                cmd.args.push(("where".into(), Some(expr.join(" "))));
                break;
            }
            match tok.split_once('=') {
                Some(("", _)) => return Err(ScriptError::NoName(text.to_string())),
                Some((k, v)) => {
                    nested(v, out)?;
                    cmd.args.push((k.to_string(), Some(value(v)?)));
                }
                None => cmd.args.push((tok.clone(), None)),
            }
        }
        out.insert(index, cmd);
        Ok(())
    } else if first.starts_with(':') {
        for tok in &tokens[1..] {
            match tok.split_once("={") {
                Some((_, body)) => statement(inner(body, '}', text)?, out)?,
                None => nested(tok, out)?,
            }
        }
        Ok(())
    } else {
        Err(ScriptError::NotACommand(text.to_string()))
    }
}

/// Statements nested in a token: `[...]` expressions, `(...)` groups.
fn nested(tok: &str, out: &mut Vec<ScriptCommand>) -> Result<(), ScriptError> {
    if let Some(body) = tok.strip_prefix('[') {
        statement(inner(body, ']', tok)?, out)
    } else if let Some(body) = tok.strip_prefix('(') {
        for t in tokenize(inner(body, ')', tok)?)? {
            nested(&t, out)?;
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// `body` without its closing `close`, which must be its last character.
fn inner<'a>(body: &'a str, close: char, whole: &str) -> Result<&'a str, ScriptError> {
    body.strip_suffix(close)
        .ok_or_else(|| ScriptError::Unbalanced(close, whole.to_string()))
}

/// A value as RouterOS receives it: a quoted string unescaped; anything else
/// (a bare word, an expression) as written.
fn value(v: &str) -> Result<String, ScriptError> {
    let Some(body) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let body = inner(body, '"', v)?;
    let bad = || ScriptError::BadEscape(v.to_string());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let unescaped = match chars.next() {
            Some(e @ ('"' | '\\' | '$' | '?')) => e as u8,
            Some('_') => b' ',
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('t') => b'\t',
            Some(h1) if h1.is_ascii_hexdigit() => {
                let h2 = chars.next().filter(char::is_ascii_hexdigit).ok_or_else(bad)?;
                u8::from_str_radix(&format!("{h1}{h2}"), 16).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        bytes.push(unescaped);
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

/// Split on whitespace outside quotes, brackets, braces and parentheses.
fn tokenize(text: &str) -> Result<Vec<String>, ScriptError> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut stack: Vec<char> = Vec::new();
    let mut in_str = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if in_str {
            cur.push(c);
            match c {
                '\\' => cur.extend(chars.next()),
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.push(c);
            }
            '[' | '{' | '(' => {
                stack.push(match c {
                    '[' => ']',
                    '{' => '}',
                    _ => ')',
                });
                cur.push(c);
            }
            ']' | '}' | ')' => {
                if stack.pop() != Some(c) {
                    return Err(ScriptError::Unbalanced(c, text.to_string()));
                }
                cur.push(c);
            }
            c if c.is_whitespace() && stack.is_empty() => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if in_str {
        return Err(ScriptError::Unbalanced('"', text.to_string()));
    }
    if let Some(c) = stack.pop() {
        return Err(ScriptError::Unbalanced(c, text.to_string()));
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ros::RosAccess;
    use std::collections::BTreeMap;

    fn entry(menu: &str, tag: &str, props: &[(&str, &str)], place: Place) -> RosEntry {
        RosEntry {
            menu: menu.into(),
            tag: tag.into(),
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            place,
        }
    }

    #[test]
    fn values_are_quoted_only_when_the_console_needs_it() {
        assert_eq!(quote("wg0"), "wg0");
        assert_eq!(quote("!wg0"), "!wg0");
        assert_eq!(quote("established,related"), "established,related");
        assert_eq!(quote("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("k=v"), "\"k=v\"");
        assert_eq!(quote("x;y"), "\"x;y\"");
        assert_eq!(quote("a$b"), "\"a\\$b\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(quote("[find]"), "\"[find]\"");
        assert_eq!(quote("{x}"), "\"{x}\"");
        assert_eq!(quote("it's"), "\"it's\"");
        // A base64 key with '=' padding must be quoted.
        assert_eq!(
            quote("m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg="),
            "\"m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=\""
        );
    }

    #[test]
    fn quoting_round_trips_through_the_parser() {
        for v in [
            "",
            "a b",
            "k=v",
            "x;y",
            "a$b",
            "say \"hi\"",
            "back\\slash",
            "[find]",
            "{x}",
            "it's",
            "tab\tnl\n",
            "q?",
            "\u{1}",
            "\u{85}",
            "é",
        ] {
            let e = entry(
                "ip/firewall/filter",
                "t",
                &[("chain", "warren-input"), ("log-prefix", v)],
                Place::InOrder,
            );
            let cmds = parse_line(&line(&e)).unwrap();
            assert_eq!(cmds.len(), 1, "{v:?}");
            assert_eq!(cmds[0].arg("log-prefix"), Some(v), "{}", line(&e));
        }
    }

    #[test]
    fn an_entry_is_one_add_line_with_its_tag_and_flags_bare() {
        let e = entry(
            "routing/table",
            "table/warren-100",
            &[("name", "warren-100"), ("fib", "")],
            Place::InOrder,
        );
        assert_eq!(
            line(&e),
            "/routing/table/add name=warren-100 fib comment=\"warren:table/warren-100\""
        );
        let cmds = parse_line(&line(&e)).unwrap();
        assert_eq!(
            cmds,
            [ScriptCommand {
                menu: "routing/table".into(),
                command: "add".into(),
                args: vec![
                    ("name".into(), Some("warren-100".into())),
                    ("fib".into(), None),
                    ("comment".into(), Some("warren:table/warren-100".into())),
                ],
            }]
        );
    }

    #[test]
    fn rule_lines_read_chain_first_and_action_last() {
        let e = entry(
            "ip/firewall/nat",
            "nat/web-tcp",
            &[
                ("chain", "warren-dstnat"),
                ("action", "dst-nat"),
                ("in-interface", "wg0"),
                ("protocol", "tcp"),
                ("dst-port", "8443"),
                ("to-addresses", "192.168.16.10"),
                ("to-ports", "443"),
            ],
            Place::InOrder,
        );
        assert_eq!(
            line(&e),
            "/ip/firewall/nat/add chain=warren-dstnat dst-port=8443 in-interface=wg0 protocol=tcp action=dst-nat to-addresses=192.168.16.10 to-ports=443 comment=\"warren:nat/web-tcp\""
        );
    }

    #[test]
    fn a_jump_goes_before_the_first_static_rule_or_at_the_end() {
        let e = entry(
            "ip/firewall/filter",
            "jump/filter-forward",
            &[
                ("chain", "forward"),
                ("action", "jump"),
                ("jump-target", "warren-forward"),
            ],
            Place::Top,
        );
        let l = line(&e);
        assert_eq!(
            l,
            ":if ([:len [/ip/firewall/filter/find where chain=forward dynamic=no]] = 0) do={/ip/firewall/filter/add chain=forward action=jump jump-target=warren-forward comment=\"warren:jump/filter-forward\"} else={/ip/firewall/filter/add chain=forward action=jump jump-target=warren-forward comment=\"warren:jump/filter-forward\" place-before=[:pick [/ip/firewall/filter/find where chain=forward dynamic=no] 0]}"
        );
        let cmds = parse_line(&l).unwrap();
        let names: Vec<(&str, &str)> = cmds
            .iter()
            .map(|c| (c.menu.as_str(), c.command.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("ip/firewall/filter", "find"),
                ("ip/firewall/filter", "add"),
                ("ip/firewall/filter", "add"),
                ("ip/firewall/filter", "find"),
            ]
        );
        assert_eq!(
            cmds[0].args,
            [("where".to_string(), Some("chain=forward dynamic=no".to_string()))]
        );
        assert_eq!(cmds[1].arg("place-before"), None);
        assert_eq!(
            cmds[2].arg("place-before"),
            Some("[:pick [/ip/firewall/filter/find where chain=forward dynamic=no] 0]")
        );
    }

    #[test]
    fn the_script_has_a_header_and_one_line_per_entry() {
        let cfg = RosConfig {
            access: RosAccess {
                address: "192.168.88.1".parse().unwrap(),
                port: 443,
                user: "warren".into(),
                fingerprint: "ab".repeat(32),
            },
            entries: vec![
                entry(
                    "interface/wireguard",
                    "if/wg0",
                    &[("name", "wg0"), ("listen-port", "51820"), ("mtu", "1420")],
                    Place::InOrder,
                ),
                entry(
                    "ip/address",
                    "addr/wg0",
                    &[("address", "10.0.18.2/30"), ("interface", "wg0")],
                    Place::InOrder,
                ),
            ],
        };
        let s = render("router", &cfg);
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[0].starts_with("# warren plan for router (RouterOS v7): 2 entries"),
            "{s}"
        );
        assert_eq!(lines.len(), 4, "{s}");
        assert_eq!(
            lines[2],
            "/interface/wireguard/add name=wg0 listen-port=51820 mtu=1420 comment=\"warren:if/wg0\""
        );
        assert_eq!(
            lines[3],
            "/ip/address/add address=10.0.18.2/30 interface=wg0 comment=\"warren:addr/wg0\""
        );
        assert_eq!(parse(&s).unwrap().len(), 2);
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for bad in [
            "/ip/address/add comment=\"open",
            "/ip/address/add x=[find",
            "/ip/address/add x=]",
            "/add name=x",
            "ip/address/add",
            "/ip/address/add =v",
            "/ip/address/add c=\"\\q\"",
            ":if (x) do={/ip/address/add",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(parse_line("  # a comment").unwrap(), []);
        assert_eq!(parse_line("").unwrap(), []);
    }
}
