//! `wt-forge` as the lab runs it, and the fake's shapes against the real
//! recorded responses in `../shared/data/forge/` (read only, when present).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use warren_fake_forge::{Dialect, FakeForge};

/// One request over a fresh connection; returns (status, body).
fn http(addr: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn wt_forge_prints_ready_and_serves_api_and_control() {
    for (kind, scheme, prefix) in [("github", "Bearer", ""), ("gitea", "token", "/api/v1")] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wt-forge"))
            .args([
                "--kind",
                kind,
                "--listen",
                "127.0.0.1:0",
                "--token",
                "tok",
                "--bot-login",
                "bot",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().strip_prefix("ready ").unwrap().to_string();
        assert!(url.ends_with(prefix), "{url}");
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let (st, body) = http(
            &addr,
            "GET",
            &format!("{prefix}/user"),
            Some(&format!("{scheme} tok")),
            "",
        );
        assert_eq!(st, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["login"], "bot");
        let (st, _) = http(
            &addr,
            "POST",
            "/_fake/fail",
            None,
            r#"{"status":429,"retry_after":1}"#,
        );
        assert_eq!(st, 200);
        let (st, _) = http(
            &addr,
            "GET",
            &format!("{prefix}/user"),
            Some(&format!("{scheme} tok")),
            "",
        );
        assert_eq!(st, 429);
        let (st, state) = http(&addr, "GET", "/_fake/state", None, "");
        assert_eq!(st, 200);
        let v: Value = serde_json::from_str(&state).unwrap();
        assert_eq!(v["dialect"], kind);
        assert_eq!(v["requests"].as_array().unwrap().len(), 2);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/forge");
    p.is_dir().then_some(p)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every key Warren's client reads, and the keys a real object has that
/// tell the dialects apart, are in the fake's answers.
#[test]
fn the_fakes_objects_have_the_real_forges_keys() {
    let Some(dir) = shared() else {
        println!("SKIPPED: ../shared/data/forge not present");
        return;
    };
    let read =
        |p: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join(p)).unwrap()).unwrap() };
    for (dialect, comment_file, status_file, state_key) in [
        (
            Dialect::Github,
            "github/rest/issue_comment.json",
            "github/rest/status.json",
            "state",
        ),
        (
            Dialect::Gitea,
            "gitea/rest/comment.json",
            "gitea/rest/status.json",
            "status",
        ),
    ] {
        let fake = FakeForge::start(dialect, "127.0.0.1:0").unwrap();
        fake.add_user("bot", "tok").unwrap();
        let addr = fake.addr.to_string();
        let prefix = dialect.api_prefix();
        let auth = format!("{} tok", dialect.auth_scheme());
        let (st, body) = http(
            &addr,
            "POST",
            &format!("{prefix}/repos/o/r/issues/1/comments"),
            Some(&auth),
            r#"{"body":"x"}"#,
        );
        assert_eq!(st, 201);
        let ours: Value = serde_json::from_str(&body).unwrap();
        let real = read(comment_file);
        let missing: Vec<_> = keys(&real).difference(&keys(&ours)).cloned().collect();
        // The Gogs-era Gitea fixture has no `login`-era fields we lack; the
        // fake may add newer ones (html_url, …) but must have every real key.
        assert!(missing.is_empty(), "{dialect}: comment lacks {missing:?}");
        for k in ["id", "login"] {
            assert!(ours["user"].get(k).is_some(), "{dialect}: user.{k}");
        }
        let (st, body) = http(
            &addr,
            "POST",
            &format!("{prefix}/repos/o/r/statuses/0123456789abcdef0123456789abcdef01234567"),
            Some(&auth),
            r#"{"state":"success","context":"c","description":"d","target_url":"https://x"}"#,
        );
        assert_eq!(st, 201);
        let ours: Value = serde_json::from_str(&body).unwrap();
        let real = read(status_file);
        assert!(
            real.get(state_key).is_some(),
            "the recorded {dialect} status names its state {state_key}"
        );
        let missing: Vec<_> = keys(&real).difference(&keys(&ours)).cloned().collect();
        assert!(missing.is_empty(), "{dialect}: status lacks {missing:?}");
        assert_eq!(ours[state_key], "success");
    }
    // GitHub's recorded 404 body and the fake's agree on the keys.
    let real = read("github/rest/error.json");
    let fake = FakeForge::start(Dialect::Github, "127.0.0.1:0").unwrap();
    fake.add_user("bot", "tok").unwrap();
    let (st, body) = http(&fake.addr.to_string(), "GET", "/nowhere", Some("Bearer tok"), "");
    assert_eq!(st, 404);
    let ours: Value = serde_json::from_str(&body).unwrap();
    assert!(keys(&real).is_subset(&keys(&ours)), "{real} vs {ours}");
}
