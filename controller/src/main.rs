//! `warren-controller`: turns the desired-state repo into signed per-host plans.
//!
//! Exit codes: 0 success; 1 the desired state is invalid (diagnostics on
//! stderr) or a plan cannot be compiled; 2 usage or I/O error.

mod source;

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
    },
    /// Print the JSON Schema of warren.yaml.
    Schema,
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
            println!(
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
            let (src, cfg) = match load(&path, rev.as_deref())? {
                Ok(x) => x,
                Err(code) => return Ok(code),
            };
            let kb = keybook(&cfg, keys.as_ref())?;
            let plans = match compile(&cfg, &kb) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{}: {e}", src.name);
                    return Ok(ExitCode::from(1));
                }
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
                    println!("# commit {}", src.commit);
                    for (_, p) in selected {
                        println!();
                        print!("{}", p.render_text());
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
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ClientConfig {
            path,
            client,
            rev,
            keys,
        } => {
            let (_, cfg) = match load(&path, rev.as_deref())? {
                Ok(x) => x,
                Err(code) => return Ok(code),
            };
            let kb = keybook(&cfg, keys.as_ref())?;
            match warren_compiler::client_config(&cfg, &kb, &client) {
                Some(s) => {
                    print!("{s}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("error: no private VPN client {client:?}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Cmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&warren_model::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
