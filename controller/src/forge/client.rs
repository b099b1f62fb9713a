//! The forges' REST APIs, blocking (the serve loop calls it from
//! `spawn_blocking`): who the bot is, the PR's comments, the one sticky
//! comment per PR (found by the bot's user id **and** a marker, edited in
//! place, re-created if deleted), commit statuses (de-duplicated), and GitHub
//! commit comments.
//!
//! Two dialects over one path scheme (`{api_url}/repos/{owner}/{name}/…`,
//! `{api_url}/user`):
//! - GitHub (and GHES, `https://HOST/api/v3`): `Authorization: Bearer`,
//!   `Accept: application/vnd.github+json`, `X-GitHub-Api-Version`, pages by
//!   `per_page=100` and `Link: rel="next"`;
//! - Gitea / Forgejo (`https://HOST/api/v1`): `Authorization: token`, pages by
//!   `page`/`limit` until a short page or `X-Total-Count`, and the state of a
//!   status in the key `status`; no commit comments.
//!
//! Every request: 403/429 with `retry-after` or `x-ratelimit-remaining: 0` +
//! `x-ratelimit-reset` wait and retry (bounded by [`Limits`]); 5xx and
//! transport errors back off and retry when repeating is safe; writes pass a
//! write budget (token buckets). The token is never logged, printed or put in
//! an error.

mod limits;
#[cfg(test)]
mod tests;

pub use limits::{Clock, Limits, SystemClock};

use super::ForgeKind;
use limits::WriteBudget;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// GitHub's maximum comment length, in characters.
pub const GITHUB_BODY_LIMIT: usize = 65_536;
/// The longest status description the forges take, in characters.
pub const STATUS_DESCRIPTION_LIMIT: usize = 140;
const GITHUB_API_VERSION: &str = "2022-11-28";
const GITHUB_PAGE: usize = 100;
/// Gitea's default `[api] MAX_RESPONSE_ITEMS`: a larger `limit` is cut to it.
const GITEA_PAGE: usize = 50;
/// A PR with more comments than this many pages is not scanned further.
const MAX_PAGES: usize = 100;

/// The user the token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotUser {
    /// Numeric id (what "ours" is matched on, never the login).
    pub id: u64,
    /// Login, for messages.
    pub login: String,
}

/// An issue or PR comment, as much as Warren reads of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// Comment id.
    pub id: u64,
    /// The author's id (0 for a deleted "ghost" user).
    pub user_id: u64,
    /// The body, verbatim.
    pub body: String,
}

/// What [`ForgeClient::upsert_comment`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommentOutcome {
    /// No comment of ours existed: this one was created.
    Created(u64),
    /// Our comment was edited in place.
    Edited(u64),
    /// Our comment already had exactly this body: nothing was written.
    Unchanged(u64),
}

/// A commit status state (the four both forges take).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusState {
    /// Running.
    Pending,
    /// Passed.
    Success,
    /// Failed (the change is wrong).
    Failure,
    /// Could not decide (Warren's own failure).
    Error,
}

impl StatusState {
    /// The API's word.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }

    fn parse(s: &str) -> Option<StatusState> {
        match s {
            "pending" => Some(StatusState::Pending),
            "success" => Some(StatusState::Success),
            "failure" => Some(StatusState::Failure),
            "error" => Some(StatusState::Error),
            _ => None,
        }
    }
}

/// What [`ForgeClient::set_status`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Posted; the forge answered with this id and state.
    Posted {
        /// The status id.
        id: u64,
        /// The state the forge recorded (GitHub `state`, Gitea `status`).
        state: StatusState,
    },
    /// The same state and description were the last posted for this sha and
    /// context: nothing was written.
    Unchanged,
}

