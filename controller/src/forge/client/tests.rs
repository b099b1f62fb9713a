//! The client against the stateful fake forge (`warren-fake-forge`), in both
//! dialects, over real HTTP on 127.0.0.1, with a clock whose sleeps take no
//! time.

use super::*;
use std::sync::Mutex;
use warren_fake_forge::{Dialect, Failure, FakeForge};

const REPO: &str = "home/net";
const BOT_TOKEN: &str = "bot-token-0123456789";
const SHA: &str = "3f2a9c1e0b7a4d5e6f708192a3b4c5d6e7f80912";

#[derive(Debug, Default)]
struct TestClock {
    now: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl TestClock {
    const UNIX_BASE: u64 = 1_700_000_000;
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for TestClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap()
    }
    fn unix_secs(&self) -> u64 {
        Self::UNIX_BASE + self.now().as_secs()
    }
    fn sleep(&self, d: Duration) {
        *self.now.lock().unwrap() += d;
        self.sleeps.lock().unwrap().push(d);
    }
}

fn dialect(kind: ForgeKind) -> Dialect {
    match kind {
        ForgeKind::Github => Dialect::Github,
        ForgeKind::Gitea => Dialect::Gitea,
    }
}

const KINDS: [ForgeKind; 2] = [ForgeKind::Github, ForgeKind::Gitea];

struct Setup {
    fake: FakeForge,
    client: ForgeClient,
    clock: Arc<TestClock>,
}

fn test_limits() -> Limits {
    Limits {
        max_retries: 3,
        max_wait: Duration::from_secs(120),
        backoff: Duration::from_secs(1),
        default_rate_wait: Duration::from_secs(60),
        writes_per_minute: 1000,
        writes_per_hour: 10_000,
        timeout: Duration::from_secs(10),
    }
}

fn setup_with(kind: ForgeKind, limits: Limits) -> Setup {
    let fake = FakeForge::start(dialect(kind), "127.0.0.1:0").unwrap();
    assert_eq!(fake.add_user("warren-bot", BOT_TOKEN).unwrap(), 1);
    fake.add_user("alice", "alice-token").unwrap();
    fake.add_user("other-bot", "other-token").unwrap();
    let clock = Arc::new(TestClock::default());
    let client = client_for(kind, &fake, &clock, limits);
    Setup { fake, client, clock }
}

fn client_for(kind: ForgeKind, fake: &FakeForge, clock: &Arc<TestClock>, limits: Limits) -> ForgeClient {
    ForgeClient::new(kind, &fake.api_url, REPO, BOT_TOKEN)
        .unwrap()
        .with_limits(limits)
        .with_clock(clock.clone())
}

fn setup(kind: ForgeKind) -> Setup {
    setup_with(kind, test_limits())
}

fn marker(pr: u64) -> String {
    format!("<!-- warren:plan instance=prod pr={pr} ")
}

fn is_ours_for(pr: u64) -> impl Fn(&str) -> bool {
    let m = marker(pr);
    move |line: &str| line.starts_with(&m)
}

fn body(pr: u64, text: &str) -> String {
    format!("{}head=abc -->\n### Warren plan\n{text}\n", marker(pr))
}

#[test]
fn me_is_asked_once_with_each_forges_auth_header() {
    for kind in KINDS {
        let s = setup(kind);
        let me = s.client.me().unwrap();
        assert_eq!(
            me,
            BotUser {
                id: 1,
                login: "warren-bot".into()
            }
        );
        assert_eq!(s.client.me().unwrap(), me);
        let st = s.fake.state().unwrap();
        assert_eq!(st.requests.len(), 1, "{kind:?}: cached");
        let want = match kind {
            ForgeKind::Github => "Bearer",
            ForgeKind::Gitea => "token",
        };
        assert_eq!(st.requests[0].auth_scheme.as_deref(), Some(want));
        let prefix = match kind {
            ForgeKind::Github => "",
            ForgeKind::Gitea => "/api/v1",
        };
        assert_eq!(st.requests[0].path, format!("{prefix}/user"));
    }
}

