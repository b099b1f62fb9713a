//! Pull request webhook payloads of both dialects (GitHub; Gitea and
//! Forgejo), parsed into one [`PrEvent`], and which forge sent a request.
//!
//! Pure: bytes and headers in, a value or a reason out. No I/O, no logging.
//! The signature, the delivery id and the event header are checked before
//! this runs (`http::webhook::check`); this module only reads the body of a
//! `pull_request` event.
//!
//! What Warren acts on (anything else is `Ok(None)`, acknowledged and
//! ignored: `edited`, `labeled`, `assigned`, `review_requested`,
//! `converted_to_draft`, Gitea's `label_updated`, …):
//!
//! | `action`                                   | becomes |
//! |--------------------------------------------|---------|
//! | `opened`, `reopened`, `ready_for_review`   | [`PrAction::Opened`] |
//! | `synchronize` (GitHub), `synchronized` (Gitea, Forgejo) | [`PrAction::Synchronized`] |
//! | `closed` with `pull_request.merged == true` | [`PrAction::Merged`] with `pull_request.merge_commit_sha` |
//! | `closed` otherwise                          | [`PrAction::Closed`] |
//!
//! Both spellings of the sync action are taken from either forge, so a
//! delivery whose Gitea headers were lost on the way still updates its PR.
//! GitHub fills `merge_commit_sha` for unmerged PRs too (its test merge):
//! it is read only when `merged` is true.

use super::{ForgeKind, PrAction, PrEvent};
use hyper::header::HeaderMap;
use serde_json::Value;

/// Which forge sent a webhook request. Gitea (and Forgejo, which adds its
/// own headers on top of Gitea's) also sends GitHub's `X-GitHub-Event`, so
/// the Gitea and Forgejo headers are looked at first.
pub fn forge_of(headers: &HeaderMap) -> ForgeKind {
    if headers.contains_key("x-forgejo-event") || headers.contains_key("x-gitea-event") {
        ForgeKind::Gitea
    } else {
        ForgeKind::Github
    }
}

/// What a `pull_request` event body says, as far as Warren cares:
/// `Ok(Some(_))` for an action Warren acts on, `Ok(None)` for one it ignores,
/// `Err` naming what is wrong (not JSON, a missing or mistyped field).
pub fn parse_pull_request(forge: ForgeKind, body: &[u8]) -> Result<Option<PrEvent>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("pull_request body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("pull_request body is not a JSON object".to_string());
    }
    let action = string(&v, &["action"])?;
    let kind = match action {
        "opened" | "reopened" | "ready_for_review" => Kind::Opened,
        "synchronize" | "synchronized" => Kind::Synchronized,
        "closed" => Kind::Closed,
        _ => return Ok(None),
    };
    let action = match kind {
        Kind::Opened => PrAction::Opened,
        Kind::Synchronized => PrAction::Synchronized,
        Kind::Closed if merged(&v)? => PrAction::Merged {
            merge_commit: sha(&v, &["pull_request", "merge_commit_sha"])?,
        },
        Kind::Closed => PrAction::Closed,
    };
    Ok(Some(PrEvent {
        forge,
        action,
        number: number(&v)?,
        head_sha: sha(&v, &["pull_request", "head", "sha"])?,
        head_ref: non_empty(&v, &["pull_request", "head", "ref"])?,
        base_ref: non_empty(&v, &["pull_request", "base", "ref"])?,
        repo: non_empty(&v, &["repository", "full_name"])?,
    }))
}

enum Kind {
    Opened,
    Synchronized,
    Closed,
}

/// The value at `path`, or `None` if any step is missing or `null`.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

fn string<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str, String> {
    let name = path.join(".");
    match at(v, path) {
        None => Err(format!("pull_request event without {name}")),
        Some(x) => x
            .as_str()
            .ok_or_else(|| format!("pull_request event: {name} is not a string")),
    }
}

fn non_empty(v: &Value, path: &[&str]) -> Result<String, String> {
    match string(v, path)? {
        "" => Err(format!("pull_request event: {} is empty", path.join("."))),
        s => Ok(s.to_string()),
    }
}