/// What can go wrong talking to a forge.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The client was configured wrongly (URL, repo, token shape).
    #[error("forge client: {0}")]
    Config(String),
    /// The request did not get an answer (after retries where they are safe).
    #[error("forge {method} {path}: {message}")]
    Transport {
        /// The method.
        method: &'static str,
        /// The path below the API URL.
        path: String,
        /// What failed.
        message: String,
    },
    /// The forge said no (401, 403 without a rate limit, 404, 5xx after the
    /// retries, …).
    #[error("forge {method} {path}: HTTP {status}: {message}")]
    Api {
        /// The method.
        method: &'static str,
        /// The path below the API URL.
        path: String,
        /// The status code.
        status: u16,
        /// The forge's `message` (and `errors`), or the start of the body.
        message: String,
    },
    /// 422 because the body is too long (GitHub: over 65 536 characters).
    #[error("forge: comment too large: {message}")]
    TooLarge {
        /// The forge's words, or Warren's when it refused before sending.
        message: String,
    },
    /// Another 422.
    #[error("forge {path}: validation failed: {message}")]
    Validation {
        /// The path below the API URL.
        path: String,
        /// The forge's `message` and `errors`.
        message: String,
    },
    /// Rate limited, and the wait asked for is too long or the retries ran
    /// out.
    #[error("forge {path}: rate limited ({message}); wait {wait:?}")]
    RateLimited {
        /// The path below the API URL.
        path: String,
        /// How long the forge asked to wait (last).
        wait: Duration,
        /// Why the client gave up.
        message: String,
    },
    /// Warren's own write budget is spent for longer than `max_wait`.
    #[error("forge: write budget spent; next write in {wait:?}")]
    Budget {
        /// When a write is next allowed.
        wait: Duration,
    },
    /// The forge has no such API (Gitea has no commit comments).
    #[error("forge: {0}")]
    Unsupported(&'static str),
    /// The forge answered 2xx with a body Warren cannot read.
    #[error("forge {path}: unreadable reply: {message}")]
    BadReply {
        /// The path below the API URL.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

#[cfg(test)]
impl ForgeError {
    /// The HTTP status, when the forge answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Api { status, .. } => Some(*status),
            ForgeError::TooLarge { .. } | ForgeError::Validation { .. } => Some(422),
            _ => None,
        }
    }
}

/// The token; `Debug` never shows it.
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// A 2xx answer.
#[derive(Debug)]
struct Reply {
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One forge repository, as one bot user.
pub struct ForgeClient {
    kind: ForgeKind,
    api_url: String,
    repo: String,
    token: Token,
    agent: ureq::Agent,
    limits: Limits,
    clock: Arc<dyn Clock>,
    budget: Mutex<WriteBudget>,
    me: Mutex<Option<BotUser>>,
    /// pr → the comments of ours seen or written there (id, body).
    sticky: Mutex<HashMap<u64, Vec<(u64, String)>>>,
    /// (sha, context) → the last (state, description) posted.
    statuses: Mutex<HashMap<(String, String), (StatusState, String)>>,
}

impl fmt::Debug for ForgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgeClient")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("repo", &self.repo)
            .field("token", &self.token)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these caches inconsistent in a way that
    // matters (worst case one extra request), so take them back.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn valid_repo(repo: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(repo.split_once('/'), Some((o, n)) if ok(o) && ok(n))
}

fn valid_sha(sha: &str) -> bool {
    (7..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit())
}

/// The first line of a body (what markers live on).
pub fn first_line(body: &str) -> &str {
    let line = body.split('\n').next().unwrap_or_default();
    line.strip_suffix('\r').unwrap_or(line)
}

/// `text` cut to at most `max` characters, with "…" when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

