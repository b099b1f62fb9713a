//! Pull requests as the interface, live: the seed in the namespace lab, the
//! controller posting to a fake forge (`wt-forge`, GitHub or Gitea dialect)
//! running next to it. For each dialect: PR opened -> one preview comment
//! and a `warren/plan` status; synchronize -> the same comment edited;
//! invalid YAML -> failure with a line link; merge -> applied on the hosts
//! -> the footer says so and `warren/apply` succeeds; tampering on the
//! router -> a drift section and `warren/drift` failure, then resolved after
//! `sync`; a burst of ten synchronize events -> a few writes at most.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use hmac::{Hmac, Mac};
use std::time::Duration;
use warren_tests::bin;
use warren_tests::lab::Lab;
use warren_tests::world::{git, World};

const SECRET: &str = "forge-lab-secret";
const REPO: &str = "home/network";
const FORGE_PORT: u16 = 9300;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dialect {
    Github,
    Gitea,
}

struct Site {
    w: World,
    dialect: Dialect,
    pid: u32,
}

impl Site {
    fn up(tag: &str, dialect: Dialect) -> Site {
        let mut w = World::new(tag);
        let secret = w.dir.join("webhook.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let token = w.dir.join("forge.token");
        std::fs::write(&token, "lab-token\n").unwrap();
        let kind = match dialect {
            Dialect::Github => "github",
            Dialect::Gitea => "gitea",
        };
        let forge = bin("wt-forge").display().to_string();
        let listen = format!("127.0.0.1:{FORGE_PORT}");
        let pid = w.lab.spawn(
            "gateway",
            &[
                &forge,
                "--kind",
                kind,
                "--listen",
                &listen,
                "--token",
                "lab-token",
            ],
        );
        Lab::wait_for("wt-forge ready", Duration::from_secs(10), || {
            w.lab.logs(pid).contains("ready ")
        });
        let api = w
            .lab
            .logs(pid)
            .lines()
            .find_map(|l| l.strip_prefix("ready "))
            .unwrap()
            .trim()
            .to_string();
        w.start_agents();
        w.start_controller_with(&[
            "--poll-secs",
            "0.2",
            "--http",
            "127.0.0.1:9180",
            "--webhook-secret-file",
            secret.to_str().unwrap(),
            "--forge",
            kind,
            "--forge-url",
            &api,
            "--forge-repo",
            REPO,
            "--forge-token-file",
            token.to_str().unwrap(),
        ]);
        let c = w.head();
        w.wait_settled(&c, Duration::from_secs(60));
        Site { w, dialect, pid }
    }

    /// The fake forge's state.
    fn state(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{FORGE_PORT}/_fake/state");
        let out = self.w.lab.ok("gateway", &["curl", "-s", "--max-time", "5", &url]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("fake state: {e}: {out}"))
    }

    fn comments(&self, pr: u64) -> Vec<serde_json::Value> {
        self.state()["comments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["issue"] == pr && c["repo"] == REPO)
            .cloned()
            .collect()
    }

    fn statuses(&self, sha: &str, context: &str) -> Vec<String> {
        self.state()["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["sha"] == sha && s["context"] == context)
            .map(|s| s["state"].as_str().unwrap().to_string())
            .collect()
    }

    fn logs(&self) -> String {
        let mut s = self.w.controller.map(|p| self.w.lab.logs(p)).unwrap_or_default();
        s.push_str(&self.w.lab.logs(self.pid));
        s
    }

    /// A signed pull request event as the forge sends it.
    fn pr_event(&self, action: &str, pr: u64, head: &str, merged: Option<&str>, delivery: &str) -> String {
        let merged_json = match merged {
            Some(sha) => format!(r#""merged":true,"merge_commit_sha":"{sha}""#),
            None => r#""merged":false,"merge_commit_sha":null"#.to_string(),
        };
        let body = format!(
            r#"{{"action":"{action}","number":{pr},"pull_request":{{"number":{pr},"state":"open",{merged_json},"head":{{"sha":"{head}","ref":"feature"}},"base":{{"ref":"main","sha":"{}"}}}},"repository":{{"full_name":"{REPO}"}},"sender":{{"login":"alice"}}}}"#,
            self.w.head()
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let headers = match self.dialect {
            Dialect::Github => format!(
                "X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: sha256={sig}\r\n"
            ),
            // Gitea sends GitHub's headers too; its own come first.
            Dialect::Gitea => format!(
                "X-Gitea-Event: pull_request\r\nX-Gitea-Delivery: {delivery}\r\nX-Gitea-Signature: {sig}\r\nX-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {delivery}\r\n"
            ),
        };
        self.w.http(
            9180,
            &format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    fn sync_action(&self) -> &'static str {
        match self.dialect {
            Dialect::Github => "synchronize",
            Dialect::Gitea => "synchronized",
        }
    }

    /// Commit an edit on the `feature` branch and publish it as PR 1's head.
    fn pr_commit(&self, edit: impl Fn(String) -> String, msg: &str) -> String {
        self.commit_as_pr(1, "feature", edit, msg)
    }

    /// Commit an edit on the checked-out branch and publish it as `branch`
    /// and PR `pr`'s head.
    fn commit_as_pr(&self, pr: u64, branch: &str, edit: impl Fn(String) -> String, msg: &str) -> String {
        let work = &self.w.work;
        let p = work.join("warren.yaml");
        std::fs::write(&p, edit(std::fs::read_to_string(&p).unwrap())).unwrap();
        git(work, &["commit", "-qam", msg]);
        let heads = format!("HEAD:refs/heads/{branch}");
        let pull = format!("HEAD:refs/pull/{pr}/head");
        git(work, &["push", "-qf", "origin", &heads, &pull]);
        git(work, &["rev-parse", "HEAD"])
    }

    fn wait_comment(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_comment_on(1, what, pred)
    }

    fn wait_comment_on(&self, pr: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let c = self.comments(pr);
            assert!(c.len() <= 1, "never a second comment: {c:#?}");
            if let Some(b) = c.first().and_then(|c| c["body"].as_str()) {
                if pred(b) {
                    return b.to_string();
                }
                last = b.to_string();
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for the comment to {what}\nlast body:\n{last}\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_status(&self, sha: &str, context: &str, state: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while self.statuses(sha, context).last().map(String::as_str) != Some(state) {
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {context} {state} on {sha}: {:?}\n{}",
                    self.statuses(sha, context),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Every full WireGuard key (44 base64 characters ending in `=`) in `text`.
fn full_keys(text: &str) -> Vec<String> {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 44 <= chars.len() {
        let w = &chars[i..i + 44];
        let before_ok = i == 0 || !b64(chars[i - 1]);
        if before_ok && w[..43].iter().all(|c| b64(*c)) && w[43] == '=' {
            out.push(w.iter().collect());
            i += 44;
        } else {
            i += 1;
        }
    }
    out
}

fn whole_loop(dialect: Dialect, tag: &str) {
    let s = Site::up(tag, dialect);
    let w = &s.w;
    // The first commit was pushed without a PR: statuses (and on GitHub a
    // commit comment) on it instead.
    let first = w.head();
    s.wait_status(&first, "warren/apply", "success");
    let commit_comments = s.state()["commit_comments"].as_array().unwrap().clone();
    match dialect {
        Dialect::Github => assert!(
            commit_comments.iter().any(|c| c["sha"] == first.as_str()),
            "a commit comment on the direct push: {commit_comments:?}"
        ),
        Dialect::Gitea => assert!(commit_comments.is_empty(), "Gitea has no commit comments"),
    }
    // A second PR, open the whole time: planned again when main moves and
    // when drift appears.
    git(&w.work, &["checkout", "-qb", "other"]);
    let other = s.commit_as_pr(
        2,
        "other",
        |y| {
            y.replace(
                "management: [2222/tcp, 7701/tcp]",
                "management: [2222/tcp, 2223/tcp, 7701/tcp]",
            )
        },
        "keep 2223 on the gateway",
    );
    s.pr_event("opened", 2, &other, None, "p2");
    s.wait_comment_on(2, "preview PR 2", |b| b.contains(&format!("head={other}")));
    git(&w.work, &["checkout", "-q", "main"]);
    git(&w.work, &["checkout", "-qb", "feature"]);

    // Opened: one comment with the preview, and warren/plan success.
    let head = s.pr_commit(
        |y| {
            y.replacen(
                "forwards:\n",
                "forwards:\n  web: { port: 8080/tcp, to: 192.168.16.20 }\n",
                1,
            )
        },
        "add web",
    );
    assert!(s
        .pr_event("opened", 1, &head, None, "o1")
        .starts_with("HTTP/1.1 202"));
    let body = s.wait_comment("preview the head", |b| b.contains(&format!("head={head}")));
    assert!(body.starts_with("<!-- warren:plan "), "{body}");
    assert!(body.contains("8080"), "the preview shows the new forward: {body}");
    assert!(body.contains("router"), "{body}");
    s.wait_status(&head, "warren/plan", "success");

    // Synchronize: the same comment, edited.
    let id = s.comments(1)[0]["id"].clone();
    let head = s.pr_commit(|y| y.replace("port: 8080/tcp", "port: 8081/tcp"), "8081");
    s.pr_event(s.sync_action(), 1, &head, None, "s1");
    let body = s.wait_comment("follow the new head", |b| b.contains(&format!("head={head}")));
    assert!(body.contains("8081"), "{body}");
    assert_eq!(s.comments(1)[0]["id"], id, "edited in place");

    // Invalid YAML: failure status, errors linking to the head's line.
    let bad = s.pr_commit(|y| y.replace("port: 8081/tcp", "port: 99999/tcp"), "bad port");
    s.pr_event(s.sync_action(), 1, &bad, None, "s2");
    let body = s.wait_comment("show the error", |b| b.contains(&format!("head={bad}")));
    let link = match dialect {
        Dialect::Github => format!("/blob/{bad}/warren.yaml#L"),
        Dialect::Gitea => format!("/src/commit/{bad}/warren.yaml#L"),
    };
    assert!(body.contains(&link), "an error links to the line: {body}");
    s.wait_status(&bad, "warren/plan", "failure");

    // Fixed, then a burst of ten identical synchronize events: few writes.
    let head = s.pr_commit(|y| y.replace("port: 99999/tcp", "port: 8081/tcp"), "fixed");
    s.pr_event(s.sync_action(), 1, &head, None, "s3");
    let posted = s.wait_comment("recover", |b| b.contains(&format!("head={head}")));
    s.wait_status(&head, "warren/plan", "success");
    // `preview` prints the same body offline (only the footer's time line
    // differs), given the controller's state for the agents' keys.
    let base = "origin/main";
    let (kind, web) = match dialect {
        Dialect::Github => ("github", format!("http://127.0.0.1:{FORGE_PORT}")),
        Dialect::Gitea => ("gitea", format!("http://127.0.0.1:{FORGE_PORT}")),
    };
    let o = std::process::Command::new(bin("warren-controller"))
        .arg("preview")
        .arg(&w.work)
        .args([
            "--base",
            base,
            "--head",
            &head,
            "--pr",
            "1",
            "--forge",
            kind,
            "--web-url",
            &web,
            "--repo",
            REPO,
        ])
        .arg("--state-dir")
        .arg(w.dir.join("controller"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "preview: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let offline = String::from_utf8(o.stdout).unwrap();
    let body_lines = |b: &str| -> Vec<String> {
        b.trim_end()
            .lines()
            .filter(|l| !l.starts_with("<sub>"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        body_lines(&offline),
        body_lines(&posted),
        "offline:\n{offline}\nposted:\n{posted}"
    );
    let before = s.state()["writes"].as_u64().unwrap();
    for i in 0..10 {
        s.pr_event(s.sync_action(), 1, &head, None, &format!("burst{i}"));
    }
    std::thread::sleep(Duration::from_secs(3));
    let burst = s.state()["writes"].as_u64().unwrap() - before;
    assert!(burst <= 3, "ten identical events made {burst} writes");

    // Merge: main takes the PR; the footer reports the apply.
    git(&w.work, &["checkout", "-q", "main"]);
    git(
        &w.work,
        &["merge", "-q", "--no-ff", "-m", "Merge PR 1", "feature"],
    );
    git(&w.work, &["push", "-q", "origin", "main"]);
    let merge = w.head();
    s.pr_event("closed", 1, &head, Some(&merge), "m1");
    w.wait_in_sync(&merge, Duration::from_secs(60));
    let body = s.wait_comment("report the apply", |b| {
        b.contains("Applied") || b.contains("applied")
    });
    assert!(
        body.contains(&merge[..7]),
        "the footer names the merge commit: {body}"
    );
    s.wait_status(&merge, "warren/apply", "success");
    s.wait_comment_on(2, "plan PR 2 onto the new main", |b| {
        b.contains(&format!("@&#8203;{}", &merge[..7]))
    });
    let _web = w.lab.listen("laptop", 8081);
    w.wait_tunnel();
    w.lab
        .connect("phone", "203.0.113.10", 8081, Duration::from_secs(5))
        .expect("the merged forward works");

    // Drift on the router: reported in this PR's comment, then resolved.
    w.lab.ok("router", &["nft", "delete", "table", "ip", "warren"]);
    let body = s.wait_comment("show the drift", |b| b.contains("Drift from the plan"));
    assert!(body.contains("router"), "{body}");
    s.wait_status(&merge, "warren/drift", "failure");
    s.wait_comment_on(2, "show what merging PR 2 would revert", |b| {
        b.contains("Changes outside Warren that this merge will revert")
    });
    let o = std::process::Command::new(bin("warren-controller"))
        .args(["sync", "router", "--timeout", "60", "--state-dir"])
        .arg(w.dir.join("controller"))
        .output()
        .unwrap();
    assert!(o.status.success(), "sync: {}", String::from_utf8_lossy(&o.stderr));
    s.wait_comment("mark the drift resolved", |b| b.contains("Drift resolved"));
    s.wait_status(&merge, "warren/drift", "success");

    // Nothing posted carries a full key (public ones are shortened; private
    // ones never leave the hosts), in particular not the phone's.
    let st = s.state();
    let mut posted: Vec<String> = st["comments"]
        .as_array()
        .unwrap()
        .iter()
        .chain(st["commit_comments"].as_array().unwrap())
        .map(|c| c["body"].as_str().unwrap().to_string())
        .collect();
    posted.extend(
        st["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["description"].to_string()),
    );
    for b in &posted {
        assert!(
            full_keys(b).is_empty(),
            "a full key was posted: {:?}\n{b}",
            full_keys(b)
        );
        assert!(
            !b.contains(&w.phone_private),
            "the phone's private key was posted"
        );
    }
    assert!(
        !full_keys(&format!("{} {}", w.phone_private, wg_pub_of(w))).is_empty(),
        "the key scanner finds real keys"
    );
}

fn wg_pub_of(w: &World) -> String {
    warren_tests::world::wg_pubkey(&w.phone_private)
}

#[test]
fn github_pr_preview_merge_apply_drift_loop() {
    whole_loop(Dialect::Github, "forge-gh");
}

#[test]
fn gitea_pr_preview_merge_apply_drift_loop() {
    whole_loop(Dialect::Gitea, "forge-gt");
}
