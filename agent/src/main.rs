//! `warren-agent`: verifies signed plans and applies them idempotently on its
//! host (WireGuard, nftables, policy routing, sysctls), reports drift, and
//! rolls back what the controller does not confirm.
//!
//! It owns only Warren's resources (interfaces it created, `proto 77` routes
//! and rules, the `ip warren` nft table, sysctls it changed) and must never
//! touch anything else. It depends on `warren-plan` only: no YAML, no git.
//!
//! Exit codes: 0 success (for `diff`: nothing to change); 1 apply failed;
//! 2 usage or configuration error; 3 plan file unreadable or malformed;
//! 4 plan rejected (signature, host, serial, format); 5 `diff` found changes.

mod backend;
mod config;
mod daemon;
mod engine;
mod keys;
mod store;
mod sys;
mod transport;

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

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use engine::{ApplyError, Engine};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "warren-agent",
    version,
    about = "Warren agent: applies signed plans on this host"
)]
struct Cli {
    #[arg(long, global = true, default_value = "/etc/warren/agent.toml")]
    config: PathBuf,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
    /// The daemon: inbox, confirmations, rollback, drift.
    Run,
    /// Verify and apply one plan file now (bootstrap; counts as confirmed).
    Apply {
        #[arg(long)]
        plan: PathBuf,
    },
    /// Show what applying a plan would change (no writes). Without --plan:
    /// the drift from the last applied plan.
    Diff {
        #[arg(long)]
        plan: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the live state Warren owns on this host.
    Observe {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print this agent's public keys (identity, WireGuard), creating them as needed.
    Keys {
        /// Make sure a WireGuard key exists for these interfaces.
        #[arg(long = "interface")]
        interfaces: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Hand a plan to the running daemon (it applies it, then awaits confirmation).
    Submit {
        #[arg(long)]
        plan: PathBuf,
    },
    /// Confirm the applied plan with this serial to the running daemon.
    Confirm {
        #[arg(long)]
        serial: u64,
    },
    /// Remove everything Warren owns on this host and restore changed sysctls.
    Teardown,
    /// Print the last report (applied, rejected, drift, rolled back...).
    Report,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => sub.json().init(),
        LogFormat::Text => sub.init(),
    }
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print_changes(changes: &[warren_plan::Change], format: Format) -> Result<()> {
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(changes)?),
        Format::Text => {
            for c in changes {
                outln!("{c}");
            }
            outln!("{} operations", changes.len());
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    let cfg = config::Config::load(&cli.config)?;
    let mut e = Engine::new(cfg)?;
    match cli.cmd {
        Cmd::Run => {
            transport::spawn(&e.cfg)?;
            daemon::run(e)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply { plan } => {
            let sp = match daemon::read_plan(&plan) {
                Ok(p) => p,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    return Ok(ExitCode::from(3));
                }
            };
            match e.apply_signed(sp, true) {
                Ok(changes) => {
                    for c in &changes {
                        outln!("{c}");
                    }
                    outln!("{} operations ({} writes)", changes.len(), e.sys.writes);
                    Ok(ExitCode::SUCCESS)
                }
                Err(ApplyError::Rejected(err)) => {
                    eprintln!("error: plan rejected: {err}; nothing changed");
                    Ok(ExitCode::from(4))
                }
                Err(err @ ApplyError::Failed(_)) => {
                    eprintln!("error: {err}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Diff { plan, format } => {
            let changes = match plan {
                Some(p) => {
                    let sp = match daemon::read_plan(&p) {
                        Ok(sp) => sp,
                        Err(err) => {
                            eprintln!("error: {err:#}");
                            return Ok(ExitCode::from(3));
                        }
                    };
                    if let Err(err) = e.verify(&sp, false) {
                        eprintln!("error: plan rejected: {err}");
                        return Ok(ExitCode::from(4));
                    }
                    let mem = e.store.applied()?.and_then(|a| a.nft);
                    e.changes(&sp.plan, mem.as_ref())?
                }
                None => match e.drift()? {
                    Some((_, c)) => c,
                    None => {
                        eprintln!("no plan has been applied on this host yet");
                        vec![]
                    }
                },
            };
            print_changes(&changes, format)?;
            Ok(if changes.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(5)
            })
        }
        Cmd::Observe { format } => {
            let applied = e.store.applied()?;
            let plans: Vec<&warren_plan::Plan> = applied.iter().map(|a| &a.signed.plan).collect();
            let st = e.observe(&plans)?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&st)?),
                Format::Text => {
                    for (k, v) in &st.sysctls {
                        outln!("sysctl {k} = {v}");
                    }
                    for (n, i) in &st.interfaces {
                        let a: Vec<String> = i.addresses.iter().map(|c| c.to_string()).collect();
                        outln!(
                            "interface {n} {} mtu {} listen-port {} address {} public-key {}",
                            if i.up { "up" } else { "down" },
                            i.mtu,
                            i.listen_port.map_or("-".into(), |p| p.to_string()),
                            a.join(","),
                            i.public_key.as_deref().unwrap_or("-")
                        );
                        for p in &i.peers {
                            let ips: Vec<String> = p.allowed_ips.iter().map(|c| c.to_string()).collect();
                            outln!(
                                "  peer {} endpoint {} allowed-ips {} handshake {}",
                                p.public_key,
                                p.endpoint.as_deref().unwrap_or("-"),
                                ips.join(","),
                                p.latest_handshake
                            );
                        }
                    }
                    for r in &st.routes {
                        outln!("route {} dev {} table {}", r.dst, r.dev, r.table);
                    }
                    for r in &st.rules {
                        outln!(
                            "rule {}: from {} fwmark {} lookup {}",
                            r.priority,
                            r.from.map_or("all".into(), |f| f.to_string()),
                            r.fwmark.map_or("-".into(), |m| format!("{m:#x}")),
                            r.table
                        );
                    }
                    outln!(
                        "nft table ip warren: {}",
                        if st.nft.is_some() { "present" } else { "absent" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keys { interfaces, format } => {
            let dir = &e.cfg.state_dir;
            let identity = keys::ensure_identity(dir)?;
            for i in &interfaces {
                keys::ensure_wg(dir, i)?;
            }
            let wg = keys::wg_public_keys(dir)?;
            match format {
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "host": e.cfg.host, "identity": identity, "wireguard": wg })
                    )?
                ),
                Format::Text => {
                    outln!("identity {identity}");
                    for (i, k) in wg {
                        outln!("wireguard {i} {k}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit { plan } => {
            let bytes = std::fs::read(&plan)?;
            let sp: warren_plan::SignedPlan = match serde_json::from_slice(&bytes) {
                Ok(sp) => sp,
                Err(err) => {
                    eprintln!("error: {} is not a signed plan: {err}", plan.display());
                    return Ok(ExitCode::from(3));
                }
            };
            e.store
                .deliver(&format!("{:020}.plan.json", sp.envelope.serial), &bytes)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Confirm { serial } => {
            e.store.deliver(&format!("confirm-{serial}"), b"")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Teardown => {
            let c = e.teardown()?;
            e.store.set_applied(None)?;
            e.store.set_previous(None)?;
            print_changes(&c, Format::Text)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report => {
            match e.store.last_report()? {
                Some(r) => outln!("{}", serde_json::to_string_pretty(&r)?),
                None => outln!("no report yet"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