impl ForgeClient {
    /// A client for `repo` (`owner/name`) on the forge at `api_url`
    /// (`https://api.github.com`, `https://HOST/api/v3`,
    /// `https://HOST/api/v1` for Gitea/Forgejo; `http://` works too).
    pub fn new(kind: ForgeKind, api_url: &str, repo: &str, token: &str) -> Result<ForgeClient, ForgeError> {
        let api_url = api_url.trim().trim_end_matches('/').to_string();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(ForgeError::Config(format!(
                "the API URL {api_url:?} must start with https:// or http://"
            )));
        }
        if !valid_repo(repo) {
            return Err(ForgeError::Config(format!(
                "the repository {repo:?} is not OWNER/NAME"
            )));
        }
        let token = token.trim();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ForgeError::Config(
                "the token is empty or contains spaces or control characters".into(),
            ));
        }
        let limits = Limits::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let agent = Self::agent(&limits);
        Ok(ForgeClient {
            kind,
            api_url,
            repo: repo.to_string(),
            token: Token(token.to_string()),
            agent,
            budget: Mutex::new(WriteBudget::new(&limits, clock.now())),
            limits,
            clock,
            me: Mutex::new(None),
            sticky: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::new()),
        })
    }

    fn agent(limits: &Limits) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect could carry the token to another host: refuse them.
            .max_redirects(0)
            .timeout_global(Some(limits.timeout))
            .build()
            .into()
    }

    #[cfg(test)]
    /// Replace the retry policy and the write budget.
    pub fn with_limits(mut self, limits: Limits) -> ForgeClient {
        self.agent = Self::agent(&limits);
        self.budget = Mutex::new(WriteBudget::new(&limits, self.clock.now()));
        self.limits = limits;
        self
    }

    #[cfg(test)]
    /// Replace the clock (tests: waits take no time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ForgeClient {
        self.budget = Mutex::new(WriteBudget::new(&self.limits, clock.now()));
        self.clock = clock;
        self
    }

    /// The bot user (asked once, then remembered).
    pub fn me(&self) -> Result<BotUser, ForgeError> {
        if let Some(me) = lock(&self.me).clone() {
            return Ok(me);
        }
        let path = "/user".to_string();
        let reply = self.request(Method::Get, &path, None, true)?;
        let id = reply.body.get("id").and_then(Value::as_u64);
        let login = ["login", "username"]
            .iter()
            .find_map(|k| reply.body.get(*k).and_then(Value::as_str))
            .filter(|l| !l.is_empty());
        let (Some(id), Some(login)) = (id, login) else {
            return Err(ForgeError::BadReply {
                path,
                message: "no numeric `id` and `login` in the user".into(),
            });
        };
        let me = BotUser {
            id,
            login: login.to_string(),
        };
        *lock(&self.me) = Some(me.clone());
        Ok(me)
    }

    fn parse_comments(path: &str, body: &Value) -> Result<Vec<Comment>, ForgeError> {
        let Some(items) = body.as_array() else {
            return Err(ForgeError::BadReply {
                path: path.to_string(),
                message: "a comment list is not a JSON array".into(),
            });
        };
        items.iter().map(|c| Self::parse_comment(path, c)).collect()
    }

    fn parse_comment(path: &str, c: &Value) -> Result<Comment, ForgeError> {
        let Some(id) = c.get("id").and_then(Value::as_u64) else {
            return Err(ForgeError::BadReply {
                path: path.to_string(),
                message: "a comment without a numeric `id`".into(),
            });
        };
        Ok(Comment {
            id,
            user_id: c
                .get("user")
                .and_then(|u| u.get("id"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            body: c
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Every comment on PR `pr`, oldest first, over all pages.
    pub fn comments(&self, pr: u64) -> Result<Vec<Comment>, ForgeError> {
        let base = format!("/repos/{}/issues/{pr}/comments", self.repo);
        match self.kind {
            ForgeKind::Github => self.comments_github(&base),
            ForgeKind::Gitea => self.comments_gitea(&base),
        }
    }

    fn comments_github(&self, base: &str) -> Result<Vec<Comment>, ForgeError> {
        let mut out = vec![];
        let mut path = format!("{base}?per_page={GITHUB_PAGE}");
        for _ in 0..MAX_PAGES {
            let reply = self.request(Method::Get, &path, None, true)?;
            out.extend(Self::parse_comments(&path, &reply.body)?);
            let Some(next) = reply.header("link").and_then(next_link) else {
                return Ok(out);
            };
            // Only ever follow links on the same API (the token goes along).
            let Some(rest) = next.strip_prefix(&self.api_url).filter(|r| r.starts_with('/')) else {
                return Err(ForgeError::BadReply {
                    path,
                    message: format!("the next page {next:?} is not under the API URL"),
                });
            };
            path = rest.to_string();
        }
        Ok(out)
    }

    fn comments_gitea(&self, base: &str) -> Result<Vec<Comment>, ForgeError> {
        let mut out: Vec<Comment> = vec![];
        let mut seen = std::collections::HashSet::new();
        for page in 1..=MAX_PAGES {
            let path = format!("{base}?page={page}&limit={GITEA_PAGE}");
            let reply = self.request(Method::Get, &path, None, true)?;
            let total = reply
                .header("x-total-count")
                .and_then(|t| t.trim().parse::<usize>().ok());
            let items = Self::parse_comments(&path, &reply.body)?;
            let n = items.len();
            let mut new = 0;
            for c in items {
                // Some servers answer every comment whatever the page: keep
                // each once and stop when a page brings nothing new.
                if seen.insert(c.id) {
                    out.push(c);
                    new += 1;
                }
            }
            let done = match total {
                Some(total) => out.len() >= total,
                None => n < GITEA_PAGE,
            };
            if done || n == 0 || new == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// The one comment of ours on PR `pr`: the comment whose author is the bot
    /// and whose first line satisfies `is_ours` (the renderer's marker check)
    /// gets `body`; if there is none, it is created; if it already says
    /// exactly `body`, nothing is written. Never a second comment: a comment
    /// deleted under us (404 on edit) is re-created once.
    pub fn upsert_comment(
        &self,
        pr: u64,
        is_ours: &dyn Fn(&str) -> bool,
        body: &str,
    ) -> Result<CommentOutcome, ForgeError> {
        self.check_size(body)?;
        let me = self.me()?;
        let mut use_cache = true;
        let mut last_err = None;
        for attempt in 0..=self.limits.max_retries.min(3) {
            if attempt > 0 && last_err.is_some() {
                self.clock.sleep(self.backoff(attempt - 1));
            }
            let cached = if use_cache {
                lock(&self.sticky)
                    .get(&pr)
                    .and_then(|v| v.iter().find(|(_, b)| is_ours(first_line(b))).cloned())
            } else {
                None
            };
            let found = match cached {
                Some((id, old)) => Some((id, old)),
                None => self
                    .comments(pr)?
                    .into_iter()
                    .find(|c| c.user_id == me.id && is_ours(first_line(&c.body)))
                    .map(|c| (c.id, c.body)),
            };
            match found {
                Some((id, old)) if old == body => {
                    self.remember(pr, id, body);
                    return Ok(CommentOutcome::Unchanged(id));
                }
                Some((id, _)) => {
                    let path = format!("/repos/{}/issues/comments/{id}", self.repo);
                    match self.write(Method::Patch, &path, &json!({ "body": body }), true) {
                        Ok(_) => {
                            self.remember(pr, id, body);
                            return Ok(CommentOutcome::Edited(id));
                        }
                        Err(ForgeError::Api { status: 404, .. }) => {
                            // Deleted by someone: forget it, look again, and
                            // create a new one if there is none.
                            self.forget(pr, id);
                            use_cache = false;
                            last_err = None;
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    let path = format!("/repos/{}/issues/{pr}/comments", self.repo);
                    // Not repeated blindly on a 5xx (it may have been made):
                    // the next round lists the comments again first.
                    match self.write(Method::Post, &path, &json!({ "body": body }), false) {
                        Ok(reply) => {
                            let c = Self::parse_comment(&path, &reply.body)?;
                            self.remember(pr, c.id, body);
                            return Ok(CommentOutcome::Created(c.id));
                        }
                        Err(
                            e @ (ForgeError::Api {
                                status: 500..=599, ..
                            }
                            | ForgeError::Transport { .. }),
                        ) => {
                            use_cache = false;
                            last_err = Some(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ForgeError::Api {
            method: "PATCH",
            path: format!("/repos/{}/issues/{pr}/comments", self.repo),
            status: 404,
            message: "our comment keeps disappearing".into(),
        }))
    }

    fn remember(&self, pr: u64, id: u64, body: &str) {
        let mut m = lock(&self.sticky);
        let v = m.entry(pr).or_default();
        match v.iter_mut().find(|(i, _)| *i == id) {
            Some(e) => e.1 = body.to_string(),
            None => v.push((id, body.to_string())),
        }
    }

    fn forget(&self, pr: u64, id: u64) {
        if let Some(v) = lock(&self.sticky).get_mut(&pr) {
            v.retain(|(i, _)| *i != id);
        }
    }

    fn check_size(&self, body: &str) -> Result<(), ForgeError> {
        if self.kind == ForgeKind::Github && body.chars().count() > GITHUB_BODY_LIMIT {
            return Err(ForgeError::TooLarge {
                message: format!(
                    "{} characters, GitHub takes at most {GITHUB_BODY_LIMIT} (not sent)",
                    body.chars().count()
                ),
            });
        }
        Ok(())
    }

    /// Post the commit status `context` on `sha`, unless the same state and
    /// description were the last posted for them. The description is cut to
    /// 140 characters.
    pub fn set_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<StatusOutcome, ForgeError> {
        if !valid_sha(sha) {
            return Err(ForgeError::Config(format!("{sha:?} is not a commit sha")));
        }
        let description = cut(description, STATUS_DESCRIPTION_LIMIT);
        let key = (sha.to_string(), context.to_string());
        if lock(&self.statuses).get(&key) == Some(&(state, description.clone())) {
            return Ok(StatusOutcome::Unchanged);
        }
        let path = format!("/repos/{}/statuses/{sha}", self.repo);
        let mut req = json!({
            "state": state.as_str(),
            "context": context,
            "description": description,
        });
        if let (Some(url), Value::Object(m)) = (target_url, &mut req) {
            m.insert("target_url".into(), Value::String(url.to_string()));
        }
        // Repeating a status is harmless: retried on 5xx.
        let reply = self.write(Method::Post, &path, &req, true)?;
        let id = reply.body.get("id").and_then(Value::as_u64).unwrap_or(0);
        // GitHub names it `state`, Gitea `status`.
        let got = ["state", "status"]
            .iter()
            .find_map(|k| reply.body.get(*k).and_then(Value::as_str))
            .and_then(StatusState::parse);
        let Some(got) = got else {
            return Err(ForgeError::BadReply {
                path,
                message: "the status has no known `state` or `status`".into(),
            });
        };
        lock(&self.statuses).insert(key, (state, description));
        Ok(StatusOutcome::Posted { id, state: got })
    }

    /// A comment on commit `sha` (a push without a PR). GitHub only; Gitea and
    /// Forgejo have no commit comments, so there the caller posts statuses
    /// only.
    pub fn commit_comment(&self, sha: &str, body: &str) -> Result<u64, ForgeError> {
        if self.kind == ForgeKind::Gitea {
            return Err(ForgeError::Unsupported(
                "Gitea/Forgejo have no commit comments; post statuses only",
            ));
        }
        if !valid_sha(sha) {
            return Err(ForgeError::Config(format!("{sha:?} is not a commit sha")));
        }
        self.check_size(body)?;
        let path = format!("/repos/{}/commits/{sha}/comments", self.repo);
        let reply = self.write(Method::Post, &path, &json!({ "body": body }), false)?;
        Ok(Self::parse_comment(&path, &reply.body)?.id)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.limits
            .backoff
            .saturating_mul(factor)
            .min(self.limits.max_wait)
    }

    /// Take a write token, waiting (up to `max_wait`) for one.
    fn take_write(&self) -> Result<(), ForgeError> {
        for _ in 0..4 {
            let wait = match lock(&self.budget).try_take(self.clock.now()) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if wait > self.limits.max_wait {
                return Err(ForgeError::Budget { wait });
            }
            self.clock.sleep(wait);
        }
        Err(ForgeError::Budget {
            wait: self.limits.max_wait,
        })
    }

    fn write(&self, method: Method, path: &str, body: &Value, idempotent: bool) -> Result<Reply, ForgeError> {
        self.request(method, path, Some(body), idempotent)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Reply, ForgeError> {
        let url = format!("{}{path}", self.api_url);
        let mut attempt = 0u32;
        loop {
            if body.is_some() {
                self.take_write()?;
            }
            let wait = match self.exchange(method, &url, path, body) {
                Ok(Exchange::Ok(reply)) => return Ok(reply),
                Ok(Exchange::RateLimited { wait, message }) => {
                    if wait > self.limits.max_wait {
                        return Err(ForgeError::RateLimited {
                            path: path.to_string(),
                            wait,
                            message: format!(
                                "{message}; the wait is over the {:?} allowed",
                                self.limits.max_wait
                            ),
                        });
                    }
                    if attempt >= self.limits.max_retries {
                        return Err(ForgeError::RateLimited {
                            path: path.to_string(),
                            wait,
                            message: format!("{message}; gave up after {} retries", attempt),
                        });
                    }
                    wait
                }
                Ok(Exchange::Failed(e)) => {
                    let transient = matches!(
                        e,
                        ForgeError::Transport { .. }
                            | ForgeError::Api {
                                status: 500..=599,
                                ..
                            }
                    );
                    if !(transient && idempotent && attempt < self.limits.max_retries) {
                        return Err(e);
                    }
                    self.backoff(attempt)
                }
                Err(e) => return Err(e),
            };
            tracing::debug!(path, attempt, ?wait, "forge: retrying");
            self.clock.sleep(wait);
            attempt += 1;
        }
    }

    /// One HTTP exchange, classified.
    fn exchange(
        &self,
        method: Method,
        url: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Exchange, ForgeError> {
        let result = match method {
            Method::Get => self.headers(self.agent.get(url)).call(),
            Method::Post | Method::Patch => {
                let rb = if method == Method::Post {
                    self.agent.post(url)
                } else {
                    self.agent.patch(url)
                };
                let data = body.map(Value::to_string).unwrap_or_default();
                self.headers(rb)
                    .header("Content-Type", "application/json")
                    .send(data.as_bytes())
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                return Ok(Exchange::Failed(ForgeError::Transport {
                    method: method.as_str(),
                    path: path.to_string(),
                    message: e.to_string(),
                }))
            }
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let text = match resp.body_mut().with_config().limit(32 << 20).read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Ok(Exchange::Failed(ForgeError::Transport {
                    method: method.as_str(),
                    path: path.to_string(),
                    message: format!("reading the reply: {e}"),
                }))
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        if (200..300).contains(&status) {
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| ForgeError::BadReply {
                    path: path.to_string(),
                    message: format!("not JSON: {e}"),
                })?
            };
            return Ok(Exchange::Ok(Reply { headers, body }));
        }
        let message = error_message(&text);
        if status == 403 || status == 429 {
            let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
            let exhausted = header("x-ratelimit-remaining") == Some("0");
            let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
            let wait = match (retry_after, exhausted, reset) {
                (Some(s), _, _) => Some(Duration::from_secs(s)),
                (None, true, Some(reset)) => Some(Duration::from_secs(
                    reset.saturating_sub(self.clock.unix_secs()).max(1),
                )),
                _ if status == 429 || exhausted || message.to_ascii_lowercase().contains("rate limit") => {
                    Some(self.limits.default_rate_wait)
                }
                _ => None,
            };
            if let Some(wait) = wait {
                return Ok(Exchange::RateLimited {
                    wait,
                    message: format!("HTTP {status}: {message}"),
                });
            }
        }
        if status == 422 {
            let lower = message.to_ascii_lowercase();
            return Ok(Exchange::Failed(
                if lower.contains("too long") || lower.contains("too large") {
                    ForgeError::TooLarge { message }
                } else {
                    ForgeError::Validation {
                        path: path.to_string(),
                        message,
                    }
                },
            ));
        }
        if (300..400).contains(&status) {
            let to = header("location").unwrap_or("?");
            return Ok(Exchange::Failed(ForgeError::Api {
                method: method.as_str(),
                path: path.to_string(),
                status,
                message: format!(
                    "redirected to {to} (not followed: check the API URL and the repository name)"
                ),
            }));
        }
        Ok(Exchange::Failed(ForgeError::Api {
            method: method.as_str(),
            path: path.to_string(),
            status,
            message,
        }))
    }

    fn headers<B>(&self, rb: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let rb = rb.header("User-Agent", concat!("warren/", env!("CARGO_PKG_VERSION")));
        match self.kind {
            ForgeKind::Github => rb
                .header("Authorization", format!("Bearer {}", self.token.0))
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", GITHUB_API_VERSION),
            ForgeKind::Gitea => rb
                .header("Authorization", format!("token {}", self.token.0))
                .header("Accept", "application/json"),
        }
    }
}

#[derive(Debug)]
enum Exchange {
    Ok(Reply),
    RateLimited { wait: Duration, message: String },
    Failed(ForgeError),
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// The forge's words from an error body: GitHub `{message, errors}`, Gitea
/// `{message, url}`; else the start of the body.
fn error_message(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let mut msg = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string();
            if let Some(errors) = v.get("errors").and_then(Value::as_array) {
                let details: Vec<String> = errors
                    .iter()
                    .map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => {
                            let field = |k: &str| other.get(k).and_then(Value::as_str).unwrap_or_default();
                            let m = field("message");
                            if m.is_empty() {
                                format!("{} {} {}", field("resource"), field("field"), field("code"))
                            } else {
                                m.to_string()
                            }
                        }
                    })
                    .collect();
                if !details.is_empty() {
                    msg = format!("{msg}: {}", details.join("; "));
                }
            }
            msg
        }
        Err(_) => cut(text.trim(), 200),
    }
}
