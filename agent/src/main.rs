//! `warren-agent`: verifies signed plans and applies them idempotently on its
//! host (WireGuard, nftables, policy routing, sysctls), reports drift, and
//! rolls back what the controller does not confirm.
//!
//! It owns only Warren's resources (interfaces it created, `proto 77` routes
//! and rules, the `ip warren` nft table, sysctls it changed) and must never
//! touch anything else. It depends on `warren-plan`,
//! `warren-wire` and `warren-host` only: no YAML, no git.
//!
//! Exit codes ([`Exit`]): 0 success (for `diff`: nothing to change); 1 apply
//! failed; 2 usage or configuration error; 3 plan file unreadable or
//! malformed; 4 plan rejected (signature, host, serial, format); 5 `diff`
//! found changes; 6 `doctor` found something that breaks traffic.
//!
//! Modules form a DAG: `main` -> `daemon` -> `engine` -> `backend` ->
//! {`sys`, `keys`}; `engine` also uses `store` and `keys`; `transport` uses
//! only `store` and `keys`; `config` names the WireGuard backend's mode.
//! `keys`, `store` and `sys` use no other module of the agent.

#![warn(clippy::wildcard_enum_match_arm)]

mod admit;
mod backend;
mod config;
mod daemon;
mod doctor;
mod engine;
mod init;
mod keys;
mod routeros;
mod store;
mod sys;
#[cfg(test)]
mod testing;
mod transport;

use anyhow::Result;
use clap::{Parser, Subcommand};
use engine::{ApplyError, Engine};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warren_host::cli::{init_logging, Format, LogFormat};
use warren_host::{out, outln};
use warren_plan::Change;

/// `--version`: the package version and the git commit it was built from
/// (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WARREN_GIT_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "warren-agent",
    version = VERSION,
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

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The daemon: inbox, confirmations, rollback, drift.
    Run,
    /// Enrol this host: write --config (agent.toml), create the keys, and
    /// print the line to paste under the host in warren.yaml.
    Init(init::Args),
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
    /// Check this host for what would break the network (WireGuard,
    /// netfilter, foreign firewalls, sysctls, ports, MTU, clock, conntrack,
    /// the WAN VPN handshake): what, why, and the fix for each. Exit 6 when
    /// something breaks traffic.
    Doctor {
        /// Check against this signed plan instead of the running one.
        #[arg(long)]
        plan: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write the man pages and shell completions (packaging: scripts/build-debs.sh).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long)]
        out: PathBuf,
    },
}

/// The process exit code. The numbers are an interface (scripts and tests
/// check them): never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// Success; for `diff`, nothing to change.
    Ok = 0,
    /// Applying a plan failed part-way.
    ApplyFailed = 1,
    /// Bad usage or configuration, or any other error.
    Usage = 2,
    /// The plan file is unreadable or not a signed plan.
    BadPlanFile = 3,
    /// The plan was refused (signature, host, serial, format); nothing changed.
    Rejected = 4,
    /// `diff` found changes.
    Changes = 5,
    /// `doctor` found something that breaks traffic (a `breaks` finding).
    Breaks = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Packaging needs no configuration file: handled before it is read.
    if let Cmd::GenerateDocs { out } = &cli.cmd {
        return generate_docs(out).into();
    }
    init_logging(cli.log_format);
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Usage.into()
        }
    }
}

fn run(cli: Cli) -> Result<Exit> {
    // `init` writes the configuration every other command loads.
    if let Cmd::Init(args) = &cli.cmd {
        init::run(args, &cli.config)?;
        return Ok(Exit::Ok);
    }
    let mut e = Engine::new(config::Config::load(&cli.config)?)?;
    match cli.cmd {
        Cmd::Run => serve(e),
        Cmd::Init(_) => Ok(Exit::Ok),
        Cmd::Apply { plan } => apply(&mut e, &plan),
        Cmd::Diff { plan, format } => diff(&e, plan.as_deref(), format),
        Cmd::Observe { format } => observe(&e, format),
        Cmd::Keys { interfaces, format } => keys(&e, &interfaces, format),
        Cmd::Submit { plan } => submit(&e, &plan),
        Cmd::Confirm { serial } => confirm(&e, serial),
        Cmd::Teardown => teardown(&mut e),
        Cmd::Report => report(&e),
        Cmd::Doctor { plan, format } => doctor(&e, plan.as_deref(), format),
        Cmd::GenerateDocs { out } => Ok(generate_docs(&out)),
    }
}

/// The hidden `generate-docs`: man pages and completions from this command
/// line, one path per line on stdout.
fn generate_docs(out: &Path) -> Exit {
    use clap::CommandFactory;
    match warren_host::gendocs::write(Cli::command(), out) {
        Ok(files) => {
            for file in files {
                outln!("{}", file.display());
            }
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {}: {e}", out.display());
            Exit::Usage
        }
    }
}

/// The signed plan in `path`, or the exit code for a file that is not one.
fn read_plan(path: &Path) -> Result<warren_plan::SignedPlan, Exit> {
    daemon::read_plan(path).map_err(|err| {
        eprintln!("error: {err:#}");
        Exit::BadPlanFile
    })
}