#[test]
fn a_wrong_token_or_the_other_forges_scheme_is_a_401() {
    for kind in KINDS {
        let s = setup(kind);
        let bad = ForgeClient::new(kind, &s.fake.api_url, REPO, "nope").unwrap();
        let e = bad.me().unwrap_err();
        assert_eq!(e.status(), Some(401), "{e}");
        // A GitHub-dialect client against this forge sends the wrong scheme.
        let other = match kind {
            ForgeKind::Github => ForgeKind::Gitea,
            ForgeKind::Gitea => ForgeKind::Github,
        };
        let wrong = ForgeClient::new(other, &s.fake.api_url, REPO, BOT_TOKEN).unwrap();
        assert_eq!(wrong.me().unwrap_err().status(), Some(401));
    }
}

#[test]
fn debug_never_shows_the_token() {
    let c = ForgeClient::new(ForgeKind::Github, "https://api.github.com", REPO, BOT_TOKEN).unwrap();
    let d = format!("{c:?}");
    assert!(!d.contains(BOT_TOKEN), "{d}");
    assert!(d.contains("<redacted>"), "{d}");
}

#[test]
fn bad_configuration_is_refused() {
    let new = |url: &str, repo: &str, token: &str| ForgeClient::new(ForgeKind::Gitea, url, repo, token);
    assert!(matches!(new("ftp://x", REPO, "t"), Err(ForgeError::Config(_))));
    assert!(matches!(
        new("https://x/api/v1", "nope", "t"),
        Err(ForgeError::Config(_))
    ));
    assert!(matches!(
        new("https://x/api/v1", "a/b/c", "t"),
        Err(ForgeError::Config(_))
    ));
    assert!(matches!(
        new("https://x/api/v1", "../b", "t"),
        Err(ForgeError::Config(_))
    ));
    assert!(matches!(
        new("https://x/api/v1", REPO, "a b"),
        Err(ForgeError::Config(_))
    ));
    assert!(matches!(
        new("https://x/api/v1", REPO, ""),
        Err(ForgeError::Config(_))
    ));
    assert!(new("https://x/api/v1/", REPO, "t\n").is_ok());
}

#[test]
fn comments_are_read_over_three_pages() {
    for kind in KINDS {
        let s = setup(kind);
        let page = match kind {
            ForgeKind::Github => GITHUB_PAGE,
            ForgeKind::Gitea => GITEA_PAGE,
        };
        let n = 2 * page + 7;
        let mut ids = vec![];
        for i in 0..n {
            let who = if i % 2 == 0 { "alice" } else { "warren-bot" };
            ids.push(s.fake.inject_comment(REPO, 7, who, &format!("c{i}")).unwrap());
        }
        s.fake.inject_comment(REPO, 8, "alice", "another PR").unwrap();
        let got = s.client.comments(7).unwrap();
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), ids, "{kind:?}");
        assert_eq!(got[1].user_id, 1);
        assert_eq!(got[n - 1].body, format!("c{}", n - 1));
        let st = s.fake.state().unwrap();
        let lists: Vec<_> = st
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/issues/7/comments"))
            .collect();
        assert_eq!(lists.len(), 3, "{kind:?}: {lists:?}");
        assert!(lists.iter().all(|r| r.status == 200));
    }
}

#[test]
fn gitea_answering_every_comment_on_every_page_is_read_once() {
    let s = setup(ForgeKind::Gitea);
    s.fake.set_ignore_paging(true).unwrap();
    for i in 0..120 {
        s.fake.inject_comment(REPO, 3, "alice", &format!("c{i}")).unwrap();
    }
    let got = s.client.comments(3).unwrap();
    assert_eq!(got.len(), 120);
    // X-Total-Count says 120 after the first page: no second request.
    assert_eq!(s.fake.state().unwrap().count("GET"), 1);
}

