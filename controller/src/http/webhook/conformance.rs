//! Conformance over real deliveries: every webhook body under
//! `<workspace>/../shared/data/forge/{github,gitea}/webhooks/` (real payloads
//! of GitHub, Gitea and Forgejo, kept outside the project) is signed with the
//! test secret and sent, with the headers its forge would send, through the
//! pure [`check`] and through the running HTTP server. The expected outcome of
//! each file is read from the payload itself, not from the parser under test,
//! and a few files are pinned to the facts their README states. Every HMAC
//! vector of `signature-vectors.json` is checked against
//! [`WebhookConfig::verify`] and through [`check`].
//!
//! When the directory is absent (it is not part of the project), the tests
//! print `SKIPPED: ../shared/data/forge not present` and pass.
//! `WARREN_FORGE_DATA` points them at another copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::super::test_support::{request, sign, start, SECRET};
use super::{check, Event, ReplayMemory, WebhookConfig, REPLAY_MEMORY};
use crate::forge::{ForgeKind, PrAction, PrEvent};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shared data directory, or `None` (after saying so) when absent.
fn data_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("WARREN_FORGE_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/forge"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED: ../shared/data/forge not present (looked in {})",
            dir.display()
        );
        None
    }
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The event header a forge sends with this file, from where it lies: a
/// per-event directory (`pull_request/`, `push/`, `issue_comment/`), else the
/// file's name (a comment on a PR is an `issue_comment` on both forges).
fn event_of(webhooks: &Path, file: &Path) -> &'static str {
    let rel = file.strip_prefix(webhooks).unwrap();
    let name = rel.to_string_lossy().to_ascii_lowercase();
    let dir = rel
        .parent()
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default();
    match dir.as_str() {
        "pull_request" => return "pull_request",
        "push" => return "push",
        "issue_comment" => return "issue_comment",
        "" => {}
        other => panic!("{}: no event known for directory {other:?}", file.display()),
    }
    if name.contains("comment") {
        "issue_comment"
    } else if name.contains("pullrequest") || name.contains("pull_request") {
        "pull_request"
    } else if name.contains("push") {
        "push"
    } else {
        panic!(
            "{}: cannot tell which event this file is; teach event_of()",
            file.display()
        )
    }
}

/// Which header set a delivery carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sender {
    Github,
    Gitea,
    Forgejo,
}

