//! The fake's state machine: one request in, one response out, no I/O.
//!
//! Routes (GitHub paths at the root, Gitea's under `/api/v1`):
//!
//! | call | GitHub | Gitea |
//! |---|---|---|
//! | `GET /user` | `{id, login, type}` | `{id, login, username, full_name}` |
//! | `GET /repos/{o}/{r}/issues/{n}/comments` | `per_page` (≤100, default 30), `page`; `Link` | `limit` (≤50, default 30), `page`; `X-Total-Count` and `Link` |
//! | `POST /repos/{o}/{r}/issues/{n}/comments` `{body}` | 201 | 201 |
//! | `PATCH /repos/{o}/{r}/issues/comments/{id}` `{body}` | 200; `POST` too | 200; `POST` is 405 |
//! | `POST /repos/{o}/{r}/statuses/{sha}` | 201, state in `state` | 201, state in **`status`** |
//! | `GET …/commits/{sha}/statuses` | newest first | newest first (also `GET …/statuses/{sha}`) |
//! | `POST`/`GET …/commits/{sha}/comments` | commit comments | 404 (Gitea has none) |
//!
//! A comment body over the limit (65 536 characters on GitHub, none on Gitea
//! unless set) is a 422 with GitHub's "Body is too long" error. A deleted
//! comment is a 404 on edit. Control calls live under `/_fake/` (no auth).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;

/// GitHub's documented maximum comment length, in characters.
pub const GITHUB_BODY_LIMIT: usize = 65_536;
/// GitHub: at most this many statuses per sha and context.
pub const STATUS_LIMIT: usize = 1000;
const TIMESTAMP: &str = "2024-01-01T00:00:00Z";

/// Which forge the fake imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// GitHub REST v3 (`Authorization: Bearer`).
    Github,
    /// Gitea / Forgejo API v1 (`Authorization: token`), under `/api/v1`.
    Gitea,
}

impl Dialect {
    /// The path prefix of the API below the server's root.
    pub fn api_prefix(self) -> &'static str {
        match self {
            Dialect::Github => "",
            Dialect::Gitea => "/api/v1",
        }
    }

    /// The only `Authorization` scheme this instance accepts.
    pub fn auth_scheme(self) -> &'static str {
        match self {
            Dialect::Github => "Bearer",
            Dialect::Gitea => "token",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Github => "github",
            Dialect::Gitea => "gitea",
        })
    }
}

impl FromStr for Dialect {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "github" => Ok(Dialect::Github),
            "gitea" | "forgejo" => Ok(Dialect::Gitea),
            other => Err(crate::Error::Invalid(format!(
                "unknown dialect {other:?} (github, gitea)"
            ))),
        }
    }
}

/// One HTTP request, as the server read it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET`, `POST`, `PATCH`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string's pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// One HTTP response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Type and Content-Length are the server's).
    pub headers: Vec<(String, String)>,
    /// The JSON body (empty for none).
    pub body: String,
}

impl Response {
    fn json(status: u16, v: Value) -> Response {
        Response {
            status,
            headers: vec![],
            body: v.to_string(),
        }
    }
}

/// A failure the fake answers instead of the next request(s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// 403, 429, 500, 502, …
    pub status: u16,
    /// `Retry-After` in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// With this, `x-ratelimit-remaining: 0` and `x-ratelimit-reset: <this>`
    /// (Unix seconds).
    #[serde(default)]
    pub ratelimit_reset: Option<u64>,
    /// Only requests with this method (`POST`, …) take the failure; `None`:
    /// any request.
    #[serde(default)]
    pub method: Option<String>,
    /// The error's `message` (default: a rate-limit or server-error text).
    #[serde(default)]
    pub message: Option<String>,
}

impl Failure {
    /// Fail with this status (no headers, any method).
    pub fn new(status: u16) -> Failure {
        Failure {
            status,
            retry_after: None,
            ratelimit_reset: None,
            method: None,
            message: None,
        }
    }

    /// With `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Failure {
        self.retry_after = Some(secs);
        self
    }

    /// With `x-ratelimit-remaining: 0` and `x-ratelimit-reset: unix_secs`.
    pub fn ratelimit_reset(mut self, unix_secs: u64) -> Failure {
        self.ratelimit_reset = Some(unix_secs);
        self
    }

    /// Only for requests with this method.
    pub fn method(mut self, method: &str) -> Failure {
        self.method = Some(method.to_string());
        self
    }

    /// With this error message.
    pub fn message(mut self, message: &str) -> Failure {
        self.message = Some(message.to_string());
        self
    }
}

#[derive(Clone, Debug)]
struct User {
    id: u64,
    login: String,
    token: String,
}

/// A user as the snapshot shows it (never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// Numeric id.
    pub id: u64,
    /// Login.
    pub login: String,
}

/// An issue or pull request comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentView {
    /// Comment id.
    pub id: u64,
    /// `owner/name`.
    pub repo: String,
    /// The issue or PR number.
    pub issue: u64,
    /// The author's id.
    pub user_id: u64,
    /// The body, verbatim.
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A commit status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// Status id.
    pub id: u64,
    /// `owner/name`.
    pub repo: String,
    /// The commit.
    pub sha: String,
    /// `warren/plan`, …
    pub context: String,
    /// `pending`, `success`, `failure`, `error`, …
    pub state: String,
    /// The description, verbatim.
    pub description: String,
    /// The link, if any.
    pub target_url: Option<String>,
    /// Who posted it.
    pub creator_id: u64,
}