#[test]
fn upsert_creates_once_then_edits_in_place_and_skips_unchanged() {
    for kind in KINDS {
        let s = setup(kind);
        let ours = is_ours_for(42);
        let first = body(42, "one change");
        let CommentOutcome::Created(id) = s.client.upsert_comment(42, &ours, &first).unwrap() else {
            panic!("{kind:?}: not created");
        };
        let second = body(42, "two changes");
        assert_eq!(
            s.client.upsert_comment(42, &ours, &second).unwrap(),
            CommentOutcome::Edited(id)
        );
        let before = s.fake.state().unwrap().requests.len();
        assert_eq!(
            s.client.upsert_comment(42, &ours, &second).unwrap(),
            CommentOutcome::Unchanged(id)
        );
        assert_eq!(
            s.fake.state().unwrap().requests.len(),
            before,
            "{kind:?}: unchanged costs no request"
        );

        // A fresh client (a restarted controller) finds the comment by
        // listing, and still writes nothing for the same body.
        let fresh = client_for(kind, &s.fake, &s.clock, test_limits());
        assert_eq!(
            fresh.upsert_comment(42, &ours, &second).unwrap(),
            CommentOutcome::Unchanged(id)
        );
        assert_eq!(
            fresh.upsert_comment(42, &ours, &body(42, "three")).unwrap(),
            CommentOutcome::Edited(id)
        );

        let st = s.fake.state().unwrap();
        let on = st.comments_on(REPO, 42);
        assert_eq!(on.len(), 1, "{kind:?}: never a second comment");
        assert_eq!(on[0].body, body(42, "three"));
        assert_eq!(on[0].edits, 2);
        assert_eq!(st.writes, 3);
        assert_eq!(st.count("PATCH"), 2, "{kind:?}: edits are PATCH");
        let edit = st.requests.iter().find(|r| r.method == "PATCH").unwrap();
        assert!(
            edit.path
                .ends_with(&format!("/repos/{REPO}/issues/comments/{id}")),
            "{edit:?}"
        );
    }
}

#[test]
fn only_the_bots_own_comment_with_the_marker_is_ours() {
    for kind in KINDS {
        let s = setup(kind);
        let ours = is_ours_for(5);
        // A human quoting the marker, another bot with the same marker, the
        // bot's own comment without the marker, and the marker not on the
        // first line.
        let human = s
            .fake
            .inject_comment(REPO, 5, "alice", &body(5, "copied"))
            .unwrap();
        let other = s
            .fake
            .inject_comment(REPO, 5, "other-bot", &body(5, "other"))
            .unwrap();
        let plain = s.fake.inject_comment(REPO, 5, "warren-bot", "thanks!").unwrap();
        let later = s
            .fake
            .inject_comment(REPO, 5, "warren-bot", &format!("note\n{}", body(5, "x")))
            .unwrap();
        // A marker for another PR.
        let pr6 = s
            .fake
            .inject_comment(REPO, 5, "warren-bot", &body(6, "six"))
            .unwrap();
        let out = s.client.upsert_comment(5, &ours, &body(5, "mine")).unwrap();
        let CommentOutcome::Created(id) = out else {
            panic!("{kind:?}: {out:?}")
        };
        assert!(![human, other, plain, later, pr6].contains(&id));
        let st = s.fake.state().unwrap();
        let on = st.comments_on(REPO, 5);
        assert_eq!(on.len(), 6);
        assert!(
            on.iter().all(|c| c.edits == 0),
            "{kind:?}: nobody else's comment edited"
        );
        assert_eq!(on.iter().find(|c| c.id == human).unwrap().body, body(5, "copied"));
        // Next time it edits its own.
        assert_eq!(
            s.client.upsert_comment(5, &ours, &body(5, "again")).unwrap(),
            CommentOutcome::Edited(id)
        );
    }
}

#[test]
fn a_deleted_comment_is_created_again() {
    for kind in KINDS {
        let s = setup(kind);
        let ours = is_ours_for(9);
        let CommentOutcome::Created(id) = s.client.upsert_comment(9, &ours, &body(9, "a")).unwrap() else {
            panic!()
        };
        assert!(s.fake.delete_comment(id).unwrap());
        let out = s.client.upsert_comment(9, &ours, &body(9, "b")).unwrap();
        let CommentOutcome::Created(new) = out else {
            panic!("{kind:?}: {out:?}")
        };
        assert_ne!(new, id);
        let st = s.fake.state().unwrap();
        assert_eq!(st.comments_on(REPO, 9).len(), 1);
        assert_eq!(st.comments_on(REPO, 9)[0].body, body(9, "b"));
        assert!(
            st.requests.iter().any(|r| r.method == "PATCH" && r.status == 404),
            "{kind:?}"
        );
        // And the new one is edited next.
        assert_eq!(
            s.client.upsert_comment(9, &ours, &body(9, "c")).unwrap(),
            CommentOutcome::Edited(new)
        );
    }
}