/// The headers `sender` sends with `body` (signed with the test secret).
/// Gitea sends its own, the Gogs copies and GitHub's; Forgejo adds its own.
fn headers_of(sender: Sender, event: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    let hex = sign(body);
    let mut h: Vec<(&str, String)> = vec![
        ("X-GitHub-Event", event.into()),
        ("X-GitHub-Delivery", delivery.into()),
        ("X-Hub-Signature-256", format!("sha256={hex}")),
        // The legacy sha1 header, never trusted: a wrong value must not matter.
        ("X-Hub-Signature", format!("sha1={}", "0".repeat(40))),
    ];
    if sender != Sender::Github {
        let kind = kind_of(event, body);
        h.extend([
            ("X-GitHub-Event-Type", kind.clone()),
            ("X-Gitea-Event", event.into()),
            ("X-Gitea-Event-Type", kind.clone()),
            ("X-Gitea-Delivery", delivery.into()),
            ("X-Gitea-Signature", hex.clone()),
            ("X-Gogs-Event", event.into()),
            ("X-Gogs-Event-Type", kind.clone()),
            ("X-Gogs-Delivery", delivery.into()),
            ("X-Gogs-Signature", hex.clone()),
        ]);
    }
    if sender == Sender::Forgejo {
        h.extend([
            ("X-Forgejo-Event", event.into()),
            ("X-Forgejo-Event-Type", kind_of(event, body)),
            ("X-Forgejo-Delivery", delivery.into()),
            ("X-Forgejo-Signature", hex),
        ]);
    }
    h.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `X-Gitea-Event-Type`: finer than the event (a sync is `pull_request_sync`).
fn kind_of(event: &str, body: &[u8]) -> String {
    if event == "pull_request" && body_action(body) == "synchronized" {
        "pull_request_sync".into()
    } else {
        event.into()
    }
}

fn body_action(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("action")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

/// What `check` must say about `body` sent as `event`, read straight from the
/// payload with JSON pointers.
fn expected(forge: ForgeKind, event: &str, delivery: &str, body: &[u8]) -> Event {
    let v: Value = serde_json::from_slice(body).unwrap();
    let s = |ptr: &str| {
        v.pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("payload has no string at {ptr}"))
            .to_string()
    };
    let delivery = delivery.to_string();
    match event {
        "push" => Event::Push {
            delivery,
            git_ref: s("/ref"),
        },
        "pull_request" => {
            let merged = v.pointer("/pull_request/merged") == Some(&Value::Bool(true));
            let action = match s("/action").as_str() {
                "opened" | "reopened" | "ready_for_review" => PrAction::Opened,
                "synchronize" | "synchronized" => PrAction::Synchronized,
                "closed" if merged => PrAction::Merged {
                    merge_commit: s("/pull_request/merge_commit_sha"),
                },
                "closed" => PrAction::Closed,
                _ => {
                    return Event::Ignored {
                        delivery,
                        event: event.into(),
                    }
                }
            };
            let number = v
                .pointer("/number")
                .or_else(|| v.pointer("/pull_request/number"))
                .and_then(Value::as_u64)
                .expect("a PR number");
            Event::PullRequest {
                delivery,
                pr: PrEvent {
                    forge,
                    action,
                    number,
                    head_sha: s("/pull_request/head/sha"),
                    head_ref: s("/pull_request/head/ref"),
                    base_ref: s("/pull_request/base/ref"),
                    repo: s("/repository/full_name"),
                },
            }
        }
        other => Event::Ignored {
            delivery,
            event: other.into(),
        },
    }
}

/// Facts the data's README states about some files, pinned so the
/// expectations above are not merely the parser's logic written twice.
/// True if `rel` is one of them.
fn pinned(rel: &str, sender: Sender, got: &Event) -> bool {
    let pr = |got: &Event| match got {
        Event::PullRequest { pr, .. } => pr.clone(),
        other => panic!("{rel}: expected a pull request event, got {other:?}"),
    };
    let merged = |sha: &str| PrAction::Merged {
        merge_commit: sha.into(),
    };
    match rel {
        "github/webhooks/pull_request/opened.payload.json" => {
            let p = pr(got);
            assert_eq!((p.number, p.action), (2, PrAction::Opened), "{rel}");
            assert!(p.head_sha.starts_with("ec26c3e5"), "{rel}");
        }
        "github/webhooks/pull_request/synchronize.payload.json" => {
            assert_eq!(pr(got).action, PrAction::Synchronized, "{rel}");
        }
        // Not merged, though merge_commit_sha is filled.
        "github/webhooks/pull_request/closed.payload.json" => {
            assert_eq!(pr(got).action, PrAction::Closed, "{rel}");
        }
        "github/webhooks/HookPullRequestMerged.json" => {
            let p = pr(got);
            assert_eq!(p.number, 62, "{rel}");
            assert_eq!(
                p.action,
                merged("473d70eb7c50a54ae62bf9b124efa1c3eb245be8"),
                "{rel}"
            );
        }
        "gitea/webhooks/pull_request_synchronized.json" | "gitea/webhooks/HookPullRequestUpdated.json" => {
            let p = pr(got);
            assert_eq!(p.action, PrAction::Synchronized, "{rel}");
            assert_eq!(p.forge, ForgeKind::Gitea, "{rel} sent by {sender:?}");
        }
        "gitea/webhooks/pull_request_merged.json" => {
            assert_eq!(
                pr(got).action,
                merged("a148a755b627ac79f86bf3447e41927e1f4ad259"),
                "{rel}"
            );
        }
        "gitea/webhooks/HookPullRequestMerged.json" => {
            assert_eq!(
                pr(got).action,
                merged("f2440f050054df0f8ecabcace648f1683509064c"),
                "{rel}"
            );
        }
        "gitea/webhooks/HookPullRequestClosed.json" | "gitea/webhooks/pull_request_closed.json" => {
            assert_eq!(pr(got).action, PrAction::Closed, "{rel}");
        }
        "gitea/webhooks/HookPullRequest.json" => {
            assert_eq!(pr(got).action, PrAction::Opened, "{rel} (no merged key)");
        }
        "github/webhooks/push/payload.json" => {
            assert!(
                matches!(got, Event::Push { git_ref, .. } if git_ref == "refs/tags/simple-tag"),
                "{rel}: {got:?}"
            );
        }
        "gitea/webhooks/pull_request_comment_created.json"
        | "github/webhooks/githubIssueCommentEvent.json" => {
            assert!(
                matches!(got, Event::Ignored { event, .. } if event == "issue_comment"),
                "{rel}: {got:?}"
            );
        }
        _ => return false,
    }
    true
}

/// One delivery to send: which file, as whom, as which event.
struct Delivery {
    rel: String,
    sender: Sender,
    event: &'static str,
    body: Vec<u8>,
}

/// Every webhook file of both forges, once per sender that sends it (Gitea
/// files twice: as Gitea and as Forgejo). Also returns how many files there
/// are.
fn deliveries(root: &Path) -> (usize, Vec<Delivery>) {
    let mut files = 0;
    let mut out = vec![];
    for (forge_dir, senders) in [
        ("github", &[Sender::Github][..]),
        ("gitea", &[Sender::Gitea, Sender::Forgejo][..]),
    ] {
        let webhooks = root.join(forge_dir).join("webhooks");
        let found = files_under(&webhooks);
        assert!(!found.is_empty(), "no files under {}", webhooks.display());
        for file in found {
            files += 1;
            let event = event_of(&webhooks, &file);
            let rel = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let body = std::fs::read(&file).unwrap();
            for &sender in senders {
                out.push(Delivery {
                    rel: rel.clone(),
                    sender,
                    event,
                    body: body.clone(),
                });
            }
        }
    }
    (files, out)
}

#[test]
fn every_real_payload_goes_through_check() {
    let Some(root) = data_dir() else { return };
    let (files, deliveries) = deliveries(&root);
    let config = WebhookConfig::new(SECRET).unwrap();
    let mut replay = ReplayMemory::new(REPLAY_MEMORY);
    let mut handled: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<(String, &str), usize> = BTreeMap::new();
    let mut pinned_seen = std::collections::BTreeSet::new();
    for (i, d) in deliveries.iter().enumerate() {
        let forge = match d.sender {
            Sender::Github => ForgeKind::Github,
            Sender::Gitea | Sender::Forgejo => ForgeKind::Gitea,
        };
        let id = format!("conf-{i}");
        let h = header_map(&headers_of(d.sender, d.event, &id, &d.body));
        let got = check(&h, &d.body, &mut replay, &config);
        let want = expected(forge, d.event, &id, &d.body);
        assert_eq!(got.as_ref(), Ok(&want), "{} sent by {:?}", d.rel, d.sender);
        if let Event::PullRequest { pr, .. } = &want {
            assert_eq!(pr.forge, forge, "{}", d.rel);
        }
        if pinned(&d.rel, d.sender, &want) {
            pinned_seen.insert(d.rel.clone());
        }
        // A body changed by one byte fails the signature.
        let mut tampered = d.body.clone();
        if let Some(b) = tampered.last_mut() {
            *b ^= 1;
        }
        let h = header_map(&headers_of(d.sender, d.event, &format!("t-{i}"), &d.body));
        assert_eq!(
            check(&h, &tampered, &mut replay, &config).map_err(|r| r.status),
            Err(StatusCode::UNAUTHORIZED),
            "{} tampered",
            d.rel
        );
        // The same delivery again is a replay.
        let h = header_map(&headers_of(d.sender, d.event, &id, &d.body));
        assert_eq!(
            check(&h, &d.body, &mut replay, &config).map_err(|r| r.status),
            Err(StatusCode::CONFLICT),
            "{} replayed",
            d.rel
        );
        *handled.entry(d.rel.clone()).or_default() += 1;
        let kind = match &want {
            Event::Push { .. } => "push",
            Event::PullRequest { .. } => "pull_request",
            Event::Ignored { .. } => "ignored",
        };
        *kinds
            .entry((d.rel[..d.rel.find('/').unwrap()].to_string(), kind))
            .or_default() += 1;
    }
    // Every file was exercised, Gitea's by both senders.
    assert_eq!(handled.len(), files, "files found but not handled");
    for (rel, n) in &handled {
        let want = if rel.starts_with("gitea/") { 2 } else { 1 };
        assert_eq!(*n, want, "{rel}");
    }
    for forge in ["github", "gitea"] {
        for kind in ["push", "pull_request", "ignored"] {
            assert!(
                kinds.contains_key(&(forge.to_string(), kind)),
                "no {kind} outcome among the {forge} files"
            );
        }
    }
    assert_eq!(pinned_seen.len(), 14, "pinned files exercised: {pinned_seen:?}");
    println!(
        "conformance: {files} webhook files, {} deliveries, all handled",
        deliveries.len()
    );
}

#[tokio::test]
async fn every_real_payload_goes_through_the_http_server() {
    let Some(root) = data_dir() else { return };
    let (files, deliveries) = deliveries(&root);
    let mut f = start().await;
    let mut sent = std::collections::BTreeSet::new();
    for (i, d) in deliveries.iter().enumerate() {
        let id = format!("http-{i}");
        let h = headers_of(d.sender, d.event, &id, &d.body);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = request(f.addr, "POST", "/webhook", &h, &d.body).await;
        let forge = if d.sender == Sender::Github {
            ForgeKind::Github
        } else {
            ForgeKind::Gitea
        };
        match expected(forge, d.event, &id, &d.body) {
            Event::Push { git_ref, .. } => {
                assert_eq!(r.status, 202, "{}: {}", d.rel, r.body);
                assert_eq!(f.rx.try_recv().ok(), Some(git_ref), "{}", d.rel);
            }
            Event::PullRequest { .. } | Event::Ignored { .. } => {
                assert_eq!(r.status, 204, "{}: {}", d.rel, r.body);
            }
        }
        assert!(f.rx.try_recv().is_err(), "{}: triggered more than once", d.rel);
        sent.insert(d.rel.clone());
    }
    assert_eq!(sent.len(), files, "files found but not sent");
}

#[test]
fn every_signature_vector() {
    let Some(root) = data_dir() else { return };
    let text = std::fs::read(root.join("signature-vectors.json")).unwrap();
    let doc: Value = serde_json::from_slice(&text).unwrap();
    let vectors = doc["vectors"].as_array().expect("vectors");
    let negatives = doc["negative"].as_array().expect("negative");
    assert!(!vectors.is_empty() && !negatives.is_empty());
    let mut replay = ReplayMemory::new(REPLAY_MEMORY);
    let mut header_sets = 0;
    for (i, v) in vectors.iter().enumerate() {
        let name = v["name"].as_str().unwrap_or("?");
        let config = WebhookConfig::new(v["secret"].as_str().unwrap()).unwrap();
        let payload: Vec<u8> = match (v["payload"].as_str(), v["payload_file"].as_str()) {
            (Some(p), _) => p.as_bytes().to_vec(),
            (None, Some(file)) => {
                let bytes = std::fs::read(root.join(file)).unwrap();
                if let Some(n) = v["payload_bytes"].as_u64() {
                    assert_eq!(bytes.len() as u64, n, "{name}: size of {file}");
                }
                if let Some(sum) = v["payload_sha256"].as_str() {
                    let got: String = Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    assert_eq!(got, sum, "{name}: sha256 of {file}");
                }
                bytes
            }
            _ => panic!("{name}: neither payload nor payload_file"),
        };
        let hex = v["expected_sha256_hex"].as_str().unwrap();
        assert!(config.verify(&payload, hex), "{name}");
        assert!(config.verify(&payload, &hex.to_ascii_uppercase()), "{name}");
        let mut other = payload.clone();
        other.push(b'\n');
        assert!(!config.verify(&other, hex), "{name}: a changed body verified");
        // Each header form, through the whole check (as a ping: the
        // signature is what is tested).
        for (form, hs) in v["headers"].as_object().unwrap() {
            let id = format!("vec-{i}-{form}");
            let mut h: Vec<(String, String)> = hs
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let (event, delivery) = match form.as_str() {
                "github" | "legacy_sha1" => ("X-GitHub-Event", "X-GitHub-Delivery"),
                "gitea" => ("X-Gitea-Event", "X-Gitea-Delivery"),
                "forgejo" => ("X-Forgejo-Event", "X-Forgejo-Delivery"),
                other => panic!("{name}: unknown header form {other}"),
            };
            h.push((event.into(), "ping".into()));
            h.push((delivery.into(), id.clone()));
            let got = check(&header_map(&h), &payload, &mut replay, &config);
            if form == "legacy_sha1" {
                // sha1 alone is never enough.
                assert_eq!(
                    got.map_err(|r| (r.status, r.reason)),
                    Err((StatusCode::UNAUTHORIZED, "missing signature".into())),
                    "{name} {form}"
                );
            } else {
                assert_eq!(
                    got,
                    Ok(Event::Ignored {
                        delivery: id,
                        event: "ping".into()
                    }),
                    "{name} {form}"
                );
            }
            header_sets += 1;
        }
    }
    assert!(header_sets >= vectors.len());
    for n in negatives {
        let why = n["why"].as_str().unwrap_or("?");
        let config = WebhookConfig::new(n["secret"].as_str().unwrap()).unwrap();
        let payload = n["payload"].as_str().unwrap().as_bytes();
        let bad = n["must_not_equal"].as_str().unwrap();
        assert!(!config.verify(payload, bad), "negative vector verified: {why}");
        if let Some(own) = n["sha256_hex"].as_str() {
            assert!(config.verify(payload, own), "{why}: its own value");
        }
        // Through the check too: 401.
        let h = header_map(&[
            ("X-GitHub-Event".into(), "ping".into()),
            ("X-GitHub-Delivery".into(), format!("neg-{why}")),
            ("X-Hub-Signature-256".into(), format!("sha256={bad}")),
        ]);
        assert_eq!(
            check(&h, payload, &mut replay, &config).map_err(|r| r.status),
            Err(StatusCode::UNAUTHORIZED),
            "{why}"
        );
    }
    println!(
        "signature vectors: {} positive ({header_sets} header forms), {} negative",
        vectors.len(),
        negatives.len()
    );
}
