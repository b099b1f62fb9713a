//! The one sticky comment per pull request: the plan preview, then (the same
//! comment, re-rendered) the apply result and the drift on the hosts the PR
//! deployed.
//!
//! Pure: no I/O, no clock. The serve loop (or `warren-controller preview`)
//! fills a [`Preview`] and calls [`comment`] (markdown for the forge) or
//! [`text`] (a terminal); times arrive as strings.
//!
//! Layout, summary first: the hidden [`Marker`] line, a title, a one-line
//! summary, a table per host (counts of changed lines per subsystem, from a
//! line diff of [`Plan::render_text`] before vs after), the validation errors
//! with `file:line` links to the head commit, the drift, one folded diff per
//! host, and the footer. The body never exceeds the byte budget: whole host
//! diffs are kept while they fit, the first that does not is cut at a line
//! boundary, the rest are listed by name, and the marker says `trunc=1`.
//!
//! No key of any kind appears whole: every 32-byte base64 value (a WireGuard
//! key, public or not) is shortened to `AbCd…wxy=` wherever it comes from
//! (plans, drift, errors, notes), and a last pass over the whole body makes
//! sure of it.

use super::ForgeKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use warren_plan::Plan;

/// The default byte budget of a comment: well under the 65 536 characters
/// GitHub and Gitea accept (UTF-8 bytes bound both code points and UTF-16
/// units from above).
pub const DEFAULT_BUDGET: usize = 60_000;

/// The smallest budget [`comment`] honours; smaller ones are raised to it so
/// the marker, summary and footer always fit.
pub const MIN_BUDGET: usize = 2_048;

/// A diff of at most this many changed lines is shown unfolded.
const OPEN_MAX_CHANGES: usize = 10;
/// Context lines around each change in a host's diff.
const CONTEXT: usize = 3;
/// At most this many errors, warnings or drift entries are listed.
const LIST_MAX: usize = 50;
/// Unchanged hosts are named in their row up to this many; above, counted.
const UNCHANGED_NAMED_MAX: usize = 12;
/// Omitted hosts are named up to this many; above, counted.
const OMITTED_NAMED_MAX: usize = 100;

/// How to link to a file at a commit on the forge's web UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    /// Which forge (the URL shapes differ).
    pub forge: ForgeKind,
    /// The web root, e.g. `https://github.com` or `https://git.example.org`
    /// (not the API URL).
    pub web_url: String,
    /// `owner/name`.
    pub repo: String,
}

impl Links {
    /// `file` at `sha`, at `line` when known (`line == 0`: the file).
    /// GitHub: `{web}/{o}/{r}/blob/{sha}/{path}#L{line}`; Gitea:
    /// `{web}/{o}/{r}/src/commit/{sha}/{path}#L{line}`.
    pub fn blob(&self, sha: &str, file: &str, line: u32) -> String {
        let web = self.web_url.trim_end_matches('/');
        let kind = match self.forge {
            ForgeKind::Github => "blob",
            ForgeKind::Gitea => "src/commit",
        };
        let anchor = if line > 0 {
            format!("#L{line}")
        } else {
            String::new()
        };
        format!(
            "{web}/{}/{kind}/{}/{}{anchor}",
            url_path(&self.repo),
            url_path(sha),
            url_path(file)
        )
    }

    /// The commit's page (the same shape on both forges).
    pub fn commit(&self, sha: &str) -> String {
        let web = self.web_url.trim_end_matches('/');
        format!("{web}/{}/commit/{}", url_path(&self.repo), url_path(sha))
    }
}

/// How bad a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is refused: `warren/plan` fails, nothing would deploy.
    Error,
    /// Worth fixing; the file still compiles.
    Warning,
}

/// A validation or compile finding at the head (merge) revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The path in the repository, e.g. `warren.yaml`.
    pub file: String,
    /// From 1; 0 when the finding is about the file as a whole.
    pub line: u32,
    /// From 1; 0 when unknown.
    pub col: u32,
    /// The stable lint code (docs/lints.md), or `compile`.
    pub code: String,
    /// What is wrong, on one line.
    pub message: String,
}

/// One resource that differs on a host from the plan Warren applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftItem {
    /// What differs, e.g. `nft table ip warren` or `peer gateway endpoint`.
    pub resource: String,
    /// What the applied plan says.
    pub expected: String,
    /// What the agent saw.
    pub actual: String,
    /// When it was first seen, as the caller formats it (e.g. `11:52Z`).
    pub since: String,
}

/// What the rollout did with a host's plan after the merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    /// Sent, not confirmed yet.
    Pending,
    /// Applied and confirmed as this serial.
    Applied {
        /// The plan serial the agent confirmed.
        serial: u64,
    },
    /// The agent applied it, lost the controller and rolled back.
    RolledBack {
        /// Why, as the agent reported it.
        reason: String,
    },
    /// The apply failed.
    Failed {
        /// Why, as the agent reported it.
        reason: String,
    },
}

/// One host's part of the comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPreview {
    /// Its plan at the base tip (`None`: the host is new).
    pub before: Option<Plan>,
    /// Its plan at the merge result (`None`: the merge removes it, or the
    /// head is invalid and compiled nothing).
    pub after: Option<Plan>,
    /// Before the merge: drift this merge would revert. After it: drift from
    /// the plan this PR deployed.
    pub drift: Vec<DriftItem>,
    /// After the merge, drift that was reported and is gone: when it
    /// converged (caller-formatted).
    pub drift_resolved: Option<String>,
    /// After the merge: what the rollout did.
    pub apply: Option<ApplyResult>,
}

/// Which comment this is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The PR is open: what would change if it merged now.
    Preview,
    /// The PR merged as this commit on the base branch.
    Merged {
        /// The merge (squash, rebase) result.
        merge_commit: String,
    },
}

/// Each host's before and after plans side by side (a host in only one of
/// them is new or removed); no drift, no apply result yet.
pub fn pair_hosts(
    mut before: BTreeMap<String, Plan>,
    mut after: BTreeMap<String, Plan>,
) -> BTreeMap<String, HostPreview> {
    let names: std::collections::BTreeSet<String> = before.keys().chain(after.keys()).cloned().collect();
    names
        .into_iter()
        .map(|n| {
            let h = HostPreview {
                before: before.remove(&n),
                after: after.remove(&n),
                ..HostPreview::default()
            };
            (n, h)
        })
        .collect()
}

/// Everything the comment says. The serve loop keeps one per PR and
/// re-renders the whole comment when any part changes (apply results, drift).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// The controller instance (several may comment on one repo).
    pub instance: String,
    /// The PR number; 0 when there is no PR (`preview` without `--pr`).
    pub pr: u64,
    /// The PR head commit (full sha).
    pub head_sha: String,
    /// The branch the PR targets.
    pub base_ref: String,
    /// The base tip the head was merged onto.
    pub base_sha: String,
    /// Links to the forge's web UI; `None`: plain `file:line` text.
    pub links: Option<Links>,
    /// The head does not merge cleanly onto the base: the preview is of the
    /// head alone.
    pub conflict: bool,
    /// Validation and compile findings at the merge result.
    pub findings: Vec<Finding>,
    /// Every host in the base or the merge result, by name.
    pub hosts: BTreeMap<String, HostPreview>,
    /// Open, or merged.
    pub phase: Phase,
    /// A free line for the footer (e.g. "Applied plan differs from the
    /// preview: main moved"); rendered as plain text.
    pub note: Option<String>,
    /// When this was rendered, caller-formatted (`None` offline).
    pub updated_at: Option<String>,
}

