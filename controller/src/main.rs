//! `warren-controller`: turns the desired-state repo into signed per-host plans.
//!
//! Exit codes: 0 success; 1 the desired state is invalid (diagnostics on
//! stderr) or a plan cannot be compiled; 2 usage or I/O error.

mod http;
mod keys;
mod serve;
mod source;

/// Print to stdout; a closed pipe (`| head`) ends the program quietly
/// instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use warren_compiler::{compile, KeyBook};

#[derive(Parser, Debug)]
#[command(
    name = "warren-controller",
    version,
    about = "Warren: GitOps for a CGNAT home network behind a cloud gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check the desired state; print every diagnostic.
    Validate {
        /// A directory holding warren.yaml, the file itself, or a git repo (with --rev).
        path: PathBuf,
        /// Read warren.yaml from this git revision instead of the work tree.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Compile and show each host's plan.
    Plan {
        path: PathBuf,
        #[arg(long)]
        rev: Option<String>,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// JSON file of known WireGuard keys: {"host": {"interface": "key"}}.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Print a private VPN client's wg-quick configuration.
    ClientConfig {
        path: PathBuf,
        client: String,
        #[arg(long)]
        rev: Option<String>,
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Use the WireGuard keys agents reported to the service in this state dir.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of warren.yaml.
    Schema,
    /// The service: watch the repo, compile, sign and push plans to agents.
    Serve {
        /// The desired-state repository: a local path or file:// URL.
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
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Per host: desired and applied commit, in sync / drifted / failed / unreachable.
    Status {
        #[arg(long, default_value = "/var/lib/warren-controller")]
        state_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create the controller's ed25519 signing key (0600) and print its public half.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Compile, sign and write one plan file per host (`HOST.plan.json`).
    Sign {
        path: PathBuf,
        #[arg(long)]
        rev: Option<String>,
        /// The controller's signing key (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Serial for every plan; must be above what each agent last applied.
        #[arg(long)]
        serial: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Seconds an agent waits for confirmation before rolling back.
        #[arg(long, default_value_t = 60)]
        confirm_secs: u32,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// Sign even if some peer keys are still unknown (those peers are left out).
        #[arg(long)]
        allow_pending: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(
    path: &std::path::Path,
    rev: Option<&str>,
) -> Result<Result<(source::Source, warren_model::Config), ExitCode>> {
    let src = source::read(path, rev)?;
    let (cfg, diags) = warren_model::load_str(&src.text, &src.name);
    eprint!("{diags}");
    Ok(match cfg {
        Some(c) => Ok((src, c)),
        None => {
            let n = diags.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "{}: {n} error{}; nothing compiled",
                src.name,
                if n == 1 { "" } else { "s" }
            );
            Err(ExitCode::from(1))
        }
    })
}

/// Load, validate and compile: the plans, or the exit code after printing why not.
type Plans = std::collections::BTreeMap<String, warren_plan::Plan>;
fn compiled(
    path: &std::path::Path,
    rev: Option<&str>,
    keys: Option<&PathBuf>,
) -> Result<Result<(source::Source, Plans), ExitCode>> {
    let (src, cfg) = match load(path, rev)? {
        Ok(x) => x,
        Err(code) => return Ok(Err(code)),
    };
    let kb = keybook(&cfg, keys)?;
    match compile(&cfg, &kb) {
        Ok(p) => Ok(Ok((src, p))),
        Err(e) => {
            eprintln!("{}: {e}", src.name);
            Ok(Err(ExitCode::from(1)))
        }
    }
}

fn keybook(cfg: &warren_model::Config, file: Option<&PathBuf>) -> Result<KeyBook> {
    let mut kb = KeyBook::pinned(cfg);
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let m: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"host\": {{\"interface\": \"key\"}}}}",
                    f.display()
                )
            })?;
        for (h, ifs) in m {
            for (i, k) in ifs {
                kb.insert(&h, &i, &k);
            }
        }
    }
    Ok(kb)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Validate { path, rev } => {
            let (src, cfg) = match load(&path, rev.as_deref())? {
                Ok(x) => x,
                Err(code) => return Ok(code),
            };
            if let Err(e) = compile(&cfg, &KeyBook::pinned(&cfg)) {
                eprintln!("{}: {e}", src.name);
                return Ok(ExitCode::from(1));
            }
            outln!(
                "{}: valid ({} hosts, {} forwards, {} private VPN clients)",
                src.name,
                cfg.hosts.len(),
                cfg.forwards.len(),
                cfg.private.as_ref().map_or(0, |p| p.clients.len())
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plan {
            path,
            rev,
            host,
            format,
            keys,
        } => {
            let (src, plans) = match compiled(&path, rev.as_deref(), keys.as_ref())? {
                Ok(x) => x,
                Err(code) => return Ok(code),
            };
            if let Some(h) = &host {
                if !plans.contains_key(h) {
                    eprintln!(
                        "error: no plan for host {h:?}; hosts with plans: {}",
                        plans.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            let selected: Vec<_> = plans
                .iter()
                .filter(|(n, _)| host.as_ref().is_none_or(|h| h == *n))
                .collect();
            match format {
                Format::Text => {
                    outln!("# commit {}", src.commit);
                    for (_, p) in selected {
                        outln!();
                        out!("{}", p.render_text());
                    }
                }
                Format::Json => {
                    let hosts: serde_json::Map<String, serde_json::Value> = selected
                        .into_iter()
                        .map(|(n, p)| {
                            (
                                n.clone(),
                                serde_json::json!({ "sha256": warren_plan::hash_hex(p), "plan": p }),
                            )
                        })
                        .collect();
                    let out = serde_json::json!({ "commit": src.commit, "hosts": hosts });
                    outln!("{}", serde_json::to_string_pretty(&out)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ClientConfig {
            path,
            client,
            rev,
            keys,
            state_dir,
        } => {
            let (_, cfg) = match load(&path, rev.as_deref())? {
                Ok(x) => x,
                Err(code) => return Ok(code),
            };
            let mut kb = keybook(&cfg, keys.as_ref())?;
            if let Some(dir) = state_dir {
                for (host, iface, key) in serve::status::reported_wireguard_keys(&dir)? {
                    kb.insert(&host, &iface, &key);
                }
            }
            match warren_compiler::client_config(&cfg, &kb, &client) {
                Some(s) => {
                    out!("{s}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("error: no private VPN client {client:?}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Cmd::Keygen { out } => {
            let k = keys::generate(&out)?;
            outln!("{}", keys::public_b64(&k));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sign {
            path,
            rev,
            key,
            serial,
            out,
            keys: keyfile,
            confirm_secs,
            host,
            allow_pending,
        } => {
            let signing = keys::load(&key)?;
            let (src, plans) = match compiled(&path, rev.as_deref(), keyfile.as_ref())? {
                Ok(x) => x,
                Err(code) => return Ok(code),
            };
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            for (name, plan) in plans {
                if host.as_ref().is_some_and(|h| h != &name) {
                    continue;
                }
                let pending = plan.pending_keys();
                if !pending.is_empty() && !allow_pending {
                    let p: Vec<String> = pending.iter().map(|(h, i)| format!("{h}/{i}")).collect();
                    eprintln!(
                        "error: plan for {name} lacks peer keys: {} (pass --keys, or --allow-pending)",
                        p.join(", ")
                    );
                    return Ok(ExitCode::from(1));
                }
                let sp = warren_plan::sign(plan, serial, &src.commit, confirm_secs, now, &signing);
                let file = out.join(format!("{name}.plan.json"));
                std::fs::write(&file, warren_plan::canonical(&sp))
                    .with_context(|| format!("cannot write {}", file.display()))?;
                outln!(
                    "{} serial {serial} sha256 {}",
                    file.display(),
                    sp.envelope.plan_sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve {
            repo,
            branch,
            state_dir,
            poll_secs,
            listen,
            http,
            webhook_secret_file,
            confirm_secs,
            no_fs_watch,
            repo_ssh_key,
            repo_host_key,
            log_format,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let sub = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            match log_format {
                LogFormat::Json => sub.json().init(),
                LogFormat::Text => sub.init(),
            }
            let webhook_secret = match webhook_secret_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?
                        .trim()
                        .as_bytes()
                        .to_vec(),
                ),
                None => None,
            };
            let opts = serve::Options {
                source: repo,
                branch,
                state_dir,
                poll: std::time::Duration::from_secs_f64(poll_secs.max(0.05)),
                listen,
                http,
                webhook_secret,
                confirm_secs,
                fs_watch: !no_fs_watch,
                access: serve::repo::Access {
                    ssh_key: repo_ssh_key,
                    host_key: repo_host_key,
                },
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve::serve(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { state_dir, format } => status(&state_dir, format),
        Cmd::Schema => {
            outln!("{}", serde_json::to_string_pretty(&warren_model::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `status` prints, from the service's `status.json` snapshot.
fn status(dir: &std::path::Path, format: Format) -> Result<ExitCode> {
    let view = serve::status::StatusView::load(dir)?;
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&view)?),
        Format::Text => out!("{}", view.render_text(warren_host::unix_now())),
    }
    Ok(ExitCode::SUCCESS)
}
