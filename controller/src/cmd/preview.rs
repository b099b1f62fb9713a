//! `warren-controller preview PATH --base REV --head REV`: the pull request
//! comment, offline. Compiles the base revision and the merge of the head
//! onto it (in memory, with git2: nothing is checked out or written), and
//! prints exactly the body the controller would post (`--format markdown`)
//! or a plain text form. No forge and no agents: drift is empty and only the
//! keys pinned in `warren.yaml` are known (peers awaiting keys say so).
//!
//! Exit codes as `plan`: 0 printed; 1 the merge result is invalid (the
//! comment is still printed, showing the errors); 2 usage or I/O error
//! (unknown revision, no `warren.yaml`, not a repository).

use super::{names_only, usage, Failure, Outcome};
use crate::forge::render::{self, Finding, Links, Phase, Preview, Severity};
use crate::forge::ForgeKind;
use crate::serve::status::StatusSnapshot;
use crate::source::FILE;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warren_compiler::{compile, KeyBook};
use warren_host::out;
use warren_plan::Plan;

/// What `preview` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PreviewFormat {
    /// The comment body, as posted on the forge.
    Markdown,
    /// For a terminal.
    Text,
}

/// The forge whose link shapes to use (`--forge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ForgeArg {
    /// GitHub or GitHub Enterprise.
    Github,
    /// Gitea or Forgejo.
    Gitea,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A directory inside the git repository.
    path: PathBuf,
    /// The target branch's revision (the PR's base).
    #[arg(long)]
    base: String,
    /// The PR's head revision.
    #[arg(long)]
    head: String,
    #[arg(long, value_parser = names_only::<PreviewFormat>(), default_value = "markdown")]
    format: PreviewFormat,
    /// The PR number shown in the title and the marker.
    #[arg(long, default_value_t = 0)]
    pr: u64,
    /// The controller instance named in the marker.
    #[arg(long, default_value = "warren")]
    instance: String,
    /// The largest body in bytes (the forges refuse over 65 536 characters).
    #[arg(long, default_value_t = render::DEFAULT_BUDGET)]
    budget: usize,
    /// Link errors to the head commit on this forge (with --web-url and --repo).
    #[arg(long, value_parser = names_only::<ForgeArg>(), requires_all = ["web_url", "repo"])]
    forge: Option<ForgeArg>,
    /// The forge's web root, e.g. https://github.com.
    #[arg(long, requires = "forge")]
    web_url: Option<String>,
    /// OWNER/NAME on the forge.
    #[arg(long, requires = "forge")]
    repo: Option<String>,
    /// A controller's state directory: use the WireGuard keys its agents
    /// reported and the drift it sees, as the service's own comment does.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let git = git2::Repository::discover(&args.path)
        .with_context(|| format!("{} is not in a git repository", args.path.display()))?;
    let base = commit(&git, &args.base)?;
    let head = commit(&git, &args.head)?;
    let (merged, conflict) = merged_text(&git, &base, &head)?;
    if conflict {
        eprintln!(
            "warning: {} does not merge cleanly onto {}; previewing the head alone",
            args.head, args.base
        );
    }
    let snap = match &args.state_dir {
        Some(d) => Some(StatusSnapshot::read(d).with_context(|| format!("--state-dir {}", d.display()))?),
        None => None,
    };
    let before = match blob_text(&git, &base.tree()?.id(), &args.base) {
        Ok(text) => base_plans(&text, &args.base, snap.as_ref()),
        Err(e) => {
            eprintln!("warning: {e:#}; every host is shown as new");
            BTreeMap::new()
        }
    };
    let (after, findings) = head_plans(&merged, snap.as_ref());
    for f in &findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!(
            "{}:{}:{}: {sev}[{}]: {}",
            f.file, f.line, f.col, f.code, f.message
        );
    }
    let links = match (args.forge, args.web_url, args.repo) {
        (Some(f), Some(web_url), Some(repo)) => Some(Links {
            forge: match f {
                ForgeArg::Github => ForgeKind::Github,
                ForgeArg::Gitea => ForgeKind::Gitea,
            },
            web_url,
            repo,
        }),
        _ => None,
    };
    let base_ref = pretty_ref(&args.base);
    let mut preview = assemble(Assembly {
        instance: args.instance,
        pr: args.pr,
        head_sha: head.id().to_string(),
        base_ref,
        base_sha: base.id().to_string(),
        links,
        conflict,
        findings,
        before,
        after,
    });
    if let (Some(snap), Some(dir)) = (&snap, &args.state_dir) {
        let since = crate::serve::forge::Memory::load(dir).drift_since;
        for (host, items) in crate::serve::forge::drift_items(snap, &since) {
            if let Some(h) = preview.hosts.get_mut(&host) {
                h.drift = items;
            }
        }
    }
    match args.format {
        PreviewFormat::Markdown => out!("{}", render::comment(&preview, args.budget)),
        PreviewFormat::Text => out!("{}", render::text(&preview)),
    }
    if preview.findings.iter().any(|f| f.severity == Severity::Error) {
        return Err(Failure::Invalid);
    }
    Ok(())
}

/// Everything a [`Preview`] is made of, before the hosts are paired up.
pub struct Assembly {
    pub instance: String,
    pub pr: u64,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    pub links: Option<Links>,
    pub conflict: bool,
    pub findings: Vec<Finding>,
    pub before: BTreeMap<String, Plan>,
    pub after: BTreeMap<String, Plan>,
}