/// The hidden first line of a Warren comment, as [`parse_marker`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The controller instance.
    pub instance: String,
    /// The PR number.
    pub pr: u64,
    /// The head sha the body is for.
    pub head: String,
    /// `sha256:` and the first 12 hex digits of the after-plans' hash.
    pub plan: String,
    /// The body was cut to fit: never treat it as a complete review.
    pub truncated: bool,
}

impl Marker {
    /// `<!-- warren:plan v=1 instance=… pr=… head=… plan=sha256:… trunc=0|1 -->`.
    /// Values are reduced to `[A-Za-z0-9:._=-]` (others become `_`): no
    /// value holds `>` or a space, so none can end the HTML comment early or
    /// add a field.
    pub fn line(&self) -> String {
        format!(
            "<!-- warren:plan v=1 instance={} pr={} head={} plan={} trunc={} -->",
            marker_value(&self.instance),
            self.pr,
            marker_value(&self.head),
            marker_value(&self.plan),
            u8::from(self.truncated)
        )
    }
}

/// Reads the marker from a comment's first line (a whole body is accepted:
/// only its first line is looked at). `None` unless it is a `warren:plan`
/// marker of version 1 with every field well formed; unknown `key=value`
/// pairs are ignored (later versions may add some).
pub fn parse_marker(first_line: &str) -> Option<Marker> {
    let line = first_line.lines().next()?.trim_end_matches('\r');
    let inner = line.strip_prefix("<!-- warren:plan ")?.strip_suffix(" -->")?;
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for pair in inner.split(' ') {
        let (k, v) = pair.split_once('=')?;
        if k.is_empty() || !v.chars().all(marker_char) || fields.insert(k, v).is_some() {
            return None;
        }
    }
    if fields.get("v") != Some(&"1") {
        return None;
    }
    let plan = fields.get("plan")?;
    let hex = plan.strip_prefix("sha256:")?;
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let truncated = match *fields.get("trunc")? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let instance = fields.get("instance")?;
    let head = fields.get("head")?;
    if instance.is_empty() || head.is_empty() {
        return None;
    }
    Some(Marker {
        instance: instance.to_string(),
        pr: fields.get("pr")?.parse().ok()?,
        head: head.to_string(),
        plan: plan.to_string(),
        truncated,
    })
}

fn marker_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '=' | '-')
}

fn marker_value(s: &str) -> String {
    let v: String = s.chars().map(|c| if marker_char(c) { c } else { '_' }).collect();
    if v.is_empty() {
        "_".into()
    } else {
        v
    }
}

/// `sha256:` and the first 12 hex digits of the hash of every after-plan
/// (the canonical JSON of the `host → Plan` map): what the marker carries.
pub fn plan_hash(p: &Preview) -> String {
    let after: BTreeMap<&String, &Plan> = p
        .hosts
        .iter()
        .filter_map(|(n, h)| h.after.as_ref().map(|a| (n, a)))
        .collect();
    let hex = warren_plan::hash_hex(&after);
    format!("sha256:{}", hex.get(..12).unwrap_or(&hex))
}

// ---------------------------------------------------------------------------
// Per-host analysis: the line diff and the counts per subsystem.

/// The parts of a plan the summary table counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subsystem {
    /// `interface … (wireguard)` sections.
    Wireguard,
    /// `nftables`, `iptables …`, `foreign firewall …`.
    Firewall,
    /// `routes` and `rules`.
    Routes,
    /// `routeros …`.
    Routeros,
    /// `sysctl`.
    Sysctl,
    /// The header and the `why` notes: shown in the diff, not counted.
    Other,
}

impl Subsystem {
    const COUNTED: [Subsystem; 5] = [
        Subsystem::Wireguard,
        Subsystem::Firewall,
        Subsystem::Routes,
        Subsystem::Routeros,
        Subsystem::Sysctl,
    ];

    /// The column header.
    pub fn title(self) -> &'static str {
        match self {
            Subsystem::Wireguard => "WireGuard",
            Subsystem::Firewall => "nftables / iptables",
            Subsystem::Routes => "Routes + rules",
            Subsystem::Routeros => "RouterOS",
            Subsystem::Sysctl => "sysctl",
            Subsystem::Other => "other",
        }
    }

    fn of_section(title: &str) -> Subsystem {
        if title.starts_with("interface ") && title.ends_with("(wireguard)") {
            Subsystem::Wireguard
        } else if title == "nftables"
            || title.starts_with("iptables")
            || title.starts_with("foreign firewall")
        {
            Subsystem::Firewall
        } else if title == "routes" || title == "rules" {
            Subsystem::Routes
        } else if title.starts_with("routeros") {
            Subsystem::Routeros
        } else if title == "sysctl" {
            Subsystem::Sysctl
        } else {
            Subsystem::Other
        }
    }
}

/// Lines added and removed in one subsystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lines only in the after-plan.
    pub added: usize,
    /// Lines only in the before-plan.
    pub removed: usize,
}

impl Counts {
    fn is_zero(self) -> bool {
        self.added == 0 && self.removed == 0
    }
    fn cell(self) -> String {
        if self.is_zero() {
            "—".into()
        } else {
            format!("+{} −{}", self.added, self.removed)
        }
    }
}

/// What happens to a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostChange {
    /// In the base, not in the merge result.
    Removed,
    /// Not in the base.
    Added,
    /// Its plan changes.
    Changed,
    /// Its plan does not change.
    Unchanged,
    /// The head is invalid: nothing compiled to compare with.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Same,
    Add,
    Del,
}

#[derive(Clone, Debug)]
struct DLine {
    tag: Tag,
    text: String,
    section: String,
}

/// A host's diff and counts, computed once.
#[derive(Clone, Debug)]
struct HostDiff {
    name: String,
    change: HostChange,
    counts: BTreeMap<Subsystem, Counts>,
    lines: Vec<DLine>,
}

impl HostDiff {
    fn changed_lines(&self) -> usize {
        self.lines.iter().filter(|l| l.tag != Tag::Same).count()
    }
    fn count(&self, s: Subsystem) -> Counts {
        self.counts.get(&s).copied().unwrap_or_default()
    }
    fn removes_something(&self) -> bool {
        self.change == HostChange::Removed || self.counts.values().any(|c| c.removed > 0)
    }
}

/// The reviewer text of a plan, without the `plan sha256` line (it changes
/// whenever anything does, and says nothing a reviewer reads).
fn plan_lines(p: &Plan) -> Vec<String> {
    p.render_text()
        .lines()
        .filter(|l| !l.starts_with("  plan sha256 "))
        .map(str::to_string)
        .collect()
}

/// The section title each line falls under (a line at column 0 opens one).
fn sections(lines: &[String]) -> Vec<String> {
    let mut cur = String::new();
    lines
        .iter()
        .map(|l| {
            if !l.is_empty() && !l.starts_with(' ') {
                cur = l.clone();
            }
            cur.clone()
        })
        .collect()
}

