//! `warren-controller`: turns the desired-state repo into signed per-host plans.
//!
//! Exit codes: 0 success; 1 the desired state is invalid (diagnostics on
//! stderr) or a plan cannot be compiled; 2 usage or I/O error.
//!
//! This file is the command line's shape only: the subcommands, and a `run`
//! that hands each to its function in [`cmd`]. [`cmd::Failure`] holds the
//! mapping from failures to the exit codes above.

mod cmd;
mod http;
mod keys;
mod metrics;
mod serve;
mod source;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warren_host::cli::Format;
use warren_host::outln;

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

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check the desired state; print every diagnostic.
    Validate(cmd::validate::Args),
    /// Compile and show each host's plan.
    Plan(cmd::plan::Args),
    /// Print a private VPN client's wg-quick configuration.
    ClientConfig(cmd::client_config::Args),
    /// Print the JSON Schema of warren.yaml.
    Schema,
    /// The service: watch the repo, compile, sign and push plans to agents.
    Serve(cmd::serve::Args),
    /// Per host: desired and applied commit, in sync / drifted / failed / unreachable.
    Status {
        #[arg(long, default_value = "/var/lib/warren-controller")]
        state_dir: PathBuf,
        #[arg(long, value_parser = cmd::names_only::<Format>(), default_value = "text")]
        format: Format,
    },
    /// Create the controller's ed25519 signing key (0600) and print its public half.
    Keygen(cmd::keygen::Args),
    /// Compile, sign and write one plan file per host (`HOST.plan.json`).
    Sign(cmd::sign::Args),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn run(cli: Cli) -> cmd::Outcome {
    match cli.cmd {
        Cmd::Validate(args) => cmd::validate::run(args),
        Cmd::Plan(args) => cmd::plan::run(args),
        Cmd::ClientConfig(args) => cmd::client_config::run(args),
        Cmd::Schema => cmd::schema::run(),
        Cmd::Serve(args) => cmd::serve::run(args),
        // `status` only ever succeeds with 0; it is moving beside the typed
        // status snapshot (serve/status.rs), so it keeps its own signature.
        Cmd::Status { state_dir, format } => status(&state_dir, format).map(drop).map_err(cmd::Failure::from),
        Cmd::Keygen(args) => cmd::keygen::run(args),
        Cmd::Sign(args) => cmd::sign::run(args),
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