fn print_changes(changes: &[Change], format: Format) -> Result<()> {
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

fn serve(e: Engine) -> Result<Exit> {
    transport::spawn(&e.cfg)?;
    daemon::run(e)?;
    Ok(Exit::Ok)
}

fn apply(e: &mut Engine, plan: &Path) -> Result<Exit> {
    let sp = match read_plan(plan) {
        Ok(sp) => sp,
        Err(exit) => return Ok(exit),
    };
    match e.apply_signed(sp, true) {
        Ok(changes) => {
            for c in &changes {
                outln!("{c}");
            }
            outln!("{} operations ({} writes)", changes.len(), e.writes());
            Ok(Exit::Ok)
        }
        Err(ApplyError::Rejected(err)) => {
            eprintln!("error: plan rejected: {err}; nothing changed");
            Ok(Exit::Rejected)
        }
        Err(err @ ApplyError::Failed(_)) => {
            eprintln!("error: {err}");
            Ok(Exit::ApplyFailed)
        }
    }
}

/// The signed plan at `path`, verified for this host (signature, host,
/// format, content; not the serial: it is only read). Errors are printed;
/// the exit code says which.
fn verified_plan(e: &Engine, path: &Path) -> Result<warren_plan::SignedPlan, Exit> {
    let sp = read_plan(path)?;
    if let Err(err) = e.verify(&sp, false) {
        eprintln!("error: plan rejected: {err}");
        return Err(Exit::Rejected);
    }
    Ok(sp)
}

/// What applying `plan` would change, or (without a plan) the drift from
/// the applied one. Read-only: it creates no key and writes nothing live.
fn diff(e: &Engine, plan: Option<&Path>, format: Format) -> Result<Exit> {
    let changes = match plan {
        Some(path) => {
            let sp = match verified_plan(e, path) {
                Ok(sp) => sp,
                Err(exit) => return Ok(exit),
            };
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
        Exit::Ok
    } else {
        Exit::Changes
    })
}

fn observe(e: &Engine, format: Format) -> Result<Exit> {
    let applied = e.store.applied()?;
    let plans: Vec<&warren_plan::Plan> = applied.iter().map(|a| &a.signed.plan).collect();
    let st = e.observe(&plans)?;
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&st)?),
        Format::Text => {
            out!("{}", st.render_text());
            // A router's rows: Warren's, by tag, and how many others.
            for (menu, rows) in st.routeros.iter().flat_map(|r| &r.menus) {
                let mut foreign = 0;
                for r in rows {
                    match r.tag().filter(|_| !r.dynamic()) {
                        Some(tag) => {
                            outln!("routeros {menu} {}{tag} ({})", warren_plan::ros::TAG_PREFIX, r.id)
                        }
                        None => foreign += 1,
                    }
                }
                outln!("routeros {menu}: {foreign} rows not Warren's");
            }
        }
    }
    Ok(Exit::Ok)
}

fn keys(e: &Engine, interfaces: &[String], format: Format) -> Result<Exit> {
    let keys = e.public_keys(interfaces)?;
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "host": e.cfg.host,
                "identity": keys.identity,
                "wireguard": keys.wireguard,
            }))?
        ),
        Format::Text => {
            outln!("identity {}", keys.identity);
            for (i, k) in keys.wireguard {
                outln!("wireguard {i} {k}");
            }
        }
    }
    Ok(Exit::Ok)
}

fn submit(e: &Engine, plan: &Path) -> Result<Exit> {
    let bytes = std::fs::read(plan)?;
    let sp: warren_plan::SignedPlan = match serde_json::from_slice(&bytes) {
        Ok(sp) => sp,
        Err(err) => {
            eprintln!("error: {} is not a signed plan: {err}", plan.display());
            return Ok(Exit::BadPlanFile);
        }
    };
    e.store
        .deliver(&format!("{:020}.plan.json", sp.envelope.serial), &bytes)?;
    Ok(Exit::Ok)
}

fn confirm(e: &Engine, serial: u64) -> Result<Exit> {
    e.store.deliver(&format!("confirm-{serial}"), b"")?;
    Ok(Exit::Ok)
}

fn teardown(e: &mut Engine) -> Result<Exit> {
    let c = e.teardown()?;
    e.forget()?;
    print_changes(&c, Format::Text)?;
    Ok(Exit::Ok)
}

fn report(e: &Engine) -> Result<Exit> {
    match e.store.last_report()? {
        Some(r) => outln!("{}", serde_json::to_string_pretty(&r)?),
        None => outln!("no report yet"),
    }
    Ok(Exit::Ok)
}

/// The doctor's checks against the running plan (or `plan`), printed.
fn doctor(e: &Engine, plan: Option<&Path>, format: Format) -> Result<Exit> {
    let findings = match plan {
        Some(path) => {
            let sp = match verified_plan(e, path) {
                Ok(sp) => sp,
                Err(exit) => return Ok(exit),
            };
            let running = e.running()?;
            let applied = running
                .as_ref()
                .filter(|a| a.signed.envelope.plan_sha256 == sp.envelope.plan_sha256);
            let router = e.read_router(&sp.plan);
            doctor::run(
                &e.sys,
                &doctor::Context {
                    router: router.as_ref(),
                    plan: Some(&sp.plan),
                    applied: applied.is_some(),
                    issued_at: Some(sp.envelope.issued_at),
                    up_since: applied.map(|a| a.applied_at),
                    wg_mode: e.cfg.wireguard,
                    now: warren_host::unix_now(),
                },
            )
        }
        None => daemon::doctor(e, None),
    };
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&findings)?),
        Format::Text => out!("{}", doctor::render_text(&findings)),
    }
    Ok(if doctor::breaks(&findings) {
        Exit::Breaks
    } else {
        Exit::Ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_keep_their_numbers() {
        let codes = [
            (Exit::Ok, 0),
            (Exit::ApplyFailed, 1),
            (Exit::Usage, 2),
            (Exit::BadPlanFile, 3),
            (Exit::Rejected, 4),
            (Exit::Changes, 5),
            (Exit::Breaks, 6),
        ];
        for (exit, code) in codes {
            assert_eq!(exit as u8, code, "{exit:?}");
            assert_eq!(ExitCode::from(exit), ExitCode::from(code));
        }
    }
}