/// Pairs each host's before and after plans into a preview of an open PR
/// (no drift, no apply results: the serve loop adds those).
pub fn assemble(a: Assembly) -> Preview {
    let Assembly {
        instance,
        pr,
        head_sha,
        base_ref,
        base_sha,
        links,
        conflict,
        findings,
        before,
        after,
    } = a;
    let hosts = render::pair_hosts(before, after);
    Preview {
        instance,
        pr,
        head_sha,
        base_ref,
        base_sha,
        links,
        conflict,
        findings,
        hosts,
        phase: Phase::Preview,
        note: None,
        updated_at: None,
    }
}

/// `refs/heads/main` and `origin/main` read as `main`.
fn pretty_ref(rev: &str) -> String {
    let r = rev.strip_prefix("refs/heads/").unwrap_or(rev);
    let r = r.strip_prefix("refs/remotes/").unwrap_or(r);
    r.strip_prefix("origin/").unwrap_or(r).to_string()
}

fn commit<'r>(git: &'r git2::Repository, rev: &str) -> Result<git2::Commit<'r>, Failure> {
    let obj = git
        .revparse_single(rev)
        .map_err(|_| usage(format!("unknown revision {rev:?}")))?;
    obj.peel_to_commit()
        .map_err(|_| usage(format!("{rev:?} is not a commit")))
}

/// The text of `warren.yaml` in the merge of `head` onto `base`, and whether
/// the merge conflicted (then it is the head's own text). A head that
/// already contains the base is its own merge result. The serve loop's
/// mirror uses it too ([`crate::serve::repo::Repo::merged_text`]).
pub fn merged_text(
    git: &git2::Repository,
    base: &git2::Commit<'_>,
    head: &git2::Commit<'_>,
) -> Result<(String, bool)> {
    let head_tree = head.tree()?.id();
    if base.id() == head.id() || git.graph_descendant_of(head.id(), base.id())? {
        return Ok((blob_text(git, &head_tree, "head")?, false));
    }
    let index = git
        .merge_commits(base, head, None)
        .context("cannot merge the head onto the base")?;
    if index.has_conflicts() {
        return Ok((blob_text(git, &head_tree, "head")?, true));
    }
    let entry = index
        .get_path(Path::new(FILE), 0)
        .with_context(|| format!("the merge result has no {FILE} at its root"))?;
    let blob = git.find_blob(entry.id)?;
    Ok((utf8(blob.content(), "the merge result")?, false))
}

fn blob_text(git: &git2::Repository, tree: &git2::Oid, what: &str) -> Result<String> {
    let tree = git.find_tree(*tree)?;
    let entry = tree
        .get_path(Path::new(FILE))
        .with_context(|| format!("{what} has no {FILE} at its root"))?;
    let blob = entry
        .to_object(git)?
        .peel_to_blob()
        .with_context(|| format!("{what}:{FILE} is not a file"))?;
    utf8(blob.content(), what)
}

fn utf8(bytes: &[u8], what: &str) -> Result<String> {
    if bytes.len() > warren_model::load::MAX_BYTES {
        bail!(
            "{what}:{FILE}: file is {} bytes; the limit is {}",
            bytes.len(),
            warren_model::load::MAX_BYTES
        );
    }
    Ok(std::str::from_utf8(bytes)
        .with_context(|| format!("{what}:{FILE} is not UTF-8"))?
        .to_string())
}

/// The keys pinned in `cfg`, plus those the agents reported to a controller
/// (its `status.json`), so a preview shows peers as the service would.
pub fn keybook(cfg: &warren_model::Config, snap: Option<&StatusSnapshot>) -> KeyBook {
    let mut kb = KeyBook::pinned(cfg);
    for (host, iface, key) in snap.iter().flat_map(|s| s.wireguard_keys()) {
        kb.insert(host, iface, key);
    }
    kb
}

/// The base's plans; an invalid base compiles to none (every host new), said
/// on stderr.
fn base_plans(text: &str, rev: &str, snap: Option<&StatusSnapshot>) -> BTreeMap<String, Plan> {
    let (cfg, _) = warren_model::load_str(text, FILE);
    let Some(cfg) = cfg else {
        eprintln!("warning: the base {rev} is invalid; every host is shown as new");
        return BTreeMap::new();
    };
    match compile(&cfg, &keybook(&cfg, snap)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: the base {rev} does not compile ({e}); every host is shown as new");
            BTreeMap::new()
        }
    }
}

/// The merge result's plans and findings (errors leave no plans), compiled
/// with the keys of [`keybook`].
pub fn head_plans(text: &str, snap: Option<&StatusSnapshot>) -> (BTreeMap<String, Plan>, Vec<Finding>) {
    let (cfg, diags) = warren_model::load_str(text, FILE);
    let mut findings: Vec<Finding> = diags
        .iter()
        .map(|d| Finding {
            severity: if d.is_error() {
                Severity::Error
            } else {
                Severity::Warning
            },
            file: FILE.to_string(),
            line: d.pos.line,
            col: d.pos.column,
            code: d.code.to_string(),
            message: d.message.clone(),
        })
        .collect();
    let Some(cfg) = cfg else {
        return (BTreeMap::new(), findings);
    };
    match compile(&cfg, &keybook(&cfg, snap)) {
        Ok(p) => (p, findings),
        Err(e) => {
            findings.push(Finding {
                severity: Severity::Error,
                file: FILE.to_string(),
                line: 0,
                col: 0,
                code: "compile".into(),
                message: e.to_string(),
            });
            (BTreeMap::new(), findings)
        }
    }
}
