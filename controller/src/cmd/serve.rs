//! `warren-controller serve`: the service. This module only turns flags into
//! [`crate::serve::Options`], sets up logging and runs the service on a tokio
//! runtime; what the service does is `crate::serve`.

use super::{names_only, usage, Outcome};
use anyhow::Context;
use std::path::PathBuf;
use warren_host::cli::{init_logging, LogFormat};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The desired-state repository: a local path, or a file://, ssh:// or https:// URL.
    #[arg(long)]
    repo: String,
    #[arg(long, default_value = "main")]
    branch: String,
    #[arg(long, default_value = "/var/lib/warren-controller")]
    state_dir: PathBuf,
    /// Seconds between polls of the repository.
    #[arg(long, default_value_t = 5.0)]
    poll_secs: f64,
    /// Where agents that dial the controller connect (SSH).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// HTTP address for /healthz, /metrics and /webhook.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// File holding the webhook secret (GitHub/Gitea HMAC).
    #[arg(long)]
    webhook_secret_file: Option<PathBuf>,
    /// Seconds an agent waits for confirmation before rolling back.
    #[arg(long, default_value_t = 60)]
    confirm_secs: u32,
    /// Do not watch a local repository for filesystem events.
    #[arg(long)]
    no_fs_watch: bool,
    /// ssh remotes: the private key to fetch with (a deploy key).
    #[arg(long)]
    repo_ssh_key: Option<PathBuf>,
    /// ssh remotes: the server's pinned host key, `ssh-ed25519 AAAA…`.
    #[arg(long)]
    repo_host_key: Option<String>,
    #[arg(long, value_parser = names_only::<LogFormat>(), default_value = "text")]
    log_format: LogFormat,
    /// Post plan previews, apply results and drift to pull requests and
    /// commits on this forge (needs --forge-repo and --forge-token-file;
    /// pull request events arrive on /webhook).
    #[arg(long, value_parser = ["github", "gitea"])]
    forge: Option<String>,
    /// The forge's API URL: https://api.github.com (the default for github),
    /// https://HOST/api/v3 for GitHub Enterprise, https://HOST/api/v1 for
    /// Gitea and Forgejo.
    #[arg(long)]
    forge_url: Option<String>,
    /// The repository on the forge, OWNER/NAME.
    #[arg(long)]
    forge_repo: Option<String>,
    /// File holding the forge token (e.g. a systemd credential,
    /// $CREDENTIALS_DIRECTORY/forge-token); it also serves https fetches of a
    /// private repository. Never logged.
    #[arg(long)]
    forge_token_file: Option<PathBuf>,
    /// Names this controller in its comments' markers, so two controllers
    /// can comment on one repository.
    #[arg(long, default_value = "warren")]
    forge_instance: String,
    /// The forge's web URL for links (derived from --forge-url by default).
    #[arg(long)]
    forge_web_url: Option<String>,
    /// Sign with the key in this file instead of the state directory's
    /// controller.key; its group may read it (a Kubernetes Secret with
    /// fsGroup), others may not.
    #[arg(long)]
    signing_key_file: Option<PathBuf>,
}