/// A commit id: 40 (SHA-1) or 64 (SHA-256 repositories) hex digits, kept
/// as sent. It ends up in fetched refs and API paths, so nothing else passes.
fn sha(v: &Value, path: &[&str]) -> Result<String, String> {
    let s = string(v, path)?;
    if (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "pull_request event: {} is not a commit id (40 or 64 hex digits): {:?}",
            path.join("."),
            s.chars().take(80).collect::<String>()
        ))
    }
}

/// `pull_request.merged`: absent or `null` is false (Gitea's minimal
/// payloads have no such key); anything but a boolean is an error.
fn merged(v: &Value) -> Result<bool, String> {
    match at(v, &["pull_request", "merged"]) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err("pull_request event: pull_request.merged is not a boolean".to_string()),
    }
}

/// The top-level `number`, else `pull_request.number`; both must agree when
/// both are there.
fn number(v: &Value) -> Result<u64, String> {
    let read = |path: &[&str]| -> Result<Option<u64>, String> {
        match at(v, path) {
            None => Ok(None),
            Some(x) => match x.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!(
                    "pull_request event: {} is not a positive integer",
                    path.join(".")
                )),
            },
        }
    };
    match (read(&["number"])?, read(&["pull_request", "number"])?) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "pull_request event: number {a} and pull_request.number {b} disagree"
        )),
        (Some(n), _) | (None, Some(n)) => Ok(n),
        (None, None) => Err("pull_request event without number or pull_request.number".to_string()),
    }
}

