//! `warren-controller`: turns the desired-state repo into signed per-host plans.
//!
//! Exit codes: 0 success; 1 the desired state is invalid (diagnostics on
//! stderr) or a plan cannot be compiled; 2 usage or I/O error.

mod http;
mod keys;
mod metrics;
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
                let p = dir.join("status.json");
                let text =
                    std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).with_context(|| format!("{} is corrupt", p.display()))?;
                for (host, h) in v["hosts"].as_object().into_iter().flatten() {
                    for (iface, k) in h["wireguard"].as_object().into_iter().flatten() {
                        if let Some(k) = k.as_str() {
                            kb.insert(host, iface, k);
                        }
                    }
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
    let p = dir.join("status.json");
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no status at {} (has `warren-controller serve` run there?)",
            p.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", p.display()))?;
    let good = v["good_commit"].as_str().unwrap_or("");
    let short = |c: &str| c.chars().take(12).collect::<String>();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut hosts = serde_json::Map::new();
    for (name, h) in v["hosts"].as_object().into_iter().flatten() {
        // In sync = running the serial of its current desired plan. A host whose
        // plan a newer commit did not change is in sync at that commit too.
        // A plan still awaiting peer keys is not the whole desired state yet.
        let awaiting_keys = h["pending_keys"].as_u64().unwrap_or(0) > 0;
        let synced =
            h["applied_serial"].is_u64() && h["applied_serial"] == h["desired_serial"] && !awaiting_keys;
        let applied = if synced {
            good
        } else {
            h["applied_commit"].as_str().unwrap_or("")
        };
        let drift: Vec<String> = h["drift"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        let state = if h["error"].is_string() {
            "failed"
        } else if !h["connected"].as_bool().unwrap_or(false) {
            "unreachable"
        } else if !drift.is_empty() {
            "drifted"
        } else if synced {
            "in sync"
        } else {
            "pending"
        };
        hosts.insert(
            name.clone(),
            serde_json::json!({
                "state": state,
                "desired_commit": good,
                "applied_commit": applied,
                "applied_serial": h["applied_serial"],
                "desired_serial": h["desired_serial"],
                "plan_commit": h["plan_commit"],
                "last_seen": h["last_seen"],
                "drift": drift,
                "error": h["error"],
                "awaiting_keys": awaiting_keys,
            }),
        );
    }
    let last = v["history"].get(0).cloned().unwrap_or(serde_json::Value::Null);
    match format {
        Format::Json => {
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "desired_commit": good, "last_commit": last, "hosts": hosts })
                )?
            )
        }
        Format::Text => {
            outln!(
                "desired commit {}",
                if good.is_empty() {
                    "(none)".into()
                } else {
                    short(good)
                }
            );
            if last.is_object() && last["outcome"] != "compiled" && last["outcome"] != "unchanged" {
                outln!(
                    "newest commit {} was refused ({}):",
                    short(last["commit"].as_str().unwrap_or("")),
                    last["outcome"].as_str().unwrap_or("")
                );
                for d in last["diagnostics"].as_array().into_iter().flatten() {
                    outln!("  {}", d.as_str().unwrap_or("").replace('\n', "\n  "));
                }
            }
            outln!(
                "{:<12} {:<12} {:<14} {:<10} drift / error",
                "host",
                "state",
                "applied",
                "last seen"
            );
            for (name, h) in &hosts {
                let seen = h["last_seen"]
                    .as_u64()
                    .map_or("never".to_string(), |t| format!("{}s ago", now.saturating_sub(t)));
                let applied = match h["applied_serial"].as_u64() {
                    Some(n) => format!("{} #{n}", short(h["applied_commit"].as_str().unwrap_or("-"))),
                    None => "-".to_string(),
                };
                let extra = h["error"].as_str().map(str::to_string).unwrap_or_else(|| {
                    h["drift"]
                        .as_array()
                        .map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "))
                        .unwrap_or_default()
                });
                outln!(
                    "{name:<12} {:<12} {applied:<14} {seen:<10} {extra}",
                    h["state"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