#[test]
fn an_oversized_body_is_too_large() {
    // Warren refuses before sending when it knows GitHub's limit.
    let s = setup(ForgeKind::Github);
    let huge = body(1, &"x".repeat(GITHUB_BODY_LIMIT));
    let e = s.client.upsert_comment(1, &is_ours_for(1), &huge).unwrap_err();
    assert!(matches!(e, ForgeError::TooLarge { .. }), "{e}");
    assert!(s.fake.state().unwrap().requests.is_empty());
    assert!(matches!(
        s.client.commit_comment(SHA, &huge),
        Err(ForgeError::TooLarge { .. })
    ));

    // The forge's own 422 is surfaced as TooLarge, in both dialects.
    for kind in KINDS {
        let s = setup(kind);
        s.fake.set_body_limit(Some(100)).unwrap();
        let e = s
            .client
            .upsert_comment(1, &is_ours_for(1), &body(1, &"y".repeat(200)))
            .unwrap_err();
        match e {
            ForgeError::TooLarge { message } => assert!(message.contains("too long"), "{message}"),
            other => panic!("{kind:?}: {other}"),
        }
        assert_eq!(s.fake.state().unwrap().comments.len(), 0);
    }
}

#[test]
fn error_bodies_of_both_forges_are_read() {
    // GitHub's documented 422 shape, Gitea's `{message, url}`, and no JSON.
    let msg = error_message(
        r#"{"message":"Validation Failed","errors":[{"resource":"Label","code":"invalid","field":"color"}],"documentation_url":"x"}"#,
    );
    assert_eq!(msg, "Validation Failed: Label color invalid");
    assert_eq!(
        error_message(r#"{"message":"not found","url":"https://g/api/swagger"}"#),
        "not found"
    );
    assert_eq!(
        error_message("<html>bad gateway</html>"),
        "<html>bad gateway</html>"
    );
}

#[test]
fn retry_after_is_waited_then_the_request_repeated() {
    for kind in KINDS {
        for status in [429, 403] {
            let s = setup(kind);
            s.fake.fail_next(Failure::new(status).retry_after(7), 1).unwrap();
            let out = s
                .client
                .set_status(SHA, "warren/plan", StatusState::Pending, "planning", None)
                .unwrap();
            assert!(matches!(out, StatusOutcome::Posted { .. }), "{kind:?} {status}");
            assert_eq!(s.clock.sleeps(), vec![Duration::from_secs(7)]);
            let st = s.fake.state().unwrap();
            let codes: Vec<u16> = st.requests.iter().map(|r| r.status).collect();
            assert_eq!(codes, vec![status, 201]);
            assert_eq!(st.statuses.len(), 1);
        }
    }
}

#[test]
fn an_exhausted_rate_limit_waits_until_its_reset() {
    let s = setup(ForgeKind::Github);
    s.fake
        .fail_next(Failure::new(403).ratelimit_reset(TestClock::UNIX_BASE + 30), 1)
        .unwrap();
    assert_eq!(s.client.me().unwrap().id, 1);
    assert_eq!(s.clock.sleeps(), vec![Duration::from_secs(30)]);
}

#[test]
fn rate_limits_give_up_after_the_bound_or_a_too_long_wait() {
    for kind in KINDS {
        let s = setup(kind);
        let limited = Failure::new(429).retry_after(2);
        s.fake.fail_next(limited, 10).unwrap();
        let e = s.client.me().unwrap_err();
        assert!(matches!(e, ForgeError::RateLimited { .. }), "{e}");
        // The first try and 3 retries.
        assert_eq!(s.fake.state().unwrap().requests.len(), 4);
        assert_eq!(s.clock.sleeps(), vec![Duration::from_secs(2); 3]);

        let s = setup(kind);
        s.fake.fail_next(Failure::new(429).retry_after(3600), 1).unwrap();
        let e = s.client.me().unwrap_err();
        assert!(matches!(e, ForgeError::RateLimited { wait, .. } if wait == Duration::from_secs(3600)));
        assert!(s.clock.sleeps().is_empty(), "{kind:?}: no hour-long stall");
    }
}

#[test]
fn a_403_is_retried_only_when_it_is_a_rate_limit() {
    for kind in KINDS {
        // GitHub's secondary limit: 403, "rate limit" in the message, no
        // headers: the default wait.
        let s = setup(kind);
        s.fake.fail_next(Failure::new(403), 1).unwrap();
        assert!(s.client.me().is_ok());
        assert_eq!(s.clock.sleeps(), vec![Duration::from_secs(60)]);
        // A permission 403 is final at once, with the forge's words.
        s.fake
            .fail_next(
                Failure::new(403).message("token does not have required scope write:repository"),
                1,
            )
            .unwrap();
        let e = s
            .client
            .set_status(SHA, "c", StatusState::Success, "", None)
            .unwrap_err();
        assert_eq!(e.status(), Some(403));
        assert!(e.to_string().contains("write:repository"), "{e}");
        assert_eq!(s.clock.sleeps().len(), 1);
    }
}

#[test]
fn server_errors_back_off_and_a_create_is_never_doubled() {
    for kind in KINDS {
        let s = setup(kind);
        s.fake.fail_next(Failure::new(502), 2).unwrap();
        let out = s
            .client
            .set_status(SHA, "warren/apply", StatusState::Success, "applied", None)
            .unwrap();
        assert!(matches!(out, StatusOutcome::Posted { .. }));
        assert_eq!(
            s.clock.sleeps(),
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );

        // A 502 on the create may hide a comment that was made: the client
        // lists again before posting again.
        let s = setup(kind);
        s.fake.fail_next(Failure::new(502).method("POST"), 1).unwrap();
        let out = s
            .client
            .upsert_comment(3, &is_ours_for(3), &body(3, "x"))
            .unwrap();
        assert!(matches!(out, CommentOutcome::Created(_)), "{kind:?}: {out:?}");
        let st = s.fake.state().unwrap();
        assert_eq!(st.comments_on(REPO, 3).len(), 1);
        let calls: Vec<(String, u16)> = st
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/issues/3/comments"))
            .map(|r| (r.method.clone(), r.status))
            .collect();
        let want: Vec<(String, u16)> = [("GET", 200), ("POST", 502), ("GET", 200), ("POST", 201)]
            .iter()
            .map(|(m, c)| (m.to_string(), *c))
            .collect();
        assert_eq!(calls, want, "{kind:?}");

        // A 5xx on a read is retried in place.
        s.fake.fail_next(Failure::new(502).method("GET"), 1).unwrap();
        assert_eq!(s.client.comments(3).unwrap().len(), 1);
    }
}

#[test]
fn statuses_are_posted_deduplicated_and_read_back_in_both_dialects() {
    for kind in KINDS {
        let s = setup(kind);
        let long = "é".repeat(300);
        let out = s
            .client
            .set_status(
                SHA,
                "warren/plan",
                StatusState::Pending,
                &long,
                Some("https://warren.example/p/1"),
            )
            .unwrap();
        let StatusOutcome::Posted { id, state } = out else {
            panic!("{out:?}")
        };
        assert!(id > 0);
        assert_eq!(
            state,
            StatusState::Pending,
            "{kind:?}: parsed from `state`/`status`"
        );
        assert_eq!(
            s.client
                .set_status(SHA, "warren/plan", StatusState::Pending, &long, None)
                .unwrap(),
            StatusOutcome::Unchanged
        );
        let out = s
            .client
            .set_status(SHA, "warren/plan", StatusState::Success, "3 hosts", None)
            .unwrap();
        assert!(matches!(
            out,
            StatusOutcome::Posted {
                state: StatusState::Success,
                ..
            }
        ));
        // Another context on the same sha is separate.
        let out = s
            .client
            .set_status(SHA, "warren/apply", StatusState::Success, "3 hosts", None)
            .unwrap();
        assert!(matches!(out, StatusOutcome::Posted { .. }));
        // Back to a previous state is a change too.
        let out = s
            .client
            .set_status(SHA, "warren/plan", StatusState::Failure, "bad yaml", None)
            .unwrap();
        assert!(matches!(
            out,
            StatusOutcome::Posted {
                state: StatusState::Failure,
                ..
            }
        ));

        let st = s.fake.state().unwrap();
        let on = st.statuses_on(REPO, SHA);
        assert_eq!(on.len(), 4, "{kind:?}");
        assert_eq!(on[0].description.chars().count(), STATUS_DESCRIPTION_LIMIT);
        assert!(on[0].description.ends_with('…'));
        assert_eq!(on[0].target_url.as_deref(), Some("https://warren.example/p/1"));
        assert_eq!(on[0].state, "pending");
        assert_eq!(on[3].state, "failure");
        assert_eq!(on[3].context, "warren/plan");
        assert!(st
            .requests
            .iter()
            .all(|r| r.path.contains(&format!("/repos/{REPO}/")) || r.path.ends_with("/user")));
    }
}

#[test]
fn status_states_are_read_from_the_api_words() {
    assert_eq!(StatusState::parse("warning"), None);
    assert_eq!(StatusState::parse("success"), Some(StatusState::Success));
}

#[test]
fn commit_comments_on_github_and_unsupported_on_gitea() {
    let s = setup(ForgeKind::Github);
    let id = s.client.commit_comment(SHA, "applied directly").unwrap();
    let st = s.fake.state().unwrap();
    assert_eq!(st.commit_comments.len(), 1);
    assert_eq!(st.commit_comments[0].id, id);
    assert_eq!(st.commit_comments[0].sha, SHA);
    assert_eq!(st.commit_comments[0].user_id, 1);

    let s = setup(ForgeKind::Gitea);
    assert!(matches!(
        s.client.commit_comment(SHA, "x"),
        Err(ForgeError::Unsupported(_))
    ));
    assert!(s.fake.state().unwrap().requests.is_empty());
}

#[test]
fn the_write_budget_spaces_writes_out() {
    for kind in KINDS {
        let limits = Limits {
            writes_per_minute: 3,
            ..test_limits()
        };
        let s = setup_with(kind, limits);
        let states = [
            StatusState::Pending,
            StatusState::Success,
            StatusState::Failure,
            StatusState::Error,
        ];
        for st in states {
            s.client.set_status(SHA, "warren/plan", st, "d", None).unwrap();
        }
        let sleeps = s.clock.sleeps();
        assert_eq!(sleeps.len(), 1, "{kind:?}: {sleeps:?}");
        assert!(sleeps[0] >= Duration::from_secs(20) && sleeps[0] < Duration::from_secs(21));
        // Reads are not budgeted.
        for _ in 0..5 {
            s.client.comments(1).unwrap();
        }
        assert_eq!(s.clock.sleeps().len(), 1);

        // A budget that would need a wait over max_wait is an error.
        let limits = Limits {
            writes_per_minute: 100,
            writes_per_hour: 1,
            max_wait: Duration::from_secs(60),
            ..test_limits()
        };
        let s = setup_with(kind, limits);
        s.client
            .set_status(SHA, "a", StatusState::Success, "", None)
            .unwrap();
        let e = s
            .client
            .set_status(SHA, "b", StatusState::Success, "", None)
            .unwrap_err();
        assert!(matches!(e, ForgeError::Budget { .. }), "{e}");
        assert_eq!(s.fake.state().unwrap().statuses.len(), 1);
    }
}

#[test]
fn a_refused_connection_is_a_transport_error_after_retries() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let clock = Arc::new(TestClock::default());
    let c = ForgeClient::new(ForgeKind::Github, &format!("http://{addr}"), REPO, BOT_TOKEN)
        .unwrap()
        .with_limits(test_limits())
        .with_clock(clock.clone());
    let e = c.me().unwrap_err();
    assert!(matches!(e, ForgeError::Transport { .. }), "{e}");
    assert_eq!(clock.sleeps().len(), 3);
    assert!(!e.to_string().contains(BOT_TOKEN));
}

#[test]
fn next_links_are_parsed() {
    let h = r#"<https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=3>; rel="last""#;
    assert_eq!(
        next_link(h).as_deref(),
        Some("https://api.github.com/repos/o/r/issues/1/comments?per_page=100&page=2")
    );
    assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
    assert_eq!(next_link("garbage"), None);
    assert_eq!(first_line("a\r\nb"), "a");
    assert_eq!(cut("abc", 2), "a…");
}