/// `--forge*` as the worker's options, or why they do not add up.
fn forge_options(args: &Args) -> Result<Option<crate::serve::forge::ForgeOptions>, String> {
    use crate::forge::ForgeKind;
    let Some(kind) = args.forge.as_deref() else {
        if args.forge_repo.is_some() || args.forge_token_file.is_some() || args.forge_url.is_some() {
            return Err("--forge-url, --forge-repo and --forge-token-file need --forge github|gitea".into());
        }
        return Ok(None);
    };
    let kind = if kind == "gitea" {
        ForgeKind::Gitea
    } else {
        ForgeKind::Github
    };
    let api_url = match (&args.forge_url, kind) {
        (Some(u), _) => u.clone(),
        (None, ForgeKind::Github) => "https://api.github.com".to_string(),
        (None, ForgeKind::Gitea) => return Err("--forge gitea needs --forge-url https://HOST/api/v1".into()),
    };
    let repo = args
        .forge_repo
        .clone()
        .ok_or("--forge needs --forge-repo OWNER/NAME")?;
    let file = args
        .forge_token_file
        .as_ref()
        .ok_or("--forge needs --forge-token-file FILE")?;
    let token = std::fs::read_to_string(file)
        .map_err(|e| format!("--forge-token-file {}: {e}", file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(format!(
            "--forge-token-file {}: the file is empty",
            file.display()
        ));
    }
    let web_url = args
        .forge_web_url
        .clone()
        .unwrap_or_else(|| crate::serve::forge::web_url_of(kind, &api_url));
    Ok(Some(crate::serve::forge::ForgeOptions {
        kind,
        api_url,
        web_url,
        repo,
        token,
        instance: args.forge_instance.clone(),
    }))
}

/// The confirm window agents are given, in seconds. 0 (or a few seconds)
/// would roll every plan back before its agent's report could arrive; more
/// than a day leaves a lockout in place for longer than anyone waits.
pub const CONFIRM_SECS: std::ops::RangeInclusive<u32> = 5..=86_400;

/// The longest poll interval accepted (a day; webhooks and fs events
/// trigger sooner).
const MAX_POLL_SECS: f64 = 86_400.0;

fn check_confirm_secs(secs: u32) -> Result<(), String> {
    if CONFIRM_SECS.contains(&secs) {
        Ok(())
    } else {
        Err(format!(
            "--confirm-secs {secs}: must be between {} and {} (an agent rolls back a plan that is not confirmed within it)",
            CONFIRM_SECS.start(),
            CONFIRM_SECS.end()
        ))
    }
}

/// `--poll-secs` as a Duration: positive and at most a day (`inf`, `nan`
/// and negatives are refused rather than panicking); tiny values are raised
/// to 50 ms.
fn poll_interval(secs: f64) -> Result<std::time::Duration, String> {
    if !(secs > 0.0 && secs <= MAX_POLL_SECS) {
        return Err(format!(
            "--poll-secs {secs}: must be more than 0 and at most {MAX_POLL_SECS}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs.max(0.05)))
}

pub fn run(args: Args) -> Outcome {
    init_logging(args.log_format);
    let webhook_secret = match &args.webhook_secret_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .trim()
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    let poll = poll_interval(args.poll_secs).map_err(usage)?;
    check_confirm_secs(args.confirm_secs).map_err(usage)?;
    let forge = forge_options(&args).map_err(usage)?;
    let https_token = forge
        .as_ref()
        .map(|f| crate::serve::repo::HttpsToken::for_forge(f.kind, &f.token));
    let opts = crate::serve::Options {
        source: args.repo,
        branch: args.branch,
        state_dir: args.state_dir,
        poll,
        listen: args.listen,
        http: args.http,
        webhook_secret,
        confirm_secs: args.confirm_secs,
        fs_watch: !args.no_fs_watch,
        access: crate::serve::repo::Access {
            ssh_key: args.repo_ssh_key,
            host_key: args.repo_host_key,
            https_token,
        },
        forge,
        signing_key_file: args.signing_key_file,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(crate::serve::serve(opts))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn confirm_secs_zero_and_absurd_values_are_refused() {
        for bad in [0, 1, 4, 86_401, u32::MAX] {
            assert!(
                check_confirm_secs(bad).unwrap_err().contains("--confirm-secs"),
                "{bad}"
            );
        }
        for good in [5, 30, 60, 86_400] {
            assert!(check_confirm_secs(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn poll_secs_must_be_a_sane_duration() {
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN, 86_401.0] {
            assert!(poll_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(
            poll_interval(0.001).unwrap(),
            std::time::Duration::from_millis(50)
        );
        assert_eq!(poll_interval(5.0).unwrap(), std::time::Duration::from_secs(5));
    }
}