/// A GitHub commit comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCommentView {
    /// Comment id.
    pub id: u64,
    /// `owner/name`.
    pub repo: String,
    /// The commit.
    pub sha: String,
    /// The author's id.
    pub user_id: u64,
    /// The body.
    pub body: String,
}

/// One line of the request log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The method.
    pub method: String,
    /// The path (below the server's root, with the API prefix).
    pub path: String,
    /// The raw query, `k=v&…` (decoded), empty for none.
    pub query: String,
    /// The status answered.
    pub status: u16,
    /// The first word of the `Authorization` header (never the token).
    pub auth_scheme: Option<String>,
}

/// Everything the fake holds, for assertions (`GET /_fake/state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The dialect.
    pub dialect: Dialect,
    /// Users (no tokens).
    pub users: Vec<UserView>,
    /// Live comments, by id.
    pub comments: Vec<CommentView>,
    /// Ids of deleted comments.
    pub deleted_comments: Vec<u64>,
    /// Statuses in the order they were posted.
    pub statuses: Vec<StatusView>,
    /// GitHub commit comments.
    pub commit_comments: Vec<CommitCommentView>,
    /// Successful writes (comment create/edit, status, commit comment).
    pub writes: u64,
    /// Every API request (not `/_fake/`), in order.
    pub requests: Vec<LogEntry>,
}

impl Snapshot {
    /// The live comments on one issue or PR, oldest first.
    pub fn comments_on(&self, repo: &str, issue: u64) -> Vec<&CommentView> {
        self.comments
            .iter()
            .filter(|c| c.repo == repo && c.issue == issue)
            .collect()
    }

    /// The statuses on one commit, oldest first.
    pub fn statuses_on(&self, repo: &str, sha: &str) -> Vec<&StatusView> {
        self.statuses
            .iter()
            .filter(|s| s.repo == repo && s.sha == sha)
            .collect()
    }

    /// API requests with this method.
    pub fn count(&self, method: &str) -> usize {
        self.requests.iter().filter(|r| r.method == method).count()
    }
}

/// The fake forge's state.
#[derive(Debug)]
pub struct Forge {
    dialect: Dialect,
    /// `http://host:port`, for URLs in bodies and `Link` headers.
    base_url: String,
    users: Vec<User>,
    next_id: u64,
    comments: BTreeMap<u64, CommentView>,
    deleted: BTreeSet<u64>,
    statuses: Vec<StatusView>,
    commit_comments: Vec<CommitCommentView>,
    failures: VecDeque<Failure>,
    writes: u64,
    log: Vec<LogEntry>,
    body_limit: Option<usize>,
    ignore_paging: bool,
}