fn analyse(name: &str, h: &HostPreview, head_valid: bool) -> HostDiff {
    let a = h.before.as_ref().map(plan_lines).unwrap_or_default();
    let b = h.after.as_ref().map(plan_lines).unwrap_or_default();
    let change = match (&h.before, &h.after) {
        (_, None) if !head_valid => HostChange::Unknown,
        (None, None) => HostChange::Unknown,
        (Some(_), None) => HostChange::Removed,
        (None, Some(_)) => HostChange::Added,
        (Some(x), Some(y)) if x == y => HostChange::Unchanged,
        (Some(_), Some(_)) => HostChange::Changed,
    };
    let lines = if change == HostChange::Unknown {
        Vec::new()
    } else {
        line_diff(&a, &b)
    };
    let mut counts: BTreeMap<Subsystem, Counts> = BTreeMap::new();
    for l in &lines {
        let c = counts.entry(Subsystem::of_section(&l.section)).or_default();
        match l.tag {
            Tag::Add => c.added += 1,
            Tag::Del => c.removed += 1,
            Tag::Same => {}
        }
    }
    HostDiff {
        name: name.to_string(),
        change,
        counts,
        lines,
    }
}

/// A line diff (longest common subsequence after trimming the common ends).
/// Above a size where the table would be large, the middle is shown as all
/// removed then all added: still correct, only less tidy.
fn line_diff(a: &[String], b: &[String]) -> Vec<DLine> {
    let sa = sections(a);
    let sb = sections(b);
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut out: Vec<DLine> = Vec::with_capacity(a.len().max(b.len()));
    let same = |i: usize| DLine {
        tag: Tag::Same,
        text: b.get(i).cloned().unwrap_or_default(),
        section: sb.get(i).cloned().unwrap_or_default(),
    };
    let del = |i: usize| DLine {
        tag: Tag::Del,
        text: a.get(i).cloned().unwrap_or_default(),
        section: sa.get(i).cloned().unwrap_or_default(),
    };
    let add = |i: usize| DLine {
        tag: Tag::Add,
        text: b.get(i).cloned().unwrap_or_default(),
        section: sb.get(i).cloned().unwrap_or_default(),
    };
    out.extend((0..pre).map(same));
    let (n, m) = (ma.len(), mb.len());
    if n.saturating_mul(m) > 4_000_000 {
        out.extend((pre..pre + n).map(del));
        out.extend((pre..pre + m).map(add));
    } else {
        // lcs[i][j]: the LCS length of ma[i..] and mb[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                out.push(same(pre + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                // Removals before additions, as `diff -u` shows them.
                out.push(del(pre + i));
                i += 1;
            } else {
                out.push(add(pre + j));
                j += 1;
            }
        }
    }
    out.extend((b.len() - suf..b.len()).map(same));
    out
}

/// The diff as unified hunks: `@@ section @@` headers, `CONTEXT` lines of
/// context around changes. Keys shortened.
fn hunks(lines: &[DLine]) -> Vec<String> {
    let changed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].tag != Tag::Same).collect();
    let mut keep = vec![false; lines.len()];
    for &i in &changed {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT).min(lines.len().saturating_sub(1));
        for k in keep.iter_mut().take(hi + 1).skip(lo) {
            *k = true;
        }
    }
    let mut out = Vec::new();
    let mut prev: Option<usize> = None;
    for (i, l) in lines.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        if prev.is_none_or(|p| p + 1 != i) {
            let title = if l.section.is_empty() {
                "plan".to_string()
            } else {
                l.section.clone()
            };
            out.push(format!("@@ {} @@", shorten_keys(&title)));
        }
        let sign = match l.tag {
            Tag::Same => ' ',
            Tag::Add => '+',
            Tag::Del => '-',
        };
        out.push(format!("{sign}{}", shorten_keys(&l.text)));
        prev = Some(i);
    }
    out
}

// ---------------------------------------------------------------------------
// Escaping and keys.

