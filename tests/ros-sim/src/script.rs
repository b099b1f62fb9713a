//! The subset of RouterOS script that Warren's rollback uses.
//!
//! Supported: commands with absolute (`/ip/firewall/nat/add`, `/ip firewall
//! nat remove`) or relative paths (after a line that is only a path, as in
//! an export), `key=value` arguments (bare, quoted with the console's
//! escapes, or `[find …]`), flags (`fib`), the verbs `add set remove enable
//! disable unset move print find` and `/system script run`, `[find]` with
//! `where`, `=`, `!=`, `~` (regex) and bare boolean conditions, `:do { … }
//! on-error={ … }` (blocks may span lines), `:log info|warning|error|debug
//! "…"`, `:put`, `:delay` (ignored), `#` comments, `;` and `\` line
//! continuation. Anything else fails the script with a syntax error.

use crate::error::RosError;
use crate::router::{Args, Cond, Router};
use crate::schema;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Bracket(String),
    Block(String),
    Eq,
    End,
}

fn syntax(msg: impl std::fmt::Display) -> RosError {
    RosError::bad(format!("syntax error ({msg})"))
}

/// Read a quoted string starting after the opening quote; returns the
/// decoded text and the index after the closing quote.
fn read_string(c: &[char], mut i: usize) -> Result<(String, usize), RosError> {
    let mut out = String::new();
    while i < c.len() {
        match c[i] {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let e = *c.get(i + 1).ok_or_else(|| syntax("unterminated string"))?;
                i += 2;
                match e {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '_' => out.push(' '),
                    '\n' => {}
                    '"' | '\\' | '$' | '?' => out.push(e),
                    h if h.is_ascii_hexdigit() => {
                        let l = *c.get(i).ok_or_else(|| syntax("bad escape"))?;
                        let v =
                            u8::from_str_radix(&format!("{h}{l}"), 16).map_err(|_| syntax("bad escape"))?;
                        out.push(char::from(v));
                        i += 1;
                    }
                    other => return Err(syntax(format!("bad escape \\{other}"))),
                }
            }
            '$' => return Err(syntax("variables are not supported")),
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    Err(syntax("unterminated string"))
}

/// The raw text up to the matching close bracket (strings and nesting
/// respected); returns the inner text and the index after the close.
fn read_group(c: &[char], mut i: usize, open: char, close: char) -> Result<(String, usize), RosError> {
    let start = i;
    let mut depth = 1;
    while i < c.len() {
        match c[i] {
            '"' => {
                let (_, j) = read_string(c, i + 1)?;
                i = j;
                continue;
            }
            '\\' => i += 1,
            ch if ch == open => depth += 1,
            ch if ch == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok((c[start..i].iter().collect(), i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(syntax(format!("missing {close}")))
}

fn lex(src: &str) -> Result<Vec<Tok>, RosError> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at_start = |out: &Vec<Tok>| matches!(out.last(), None | Some(Tok::End));
    while i < c.len() {
        let ch = c[i];
        match ch {
            '\n' | ';' => {
                out.push(Tok::End);
                i += 1;
            }
            '\\' if c.get(i + 1) == Some(&'\n') => i += 2,
            '\\' if c.get(i + 1) == Some(&'\r') && c.get(i + 2) == Some(&'\n') => i += 3,
            c0 if c0.is_whitespace() => i += 1,
            '#' if at_start(&out) => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                let (s, j) = read_string(&c, i + 1)?;
                out.push(Tok::Str(s));
                i = j;
            }
            '[' => {
                let (s, j) = read_group(&c, i + 1, '[', ']')?;
                out.push(Tok::Bracket(s));
                i = j;
            }
            '{' => {
                let (s, j) = read_group(&c, i + 1, '{', '}')?;
                out.push(Tok::Block(s));
                i = j;
            }
            '=' => {
                out.push(Tok::Eq);
                i += 1;
            }
            ']' | '}' => return Err(syntax(format!("unexpected {ch}"))),
            _ => {
                let start = i;
                while i < c.len() && !c[i].is_whitespace() && !"\"[]{};=".contains(c[i]) {
                    i += 1;
                }
                let w: String = c[start..i].iter().collect();
                if w.contains('$') {
                    return Err(syntax("variables are not supported"));
                }
                out.push(Tok::Word(w));
            }
        }
    }
    out.push(Tok::End);
    Ok(out)
}

/// One argument of a command.
#[derive(Clone, Debug)]
enum Item {
    /// A bare word (path segment, positional, flag).
    Word(String),
    /// A quoted string.
    Str(String),
    /// `[ … ]`.
    Bracket(String),
    /// `{ … }`.
    Block(String),
    /// `key=value`.
    Kv(String, Box<Item>),
}

fn statements(toks: Vec<Tok>) -> Result<Vec<Vec<Item>>, RosError> {
    let mut stmts = Vec::new();
    let mut cur: Vec<Item> = Vec::new();
    let mut it = toks.into_iter().peekable();
    while let Some(t) = it.next() {
        match t {
            Tok::End => {
                // `:do { … }` followed by `on-error=` on the next line.
                let is_do = matches!(cur.first(), Some(Item::Word(w)) if w == ":do");
                if is_do {
                    let mut look = it.clone();
                    while look.peek() == Some(&Tok::End) {
                        look.next();
                    }
                    if matches!(look.peek(), Some(Tok::Word(w)) if w == "on-error") {
                        it = look;
                        continue;
                    }
                }
                if !cur.is_empty() {
                    stmts.push(std::mem::take(&mut cur));
                }
            }
            Tok::Eq => {
                let key = match cur.pop() {
                    Some(Item::Word(w)) => w,
                    _ => return Err(syntax("= without a name")),
                };
                let val = match it.next() {
                    Some(Tok::Word(w)) => Item::Word(w),
                    Some(Tok::Str(s)) => Item::Str(s),
                    Some(Tok::Bracket(b)) => Item::Bracket(b),
                    Some(Tok::Block(b)) => Item::Block(b),
                    // `key=` followed by nothing: an empty value.
                    Some(Tok::End) | None => {
                        cur.push(Item::Kv(key, Box::new(Item::Str(String::new()))));
                        if !cur.is_empty() {
                            stmts.push(std::mem::take(&mut cur));
                        }
                        continue;
                    }
                    Some(Tok::Eq) => return Err(syntax("unexpected =")),
                };
                cur.push(Item::Kv(key, Box::new(val)));
            }
            Tok::Word(w) => cur.push(Item::Word(w)),
            Tok::Str(s) => cur.push(Item::Str(s)),
            Tok::Bracket(b) => cur.push(Item::Bracket(b)),
            Tok::Block(b) => cur.push(Item::Block(b)),
        }
    }
    if !cur.is_empty() {
        stmts.push(cur);
    }
    Ok(stmts)
}

/// Run `src` on `router`. The first failing command stops the script
/// (unless inside `:do { } on-error={ }`), as on RouterOS.
pub fn run(router: &mut Router, src: &str) -> Result<(), RosError> {
    let mut ctx = String::new();
    run_block(router, src, &mut ctx)
}

fn run_block(router: &mut Router, src: &str, ctx: &mut String) -> Result<(), RosError> {
    for stmt in statements(lex(src)?)? {
        exec(router, &stmt, ctx)?;
    }
    Ok(())
}

fn text(router: &Router, menu: &str, item: &Item) -> Result<String, RosError> {
    match item {
        Item::Word(w) | Item::Str(w) => Ok(w.clone()),
        Item::Bracket(b) => Ok(eval_bracket(router, menu, b)?.join(",")),
        Item::Block(_) => Err(syntax("unexpected { }")),
        Item::Kv(k, _) => Err(syntax(format!("unexpected {k}="))),
    }
}

fn exec(router: &mut Router, stmt: &[Item], ctx: &mut String) -> Result<(), RosError> {
    let Some(Item::Word(first)) = stmt.first() else {
        return Err(syntax("expected a command"));
    };
    match first.as_str() {
        ":do" => {
            let Some(Item::Block(body)) = stmt.get(1) else {
                return Err(syntax(":do needs { }"));
            };
            let mut on_error = None;
            for item in &stmt[2..] {
                match item {
                    Item::Kv(k, v) if k == "on-error" => match v.as_ref() {
                        Item::Block(b) => on_error = Some(b.clone()),
                        _ => return Err(syntax("on-error needs { }")),
                    },
                    _ => return Err(syntax("unsupported :do form")),
                }
            }
            let mut inner = ctx.clone();
            match run_block(router, body, &mut inner) {
                Ok(()) => Ok(()),
                Err(e) => match on_error {
                    Some(h) => {
                        let _ = e;
                        let mut inner = ctx.clone();
                        run_block(router, &h, &mut inner)
                    }
                    None => Err(e),
                },
            }
        }
        ":log" | ":put" => {
            let (topic, msg) = if first == ":log" {
                let Some(Item::Word(level)) = stmt.get(1) else {
                    return Err(syntax(":log needs a level"));
                };
                if !["info", "warning", "error", "debug"].contains(&level.as_str()) {
                    return Err(syntax(format!("bad log level {level}")));
                }
                (format!("script,{level}"), stmt.get(2))
            } else {
                ("script,info".to_string(), stmt.get(1))
            };
            let msg = match msg {
                Some(Item::Str(s) | Item::Word(s)) => s.clone(),
                Some(_) => return Err(syntax("unsupported :log argument")),
                None => String::new(),
            };
            if stmt.len() > if first == ":log" { 3 } else { 2 } {
                return Err(syntax("unsupported expression"));
            }
            router.log_line(&topic, &msg);
            Ok(())
        }
        ":delay" => Ok(()),
        w if w.starts_with(':') => Err(syntax(format!("unsupported command {w}"))),
        _ => command(router, stmt, ctx),
    }
}

fn command(router: &mut Router, stmt: &[Item], ctx: &mut String) -> Result<(), RosError> {
    let mut path = String::new();
    let mut verb: Option<String> = None;
    let mut rest: Vec<Item> = Vec::new();
    for (n, item) in stmt.iter().enumerate() {
        if verb.is_some() {
            rest.push(item.clone());
            continue;
        }
        let Item::Word(w) = item else {
            rest = stmt[n..].to_vec();
            break;
        };
        if n == 0 && !w.starts_with('/') {
            path = ctx.clone();
        }
        let segs: Vec<&str> = w.split('/').filter(|s| !s.is_empty()).collect();
        for (k, seg) in segs.iter().enumerate() {
            let next = if path.is_empty() {
                seg.to_string()
            } else {
                format!("{path}/{seg}")
            };
            if verb.is_none() && schema::is_dir(&next) {
                path = next;
            } else if verb.is_none() && k + 1 == segs.len() {
                verb = Some(seg.to_string());
            } else {
                return Err(RosError::no_such(seg));
            }
        }
    }
    let Some(verb) = verb else {
        if !rest.is_empty() {
            return Err(syntax("arguments without a command"));
        }
        *ctx = path;
        return Ok(());
    };
    let Some(menu) = schema::menu_of(&path) else {
        return Err(RosError::no_such(&verb));
    };
    let mut args = Args::new();
    let mut positional = Vec::new();
    for item in &rest {
        match item {
            Item::Kv(k, v) => {
                let v = text(router, &path, v)?;
                args.insert(k.clone(), v);
            }
            Item::Block(_) => return Err(syntax("unexpected { }")),
            other => positional.push(other.clone()),
        }
    }
    let first_pos = match positional.first() {
        Some(p) => Some(text(router, &path, p)?),
        None => None,
    };
    let numbers = args.remove("numbers").or_else(|| first_pos.clone());
    match verb.as_str() {
        "add" => {
            for p in &positional {
                match p {
                    Item::Word(w) => {
                        args.insert(w.clone(), String::new());
                    }
                    _ => return Err(syntax("unexpected value")),
                }
            }
            router.add(&path, &args).map(|_| ())
        }
        "set" if menu.singleton => router.set(&path, "", &args),
        "set" | "remove" | "enable" | "disable" | "unset" => {
            if !menu.has(&verb) {
                return Err(RosError::no_such(&verb));
            }
            let numbers = numbers.ok_or_else(|| RosError::bad("missing =.id="))?;
            if numbers.is_empty() {
                // `remove [find …]` that found nothing: nothing to do.
                return Ok(());
            }
            match verb.as_str() {
                "set" => router.set(&path, &numbers, &args),
                "remove" => router.remove(&path, &numbers),
                "enable" => router.enable(&path, &numbers, true),
                "disable" => router.enable(&path, &numbers, false),
                _ => {
                    let name = args
                        .remove("value-name")
                        .ok_or_else(|| RosError::bad("missing value-name"))?;
                    let mut a = Args::new();
                    a.insert(format!("!{name}"), String::new());
                    router.set(&path, &numbers, &a)
                }
            }
        }
        "move" => {
            let dest = args.remove("destination").or(match positional.get(1) {
                Some(p) => Some(text(router, &path, p)?),
                None => None,
            });
            router.move_rows(&path, numbers.as_deref(), dest.as_deref())
        }
        "run" if path == "system/script" => {
            let n = args
                .remove("number")
                .or(first_pos)
                .ok_or_else(|| RosError::bad("missing =number="))?;
            router.run_script(&n)
        }
        "print" | "find" | "export" => Ok(()),
        other => Err(RosError::no_such(other)),
    }
}

/// Evaluate `[ … ]`: only `find` (optionally with a path) is supported.
fn eval_bracket(router: &Router, menu: &str, inner: &str) -> Result<Vec<String>, RosError> {
    let stmts = statements(lex(inner)?)?;
    let [stmt] = stmts.as_slice() else {
        return Err(syntax("unsupported [ ] expression"));
    };
    let mut path = menu.to_string();
    let mut i = 0;
    // An optional path before `find`.
    while let Some(Item::Word(w)) = stmt.get(i) {
        if w == "find" {
            break;
        }
        if i == 0 && w.starts_with('/') {
            path.clear();
        }
        for seg in w.split('/').filter(|s| !s.is_empty()) {
            path = if path.is_empty() {
                seg.to_string()
            } else {
                format!("{path}/{seg}")
            };
        }
        i += 1;
    }
    if !matches!(stmt.get(i), Some(Item::Word(w)) if w == "find") {
        return Err(syntax("unsupported [ ] expression (only find)"));
    }
    i += 1;
    let mut conds = Vec::new();
    while let Some(item) = stmt.get(i) {
        i += 1;
        match item {
            Item::Word(w) if w == "where" || w == "and" => {}
            Item::Word(w) if w == "or" || w == "not" => {
                return Err(syntax(format!("unsupported find operator {w}")))
            }
            Item::Word(w) if w.ends_with('~') => {
                let key = w.trim_end_matches('~').to_string();
                let pat = match stmt.get(i) {
                    Some(Item::Str(s) | Item::Word(s)) => s.clone(),
                    _ => return Err(syntax("~ needs a pattern")),
                };
                i += 1;
                let re = regex::Regex::new(&pat).map_err(|e| syntax(format!("bad regex: {e}")))?;
                conds.push(Cond::Re(key, re));
            }
            Item::Word(w) if w.starts_with('!') => conds.push(Cond::NotTrue(w[1..].to_string())),
            Item::Word(w) => conds.push(Cond::True(w.clone())),
            Item::Kv(k, v) => {
                let v = match v.as_ref() {
                    Item::Word(s) | Item::Str(s) => s.clone(),
                    _ => return Err(syntax("unsupported find value")),
                };
                match k.strip_suffix('!') {
                    Some(k) => conds.push(Cond::Ne(k.to_string(), v)),
                    None => conds.push(Cond::Eq(k.clone(), v)),
                }
            }
            _ => return Err(syntax("unsupported find condition")),
        }
    }
    router.find(&path, &conds)
}