impl Forge {
    /// An empty forge of this dialect, answering as `base_url`.
    pub fn new(dialect: Dialect, base_url: &str) -> Forge {
        Forge {
            dialect,
            base_url: base_url.trim_end_matches('/').to_string(),
            users: vec![],
            next_id: 1000,
            comments: BTreeMap::new(),
            deleted: BTreeSet::new(),
            statuses: vec![],
            commit_comments: vec![],
            failures: VecDeque::new(),
            writes: 0,
            log: vec![],
            body_limit: match dialect {
                Dialect::Github => Some(GITHUB_BODY_LIMIT),
                Dialect::Gitea => None,
            },
            ignore_paging: false,
        }
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Add a user with this token; returns its id (1, 2, …).
    pub fn add_user(&mut self, login: &str, token: &str) -> Result<u64, crate::Error> {
        if login.is_empty() || token.is_empty() || token.contains(char::is_whitespace) {
            return Err(crate::Error::Invalid(
                "a user needs a login and a token without spaces".into(),
            ));
        }
        if self.users.iter().any(|u| u.login == login || u.token == token) {
            return Err(crate::Error::Invalid(format!(
                "user {login:?} or its token already exists"
            )));
        }
        let id = self.users.len() as u64 + 1;
        self.users.push(User {
            id,
            login: login.to_string(),
            token: token.to_string(),
        });
        Ok(id)
    }

    /// Answer the next `count` API requests with this failure.
    pub fn fail_next(&mut self, failure: Failure, count: usize) {
        for _ in 0..count {
            self.failures.push_back(failure.clone());
        }
    }

    /// Delete a comment (as a person in the web UI would); false if none.
    pub fn delete_comment(&mut self, id: u64) -> bool {
        if self.comments.remove(&id).is_some() {
            self.deleted.insert(id);
            true
        } else {
            false
        }
    }

    /// Post a comment as `login` without going through HTTP (a human, or
    /// another bot).
    pub fn inject_comment(
        &mut self,
        repo: &str,
        issue: u64,
        login: &str,
        body: &str,
    ) -> Result<u64, crate::Error> {
        let user_id = self
            .users
            .iter()
            .find(|u| u.login == login)
            .map(|u| u.id)
            .ok_or_else(|| crate::Error::UnknownUser(login.to_string()))?;
        Ok(self.insert_comment(repo, issue, user_id, body))
    }

    /// The comment body limit in characters (`None`: unlimited).
    pub fn set_body_limit(&mut self, limit: Option<usize>) {
        self.body_limit = limit;
    }

    /// Answer every comment list in full, ignoring `page`/`limit` (what the
    /// Gitea API documents for issue comments: "List all comments").
    pub fn set_ignore_paging(&mut self, ignore: bool) {
        self.ignore_paging = ignore;
    }

    /// A copy of everything, for assertions.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            dialect: self.dialect,
            users: self
                .users
                .iter()
                .map(|u| UserView {
                    id: u.id,
                    login: u.login.clone(),
                })
                .collect(),
            comments: self.comments.values().cloned().collect(),
            deleted_comments: self.deleted.iter().copied().collect(),
            statuses: self.statuses.clone(),
            commit_comments: self.commit_comments.clone(),
            writes: self.writes,
            requests: self.log.clone(),
        }
    }

    fn insert_comment(&mut self, repo: &str, issue: u64, user_id: u64, body: &str) -> u64 {
        let id = self.take_id();
        self.comments.insert(
            id,
            CommentView {
                id,
                repo: repo.to_string(),
                issue,
                user_id,
                body: body.to_string(),
                edits: 0,
            },
        );
        id
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Answer one request (API or `/_fake/` control).
    pub fn handle(&mut self, req: &Request) -> Response {
        if let Some(rest) = req.path.strip_prefix("/_fake/") {
            return self.control(&req.method, rest, &req.body);
        }
        let resp = self.api(req);
        let query = req
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        self.log.push(LogEntry {
            method: req.method.clone(),
            path: req.path.clone(),
            query,
            status: resp.status,
            auth_scheme: req
                .authorization
                .as_deref()
                .and_then(|a| a.split_whitespace().next())
                .map(str::to_string),
        });
        if matches!(resp.status, 200 | 201) && req.method != "GET" {
            self.writes += 1;
        }
        resp
    }

    fn error(&self, status: u16, message: &str) -> Response {
        let body = match self.dialect {
            Dialect::Github => json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
                "status": status.to_string(),
            }),
            Dialect::Gitea => json!({
                "message": message,
                "url": format!("{}/api/swagger", self.base_url),
            }),
        };
        Response::json(status, body)
    }

    fn validation(&self, resource: &str, field: &str, message: &str) -> Response {
        match self.dialect {
            Dialect::Github => Response::json(
                422,
                json!({
                    "message": "Validation Failed",
                    "errors": [{
                        "resource": resource,
                        "code": "unprocessable",
                        "field": field,
                        "message": message,
                    }],
                    "documentation_url": "https://docs.github.com/rest",
                    "status": "422",
                }),
            ),
            Dialect::Gitea => self.error(422, message),
        }
    }

    fn api(&mut self, req: &Request) -> Response {
        let due = self.failures.iter().position(|f| {
            f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
        });
        if let Some(f) = due.and_then(|i| self.failures.remove(i)) {
            return self.failure(&f);
        }
        let Some(path) = req.path.strip_prefix(self.dialect.api_prefix()) else {
            return self.error(404, "Not Found");
        };
        let user = match self.authenticate(req.authorization.as_deref()) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let m = req.method.as_str();
        match segs.as_slice() {
            ["user"] if m == "GET" => Response::json(200, self.user_json(&user)),
            ["repos", o, r, "issues", n, "comments"] => {
                let Ok(n) = n.parse::<u64>() else {
                    return self.error(404, "Not Found");
                };
                let repo = format!("{o}/{r}");
                match m {
                    "GET" => self.list_comments(&repo, n, path, &req.query),
                    "POST" => self.create_comment(&repo, n, &user, &req.body),
                    _ => self.error(405, "Method Not Allowed"),
                }
            }
            ["repos", o, r, "issues", "comments", id] => {
                let Ok(id) = id.parse::<u64>() else {
                    return self.error(404, "Not Found");
                };
                let repo = format!("{o}/{r}");
                match (m, self.dialect) {
                    ("PATCH", _) | ("POST", Dialect::Github) => self.edit_comment(&repo, id, &req.body),
                    ("GET", _) => match self.comments.get(&id) {
                        Some(c) if c.repo == repo => Response::json(200, self.comment_json(c)),
                        _ => self.error(404, "Not Found"),
                    },
                    _ => self.error(405, "Method Not Allowed"),
                }
            }
            ["repos", o, r, "statuses", sha] => {
                let repo = format!("{o}/{r}");
                match (m, self.dialect) {
                    ("POST", _) => self.create_status(&repo, sha, &user, &req.body),
                    ("GET", Dialect::Gitea) => self.list_statuses(&repo, sha),
                    _ => self.error(405, "Method Not Allowed"),
                }
            }
            ["repos", o, r, "commits", sha, "statuses"] if m == "GET" => {
                self.list_statuses(&format!("{o}/{r}"), sha)
            }
            ["repos", o, r, "commits", sha, "comments"] if self.dialect == Dialect::Github => {
                let repo = format!("{o}/{r}");
                match m {
                    "POST" => self.create_commit_comment(&repo, sha, &user, &req.body),
                    "GET" => Response::json(
                        200,
                        Value::Array(
                            self.commit_comments
                                .iter()
                                .filter(|c| c.repo == repo && c.sha == *sha)
                                .map(|c| self.commit_comment_json(c))
                                .collect(),
                        ),
                    ),
                    _ => self.error(405, "Method Not Allowed"),
                }
            }
            _ => self.error(404, "Not Found"),
        }
    }

    fn failure(&self, f: &Failure) -> Response {
        let message = match f.status {
            _ if f.message.is_some() => f.message.as_deref().unwrap_or_default(),
            403 | 429 => "API rate limit exceeded for user ID 1.",
            s if s >= 500 => "Server Error",
            _ => "Injected failure",
        };
        let mut r = self.error(f.status, message);
        if let Some(s) = f.retry_after {
            r.headers.push(("retry-after".into(), s.to_string()));
        }
        if let Some(reset) = f.ratelimit_reset {
            r.headers.push(("x-ratelimit-limit".into(), "5000".into()));
            r.headers.push(("x-ratelimit-remaining".into(), "0".into()));
            r.headers.push(("x-ratelimit-reset".into(), reset.to_string()));
        }
        r
    }

    fn authenticate(&self, header: Option<&str>) -> Result<User, Response> {
        let unauthorized = || match self.dialect {
            Dialect::Github => self.error(401, "Bad credentials"),
            Dialect::Gitea => self.error(401, "token is required"),
        };
        let header = header.ok_or_else(unauthorized)?;
        let (scheme, token) = header.split_once(' ').ok_or_else(unauthorized)?;
        // Strict on purpose: the scheme of the other dialect is refused.
        if scheme != self.dialect.auth_scheme() {
            return Err(unauthorized());
        }
        self.users
            .iter()
            .find(|u| u.token == token.trim())
            .cloned()
            .ok_or_else(unauthorized)
    }

    fn user_json(&self, u: &User) -> Value {
        match self.dialect {
            Dialect::Github => json!({
                "login": u.login, "id": u.id, "node_id": format!("U_{}", u.id),
                "type": "User", "site_admin": false,
                "url": format!("{}/users/{}", self.base_url, u.login),
            }),
            Dialect::Gitea => json!({
                "id": u.id, "login": u.login, "login_name": "", "full_name": "",
                "email": format!("{}@example.invalid", u.login), "username": u.login,
            }),
        }
    }

    fn user_json_by_id(&self, id: u64) -> Value {
        match self.users.iter().find(|u| u.id == id) {
            Some(u) => self.user_json(u),
            None => Value::Null,
        }
    }

    fn comment_json(&self, c: &CommentView) -> Value {
        let user = self.user_json_by_id(c.user_id);
        match self.dialect {
            Dialect::Github => json!({
                "id": c.id, "node_id": format!("IC_{}", c.id),
                "url": format!("{}/repos/{}/issues/comments/{}", self.base_url, c.repo, c.id),
                "html_url": format!("{}/{}/pull/{}#issuecomment-{}", self.base_url, c.repo, c.issue, c.id),
                "issue_url": format!("{}/repos/{}/issues/{}", self.base_url, c.repo, c.issue),
                "body": c.body, "user": user,
                "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
                "author_association": "OWNER",
            }),
            Dialect::Gitea => json!({
                "id": c.id,
                "html_url": format!("{}/{}/pulls/{}#issuecomment-{}", self.base_url, c.repo, c.issue, c.id),
                "pull_request_url": format!("{}/{}/pulls/{}", self.base_url, c.repo, c.issue),
                "issue_url": "",
                "user": user, "original_author": "", "original_author_id": 0,
                "body": c.body, "assets": [],
                "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
            }),
        }
    }

    fn list_comments(&self, repo: &str, issue: u64, path: &str, query: &[(String, String)]) -> Response {
        let all: Vec<&CommentView> = self
            .comments
            .values()
            .filter(|c| c.repo == repo && c.issue == issue)
            .collect();
        let q = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let (size_key, default, max) = match self.dialect {
            Dialect::Github => ("per_page", 30, 100),
            Dialect::Gitea => ("limit", 30, 50),
        };
        let size = q(size_key).unwrap_or(default).clamp(1, max);
        let page = q("page").unwrap_or(1).max(1);
        let items: Vec<Value> = if self.ignore_paging {
            all.iter().map(|c| self.comment_json(c)).collect()
        } else {
            all.iter()
                .skip((page - 1).saturating_mul(size))
                .take(size)
                .map(|c| self.comment_json(c))
                .collect()
        };
        let mut r = Response::json(200, Value::Array(items));
        let last = all.len().div_ceil(size).max(1);
        if !self.ignore_paging {
            let link = |p: usize, rel: &str| {
                format!(
                    "<{}{}{path}?{size_key}={size}&page={p}>; rel=\"{rel}\"",
                    self.base_url,
                    self.dialect.api_prefix()
                )
            };
            let mut links = vec![];
            if page < last {
                links.push(link(page + 1, "next"));
                links.push(link(last, "last"));
            }
            if page > 1 {
                links.push(link(1, "first"));
                links.push(link(page - 1, "prev"));
            }
            if !links.is_empty() {
                r.headers.push(("link".into(), links.join(", ")));
            }
        }
        if self.dialect == Dialect::Gitea {
            r.headers.push(("x-total-count".into(), all.len().to_string()));
        }
        r
    }

    fn body_field(&self, body: &[u8]) -> Result<String, Response> {
        let v: Value = serde_json::from_slice(body).map_err(|_| self.error(400, "Problems parsing JSON"))?;
        match v.get("body").and_then(Value::as_str) {
            Some(b) => Ok(b.to_string()),
            None => Err(self.validation("IssueComment", "body", "body is missing")),
        }
    }

    fn check_length(&self, body: &str) -> Result<(), Response> {
        match self.body_limit {
            Some(limit) if body.chars().count() > limit => Err(self.validation(
                "IssueComment",
                "data",
                &format!("Body is too long (maximum is {limit} characters)"),
            )),
            _ => Ok(()),
        }
    }

    fn create_comment(&mut self, repo: &str, issue: u64, user: &User, body: &[u8]) -> Response {
        let text = match self.body_field(body) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if let Err(r) = self.check_length(&text) {
            return r;
        }
        let id = self.insert_comment(repo, issue, user.id, &text);
        match self.comments.get(&id) {
            Some(c) => Response::json(201, self.comment_json(c)),
            None => self.error(500, "comment vanished"),
        }
    }

    fn edit_comment(&mut self, repo: &str, id: u64, body: &[u8]) -> Response {
        let text = match self.body_field(body) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if self.comments.get(&id).is_none_or(|c| c.repo != repo) {
            return self.error(404, "Not Found");
        }
        if let Err(r) = self.check_length(&text) {
            return r;
        }
        let Some(c) = self.comments.get_mut(&id) else {
            return self.error(404, "Not Found");
        };
        c.body = text;
        c.edits += 1;
        let c = c.clone();
        Response::json(200, self.comment_json(&c))
    }

    fn status_json(&self, s: &StatusView) -> Value {
        let creator = self.user_json_by_id(s.creator_id);
        let url = format!(
            "{}{}/repos/{}/statuses/{}",
            self.base_url,
            self.dialect.api_prefix(),
            s.repo,
            s.sha
        );
        let state_key = match self.dialect {
            Dialect::Github => "state",
            Dialect::Gitea => "status",
        };
        let mut v = json!({
            "id": s.id, "url": url, "target_url": s.target_url, "description": s.description,
            "context": s.context, "creator": creator,
            "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
        });
        if let Value::Object(m) = &mut v {
            m.insert(state_key.into(), Value::String(s.state.clone()));
            if self.dialect == Dialect::Github {
                m.insert("node_id".into(), Value::String(format!("SC_{}", s.id)));
                m.insert("avatar_url".into(), Value::Null);
            }
        }
        v
    }

    fn create_status(&mut self, repo: &str, sha: &str, user: &User, body: &[u8]) -> Response {
        #[derive(Deserialize)]
        struct Create {
            state: Option<String>,
            #[serde(default)]
            target_url: Option<String>,
            #[serde(default)]
            description: Option<String>,
            #[serde(default)]
            context: Option<String>,
        }
        let Ok(c) = serde_json::from_slice::<Create>(body) else {
            return self.error(400, "Problems parsing JSON");
        };
        if sha.len() < 7 || !sha.chars().all(|ch| ch.is_ascii_hexdigit()) {
            return self.validation("Status", "sha", "No commit found for SHA");
        }
        let allowed: &[&str] = match self.dialect {
            Dialect::Github => &["pending", "success", "failure", "error"],
            Dialect::Gitea => &["pending", "success", "failure", "error", "warning", "skipped"],
        };
        let Some(state) = c.state.filter(|s| allowed.contains(&s.as_str())) else {
            return self.validation("Status", "state", "state is not included in the list");
        };
        let description = c.description.unwrap_or_default();
        if self.dialect == Dialect::Github && description.chars().count() > 140 {
            return self.validation(
                "Status",
                "description",
                "description is too long (maximum is 140 characters)",
            );
        }
        let context = c.context.unwrap_or_else(|| "default".into());
        let same = self
            .statuses
            .iter()
            .filter(|s| s.repo == repo && s.sha == sha && s.context == context)
            .count();
        if same >= STATUS_LIMIT {
            return self.validation(
                "Status",
                "context",
                "This SHA and context has reached the maximum number of statuses.",
            );
        }
        let id = self.take_id();
        let s = StatusView {
            id,
            repo: repo.to_string(),
            sha: sha.to_string(),
            context,
            state,
            description,
            target_url: c.target_url,
            creator_id: user.id,
        };
        let r = Response::json(201, self.status_json(&s));
        self.statuses.push(s);
        r
    }

    fn list_statuses(&self, repo: &str, sha: &str) -> Response {
        Response::json(
            200,
            Value::Array(
                self.statuses
                    .iter()
                    .rev()
                    .filter(|s| s.repo == repo && s.sha == sha)
                    .map(|s| self.status_json(s))
                    .collect(),
            ),
        )
    }

    fn commit_comment_json(&self, c: &CommitCommentView) -> Value {
        json!({
            "id": c.id, "node_id": format!("CC_{}", c.id), "body": c.body,
            "commit_id": c.sha, "path": null, "position": null, "line": null,
            "user": self.user_json_by_id(c.user_id),
            "html_url": format!("{}/{}/commit/{}#commitcomment-{}", self.base_url, c.repo, c.sha, c.id),
            "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
        })
    }

    fn create_commit_comment(&mut self, repo: &str, sha: &str, user: &User, body: &[u8]) -> Response {
        let text = match self.body_field(body) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if let Err(r) = self.check_length(&text) {
            return r;
        }
        let id = self.take_id();
        let c = CommitCommentView {
            id,
            repo: repo.to_string(),
            sha: sha.to_string(),
            user_id: user.id,
            body: text,
        };
        let r = Response::json(201, self.commit_comment_json(&c));
        self.commit_comments.push(c);
        r
    }

    fn control(&mut self, method: &str, what: &str, body: &[u8]) -> Response {
        let bad = |m: String| Response::json(400, json!({ "message": m }));
        let v: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return bad(format!("bad JSON: {e}")),
            }
        };
        let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        match (method, what) {
            ("GET", "state") => match serde_json::to_value(self.snapshot()) {
                Ok(s) => Response::json(200, s),
                Err(e) => bad(e.to_string()),
            },
            ("POST", "fail") => {
                let count = v.get("count").and_then(Value::as_u64).unwrap_or(1) as usize;
                match serde_json::from_value::<Failure>(v.clone()) {
                    Ok(f) => {
                        self.fail_next(f, count);
                        Response::json(200, json!({ "queued": self.failures.len() }))
                    }
                    Err(e) => bad(format!("fail: {e}")),
                }
            }
            ("POST", "delete-comment") => match v.get("id").and_then(Value::as_u64) {
                Some(id) if self.delete_comment(id) => Response::json(200, json!({ "deleted": id })),
                Some(id) => Response::json(404, json!({ "message": format!("no comment {id}") })),
                None => bad("delete-comment: {\"id\": N}".into()),
            },
            ("POST", "users") => match self.add_user(&str_of("login"), &str_of("token")) {
                Ok(id) => Response::json(201, json!({ "id": id })),
                Err(e) => bad(e.to_string()),
            },
            ("POST", "comments") => {
                let issue = v.get("issue").and_then(Value::as_u64).unwrap_or(0);
                match self.inject_comment(&str_of("repo"), issue, &str_of("login"), &str_of("body")) {
                    Ok(id) => Response::json(201, json!({ "id": id })),
                    Err(e) => bad(e.to_string()),
                }
            }
            ("POST", "body-limit") => {
                self.set_body_limit(v.get("limit").and_then(Value::as_u64).map(|l| l as usize));
                Response::json(200, json!({ "limit": self.body_limit }))
            }
            ("POST", "ignore-paging") => {
                self.set_ignore_paging(v.get("ignore").and_then(Value::as_bool).unwrap_or(true));
                Response::json(200, json!({ "ignore": self.ignore_paging }))
            }
            _ => Response::json(
                404,
                json!({ "message": format!("no control {method} /_fake/{what}") }),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:9";

    fn forge(d: Dialect) -> Forge {
        let mut f = Forge::new(d, BASE);
        f.add_user("bot", "bot-t").unwrap();
        f.add_user("alice", "alice-t").unwrap();
        f
    }

    fn req(d: Dialect, method: &str, path: &str, body: Value) -> Request {
        let (path, q) = path.split_once('?').unwrap_or((path, ""));
        Request {
            method: method.into(),
            path: format!("{}{path}", d.api_prefix()),
            query: q
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect(),
            authorization: Some(format!("{} bot-t", d.auth_scheme())),
            body: if body.is_null() {
                vec![]
            } else {
                body.to_string().into_bytes()
            },
        }
    }

    fn json_of(r: &Response) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    const BOTH: [Dialect; 2] = [Dialect::Github, Dialect::Gitea];

    #[test]
    fn auth_is_checked_per_dialect() {
        for d in BOTH {
            let mut f = forge(d);
            let ok = f.handle(&req(d, "GET", "/user", Value::Null));
            assert_eq!(ok.status, 200);
            assert_eq!(json_of(&ok)["login"], "bot");
            assert_eq!(json_of(&ok)["id"], 1);
            let other = match d {
                Dialect::Github => "token",
                Dialect::Gitea => "Bearer",
            };
            for auth in [Some(format!("{other} bot-t")), Some("Bearer nope".into()), None] {
                let mut r = req(d, "GET", "/user", Value::Null);
                r.authorization = auth.clone();
                let resp = f.handle(&r);
                assert_eq!(resp.status, 401, "{d} {auth:?}");
                assert!(json_of(&resp)["message"].is_string());
            }
            // Gitea's API lives under /api/v1 only.
            if d == Dialect::Gitea {
                let mut r = req(d, "GET", "/user", Value::Null);
                r.path = "/user".into();
                assert_eq!(f.handle(&r).status, 404);
            }
            let log = f.snapshot().requests;
            assert_eq!(log.len(), if d == Dialect::Gitea { 5 } else { 4 });
            assert_eq!(log[0].auth_scheme.as_deref(), Some(d.auth_scheme()));
        }
    }

    #[test]
    fn comments_paginate_with_link_and_total_count() {
        for d in BOTH {
            let mut f = forge(d);
            for i in 0..7 {
                f.inject_comment("o/r", 2, "alice", &format!("c{i}")).unwrap();
            }
            let size_key = if d == Dialect::Github { "per_page" } else { "limit" };
            let r = f.handle(&req(
                d,
                "GET",
                &format!("/repos/o/r/issues/2/comments?{size_key}=3&page=2"),
                Value::Null,
            ));
            assert_eq!(r.status, 200);
            let items = json_of(&r);
            let bodies: Vec<&str> = items
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["body"].as_str().unwrap())
                .collect();
            assert_eq!(bodies, ["c3", "c4", "c5"]);
            let link = header(&r, "link").unwrap();
            let prefix = d.api_prefix();
            assert!(
                link.contains(&format!(
                    "<{BASE}{prefix}/repos/o/r/issues/2/comments?{size_key}=3&page=3>; rel=\"next\""
                )),
                "{link}"
            );
            assert!(link.contains("rel=\"prev\""));
            assert_eq!(
                header(&r, "x-total-count"),
                if d == Dialect::Gitea { Some("7") } else { None }
            );
            let last = f.handle(&req(
                d,
                "GET",
                &format!("/repos/o/r/issues/2/comments?{size_key}=3&page=3"),
                Value::Null,
            ));
            assert_eq!(json_of(&last).as_array().unwrap().len(), 1);
            assert!(!header(&last, "link").unwrap_or("").contains("next"));
            // Page sizes are capped (GitHub 100, Gitea 50).
            for i in 0..120 {
                f.inject_comment("o/r", 3, "alice", &format!("x{i}")).unwrap();
            }
            let big = f.handle(&req(
                d,
                "GET",
                &format!("/repos/o/r/issues/3/comments?{size_key}=500"),
                Value::Null,
            ));
            let want = if d == Dialect::Github { 100 } else { 50 };
            assert_eq!(json_of(&big).as_array().unwrap().len(), want);
        }
    }

    #[test]
    fn create_edit_delete_and_the_edit_verbs() {
        for d in BOTH {
            let mut f = forge(d);
            let c = f.handle(&req(
                d,
                "POST",
                "/repos/o/r/issues/4/comments",
                json!({"body": "hello"}),
            ));
            assert_eq!(c.status, 201);
            let v = json_of(&c);
            assert_eq!(v["user"]["id"], 1);
            let id = v["id"].as_u64().unwrap();
            let path = format!("/repos/o/r/issues/comments/{id}");
            let e = f.handle(&req(d, "PATCH", &path, json!({"body": "edited"})));
            assert_eq!(e.status, 200);
            assert_eq!(json_of(&e)["body"], "edited");
            // GitHub also takes POST on the comment URL; Gitea does not.
            let p = f.handle(&req(d, "POST", &path, json!({"body": "posted"})));
            assert_eq!(p.status, if d == Dialect::Github { 200 } else { 405 });
            // Another repo's path does not reach it.
            let wrong = f.handle(&req(
                d,
                "PATCH",
                &format!("/repos/o/x/issues/comments/{id}"),
                json!({"body": "z"}),
            ));
            assert_eq!(wrong.status, 404);
            assert!(f.delete_comment(id));
            assert!(!f.delete_comment(id));
            assert_eq!(
                f.handle(&req(d, "PATCH", &path, json!({"body": "gone"}))).status,
                404
            );
            let s = f.snapshot();
            assert!(s.comments.is_empty());
            assert_eq!(s.deleted_comments, vec![id]);
            assert_eq!(s.writes, if d == Dialect::Github { 3 } else { 2 });
            // Bad JSON and a missing body.
            let mut bad = req(d, "POST", "/repos/o/r/issues/4/comments", Value::Null);
            bad.body = b"{".to_vec();
            assert_eq!(f.handle(&bad).status, 400);
            assert_eq!(
                f.handle(&req(d, "POST", "/repos/o/r/issues/4/comments", json!({})))
                    .status,
                422
            );
        }
    }

    #[test]
    fn github_refuses_a_body_over_65536_characters_with_its_error_shape() {
        let d = Dialect::Github;
        let mut f = forge(d);
        let ok = "é".repeat(GITHUB_BODY_LIMIT);
        assert_eq!(
            f.handle(&req(
                d,
                "POST",
                "/repos/o/r/issues/1/comments",
                json!({"body": ok})
            ))
            .status,
            201
        );
        let over = "x".repeat(GITHUB_BODY_LIMIT + 1);
        let r = f.handle(&req(
            d,
            "POST",
            "/repos/o/r/issues/1/comments",
            json!({"body": over}),
        ));
        assert_eq!(r.status, 422);
        let v = json_of(&r);
        assert_eq!(v["message"], "Validation Failed");
        assert_eq!(v["errors"][0]["resource"], "IssueComment");
        assert_eq!(v["errors"][0]["code"], "unprocessable");
        assert_eq!(v["errors"][0]["field"], "data");
        assert_eq!(
            v["errors"][0]["message"],
            "Body is too long (maximum is 65536 characters)"
        );
        // Gitea has no limit unless set.
        let d = Dialect::Gitea;
        let mut g = forge(d);
        let over = "x".repeat(GITHUB_BODY_LIMIT + 1);
        assert_eq!(
            g.handle(&req(
                d,
                "POST",
                "/repos/o/r/issues/1/comments",
                json!({"body": over})
            ))
            .status,
            201
        );
        g.set_body_limit(Some(3));
        let r = g.handle(&req(
            d,
            "POST",
            "/repos/o/r/issues/1/comments",
            json!({"body": "four"}),
        ));
        assert_eq!(r.status, 422);
        assert!(json_of(&r)["url"].is_string());
    }

    #[test]
    fn statuses_name_the_state_per_dialect_and_list_newest_first() {
        for d in BOTH {
            let mut f = forge(d);
            let sha = "0123456789abcdef0123456789abcdef01234567";
            let post = |f: &mut Forge, state: &str| {
                f.handle(&req(
                    d,
                    "POST",
                    &format!("/repos/o/r/statuses/{sha}"),
                    json!({"state": state, "context": "warren/plan", "description": "d", "target_url": "https://x"}),
                ))
            };
            let r = post(&mut f, "pending");
            assert_eq!(r.status, 201);
            let v = json_of(&r);
            match d {
                Dialect::Github => {
                    assert_eq!(v["state"], "pending");
                    assert!(v.get("status").is_none());
                }
                Dialect::Gitea => {
                    assert_eq!(v["status"], "pending");
                    assert!(v.get("state").is_none());
                }
            }
            assert_eq!(post(&mut f, "success").status, 201);
            assert_eq!(post(&mut f, "bogus").status, 422);
            let list = f.handle(&req(
                d,
                "GET",
                &format!("/repos/o/r/commits/{sha}/statuses"),
                Value::Null,
            ));
            let key = if d == Dialect::Github { "state" } else { "status" };
            let listed = json_of(&list);
            let states: Vec<&str> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s[key].as_str().unwrap())
                .collect();
            assert_eq!(states, ["success", "pending"]);
            let long = f.handle(&req(
                d,
                "POST",
                &format!("/repos/o/r/statuses/{sha}"),
                json!({"state": "success", "description": "x".repeat(141)}),
            ));
            assert_eq!(long.status, if d == Dialect::Github { 422 } else { 201 });
            assert_eq!(
                f.snapshot().statuses_on("o/r", sha).len(),
                if d == Dialect::Github { 2 } else { 3 }
            );
        }
    }

    #[test]
    fn github_caps_statuses_per_sha_and_context() {
        let d = Dialect::Github;
        let mut f = forge(d);
        let path = "/repos/o/r/statuses/abcdef1";
        for _ in 0..STATUS_LIMIT {
            assert_eq!(
                f.handle(&req(d, "POST", path, json!({"state": "pending", "context": "c"})))
                    .status,
                201
            );
        }
        assert_eq!(
            f.handle(&req(d, "POST", path, json!({"state": "pending", "context": "c"})))
                .status,
            422
        );
        assert_eq!(
            f.handle(&req(
                d,
                "POST",
                path,
                json!({"state": "pending", "context": "other"})
            ))
            .status,
            201
        );
    }

    #[test]
    fn commit_comments_exist_on_github_only() {
        let sha = "abcdef1234567";
        let d = Dialect::Github;
        let mut f = forge(d);
        let r = f.handle(&req(
            d,
            "POST",
            &format!("/repos/o/r/commits/{sha}/comments"),
            json!({"body": "hi"}),
        ));
        assert_eq!(r.status, 201);
        assert_eq!(json_of(&r)["commit_id"], sha);
        assert_eq!(f.snapshot().commit_comments.len(), 1);
        let d = Dialect::Gitea;
        let mut g = forge(d);
        let r = g.handle(&req(
            d,
            "POST",
            &format!("/repos/o/r/commits/{sha}/comments"),
            json!({"body": "hi"}),
        ));
        assert_eq!(r.status, 404);
    }

    #[test]
    fn failures_are_served_in_order_with_their_headers() {
        let d = Dialect::Github;
        let mut f = forge(d);
        f.fail_next(Failure::new(429).retry_after(5), 1);
        f.fail_next(Failure::new(403).ratelimit_reset(1234), 1);
        f.fail_next(Failure::new(502).method("POST"), 1);
        let a = f.handle(&req(d, "GET", "/user", Value::Null));
        assert_eq!((a.status, header(&a, "retry-after")), (429, Some("5")));
        let b = f.handle(&req(d, "GET", "/user", Value::Null));
        assert_eq!(b.status, 403);
        assert_eq!(header(&b, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header(&b, "x-ratelimit-reset"), Some("1234"));
        // The POST-only failure waits for a POST.
        assert_eq!(f.handle(&req(d, "GET", "/user", Value::Null)).status, 200);
        let c = f.handle(&req(
            d,
            "POST",
            "/repos/o/r/issues/1/comments",
            json!({"body": "x"}),
        ));
        assert_eq!(c.status, 502);
        assert_eq!(
            f.handle(&req(
                d,
                "POST",
                "/repos/o/r/issues/1/comments",
                json!({"body": "x"})
            ))
            .status,
            201
        );
        assert_eq!(f.snapshot().writes, 1);
    }

    #[test]
    fn control_calls_drive_the_knobs() {
        let d = Dialect::Gitea;
        let mut f = forge(d);
        let ctl = |f: &mut Forge, method: &str, what: &str, body: Value| {
            f.handle(&Request {
                method: method.into(),
                path: format!("/_fake/{what}"),
                body: if body.is_null() {
                    vec![]
                } else {
                    body.to_string().into_bytes()
                },
                ..Request::default()
            })
        };
        assert_eq!(
            ctl(&mut f, "POST", "users", json!({"login": "carol", "token": "c-t"})).status,
            201
        );
        let r = ctl(
            &mut f,
            "POST",
            "comments",
            json!({"repo": "o/r", "issue": 1, "login": "carol", "body": "hi"}),
        );
        assert_eq!(r.status, 201);
        let id = json_of(&r)["id"].as_u64().unwrap();
        assert_eq!(
            ctl(
                &mut f,
                "POST",
                "comments",
                json!({"repo": "o/r", "issue": 1, "login": "nobody", "body": "x"})
            )
            .status,
            400
        );
        assert_eq!(
            ctl(
                &mut f,
                "POST",
                "fail",
                json!({"status": 429, "count": 2, "retry_after": 1})
            )
            .status,
            200
        );
        assert_eq!(f.handle(&req(d, "GET", "/user", Value::Null)).status, 429);
        assert_eq!(f.handle(&req(d, "GET", "/user", Value::Null)).status, 429);
        assert_eq!(f.handle(&req(d, "GET", "/user", Value::Null)).status, 200);
        assert_eq!(
            ctl(&mut f, "POST", "delete-comment", json!({"id": id})).status,
            200
        );
        assert_eq!(
            ctl(&mut f, "POST", "delete-comment", json!({"id": id})).status,
            404
        );
        let st = ctl(&mut f, "GET", "state", Value::Null);
        let snap: Snapshot = serde_json::from_str(&st.body).unwrap();
        assert_eq!(snap.users.len(), 3);
        assert_eq!(snap.deleted_comments, vec![id]);
        assert_eq!(snap.requests.len(), 3);
        assert!(!st.body.contains("c-t"), "tokens never in the state");
        assert_eq!(ctl(&mut f, "POST", "nope", Value::Null).status, 404);
    }
}
