//! `warren-controller serve`: the service. This module only turns flags into
//! [`crate::serve::Options`], sets up logging and runs the service on a tokio
//! runtime; what the service does is `crate::serve`.

use super::{names_only, Outcome};
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
    // `inf` parses as an f64 but is no Duration; refuse it rather than panic.
    let poll = std::time::Duration::try_from_secs_f64(args.poll_secs.max(0.05))
        .with_context(|| format!("--poll-secs {}", args.poll_secs))?;
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
        },
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(crate::serve::serve(opts))?;
    Ok(())
}