/// `AbCd…wxy=` for every 32-byte base64 value (43 characters of the base64
/// alphabet, optionally `=`-padded, not part of a longer run), so no key,
/// public or private, appears whole.
pub fn shorten_keys(s: &str) -> String {
    let b = s.as_bytes();
    let is64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if !is64(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is64(b[i]) {
            i += 1;
        }
        let run = i - start;
        let mut end = i;
        if end < b.len() && b[end] == b'=' {
            end += 1;
        }
        let padded_ok = end == b.len() || (b[end] != b'=' && !is64(b[end]));
        if run == 43 && padded_ok {
            // ASCII only between start and end: byte slicing is on char
            // boundaries.
            out.push_str(&s[last..start]);
            out.push_str(&s[start..start + 4]);
            out.push('…');
            out.push_str(&s[end - 4..end]);
            last = end;
            i = end;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// True if `s` holds a whole 32-byte base64 value (what [`shorten_keys`]
/// shortens).
pub fn has_full_key(s: &str) -> bool {
    shorten_keys(s) != s
}

/// Text for HTML and markdown outside code: `<>&"` as entities, markdown
/// punctuation backslashed, `@` followed by a zero-width space (no mentions),
/// line breaks as spaces, keys shortened.
fn md(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in shorten_keys(s).chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '@' => o.push_str("@&#8203;"),
            '|' => o.push_str("&#124;"),
            '\n' | '\r' | '\t' => o.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' | '!' => {
                o.push('\\');
                o.push(c);
            }
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

/// `<code>…</code>` with HTML-escaped content (safe in tables, summaries
/// and lists).
fn code(s: &str) -> String {
    let mut o = String::from("<code>");
    for c in shorten_keys(s).chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '@' => o.push_str("@&#8203;"),
            '|' => o.push_str("&#124;"),
            '`' => o.push_str("&#96;"),
            '\\' => o.push_str("&#92;"),
            '*' => o.push_str("&#42;"),
            '_' => o.push_str("&#95;"),
            '\n' | '\r' | '\t' => o.push(' '),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o.push_str("</code>");
    o
}

/// A code fence longer than any backtick run in `body` (at least three).
fn fence_for<'a>(body: impl IntoIterator<Item = &'a str>) -> String {
    let mut longest = 0;
    for l in body {
        let mut run = 0;
        for c in l.chars() {
            if c == '`' {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn url_path(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'~') {
            o.push(char::from(b));
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------
// The comment.

fn errors(p: &Preview) -> usize {
    p.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
}

/// The one-line summary, e.g. `2 hosts change · 1 unchanged` or
/// `❌ invalid: 3 errors`.
pub fn summary_line(p: &Preview) -> String {
    let diffs = analysed(p);
    summary_of(p, &diffs)
}

fn summary_of(p: &Preview, diffs: &[HostDiff]) -> String {
    let n_err = errors(p);
    if n_err > 0 {
        return format!("❌ invalid: {}", plural(n_err, "error", "errors"));
    }
    let n = |c: HostChange| diffs.iter().filter(|d| d.change == c).count();
    let mut parts = Vec::new();
    let changed = n(HostChange::Changed);
    if changed > 0 {
        parts.push(if changed == 1 {
            "1 host changes".to_string()
        } else {
            format!("{changed} hosts change")
        });
    }
    if n(HostChange::Added) > 0 {
        parts.push(format!("{} new", n(HostChange::Added)));
    }
    if n(HostChange::Removed) > 0 {
        parts.push(format!("{} removed", n(HostChange::Removed)));
    }
    if parts.is_empty() {
        parts.push("no host changes".into());
    }
    if n(HostChange::Unchanged) > 0 {
        parts.push(format!("{} unchanged", n(HostChange::Unchanged)));
    }
    let drifted = p.hosts.values().filter(|h| !h.drift.is_empty()).count();
    if drifted > 0 {
        parts.push(format!("drift on {}", plural(drifted, "host", "hosts")));
    }
    parts.join(" · ")
}

fn analysed(p: &Preview) -> Vec<HostDiff> {
    let valid = errors(p) == 0;
    p.hosts.iter().map(|(n, h)| analyse(n, h, valid)).collect()
}

/// The order host diffs appear in: removals first (removed hosts, then
/// hosts losing lines), then the rest, each by name.
fn ordered(diffs: &[HostDiff]) -> Vec<&HostDiff> {
    let mut v: Vec<&HostDiff> = diffs
        .iter()
        .filter(|d| {
            matches!(
                d.change,
                HostChange::Changed | HostChange::Added | HostChange::Removed
            )
        })
        .collect();
    v.sort_by_key(|d| {
        (
            d.change != HostChange::Removed,
            !d.removes_something(),
            d.name.clone(),
        )
    });
    v
}

fn head(p: &Preview, diffs: &[HostDiff], truncated: bool) -> String {
    let mut o = String::new();
    let marker = Marker {
        instance: p.instance.clone(),
        pr: p.pr,
        head: p.head_sha.clone(),
        plan: plan_hash(p),
        truncated,
    };
    let _ = writeln!(o, "{}", marker.line());
    let target = code(&p.base_ref);
    match (&p.phase, p.pr) {
        (Phase::Preview, 0) => {
            let _ = writeln!(o, "### Warren plan for {} → {target}", code(short(&p.head_sha)));
        }
        (Phase::Preview, n) => {
            let _ = writeln!(o, "### Warren plan for #{n} → {target}");
        }
        (Phase::Merged { .. }, 0) => {
            let _ = writeln!(o, "### Warren: {} merged into {target}", code(short(&p.head_sha)));
        }
        (Phase::Merged { .. }, n) => {
            let _ = writeln!(o, "### Warren: #{n} merged into {target}");
        }
    }
    o.push('\n');
    let head_ref = match &p.links {
        Some(l) => format!("[{}]({})", code(short(&p.head_sha)), l.commit(&p.head_sha)),
        None => code(short(&p.head_sha)),
    };
    let onto = if p.conflict {
        format!(
            "⚠️ conflicts with {}@{}: preview is of the PR head alone",
            code(&p.base_ref),
            code(short(&p.base_sha))
        )
    } else {
        format!(
            "merged onto {}",
            code(&format!("{}@{}", p.base_ref, short(&p.base_sha)))
        )
    };
    let _ = writeln!(o, "**{}** — head {head_ref}, {onto}", summary_of(p, diffs));
    o.push('\n');
    o.push_str(&table(diffs));
    o
}

fn table(diffs: &[HostDiff]) -> String {
    if diffs.is_empty() {
        return "No hosts.\n".into();
    }
    let cols: Vec<Subsystem> = Subsystem::COUNTED
        .into_iter()
        .filter(|&s| diffs.iter().any(|d| !d.count(s).is_zero()))
        .collect();
    let mut o = String::from("| Host | Result |");
    for c in &cols {
        let _ = write!(o, " {} |", c.title());
    }
    o.push_str("\n|---|---|");
    for _ in &cols {
        o.push_str("---|");
    }
    o.push('\n');
    let empty_cells: String = cols.iter().map(|_| " |").collect();
    let mut unchanged = Vec::new();
    let mut unknown = Vec::new();
    for d in diffs {
        let result = match d.change {
            HostChange::Removed => "🗑️ removed",
            HostChange::Added => "🆕 new",
            HostChange::Changed => "🟡 change",
            HostChange::Unchanged => {
                unchanged.push(d.name.as_str());
                continue;
            }
            HostChange::Unknown => {
                unknown.push(d.name.as_str());
                continue;
            }
        };
        let _ = write!(o, "| {} | {result} |", code(&d.name));
        for &c in &cols {
            let _ = write!(o, " {} |", d.count(c).cell());
        }
        o.push('\n');
    }
    for (names, result) in [(&unchanged, "🟢 no change"), (&unknown, "🔴 not compiled")] {
        if names.is_empty() {
            continue;
        }
        let who = if names.len() <= UNCHANGED_NAMED_MAX {
            names.iter().map(|n| code(n)).collect::<Vec<_>>().join(", ")
        } else {
            plural(names.len(), "host", "hosts")
        };
        let _ = writeln!(o, "| {who} | {result} |{empty_cells}");
    }
    o
}

fn findings_section(p: &Preview) -> String {
    let mut o = String::new();
    for (sev, title) in [(Severity::Error, "❌ Errors"), (Severity::Warning, "⚠️ Warnings")] {
        let list: Vec<&Finding> = p.findings.iter().filter(|f| f.severity == sev).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(o, "\n#### {title} ({})\n", list.len());
        for f in list.iter().take(LIST_MAX) {
            let place = match (f.line, f.col) {
                (0, _) => f.file.clone(),
                (l, 0) => format!("{}:{l}", f.file),
                (l, c) => format!("{}:{l}:{c}", f.file),
            };
            let place = match &p.links {
                Some(l) => format!("[{}]({})", code(&place), l.blob(&p.head_sha, &f.file, f.line)),
                None => code(&place),
            };
            let _ = writeln!(o, "- {place} {}: {}", code(&f.code), md(&f.message));
        }
        if list.len() > LIST_MAX {
            let _ = writeln!(o, "- … and {} more", list.len() - LIST_MAX);
        }
    }
    o
}

/// The drift section: before the merge, what it would revert; after, the
/// drift on the hosts this PR deployed, and what has resolved.
pub fn drift_section(p: &Preview) -> String {
    let mut o = String::new();
    let items: Vec<(&String, &DriftItem)> = p
        .hosts
        .iter()
        .flat_map(|(n, h)| h.drift.iter().map(move |d| (n, d)))
        .collect();
    if !items.is_empty() {
        let title = match p.phase {
            Phase::Preview => "⚠️ Changes outside Warren that this merge will revert",
            Phase::Merged { .. } => "⚠️ Drift from the plan this PR deployed",
        };
        let _ = writeln!(o, "\n#### {title} ({})\n", items.len());
        for (host, d) in items.iter().take(LIST_MAX) {
            let _ = writeln!(
                o,
                "- {}: {} expected {}, actual {} (since {})",
                code(host),
                code(&d.resource),
                code(&d.expected),
                code(&d.actual),
                md(&d.since)
            );
        }
        if items.len() > LIST_MAX {
            let _ = writeln!(o, "- … and {} more", items.len() - LIST_MAX);
        }
    }
    let resolved: Vec<(&String, &String)> = p
        .hosts
        .iter()
        .filter(|(_, h)| h.drift.is_empty())
        .filter_map(|(n, h)| h.drift_resolved.as_ref().map(|t| (n, t)))
        .collect();
    if !resolved.is_empty() {
        let _ = writeln!(o, "\n#### ✅ Drift resolved ({})\n", resolved.len());
        for (host, at) in resolved.iter().take(LIST_MAX) {
            let _ = writeln!(o, "- {}: converged {}", code(host), md(at));
        }
    }
    o
}

/// The footer: merge and apply result per host (when merged), the note, and
/// when it was rendered.
pub fn apply_footer(p: &Preview) -> String {
    let mut o = String::from("\n---\n");
    if let Phase::Merged { merge_commit } = &p.phase {
        let results: Vec<(&String, &ApplyResult)> = p
            .hosts
            .iter()
            .filter_map(|(n, h)| h.apply.as_ref().map(|a| (n, a)))
            .collect();
        let applied = results
            .iter()
            .filter(|(_, a)| matches!(a, ApplyResult::Applied { .. }))
            .count();
        let pending = results
            .iter()
            .filter(|(_, a)| matches!(a, ApplyResult::Pending))
            .count();
        let mut line = format!("**Merged** as {}", code(short(merge_commit)));
        if results.is_empty() || pending > 0 {
            line.push_str(" — applying…");
        }
        if !results.is_empty() {
            let _ = write!(line, " · **Applied** {applied}/{} hosts", results.len());
        }
        let _ = writeln!(o, "{line}\n");
        for (host, a) in results.iter().take(OMITTED_NAMED_MAX) {
            let what = match a {
                ApplyResult::Pending => "⏳ applying…".to_string(),
                ApplyResult::Applied { serial } => format!("✅ applied (serial {serial})"),
                ApplyResult::RolledBack { reason } => format!("↩️ rolled back: {}", md(reason)),
                ApplyResult::Failed { reason } => format!("❌ failed: {}", md(reason)),
            };
            let _ = writeln!(o, "- {}: {what}", code(host));
        }
        if !results.is_empty() {
            o.push('\n');
        }
    }
    if let Some(n) = &p.note {
        let _ = writeln!(o, "{}\n", md(n));
    }
    let when = match &p.updated_at {
        Some(t) => format!("Updated {}", md(t)),
        None => "Rendered offline by <code>warren-controller preview</code>".into(),
    };
    let _ = writeln!(
        o,
        "<sub>{when} for {} · status <code>warren/plan</code>: {}</sub>",
        code(short(&p.head_sha)),
        if errors(p) == 0 { "success" } else { "failure" }
    );
    o
}

/// One host's `<details>` block, whole.
fn host_block(d: &HostDiff) -> Vec<String> {
    let hunks = hunks(&d.lines);
    block(d, &hunks, None)
}

fn block(d: &HostDiff, body: &[String], omitted: Option<usize>) -> Vec<String> {
    let what = match d.change {
        HostChange::Removed => "removed".to_string(),
        HostChange::Added => "new host".to_string(),
        _ => {
            let parts: Vec<String> = Subsystem::COUNTED
                .into_iter()
                .filter(|&s| !d.count(s).is_zero())
                .map(|s| format!("{} {}", s.title(), d.count(s).cell()))
                .collect();
            if parts.is_empty() {
                "notes only".into()
            } else {
                parts.join(", ")
            }
        }
    };
    let open = if d.changed_lines() <= OPEN_MAX_CHANGES && omitted.is_none() {
        " open"
    } else {
        ""
    };
    let fence = fence_for(body.iter().map(String::as_str));
    let mut v = vec![
        format!(
            "<details{open}><summary>{} — {}</summary>",
            code(&d.name),
            md(&what)
        ),
        String::new(),
        format!("{fence}diff"),
    ];
    v.extend(body.iter().cloned());
    v.push(fence);
    if let Some(n) = omitted {
        v.push(format!("… {n} more {}", if n == 1 { "line" } else { "lines" }));
        v.push(String::new());
    }
    v.push("</details>".into());
    v
}

fn joined(lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Said whenever the body is cut: which hosts' diffs are not shown at all.
fn omitted_notice(names: &[&str]) -> String {
    let mut o = String::from("\n**Truncated** to fit the comment");
    if !names.is_empty() {
        let shown: Vec<String> = names.iter().take(OMITTED_NAMED_MAX).map(|n| code(n)).collect();
        let _ = write!(o, "; not shown: {}", shown.join(", "));
        if names.len() > OMITTED_NAMED_MAX {
            let _ = write!(o, " and {} more", names.len() - OMITTED_NAMED_MAX);
        }
    }
    o.push_str(". Run <code>warren-controller preview</code> for the whole diff; a truncated preview is not a complete review.\n");
    o
}

/// The comment body, at most `budget_bytes` bytes (raised to
/// [`MIN_BUDGET`]): the marker line first. Whole when it fits; otherwise
/// host diffs are kept whole in order while they fit, the first that does
/// not is cut at a line boundary (`… N more lines`), the rest are named,
/// and the marker says `trunc=1`.
pub fn comment(p: &Preview, budget_bytes: usize) -> String {
    let budget = budget_bytes.max(MIN_BUDGET);
    let diffs = analysed(p);
    let order = ordered(&diffs);
    let blocks: Vec<String> = order.iter().map(|d| joined(&host_block(d))).collect();
    let middle = format!("{}{}", findings_section(p), drift_section(p));
    let footer = apply_footer(p);
    let assemble = |trunc: bool, hosts: &str| {
        let mut s = head(p, &diffs, trunc);
        s.push_str(&middle);
        if !hosts.is_empty() {
            s.push('\n');
            s.push_str(hosts);
        }
        s.push_str(&footer);
        s
    };
    let whole = assemble(false, &blocks.join("\n"));
    if whole.len() <= budget {
        return final_pass(whole, budget);
    }
    // Truncated: the fixed parts, then host blocks while they fit.
    let fixed = assemble(true, "").len() + 1; // + the '\n' before the hosts
    let mut kept = String::new();
    let mut omitted: Vec<&str> = Vec::new();
    for (i, (d, b)) in order.iter().zip(&blocks).enumerate() {
        let rest: Vec<&str> = order[i + 1..].iter().map(|d| d.name.as_str()).collect();
        let sep = usize::from(!kept.is_empty());
        let notice_rest = omitted_notice(&rest).len();
        if fixed + kept.len() + sep + b.len() + notice_rest <= budget {
            if sep == 1 {
                kept.push('\n');
            }
            kept.push_str(b);
            continue;
        }
        // Cut this one at a line boundary, if anything of it fits.
        let hunks = hunks(&d.lines);
        let room = budget.saturating_sub(fixed + kept.len() + sep + notice_rest);
        let mut take = hunks.len();
        let mut cut = None;
        while take > 0 {
            let candidate = joined(&block(d, &hunks[..take], Some(hunks.len() - take)));
            if candidate.len() <= room {
                cut = Some(candidate);
                break;
            }
            // Drop lines faster when far over.
            let over = candidate.len() - room;
            let avg = (candidate.len() / (take + 8)).max(1);
            take = take.saturating_sub((over / avg).max(1));
        }
        match cut {
            Some(c) => {
                if sep == 1 {
                    kept.push('\n');
                }
                kept.push_str(&c);
                omitted.extend(rest);
            }
            None => {
                omitted.push(d.name.as_str());
                omitted.extend(rest);
            }
        }
        break;
    }
    let mut hosts = kept;
    hosts.push_str(&omitted_notice(&omitted));
    let body = assemble(true, hosts.trim_start_matches('\n'));
    if body.len() <= budget {
        return final_pass(body, budget);
    }
    // Even without diffs the summary, findings and drift are too long: keep
    // the marker, cut the rest at a line boundary, and keep the footer.
    let notice = "\n**Truncated**: the summary itself is too long for one comment.\n";
    let mut out = String::new();
    let limit = budget.saturating_sub(footer.len() + notice.len());
    for l in assemble(true, "").lines() {
        if out.len() + l.len() + 1 > limit {
            break;
        }
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(notice);
    out.push_str(&footer);
    final_pass(out, budget)
}

/// The last guard: no whole key, and never over budget (shortening only
/// makes the body smaller).
fn final_pass(body: String, budget: usize) -> String {
    let body = if has_full_key(&body) {
        shorten_keys(&body)
    } else {
        body
    };
    if body.len() <= budget {
        return body;
    }
    // Unreachable by construction; cut at a char boundary rather than post
    // something the forge refuses.
    let mut end = budget;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_string()
}

/// The same content for a terminal: summary, per-host counts, findings,
/// drift and the diffs, without markdown or HTML. Keys shortened.
pub fn text(p: &Preview) -> String {
    let diffs = analysed(p);
    let mut o = String::new();
    let title = match p.pr {
        0 => format!("Warren plan for {} -> {}", short(&p.head_sha), p.base_ref),
        n => format!("Warren plan for #{n} -> {}", p.base_ref),
    };
    let _ = writeln!(o, "{title}");
    let _ = writeln!(o, "{}", summary_of(p, &diffs));
    if p.conflict {
        let _ = writeln!(
            o,
            "warning: the head conflicts with {}@{}; this is a preview of the head alone",
            p.base_ref,
            short(&p.base_sha)
        );
    } else {
        let _ = writeln!(
            o,
            "head {} merged onto {}@{}",
            short(&p.head_sha),
            p.base_ref,
            short(&p.base_sha)
        );
    }
    o.push('\n');
    for d in &diffs {
        let result = match d.change {
            HostChange::Removed => "removed".to_string(),
            HostChange::Added => "new".to_string(),
            HostChange::Unchanged => "no change".to_string(),
            HostChange::Unknown => "not compiled".to_string(),
            HostChange::Changed => Subsystem::COUNTED
                .into_iter()
                .filter(|&s| !d.count(s).is_zero())
                .map(|s| format!("{} {}", s.title(), d.count(s).cell()))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(o, "  {:<16} {}", d.name, result);
    }
    for f in &p.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(
            o,
            "{}:{}:{}: {sev}[{}]: {}",
            f.file,
            f.line,
            f.col,
            f.code,
            shorten_keys(&f.message)
        );
    }
    for (host, h) in &p.hosts {
        for d in &h.drift {
            let _ = writeln!(
                o,
                "drift {host}: {} expected {}, actual {} (since {})",
                shorten_keys(&d.resource),
                shorten_keys(&d.expected),
                shorten_keys(&d.actual),
                shorten_keys(&d.since)
            );
        }
    }
    for d in ordered(&diffs) {
        let _ = writeln!(o, "\n--- {} ---", d.name);
        for l in hunks(&d.lines) {
            let _ = writeln!(o, "{l}");
        }
    }
    shorten_keys(&o)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../examples/seed/warren.yaml");

    fn plans(yaml: &str) -> BTreeMap<String, Plan> {
        let (cfg, diags) = warren_model::load_str(yaml, "warren.yaml");
        let cfg = cfg.unwrap_or_else(|| panic!("{diags}"));
        warren_compiler::compile(&cfg, &warren_compiler::KeyBook::pinned(&cfg)).unwrap()
    }

    /// The seed with the forward's port changed and a second forward added.
    fn seed_head() -> String {
        let head = SEED.replace(
            "minecraft: { port: 25565/tcp, to: 192.168.16.20, description: \"brother's laptop\" }",
            "minecraft: { port: 25566/tcp, to: 192.168.16.20 }\n  web: { port: 8443/tcp, to: 192.168.16.30 }",
        );
        assert_ne!(head, SEED);
        head
    }

    fn preview(before: BTreeMap<String, Plan>, after: BTreeMap<String, Plan>) -> Preview {
        let hosts = pair_hosts(before, after);
        Preview {
            instance: "prod".into(),
            pr: 42,
            head_sha: "3f2a9c1e".into(),
            base_ref: "main".into(),
            base_sha: "9c1e0b7a".into(),
            links: Some(Links {
                forge: ForgeKind::Github,
                web_url: "https://github.com/".into(),
                repo: "acme/net".into(),
            }),
            conflict: false,
            findings: Vec::new(),
            hosts,
            phase: Phase::Preview,
            note: None,
            updated_at: Some("2026-08-23 12:04Z".into()),
        }
    }

    fn seed_preview() -> Preview {
        preview(plans(SEED), plans(&seed_head()))
    }

    /// Many changed hosts: the seed router's change under `n` names.
    fn big_preview(n: usize) -> Preview {
        let b = plans(SEED)["router"].clone();
        let a = plans(&seed_head())["router"].clone();
        let before = (0..n).map(|i| (format!("h{i:02}"), b.clone())).collect();
        let after = (0..n).map(|i| (format!("h{i:02}"), a.clone())).collect();
        preview(before, after)
    }

    /// Independent of `shorten_keys`: no run of 43 or more base64
    /// characters (a 32-byte key is 43 and `=`).
    fn assert_no_full_key(body: &str) {
        for line in body.lines().filter(|l| !l.starts_with("<!-- warren:plan")) {
            let mut run = 0;
            for c in line.chars() {
                if c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=' {
                    run += 1;
                    assert!(run < 43, "a whole key in: {line}");
                } else {
                    run = 0;
                }
            }
        }
    }

    #[test]
    fn summary_and_table_count_changed_lines_per_subsystem() {
        let p = seed_preview();
        assert_eq!(summary_line(&p), "1 host changes · 1 unchanged");
        let diffs = analysed(&p);
        let router = diffs.iter().find(|d| d.name == "router").unwrap();
        assert_eq!(router.change, HostChange::Changed);
        // Two map element lines replaced, and the foreign firewall's one
        // forward opening becomes two.
        assert_eq!(router.count(Subsystem::Firewall), Counts { added: 4, removed: 3 });
        for s in [
            Subsystem::Wireguard,
            Subsystem::Routes,
            Subsystem::Routeros,
            Subsystem::Sysctl,
        ] {
            assert!(router.count(s).is_zero(), "{s:?}");
        }
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(
            body.contains("| Host | Result | nftables / iptables |\n"),
            "{body}"
        );
        assert!(
            body.contains("| <code>router</code> | 🟡 change | +4 −3 |\n"),
            "{body}"
        );
        assert!(
            body.contains("| <code>gateway</code> | 🟢 no change | |\n"),
            "{body}"
        );
        assert!(body.contains("-      elements = { 25565 : 192.168.16.20 }\n+      elements = { 8443 : 192.168.16.30, 25566 : 192.168.16.20 }\n"), "{body}");
        // Seven changed lines: shown open.
        assert!(body.contains("<details open><summary><code>router</code> — nftables / iptables +4 −3</summary>\n\n```diff\n@@ nftables @@\n"), "{body}");
        // The plan hash line changes with everything; it is not in the diff.
        assert!(!body.contains("plan sha256"), "{body}");
    }

    #[test]
    fn new_removed_and_unchanged_hosts_are_told_apart() {
        let mut before = plans(SEED);
        let mut after = before.clone();
        let gw = after.remove("gateway").unwrap();
        after.insert("vps2".into(), gw);
        before.insert("old".into(), Plan::empty("old"));
        let p = preview(before, after);
        assert_eq!(summary_line(&p), "1 new · 2 removed · 1 unchanged");
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(body.contains("| <code>vps2</code> | 🆕 new |"), "{body}");
        assert!(body.contains("| <code>router</code> | 🟢 no change |"), "{body}");
        // Removals first, then the rest, by name.
        let at = |s: &str| body.find(&format!("<summary><code>{s}</code>")).unwrap();
        assert!(at("gateway") < at("old") && at("old") < at("vps2"), "{body}");
        assert!(
            body.contains("<summary><code>gateway</code> — removed</summary>"),
            "{body}"
        );
    }

    #[test]
    fn marker_round_trips_and_rejects_what_is_not_ours() {
        let p = seed_preview();
        let body = comment(&p, DEFAULT_BUDGET);
        let first = body.lines().next().unwrap();
        let m = parse_marker(first).unwrap();
        assert_eq!(
            m,
            Marker {
                instance: "prod".into(),
                pr: 42,
                head: "3f2a9c1e".into(),
                plan: plan_hash(&p),
                truncated: false
            }
        );
        assert_eq!(parse_marker(&body), Some(m.clone()));
        assert_eq!(m.line(), first);
        assert!(m.plan.starts_with("sha256:") && m.plan.len() == 7 + 12);
        // The hash is that of the after-plans, so a different head differs.
        let mut q = p.clone();
        q.hosts.get_mut("router").unwrap().after = q.hosts["router"].before.clone();
        assert_ne!(plan_hash(&q), m.plan);
        // Values outside the charset cannot break out of the comment.
        let odd = Marker {
            instance: "prod --> <b> x=1".into(),
            ..m.clone()
        };
        assert_eq!(parse_marker(&odd.line()).unwrap().instance, "prod_--___b__x=1");
        assert!(!odd.line()[4..odd.line().len() - 4].contains('>'));
        // Extra fields are ignored; a wrong version, kind, charset or shape is not ours.
        let extra = first.replace(" trunc=0", " trunc=0 gen=7");
        assert_eq!(parse_marker(&extra), Some(m));
        for bad in [
            first.replace("v=1", "v=2"),
            first.replace("warren:plan", "warren:drift"),
            first.replace("trunc=0", "trunc=yes"),
            first.replace("pr=42", "pr=x"),
            first.replace("plan=sha256:", "plan=md5:"),
            first.replace("instance=prod", "instance=pr'od"),
            first.replace(" -->", ""),
            format!("hello\n{first}"),
            first.replace(" pr=42", ""),
            String::new(),
        ] {
            assert_eq!(parse_marker(&bad), None, "{bad}");
        }
    }

    #[test]
    fn budget_exactly_fits_and_one_byte_less_truncates_keeping_whole_hosts() {
        let p = big_preview(12);
        let whole = comment(&p, 10_000_000);
        let len = whole.len();
        assert!(len > MIN_BUDGET * 4, "{len}");
        assert!(!parse_marker(&whole).unwrap().truncated);
        assert_eq!(comment(&p, len), whole, "a body of exactly the budget is whole");
        let cut = comment(&p, len - 1);
        assert!(cut.len() < len, "{} >= {len}", cut.len());
        assert!(parse_marker(&cut).unwrap().truncated, "{cut}");
        assert!(cut.contains("**Truncated**"), "{cut}");
        assert!(cut.ends_with(&apply_footer(&p)), "the footer is kept");

        // Half the budget: whole hosts first, identical to the untruncated
        // ones, then one cut at a line boundary, then names.
        let half = comment(&p, len / 2);
        assert!(half.len() <= len / 2);
        let blocks: Vec<&str> = whole.split("<details").skip(1).collect();
        let kept: Vec<&str> = half.split("<details").skip(1).collect();
        assert!(kept.len() >= 2, "{half}");
        for (k, w) in kept.iter().zip(&blocks).take(kept.len() - 1) {
            assert_eq!(k, w, "whole hosts are kept whole");
        }
        let last = kept.last().unwrap();
        assert!(last.contains(" more lines\n\n</details>"), "{last}");
        assert!(last.contains("\n```\n… "), "cut inside its fence, closed: {last}");
        let cut_host = kept.len() - 1;
        let notice = half.split("**Truncated**").nth(1).unwrap();
        for i in kept.len()..12 {
            assert!(notice.contains(&format!("<code>h{i:02}</code>")), "h{i:02} named");
        }
        assert!(!notice.contains(&format!("<code>h{cut_host:02}</code>")));
        // Every fence opened is closed.
        assert_eq!(half.matches("```diff").count(), half.matches("\n```\n").count());

        // Under the minimum, the minimum holds and the marker survives.
        let tiny = comment(&p, 10);
        assert!(tiny.len() <= MIN_BUDGET);
        assert!(parse_marker(&tiny).unwrap().truncated);
    }

    #[test]
    fn no_whole_key_ever_appears() {
        let private = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        let public = "m1DGJ0bJ2yKrgJrnDmg7cEjp3X0MDn2xAPUPdL9ARxg=";
        let mut after = plans(&seed_head());
        // A plan that (against the rules) carries a private key in its notes.
        after
            .get_mut("router")
            .unwrap()
            .notes
            .push(format!("key {private} and {public},{private}"));
        let mut p = preview(plans(SEED), after);
        p.hosts.get_mut("router").unwrap().drift.push(DriftItem {
            resource: format!("peer {public}"),
            expected: public.into(),
            actual: private.into(),
            since: private.into(),
        });
        p.findings.push(Finding {
            severity: Severity::Warning,
            file: "warren.yaml".into(),
            line: 3,
            col: 1,
            code: "x".into(),
            message: format!("private_key: {private}"),
        });
        p.note = Some(private.into());
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(body.contains("m1DG…Rxg="), "{body}");
        assert!(body.contains("yAnz…Bmk="), "{body}");
        assert_no_full_key(&body);
        assert_no_full_key(&text(&p));
        for budget in [3_000, 5_000, 8_000] {
            assert_no_full_key(&comment(&p, budget));
        }
        // Shortening leaves other long tokens alone.
        let sha = "0e2ddfedf263587a2dcad29ad4931f59fd26a9b3";
        assert_eq!(shorten_keys(sha), sha);
        let hex64 = "6305ede94cb9b9edae538ac75d642997a4e0cf2e178d64210b8217bee72af5f3";
        assert_eq!(shorten_keys(hex64), hex64);
        assert_eq!(shorten_keys(&format!("x={public}.")), "x=m1DG…Rxg=.");
        assert_eq!(shorten_keys(&public[..43]), "m1DG…ARxg");
    }

    #[test]
    fn fences_outgrow_backticks_and_text_outside_code_is_escaped() {
        assert_eq!(fence_for(["plain"]), "```");
        assert_eq!(fence_for(["a ``` b", "````` c"]), "``````");
        let mut after = plans(&seed_head());
        after
            .get_mut("router")
            .unwrap()
            .notes
            .push("see ```` and @someone <b>".into());
        let mut p = preview(plans(SEED), after);
        p.hosts.get_mut("router").unwrap().drift.push(DriftItem {
            resource: "<script>&|`x`".into(),
            expected: "@admin".into(),
            actual: "a*b_c".into(),
            since: "11:52Z by @bob".into(),
        });
        p.findings.push(Finding {
            severity: Severity::Error,
            file: "warren.yaml".into(),
            line: 57,
            col: 9,
            code: "forward-lockout".into(),
            message: "ping @root <img src=x> [link](http://e)".into(),
        });
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(body.contains("\n`````diff\n"), "{body}");
        assert!(
            body.contains("+  - see ```` and @someone <b>\n"),
            "raw inside the fence: {body}"
        );
        assert!(
            body.contains("<code>&lt;script&gt;&amp;&#124;&#96;x&#96;</code>"),
            "{body}"
        );
        assert!(body.contains("<code>@&#8203;admin</code>"), "{body}");
        assert!(body.contains("(since 11:52Z by @&#8203;bob)"), "{body}");
        assert!(
            body.contains("ping @&#8203;root &lt;img src=x&gt; \\[link\\](http://e)"),
            "{body}"
        );
        // Outside fences, no bare @ and no raw tag from the input.
        let outside: String = body.split("`````").step_by(2).collect::<Vec<_>>().join("");
        assert!(
            !outside.contains("@someone") && !outside.contains("@root") && !outside.contains("<img"),
            "{outside}"
        );
        // The error, with its line link to the head commit.
        assert!(body.contains("#### ❌ Errors (1)\n\n- [<code>warren.yaml:57:9</code>](https://github.com/acme/net/blob/3f2a9c1e/warren.yaml#L57) <code>forward-lockout</code>: "), "{body}");
        assert!(body.contains("**❌ invalid: 1 error**"), "{body}");
        assert!(
            body.contains("#### ⚠️ Changes outside Warren that this merge will revert (1)"),
            "{body}"
        );
    }

    #[test]
    fn links_follow_each_forge() {
        let gh = Links {
            forge: ForgeKind::Github,
            web_url: "https://ghe.example/".into(),
            repo: "acme/net".into(),
        };
        assert_eq!(
            gh.blob("abc", "warren.yaml", 7),
            "https://ghe.example/acme/net/blob/abc/warren.yaml#L7"
        );
        let gt = Links {
            forge: ForgeKind::Gitea,
            web_url: "https://git.home".into(),
            repo: "me/net".into(),
        };
        assert_eq!(
            gt.blob("abc", "dir/warren yaml", 0),
            "https://git.home/me/net/src/commit/abc/dir/warren%20yaml"
        );
        assert_eq!(gt.commit("abc"), "https://git.home/me/net/commit/abc");
    }

    #[test]
    fn invalid_head_says_so_and_lists_hosts_as_not_compiled() {
        let mut p = preview(plans(SEED), BTreeMap::new());
        p.findings = vec![
            Finding {
                severity: Severity::Error,
                file: "warren.yaml".into(),
                line: 47,
                col: 22,
                code: "forward-lockout".into(),
                message: "boom".into(),
            },
            Finding {
                severity: Severity::Error,
                file: "warren.yaml".into(),
                line: 0,
                col: 0,
                code: "compile".into(),
                message: "bang".into(),
            },
        ];
        assert_eq!(summary_line(&p), "❌ invalid: 2 errors");
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(
            body.contains("| <code>gateway</code>, <code>router</code> | 🔴 not compiled |"),
            "{body}"
        );
        assert!(!body.contains("<details"), "no diffs of an invalid head: {body}");
        assert!(
            body.contains("(https://github.com/acme/net/blob/3f2a9c1e/warren.yaml)"),
            "{body}"
        );
        assert!(
            body.contains("status <code>warren/plan</code>: failure"),
            "{body}"
        );
    }

    #[test]
    fn after_merge_the_same_comment_carries_apply_results_and_drift() {
        let mut p = seed_preview();
        p.phase = Phase::Merged {
            merge_commit: "8d4e2f0aa".into(),
        };
        p.hosts.get_mut("gateway").unwrap().apply = Some(ApplyResult::Applied { serial: 14 });
        p.hosts.get_mut("router").unwrap().apply = Some(ApplyResult::Pending);
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(
            body.contains("### Warren: #42 merged into <code>main</code>"),
            "{body}"
        );
        assert!(
            body.contains("**Merged** as <code>8d4e2f0</code> — applying… · **Applied** 1/2 hosts"),
            "{body}"
        );
        assert!(body.contains("- <code>router</code>: ⏳ applying…"), "{body}");
        p.hosts.get_mut("router").unwrap().apply = Some(ApplyResult::Failed {
            reason: "nft: Error: Could not process rule".into(),
        });
        p.hosts.get_mut("router").unwrap().drift.push(DriftItem {
            resource: "nft table ip warren".into(),
            expected: "present".into(),
            actual: "absent".into(),
            since: "12:31Z".into(),
        });
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(!body.contains("applying…"), "{body}");
        assert!(
            body.contains("- <code>router</code>: ❌ failed: nft: Error: Could not process rule"),
            "{body}"
        );
        assert!(body.contains("#### ⚠️ Drift from the plan this PR deployed (1)\n\n- <code>router</code>: <code>nft table ip warren</code> expected <code>present</code>, actual <code>absent</code> (since 12:31Z)"), "{body}");
        let r = p.hosts.get_mut("router").unwrap();
        r.drift.clear();
        r.drift_resolved = Some("12:40Z".into());
        let body = comment(&p, DEFAULT_BUDGET);
        assert!(
            body.contains("#### ✅ Drift resolved (1)\n\n- <code>router</code>: converged 12:40Z"),
            "{body}"
        );
        assert!(!body.contains("Drift from the plan"), "{body}");
    }

    #[test]
    fn line_diff_is_minimal_and_removes_before_it_adds() {
        let v = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
        let d = line_diff(&v("a\nb\nc\nd"), &v("a\nx\nc\nd\ne"));
        let got: Vec<String> = d
            .iter()
            .map(|l| {
                let s = match l.tag {
                    Tag::Same => ' ',
                    Tag::Add => '+',
                    Tag::Del => '-',
                };
                format!("{s}{}", l.text)
            })
            .collect();
        assert_eq!(got, [" a", "-b", "+x", " c", " d", "+e"]);
        assert!(line_diff(&v("a\nb"), &v("a\nb"))
            .iter()
            .all(|l| l.tag == Tag::Same));
    }
}