/// The project's own pull request payloads, in the shapes both forges send
/// (field names and nesting as in their documented and captured deliveries;
/// values made up). Test code only.
#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::{json, Value};

    pub const HEAD: &str = "9f1c2b3a4d5e6f708192a3b4c5d6e7f809112233";
    pub const TEST_MERGE: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
    pub const MERGED: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

    /// A GitHub-shaped payload: `number` at the top and in `pull_request`,
    /// `merged` and `merge_commit_sha` always present (GitHub fills the
    /// latter with its test merge even when not merged), `before`/`after`.
    pub fn github(action: &str, merged: bool) -> Value {
        json!({
            "action": action,
            "number": 7,
            "before": "1111111111111111111111111111111111111111",
            "after": HEAD,
            "pull_request": {
                "number": 7,
                "state": if action == "closed" { "closed" } else { "open" },
                "draft": false,
                "merged": merged,
                "merge_commit_sha": if merged { MERGED } else { TEST_MERGE },
                "head": { "ref": "wg-keys", "sha": HEAD, "repo": { "full_name": "ana/home" } },
                "base": { "ref": "main", "sha": "2222222222222222222222222222222222222222" },
                "user": { "login": "ana" }
            },
            "repository": { "full_name": "ana/home", "owner": { "login": "ana" } },
            "sender": { "login": "ana" }
        })
    }

    /// A Gitea-shaped payload: `repo_id` on head and base, users with
    /// `username`, `merge_commit_sha` null unless merged, no `before`.
    pub fn gitea(action: &str, merged: bool) -> Value {
        json!({
            "action": action,
            "number": 3,
            "commit_id": "",
            "pull_request": {
                "id": 41,
                "number": 3,
                "state": if action == "closed" { "closed" } else { "open" },
                "merged": merged,
                "merge_base": "3333333333333333333333333333333333333333",
                "merge_commit_sha": if merged { Value::from(MERGED) } else { Value::Null },
                "head": { "label": "nft", "ref": "nft", "sha": HEAD, "repo_id": 5 },
                "base": { "label": "main", "ref": "main", "sha": "3333333333333333333333333333333333333333", "repo_id": 5 }
            },
            "repository": { "full_name": "bo/lan", "owner": { "login": "bo", "username": "bo" } },
            "sender": { "login": "bo", "username": "bo" },
            "review": null,
            "requested_reviewer": null
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::fixtures::{gitea, github, HEAD, MERGED};
    use super::*;
    use hyper::header::HeaderValue;
    use serde_json::json;

    fn parse(forge: ForgeKind, v: &Value) -> Result<Option<PrEvent>, String> {
        parse_pull_request(forge, v.to_string().as_bytes())
    }

    fn action(forge: ForgeKind, v: &Value) -> Option<PrAction> {
        parse(forge, v).unwrap().map(|e| e.action)
    }

    #[test]
    fn github_actions() {
        use PrAction as A;
        let g = ForgeKind::Github;
        let e = parse(g, &github("opened", false)).unwrap().unwrap();
        assert_eq!(
            e,
            PrEvent {
                forge: g,
                action: A::Opened,
                number: 7,
                head_sha: HEAD.into(),
                head_ref: "wg-keys".into(),
                base_ref: "main".into(),
                repo: "ana/home".into(),
            }
        );
        assert_eq!(action(g, &github("reopened", false)), Some(A::Opened));
        assert_eq!(action(g, &github("ready_for_review", false)), Some(A::Opened));
        assert_eq!(action(g, &github("synchronize", false)), Some(A::Synchronized));
        assert_eq!(
            action(g, &github("closed", true)),
            Some(A::Merged {
                merge_commit: MERGED.into()
            })
        );
        // Not merged: GitHub's test-merge sha is not taken for a merge.
        assert_eq!(action(g, &github("closed", false)), Some(A::Closed));
        for ignored in [
            "edited",
            "labeled",
            "unlabeled",
            "assigned",
            "review_requested",
            "converted_to_draft",
            "auto_merge_enabled",
        ] {
            assert_eq!(parse(g, &github(ignored, false)), Ok(None), "{ignored}");
        }
    }

    #[test]
    fn gitea_actions() {
        use PrAction as A;
        let t = ForgeKind::Gitea;
        let e = parse(t, &gitea("synchronized", false)).unwrap().unwrap();
        assert_eq!(
            e,
            PrEvent {
                forge: t,
                action: A::Synchronized,
                number: 3,
                head_sha: HEAD.into(),
                head_ref: "nft".into(),
                base_ref: "main".into(),
                repo: "bo/lan".into(),
            }
        );
        assert_eq!(action(t, &gitea("opened", false)), Some(A::Opened));
        assert_eq!(action(t, &gitea("reopened", false)), Some(A::Opened));
        assert_eq!(
            action(t, &gitea("closed", true)),
            Some(A::Merged {
                merge_commit: MERGED.into()
            })
        );
        assert_eq!(action(t, &gitea("closed", false)), Some(A::Closed));
        for ignored in ["edited", "label_updated", "label_cleared", "assigned", "reviewed"] {
            assert_eq!(parse(t, &gitea(ignored, false)), Ok(None), "{ignored}");
        }
        // Either spelling of the sync action, from either forge.
        assert_eq!(action(t, &gitea("synchronize", false)), Some(A::Synchronized));
        assert_eq!(
            action(ForgeKind::Github, &gitea("synchronized", false)),
            Some(A::Synchronized)
        );
    }

    #[test]
    fn minimal_gitea_payload_without_merged_or_inner_number() {
        let mut v = gitea("opened", false);
        let pr = v["pull_request"].as_object_mut().unwrap();
        pr.remove("merged");
        pr.remove("merge_commit_sha");
        pr.remove("number");
        let e = parse(ForgeKind::Gitea, &v).unwrap().unwrap();
        assert_eq!((e.number, e.action), (3, PrAction::Opened));
        // A closed one without `merged` is closed, not merged.
        v["action"] = "closed".into();
        assert_eq!(action(ForgeKind::Gitea, &v), Some(PrAction::Closed));
        // Only the inner number.
        let mut v = github("opened", false);
        v.as_object_mut().unwrap().remove("number");
        assert_eq!(parse(ForgeKind::Github, &v).unwrap().unwrap().number, 7);
    }

    #[test]
    fn malformed_payloads_name_what_is_wrong() {
        let g = ForgeKind::Github;
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut v = github("closed", true);
            edit(&mut v);
            parse(g, &v).unwrap_err()
        };
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| v["pull_request"]["head"].as_object_mut().unwrap().clear()),
                "pull_request event without pull_request.head.sha",
            ),
            (
                Box::new(|v| v["pull_request"]["head"]["sha"] = 5.into()),
                "pull_request event: pull_request.head.sha is not a string",
            ),
            (
                Box::new(|v| v["pull_request"]["head"]["sha"] = "main; rm -rf /".into()),
                "pull_request event: pull_request.head.sha is not a commit id (40 or 64 hex digits): \"main; rm -rf /\"",
            ),
            (
                Box::new(|v| v["pull_request"]["head"]["ref"] = "".into()),
                "pull_request event: pull_request.head.ref is empty",
            ),
            (
                Box::new(|v| {
                    v["pull_request"]["base"].as_object_mut().unwrap().remove("ref");
                }),
                "pull_request event without pull_request.base.ref",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("repository");
                }),
                "pull_request event without repository.full_name",
            ),
            (
                Box::new(|v| v["pull_request"]["merge_commit_sha"] = Value::Null),
                "pull_request event without pull_request.merge_commit_sha",
            ),
            (
                Box::new(|v| v["pull_request"]["merged"] = "yes".into()),
                "pull_request event: pull_request.merged is not a boolean",
            ),
            (
                Box::new(|v| v["number"] = "7".into()),
                "pull_request event: number is not a positive integer",
            ),
            (
                Box::new(|v| v["number"] = 0.into()),
                "pull_request event: number is not a positive integer",
            ),
            (
                Box::new(|v| v["number"] = 8.into()),
                "pull_request event: number 8 and pull_request.number 7 disagree",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("number");
                    v["pull_request"].as_object_mut().unwrap().remove("number");
                }),
                "pull_request event without number or pull_request.number",
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("action");
                }),
                "pull_request event without action",
            ),
            (
                Box::new(|v| v["action"] = json!(["opened"])),
                "pull_request event: action is not a string",
            ),
            (
                Box::new(|v| v["pull_request"] = Value::Null),
                "pull_request event without pull_request.head.sha",
            ),
        ];
        for (i, (edit, want)) in cases.iter().enumerate() {
            assert_eq!(with(edit.as_ref()), *want, "case {i}");
        }
        // An ignored action is not checked further.
        assert_eq!(parse(g, &json!({"action": "labeled"})), Ok(None));
        // Not JSON, not an object.
        let e = parse_pull_request(g, b"{nope").unwrap_err();
        assert!(e.starts_with("pull_request body is not JSON: "), "{e}");
        assert_eq!(
            parse_pull_request(g, b"[1]").unwrap_err(),
            "pull_request body is not a JSON object"
        );
        assert!(parse_pull_request(g, b"\xff\xfe").is_err());
        assert!(parse_pull_request(g, b"").is_err());
    }

    #[test]
    fn sha256_commit_ids_are_accepted() {
        let long = "ab".repeat(32);
        let mut v = gitea("opened", false);
        v["pull_request"]["head"]["sha"] = long.clone().into();
        assert_eq!(parse(ForgeKind::Gitea, &v).unwrap().unwrap().head_sha, long);
    }

    #[test]
    fn forge_is_told_by_gitea_or_forgejo_headers_first() {
        let h = |names: &[&str]| {
            let mut m = HeaderMap::new();
            for n in names {
                m.insert(
                    hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_static("pull_request"),
                );
            }
            m
        };
        assert_eq!(forge_of(&h(&["X-GitHub-Event"])), ForgeKind::Github);
        assert_eq!(forge_of(&h(&[])), ForgeKind::Github);
        assert_eq!(
            forge_of(&h(&["X-GitHub-Event", "X-Gitea-Event"])),
            ForgeKind::Gitea
        );
        assert_eq!(
            forge_of(&h(&["X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event"])),
            ForgeKind::Gitea
        );
        assert_eq!(forge_of(&h(&["X-Forgejo-Event"])), ForgeKind::Gitea);
        assert_eq!(
            forge_of(&h(&["X-Gogs-Event", "X-GitHub-Event"])),
            ForgeKind::Github
        );
    }
}
