//! `warren-controller preview` on a real (temporary) git repository: the
//! seed as `main`, a branch that changes the forward's port and adds one.
//! The markdown is pinned in `tests/snapshots/forge/`; refresh deliberately
//! with `WARREN_BLESS=1 cargo test -p warren-controller --test preview`.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_warren-controller")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh repository whose commits have fixed authors and dates, so their
/// ids (and the snapshot) are the same on every run.
struct Repo(PathBuf);

impl Repo {
    fn new(tag: &str) -> Repo {
        let d = std::env::temp_dir().join(format!("warren-preview-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        let r = Repo(d);
        r.git(&["init", "-q", "-b", "main"]);
        r
    }
    fn git(&self, args: &[&str]) -> String {
        let o = Command::new("git")
            .args(args)
            .current_dir(&self.0)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.0)
            .output()
            .expect("git");
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    }
    fn commit(&self, yaml: &str, msg: &str) {
        std::fs::write(self.0.join("warren.yaml"), yaml).expect("write");
        self.git(&["add", "warren.yaml"]);
        self.git(&["commit", "-qm", msg]);
    }
    fn preview(&self, extra: &[&str]) -> Output {
        let dir = self.0.to_string_lossy().to_string();
        let mut args = vec!["preview", dir.as_str()];
        args.extend_from_slice(extra);
        Command::new(bin()).args(&args).output().expect("run")
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn seed() -> String {
    std::fs::read_to_string(root().join("examples/seed/warren.yaml")).expect("seed")
}

/// The seed's forward on another port, and a second forward.
fn changed(seed: &str) -> String {
    let old = "minecraft: { port: 25565/tcp, to: 192.168.16.20, description: \"brother's laptop\" }";
    assert!(seed.contains(old));
    seed.replace(
        old,
        "minecraft: { port: 25566/tcp, to: 192.168.16.20, description: \"brother's laptop\" }\n  web: { port: 8443/tcp, to: 192.168.16.30 }",
    )
}

fn check_snapshot(name: &str, got: &str) {
    let path = root().join("tests/snapshots/forge").join(name);
    if std::env::var_os("WARREN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; create it with WARREN_BLESS=1",
            path.display()
        )
    });
    if want != got {
        let first = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs (first differing line {}):\n  snapshot: {:?}\n  rendered: {:?}\nreview, then refresh with WARREN_BLESS=1",
            path.display(),
            first + 1,
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}

#[test]
fn preview_of_a_branch_is_the_pinned_comment() {
    let r = Repo::new("branch");
    r.commit(&seed(), "seed");
    r.git(&["checkout", "-qb", "pr"]);
    r.commit(&changed(&seed()), "move minecraft, add web");
    let head = r.git(&["rev-parse", "pr"]).trim().to_string();
    let o = r.preview(&[
        "--base",
        "main",
        "--head",
        "pr",
        "--pr",
        "42",
        "--instance",
        "home",
        "--forge",
        "github",
        "--web-url",
        "https://github.com",
        "--repo",
        "acme/net",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let md = text(&o.stdout);
    assert!(
        md.starts_with(&format!(
            "<!-- warren:plan v=1 instance=home pr=42 head={head} plan=sha256:"
        )),
        "{md}"
    );
    assert!(
        md.contains("trunc=0 -->\n### Warren plan for #42 → <code>main</code>\n"),
        "{md}"
    );
    assert!(md.contains("**1 host changes · 1 unchanged**"), "{md}");
    assert!(md.contains("| <code>router</code> | 🟡 change | +4 −3 |"), "{md}");
    assert!(
        md.contains("+      elements = { 8443 : 192.168.16.30, 25566 : 192.168.16.20 }"),
        "{md}"
    );
    // The phone's public key is in the plan; only its short form is shown.
    assert!(
        !md.contains("m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg="),
        "{md}"
    );
    check_snapshot("seed-forward-port.md", &md);

    let t = r.preview(&["--base", "main", "--head", "pr", "--format", "text"]);
    assert_eq!(t.status.code(), Some(0), "{}", text(&t.stderr));
    let t = text(&t.stdout);
    assert!(
        t.contains("  router           nftables / iptables +4 −3\n"),
        "{t}"
    );
    assert!(!t.contains("<code>"), "{t}");
}

#[test]
fn preview_merges_the_head_onto_a_base_that_moved() {
    let r = Repo::new("merge");
    let s = seed();
    r.commit(&s, "seed");
    r.git(&["checkout", "-qb", "pr"]);
    r.commit(&changed(&s), "forwards");
    // main moves on in another part of the file: the merge has both.
    r.git(&["checkout", "-q", "main"]);
    r.commit(&s.replace("keepalive: 25", "keepalive: 30"), "keepalive");
    let o = r.preview(&["--base", "main", "--head", "pr"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let md = text(&o.stdout);
    // Only the PR's change shows: the keepalive is the same on both sides.
    assert!(!md.contains("persistent-keepalive"), "{md}");
    assert!(md.contains("| <code>router</code> | 🟡 change | +4 −3 |"), "{md}");
    assert!(!md.contains("conflicts"), "{md}");

    // A conflicting change to the same line: said, and the head alone shown.
    r.git(&["checkout", "-q", "main"]);
    r.commit(
        &s.replace("port: 25565/tcp", "port: 25570/tcp"),
        "main moves the forward",
    );
    let o = r.preview(&["--base", "main", "--head", "pr"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let md = text(&o.stdout);
    assert!(md.contains("⚠️ conflicts with <code>main</code>@"), "{md}");
    assert!(md.contains(": preview is of the PR head alone"), "{md}");
    assert!(
        text(&o.stderr).contains("does not merge cleanly"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn invalid_head_prints_the_errors_and_exits_1() {
    let r = Repo::new("invalid");
    r.commit(&seed(), "seed");
    r.git(&["checkout", "-qb", "pr"]);
    r.commit(&seed().replace("port: 25565/tcp", "port: 2222/tcp"), "lockout");
    let head = r.git(&["rev-parse", "pr"]).trim().to_string();
    let o = r.preview(&[
        "--base",
        "main",
        "--head",
        "pr",
        "--forge",
        "gitea",
        "--web-url",
        "https://git.home/",
        "--repo",
        "me/net",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let md = text(&o.stdout);
    assert!(md.contains("**❌ invalid: 1 error**"), "{md}");
    assert!(md.contains(&format!(
        "- [<code>warren.yaml:47:22</code>](https://git.home/me/net/src/commit/{head}/warren.yaml#L47) <code>forward-lockout</code>: "
    )), "{md}");
    assert!(md.contains("🔴 not compiled"), "{md}");
    assert!(
        text(&o.stderr).contains("warren.yaml:47:22: error[forward-lockout]"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn unknown_revisions_and_half_link_options_are_usage_errors() {
    let r = Repo::new("usage");
    r.commit(&seed(), "seed");
    let o = r.preview(&["--base", "main", "--head", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("unknown revision \"nope\""),
        "{}",
        text(&o.stderr)
    );
    let o = r.preview(&["--base", "main", "--head", "main", "--forge", "github"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // The same revision on both sides: nothing changes.
    let o = r.preview(&["--base", "main", "--head", "main"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("**no host changes · 2 unchanged**"),
        "{}",
        text(&o.stdout)
    );
}
